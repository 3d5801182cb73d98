//! Planning: what a validated bundle does to a tenant's roster. One deterministic walk over the bundle, entity by
//! entity in dependency order, decides for every record: create, update, restore, archive, unchanged, kept
//! manual (the tenant's policy protected manual work) or out of scope (the tenant's filters). The same walk
//! counts (the plan the guard judges) and, on a second pass with the same inputs, writes (apply), so a plan of a
//! million records never has to be held in memory.

use crate::index::{Fp, FpMap, fp_map};
use crate::read::bundle::{Bundle, InputError};
use crate::limits::Limits;
use crate::model::{Counts, Entity, Origin, Policy, Provenance, Record, Tenant};
use crate::progress::Progress;
use crate::read::rows::{Row, for_each_row};
use crate::spec::Mode;
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashSet};
use thiserror::Error;

/// Planning or applying could not go on.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happens to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Archive,
    Restore,
    Unchanged,
    /// Manual work kept under `preserve_manual`; `write` when the SIS sent new values to record beside it.
    KeptManual {
        write: bool,
    },
    OutOfScope,
}

/// Receives every decision of the walk.
pub trait Sink {
    /// `row` is what the SIS sent (for every action but archives of records a bulk file left out).
    fn decided(
        &mut self,
        entity: Entity,
        action: Action,
        sourced_id: &str,
        row: Option<&Row<'_>>,
    ) -> Result<(), PlanError>;
}

/// What the walk learned beyond the decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Active records of each entity before the sync (the base of the guard's fractions).
    pub active_before: BTreeMap<Entity, u64>,
}

/// A stored record, as planning sees it.
#[derive(Clone, Copy)]
struct Known {
    sis_hash: u64,
    active: bool,
    manual_origin: bool,
    manual_archive: bool,
    manual_fields: bool,
    seen: bool,
}

/// The tenant's filters, as they apply while the walk goes on. Scope carries over between batches: what the
/// tenant already holds (and which schools it takes) is read from the store, so a delta bundle is judged the
/// same way as the bulk load before it.
struct Scope {
    filters: crate::model::Filters,
    /// Every org known (stored or in the bundle): whether it is in scope.
    orgs: FpMap<bool>,
    /// Users and classes the tenant holds or this bundle admits.
    users_in: HashSet<Fp>,
    classes_in: HashSet<Fp>,
}

impl Scope {
    fn new(tenant: &Tenant, store: &dyn Store) -> Result<Scope, PlanError> {
        let mut scope = Scope {
            filters: tenant.filters.clone(),
            orgs: fp_map(),
            users_in: HashSet::new(),
            classes_in: HashSet::new(),
        };
        if scope.filters.is_empty() {
            return Ok(scope);
        }
        for org in store.list_records(&tenant.id, Entity::Orgs)? {
            let field = |name: &str| org.fields.get(name).map(String::as_str);
            scope.note_org(&org.sourced_id, field("type"), field("identifier"));
        }
        let (users, classes) = (&mut scope.users_in, &mut scope.classes_in);
        store.snapshot(&tenant.id, Entity::Users, &mut |s| {
            users.insert(Fp::of(s.sourced_id.as_bytes()));
        })?;
        store.snapshot(&tenant.id, Entity::Classes, &mut |s| {
            classes.insert(Fp::of(s.sourced_id.as_bytes()));
        })?;
        Ok(scope)
    }

    fn note_org(&mut self, id: &str, kind: Option<&str>, identifier: Option<&str>) {
        let wanted = kind != Some("school")
            || self.filters.schools.is_empty()
            || self
                .filters
                .schools
                .iter()
                .any(|s| s == id || identifier == Some(s.as_str()));
        self.orgs.insert(Fp::of(id.as_bytes()), wanted);
    }

    /// An org is in scope unless it is a school the filters leave out; with a school filter, an org the
    /// tenant has never seen is not in scope either.
    fn org_in(&self, id: &str) -> bool {
        match self.orgs.get(&Fp::of(id.as_bytes())) {
            Some(wanted) => *wanted,
            None => self.filters.schools.is_empty(),
        }
    }

