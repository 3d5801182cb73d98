//! The roster commands: tenants, sync, approval, rollback, manual edits and reading, on the embedded store.
//! The library does the work; here the arguments are read, the lease is waited for (saying for whom), and
//! the outcome is printed.

use crate::progress::Bar;
use crate::{LimitArgs, ReportFormat, stdout_style};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rollcall::apply::edit;
use rollcall::blob::local::LocalBlobs;
use rollcall::model::{Batch, Entity, Policy, Record, SourceKind, Tenant, Threshold, iso_time};
use rollcall::store::sqlite::SqliteStore;
use rollcall::store::{EnrollmentsOf, Store, StoreError, for_each_record};
use rollcall::sync::lease::{Holder, Liveness, LocalLiveness, describe_holder, unlock};
use rollcall::sync::{Local, SyncError, SyncOptions, SyncOutcome, SyncStatus};
use rollcall::validate::report::plural;
use rollcall::{NoProgress, Progress};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the roster database is.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// The roster database file (default: .rollcall/rollcall.db in the working folder).
    #[arg(
        long,
        env = "ROLLCALL_DB",
        global = true,
        default_value = ".rollcall/rollcall.db"
    )]
    pub db: PathBuf,
}

impl DbArgs {
    /// The database, created if it is not there yet (for commands that write).
    pub fn open(&self) -> anyhow::Result<SqliteStore> {
        Ok(SqliteStore::open(&self.db)?)
    }

    /// The database for reading only: nothing is created at a mistyped path, and a database this user may
    /// read but not write can still be read.
    pub fn open_read(&self) -> anyhow::Result<SqliteStore> {
        Ok(SqliteStore::open_read_only(&self.db)?)
    }

    /// Staged plans and kept bundles live in a folder beside the database, named after it.
    pub fn blobs(&self) -> LocalBlobs {
        LocalBlobs::new(&self.db.with_extension("blobs"))
    }
}

/// This process's view of a local run: the store, its blobs, and this process as the lease holder.
pub fn local<'a>(store: &'a SqliteStore, blobs: &'a LocalBlobs) -> Local<'a> {
    Local {
        store,
        blobs,
        holder: Holder::this_process(),
        liveness: &LocalLiveness,
    }
}

