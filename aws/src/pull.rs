//! The scheduled pull on AWS. Each API tenant's connection lives in one Secrets Manager secret,
//! `{table}/tenants/{tenant}`, whose JSON is
//! `{"api_url": ..., "auth": "oauth1-sha256" | "oauth1-sha1" | "oauth2", "key": ..., "secret": ...,
//! "token_url": ..., "scope": ...}` (the last two optional). The pull reads it, pulls with the library's
//! client into the function's temporary storage, zips the bundle and writes it to
//! `inbound/{tenant}/api/{cursor}.zip`, where the upload path takes it like any other bundle (validate, plan,
//! guard, apply). The tenant's cursor moves when that batch is applied (the finish step). The same function
//! answers `source check` for a tenant (`{"tenant": ..., "check": true}`), from where the pulls run.

use crate::bridge::AwsError;
use crate::context::Aws;
use crate::payload::StepError;
use crate::pipeline::Pipeline;
use rollcall::model::{SourceKind, Tenant};
use rollcall::pull::http::{Client, ClientOptions};
use rollcall::pull::source::{ApiSource, Auth, Credentials, PendingPull};
use rollcall::pull::{self, PullOptions};
use rollcall::store::TenantStore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

/// What a tenant's secret holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSecret {
    pub api_url: String,
    pub auth: Auth,
    pub key: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl fmt::Debug for TenantSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}), key={}, secret=(hidden)",
            self.api_url,
            self.auth.name(),
            self.key
        )
    }
}

/// The name of a tenant's secret.
pub fn secret_id(table: &str, tenant: &str) -> String {
    format!("{table}/tenants/{tenant}")
}

/// Reads a tenant's secret.
pub fn get_secret(aws: &Aws, tenant: &str) -> Result<TenantSecret, AwsError> {
    let id = secret_id(&aws.names.table, tenant);
    let out = aws
        .bridge
        .run(aws.secrets.get_secret_value().secret_id(&id).send())
        .map_err(|e| {
            AwsError::call(
                "Secrets Manager",
                format!("reading secret {id}"),
                crate::s3::describe(&e),
            )
        })?;
    let text = out.secret_string().unwrap_or_default();
    // serde's message could quote the secret's text: say where, not what.
    serde_json::from_str(text).map_err(|e| AwsError::Corrupt {
        what: format!("secret {id}"),
        reason: format!(
            "not the documented JSON (api_url, auth, key, secret, token_url, scope): line {}, column {}",
            e.line(),
            e.column()
        ),
    })
}

/// Writes a tenant's secret (creating it the first time).
pub fn put_secret(aws: &Aws, tenant: &str, secret: &TenantSecret) -> Result<(), AwsError> {
    let id = secret_id(&aws.names.table, tenant);
    let text = serde_json::to_string(secret).map_err(|e| AwsError::Corrupt {
        what: format!("secret {id}"),
        reason: e.to_string(),
    })?;
    let created = aws.bridge.run(
        aws.secrets
            .create_secret()
            .name(&id)
            .description(format!("rollcall: the OneRoster API of tenant {tenant}"))
            .secret_string(&text)
            .send(),
    );
    match created {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            aws.bridge
                .run(
                    aws.secrets
                        .put_secret_value()
                        .secret_id(&id)
                        .secret_string(&text)
                        .send(),
                )
                .map_err(|e| {
                    AwsError::call(
                        "Secrets Manager",
                        format!("writing secret {id}"),
                        crate::s3::describe(&e),
                    )
                })?;
            Ok(())
        }
        Err(e) => Err(AwsError::call(
            "Secrets Manager",
            format!("creating secret {id}"),
            crate::s3::describe(&e),
        )),
    }
}

/// The tenant's source as the secret says it (address and sign-in) with the tenant's own settings (page size,
/// cadence, cursor).
pub fn source_of(tenant: &ApiSource, secret: &TenantSecret) -> ApiSource {
    let mut source = tenant.clone();
    source.api_url = secret.api_url.trim_end_matches('/').to_string();
    source.auth = secret.auth;
    source.token_url = secret.token_url.clone();
    source.scope = secret.scope.clone();
    source
}

