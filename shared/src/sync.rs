//! The pipeline for one bundle and one tenant: validate, plan, guard, apply, with the batch recorded at each
//! step. Also what ops do with batches afterwards: approve or reject a held one, roll back an applied one.
//! The same steps run locally (here, on the embedded store) and, later, as the AWS state machine's tasks.

use crate::apply::Applier;
use crate::read::bundle::{Bundle, InputError};
use crate::limits::Limits;
use crate::model::{Batch, BatchStatus, Counts, Entity, SourceKind, Tenant, now};
use crate::plan::{Plan, PlanError, plan, walk};
use crate::progress::Progress;
use crate::validate::report::Report;
use crate::spec::{FileKind, Mode};
use crate::store::{Store, StoreError, UndoItem};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// A sync or batch operation could not be done.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("there is no tenant {0:?}; add it first with `rollcall tenant add {0}`")]
    UnknownTenant(String),
    #[error("there is no batch {0:?}; `rollcall history --tenant TENANT` lists a tenant's batches")]
    UnknownBatch(String),
    #[error("batch {id} is {status}; only a held batch can be approved or rejected")]
    NotHeld { id: String, status: &'static str },
    #[error("batch {id} is {status}; only an applied batch can be rolled back")]
    NotApplied { id: String, status: &'static str },
    #[error(
        "{count} records that batch {id} changed were changed again afterwards (for example {examples}); roll back the later batches first, or pass --force to restore this batch's prior states anyway"
    )]
    RollbackConflict {
        id: String,
        count: usize,
        examples: String,
    },
    #[error(
        "batch {id} created {created} records and later batches were applied after it ({later}), which may refer to them; roll back the later batches first, or pass --force"
    )]
    LaterDepends {
        id: String,
        created: usize,
        later: String,
    },
    #[error(
        "another sync of tenant {tenant} is running ({holder}) and it did not finish within {waited_secs}s; try again when it is done"
    )]
    Busy {
        tenant: String,
        holder: String,
        waited_secs: u64,
    },
    #[error("the kept copy of batch {id}'s bundle is gone ({path}); send the bundle again")]
    BundleGone { id: String, path: String },
    #[error("keeping a copy of the bundle in {path}: {source}")]
    Keep {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// How a sync ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Applied,
    Planned,
    Held,
    Rejected,
    AlreadyApplied,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Applied => "applied",
            SyncStatus::Planned => "planned",
            SyncStatus::Held => "held",
            SyncStatus::Rejected => "rejected",
            SyncStatus::AlreadyApplied => "already_applied",
        }
    }
}

/// Findings counts as the sync output shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FindingCounts {
    pub errors: u64,
    pub warnings: u64,
}

/// What a sync did.
#[derive(Clone, Debug, Serialize)]
pub struct SyncOutcome {
    pub batch: String,
    pub status: SyncStatus,
    pub counts: BTreeMap<Entity, Counts>,
    pub held_reasons: Vec<String>,
    pub findings: FindingCounts,
    /// Records written by this run.
    #[serde(skip)]
    pub writes: u64,
    /// The validation report (rejected batches: why).
    #[serde(skip)]
    pub report: Option<Report>,
    /// Ids behind the interesting counts.
    #[serde(skip)]
    pub samples: BTreeMap<(Entity, &'static str), Vec<String>>,
}

/// Settings of one sync run.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    pub limits: Limits,
    /// Where bundles are kept for later approval (locally a folder; on AWS the versioned bucket).
    pub keep_dir: PathBuf,
    /// How long to wait for another sync of the same tenant to finish.
    pub wait: Duration,
    /// How long a lease stays valid if its holder dies.
    pub lease_ttl: Duration,
    /// The path the bundle arrived by; a tenant takes bundles from its own source only.
    pub source: SourceKind,
}

impl SyncOptions {
    pub fn new(keep_dir: PathBuf) -> SyncOptions {
        SyncOptions {
            dry_run: false,
            limits: Limits::default(),
            keep_dir,
            wait: Duration::from_secs(600),
            lease_ttl: Duration::from_secs(3600),
            source: SourceKind::Sftp,
        }
    }
}