/// Runs `work` until it gets the tenant's lease, waiting up to `wait` while another run holds it (and saying
/// so once, on standard error).
pub fn waiting<T>(
    wait: Duration,
    mut work: impl FnMut() -> Result<T, SyncError>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut said = false;
    loop {
        let busy = match work() {
            Err(SyncError::Leased { tenant, lease }) => format!(
                "tenant {tenant} is busy: {} is running a {} (since {})",
                describe_holder(&lease.holder),
                lease.purpose,
                iso_time(lease.acquired_at)
            ),
            Err(SyncError::Store(StoreError::Busy { doing })) => {
                format!("the roster database is busy with another run's writes (while {doing})")
            }
            other => return Ok(other?),
        };
        if started.elapsed() >= wait {
            anyhow::bail!(
                "{busy}, and it did not finish within {}s; try again when it is done (if that run is gone, `rollcall tenant unlock` clears its lease)",
                wait.as_secs()
            );
        }
        if !said {
            eprintln!("waiting up to {}s: {busy}", wait.as_secs());
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Keep what people changed by hand (also spelled preserve_manual, as the policy is stored).
    #[value(alias = "preserve_manual")]
    PreserveManual,
    /// The district's system wins (also spelled sis_wins).
    #[value(alias = "sis_wins")]
    SisWins,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Sftp,
    Api,
}

/// A tenant's settings; on `tenant set` only the ones given change.
#[derive(Args)]
pub struct TenantSettings {
    /// Display name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// What a sync may do to manual work.
    #[arg(long, value_enum)]
    pub(crate) policy: Option<PolicyArg>,
    /// Where bundles come from (one source per tenant).
    #[arg(long, value_enum)]
    pub(crate) source: Option<SourceArg>,
    /// Only these schools (sourcedId or identifier); repeat for several.
    #[arg(long = "school", value_name = "SCHOOL")]
    pub(crate) schools: Vec<String>,
    /// Only users with these roles; repeat for several.
    #[arg(long = "role", value_name = "ROLE")]
    pub(crate) roles: Vec<String>,
    /// Only students in these CEDS grades; repeat for several.
    #[arg(long = "grade", value_name = "GRADE")]
    pub(crate) grades: Vec<String>,
    /// Clear the school, role and grade filters.
    #[arg(long)]
    pub(crate) clear_filters: bool,
    /// Hold a sync that would archive more than this fraction of an entity's active records (0.10 = 10 %).
    #[arg(long, value_name = "FRACTION")]
    pub(crate) archive_threshold: Option<f64>,
    /// Hold a sync that would update more than this fraction of an entity's active records.
    #[arg(long, value_name = "FRACTION")]
    pub(crate) update_threshold: Option<f64>,
    /// A threshold for one entity, as ENTITY:ARCHIVE:UPDATE (for example enrollments:0.2:0.8); repeat for several.
    #[arg(long = "entity-threshold", value_name = "ENTITY:ARCHIVE:UPDATE")]
    pub(crate) entity_thresholds: Vec<String>,
    /// Refuse records created by hand (the district's system is the only source).
    #[arg(long)]
    pub(crate) no_manual_creation: bool,
    /// Allow records created by hand again.
    #[arg(long, conflicts_with = "no_manual_creation")]
    pub(crate) manual_creation: bool,
    /// With --aws: the district's SSH public key (OpenSSH format) for its SFTP user, which is created (or
    /// gets the key added) and confined to the tenant's inbound folder.
    #[arg(long, value_name = "FILE")]
    pub sftp_key: Option<PathBuf>,
}

impl TenantSettings {
    fn apply(&self, t: &mut Tenant) -> anyhow::Result<()> {
        if let Some(name) = &self.name {
            t.name = name.clone();
        }
        if let Some(p) = self.policy {
            t.policy = match p {
                PolicyArg::PreserveManual => Policy::PreserveManual,
                PolicyArg::SisWins => Policy::SisWins,
            };
        }
        if let Some(s) = self.source {
            t.source = match s {
                SourceArg::Sftp => SourceKind::Sftp,
                SourceArg::Api => SourceKind::Api,
            };
        }
        if self.clear_filters {
            t.filters = Default::default();
        }
        t.filters.schools.extend(self.schools.iter().cloned());
        t.filters.roles.extend(self.roles.iter().cloned());
        t.filters.grades.extend(self.grades.iter().cloned());
        let problems = t.filters.problems();
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        for (value, name) in [
            (self.archive_threshold, "--archive-threshold"),
            (self.update_threshold, "--update-threshold"),
        ] {
            if let Some(v) = value {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&v),
                    "{name} is a fraction between 0 and 1, for example 0.1 for 10 %"
                );
            }
        }
        t.threshold = Threshold {
            archive: self.archive_threshold.unwrap_or(t.threshold.archive),
            update: self.update_threshold.unwrap_or(t.threshold.update),
        };
        for spec in &self.entity_thresholds {
            let parts: Vec<&str> = spec.split(':').collect();
            let parsed = match parts.as_slice() {
                [e, a, u] => Entity::parse(e)
                    .zip(a.parse::<f64>().ok())
                    .zip(u.parse::<f64>().ok()),
                _ => None,
            };
            let ((entity, archive), update) = parsed
                .filter(|((_, a), u)| (0.0..=1.0).contains(a) && (0.0..=1.0).contains(u))
                .with_context(|| {
                    format!("--entity-threshold takes ENTITY:ARCHIVE:UPDATE with fractions, for example enrollments:0.2:0.8; got {spec:?}")
                })?;
            t.thresholds.insert(entity, Threshold { archive, update });
        }
        if self.no_manual_creation {
            t.manual_creation = false;
        }
        if self.manual_creation {
            t.manual_creation = true;
        }
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Add a tenant (a district).
    #[command(
        after_help = "Example:\n  rollcall tenant add maple --name \"Maple Valley USD\" --policy preserve_manual --school sch-0001"
    )]
    Add {
        /// The tenant's id: lowercase letters, digits, '-' and '_' (it becomes an S3 prefix and DynamoDB keys).
        id: String,
        #[command(flatten)]
        settings: TenantSettings,
    },
    /// Change a tenant's settings.
    #[command(
        after_help = "Example:\n  rollcall tenant set maple --archive-threshold 0.2 --policy sis_wins"
    )]
    Set {
        /// The tenant to change.
        id: String,
        #[command(flatten)]
        settings: TenantSettings,
    },
    /// List tenants with their settings.
    #[command(after_help = "Example:\n  rollcall tenant list")]
    List,
    /// Clear a tenant's lease left by a run that died (refused while its holder is alive).
    #[command(after_help = "Example:\n  rollcall tenant unlock maple")]
    Unlock {
        /// The tenant whose lease to clear.
        id: String,
    },
}