    fn admits(&mut self, entity: Entity, row: &Row<'_>) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let field = |name: &str| row.get(name).unwrap_or("");
        let fp = Fp::of(row.sourced_id().as_bytes());
        let (admitted, set) = match entity {
            Entity::Orgs => {
                self.note_org(row.sourced_id(), row.get("type"), row.get("identifier"));
                (self.org_in(row.sourced_id()), None)
            }
            Entity::AcademicSessions => (true, None),
            Entity::Courses => (self.org_in(field("orgSourcedId")), None),
            Entity::Classes => (
                self.org_in(field("schoolSourcedId")),
                Some(&mut self.classes_in),
            ),
            Entity::Users => {
                let in_org = field("orgSourcedIds")
                    .split(',')
                    .any(|o| self.org_in(o.trim()));
                let role = field("role");
                let in_role =
                    self.filters.roles.is_empty() || self.filters.roles.iter().any(|r| r == role);
                let grades = field("grades");
                let in_grade = self.filters.grades.is_empty()
                    || role != "student"
                    || grades.is_empty()
                    || grades
                        .split(',')
                        .any(|g| self.filters.grades.iter().any(|f| f == g.trim()));
                (in_org && in_role && in_grade, Some(&mut self.users_in))
            }
            Entity::Demographics => (self.users_in.contains(&fp), None),
            Entity::Enrollments => {
                let user = Fp::of(field("userSourcedId").as_bytes());
                let class = Fp::of(field("classSourcedId").as_bytes());
                (
                    self.users_in.contains(&user) && self.classes_in.contains(&class),
                    None,
                )
            }
        };
        if let Some(set) = set {
            if admitted {
                set.insert(fp);
            } else {
                set.remove(&fp);
            }
        }
        admitted
    }
}

/// Walks the bundle once, calling `sink` with every decision. `modes` gives each present file's mode.
pub fn walk(
    bundle: &mut Bundle,
    modes: &BTreeMap<crate::spec::FileKind, Option<Mode>>,
    tenant: &Tenant,
    store: &dyn Store,
    limits: &Limits,
    progress: &dyn Progress,
    sink: &mut dyn Sink,
) -> Result<Walked, PlanError> {
    let mut walked = Walked::default();
    let mut scope = Scope::new(tenant, store)?;
    for entity in Entity::ALL {
        let mut known: FpMap<Known> = fp_map();
        let mut active = 0;
        store.snapshot(&tenant.id, entity, &mut |s| {
            active += u64::from(s.active);
            known.insert(
                Fp::of(s.sourced_id.as_bytes()),
                Known {
                    sis_hash: s.sis_hash,
                    active: s.active,
                    manual_origin: s.manual_origin,
                    manual_archive: s.manual_archive,
                    manual_fields: s.manual_fields,
                    seen: false,
                },
            );
        })?;
        walked.active_before.insert(entity, active);
        let kind = entity.file_kind();
        let Some(mode) = modes.get(&kind).copied().flatten() else {
            continue;
        };
        for_each_row(
            bundle,
            kind,
            limits,
            progress,
            |row: &Row<'_>| -> Result<(), PlanError> {
                let fp = Fp::of(row.sourced_id().as_bytes());
                let existing = known.get_mut(&fp).map(|k| {
                    k.seen = true;
                    *k
                });
                let action = if scope.admits(entity, row) {
                    decide(tenant, store, entity, row, existing)?
                } else {
                    match existing {
                        Some(k) if k.active && !k.manual_origin => Action::Archive,
                        _ => Action::OutOfScope,
                    }
                };
                sink.decided(entity, action, row.sourced_id(), Some(row))
            },
        )?;
        let omitted = known
            .values()
            .filter(|k| !k.seen && k.active && !k.manual_origin)
            .count();
        if mode == Mode::Bulk && omitted > 0 {
            // A bulk file is the whole set: what it leaves out is archived (records made by hand stay).
            let mut omitted = Vec::new();
            store.snapshot(&tenant.id, entity, &mut |s| {
                if let Some(k) = known.get(&Fp::of(s.sourced_id.as_bytes()))
                    && !k.seen
                    && k.active
                    && !k.manual_origin
                {
                    omitted.push(s.sourced_id);
                }
            })?;
            omitted.sort();
            for id in omitted {
                sink.decided(entity, Action::Archive, &id, None)?;
            }
        }
    }
    Ok(walked)
}

