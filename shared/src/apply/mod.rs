//! Applying a plan: the second walk over the bundle, writing each decision into one store transaction with the
//! state it replaces (so the batch can be undone). Creates and updates go in walk order (parents first);
//! archives are queued and written last, children first.

pub mod edit;

use crate::model::{Batch, Entity, Origin, Record, Tenant};
use crate::plan::{Action, Plan, PlanError, Sink, created, merged};
use crate::read::rows::Row;
use crate::store::{Change, Store, Transaction};

/// Writes decisions as they come; also counts them, so the applied counts are the ones actually written.
pub struct Applier<'a> {
    tx: Box<dyn Transaction + 'a>,
    store: &'a dyn Store,
    tenant: &'a Tenant,
    batch: String,
    archives: Vec<(Entity, String)>,
    /// Records written.
    pub writes: u64,
    /// What was applied, counted as it went.
    pub plan: Plan,
}

impl<'a> Applier<'a> {
    pub fn begin(
        store: &'a dyn Store,
        tenant: &'a Tenant,
        batch: &str,
    ) -> Result<Applier<'a>, PlanError> {
        Ok(Applier {
            tx: store.begin(&tenant.id)?,
            store,
            tenant,
            batch: batch.to_string(),
            archives: Vec::new(),
            writes: 0,
            plan: Plan::new(),
        })
    }

    fn existing(&self, entity: Entity, sourced_id: &str) -> Result<Record, PlanError> {
        self.store
            .get_record(&self.tenant.id, entity, sourced_id)?
            .ok_or_else(|| {
                PlanError::Store(crate::store::StoreError::Corrupt {
                    what: format!("{entity} {sourced_id}"),
                    reason: "the record planned for changed while the batch was applied".into(),
                })
            })
    }

    fn write(&mut self, before: Option<Record>, after: Record) -> Result<(), PlanError> {
        self.writes += 1;
        self.tx.write(Change { before, after })?;
        Ok(())
    }

    /// Writes the queued archives (children first) and commits everything with the batch's final state.
    pub fn finish(mut self, batch: &Batch) -> Result<(u64, Plan), PlanError> {
        let mut archives = std::mem::take(&mut self.archives);
        archives.sort_by_key(|(entity, _)| std::cmp::Reverse(*entity));
        for (entity, id) in archives {
            let before = self.existing(entity, &id)?;
            let mut after = before.clone();
            after.active = false;
            after.archived_by = Some(Origin::Sis);
            after.batch = Some(self.batch.clone());
            self.write(Some(before), after)?;
        }
        self.tx.commit(batch)?;
        Ok((self.writes, self.plan))
    }
}

impl Sink for Applier<'_> {
    fn decided(
        &mut self,
        entity: Entity,
        action: Action,
        sourced_id: &str,
        row: Option<&Row<'_>>,
    ) -> Result<(), PlanError> {
        self.plan.decided(entity, action, sourced_id, row)?;
        // The values are copied out of the row only for records that are written.
        let sis = || row.map(Row::fields).unwrap_or_default();
        match action {
            Action::Unchanged | Action::OutOfScope | Action::KeptManual { write: false } => Ok(()),
            Action::Archive => {
                self.archives.push((entity, sourced_id.to_string()));
                Ok(())
            }
            Action::Create => {
                let after = created(entity, sourced_id, &sis(), &self.batch);
                self.write(None, after)
            }
            Action::Update | Action::Restore | Action::KeptManual { write: true } => {
                let before = self.existing(entity, sourced_id)?;
                let mut after = merged(&before, &sis(), self.tenant.policy, &self.batch);
                after.batch = Some(self.batch.clone());
                if action == Action::Restore {
                    after.active = true;
                    after.archived_by = None;
                }
                self.write(Some(before), after)
            }
        }
    }
}
