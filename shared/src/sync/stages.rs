//! The pipeline's stages, each a step either runtime runs on its own: receive (validate and record a bundle),
//! plan (one of the three plan steps), guard, begin applying, apply one chunk, finish, fail, reject. The local
//! command runs them one after the other in one process; on AWS each is a Lambda invocation the state machine
//! chains. A stage reads what it needs from the store and the blob store and writes its result there, so
//! nothing passes between stages but the batch id (and, for apply, which chunk).

use super::{FindingCounts, SyncError, SyncOutcome, SyncStatus, batch_id, staged_prefix};
use crate::apply::rollback::{conflicts, roll_back};
use crate::apply::{Applied, add_result, apply_chunk};
use crate::blob::BlobStore;
use crate::limits::Limits;
use crate::model::{Batch, BatchStatus, SourceKind, Tenant, now};
use crate::plan::chunk::{ChunkInfo, Compression, Phase, read_chunk};
use crate::plan::guard::guard;
use crate::plan::{Plan, PlanError, Staging, Step, StepInput, StepPlan, run_step};
use crate::progress::Progress;
use crate::read::bundle::Bundle;
use crate::spec::{FileKind, Mode};
use crate::store::{ChunkResult, Store};
use crate::validate::report::{Report, Style};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a bundle arrived.
#[derive(Clone, Copy, Debug)]
pub struct Arrival<'a> {
    /// The path it came by (a tenant takes bundles from its own source only).
    pub source: SourceKind,
    /// Where it is: a path locally, an object key on AWS.
    pub location: &'a str,
}

/// What receiving a bundle found.
pub enum Received {
    /// Seen before: the roster is this content already, or this content is held or under way.
    Duplicate(Box<SyncOutcome>),
    /// Refused (invalid, or from a path the tenant does not take); recorded with its report.
    Rejected(Box<SyncOutcome>),
    /// Validated and recorded; the plan steps come next.
    Accepted {
        batch: Box<Batch>,
        report: Box<Report>,
    },
}

/// What the plan steps need to know of a batch, written beside its staged plan when it is received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInput {
    /// Each present file's mode (`bulk`, `delta`, or none when unknown), by file name.
    pub modes: BTreeMap<String, Option<String>>,
}

impl PlanInput {
    pub fn of_report(report: &Report) -> PlanInput {
        PlanInput {
            modes: report
                .files
                .iter()
                .map(|(name, s)| (name.clone(), s.mode.map(|m| m.as_str().to_string())))
                .collect(),
        }
    }

    pub fn modes(&self) -> BTreeMap<FileKind, Option<Mode>> {
        self.modes
            .iter()
            .filter_map(|(name, mode)| {
                let mode = match mode.as_deref() {
                    Some("bulk") => Some(Mode::Bulk),
                    Some("delta") => Some(Mode::Delta),
                    _ => None,
                };
                FileKind::from_file_name(name).map(|k| (k, mode))
            })
            .collect()
    }
}

/// Where a batch's validation report is kept.
pub fn report_prefix(tenant: &str, batch: &str) -> String {
    format!("reports/{tenant}/{batch}/")
}

fn staging_of<'a>(blobs: &'a dyn BlobStore, batch: &'a Batch) -> Staging<'a> {
    Staging {
        blobs,
        prefix: &batch.plan,
    }
}

fn batch_of(store: &dyn Store, id: &str) -> Result<Batch, SyncError> {
    store
        .get_batch(id)?
        .ok_or_else(|| SyncError::UnknownBatch(id.to_string()))
}

fn tenant_of(store: &dyn Store, id: &str) -> Result<Tenant, SyncError> {
    store
        .get_tenant(id)?
        .ok_or_else(|| SyncError::UnknownTenant(id.to_string()))
}

/// The latest applied batch of a tenant.
pub fn latest_applied(store: &dyn Store, tenant: &str) -> Result<Option<String>, SyncError> {
    Ok(store
        .list_batches(tenant)?
        .into_iter()
        .rev()
        .find(|b| b.status == BatchStatus::Applied)
        .map(|b| b.id))
}

