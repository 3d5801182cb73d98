//! The tenant's filters as they apply while planning goes on, and what the plan steps hand on to each other:
//! which orgs are in scope (the orgs step), which classes (the orgs step) and which users (the users step) the
//! tenant holds or this bundle admits, so the enrollments step keeps only enrollments of both. Scope carries
//! over between batches: what the tenant already holds is read from the store, so a delta bundle is judged the
//! same way as the bulk load before it. A scope is a value: it is written between steps as a compact binary.

use super::PlanError;
use crate::index::{Fp, FpMap, FpSet, fp_map, fp_set};
use crate::model::{Entity, Filters, Tenant};
use crate::read::rows::Row;
use crate::store::RecordRead;

/// What the plan steps know of the tenant's scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    filters: Filters,
    /// Every org known (stored or in the bundle): whether it is in scope.
    orgs: FpMap<bool>,
    /// Users and classes the tenant holds or this bundle admits.
    users_in: FpSet,
    classes_in: FpSet,
}

/// How many stored records a page of a scope read takes.
const PAGE: usize = 1_000;

impl Scope {
    /// A scope that knows nothing yet but the tenant's filters.
    pub fn new(tenant: &Tenant) -> Scope {
        Scope {
            filters: tenant.filters.clone(),
            orgs: fp_map(),
            users_in: fp_set(),
            classes_in: fp_set(),
        }
    }

    pub fn is_filtered(&self) -> bool {
        !self.filters.is_empty()
    }

    /// Reads what the tenant holds of the entities a step is about to plan (orgs' types and identifiers, the
    /// users and classes it has), before the step's rows change it.
    pub fn load(
        &mut self,
        tenant: &str,
        entity: Entity,
        store: &dyn RecordRead,
    ) -> Result<(), PlanError> {
        if !self.is_filtered() {
            return Ok(());
        }
        match entity {
            Entity::Orgs => {
                let mut after: Option<String> = None;
                loop {
                    let page = store.list_records(tenant, Entity::Orgs, after.as_deref(), PAGE)?;
                    for org in &page {
                        let field = |name: &str| org.fields.get(name).map(String::as_str);
                        self.note_org(&org.sourced_id, field("type"), field("identifier"));
                    }
                    match page.last() {
                        Some(last) if page.len() == PAGE => after = Some(last.sourced_id.clone()),
                        _ => break,
                    }
                }
            }
            Entity::Users | Entity::Classes => {
                let set = if entity == Entity::Users {
                    &mut self.users_in
                } else {
                    &mut self.classes_in
                };
                store.snapshot(tenant, entity, &mut |s| {
                    set.insert(Fp::of(s.sourced_id.as_bytes()));
                })?;
            }
            _ => {}
        }
        Ok(())
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

    /// Whether the tenant takes a row the SIS sent (and notes it for the steps after).
    pub fn admits(&mut self, entity: Entity, row: &Row<'_>) -> bool {
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

    /// The scope as bytes: a magic line, the filters as JSON, then the org, user and class fingerprints
    /// (16 bytes each, sorted, so the same scope always gives the same bytes).
    pub fn encode(&self) -> Vec<u8> {
        let filters = serde_json::to_vec(&self.filters).unwrap_or_else(|_| b"{}".to_vec());
        let mut out = Vec::with_capacity(
            64 + filters.len()
                + 17 * self.orgs.len()
                + 16 * (self.users_in.len() + self.classes_in.len()),
        );
        out.extend_from_slice(MAGIC);
        put_len(&mut out, filters.len());
        out.extend_from_slice(&filters);
        let mut orgs: Vec<(Fp, bool)> = self.orgs.iter().map(|(k, v)| (*k, *v)).collect();
        orgs.sort();
        put_len(&mut out, orgs.len());
        for (fp, wanted) in orgs {
            out.extend_from_slice(&fp.to_bytes());
            out.push(u8::from(wanted));
        }
        for set in [&self.users_in, &self.classes_in] {
            let mut ids: Vec<Fp> = set.iter().copied().collect();
            ids.sort();
            put_len(&mut out, ids.len());
            for fp in ids {
                out.extend_from_slice(&fp.to_bytes());
            }
        }
        out
    }

    /// A scope written by [`Scope::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Scope, PlanError> {
        let bad = |reason: &str| PlanError::Staged {
            what: "the plan's scope".into(),
            reason: reason.to_string(),
        };
        let mut at = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("it does not start with the scope marker"))?;
        let mut take = |n: usize| -> Result<&[u8], PlanError> {
            if at.len() < n {
                return Err(bad("it ends early"));
            }
            let (head, rest) = at.split_at(n);
            at = rest;
            Ok(head)
        };
        let len = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize;
        let fp = |b: &[u8]| Fp::from_bytes(b.try_into().unwrap_or([0; 16]));
        let n = len(take(8)?);
        let filters: Filters =
            serde_json::from_slice(take(n)?).map_err(|e| bad(&format!("its filters: {e}")))?;
        let mut scope = Scope {
            filters,
            orgs: fp_map(),
            users_in: fp_set(),
            classes_in: fp_set(),
        };
        let orgs = len(take(8)?);
        for _ in 0..orgs {
            let id = fp(take(16)?);
            let wanted = take(1)?[0] != 0;
            scope.orgs.insert(id, wanted);
        }
        for which in 0..2 {
            let n = len(take(8)?);
            for _ in 0..n {
                let id = fp(take(16)?);
                if which == 0 {
                    scope.users_in.insert(id);
                } else {
                    scope.classes_in.insert(id);
                }
            }
        }
        if !at.is_empty() {
            return Err(bad("it has bytes past its end"));
        }
        Ok(scope)
    }
}

const MAGIC: &[u8] = b"rollcall scope 1\n";

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}
