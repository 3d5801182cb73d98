//! Undoing an applied batch, page by page of its undo information: every record it changed goes back to the
//! state before it (records it created are removed), each write conditional on the version just read. A record
//! changed again since the batch (by a later batch or by hand) is a conflict: the check names them and the
//! rollback refuses unless forced. Restoring is idempotent (a record already back as it was is left alone), so
//! a rollback that died midway is resumed by running it again. No step holds more than one page.

use crate::model::{Entity, Record};
use crate::plan::PlanError;
use crate::store::{Expect, Store, StoreError, UndoItem, Write};

/// What undoing a batch would run into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conflicts {
    /// Records changed again since the batch wrote them.
    pub count: usize,
    /// A few of them, as `entity sourcedId`.
    pub examples: Vec<String>,
    /// Records the batch created.
    pub created: usize,
}

const EXAMPLES: usize = 3;

/// Whether an item is back as it was before the batch.
fn restored(item: &UndoItem, current: Option<&Record>) -> bool {
    match (&item.before, current) {
        (None, None) => true,
        (Some(before), Some(now)) => before.same_content(now),
        _ => false,
    }
}

/// Reads a batch's undo pages one at a time and finds the records changed since it wrote them.
pub fn conflicts(store: &dyn Store, tenant: &str, batch: &str) -> Result<Conflicts, PlanError> {
    let mut found = Conflicts::default();
    for chunk in store.undo_chunks(tenant, batch)? {
        let page = store.undo_page(tenant, batch, chunk)?.unwrap_or_default();
        found.created += page.iter().filter(|i| i.before.is_none()).count();
        for (entity, items) in by_entity(&page) {
            let ids: Vec<&str> = items.iter().map(|i| i.sourced_id.as_str()).collect();
            let current = store.get_records(tenant, entity, &ids)?;
            for (item, now) in items.iter().zip(current) {
                let changed = now
                    .as_ref()
                    .is_none_or(|r| r.version != item.written_version);
                if changed && !restored(item, now.as_ref()) {
                    found.count += 1;
                    if found.examples.len() < EXAMPLES {
                        found
                            .examples
                            .push(format!("{} {}", item.entity, item.sourced_id));
                    }
                }
            }
        }
    }
    Ok(found)
}

/// The items of a page grouped by entity, in page order within each.
fn by_entity(page: &[UndoItem]) -> Vec<(Entity, Vec<&UndoItem>)> {
    let mut groups: Vec<(Entity, Vec<&UndoItem>)> = Vec::new();
    for item in page {
        match groups.iter_mut().find(|(e, _)| *e == item.entity) {
            Some((_, items)) => items.push(item),
            None => groups.push((item.entity, vec![item])),
        }
    }
    groups
}

/// Restores every record the batch changed, page by page (last chunk first); returns the records written.
/// Without `force`, a record found changed since the batch wrote it stops the rollback with an error (check
/// with [`conflicts`] first).
pub fn roll_back(
    store: &dyn Store,
    tenant: &str,
    batch: &str,
    force: bool,
) -> Result<u64, PlanError> {
    let mut writes = 0;
    let mut chunks = store.undo_chunks(tenant, batch)?;
    chunks.reverse();
    for chunk in chunks {
        let page = store.undo_page(tenant, batch, chunk)?.unwrap_or_default();
        for (entity, items) in by_entity(&page) {
            writes += restore_items(store, tenant, entity, &items, force)?;
        }
    }
    Ok(writes)
}

fn restore_items(
    store: &dyn Store,
    tenant: &str,
    entity: Entity,
    items: &[&UndoItem],
    force: bool,
) -> Result<u64, PlanError> {
    let mut pending: Vec<&UndoItem> = items.to_vec();
    let mut writes = 0;
    for _ in 0..20 {
        if pending.is_empty() {
            return Ok(writes);
        }
        let ids: Vec<&str> = pending.iter().map(|i| i.sourced_id.as_str()).collect();
        let current = store.get_records(tenant, entity, &ids)?;
        let mut batch_writes = Vec::new();
        let mut writing = Vec::new();
        for (item, now) in pending.iter().zip(current) {
            if restored(item, now.as_ref()) {
                continue;
            }
            if let Some(now) = &now
                && now.version != item.written_version
                && !force
            {
                return Err(PlanError::Store(StoreError::Busy {
                    doing: format!(
                        "rolling back {entity} {}: it changed after the rollback was checked",
                        item.sourced_id
                    ),
                }));
            }
            // A restored record keeps counting up from the version it has now, never back to an old one.
            let write = match (&item.before, &now) {
                (Some(before), Some(now)) => Write::replacing(Some(now), before.clone()),
                (Some(before), None) => {
                    let mut record = before.clone();
                    record.version = before.version.max(item.written_version) + 1;
                    Write::Put {
                        record,
                        expect: Expect::Absent,
                    }
                }
                (None, Some(now)) => Write::Delete {
                    entity,
                    sourced_id: item.sourced_id.clone(),
                    version: now.version,
                },
                (None, None) => continue,
            };
            batch_writes.push(write);
            writing.push(*item);
        }
        let applied = store.write_records(tenant, &batch_writes)?;
        writes += applied.iter().filter(|ok| **ok).count() as u64;
        pending = writing
            .into_iter()
            .zip(applied)
            .filter_map(|(item, ok)| (!ok).then_some(item))
            .collect();
    }
    if pending.is_empty() {
        return Ok(writes);
    }
    Err(PlanError::Store(StoreError::Busy {
        doing: format!(
            "rolling back {} {entity} records that other writers kept changing",
            pending.len()
        ),
    }))
}
