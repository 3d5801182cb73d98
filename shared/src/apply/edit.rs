//! Manual work, as the product records it: editing fields, creating, archiving and restoring records by hand.
//! Each change is marked with who made it and when, so the next sync can respect it according to the tenant's
//! policy. Every write is conditional on the version it read: an edit that finds the record moved on (a sync
//! or another edit wrote it meanwhile) reads it again and applies its own fields to the fresh record, so no
//! write is ever made from a stale read and no concurrent change is lost.

use crate::model::{Entity, Origin, Provenance, Record, Tenant, now};
use crate::read::bundle::InputError;
use crate::store::{Expect, Store, StoreError, Write};
use crate::validate::finding::Finding;
use crate::validate::{fields, record};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use thiserror::Error;

/// A manual change that was not made.
#[derive(Debug, Error)]
pub enum EditError {
    #[error("there is no tenant {0:?}")]
    UnknownTenant(String),
    #[error("tenant {tenant} has no {entity} record {id:?}")]
    NotFound {
        tenant: String,
        entity: Entity,
        id: String,
    },
    #[error("tenant {tenant} already has a {entity} record {id:?}; edit it instead")]
    Exists {
        tenant: String,
        entity: Entity,
        id: String,
    },
    #[error("{entity} have no field {field:?}; fields that can be set: {allowed}")]
    UnknownField {
        entity: Entity,
        field: String,
        allowed: String,
    },
    /// The record as the change would leave it fails the validator's checks of a bundle's row: nothing is
    /// written. The findings are the validator's, code, message and hint.
    #[error("{}", refusal(*entity, id, *created, findings))]
    Invalid {
        entity: Entity,
        id: String,
        created: bool,
        findings: Vec<Finding>,
    },
    /// Checking the record failed (rollcall's fault: the record could not be read back as a bundle row).
    #[error("the record could not be checked: {0}")]
    Check(#[from] InputError),
    #[error(
        "tenant {0} does not allow records to be created by hand (its roster comes from the district's system only)"
    )]
    CreationRefused(String),
    #[error("expected FIELD=VALUE, got {0:?}")]
    BadAssignment(String),
    /// Archiving an archived record, restoring an active one: nothing is written (not even a new mark).
    #[error("{entity} {id} is already {state}; nothing changed")]
    Unchanged {
        entity: Entity,
        id: String,
        state: &'static str,
    },
    #[error(
        "{entity} {id} kept changing while the edit was written ({attempts} tries); try the edit again"
    )]
    Contended {
        entity: Entity,
        id: String,
        attempts: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often an edit reads the record again when other writers keep changing it first.
const MOST_ATTEMPTS: usize = 200;

/// Parses `FIELD=VALUE` assignments.
pub fn assignments(items: &[String]) -> Result<Vec<(String, String)>, EditError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| EditError::BadAssignment(item.clone()))
        })
        .collect()
}

/// What an [`EditError::Invalid`] says: which record, and each finding as the validator words it.
fn refusal(entity: Entity, id: &str, created: bool, findings: &[Finding]) -> String {
    let verb = if created { "created" } else { "changed" };
    let errors = crate::validate::report::plural(findings.len() as u64, "error");
    let mut out = format!("{entity} {id} was not {verb}: a sync would reject it ({errors})");
    for f in findings {
        let _ = write!(out, "\n  {} {}", f.severity.as_str(), f.code.as_str());
        if let Some(column) = &f.column {
            let _ = write!(out, ", {column}");
        }
        let _ = write!(out, ": {}", f.message);
        if let Some(hint) = &f.hint {
            let _ = write!(out, "\n    hint: {hint}");
        }
    }
    out
}

