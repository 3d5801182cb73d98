//! The REST source commands: `source set` (where a tenant's roster is pulled from, and the credentials, kept
//! in a file only its owner may read), `source check` (each endpoint tried once, with a verdict in plain words)
//! and `pull` (pull, write the bundle, and run it through `sync`). The library pulls; here arguments are read,
//! the outcome printed, and the tenant's delta cursor moved when the batch is applied.

use crate::ReportFormat;
use crate::roster::{DbArgs, exit_for, local, print_outcome, waiting};
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rollcall::NoProgress;
use rollcall::model::{SourceKind, iso_time};
use rollcall::pull::http::{Client, ClientOptions};
use rollcall::pull::source::{
    ApiSource, Auth, Credentials, CredentialsFile, DEFAULT_FULL_EVERY_DAYS, DEFAULT_PAGE_SIZE,
    PendingPull, SECRET_VAR,
};
use rollcall::pull::{self, PullOptions};
use rollcall::store::TenantStore;
use rollcall::sync::{SyncOptions, SyncStatus};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    #[value(name = "oauth1-sha256")]
    OAuth1Sha256,
    #[value(name = "oauth1-sha1")]
    OAuth1Sha1,
    #[value(name = "oauth2")]
    OAuth2,
}

impl AuthArg {
    pub(crate) fn auth(self) -> Auth {
        match self {
            AuthArg::OAuth1Sha256 => Auth::OAuth1Sha256,
            AuthArg::OAuth1Sha1 => Auth::OAuth1Sha1,
            AuthArg::OAuth2 => Auth::OAuth2,
        }
    }
}

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Pull the tenant's roster from its OneRoster 1.1 API: the address, how to sign in, key and secret.
    #[command(
        after_help = "Examples:\n  rollcall source set --tenant maple --api-url https://maple-ca-v2.oneroster.com/ims/oneroster/v1p1 --key KEY --secret-stdin < secret.txt\n  ROLLCALL_API_SECRET=... rollcall source set --tenant maple --api-url URL --auth oauth2 --key ID --token-url URL\n\n\
The secret comes from --secret-stdin, the ROLLCALL_API_SECRET variable, or --secret (which leaves it in shell history)."
    )]
    Set(SetArgs),
    /// Try each endpoint once and say, in plain words, whether a pull would work.
    #[command(
        after_help = "Example:\n  rollcall source check --tenant maple\n\nExit codes: 0 a pull would work; 2 it would not."
    )]
    Check(CheckArgs),
}

#[derive(Args)]
pub struct SetArgs {
    /// The tenant whose roster comes from the API.
    #[arg(long)]
    pub(crate) tenant: String,
    /// The provider's OneRoster 1.1 base URL (it usually ends in /ims/oneroster/v1p1).
    #[arg(long, value_name = "URL")]
    pub(crate) api_url: String,
    /// How rollcall signs in.
    #[arg(long, value_enum, default_value_t = AuthArg::OAuth1Sha256)]
    pub(crate) auth: AuthArg,
    /// The consumer key (OAuth 1.0a) or client id (OAuth 2).
    #[arg(long)]
    pub(crate) key: String,
    /// The secret (better: --secret-stdin or ROLLCALL_API_SECRET, which stay out of shell history).
    #[arg(long, env = SECRET_VAR, hide_env_values = true, conflicts_with = "secret_stdin")]
    pub(crate) secret: Option<String>,
    /// Read the secret from standard input (one line).
    #[arg(long)]
    pub(crate) secret_stdin: bool,
    /// OAuth 2's token URL.
    #[arg(long, value_name = "URL")]
    pub(crate) token_url: Option<String>,
    /// OAuth 2 scopes, space-separated.
    #[arg(long)]
    pub(crate) scope: Option<String>,
    /// Records asked for per page.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PAGE_SIZE)]
    pub(crate) page_size: u32,
    /// Days between full pulls (deltas in between).
    #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_FULL_EVERY_DAYS)]
    pub(crate) full_every: u32,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The tenant whose source is checked.
    #[arg(long)]
    pub(crate) tenant: String,
}

#[derive(Args)]
pub struct PullArgs {
    /// The tenant to pull.
    #[arg(long)]
    pub(crate) tenant: String,
    /// A full (bulk) pull even when a delta would do.
    #[arg(long)]
    pub(crate) full: bool,
    /// Where to write the pulled bundle (default: beside the database, under pulls/TENANT/TIME).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Output format (as for sync; json adds what was pulled under "pull").
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,
    /// Seconds to wait for another run of the same tenant to finish.
    #[arg(long, default_value_t = 600)]
    pub(crate) wait: u64,
}