/// Derives a batch id from the tenant and the bundle's content: unique across tenants, stable across uploads.
pub fn batch_id(tenant: &str, bundle: &mut Bundle) -> Result<String, InputError> {
    let digest = bundle.digest()?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tenant.as_bytes());
    h.update(&[0]);
    h.update(&digest.to_le_bytes());
    Ok(format!("b{:024x}", h.digest128() >> 32))
}

/// Holds a tenant's lease for the duration of a run; releases it when dropped.
struct Lease<'a> {
    store: &'a dyn Store,
    tenant: String,
    holder: String,
}

impl<'a> Lease<'a> {
    fn take(
        store: &'a dyn Store,
        tenant: &str,
        batch: &str,
        opts: &SyncOptions,
    ) -> Result<Lease<'a>, SyncError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let holder = format!("pid {} batch {batch} #{nanos:09}", std::process::id());
        let started = Instant::now();
        loop {
            let taken = match store.acquire(tenant, &holder, opts.lease_ttl.as_secs()) {
                // The database is busy with another run's writes: that run holds the tenant for now.
                Err(StoreError::Busy { .. }) => {
                    Some("another run writing to the roster database".to_string())
                }
                other => other?,
            };
            match taken {
                None => {
                    return Ok(Lease {
                        store,
                        tenant: tenant.to_string(),
                        holder,
                    });
                }
                Some(other) if started.elapsed() >= opts.wait => {
                    return Err(SyncError::Busy {
                        tenant: tenant.to_string(),
                        holder: other,
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.store.release(&self.tenant, &self.holder);
    }
}

fn modes_of(report: &Report) -> BTreeMap<FileKind, Option<Mode>> {
    report
        .files
        .iter()
        .filter_map(|(name, summary)| FileKind::from_file_name(name).map(|k| (k, summary.mode)))
        .collect()
}

/// Reasons to hold a plan for approval; empty when it may go ahead.
pub fn guard(tenant: &Tenant, plan: &Plan, first_sync: bool) -> Vec<String> {
    if first_sync {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    for entity in Entity::ALL {
        let base = plan.walked.active_before.get(&entity).copied().unwrap_or(0);
        let Some(counts) = plan.counts.get(&entity) else {
            continue;
        };
        if base == 0 {
            continue;
        }
        let t = tenant.threshold_for(entity);
        for (what, n, limit) in [
            ("archived", counts.archive, t.archive),
            ("updated", counts.update, t.update),
        ] {
            let fraction = n as f64 / base as f64;
            if fraction > limit {
                reasons.push(format!(
                    "{entity}: {n} of {base} active records ({:.1}%) would be {what}; the threshold is {:.0}%",
                    fraction * 100.0,
                    limit * 100.0
                ));
            }
        }
    }
    reasons
}

/// Copies the bundle (a file, or a folder's files) into `dir`, returning the copy's path.
fn keep_bundle(source: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    if source.is_dir() {
        copy_folder(source, dir)?;
        return Ok(dir.to_path_buf());
    }
    let name = source
        .file_name()
        .map_or_else(|| "bundle".into(), |n| n.to_os_string());
    let target = dir.join(name);
    std::fs::copy(source, &target)?;
    Ok(target)
}

fn copy_folder(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Validates, plans, guards and applies one bundle for one tenant.
pub fn sync(
    store: &dyn Store,
    tenant_id: &str,
    path: &Path,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncOutcome, SyncError> {
    let tenant = store
        .get_tenant(tenant_id)?
        .ok_or_else(|| SyncError::UnknownTenant(tenant_id.to_string()))?;
    let mut bundle = Bundle::open(path, &opts.limits)?;
    let content = batch_id(&tenant.id, &mut bundle)?;
    if let Seen::Before(done) = seen(store, &tenant.id, &content)? {
        return Ok(*done);
    }
    let _lease = Lease::take(store, &tenant.id, &content, opts)?;
    // Another run may have applied the same bundle while this one waited for the lease.
    let id = match seen(store, &tenant.id, &content)? {
        Seen::Before(done) => return Ok(*done),
        Seen::New(id) => id,
    };
    let report = crate::validate::validate_bundle(&mut bundle, &opts.limits, progress)?;
    let findings = FindingCounts {
        errors: report.counts.errors,
        warnings: report.counts.warnings,
    };
    let t = now();
    let mut batch = Batch {
        id: id.clone(),
        content: content.clone(),
        tenant: tenant.id.clone(),
        source: path.display().to_string(),
        status: BatchStatus::Validated,
        received_at: t,
        updated_at: t,
        counts: BTreeMap::new(),
        held_reasons: Vec::new(),
        errors: findings.errors,
        warnings: findings.warnings,
        bundle: String::new(),
    };
    if opts.source != tenant.source {
        // One source per tenant: a bundle by the other path would fight the district's own system.
        let name = |k: SourceKind| match k {
            SourceKind::Sftp => "SFTP uploads",
            SourceKind::Api => "API pulls",
        };
        batch.status = BatchStatus::Rejected;
        batch.held_reasons = vec![format!(
            "tenant {} is fed by {}; a bundle from {} is refused (change it with `rollcall tenant set {} --source ...`)",
            tenant.id,
            name(tenant.source),
            name(opts.source),
            tenant.id
        )];
        return rejected(store, opts, batch, findings, report);
    }
    if !report.valid {
        batch.status = BatchStatus::Rejected;
        return rejected(store, opts, batch, findings, report);
    }
    let modes = modes_of(&report);
    let planned = plan(
        &mut Bundle::open(path, &opts.limits)?,
        &modes,
        &tenant,
        store,
        &opts.limits,
        progress,
    )?;
    let first_sync = !store
        .list_batches(&tenant.id)?
        .iter()
        .any(|b| b.status == BatchStatus::Applied);
    let reasons = guard(&tenant, &planned, first_sync);
    let mut outcome = SyncOutcome {
        batch: id.clone(),
        status: SyncStatus::Planned,
        counts: planned.counts.clone(),
        held_reasons: reasons.clone(),
        findings,
        writes: 0,
        report: Some(report),
        samples: planned.samples.clone(),
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    batch.counts = planned.counts.clone();
    if !reasons.is_empty() {
        // Held: keep a copy of the bundle, so approving later applies exactly what was planned.
        let kept =
            keep_bundle(path, &opts.keep_dir.join(&id)).map_err(|source| SyncError::Keep {
                path: opts.keep_dir.display().to_string(),
                source,
            })?;
        batch.bundle = kept.display().to_string();
        batch.status = BatchStatus::Held;
        batch.held_reasons = reasons;
        store.put_batch(&batch)?;
        outcome.status = SyncStatus::Held;
        return Ok(outcome);
    }
    batch.bundle = path.display().to_string();
    if planned
        .counts
        .values()
        .all(|c| c.changes() == 0 && c.kept_manual == 0)
    {
        // Nothing to write: record the batch as applied without walking the bundle a second time.
        batch.status = BatchStatus::Applied;
        batch.updated_at = now();
        store.put_batch(&batch)?;
        outcome.status = SyncStatus::Applied;
        return Ok(outcome);
    }
    let (writes, applied) = apply_batch(
        store,
        &tenant,
        &mut batch,
        &modes,
        &opts.limits,
        path,
        progress,
    )?;
    outcome.status = SyncStatus::Applied;
    outcome.counts = applied.counts;
    outcome.writes = writes;
    Ok(outcome)
}

/// Records a rejected batch (unless it is a dry run) and reports it; nothing else changes.
fn rejected(
    store: &dyn Store,
    opts: &SyncOptions,
    batch: Batch,
    findings: FindingCounts,
    report: Report,
) -> Result<SyncOutcome, SyncError> {
    if !opts.dry_run {
        store.put_batch(&batch)?;
    }
    Ok(SyncOutcome {
        batch: batch.id,
        status: SyncStatus::Rejected,
        counts: BTreeMap::new(),
        held_reasons: batch.held_reasons,
        findings,
        writes: 0,
        report: Some(report),
        samples: BTreeMap::new(),
    })
}

/// Whether a bundle's content was seen before, and the id a new batch of it gets.
enum Seen {
    /// Nothing to do: the roster is already this content, or this content is waiting for approval.
    Before(Box<SyncOutcome>),
    New(String),
}

fn seen(store: &dyn Store, tenant: &str, content: &str) -> Result<Seen, SyncError> {
    let batches = store.list_batches(tenant)?;
    let content_of = |b: &Batch| {
        if b.content.is_empty() {
            b.id.clone()
        } else {
            b.content.clone()
        }
    };
    let outcome = |b: &Batch, status: SyncStatus| SyncOutcome {
        batch: b.id.clone(),
        status,
        counts: b.counts.clone(),
        held_reasons: b.held_reasons.clone(),
        findings: FindingCounts {
            errors: b.errors,
            warnings: b.warnings,
        },
        writes: 0,
        report: None,
        samples: BTreeMap::new(),
    };
    // The roster is this content already: the latest applied batch carried it.
    if let Some(latest) = batches
        .iter()
        .rev()
        .find(|b| b.status == BatchStatus::Applied)
        && content_of(latest) == content
    {
        return Ok(Seen::Before(Box::new(outcome(
            latest,
            SyncStatus::AlreadyApplied,
        ))));
    }
    if let Some(waiting) = batches
        .iter()
        .rev()
        .find(|b| b.status == BatchStatus::Held && content_of(b) == content)
    {
        return Ok(Seen::Before(Box::new(outcome(waiting, SyncStatus::Held))));
    }
    // Sent before but the roster has moved on (a newer batch, a rollback, a rejection): a new batch.
    let earlier = batches.iter().filter(|b| content_of(b) == content).count();
    Ok(Seen::New(if earlier == 0 {
        content.to_string()
    } else {
        format!("{content}-{}", earlier + 1)
    }))
}

/// Applies a batch from its kept bundle, in one transaction that also records the batch as applied.
fn apply_batch(
    store: &dyn Store,
    tenant: &Tenant,
    batch: &mut Batch,
    modes: &BTreeMap<FileKind, Option<Mode>>,
    limits: &Limits,
    bundle_path: &Path,
    progress: &dyn Progress,
) -> Result<(u64, Plan), SyncError> {
    let mut bundle = Bundle::open(bundle_path, limits)?;
    let mut applier = Applier::begin(store, tenant, &batch.id)?;
    let walked = walk(
        &mut bundle,
        modes,
        tenant,
        store,
        limits,
        progress,
        &mut applier,
    )?;
    applier.plan.walked = walked;
    let counts = applier.plan.counts.clone();
    batch.status = BatchStatus::Applied;
    batch.counts = counts;
    batch.updated_at = now();
    let (writes, plan) = applier.finish(batch)?;
    Ok((writes, plan))
}

/// Applies a held batch.
pub fn approve(
    store: &dyn Store,
    batch_id: &str,
    opts: &SyncOptions,
) -> Result<SyncOutcome, SyncError> {
    let tenant_id = any_batch(store, batch_id)?.tenant;
    let tenant = store
        .get_tenant(&tenant_id)?
        .ok_or_else(|| SyncError::UnknownTenant(tenant_id.clone()))?;
    let _lease = Lease::take(store, &tenant.id, batch_id, opts)?;
    // Checked under the lease, so an approval and a rejection (or two approvals) cannot both go ahead.
    let mut batch = held(store, batch_id)?;
    let kept = PathBuf::from(&batch.bundle);
    if !kept.exists() {
        return Err(SyncError::BundleGone {
            id: batch.id.clone(),
            path: batch.bundle.clone(),
        });
    }
    let report = crate::validate::validate_path(&kept, &opts.limits, &crate::progress::NoProgress)?;
    let modes = modes_of(&report);
    let (writes, applied) = apply_batch(
        store,
        &tenant,
        &mut batch,
        &modes,
        &opts.limits,
        &kept,
        &crate::progress::NoProgress,
    )?;
    Ok(SyncOutcome {
        batch: batch.id,
        status: SyncStatus::Applied,
        counts: applied.counts,
        held_reasons: Vec::new(),
        findings: FindingCounts {
            errors: batch.errors,
            warnings: batch.warnings,
        },
        writes,
        report: None,
        samples: applied.samples,
    })
}

/// Discards a held batch.
pub fn reject(store: &dyn Store, batch_id: &str, opts: &SyncOptions) -> Result<Batch, SyncError> {
    let tenant = any_batch(store, batch_id)?.tenant;
    let _lease = Lease::take(store, &tenant, batch_id, opts)?;
    let mut batch = held(store, batch_id)?;
    batch.status = BatchStatus::Rejected;
    batch.updated_at = now();
    store.put_batch(&batch)?;
    Ok(batch)
}

fn any_batch(store: &dyn Store, batch_id: &str) -> Result<Batch, SyncError> {
    store
        .get_batch(batch_id)?
        .ok_or_else(|| SyncError::UnknownBatch(batch_id.to_string()))
}

fn held(store: &dyn Store, batch_id: &str) -> Result<Batch, SyncError> {
    let batch = store
        .get_batch(batch_id)?
        .ok_or_else(|| SyncError::UnknownBatch(batch_id.to_string()))?;
    if batch.status != BatchStatus::Held {
        return Err(SyncError::NotHeld {
            id: batch.id,
            status: batch.status.as_str(),
        });
    }
    Ok(batch)
}

/// Restores every record an applied batch changed to its state before the batch. Refuses when a later batch
/// or a manual edit changed the same records, unless `force`.
pub fn rollback(
    store: &dyn Store,
    batch_id: &str,
    force: bool,
    opts: &SyncOptions,
) -> Result<Batch, SyncError> {
    let mut batch = store
        .get_batch(batch_id)?
        .ok_or_else(|| SyncError::UnknownBatch(batch_id.to_string()))?;
    if batch.status != BatchStatus::Applied {
        return Err(SyncError::NotApplied {
            id: batch.id,
            status: batch.status.as_str(),
        });
    }
    let _lease = Lease::take(store, &batch.tenant, &batch.id, opts)?;
    let batch_now = any_batch(store, &batch.id)?;
    if batch_now.status != BatchStatus::Applied {
        return Err(SyncError::NotApplied {
            id: batch_now.id,
            status: batch_now.status.as_str(),
        });
    }
    let items: Vec<UndoItem> = store.undo_items(&batch.tenant, &batch.id)?;
    let created = items.iter().filter(|i| i.before.is_none()).count();
    let history = store.list_batches(&batch.tenant)?;
    let later: Vec<&Batch> = history
        .iter()
        .skip_while(|b| b.id != batch.id)
        .skip(1)
        .filter(|b| b.status == BatchStatus::Applied)
        .collect();
    if created > 0 && !later.is_empty() && !force {
        return Err(SyncError::LaterDepends {
            id: batch.id,
            created,
            later: later
                .iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut conflicts = Vec::new();
    for item in &items {
        let current = store.get_record(&batch.tenant, item.entity, &item.sourced_id)?;
        let last_writer = current.as_ref().and_then(|r| r.batch.as_deref());
        if current.is_some() && last_writer != Some(batch.id.as_str()) {
            conflicts.push(format!("{} {}", item.entity, item.sourced_id));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(SyncError::RollbackConflict {
            id: batch.id,
            count: conflicts.len(),
            examples: conflicts
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    batch.status = BatchStatus::RolledBack;
    batch.updated_at = now();
    store.restore(&batch.tenant, &items, &batch)?;
    Ok(batch)
}