/// Validates a bundle and records it as a batch: accepted (validated, to be planned), rejected (with its
/// report), or a duplicate of one seen before. Validation always runs first; it also computes the content
/// digest the batch id comes from. A dry run records nothing.
#[allow(clippy::too_many_arguments)]
pub fn receive(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    tenant: &Tenant,
    bundle: &mut Bundle,
    arrival: Arrival<'_>,
    limits: &Limits,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<Received, SyncError> {
    let report = crate::validate::validate_bundle(bundle, limits, progress)?;
    let content = batch_id(&tenant.id, bundle.digest()?);
    let batches = store.list_batches(&tenant.id)?;
    let id = match seen(&batches, &content) {
        Seen::Before(done) => return Ok(Received::Duplicate(done)),
        Seen::New(id) => id,
    };
    let findings = FindingCounts {
        errors: report.counts.errors,
        warnings: report.counts.warnings,
    };
    let t = now();
    let mut batch = Batch {
        id: id.clone(),
        content,
        tenant: tenant.id.clone(),
        source: arrival.location.to_string(),
        status: BatchStatus::Validated,
        received_at: t,
        updated_at: t,
        counts: BTreeMap::new(),
        held_reasons: Vec::new(),
        errors: findings.errors,
        warnings: findings.warnings,
        bundle: arrival.location.to_string(),
        plan: staged_prefix(&tenant.id, &id),
        planned_after: batches
            .iter()
            .rev()
            .find(|b| b.status == BatchStatus::Applied)
            .map(|b| b.id.clone()),
        moved: 0,
        writes: 0,
        failure: None,
        findings_by_code: report.counts_by_code(),
        report: if dry_run {
            String::new()
        } else {
            format!("{}report.json", report_prefix(&tenant.id, &id))
        },
    };
    if arrival.source != tenant.source || !report.valid {
        if arrival.source != tenant.source {
            // One source per tenant: a bundle by the other path would fight the district's own system.
            let name = |k: SourceKind| match k {
                SourceKind::Sftp => "SFTP uploads",
                SourceKind::Api => "API pulls",
            };
            batch.held_reasons = vec![format!(
                "tenant {} is fed by {}; a bundle from {} is refused (change the tenant's source if the district has moved to it)",
                tenant.id,
                name(tenant.source),
                name(arrival.source),
            )];
        }
        batch.status = BatchStatus::Rejected;
        batch.plan = String::new();
        if !dry_run {
            keep_report(blobs, &batch, &report)?;
            store.put_batch(&batch)?;
        }
        let mut outcome = SyncOutcome::of_batch(&batch, SyncStatus::Rejected);
        outcome.counts = BTreeMap::new();
        outcome.report = Some(report);
        return Ok(Received::Rejected(Box::new(outcome)));
    }
    if !dry_run {
        keep_report(blobs, &batch, &report)?;
        let input = serde_json::to_vec_pretty(&PlanInput::of_report(&report)).map_err(|e| {
            PlanError::Staged {
                what: "the plan's input".into(),
                reason: e.to_string(),
            }
        })?;
        blobs.put(&format!("{}input.json", batch.plan), &input)?;
        store.put_batch(&batch)?;
    }
    Ok(Received::Accepted {
        batch: Box::new(batch),
        report: Box::new(report),
    })
}

/// Keeps the validation report beside the batch: the JSON other tools read and the text people read.
fn keep_report(blobs: &dyn BlobStore, batch: &Batch, report: &Report) -> Result<(), SyncError> {
    let prefix = report_prefix(&batch.tenant, &batch.id);
    // Written out through a temporary file: a report listing a million findings is never one string.
    let staged = |e: std::io::Error| PlanError::Staged {
        what: "the validation report".into(),
        reason: e.to_string(),
    };
    let mut file = tempfile::tempfile().map_err(staged)?;
    {
        let mut out = std::io::BufWriter::new(&mut file);
        report.write_json(&mut out).map_err(staged)?;
        std::io::Write::flush(&mut out).map_err(staged)?;
    }
    std::io::Seek::rewind(&mut file).map_err(staged)?;
    blobs.put_from(&format!("{prefix}report.json"), &mut file)?;
    blobs.put(
        &format!("{prefix}report.txt"),
        report.render_text(Style::Plain, 10).as_bytes(),
    )?;
    Ok(())
}

/// Runs one plan step of a received batch; its chunks and what it hands on go beside the batch's plan.
#[allow(clippy::too_many_arguments)]
pub fn plan_stage(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    batch_id: &str,
    step: Step,
    bundle: &mut Bundle,
    limits: &Limits,
    chunk_size: usize,
    progress: &dyn Progress,
) -> Result<StepPlan, SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    if step == Step::ALL[0] {
        // The plan is made against the roster as it is now, under the lease, not as it was when the bundle
        // arrived: on AWS a bundle is validated before its execution holds the lease, and a batch applied in
        // between would otherwise make this one look superseded when it is not.
        let latest = latest_applied(store, &batch.tenant)?;
        if latest != batch.planned_after {
            batch.planned_after = latest;
            batch.updated_at = now();
            store.put_batch(&batch)?;
        }
    }
    let tenant = tenant_of(store, &batch.tenant)?;
    let staging = staging_of(blobs, &batch);
    let input: PlanInput = read_json(blobs, &format!("{}input.json", batch.plan))?;
    let modes = input.modes();
    let step_input = StepInput {
        tenant: &tenant,
        batch: &batch.id,
        modes: &modes,
        limits,
        chunk_size,
        compression: Compression::Gzip,
    };
    Ok(run_step(
        step,
        bundle,
        &step_input,
        store,
        staging,
        progress,
    )?)
}

