//! The decision for one record: what the SIS sent (or left out) against what the tenant holds, under the tenant's
//! policy. Planning decides from a light snapshot of the stored record and reads the whole record only where
//! manual work is involved; applying decides again from the current record when it changed since it was
//! planned. Both use the functions here, so a record is judged the same way at either time.

use crate::model::{Entity, Origin, Policy, Provenance, Record, content_hash};
use crate::read::rows::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a record is archived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveWhy {
    /// A bulk file left it out: the file is the whole set.
    Omitted,
    /// A delta file marked it `tobedeleted`.
    Deleted,
    /// The tenant's filters no longer take it.
    OutOfScope,
}

/// What happens to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Archive(ArchiveWhy),
    Restore,
    Unchanged,
    /// Manual work kept under `preserve_manual`; `write` when the SIS sent new values to record beside it.
    KeptManual {
        write: bool,
    },
    OutOfScope,
}

impl Action {
    /// Whether the action writes the record.
    pub fn writes(self) -> bool {
        !matches!(
            self,
            Action::Unchanged | Action::OutOfScope | Action::KeptManual { write: false }
        )
    }

    /// The count the action goes into.
    pub fn label(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Archive(_) => "archive",
            Action::Restore => "restore",
            Action::Unchanged => "unchanged",
            Action::KeptManual { .. } => "kept_manual",
            Action::OutOfScope => "out_of_scope",
        }
    }
}

/// A stored record, as a decision sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    pub sis_hash: u64,
    pub active: bool,
    pub manual_origin: bool,
    pub manual_archive: bool,
    pub manual_fields: bool,
    /// Archived or restored by hand, last.
    pub manual_status: bool,
    pub version: u64,
}

impl Known {
    pub fn of_record(r: &Record) -> Known {
        Known {
            sis_hash: content_hash(&r.sis_fields),
            active: r.active,
            manual_origin: r.origin == Origin::Manual,
            manual_archive: r.archived_by == Some(Origin::Manual),
            manual_fields: r.has_manual_fields(),
            manual_status: r.manual_status(),
            version: r.version,
        }
    }
}

/// What the SIS sent for one record: a row of the bundle at planning, or the values a plan chunk carries at
/// applying.
pub trait Sent {
    /// The same hash as [`content_hash`] of [`Sent::fields`].
    fn hash(&self) -> u64;
    /// `status` is `tobedeleted`.
    fn deleting(&self) -> bool;
    /// The non-blank values by column name.
    fn fields(&self) -> BTreeMap<String, String>;
    /// One non-blank value.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Sent for Row<'_> {
    fn hash(&self) -> u64 {
        Row::hash(self)
    }
    fn deleting(&self) -> bool {
        Row::deleting(self)
    }
    fn fields(&self) -> BTreeMap<String, String> {
        Row::fields(self)
    }
    fn get(&self, name: &str) -> Option<&str> {
        Row::get(self, name)
    }
}

/// SIS values carried by a plan chunk.
pub struct Values<'a> {
    pub fields: &'a BTreeMap<String, String>,
    pub deleting: bool,
}