pub fn run_tenant(db: &DbArgs, command: &TenantCommand) -> anyhow::Result<ExitCode> {
    let store = match command {
        TenantCommand::List => db.open_read()?,
        _ => db.open()?,
    };
    if let TenantCommand::Add { settings, .. } | TenantCommand::Set { settings, .. } = command {
        anyhow::ensure!(
            settings.sftp_key.is_none(),
            "--sftp-key sets the tenant's SFTP user on a deployed stack: give --aws as well"
        );
    }
    tenants(&store, command, &LocalLiveness)
}

/// The tenant commands on any store.
pub fn tenants(
    store: &dyn Store,
    command: &TenantCommand,
    liveness: &dyn Liveness,
) -> anyhow::Result<ExitCode> {
    match command {
        TenantCommand::Add { id, settings } => {
            if let Some(problem) = rollcall::model::tenant_id_problem(id) {
                anyhow::bail!("{problem}");
            }
            anyhow::ensure!(
                store.get_tenant(id)?.is_none(),
                "tenant {id} exists already; change it with `rollcall tenant set {id}`"
            );
            let mut t = Tenant::new(id);
            settings.apply(&mut t)?;
            known_schools(store, &t)?;
            store.put_tenant(&t)?;
            outln!("added tenant {}", describe_tenant(&t));
        }
        TenantCommand::Set { id, settings } => {
            let mut t = store.get_tenant(id)?.with_context(|| {
                format!("there is no tenant {id:?}; add it with `rollcall tenant add {id}`")
            })?;
            settings.apply(&mut t)?;
            known_schools(store, &t)?;
            store.put_tenant(&t)?;
            outln!("updated tenant {}", describe_tenant(&t));
        }
        TenantCommand::Unlock { id } => {
            store.get_tenant(id)?.with_context(|| {
                format!("there is no tenant {id:?}; add it with `rollcall tenant add {id}`")
            })?;
            match unlock(store, id, liveness)? {
                Ok(None) => outln!("tenant {id} has no lease; nothing to clear"),
                Ok(Some((lease, why))) => outln!(
                    "cleared tenant {id}'s lease, held by {} for a {} since {}: {why}",
                    describe_holder(&lease.holder),
                    lease.purpose,
                    iso_time(lease.acquired_at)
                ),
                Err(lease) => anyhow::bail!(
                    "tenant {id}'s lease is held by {}, which is alive and running a {} (since {}); it was not cleared",
                    describe_holder(&lease.holder),
                    lease.purpose,
                    iso_time(lease.acquired_at)
                ),
            }
        }
        TenantCommand::List => {
            let tenants = store.list_tenants()?;
            if tenants.is_empty() {
                outln!("no tenants yet; add one with `rollcall tenant add ID`");
            }
            for t in tenants {
                outln!("{}", describe_tenant(&t));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A school filter names an org of the tenant's roster, by sourcedId or identifier (checked once the roster
/// has orgs; before the first sync there is nothing to check against).
fn known_schools(store: &dyn Store, t: &Tenant) -> anyhow::Result<()> {
    if t.filters.schools.is_empty() {
        return Ok(());
    }
    let mut known = std::collections::BTreeSet::new();
    for_each_record::<StoreError>(store, &t.id, Entity::Orgs, None, None, |org| {
        known.insert(org.sourced_id.clone());
        if let Some(identifier) = org.fields.get("identifier") {
            known.insert(identifier.clone());
        }
        Ok(())
    })?;
    if known.is_empty() {
        return Ok(());
    }
    let unknown: Vec<&String> = t
        .filters
        .schools
        .iter()
        .filter(|s| !known.contains(*s))
        .collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "school filter: tenant {} has no org with the sourcedId or identifier {}; `rollcall show --tenant {} orgs` \
         lists them",
        t.id,
        unknown
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.id
    );
    Ok(())
}

fn describe_tenant(t: &Tenant) -> String {
    // Where an API tenant pulls from, and its delta cursor (never its key or secret).
    let api = t.api.as_ref().map_or(String::new(), |a| {
        let cursor = a.cursor.as_deref().map_or(
            "no delta cursor yet (the next pull is full)".to_string(),
            |c| format!("delta cursor {c}"),
        );
        let pending = a.pending.as_ref().map_or(String::new(), |p| {
            format!(", pulled batch {} waits for approval", p.batch)
        });
        format!(
            ", pulls from {} ({}), {cursor}{pending}",
            a.api_url,
            a.auth.name()
        )
    });
    format!(
        "{} ({}): policy {}, source {}, hold above {:.0}% archived or {:.0}% updated, filters: {}, manual creation {}",
        t.id,
        t.name,
        t.policy.as_str(),
        match t.source {
            SourceKind::Sftp => "sftp",
            SourceKind::Api => "api",
        },
        t.threshold.archive * 100.0,
        t.threshold.update * 100.0,
        t.filters.describe(),
        if t.manual_creation {
            "allowed"
        } else {
            "refused"
        }
    ) + &api
}

#[derive(Args)]
pub struct SyncArgs {
    /// The bundle: a .zip, a folder of CSV files, or a single CSV file.
    pub(crate) path: PathBuf,
    /// The tenant the bundle is for.
    #[arg(long)]
    pub(crate) tenant: String,
    /// Plan and report what would change; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// With --dry-run: write the plan into this folder (plan.json, and its changes as JSON Lines) to read.
    #[arg(long, value_name = "DIR", requires = "dry_run")]
    pub(crate) plan_out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,
    /// Seconds to wait for another sync of the same tenant to finish.
    #[arg(long, default_value_t = 600)]
    pub(crate) wait: u64,
    /// The path the bundle arrived by; a tenant takes bundles from its own source only.
    #[arg(long, value_enum, default_value_t = SourceArg::Sftp)]
    pub(crate) source: SourceArg,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

pub fn run_sync(db: &DbArgs, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let store = db.open()?;
    let blobs = db.blobs();
    let mut opts = SyncOptions {
        dry_run: args.dry_run,
        limits: args.limits.limits(),
        plan_out: args.plan_out.clone(),
        ..SyncOptions::default()
    };
    opts.source = match args.source {
        SourceArg::Sftp => SourceKind::Sftp,
        SourceArg::Api => SourceKind::Api,
    };
    let bar = match args.format {
        ReportFormat::Text => Bar::for_terminal(),
        ReportFormat::Json => None,
    };
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let local = local(&store, &blobs);
    let mut outcome = waiting(Duration::from_secs(args.wait), || {
        local.sync_path(&args.tenant, &args.path, &opts, progress)
    })?;
    locate_report(&mut outcome, |key| {
        blobs
            .path_of(key)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| key.to_string())
    });
    print_outcome(&outcome, args.format);
    if outcome.status == SyncStatus::Rejected && outcome.report.as_ref().is_some_and(|r| r.valid) {
        // A valid bundle refused: it came by the path the tenant does not take.
        eprintln!(
            "hint: `rollcall tenant set {} --source sftp|api` changes where the tenant's bundles come from",
            args.tenant
        );
    }
    if let Some(dir) = &args.plan_out {
        eprintln!(
            "the plan is in {} (plan.json, and the changes under chunks/)",
            dir.display()
        );
    }
    Ok(exit_for(outcome.status))
}

/// 0 applied, planned or already applied; 1 rejected (invalid bundle); 3 held for approval.
pub(crate) fn exit_for(status: SyncStatus) -> ExitCode {
    match status {
        SyncStatus::Applied | SyncStatus::Planned | SyncStatus::AlreadyApplied => ExitCode::SUCCESS,
        SyncStatus::Rejected => ExitCode::from(1),
        SyncStatus::Held => ExitCode::from(3),
    }
}

/// Turns a rejection's report key into where a person finds the report (a path, an S3 URL).
pub fn locate_report(outcome: &mut SyncOutcome, place: impl Fn(&str) -> String) {
    if let Some(rejection) = outcome.rejection.as_mut().filter(|r| !r.report.is_empty()) {
        rejection.report = place(&rejection.report);
    }
}

pub fn print_outcome(outcome: &SyncOutcome, format: ReportFormat) {
    match format {
        ReportFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(outcome).unwrap_or_default()
        ),
        ReportFormat::Text => out!("{}", outcome_text(outcome)),
    }
}

/// The per-entity table and what happened.
pub fn outcome_text(outcome: &SyncOutcome) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for note in &outcome.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if let (SyncStatus::Rejected, Some(report)) = (outcome.status, &outcome.report) {
        out.push_str(&report.render_text(stdout_style(), 3));
    }
    if let Some(rejection) = outcome.rejection.as_ref().filter(|r| !r.report.is_empty()) {
        let _ = writeln!(out, "the report is kept at {}", rejection.report);
    }
    if !outcome.counts.is_empty() && outcome.status != SyncStatus::AlreadyApplied {
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>13}",
            "entity",
            "create",
            "update",
            "archive",
            "restore",
            "unchanged",
            "kept_manual",
            "out_of_scope"
        );
        for (entity, c) in &outcome.counts {
            let _ = writeln!(
                out,
                "{:<18} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>13}",
                entity.name(),
                c.create,
                c.update,
                c.archive,
                c.restore,
                c.unchanged,
                c.kept_manual,
                c.out_of_scope
            );
        }
    }
    // The records behind the counts worth a look.
    for ((entity, action), ids) in &outcome.samples {
        let c = outcome.counts.get(entity).copied().unwrap_or_default();
        let total = match *action {
            "update" => c.update,
            "archive" => c.archive,
            "restore" => c.restore,
            _ => c.kept_manual,
        };
        let shown = &ids[..ids.len().min(5)];
        let more = total.saturating_sub(shown.len() as u64);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(out, "  {entity} {action}: {}{more}", shown.join(", "));
    }
    let label = if outcome.status == SyncStatus::Rejected {
        "rejected"
    } else {
        "held"
    };
    for reason in &outcome.held_reasons {
        let _ = writeln!(out, "{label}: {reason}");
    }
    if outcome.moved > 0 {
        let _ = writeln!(
            out,
            "{} changed after they were planned (by hand, most likely) and were merged again under the tenant's policy; the counts say where they landed",
            plural(outcome.moved, "record")
        );
    }
    let next = match outcome.status {
        SyncStatus::Applied => format!("applied ({} written)", plural(outcome.writes, "record")),
        SyncStatus::Planned => "planned (dry run: nothing changed)".to_string(),
        SyncStatus::Held => format!(
            "held for approval: `rollcall approve {0}` applies it, `rollcall reject {0}` discards it",
            outcome.batch
        ),
        SyncStatus::Rejected if !outcome.held_reasons.is_empty() => {
            "rejected: nothing was changed".to_string()
        }
        SyncStatus::Rejected => "rejected: the bundle is invalid, nothing was changed".to_string(),
        SyncStatus::AlreadyApplied => {
            "already applied: this bundle was synced before, nothing to do".to_string()
        }
    };
    let _ = writeln!(
        out,
        "batch {}: {next} ({}, {})",
        outcome.batch,
        plural(outcome.findings.errors, "error"),
        plural(outcome.findings.warnings, "warning")
    );
    out
}