fn read_json<T: serde::de::DeserializeOwned>(
    blobs: &dyn BlobStore,
    key: &str,
) -> Result<T, SyncError> {
    let bytes = blobs.get(key)?.ok_or_else(|| PlanError::Staged {
        what: key.to_string(),
        reason: "it is not in the blob store".into(),
    })?;
    Ok(
        serde_json::from_slice(&bytes).map_err(|e| PlanError::Staged {
            what: key.to_string(),
            reason: e.to_string(),
        })?,
    )
}

/// What the guard decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guarded {
    pub held: bool,
    pub reasons: Vec<String>,
    /// Chunks of upserts and of archives, in the plan's order (what the apply steps go over).
    pub upserts: Vec<ChunkInfo>,
    pub archives: Vec<ChunkInfo>,
}

/// Puts the three steps' plans together into the batch's plan, and holds it when it looks like a broken
/// export (the batch becomes `held`) or lets it go on (`planned`).
pub fn guard_stage(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    batch_id: &str,
) -> Result<(Guarded, Plan), SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    let tenant = tenant_of(store, &batch.tenant)?;
    let staging = staging_of(blobs, &batch);
    let steps = Step::ALL
        .into_iter()
        .map(|s| staging.step(s))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Plan::assemble(&steps);
    staging.put_plan(&plan.to_file(&tenant.id, &batch.id))?;
    let reasons = guard(&tenant, &plan, batch.planned_after.is_none());
    let (upserts, archives): (Vec<ChunkInfo>, Vec<ChunkInfo>) = plan
        .chunks
        .iter()
        .cloned()
        .partition(|c| c.phase == Phase::Upsert);
    batch.counts = plan.counts.clone();
    batch.status = if reasons.is_empty() {
        BatchStatus::Planned
    } else {
        BatchStatus::Held
    };
    batch.held_reasons = reasons.clone();
    batch.updated_at = now();
    store.put_batch(&batch)?;
    Ok((
        Guarded {
            held: !reasons.is_empty(),
            reasons,
            upserts,
            archives,
        },
        plan,
    ))
}

/// The plan a guarded batch staged.
pub fn staged_plan(blobs: &dyn BlobStore, batch: &Batch) -> Result<Plan, SyncError> {
    Ok(Plan::from_file(&staging_of(blobs, batch).plan()?))
}

/// Makes a planned (or approved) batch `applying`, the state in which its chunks are written. Refuses, and
/// marks the batch superseded, when another batch of the tenant was applied since it was planned: its plan
/// would revert newer data.
pub fn begin_apply(store: &dyn Store, batch_id: &str) -> Result<Batch, SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    match batch.status {
        BatchStatus::Applying => return Ok(batch),
        BatchStatus::Planned | BatchStatus::Held => {}
        BatchStatus::Superseded => {
            return Err(SyncError::Superseded {
                id: batch.id,
                reason: batch.failure.unwrap_or_default(),
            });
        }
        status => {
            return Err(SyncError::NotHeld {
                id: batch.id,
                status: status.as_str(),
            });
        }
    }
    let latest = latest_applied(store, &batch.tenant)?;
    if latest != batch.planned_after {
        let reason = format!(
            "batch {} was applied after it was planned",
            latest.unwrap_or_default()
        );
        batch.status = BatchStatus::Superseded;
        batch.failure = Some(reason.clone());
        batch.updated_at = now();
        store.put_batch(&batch)?;
        return Err(SyncError::Superseded {
            id: batch.id,
            reason,
        });
    }
    batch.status = BatchStatus::Applying;
    batch.updated_at = now();
    store.put_batch(&batch)?;
    Ok(batch)
}

