//! The pipeline for one bundle and one tenant, as the local command runs it: take the tenant's lease, finish
//! what a run that died left (`recover`), validate, plan (the three plan steps, staged in the blob store),
//! guard, and apply the staged plan with the batch recorded at each step. Also what ops do with batches
//! afterwards: approve (apply the held plan) or reject a held one, roll back an applied one. On AWS the same
//! library steps run as the state machine's tasks; here they run one after the other in one process, and a
//! batch's whole apply is one unit of work, so the local roster is all-or-nothing.

pub mod lease;
pub mod stages;

use crate::apply::{Applied, apply_plan};
use crate::blob::{BlobError, BlobStore};
use crate::limits::Limits;
use crate::model::{Batch, BatchStatus, Counts, Entity, SourceKind, Tenant, now};
use crate::plan::chunk::Compression;
use crate::plan::guard::guard;
use crate::plan::{Plan, PlanError, Staging, StepInput, plan_all};
use crate::progress::Progress;
use crate::read::bundle::{Bundle, InputError};
use crate::store::{Lease, Store, StoreError};
use crate::validate::report::Report;
use lease::{Holder, LeaseGuard, Liveness, Taken, describe_holder};
use serde::Serialize;
use stages::{Arrival, PlanInput, Received};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

/// A sync or batch operation could not be done.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("there is no tenant {0:?}")]
    UnknownTenant(String),
    #[error("there is no batch {0:?}")]
    UnknownBatch(String),
    #[error("batch {id} is {status}; only a held batch can be approved or rejected")]
    NotHeld { id: String, status: &'static str },
    #[error(
        "batch {id} was superseded: {reason}; its plan no longer fits the roster, so it cannot be approved (send its bundle again to plan it afresh)"
    )]
    Superseded { id: String, reason: String },
    #[error("batch {id} is {status}; only an applied batch can be rolled back")]
    NotApplied { id: String, status: &'static str },
    #[error("batch {id} is {status}, not applying; its chunks cannot be applied now")]
    NotApplying { id: String, status: &'static str },
    #[error("batch {id} cannot be committed: chunks {missing:?} of its plan were not applied")]
    Incomplete { id: String, missing: Vec<u32> },
    #[error(
        "{count} records that batch {id} changed were changed again afterwards (for example {examples}); roll back the later batches first, or force the rollback to restore this batch's prior states anyway"
    )]
    RollbackConflict {
        id: String,
        count: usize,
        examples: String,
    },
    #[error(
        "batch {id} created {created} records and later batches were applied after it ({later}), which may refer to them; roll back the later batches first, or force the rollback"
    )]
    LaterDepends {
        id: String,
        created: usize,
        later: String,
    },
    #[error("tenant {tenant} is busy: {} is running a {} (since {})", describe_holder(&.lease.holder), .lease.purpose, crate::model::iso_time(.lease.acquired_at))]
    Leased { tenant: String, lease: Lease },
    #[error("keeping a copy of batch {id}'s bundle: {source}")]
    Keep { id: String, source: BlobError },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Blob(#[from] BlobError),
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
    /// Records that changed between planning and applying, merged again under the tenant's policy (shown
    /// only when there were some, so the usual output keeps its five keys).
    #[serde(skip_serializing_if = "is_zero")]
    pub moved: u64,
    /// What this run found and did besides its own batch: a lease taken over, a batch resumed or failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why a rejected batch was rejected: its findings by code and where its report is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
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

/// Why a batch was rejected, in a sync's output and (the same fields) in its history.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// Findings by code: `{"role_invalid": 2, "ref_missing": 1}`.
    pub findings_by_code: BTreeMap<String, u64>,
    /// Where the report is kept: a blob-store key, which the command shows as a path or an S3 URL.
    pub report: String,
    /// The reason when it is not the report's findings (a bundle from the tenant's other source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SyncOutcome {
    /// What a sync's output says of a recorded batch.
    pub fn of_batch(b: &Batch, status: SyncStatus) -> SyncOutcome {
        SyncOutcome {
            batch: b.id.clone(),
            status,
            counts: b.counts.clone(),
            held_reasons: b.held_reasons.clone(),
            findings: FindingCounts {
                errors: b.errors,
                warnings: b.warnings,
            },
            moved: b.moved,
            notes: Vec::new(),
            rejection: (status == SyncStatus::Rejected).then(|| Rejection {
                findings_by_code: b.findings_by_code.clone(),
                report: b.report.clone(),
                reason: b.held_reasons.first().cloned(),
            }),
            writes: 0,
            report: None,
            samples: BTreeMap::new(),
        }
    }
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    pub limits: Limits,
    /// How long a lease stays valid if its holder stops renewing it.
    pub lease_ttl: Duration,
    /// The path the bundle arrived by; a tenant takes bundles from its own source only.
    pub source: SourceKind,
    /// Most changes in one plan chunk.
    pub chunk_size: usize,
    /// With `dry_run`: write the plan into this folder (`plan.json`, one JSON file per step, and the chunks as
    /// plain JSON Lines) for a person to read, instead of discarding it.
    pub plan_out: Option<std::path::PathBuf>,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            dry_run: false,
            limits: Limits::default(),
            lease_ttl: Duration::from_secs(120),
            source: SourceKind::Sftp,
            chunk_size: 5_000,
            plan_out: None,
        }
    }
}

