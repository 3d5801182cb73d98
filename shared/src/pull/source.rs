//! Where a tenant's roster is pulled from: the OneRoster API's address and how to sign in (kept with the
//! tenant), the key and secret (kept apart from it: in a file only its owner may read, from environment
//! variables, or on AWS in Secrets Manager), and the delta cursor. A secret is never part of a tenant record, a
//! listing, a log line or an error message: [`Credentials`] prints as `key=…, secret=(hidden)`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// How rollcall signs in to the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// OAuth 1.0a request signing with HMAC-SHA256 (what ClassLink and most 1.1 servers take).
    #[default]
    #[serde(rename = "oauth1-sha256")]
    OAuth1Sha256,
    /// OAuth 1.0a with HMAC-SHA1, for servers that only take that.
    #[serde(rename = "oauth1-sha1")]
    OAuth1Sha1,
    /// OAuth 2 client credentials: a bearer token from the token URL.
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl Auth {
    pub fn name(self) -> &'static str {
        match self {
            Auth::OAuth1Sha256 => "oauth1-sha256",
            Auth::OAuth1Sha1 => "oauth1-sha1",
            Auth::OAuth2 => "oauth2",
        }
    }

    pub fn parse(name: &str) -> Option<Auth> {
        [Auth::OAuth1Sha256, Auth::OAuth1Sha1, Auth::OAuth2]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// The default page size asked of the provider.
pub const DEFAULT_PAGE_SIZE: u32 = 1_000;
/// By default a full (bulk) pull every week, deltas between.
pub const DEFAULT_FULL_EVERY_DAYS: u32 = 7;

/// A tenant's API source, as the tenant record keeps it (no secret in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSource {
    /// The provider's OneRoster 1.1 base, e.g. `https://district-ca-v2.oneroster.com/ims/oneroster/v1p1`.
    pub api_url: String,
    #[serde(default)]
    pub auth: Auth,
    /// OAuth 2's token URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth 2 scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_full_every")]
    pub full_every_days: u32,
    /// The delta cursor: the time taken just before the last applied pull began (ISO 8601 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// When the last applied full pull began (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full: Option<u64>,
    /// A pulled batch not applied yet (held for approval): its cursor moves the tenant's when it is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingPull>,
}

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}

fn default_full_every() -> u32 {
    DEFAULT_FULL_EVERY_DAYS
}

/// A pull whose batch waits for approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPull {
    /// The batch, when the pull ran the sync itself (locally); empty when the pipeline takes it from S3.
    #[serde(default)]
    pub batch: String,
    /// The object key the pulled bundle was written to (on AWS), which the batch records as its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The time taken just before it began (ISO 8601 UTC, and seconds since the epoch).
    pub cursor: String,
    pub started: u64,
    pub full: bool,
}

impl ApiSource {
    pub fn new(api_url: &str, auth: Auth) -> ApiSource {
        ApiSource {
            api_url: api_url.trim_end_matches('/').to_string(),
            auth,
            token_url: None,
            scope: None,
            page_size: DEFAULT_PAGE_SIZE,
            full_every_days: DEFAULT_FULL_EVERY_DAYS,
            cursor: None,
            last_full: None,
            pending: None,
        }
    }

    /// Whether the next pull is a full one: the first, one asked for, or one the cadence calls for.
    pub fn full_due(&self, now: u64, asked: bool) -> bool {
        let cadence = u64::from(self.full_every_days) * 86_400;
        asked
            || self.cursor.is_none()
            || self
                .last_full
                .is_none_or(|at| now.saturating_sub(at) >= cadence)
    }
}

/// A key and its secret. Formatting never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub key: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key={}, secret=(hidden)", self.key)
    }
}

/// The environment variables that give a pull its credentials instead of the credentials file.
pub const KEY_VAR: &str = "ROLLCALL_API_KEY";
pub const SECRET_VAR: &str = "ROLLCALL_API_SECRET";