/// Applies one chunk of an applying batch (nothing, and the recorded result, when it was applied before).
pub fn apply_stage(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    batch_id: &str,
    chunk: &ChunkInfo,
) -> Result<ChunkResult, SyncError> {
    let batch = batch_of(store, batch_id)?;
    if batch.status != BatchStatus::Applying {
        return Err(SyncError::NotApplying {
            id: batch.id,
            status: batch.status.as_str(),
        });
    }
    if let Some(done) = store
        .chunk_results(&batch.tenant, &batch.id)?
        .remove(&chunk.number)
    {
        return Ok(done);
    }
    let tenant = tenant_of(store, &batch.tenant)?;
    let changes = read_chunk(blobs, chunk)?;
    Ok(apply_chunk(store, &tenant, &batch.id, chunk, &changes)?)
}

/// Commits an applying batch once every chunk of its plan is recorded as applied: the batch becomes `applied`
/// with the counts as the chunks landed, and held batches of the tenant are superseded. Returns the batch and
/// the superseded ones (whose staged data can go).
pub fn finish_stage(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    batch_id: &str,
) -> Result<(Batch, Vec<Batch>), SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    if batch.status == BatchStatus::Applied {
        return Ok((batch, Vec::new()));
    }
    if batch.status != BatchStatus::Applying {
        return Err(SyncError::NotApplying {
            id: batch.id,
            status: batch.status.as_str(),
        });
    }
    let plan = staged_plan(blobs, &batch)?;
    let results = store.chunk_results(&batch.tenant, &batch.id)?;
    let missing: Vec<u32> = plan
        .chunks
        .iter()
        .map(|c| c.number)
        .filter(|n| !results.contains_key(n))
        .collect();
    if !missing.is_empty() {
        return Err(SyncError::Incomplete {
            id: batch.id,
            missing,
        });
    }
    let mut applied = Applied {
        counts: plan.counts.clone(),
        ..Applied::default()
    };
    for chunk in &plan.chunks {
        if let Some(result) = results.get(&chunk.number) {
            add_result(&mut applied, result);
        }
    }
    batch.status = BatchStatus::Applied;
    if batch
        .bundle
        .starts_with(&super::kept_prefix(&batch.tenant, &batch.id))
    {
        // The kept copy goes once the batch is applied; the bundle is where it came from.
        batch.bundle = batch.source.clone();
    }
    batch.counts = applied.counts;
    batch.moved = applied.moved;
    batch.writes = applied.writes;
    batch.held_reasons = Vec::new();
    batch.updated_at = now();
    let mut superseded = Vec::new();
    for mut other in store.list_batches(&batch.tenant)? {
        if other.status == BatchStatus::Held && other.id != batch.id {
            other.status = BatchStatus::Superseded;
            other.failure = Some(format!("batch {} was applied after it was held", batch.id));
            other.updated_at = now();
            store.put_batch(&other)?;
            superseded.push(other);
        }
    }
    store.put_batch(&batch)?;
    Ok((batch, superseded))
}

/// Marks a batch failed with the reason, unless it already ended (applied, rejected, ...).
pub fn fail_stage(store: &dyn Store, batch_id: &str, reason: &str) -> Result<Batch, SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    if !batch.status.is_final() {
        batch.status = BatchStatus::Failed;
        batch.failure = Some(reason.to_string());
        batch.updated_at = now();
        store.put_batch(&batch)?;
    }
    Ok(batch)
}

/// Discards a held batch.
pub fn reject_stage(store: &dyn Store, batch_id: &str) -> Result<Batch, SyncError> {
    let mut batch = held(store, batch_id)?;
    batch.status = BatchStatus::Rejected;
    batch.updated_at = now();
    store.put_batch(&batch)?;
    Ok(batch)
}