/// Checks that a field may be set by hand on this entity: a column of its file after `status` and
/// `dateLastModified`, a `metadata.*` column, or a field the product keeps. Values are checked on the whole
/// record afterwards, by the validator.
fn check_field(entity: Entity, field: &str) -> Result<(), EditError> {
    let columns = entity.file_kind().columns();
    if entity.product_fields().contains(&field)
        || field.starts_with("metadata.") && field.len() > "metadata.".len()
        || columns.iter().skip(3).any(|c| c.name == field)
    {
        return Ok(());
    }
    let mut allowed: Vec<&str> = columns.iter().skip(3).map(|c| c.name).collect();
    allowed.extend(entity.product_fields());
    allowed.push("metadata.*");
    Err(EditError::UnknownField {
        entity,
        field: field.to_string(),
        allowed: allowed.join(", "),
    })
}

/// The product's own fields (not OneRoster columns) are booleans, checked as the validator checks a boolean
/// column.
fn product_field_findings(record: &Record) -> Vec<Finding> {
    let mut out = Vec::new();
    for &field in record.entity.product_fields() {
        let Some(value) = record.fields.get(field) else {
            continue;
        };
        if let (_, Some(p)) = fields::boolean(value)
            && p.severity == crate::Severity::Error
        {
            let mut f = Finding::new(p.severity, p.code, p.message)
                .column(field)
                .value(value.as_bytes());
            f.hint = p.hint;
            out.push(f);
        }
    }
    out
}

/// Refuses a record that a sync would reject: the validator's checks of a bundle's row, with the records it
/// refers to as the roster holds them now.
fn check_record(
    store: &dyn Store,
    tenant: &str,
    record: &Record,
    created: bool,
) -> Result<(), EditError> {
    let mut referenced = Vec::new();
    let wanted = record::references(record);
    for entity in Entity::ALL {
        let ids: Vec<&str> = wanted
            .iter()
            .filter(|(e, _)| *e == entity)
            .map(|(_, id)| id.as_str())
            .collect();
        if !ids.is_empty() {
            referenced.extend(
                store
                    .get_records(tenant, entity, &ids)?
                    .into_iter()
                    .flatten(),
            );
        }
    }
    let mut findings = record::errors(record, &referenced)?;
    findings.extend(product_field_findings(record));
    if findings.is_empty() {
        return Ok(());
    }
    Err(EditError::Invalid {
        entity: record.entity,
        id: record.sourced_id.clone(),
        created,
        findings,
    })
}

fn tenant(store: &dyn Store, id: &str) -> Result<Tenant, EditError> {
    store
        .get_tenant(id)?
        .ok_or_else(|| EditError::UnknownTenant(id.to_string()))
}

fn existing(
    store: &dyn Store,
    tenant: &str,
    entity: Entity,
    id: &str,
) -> Result<Record, EditError> {
    store
        .get_record(tenant, entity, id)?
        .ok_or_else(|| EditError::NotFound {
            tenant: tenant.to_string(),
            entity,
            id: id.to_string(),
        })
}

/// Changes a record by hand: reads it, lets `change` make the manual change, and writes it if nothing else
/// wrote the record since it was read; otherwise reads it again and makes the change anew.
fn change_record(
    store: &dyn Store,
    tenant: &str,
    entity: Entity,
    id: &str,
    change: &dyn Fn(&mut Record) -> Result<(), EditError>,
) -> Result<Record, EditError> {
    for _ in 0..MOST_ATTEMPTS {
        let before = existing(store, tenant, entity, id)?;
        let mut after = before.clone();
        change(&mut after)?;
        after.batch = None;
        after.version = before.version + 1;
        let write = Write::Put {
            record: after.clone(),
            expect: Expect::Version(before.version),
        };
        if store.write_records(tenant, &[write])?[0] {
            return Ok(after);
        }
    }
    Err(EditError::Contended {
        entity,
        id: id.to_string(),
        attempts: MOST_ATTEMPTS,
    })
}