#[derive(Args)]
pub struct BatchArgs {
    /// The batch id (`rollcall history --tenant T` lists them).
    pub(crate) batch: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,
    /// Seconds to wait for another run of the same tenant to finish.
    #[arg(long, default_value_t = 600)]
    pub(crate) wait: u64,
}

pub fn run_approve(db: &DbArgs, args: &BatchArgs) -> anyhow::Result<ExitCode> {
    let store = db.open()?;
    let blobs = db.blobs();
    let local = local(&store, &blobs);
    let outcome = waiting(Duration::from_secs(args.wait), || {
        local.approve(&args.batch, &SyncOptions::default())
    })?;
    print_outcome(&outcome, args.format);
    Ok(ExitCode::SUCCESS)
}

pub fn run_reject(db: &DbArgs, args: &BatchArgs) -> anyhow::Result<ExitCode> {
    let store = db.open()?;
    let blobs = db.blobs();
    let local = local(&store, &blobs);
    let batch = waiting(Duration::from_secs(args.wait), || {
        local.reject(&args.batch, &SyncOptions::default())
    })?;
    outln!("batch {} rejected: nothing from it was applied", batch.id);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The applied batch to undo.
    pub(crate) batch: String,
    /// Restore this batch's prior states even where later batches or manual edits changed the same records.
    #[arg(long)]
    pub(crate) force: bool,
    /// Seconds to wait for another run of the same tenant to finish.
    #[arg(long, default_value_t = 600)]
    pub(crate) wait: u64,
}