impl Sent for Values<'_> {
    fn hash(&self) -> u64 {
        content_hash(self.fields)
    }
    fn deleting(&self) -> bool {
        self.deleting
    }
    fn fields(&self) -> BTreeMap<String, String> {
        self.fields.clone()
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The decision for one record the SIS sent, within scope. `full` reads the whole stored record, asked for
/// only when manual work is involved.
pub fn decide<E>(
    policy: Policy,
    entity: Entity,
    sent: &dyn Sent,
    existing: Option<Known>,
    full: &mut dyn FnMut() -> Result<Option<Record>, E>,
) -> Result<Action, E> {
    let preserve = policy == Policy::PreserveManual;
    let Some(k) = existing else {
        return Ok(if sent.deleting() {
            Action::Unchanged
        } else {
            Action::Create
        });
    };
    if k.manual_origin && preserve {
        // A record made by hand that the SIS also sends: under preserve_manual the manual record stands.
        return Ok(Action::KeptManual {
            write: !sent.deleting() && sent.hash() != k.sis_hash,
        });
    }
    if sent.deleting() {
        return Ok(if k.active && k.manual_status && preserve {
            // Restored by hand: under preserve_manual it stays active until a person archives it.
            Action::KeptManual { write: false }
        } else if k.active {
            Action::Archive(ArchiveWhy::Deleted)
        } else {
            Action::Unchanged
        });
    }
    let hash = sent.hash();
    if !k.active {
        return Ok(if k.manual_archive && preserve {
            Action::KeptManual {
                write: hash != k.sis_hash,
            }
        } else {
            Action::Restore
        });
    }
    if !k.manual_fields && !k.manual_origin {
        return Ok(if hash == k.sis_hash {
            Action::Unchanged
        } else {
            Action::Update
        });
    }
    // Manual work on the record: compare what would be in force after the sync with what is in force now.
    let Some(record) = full()? else {
        return Ok(Action::Create);
    };
    let after = merged(&record, &sent.fields(), policy, "");
    Ok(if after.fields != record.fields {
        Action::Update
    } else if after.sis_fields != record.sis_fields {
        Action::KeptManual { write: true }
    } else if record
        .manual_fields()
        .filter(|f| !entity.product_fields().contains(f) && *f != crate::apply::edit::STATUS_MARK)
        .any(|f| record.fields.get(f).map(String::as_str) != sent.get(f))
    {
        Action::KeptManual { write: false }
    } else {
        Action::Unchanged
    })
}

/// The decision for a stored record the bundle did not send in scope: a bulk file left it out, or the filters
/// no longer take it. Records made by hand stay, and so under preserve_manual do records restored by hand.
pub fn decide_unsent(policy: Policy, why: ArchiveWhy, existing: Option<Known>) -> Action {
    match existing {
        Some(k) if k.active && k.manual_status && policy == Policy::PreserveManual => {
            Action::KeptManual { write: false }
        }
        Some(k) if k.active && !k.manual_origin => Action::Archive(why),
        _ if why == ArchiveWhy::OutOfScope => Action::OutOfScope,
        _ => Action::Unchanged,
    }
}

/// The record after a sync sends `sis` for it: SIS values where the SIS owns the field, manual values where
/// the policy keeps them, and product fields (never sent by the SIS) as they were.
pub fn merged(
    existing: &Record,
    sis: &BTreeMap<String, String>,
    policy: Policy,
    batch: &str,
) -> Record {
    let mut after = existing.clone();
    if existing.origin == Origin::Manual && policy == Policy::PreserveManual {
        // A record made by hand stays as it was made; the SIS's values are only recorded beside it.
        after.sis_fields = sis.clone();
        return after;
    }
    let keep_manual = |field: &str| {
        matches!(
            existing.provenance.get(field),
            Some(Provenance::Manual { .. })
        ) && (policy == Policy::PreserveManual || existing.entity.product_fields().contains(&field))
    };
    let mut fields = BTreeMap::new();
    let mut provenance = BTreeMap::new();
    for (field, value) in sis {
        if keep_manual(field) {
            continue;
        }
        let same = existing.fields.get(field) == Some(value)
            && matches!(existing.provenance.get(field), Some(Provenance::Sis { .. }));
        let p = match (same, existing.provenance.get(field)) {
            (true, Some(p)) => p.clone(),
            _ => Provenance::Sis {
                batch: batch.to_string(),
            },
        };
        fields.insert(field.clone(), value.clone());
        provenance.insert(field.clone(), p);
    }
    for (field, p) in &existing.provenance {
        if keep_manual(field) {
            if let Some(value) = existing.fields.get(field) {
                fields.insert(field.clone(), value.clone());
            }
            provenance.insert(field.clone(), p.clone());
        }
    }
    after.fields = fields;
    after.provenance = provenance;
    after.sis_fields = sis.clone();
    if existing.origin == Origin::Manual && policy == Policy::SisWins {
        after.origin = Origin::Sis;
    }
    after
}

/// A record the SIS sends for the first time.
pub fn created(
    entity: Entity,
    sourced_id: &str,
    sis: &BTreeMap<String, String>,
    batch: &str,
) -> Record {
    Record {
        entity,
        sourced_id: sourced_id.to_string(),
        fields: sis.clone(),
        sis_fields: sis.clone(),
        provenance: sis
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    Provenance::Sis {
                        batch: batch.to_string(),
                    },
                )
            })
            .collect(),
        active: true,
        origin: Origin::Sis,
        archived_by: None,
        batch: Some(batch.to_string()),
        created_batch: Some(batch.to_string()),
        version: 0,
    }
}

/// The record a decided action leaves, written by `batch` (`None` when the action writes nothing).
pub fn written(
    action: Action,
    entity: Entity,
    sourced_id: &str,
    current: Option<&Record>,
    sis: &BTreeMap<String, String>,
    policy: Policy,
    batch: &str,
) -> Option<Record> {
    if !action.writes() {
        return None;
    }
    let Some(before) = current else {
        return matches!(action, Action::Create).then(|| created(entity, sourced_id, sis, batch));
    };
    let mut after = match action {
        Action::Archive(_) => {
            let mut after = before.clone();
            after.active = false;
            after.archived_by = Some(Origin::Sis);
            after
        }
        _ => merged(before, sis, policy, batch),
    };
    after.batch = Some(batch.to_string());
    if action == Action::Restore {
        after.active = true;
        after.archived_by = None;
    }
    Some(after)
}