/// The decision for one row the SIS sent, within scope.
fn decide(
    tenant: &Tenant,
    store: &dyn Store,
    entity: Entity,
    row: &Row<'_>,
    existing: Option<Known>,
) -> Result<Action, PlanError> {
    let preserve = tenant.policy == Policy::PreserveManual;
    let Some(k) = existing else {
        return Ok(if row.deleting() {
            Action::Unchanged
        } else {
            Action::Create
        });
    };
    if k.manual_origin && preserve {
        // A record made by hand that the SIS also sends: under preserve_manual the manual record stands.
        return Ok(Action::KeptManual {
            write: !row.deleting() && row.hash() != k.sis_hash,
        });
    }
    if row.deleting() {
        return Ok(if k.active {
            Action::Archive
        } else {
            Action::Unchanged
        });
    }
    let hash = row.hash();
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
    let Some(record) = store.get_record(&tenant.id, entity, row.sourced_id())? else {
        return Ok(Action::Create);
    };
    let after = merged(&record, &row.fields(), tenant.policy, "");
    Ok(if after.fields != record.fields {
        Action::Update
    } else if after.sis_fields != record.sis_fields {
        Action::KeptManual { write: true }
    } else if record
        .manual_fields()
        .filter(|f| !entity.product_fields().contains(f) && *f != crate::apply::edit::STATUS_MARK)
        .any(|f| record.fields.get(f).map(String::as_str) != row.get(f))
    {
        Action::KeptManual { write: false }
    } else {
        Action::Unchanged
    })
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
    }
}

/// Most ids kept per entity and action to show what lies behind a count.
pub const SAMPLE_IDS: usize = 20;

/// The plan: counts per entity and action, with sample ids behind the interesting ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub counts: BTreeMap<Entity, Counts>,
    /// Up to [`SAMPLE_IDS`] ids per entity and action (`update`, `archive`, `restore`, `kept_manual`).
    pub samples: BTreeMap<(Entity, &'static str), Vec<String>>,
    pub walked: Walked,
}

impl Plan {
    /// An empty plan with a zero count for every entity, so every entity shows in the output.
    pub fn new() -> Plan {
        Plan {
            counts: Entity::ALL
                .into_iter()
                .map(|e| (e, Counts::default()))
                .collect(),
            ..Plan::default()
        }
    }
}

impl Sink for Plan {
    fn decided(
        &mut self,
        entity: Entity,
        action: Action,
        sourced_id: &str,
        _row: Option<&Row<'_>>,
    ) -> Result<(), PlanError> {
        let counts = self.counts.entry(entity).or_default();
        let label = match action {
            Action::Create => {
                counts.create += 1;
                return Ok(());
            }
            Action::Unchanged => {
                counts.unchanged += 1;
                return Ok(());
            }
            Action::OutOfScope => {
                counts.out_of_scope += 1;
                return Ok(());
            }
            Action::Update => {
                counts.update += 1;
                "update"
            }
            Action::Archive => {
                counts.archive += 1;
                "archive"
            }
            Action::Restore => {
                counts.restore += 1;
                "restore"
            }
            Action::KeptManual { .. } => {
                counts.kept_manual += 1;
                "kept_manual"
            }
        };
        let ids = self.samples.entry((entity, label)).or_default();
        if ids.len() < SAMPLE_IDS {
            ids.push(sourced_id.to_string());
        }
        Ok(())
    }
}

/// Counts what a bundle would do, changing nothing.
pub fn plan(
    bundle: &mut Bundle,
    modes: &BTreeMap<crate::spec::FileKind, Option<Mode>>,
    tenant: &Tenant,
    store: &dyn Store,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::new();
    plan.walked = walk(bundle, modes, tenant, store, limits, progress, &mut plan)?;
    Ok(plan)
}
