//! Applying a staged plan, chunk by chunk, with versions and undo. A chunk's records are read in one call,
//! decided again where they changed since they were planned (merged under the tenant's policy and counted where
//! they land), their prior states kept as the chunk's undo page, and written with conditional writes; a write
//! that finds its record moved on between the read and the write is read and decided again. A chunk applied
//! twice writes nothing the second time, and a run that died midway is resumed to exactly the state an
//! uninterrupted run gives: records this batch wrote already are recognised by their last writer and counted
//! as they landed the first time. Upserts come first (parents first), archives after (children first), as
//! the plan orders its chunks. Manual edits (`edit`) and undoing a batch (`rollback`) live beside it.

pub mod edit;
pub mod rollback;

use crate::blob::BlobStore;
use crate::model::{Counts, Entity, Record, Tenant};
use crate::plan::chunk::{Change, ChangeAction, ChunkInfo, read_chunk};
use crate::plan::decide::{Action, ArchiveWhy, Known, Values, decide, decide_unsent, written};
use crate::plan::{Plan, PlanError};
use crate::store::{ChunkResult, Store, StoreError, UndoItem, Write};
use std::collections::{BTreeMap, HashMap};

/// How often a chunk's records are read and written again when other writers keep changing them.
const MOST_ATTEMPTS: usize = 20;

/// Records written in one call: enough to amortise a call (and within DynamoDB's batch sizes), few enough that
/// the records being written are never many at once.
const WRITE_GROUP: usize = 100;

/// What applying a whole plan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The plan's counts, with each chunk's records counted where they landed.
    pub counts: BTreeMap<Entity, Counts>,
    /// Records that changed since they were planned and were merged again.
    pub moved: u64,
    /// Records written.
    pub writes: u64,
    /// Chunks applied by this run (the rest were applied by a run before it).
    pub chunks_applied: usize,
}

/// The decision for a planned change, taken again against the record as it is now.
fn resolve(tenant: &Tenant, change: &Change, current: Option<&Record>) -> Action {
    let known = current.map(Known::of_record);
    let mut full = || Ok::<_, std::convert::Infallible>(current.cloned());
    let decided = match (change.action, change.why) {
        (ChangeAction::Archive, Some(ArchiveWhy::Deleted)) => {
            let nothing = BTreeMap::new();
            let sent = Values {
                fields: &nothing,
                deleting: true,
            };
            decide(tenant.policy, change.entity, &sent, known, &mut full)
        }
        (ChangeAction::Archive, why) => Ok(decide_unsent(
            tenant.policy,
            why.unwrap_or(ArchiveWhy::Omitted),
            known,
        )),
        _ => {
            let sent = Values {
                fields: &change.sis,
                deleting: false,
            };
            decide(tenant.policy, change.entity, &sent, known, &mut full)
        }
    };
    match decided {
        Ok(action) => action,
        Err(never) => match never {},
    }
}

/// Whether the record changed since the change was planned.
fn moved(change: &Change, current: Option<&Record>) -> bool {
    match change.version {
        Some(v) => current.map(|c| c.version) != Some(v),
        None => current.is_some(),
    }
}