/// What a local run works with: the store, the blob store beside it, and who it is.
pub struct Local<'a> {
    pub store: &'a dyn Store,
    pub blobs: &'a dyn BlobStore,
    pub holder: Holder,
    pub liveness: &'a dyn Liveness,
}

/// Where a batch's plan is staged.
pub fn staged_prefix(tenant: &str, batch: &str) -> String {
    format!("staged/{tenant}/{batch}/")
}

/// Where a held batch's bundle is kept.
pub fn kept_prefix(tenant: &str, batch: &str) -> String {
    format!("bundles/{tenant}/{batch}/")
}

/// Derives a batch id from the tenant and the bundle's content: unique across tenants, stable across uploads.
pub fn batch_id(tenant: &str, digest: u128) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tenant.as_bytes());
    h.update(&[0]);
    h.update(&digest.to_le_bytes());
    format!("b{:024x}", h.digest128() >> 32)
}

fn tenant_of(store: &dyn Store, id: &str) -> Result<Tenant, SyncError> {
    store
        .get_tenant(id)?
        .ok_or_else(|| SyncError::UnknownTenant(id.to_string()))
}

impl Local<'_> {
    /// Takes the tenant's lease, or fails with who holds it.
    fn lease(
        &self,
        tenant: &str,
        purpose: &str,
        opts: &SyncOptions,
    ) -> Result<LeaseGuard<'_>, SyncError> {
        let taken = lease::take(
            self.store,
            tenant,
            &self.holder,
            purpose,
            opts.lease_ttl,
            self.liveness,
        )?;
        taken.map_err(|lease| SyncError::Leased {
            tenant: tenant.to_string(),
            lease,
        })
    }

    /// Under the lease: says what was taken over, and finishes or fails what a run that died left behind.
    fn recover(&self, tenant: &Tenant, lease: &LeaseGuard<'_>) -> Result<Vec<String>, SyncError> {
        let mut notes = Vec::new();
        if let Taken::TookOver { lease: old, why } = &lease.taken {
            notes.push(format!(
                "took over tenant {}'s lease from {} ({}, since {}): {why}",
                tenant.id,
                describe_holder(&old.holder),
                old.purpose,
                crate::model::iso_time(old.acquired_at)
            ));
        }
        for mut batch in self.store.list_batches(&tenant.id)? {
            match batch.status {
                BatchStatus::Applying => {
                    let plan = stages::staged_plan(self.blobs, &batch)?;
                    let (_, applied) = self.apply_and_commit(tenant, &batch.id, &plan, lease)?;
                    notes.push(format!(
                        "resumed batch {}, which a run that stopped had begun to apply: now applied ({} written by this run)",
                        batch.id,
                        crate::validate::report::plural(applied.writes, "record")
                    ));
                }
                BatchStatus::RollingBack => {
                    self.finish_rollback(&mut batch, true)?;
                    notes.push(format!(
                        "finished rolling back batch {}, which a run that stopped had begun to undo",
                        batch.id
                    ));
                }
                BatchStatus::Received | BatchStatus::Validated | BatchStatus::Planned => {
                    let left = batch.status;
                    batch.status = BatchStatus::Failed;
                    batch.failure = Some(
                        "the run that handled it stopped before it finished; nothing of it was applied"
                            .into(),
                    );
                    batch.updated_at = now();
                    self.store.put_batch(&batch)?;
                    Staging {
                        blobs: self.blobs,
                        prefix: &batch.plan,
                    }
                    .clear()
                    .ok();
                    notes.push(format!(
                        "batch {} was left {} by a run that stopped; it is marked failed (nothing of it was applied)",
                        batch.id,
                        left.as_str()
                    ));
                }
                _ => {}
            }
        }
        Ok(notes)
    }

    /// Applies a staged plan and commits the batch as applied, all in one unit of work. The batch is recorded
    /// `applying` first, outside the unit: a run that dies midway leaves it so, and the next run resumes it.
    fn apply_and_commit(
        &self,
        tenant: &Tenant,
        batch_id: &str,
        plan: &Plan,
        lease: &LeaseGuard<'_>,
    ) -> Result<(Batch, Applied), SyncError> {
        stages::begin_apply(self.store, batch_id)?;
        let unit = self.store.unit()?;
        let applied = apply_plan(self.store, self.blobs, tenant, batch_id, plan, &mut |_| {
            lease.renew(None).map_err(PlanError::Store)
        })?;
        let (batch, superseded) = stages::finish_stage(self.store, self.blobs, batch_id)?;
        unit.commit()?;
        // What was staged and kept is not needed once the batch is committed (the undo pages are in the store).
        for b in superseded.iter().chain(std::iter::once(&batch)) {
            self.forget_staged(b);
        }
        Ok((batch, applied))
    }

    /// Removes a batch's staged plan and kept bundle (failures to remove are harmless leftovers).
    fn forget_staged(&self, batch: &Batch) {
        for prefix in [batch.plan.as_str(), &kept_prefix(&batch.tenant, &batch.id)] {
            if !prefix.is_empty() {
                let _ = self.blobs.delete_prefix(prefix);
            }
        }
    }

    /// [`Local::sync`] of a bundle on disk (a `.zip`, a folder or one CSV file).
    pub fn sync_path(
        &self,
        tenant_id: &str,
        path: &std::path::Path,
        opts: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncOutcome, SyncError> {
        // The tenant is checked before the bundle is opened, so a typo in either gets its own message.
        tenant_of(self.store, tenant_id)?;
        let mut bundle = Bundle::open(path, &opts.limits)?;
        self.sync(tenant_id, &mut bundle, opts, progress)
    }

    /// Validates, plans, guards and applies one bundle for one tenant.
    pub fn sync(
        &self,
        tenant_id: &str,
        bundle: &mut Bundle,
        opts: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncOutcome, SyncError> {
        let tenant = tenant_of(self.store, tenant_id)?;
        let purpose = format!("sync of {}", bundle.path().display());
        let lease = self.lease(&tenant.id, &purpose, opts)?;
        let notes = self.recover(&tenant, &lease)?;
        let mut outcome = self.sync_leased(&tenant, bundle, opts, &lease, progress)?;
        outcome.notes.splice(0..0, notes);
        Ok(outcome)
    }

    fn sync_leased(
        &self,
        tenant: &Tenant,
        bundle: &mut Bundle,
        opts: &SyncOptions,
        lease: &LeaseGuard<'_>,
        progress: &dyn Progress,
    ) -> Result<SyncOutcome, SyncError> {
        let location = bundle.path().display().to_string();
        let arrival = Arrival {
            source: opts.source,
            location: &location,
        };
        let received = stages::receive(
            self.store,
            self.blobs,
            tenant,
            bundle,
            arrival,
            &opts.limits,
            opts.dry_run,
            progress,
        )?;
        let (batch, report) = match received {
            Received::Duplicate(done) | Received::Rejected(done) => return Ok(*done),
            Received::Accepted { batch, report } => (*batch, *report),
        };
        lease.renew(Some(&batch.id))?;
        let findings = FindingCounts {
            errors: batch.errors,
            warnings: batch.warnings,
        };
        if opts.dry_run {
            return self.dry_run(tenant, bundle, &batch, report, opts, lease, progress);
        }
        // The three plan steps, chained in this process (the scope handed on in memory).
        let input = PlanInput::of_report(&report);
        let modes = input.modes();
        let step_input = StepInput {
            tenant,
            batch: &batch.id,
            modes: &modes,
            limits: &opts.limits,
            chunk_size: opts.chunk_size,
            compression: Compression::Gzip,
        };
        let staging = Staging {
            blobs: self.blobs,
            prefix: &batch.plan,
        };
        let planned = plan_all(bundle, &step_input, self.store, staging, progress)?;
        let (guarded, _) = stages::guard_stage(self.store, self.blobs, &batch.id)?;
        let mut outcome = SyncOutcome {
            batch: batch.id.clone(),
            status: SyncStatus::Planned,
            counts: planned.counts.clone(),
            held_reasons: guarded.reasons.clone(),
            findings,
            moved: 0,
            notes: Vec::new(),
            rejection: None,
            writes: 0,
            report: Some(report),
            samples: planned.samples.clone(),
        };
        if guarded.held {
            // Held: the staged plan waits for approval; the bundle's OneRoster files are kept beside it.
            let mut held = stages::held(self.store, &batch.id)?;
            held.bundle = self.keep(bundle, &tenant.id, &batch.id)?;
            self.store.put_batch(&held)?;
            outcome.status = SyncStatus::Held;
            return Ok(outcome);
        }
        let (_, applied) = self.apply_and_commit(tenant, &batch.id, &planned, lease)?;
        outcome.status = SyncStatus::Applied;
        outcome.counts = applied.counts;
        outcome.moved = applied.moved;
        outcome.writes = applied.writes;
        Ok(outcome)
    }

    /// Plans a bundle and reports what it would do, changing nothing: the plan is staged under a prefix of its
    /// own and cleared, or written where it was asked to, for people.
    #[allow(clippy::too_many_arguments)]
    fn dry_run(
        &self,
        tenant: &Tenant,
        bundle: &mut Bundle,
        batch: &Batch,
        report: Report,
        opts: &SyncOptions,
        lease: &LeaseGuard<'_>,
        progress: &dyn Progress,
    ) -> Result<SyncOutcome, SyncError> {
        let plan_out = opts
            .plan_out
            .as_deref()
            .map(crate::blob::local::LocalBlobs::new);
        let (blobs, prefix, compression): (&dyn BlobStore, String, Compression) = match &plan_out {
            Some(out) => (out, String::new(), Compression::None),
            None => (
                self.blobs,
                format!(
                    "dry-run/{}/{}/",
                    tenant.id,
                    lease.holder().replace(':', "_")
                ),
                Compression::Gzip,
            ),
        };
        let staging = Staging {
            blobs,
            prefix: &prefix,
        };
        let input = PlanInput::of_report(&report);
        let modes = input.modes();
        let step_input = StepInput {
            tenant,
            batch: &batch.id,
            modes: &modes,
            limits: &opts.limits,
            chunk_size: opts.chunk_size,
            compression,
        };
        let planned = plan_all(bundle, &step_input, self.store, staging, progress)?;
        if plan_out.is_none() {
            staging.clear()?;
        }
        Ok(SyncOutcome {
            batch: batch.id.clone(),
            status: SyncStatus::Planned,
            counts: planned.counts.clone(),
            held_reasons: guard(tenant, &planned, batch.planned_after.is_none()),
            findings: FindingCounts {
                errors: batch.errors,
                warnings: batch.warnings,
            },
            moved: 0,
            notes: Vec::new(),
            rejection: None,
            writes: 0,
            report: Some(report),
            samples: planned.samples,
        })
    }

    /// Copies the bundle's OneRoster files (and nothing else) into the blob store; returns the prefix.
    fn keep(&self, bundle: &mut Bundle, tenant: &str, id: &str) -> Result<String, SyncError> {
        let prefix = kept_prefix(tenant, id);
        let keep_error = |source| SyncError::Keep {
            id: id.to_string(),
            source,
        };
        for name in bundle.roster_files() {
            let mut stream = bundle.open_roster_file(name)?;
            self.blobs
                .put_from(&format!("{prefix}{name}"), &mut stream)
                .map_err(keep_error)?;
        }
        Ok(prefix)
    }

    /// Applies a held batch: the plan that was held, with records changed since merged again. Refuses when the
    /// tenant's roster moved on since the hold (another batch was applied), which would make it revert newer
    /// data.
    pub fn approve(&self, batch_id: &str, opts: &SyncOptions) -> Result<SyncOutcome, SyncError> {
        let tenant = tenant_of(self.store, &any_batch(self.store, batch_id)?.tenant)?;
        let lease = self.lease(&tenant.id, &format!("approval of batch {batch_id}"), opts)?;
        let notes = self.recover(&tenant, &lease)?;
        // Checked under the lease, so an approval and a rejection (or two approvals) cannot both go ahead.
        let batch = stages::held(self.store, batch_id)?;
        lease.renew(Some(&batch.id))?;
        let plan = stages::staged_plan(self.blobs, &batch)?;
        let (batch, applied) = match self.apply_and_commit(&tenant, &batch.id, &plan, &lease) {
            Err(SyncError::Superseded { id, reason }) => {
                if let Some(b) = self.store.get_batch(&id)? {
                    self.forget_staged(&b);
                }
                return Err(SyncError::Superseded { id, reason });
            }
            other => other?,
        };
        // A held pull moves the tenant's delta cursor only now, when its batch is applied.
        crate::pull::note_applied(self.store, &batch)?;
        let mut outcome = SyncOutcome::of_batch(&batch, SyncStatus::Applied);
        outcome.samples = plan.samples;
        outcome.writes = applied.writes;
        outcome.notes = notes;
        Ok(outcome)
    }

    /// Discards a held batch.
    pub fn reject(&self, batch_id: &str, opts: &SyncOptions) -> Result<Batch, SyncError> {
        let tenant = tenant_of(self.store, &any_batch(self.store, batch_id)?.tenant)?;
        let lease = self.lease(&tenant.id, &format!("rejection of batch {batch_id}"), opts)?;
        self.recover(&tenant, &lease)?;
        let batch = stages::reject_stage(self.store, batch_id)?;
        self.forget_staged(&batch);
        crate::pull::note_rejected(self.store, &batch)?;
        Ok(batch)
    }

    /// Restores every record an applied batch changed to its state before the batch. Refuses when a later batch
    /// or a manual edit changed the same records, unless `force`.
    pub fn rollback(
        &self,
        batch_id: &str,
        force: bool,
        opts: &SyncOptions,
    ) -> Result<Batch, SyncError> {
        let batch = any_batch(self.store, batch_id)?;
        let tenant = tenant_of(self.store, &batch.tenant)?;
        let lease = self.lease(&tenant.id, &format!("rollback of batch {batch_id}"), opts)?;
        self.recover(&tenant, &lease)?;
        lease.renew(Some(batch_id))?;
        stages::rollback_stage(self.store, batch_id, force)
    }

    /// Finishes a rollback a run that stopped had begun.
    fn finish_rollback(&self, batch: &mut Batch, force: bool) -> Result<(), SyncError> {
        *batch = stages::finish_rollback(self.store, &batch.id, force)?;
        Ok(())
    }
}

fn any_batch(store: &dyn Store, batch_id: &str) -> Result<Batch, SyncError> {
    store
        .get_batch(batch_id)?
        .ok_or_else(|| SyncError::UnknownBatch(batch_id.to_string()))
}
