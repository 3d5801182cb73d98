//! Where tenants, batches, records and undo information live. Narrow traits, one per capability, so the
//! pipeline asks only for what it uses and a DynamoDB implementation can stand beside the embedded SQLite one:
//! nothing here speaks SQL.

pub mod sqlite;

use crate::model::{Batch, Entity, Record, Tenant};
use thiserror::Error;

/// A store could not do what was asked.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the roster database {path} cannot be opened: {reason}")]
    Open { path: String, reason: String },
    #[error("the roster database failed while {doing}: {reason}")]
    Backend { doing: String, reason: String },
    #[error(
        "the roster database is busy with another run's writes (while {doing}); try again when it finishes"
    )]
    Busy { doing: String },
    #[error("stored data is damaged ({what}): {reason}")]
    Corrupt { what: String, reason: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Tenants: their configuration.
pub trait TenantStore {
    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
}

/// Batches: the sync history.
pub trait BatchStore {
    fn get_batch(&self, id: &str) -> StoreResult<Option<Batch>>;
    fn put_batch(&self, batch: &Batch) -> StoreResult<()>;
    /// A tenant's batches, oldest first.
    fn list_batches(&self, tenant: &str) -> StoreResult<Vec<Batch>>;
}

/// What planning needs to know of a stored record, without its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub sourced_id: String,
    /// Hash of the record's SIS values.
    pub sis_hash: u64,
    pub active: bool,
    /// Created by hand.
    pub manual_origin: bool,
    /// Archived by hand.
    pub manual_archive: bool,
    /// Has fields set by hand.
    pub manual_fields: bool,
}

/// Reading records.
pub trait RecordRead {
    fn get_record(
        &self,
        tenant: &str,
        entity: Entity,
        sourced_id: &str,
    ) -> StoreResult<Option<Record>>;
    /// Every record of one entity, lightly (for planning).
    fn snapshot(
        &self,
        tenant: &str,
        entity: Entity,
        each: &mut dyn FnMut(Snapshot),
    ) -> StoreResult<()>;
    /// Every record of one entity, in sourcedId order.
    fn list_records(&self, tenant: &str, entity: Entity) -> StoreResult<Vec<Record>>;
    /// Users by SSO login name.
    fn find_by_username(&self, tenant: &str, username: &str) -> StoreResult<Vec<Record>>;
    /// Users by a `userIds` entry (`ClassLink`, `123`).
    fn find_by_user_id(
        &self,
        tenant: &str,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Vec<Record>>;
    /// Records written so far by this store handle (for tests and benchmarks: a no-op sync writes none).
    fn records_written(&self) -> u64;
}

/// One record write, with the state it replaces (kept so the batch can be undone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub before: Option<Record>,
    pub after: Record,
}

/// An all-or-nothing set of record writes for one batch.
pub trait Transaction {
    fn write(&mut self, change: Change) -> StoreResult<()>;
    /// Makes every write visible at once, with the batch's final state.
    fn commit(self: Box<Self>, batch: &Batch) -> StoreResult<()>;
}

/// Writing records.
pub trait RecordWrite {
    fn begin(&self, tenant: &str) -> StoreResult<Box<dyn Transaction + '_>>;
    /// Writes one record outside any batch (a manual edit), keeping what it replaced only in the record itself.
    fn write_manual(&self, tenant: &str, change: Change) -> StoreResult<()>;
}

/// What undoing a batch needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoItem {
    pub entity: Entity,
    pub sourced_id: String,
    /// The record before the batch; `None` when the batch created it.
    pub before: Option<Record>,
}

/// Undoing batches.
pub trait UndoStore {
    /// Everything a batch changed, with the prior states.
    fn undo_items(&self, tenant: &str, batch: &str) -> StoreResult<Vec<UndoItem>>;
    /// Restores prior states (deleting records the batch created) and marks the batch, all at once.
    fn restore(&self, tenant: &str, items: &[UndoItem], batch: &Batch) -> StoreResult<()>;
}

/// One sync per tenant at a time.
pub trait LeaseStore {
    /// Takes the tenant's lease for `holder` unless someone else holds an unexpired one. Returns the holder
    /// when it is taken by someone else.
    fn acquire(&self, tenant: &str, holder: &str, ttl_secs: u64) -> StoreResult<Option<String>>;
    fn release(&self, tenant: &str, holder: &str) -> StoreResult<()>;
}

/// Everything the local pipeline needs, in one handle.
pub trait Store:
    TenantStore + BatchStore + RecordRead + RecordWrite + UndoStore + LeaseStore
{
}

impl<T: TenantStore + BatchStore + RecordRead + RecordWrite + UndoStore + LeaseStore> Store for T {}