/// Checks and sets `FIELD=VALUE` assignments on a record, marking each as manual work by `by`, now. An empty
/// value clears the field; the clearing is itself kept as manual work.
fn set_fields(
    record: &mut Record,
    sets: &[(String, String)],
    by: &str,
    at: u64,
) -> Result<(), EditError> {
    for (field, value) in sets {
        check_field(record.entity, field)?;
        if value.is_empty() {
            record.fields.remove(field);
        } else {
            record.fields.insert(field.clone(), value.clone());
        }
        record.provenance.insert(
            field.clone(),
            Provenance::Manual {
                by: by.to_string(),
                at,
            },
        );
    }
    Ok(())
}

/// Sets fields by hand (an empty value clears the field, and the clearing is itself kept as manual work).
pub fn edit(
    store: &dyn Store,
    tenant_id: &str,
    entity: Entity,
    sourced_id: &str,
    sets: &[(String, String)],
    by: &str,
) -> Result<Record, EditError> {
    tenant(store, tenant_id)?;
    let at = now();
    change_record(store, tenant_id, entity, sourced_id, &|record| {
        set_fields(record, sets, by, at)?;
        check_record(store, tenant_id, record, false)
    })
}

/// Creates a record by hand.
pub fn create(
    store: &dyn Store,
    tenant_id: &str,
    entity: Entity,
    sourced_id: &str,
    sets: &[(String, String)],
    by: &str,
) -> Result<Record, EditError> {
    let t = tenant(store, tenant_id)?;
    if !t.manual_creation {
        return Err(EditError::CreationRefused(t.id));
    }
    let exists = || EditError::Exists {
        tenant: tenant_id.to_string(),
        entity,
        id: sourced_id.to_string(),
    };
    if store.get_record(tenant_id, entity, sourced_id)?.is_some() {
        return Err(exists());
    }
    let mut record = Record {
        entity,
        sourced_id: sourced_id.to_string(),
        fields: BTreeMap::new(),
        sis_fields: BTreeMap::new(),
        provenance: BTreeMap::new(),
        active: true,
        origin: Origin::Manual,
        archived_by: None,
        batch: None,
        created_batch: None,
        version: 0,
    };
    set_fields(&mut record, sets, by, now())?;
    check_record(store, tenant_id, &record, true)?;
    record.version = 1;
    let write = Write::Put {
        record: record.clone(),
        expect: Expect::Absent,
    };
    if !store.write_records(tenant_id, &[write])?[0] {
        // Someone created it between the look and the write.
        return Err(exists());
    }
    Ok(record)
}

/// The pseudo-field under which who archived or restored a record by hand, and when, is kept.
pub const STATUS_MARK: &str = "status";

/// Archives a record by hand.
pub fn archive(
    store: &dyn Store,
    tenant_id: &str,
    entity: Entity,
    sourced_id: &str,
    by: &str,
) -> Result<Record, EditError> {
    set_active(store, tenant_id, entity, sourced_id, by, false)
}

/// Restores a record by hand.
pub fn restore(
    store: &dyn Store,
    tenant_id: &str,
    entity: Entity,
    sourced_id: &str,
    by: &str,
) -> Result<Record, EditError> {
    set_active(store, tenant_id, entity, sourced_id, by, true)
}

fn set_active(
    store: &dyn Store,
    tenant_id: &str,
    entity: Entity,
    sourced_id: &str,
    by: &str,
    active: bool,
) -> Result<Record, EditError> {
    tenant(store, tenant_id)?;
    let at = now();
    change_record(store, tenant_id, entity, sourced_id, &|record| {
        if record.active == active {
            return Err(EditError::Unchanged {
                entity,
                id: sourced_id.to_string(),
                state: if active { "active" } else { "archived" },
            });
        }
        record.active = active;
        record.archived_by = (!active).then_some(Origin::Manual);
        record.provenance.insert(
            STATUS_MARK.to_string(),
            Provenance::Manual {
                by: by.to_string(),
                at,
            },
        );
        Ok(())
    })
}