/// Applies one chunk of a batch's plan and records that it was applied. `changes` is what the chunk holds.
pub fn apply_chunk(
    store: &dyn Store,
    tenant: &Tenant,
    batch: &str,
    chunk: &ChunkInfo,
    changes: &[Change],
) -> Result<ChunkResult, PlanError> {
    let entity = chunk.entity;
    // What an earlier, interrupted try of this chunk kept: the prior states of what it wrote.
    let earlier: HashMap<String, UndoItem> = store
        .undo_page(&tenant.id, batch, chunk.number)?
        .unwrap_or_default()
        .into_iter()
        .map(|item| (item.sourced_id.clone(), item))
        .collect();
    let mut result = ChunkResult::default();
    for change in changes {
        result
            .planned
            .entry(entity)
            .or_default()
            .add(change.planned().label(), 1);
    }
    let mut landed: Vec<Option<&'static str>> = vec![None; changes.len()];
    let mut was_moved = vec![false; changes.len()];
    // The prior state of each record this chunk writes (or wrote on an earlier try), by change.
    let mut undo: Vec<Option<UndoItem>> = vec![None; changes.len()];
    let mut pending: Vec<usize> = (0..changes.len()).collect();
    // A record planned to be created is not read first: the write itself finds out whether it exists.
    let mut read_first = false;
    for _ in 0..MOST_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let need_read: Vec<&str> = pending
            .iter()
            .filter(|&&i| read_first || changes[i].action != ChangeAction::Create)
            .map(|&i| changes[i].sourced_id.as_str())
            .collect();
        let mut read = store
            .get_records(&tenant.id, entity, &need_read)?
            .into_iter();
        let mut writing = Vec::new();
        for &i in &pending {
            let change = &changes[i];
            let current = if read_first || change.action != ChangeAction::Create {
                read.next().flatten()
            } else {
                None
            };
            let id = change.sourced_id.as_str();
            if current.as_ref().and_then(|c| c.batch.as_deref()) == Some(batch) {
                // Written by this batch on an earlier try: it counts as it landed then.
                let earlier_item = earlier.get(id);
                landed[i] = Some(match earlier_item {
                    Some(item) => label_of(&item.landed).unwrap_or(change.planned().label()),
                    None => change.planned().label(),
                });
                undo[i] = earlier_item.cloned();
                continue;
            }
            was_moved[i] = moved(change, current.as_ref());
            let action = resolve(tenant, change, current.as_ref());
            landed[i] = Some(action.label());
            if !action.writes() {
                undo[i] = None;
                continue;
            }
            undo[i] = Some(UndoItem {
                entity,
                sourced_id: id.to_string(),
                written_version: current.as_ref().map_or(1, |c| c.version + 1),
                before: current,
                landed: action.label().to_string(),
            });
            writing.push((i, action));
        }
        // The prior states are kept before anything is written, so an interrupted chunk can still be undone.
        let page: Vec<&UndoItem> = undo.iter().flatten().collect();
        store.put_undo(&tenant.id, batch, chunk.number, &page)?;
        // Written a few at a time, each record built just before its write and dropped just after.
        let mut conflicts = Vec::new();
        for group in writing.chunks(WRITE_GROUP) {
            let writes: Vec<Write> = group
                .iter()
                .filter_map(|&(i, action)| {
                    let before = undo[i].as_ref().and_then(|u| u.before.as_ref());
                    let change = &changes[i];
                    written(
                        action,
                        entity,
                        &change.sourced_id,
                        before,
                        &change.sis,
                        tenant.policy,
                        batch,
                    )
                    .map(|after| Write::replacing(before, after))
                })
                .collect();
            let applied = store.write_records(&tenant.id, &writes)?;
            conflicts.extend(
                group
                    .iter()
                    .zip(applied)
                    .filter_map(|(&(i, _), ok)| (!ok).then_some(i)),
            );
        }
        pending = conflicts;
        read_first = true;
    }
    if !pending.is_empty() {
        return Err(PlanError::Store(StoreError::Busy {
            doing: format!(
                "writing {} {entity} records that other writers kept changing (chunk {} of batch {batch})",
                pending.len(),
                chunk.number
            ),
        }));
    }
    result.writes = undo.iter().flatten().count() as u64;
    result.moved = was_moved.iter().filter(|m| **m).count() as u64;
    let counts = result.landed.entry(entity).or_default();
    for label in landed.into_iter().flatten() {
        counts.add(label, 1);
    }
    store.put_chunk_result(&tenant.id, batch, chunk.number, &result)?;
    Ok(result)
}

/// The `'static` label a stored label names.
fn label_of(text: &str) -> Option<&'static str> {
    [
        "create",
        "update",
        "archive",
        "restore",
        "unchanged",
        "kept_manual",
        "out_of_scope",
    ]
    .into_iter()
    .find(|l| *l == text)
}

/// Applies every chunk of a staged plan that is not applied yet, in the plan's order, and adds up what the
/// chunks did. The next chunk is read and decoded on a thread of its own while one is applied. `after_chunk`
/// runs after each chunk (a run renews its lease there).
pub fn apply_plan(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    tenant: &Tenant,
    batch: &str,
    plan: &Plan,
    after_chunk: &mut dyn FnMut(&ChunkInfo) -> Result<(), PlanError>,
) -> Result<Applied, PlanError> {
    let done = store.chunk_results(&tenant.id, batch)?;
    let mut applied = Applied {
        counts: plan.counts.clone(),
        ..Applied::default()
    };
    let mut todo = Vec::new();
    for chunk in &plan.chunks {
        match done.get(&chunk.number) {
            Some(result) => add_result(&mut applied, result),
            None => todo.push(chunk),
        }
    }
    std::thread::scope(|scope| {
        let (ahead, read) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for chunk in todo {
                // A send fails when the applying side stopped (an error): then there is nothing more to read.
                if ahead.send((chunk, read_chunk(blobs, chunk))).is_err() {
                    break;
                }
            }
        });
        for (chunk, changes) in read {
            let result = apply_chunk(store, tenant, batch, chunk, &changes?)?;
            applied.chunks_applied += 1;
            after_chunk(chunk)?;
            add_result(&mut applied, &result);
        }
        Ok(applied)
    })
}

/// Adds one chunk's result into the totals.
pub fn add_result(applied: &mut Applied, result: &ChunkResult) {
    for (entity, planned) in &result.planned {
        let landed = result.landed.get(entity).copied().unwrap_or_default();
        applied
            .counts
            .entry(*entity)
            .or_default()
            .rebase(planned, &landed);
    }
    applied.moved += result.moved;
    applied.writes += result.writes;
}