pub fn run_rollback(db: &DbArgs, args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let store = db.open()?;
    let blobs = db.blobs();
    let local = local(&store, &blobs);
    let batch = waiting(Duration::from_secs(args.wait), || {
        local.rollback(&args.batch, args.force, &SyncOptions::default())
    })?;
    outln!(
        "batch {} rolled back: every record it changed is as it was before",
        batch.id
    );
    Ok(ExitCode::SUCCESS)
}

/// An entity name as OneRoster spells it.
fn entity(name: &str) -> anyhow::Result<Entity> {
    Entity::parse(name).with_context(|| {
        let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
        format!("{name:?} is not an entity; use one of {}", names.join(", "))
    })
}

#[derive(Args)]
pub struct EditArgs {
    /// The tenant (district) whose roster this reads or changes.
    #[arg(long)]
    tenant: String,
    /// orgs, academicSessions, courses, classes, users, demographics or enrollments.
    entity: String,
    /// The record's sourcedId.
    sourced_id: String,
    /// FIELD=VALUE to set (an empty VALUE clears the field); repeat for several.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    sets: Vec<String>,
    /// Who makes the change (recorded as its provenance).
    #[arg(long, default_value_t = whoami())]
    by: String,
}

pub(crate) fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".to_string())
}

#[derive(Args)]
pub struct RecordArgs {
    /// The tenant (district) whose roster this reads or changes.
    #[arg(long)]
    tenant: String,
    /// orgs, academicSessions, courses, classes, users, demographics or enrollments.
    entity: String,
    /// The record's sourcedId.
    sourced_id: String,
    /// Who makes the change (recorded as its provenance).
    #[arg(long, default_value_t = whoami())]
    by: String,
}

