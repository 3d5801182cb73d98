//! Manual work, as the product records it: editing fields, creating, archiving and restoring records by hand.
//! Each change is marked with who made it and when, so the next sync can respect it according to the tenant's
//! policy. Every write is conditional on the version it read: an edit that finds the record moved on (a sync
//! or another edit wrote it meanwhile) reads it again and applies its own fields to the fresh record, so no
//! write is ever made from a stale read and no concurrent change is lost.

use crate::model::{Entity, Origin, Provenance, Record, Tenant, now};
use crate::spec::ColumnType;
use crate::store::{Expect, Store, StoreError, Write};
use crate::validate::fields;
use std::collections::BTreeMap;
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
    #[error("{field}={value:?} is not valid: {reason}")]
    BadValue {
        field: String,
        value: String,
        reason: String,
    },
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

/// Checks that a field may be set by hand on this entity and that the value fits the column.
fn check_field(entity: Entity, field: &str, value: &str) -> Result<(), EditError> {
    if entity.product_fields().contains(&field) || field.starts_with("metadata.") {
        return Ok(());
    }
    let columns = entity.file_kind().columns();
    let Some(column) = columns.iter().skip(3).find(|c| c.name == field) else {
        let mut allowed: Vec<&str> = columns.iter().skip(3).map(|c| c.name).collect();
        allowed.extend(entity.product_fields());
        allowed.push("metadata.*");
        return Err(EditError::UnknownField {
            entity,
            field: field.to_string(),
            allowed: allowed.join(", "),
        });
    };
    if value.is_empty() {
        return Ok(());
    }
    let problem = match column.ty {
        ColumnType::Enum(allowed) => fields::one_of(value, allowed).err(),
        ColumnType::Bool => fields::boolean(value)
            .1
            .filter(|p| p.severity == crate::Severity::Error),
        ColumnType::Date => fields::date(value).err(),
        ColumnType::Year => fields::year(value),
        ColumnType::Grades => value.split(',').find_map(|g| fields::grade(g.trim())),
        _ => None,
    };
    match problem {
        Some(p) => Err(EditError::BadValue {
            field: field.to_string(),
            value: value.to_string(),
            reason: p.hint.unwrap_or(p.message),
        }),
        None => Ok(()),
    }
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
        check_field(record.entity, field, value)?;
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
        set_fields(record, sets, by, at)
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
    if fields::guid(sourced_id).is_some() {
        return Err(EditError::BadValue {
            field: "sourcedId".into(),
            value: sourced_id.into(),
            reason: "identifiers may not contain spaces, commas, quotes or control characters"
                .into(),
        });
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