fn secret_of(args: &SetArgs) -> anyhow::Result<String> {
    let secret = if args.secret_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the secret from standard input")?;
        text.trim_end_matches(['\r', '\n']).to_string()
    } else {
        args.secret.clone().unwrap_or_default()
    };
    if secret.is_empty() {
        bail!("no secret given: use --secret-stdin, the {SECRET_VAR} variable, or --secret");
    }
    Ok(secret)
}

pub fn run_source(db: &DbArgs, command: &SourceCommand) -> anyhow::Result<ExitCode> {
    match command {
        SourceCommand::Set(args) => set(db, args),
        SourceCommand::Check(args) => check(db, args),
    }
}

/// The source and credentials `source set` gives, checked (the secret read from where it was given).
pub(crate) fn source_from(args: &SetArgs) -> anyhow::Result<(ApiSource, Credentials)> {
    let url = url::Url::parse(&args.api_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if url.is_none() {
        bail!(
            "--api-url {:?} is not an http(s) URL; give the provider's OneRoster base, e.g. https://host/ims/oneroster/v1p1",
            args.api_url
        );
    }
    if args.auth == AuthArg::OAuth2 && args.token_url.is_none() {
        bail!("--auth oauth2 needs --token-url (the provider's token endpoint)");
    }
    if !(1..=100_000).contains(&args.page_size) {
        bail!("--page-size must be between 1 and 100000");
    }
    if args.full_every == 0 {
        bail!("--full-every must be at least 1 day");
    }
    let secret = secret_of(args)?;
    let mut source = ApiSource::new(&args.api_url, args.auth.auth());
    source.token_url = args.token_url.clone();
    source.scope = args.scope.clone();
    source.page_size = args.page_size;
    source.full_every_days = args.full_every;
    Ok((
        source,
        Credentials {
            key: args.key.clone(),
            secret,
        },
    ))
}

/// Gives `tenant` its new API source (the same server keeps its cursor; a new one starts with a full pull) and
/// says so, naming where the secret is kept.
pub(crate) fn set_tenant_source(
    store: &dyn TenantStore,
    tenant_id: &str,
    mut source: ApiSource,
    key: &str,
    kept: &str,
) -> anyhow::Result<()> {
    let Some(mut tenant) = store.get_tenant(tenant_id)? else {
        bail!(rollcall::sync::SyncError::UnknownTenant(
            tenant_id.to_string()
        ));
    };
    if let Some(old) = tenant
        .api
        .take()
        .filter(|old| old.api_url == source.api_url)
    {
        source.cursor = old.cursor;
        source.last_full = old.last_full;
    }
    let next = if source.cursor.is_some() {
        "the next pull is a delta"
    } else {
        "the next pull is a full one"
    };
    outln!(
        "tenant {} pulls from {} ({}, key {key}; the secret is kept in {kept}); {next}",
        tenant.id,
        source.api_url,
        source.auth.name(),
    );
    tenant.source = SourceKind::Api;
    tenant.api = Some(source);
    store.put_tenant(&tenant)?;
    Ok(())
}

fn set(db: &DbArgs, args: &SetArgs) -> anyhow::Result<ExitCode> {
    let (source, credentials) = source_from(args)?;
    let store = db.open()?;
    if store.get_tenant(&args.tenant)?.is_none() {
        bail!(rollcall::sync::SyncError::UnknownTenant(
            args.tenant.clone()
        ));
    }
    let file = CredentialsFile::beside(&db.db);
    file.put(&args.tenant, &credentials)?;
    let kept = format!("{}, readable by its owner only", file.path().display());
    set_tenant_source(&store, &args.tenant, source, &args.key, &kept)?;
    Ok(ExitCode::SUCCESS)
}

/// The tenant's API source and a client for it.
fn client_for(
    db: &DbArgs,
    tenant_id: &str,
    store: &dyn TenantStore,
    options: ClientOptions,
) -> anyhow::Result<(rollcall::model::Tenant, ApiSource, Client)> {
    let Some(tenant) = store.get_tenant(tenant_id)? else {
        bail!(rollcall::sync::SyncError::UnknownTenant(
            tenant_id.to_string()
        ));
    };
    let Some(source) = tenant.api.clone() else {
        bail!(
            "tenant {tenant_id} has no API source; set one with `rollcall source set --tenant {tenant_id} --api-url URL --auth ... --key ...`"
        );
    };
    let credentials = CredentialsFile::beside(&db.db).get(tenant_id)?;
    let client = Client::new(&source, credentials, options)?;
    Ok((tenant, source, client))
}

fn check(db: &DbArgs, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let store = db.open_read()?;
    let (_, source, client) = client_for(db, &args.tenant, &store, ClientOptions::probe())?;
    Ok(print_check(&pull::check(&source, &client)))
}

/// Tries each endpoint once and prints a verdict per endpoint: exit 0 when a pull would work.
pub(crate) fn print_check(check: &pull::Check) -> ExitCode {
    outln!("{} ({})", check.api_url, check.auth);
    for endpoint in &check.endpoints {
        outln!("  {:<17} {}", endpoint.endpoint, endpoint.words);
    }
    if check.works {
        outln!("a pull would work");
        ExitCode::SUCCESS
    } else {
        outln!("a pull would not work: see above");
        ExitCode::from(2)
    }
}

pub fn run_pull(db: &DbArgs, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let store = db.open()?;
    let blobs = db.blobs();
    let (tenant, source, client) = client_for(db, &args.tenant, &store, ClientOptions::default())?;
    if tenant.source != SourceKind::Api {
        bail!(
            "tenant {} takes SFTP uploads; `rollcall tenant set {} --source api` switches it to pulls",
            tenant.id,
            tenant.id
        );
    }
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            // One folder per pull, named by its time (a second pull in the same second gets a suffix).
            let stem = iso_time(rollcall::model::now()).replace(':', "");
            let parent = db.db.with_extension("pulls").join(&tenant.id);
            (1..)
                .map(|n| match n {
                    1 => parent.join(&stem),
                    n => parent.join(format!("{stem}-{n}")),
                })
                .find(|dir| !dir.exists())
                .unwrap_or_else(|| parent.join(stem))
        }
    };
    if out.join("manifest.csv").exists() {
        bail!(
            "{} already holds a bundle; give another --out",
            out.display()
        );
    }
    let options = PullOptions {
        full: args.full,
        ..PullOptions::default()
    };
    let pulled = match pull::pull(&source, &client, &out, &options) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: the pull of tenant {} failed: {e}", tenant.id);
            return Ok(ExitCode::from(2));
        }
    };
    for warning in &pulled.warnings {
        eprintln!("warning: {warning}");
    }
    let records: u64 = pulled.endpoints.iter().map(|e| e.records).sum();
    let since = pulled
        .since
        .as_deref()
        .map(|s| format!(" of what changed since {s}"))
        .unwrap_or_default();
    eprintln!(
        "pulled a {} bundle{since}: {records} records into {}",
        pulled.mode,
        pulled.bundle.display()
    );
    let opts = SyncOptions {
        source: SourceKind::Api,
        ..SyncOptions::default()
    };
    let local = local(&store, &blobs);
    let outcome = waiting(Duration::from_secs(args.wait), || {
        local.sync_path(&tenant.id, &pulled.bundle, &opts, &NoProgress)
    })?;
    let full = pulled.mode == "bulk";
    if let Some(mut t) = store.get_tenant(&tenant.id)?
        && let Some(api) = t.api.as_mut()
    {
        match outcome.status {
            SyncStatus::Applied | SyncStatus::AlreadyApplied => {
                pull::applied(api, &pulled.cursor, pulled.started, full);
                store.put_tenant(&t)?;
            }
            SyncStatus::Held => {
                api.pending = Some(PendingPull {
                    batch: outcome.batch.clone(),
                    key: None,
                    cursor: pulled.cursor.clone(),
                    started: pulled.started,
                    full,
                });
                store.put_tenant(&t)?;
            }
            SyncStatus::Rejected | SyncStatus::Planned => {}
        }
    }
    print_pulled(
        &outcome,
        serde_json::to_value(&pulled).unwrap_or_default(),
        args.format,
    );
    Ok(exit_for(outcome.status))
}

/// A pull's outcome as `sync` prints it; JSON adds what was pulled under `"pull"`.
pub(crate) fn print_pulled(
    outcome: &rollcall::sync::SyncOutcome,
    pulled: serde_json::Value,
    format: ReportFormat,
) {
    match format {
        ReportFormat::Text => print_outcome(outcome, format),
        ReportFormat::Json => {
            let mut value = serde_json::to_value(outcome).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("pull".into(), pulled);
            }
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
    }
}
