//! A record's provenance as both stores keep it, compactly: manual marks in full (who, when), SIS batches only
//! for fields whose batch differs from the one that created the record, and the SIS values only when they
//! differ from the values in force. Most records are then their fields and little else.

use crate::model::{Origin, Provenance, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who set a field by hand, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualMark {
    pub by: String,
    pub at: u64,
}

/// The parts of a record's provenance worth storing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compact {
    pub manual: BTreeMap<String, ManualMark>,
    pub sis_batches: BTreeMap<String, String>,
}

impl Compact {
    pub fn of(record: &Record) -> Compact {
        let mut compact = Compact::default();
        for (field, p) in &record.provenance {
            match p {
                Provenance::Manual { by, at } => {
                    compact.manual.insert(
                        field.clone(),
                        ManualMark {
                            by: by.clone(),
                            at: *at,
                        },
                    );
                }
                Provenance::Sis { batch } if Some(batch) != record.created_batch.as_ref() => {
                    compact.sis_batches.insert(field.clone(), batch.clone());
                }
                Provenance::Sis { .. } => {}
            }
        }
        compact
    }

    /// The provenance of every field in force (and of fields cleared by hand), back from its compact form.
    pub fn provenance(
        self,
        fields: &BTreeMap<String, String>,
        created_batch: Option<&String>,
        batch: Option<&String>,
    ) -> BTreeMap<String, Provenance> {
        let mut provenance = BTreeMap::new();
        for field in fields.keys() {
            let p = match self.manual.get(field) {
                Some(m) => Provenance::Manual {
                    by: m.by.clone(),
                    at: m.at,
                },
                None => Provenance::Sis {
                    batch: self
                        .sis_batches
                        .get(field)
                        .or(created_batch)
                        .or(batch)
                        .cloned()
                        .unwrap_or_default(),
                },
            };
            provenance.insert(field.clone(), p);
        }
        // A manual mark on a field with no value (cleared by hand) still counts.
        for (field, m) in self.manual {
            provenance
                .entry(field)
                .or_insert(Provenance::Manual { by: m.by, at: m.at });
        }
        provenance
    }
}

/// An origin by its stored name.
pub fn origin(text: &str) -> Option<Origin> {
    match text {
        "sis" => Some(Origin::Sis),
        "manual" => Some(Origin::Manual),
        _ => None,
    }
}