/// Zips a bundle folder's files (not its subfolders) into `out`.
fn zip_folder(dir: &Path, out: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(out)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    let mut buf = vec![0u8; 1 << 16];
    for name in names {
        zip.start_file(name.as_str(), options)
            .map_err(std::io::Error::other)?;
        let mut input = std::fs::File::open(dir.join(&name))?;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            zip.write_all(&buf[..n])?;
        }
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

/// What a pull or a check of one tenant works with.
struct Reach {
    tenant: Tenant,
    /// The tenant's stored settings (cursor, cadence).
    settings: ApiSource,
    /// The settings with the secret's address and signing method.
    source: ApiSource,
    client: Client,
}

impl Pipeline<'_> {
    /// Pulls one API tenant and writes the bundle where the upload path takes it. The answer says what was
    /// pulled and where it went; a pull that fails is `Refused` (the provider said no, or the secret is wrong)
    /// or `Transient` (no answer).
    pub fn pull(&self, tenant_id: &str, full: bool) -> Result<serde_json::Value, StepError> {
        let refused = |e: &dyn fmt::Display| StepError::Refused(format!("tenant {tenant_id}: {e}"));
        let Reach {
            mut tenant,
            settings,
            source,
            client,
        } = self.reach(tenant_id, ClientOptions::default())?;
        let work = tempfile::tempdir().map_err(|e| StepError::Failed(e.to_string()))?;
        let dir = work.path().join("bundle");
        let options = PullOptions {
            full,
            ..PullOptions::default()
        };
        let pulled = pull::pull(&source, &client, &dir, &options).map_err(|e| match e {
            pull::PullError::Http(rollcall::pull::http::HttpError::Unreachable { .. })
            | pull::PullError::Http(rollcall::pull::http::HttpError::GaveUp { .. }) => {
                StepError::Transient(format!("tenant {tenant_id}: {e}"))
            }
            other => refused(&other),
        })?;
        let zipped = work.path().join("bundle.zip");
        zip_folder(&dir, &zipped)
            .map_err(|e| StepError::Failed(format!("zipping the pull: {e}")))?;
        let key = format!(
            "inbound/{tenant_id}/api/{}.zip",
            pulled.cursor.replace(':', "")
        );
        let mut file =
            std::fs::File::open(&zipped).map_err(|e| StepError::Failed(e.to_string()))?;
        rollcall::blob::BlobStore::put_from(&self.blobs, &key, &mut file)
            .map_err(|e| StepError::Transient(e.to_string()))?;
        // The cursor moves when this object's batch is applied.
        let mut api = settings;
        api.pending = Some(PendingPull {
            batch: String::new(),
            key: Some(key.clone()),
            cursor: pulled.cursor.clone(),
            started: pulled.started,
            full: pulled.mode == "bulk",
        });
        tenant.api = Some(api);
        self.store.put_tenant(&tenant)?;
        for warning in &pulled.warnings {
            tracing::warn!(tenant = %tenant_id, "{warning}");
        }
        let records: u64 = pulled.endpoints.iter().map(|e| e.records).sum();
        tracing::info!(tenant = %tenant_id, key = %key, mode = pulled.mode, records, "pulled");
        Ok(serde_json::json!({
            "tenant": tenant_id,
            "key": key,
            "mode": pulled.mode,
            "since": pulled.since,
            "cursor": pulled.cursor,
            "records": records,
            "endpoints": pulled.endpoints,
            "warnings": pulled.warnings,
        }))
    }

    /// `source check` from where pulls run: each endpoint asked for one record with the tenant's secret (a
    /// district that lets only the vendor's addresses in answers here, not on an operator's laptop).
    pub fn check_source(&self, tenant_id: &str) -> Result<pull::Check, StepError> {
        let Reach { source, client, .. } = self.reach(tenant_id, ClientOptions::probe())?;
        let check = pull::check(&source, &client);
        tracing::info!(tenant = %tenant_id, works = check.works, "source checked");
        Ok(check)
    }

    /// An API tenant, its settings, and a client signed in with its secret.
    fn reach(&self, tenant_id: &str, options: ClientOptions) -> Result<Reach, StepError> {
        let refused = |e: &dyn fmt::Display| StepError::Refused(format!("tenant {tenant_id}: {e}"));
        let tenant = self
            .store
            .get_tenant(tenant_id)?
            .ok_or_else(|| StepError::Refused(format!("there is no tenant {tenant_id:?}")))?;
        if tenant.source != SourceKind::Api {
            return Err(StepError::Refused(format!(
                "tenant {tenant_id} takes SFTP uploads, not API pulls"
            )));
        }
        let secret = get_secret(self.aws, tenant_id).map_err(|e| refused(&e))?;
        let settings = tenant
            .api
            .clone()
            .unwrap_or_else(|| ApiSource::new(&secret.api_url, secret.auth));
        let source = source_of(&settings, &secret);
        let credentials = Credentials {
            key: secret.key.clone(),
            secret: secret.secret.clone(),
        };
        let client = Client::new(&source, credentials, options).map_err(|e| refused(&e))?;
        Ok(Reach {
            tenant,
            settings,
            source,
            client,
        })
    }

    /// The tenants whose roster comes from pulls (what a scheduled run pulls).
    pub fn api_tenants(&self) -> Result<Vec<String>, StepError> {
        Ok(self
            .store
            .list_tenants()?
            .into_iter()
            .filter(|t| t.source == SourceKind::Api)
            .map(|t| t.id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_has_the_documented_shape_and_never_prints_its_secret() {
        let secret: TenantSecret = serde_json::from_str(
            r#"{"api_url":"https://x/ims/oneroster/v1p1","auth":"oauth2","key":"id","secret":"s3cr3t","token_url":"https://x/token"}"#,
        )
        .expect("secret");
        assert_eq!(secret.auth, Auth::OAuth2);
        assert_eq!(secret.scope, None);
        assert_eq!(
            format!("{secret:?}"),
            "https://x/ims/oneroster/v1p1 (oauth2), key=id, secret=(hidden)"
        );
        assert_eq!(
            secret_id("rollcall-dev", "maple"),
            "rollcall-dev/tenants/maple"
        );
    }
}