/// Credentials could not be read or kept.
#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error(
        "no credentials for tenant {0}: set them with `source set`, or give {KEY_VAR} and {SECRET_VAR}"
    )]
    Missing(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a credentials file rollcall can read ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path} may be read by others (mode {mode:o}); make it readable by its owner only: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
}

/// Credentials kept locally: one file beside the roster database, readable by its owner only, holding each
/// tenant's key and secret.
pub struct CredentialsFile {
    path: PathBuf,
}

impl CredentialsFile {
    /// The credentials file of the roster database at `db` (`rollcall.db` → `rollcall.credentials.json`).
    pub fn beside(db: &Path) -> CredentialsFile {
        CredentialsFile {
            path: db.with_extension("credentials.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl Fn(std::io::Error) -> CredentialsError + '_ {
        |source| CredentialsError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read_all(&self) -> Result<BTreeMap<String, Credentials>, CredentialsError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.io()(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.path)
                .map_err(self.io())?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(CredentialsError::Exposed {
                    path: self.path.clone(),
                    mode,
                });
            }
        }
        serde_json::from_slice(&bytes).map_err(|e| CredentialsError::Corrupt {
            path: self.path.clone(),
            // The position only: serde's message may quote the file's bytes, which hold secrets.
            reason: format!("line {}, column {}", e.line(), e.column()),
        })
    }

    /// A tenant's credentials: from the environment when both variables are set, otherwise from the file.
    pub fn get(&self, tenant: &str) -> Result<Credentials, CredentialsError> {
        if let (Ok(key), Ok(secret)) = (std::env::var(KEY_VAR), std::env::var(SECRET_VAR))
            && !key.is_empty()
            && !secret.is_empty()
        {
            return Ok(Credentials { key, secret });
        }
        self.read_all()?
            .remove(tenant)
            .ok_or_else(|| CredentialsError::Missing(tenant.to_string()))
    }

    /// Keeps a tenant's credentials, writing the file readable by its owner only (a new file replaces the old
    /// one whole, so no reader sees half of it).
    pub fn put(&self, tenant: &str, credentials: &Credentials) -> Result<(), CredentialsError> {
        let mut all = self.read_all()?;
        all.insert(tenant.to_string(), credentials.clone());
        let text = serde_json::to_vec_pretty(&all).map_err(|e| CredentialsError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(self.io())?;
        }
        let temp = self.path.with_extension("json.new");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp).map_err(self.io())?;
        file.write_all(&text).map_err(self.io())?;
        file.sync_all().map_err(self.io())?;
        std::fs::rename(&temp, &self.path).map_err(self.io())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_their_secret() {
        let c = Credentials {
            key: "k1".into(),
            secret: "s3cr3t".into(),
        };
        assert_eq!(format!("{c:?}"), "key=k1, secret=(hidden)");
    }

    #[test]
    fn the_credentials_file_is_its_owners_only_and_refused_when_others_may_read_it() {
        let dir = tempfile::tempdir().expect("temp");
        let file = CredentialsFile::beside(&dir.path().join("rollcall.db"));
        let c = Credentials {
            key: "k1".into(),
            secret: "s3cr3t".into(),
        };
        file.put("maple", &c).expect("put");
        assert_eq!(file.get("maple").expect("get"), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
            let err = file.get("maple").expect_err("exposed");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn a_full_pull_is_due_first_on_demand_and_on_the_cadence() {
        let mut s = ApiSource::new("https://x/ims/oneroster/v1p1/", Auth::OAuth2);
        assert_eq!(s.api_url, "https://x/ims/oneroster/v1p1");
        assert!(s.full_due(1_000_000, false), "the first pull");
        s.cursor = Some("2026-12-01T00:00:00Z".into());
        s.last_full = Some(1_000_000);
        assert!(!s.full_due(1_000_000 + 86_400, false));
        assert!(s.full_due(1_000_000 + 86_400, true));
        assert!(s.full_due(1_000_000 + 7 * 86_400, false));
    }
}