pub fn run_edit(db: &DbArgs, args: &EditArgs, create: bool) -> anyhow::Result<ExitCode> {
    edit_record(&db.open()?, args, create)
}

/// Edits or creates a record by hand on any store.
pub fn edit_record(store: &dyn Store, args: &EditArgs, create: bool) -> anyhow::Result<ExitCode> {
    let e = entity(&args.entity)?;
    let sets = edit::assignments(&args.sets)?;
    anyhow::ensure!(
        create || !sets.is_empty(),
        "nothing to change: give --set FIELD=VALUE"
    );
    let record = if create {
        edit::create(store, &args.tenant, e, &args.sourced_id, &sets, &args.by)?
    } else {
        edit::edit(store, &args.tenant, e, &args.sourced_id, &sets, &args.by)?
    };
    outln!("{}", record_line(&record));
    Ok(ExitCode::SUCCESS)
}

pub fn run_archive(db: &DbArgs, args: &RecordArgs, archive: bool) -> anyhow::Result<ExitCode> {
    archive_record(&db.open()?, args, archive)
}

/// Archives or restores a record by hand on any store.
pub fn archive_record(
    store: &dyn Store,
    args: &RecordArgs,
    archive: bool,
) -> anyhow::Result<ExitCode> {
    let e = entity(&args.entity)?;
    let done = if archive {
        edit::archive(store, &args.tenant, e, &args.sourced_id, &args.by)
    } else {
        edit::restore(store, &args.tenant, e, &args.sourced_id, &args.by)
    };
    match done {
        Ok(record) => outln!("{}", record_line(&record)),
        // Asked for what is already so: said, and nothing written.
        Err(unchanged @ edit::EditError::Unchanged { .. }) => outln!("{unchanged}"),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ShowArgs {
    /// The tenant (district) whose roster this reads or changes.
    #[arg(long)]
    tenant: String,
    /// orgs, academicSessions, courses, classes, users, demographics or enrollments.
    entity: String,
    /// One record in full, with the provenance of every field; without it, every record of the entity.
    sourced_id: Option<String>,
    /// Output format: text for people, json for tools.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Show at most this many records.
    #[arg(long, value_name = "N", conflicts_with = "sourced_id")]
    limit: Option<usize>,
    /// Start after this sourcedId (records come in sourcedId order): the last one shown, for the next page.
    #[arg(long, value_name = "SOURCED_ID", conflicts_with = "sourced_id")]
    after: Option<String>,
}

fn record_line(r: &Record) -> String {
    let state = if r.active { "active" } else { "archived" };
    let name = ["name", "title", "username"]
        .iter()
        .find_map(|k| r.fields.get(*k))
        .or_else(|| r.fields.get("givenName"))
        .cloned()
        .unwrap_or_default();
    let manual: Vec<&str> = r.manual_fields().collect();
    let manual = if manual.is_empty() {
        String::new()
    } else {
        format!(" manual: {}", manual.join(","))
    };
    format!(
        "{} {} {state} origin {} {name}{manual}",
        r.entity,
        r.sourced_id,
        r.origin.as_str()
    )
}

fn record_detail(r: &Record) -> String {
    use rollcall::apply::edit::STATUS_MARK;
    use rollcall::model::Provenance;
    use std::fmt::Write as _;
    let mut out = format!("{}\n", record_line(r));
    if let Some(by) = r.archived_by {
        let _ = writeln!(out, "  archived by {}", by.as_str());
    }
    if let Some(Provenance::Manual { by, at }) = r.provenance.get(STATUS_MARK) {
        let what = if r.active { "restored" } else { "archived" };
        let _ = writeln!(out, "  {what} by hand, by {by} at {}", iso_time(*at));
    }
    // Every field in force, and those cleared by hand (in force no more, but set by the SIS or marked manual).
    let mut names: std::collections::BTreeSet<&String> = r.fields.keys().collect();
    names.extend(r.sis_fields.keys());
    names.extend(
        r.provenance
            .iter()
            .filter(|(k, p)| *k != STATUS_MARK && matches!(p, Provenance::Manual { .. }))
            .map(|(k, _)| k),
    );
    for field in names {
        let value = r.fields.get(field).map_or("", String::as_str);
        let source = match r.provenance.get(field) {
            Some(Provenance::Sis { batch }) => format!("sis, batch {batch}"),
            Some(Provenance::Manual { by, at }) if value.is_empty() => {
                format!("cleared by hand, by {by} at {}", iso_time(*at))
            }
            Some(Provenance::Manual { by, at }) => {
                format!("manual, by {by} at {}", iso_time(*at))
            }
            None => "unknown".to_string(),
        };
        let sis = match r.sis_fields.get(field) {
            Some(v) if v != value => format!(" (the SIS says {v:?})"),
            None if !value.is_empty() && r.origin == rollcall::model::Origin::Sis => {
                " (the SIS sends none)".to_string()
            }
            _ => String::new(),
        };
        let _ = writeln!(out, "  {field} = {value:?}  [{source}]{sis}");
    }
    out
}

pub fn run_show(db: &DbArgs, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    show(&db.open_read()?, args)
}

/// The tenant a read names, or an error naming it when there is none.
fn known_tenant(store: &dyn Store, id: &str) -> anyhow::Result<()> {
    store.get_tenant(id)?.with_context(|| {
        format!("there is no tenant {id:?}; `rollcall tenant list` shows the tenants there are")
    })?;
    Ok(())
}

/// Shows records of any store.
pub fn show(store: &dyn Store, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let e = entity(&args.entity)?;
    known_tenant(store, &args.tenant)?;
    if let Some(id) = &args.sourced_id {
        let record = store
            .get_record(&args.tenant, e, id)?
            .with_context(|| format!("tenant {} has no {e} record {id:?}", args.tenant))?;
        print_records(std::slice::from_ref(&record), args.format, true);
        return Ok(ExitCode::SUCCESS);
    }
    // Streamed a page at a time: an entity of millions of records is never held whole.
    let mut first = true;
    if args.format == ReportFormat::Json {
        out!("[");
    }
    for_each_record(
        store,
        &args.tenant,
        e,
        args.after.as_deref(),
        args.limit,
        |r: &Record| -> anyhow::Result<()> {
            match args.format {
                ReportFormat::Json => {
                    let json = serde_json::to_string_pretty(r)?;
                    out!("{}\n{}", if first { "" } else { "," }, json);
                }
                ReportFormat::Text => outln!("{}", record_line(r)),
            }
            first = false;
            Ok(())
        },
    )?;
    if args.format == ReportFormat::Json {
        outln!("{}]", if first { "" } else { "\n" });
    }
    Ok(ExitCode::SUCCESS)
}

fn print_records(records: &[Record], format: ReportFormat, detail: bool) {
    match format {
        ReportFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(records).unwrap_or_default()
        ),
        ReportFormat::Text => {
            for r in records {
                if detail {
                    out!("{}", record_detail(r));
                } else {
                    outln!("{}", record_line(r));
                }
            }
        }
    }
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("by").required(true)))]
pub struct FindArgs {
    /// The tenant (district) whose roster this reads or changes.
    #[arg(long)]
    tenant: String,
    /// The SSO login name.
    #[arg(long, group = "by")]
    username: Option<String>,
    /// A `userIds` entry as TYPE:IDENTIFIER, for example ClassLink:123.
    #[arg(long, group = "by")]
    user_id: Option<String>,
    /// The enrollments of the class with this sourcedId.
    #[arg(long, value_name = "CLASS", group = "by")]
    class: Option<String>,
    /// The enrollments of the user with this sourcedId.
    #[arg(long, value_name = "USER", group = "by")]
    enrolled: Option<String>,
    /// Output format: text for people, json for tools.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

pub fn run_find(db: &DbArgs, args: &FindArgs) -> anyhow::Result<ExitCode> {
    find(&db.open_read()?, args)
}

/// Finds users by SSO identity in any store.
pub fn find(store: &dyn Store, args: &FindArgs) -> anyhow::Result<ExitCode> {
    known_tenant(store, &args.tenant)?;
    let (found, none) = if let Some(u) = &args.username {
        (store.find_by_username(&args.tenant, u)?, "no user found")
    } else if let Some(id) = &args.user_id {
        let (kind, identifier) = id.split_once(':').with_context(|| {
            format!("--user-id takes TYPE:IDENTIFIER, for example ClassLink:123; got {id:?}")
        })?;
        (
            store.find_by_user_id(&args.tenant, kind, identifier)?,
            "no user found",
        )
    } else if let Some(class) = &args.class {
        let of = EnrollmentsOf::Class(class);
        (
            store.find_enrollments(&args.tenant, of)?,
            "no enrollment found",
        )
    } else if let Some(user) = &args.enrolled {
        let of = EnrollmentsOf::User(user);
        (
            store.find_enrollments(&args.tenant, of)?,
            "no enrollment found",
        )
    } else {
        (Vec::new(), "nothing to look for")
    };
    if found.is_empty() && args.format == ReportFormat::Text {
        outln!("{none}");
        return Ok(ExitCode::from(1));
    }
    print_records(&found, args.format, true);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct HistoryArgs {
    /// The tenant (district) whose roster this reads or changes.
    #[arg(long)]
    tenant: String,
    /// Output format: text for people, json for tools.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

fn batch_line(b: &Batch, place: &dyn Fn(&str) -> String) -> String {
    let changes: u64 = b.counts.values().map(|c| c.changes()).sum();
    let summary: Vec<String> = b
        .counts
        .iter()
        .filter(|(_, c)| c.changes() > 0)
        .map(|(e, c)| {
            format!(
                "{e} +{} ~{} -{} ^{}",
                c.create, c.update, c.archive, c.restore
            )
        })
        .collect();
    let label = if matches!(
        b.status,
        rollcall::model::BatchStatus::Applied | rollcall::model::BatchStatus::RolledBack
    ) {
        "changes"
    } else {
        "changes planned"
    };
    let rejected = b.status == rollcall::model::BatchStatus::Rejected;
    if rejected {
        // Why, without the report: the findings by code, the report's key.
        let codes: Vec<String> = b
            .findings_by_code
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        let why = match (b.held_reasons.first(), codes.is_empty()) {
            (Some(reason), _) => reason.clone(),
            (None, false) => format!(
                "{}, {}: {}",
                rollcall::validate::report::plural(b.errors, "error"),
                rollcall::validate::report::plural(b.warnings, "warning"),
                codes.join(", ")
            ),
            (None, true) => rollcall::validate::report::plural(b.errors, "error"),
        };
        let report = if b.report.is_empty() {
            String::new()
        } else {
            format!("; report {}", place(&b.report))
        };
        return format!(
            "{} {:<12} received {} rejected: {why}{report}",
            b.id,
            b.status.as_str(),
            iso_time(b.received_at),
        );
    }
    format!(
        "{} {:<12} received {} {changes} {label}{}{}{}",
        b.id,
        b.status.as_str(),
        iso_time(b.received_at),
        if summary.is_empty() {
            String::new()
        } else {
            format!(" ({})", summary.join("; "))
        },
        if b.held_reasons.is_empty() {
            String::new()
        } else {
            format!(" held: {}", b.held_reasons.join("; "))
        },
        match &b.failure {
            Some(why) => format!(" ({why})"),
            None => String::new(),
        }
    )
}

pub fn run_history(db: &DbArgs, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let blobs = db.blobs();
    history(&db.open_read()?, args, &|key| {
        blobs
            .path_of(key)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| key.to_string())
    })
}

/// A tenant's history in any store. The JSON gives a rejected batch's report by its blob-store key; the text
/// says where it is (`place`: a path, an S3 URL).
pub fn history(
    store: &dyn Store,
    args: &HistoryArgs,
    place: &dyn Fn(&str) -> String,
) -> anyhow::Result<ExitCode> {
    store.get_tenant(&args.tenant)?.with_context(|| {
        format!(
            "there is no tenant {:?}; add it with `rollcall tenant add {}`",
            args.tenant, args.tenant
        )
    })?;
    let batches = store.list_batches(&args.tenant)?;
    match args.format {
        ReportFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&batches).unwrap_or_default()
        ),
        ReportFormat::Text => {
            if batches.is_empty() {
                outln!("no syncs yet for {}", args.tenant);
            }
            for b in &batches {
                outln!("{}", batch_line(b, place));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