/// Undoes an applied batch (its tenant's lease held): refuses when records it changed were changed again
/// since (by a later batch or by hand) or when later batches may refer to records it created, unless `force`.
pub fn rollback_stage(store: &dyn Store, batch_id: &str, force: bool) -> Result<Batch, SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    if batch.status == BatchStatus::RollingBack {
        return finish_rollback(store, batch_id, true);
    }
    if batch.status != BatchStatus::Applied {
        return Err(SyncError::NotApplied {
            id: batch.id,
            status: batch.status.as_str(),
        });
    }
    let found = conflicts(store, &batch.tenant, &batch.id)?;
    let history = store.list_batches(&batch.tenant)?;
    let later: Vec<&Batch> = history
        .iter()
        .skip_while(|b| b.id != batch.id)
        .skip(1)
        .filter(|b| b.status == BatchStatus::Applied)
        .collect();
    if found.created > 0 && !later.is_empty() && !force {
        return Err(SyncError::LaterDepends {
            id: batch.id,
            created: found.created,
            later: later
                .iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if found.count > 0 && !force {
        return Err(SyncError::RollbackConflict {
            id: batch.id,
            count: found.count,
            examples: found.examples.join(", "),
        });
    }
    // Recorded first, outside the unit of work: a rollback that stops midway is finished by the next one.
    batch.status = BatchStatus::RollingBack;
    batch.updated_at = now();
    store.put_batch(&batch)?;
    finish_rollback(store, batch_id, force)
}

/// Restores a rolling-back batch's prior states, page by page, and marks it rolled back, in one unit of work.
pub fn finish_rollback(store: &dyn Store, batch_id: &str, force: bool) -> Result<Batch, SyncError> {
    let mut batch = batch_of(store, batch_id)?;
    let unit = store.unit()?;
    roll_back(store, &batch.tenant, &batch.id, force)?;
    store.delete_undo(&batch.tenant, &batch.id)?;
    batch.status = BatchStatus::RolledBack;
    batch.updated_at = now();
    store.put_batch(&batch)?;
    unit.commit()?;
    Ok(batch)
}

/// A batch that must be held.
pub fn held(store: &dyn Store, batch_id: &str) -> Result<Batch, SyncError> {
    let batch = batch_of(store, batch_id)?;
    match batch.status {
        BatchStatus::Held => Ok(batch),
        BatchStatus::Superseded => Err(SyncError::Superseded {
            id: batch.id,
            reason: batch.failure.unwrap_or_default(),
        }),
        status => Err(SyncError::NotHeld {
            id: batch.id,
            status: status.as_str(),
        }),
    }
}

/// Whether a bundle's content was seen before, and the id a new batch of it gets.
pub(super) enum Seen {
    /// Nothing to do: the roster is already this content, or this content is held or under way.
    Before(Box<SyncOutcome>),
    New(String),
}

pub(super) fn seen(batches: &[Batch], content: &str) -> Seen {
    let content_of = |b: &Batch| {
        if b.content.is_empty() {
            b.id.clone()
        } else {
            b.content.clone()
        }
    };
    // The roster is this content already: the latest applied batch carried it.
    if let Some(latest) = batches
        .iter()
        .rev()
        .find(|b| b.status == BatchStatus::Applied)
        && content_of(latest) == content
    {
        return Seen::Before(Box::new(SyncOutcome::of_batch(
            latest,
            SyncStatus::AlreadyApplied,
        )));
    }
    if let Some(waiting) = batches
        .iter()
        .rev()
        .find(|b| b.status == BatchStatus::Held && content_of(b) == content)
    {
        return Seen::Before(Box::new(SyncOutcome::of_batch(waiting, SyncStatus::Held)));
    }
    // Under way (another delivery of the same upload is being planned or applied): nothing new to do.
    if let Some(running) = batches.iter().rev().find(|b| {
        content_of(b) == content
            && matches!(
                b.status,
                BatchStatus::Validated | BatchStatus::Planned | BatchStatus::Applying
            )
    }) {
        return Seen::Before(Box::new(SyncOutcome::of_batch(
            running,
            SyncStatus::Planned,
        )));
    }
    // Sent before but the roster has moved on (a newer batch, a rollback, a rejection): a new batch.
    let earlier = batches.iter().filter(|b| content_of(b) == content).count();
    Seen::New(if earlier == 0 {
        content.to_string()
    } else {
        format!("{content}-{}", earlier + 1)
    })
}
