//! Where tenants, batches, records, undo information and leases live. Narrow traits, one per capability, shaped
//! for a remote store as much as for the embedded one: reads and writes take many records per call, listings
//! come in pages, every record write is conditional on the version it was read at, and the lease names its
//! holder and expiry. The embedded SQLite implementation is `sqlite`; nothing here speaks SQL.
//!
//! The traits are synchronous. Validation and planning are CPU-bound streaming code over `Read` (the zip
//! reader needs `Read + Seek`), the embedded store is synchronous, and the pipeline's steps are short runs of
//! blocking work; an async store would colour every function between the CSV reader and the write for the
//! sake of one backend. The DynamoDB and S3 adapters hold a Tokio runtime handle and block on each call from
//! inside a blocking task (`spawn_blocking` in the Lambda handler), which is what the SDK supports.

pub mod compact;
pub mod sqlite;

use crate::model::{Batch, Counts, Entity, Record, Tenant};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// What applying one chunk of a plan did, kept so a resumed run skips it and the batch's counts stay exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkResult {
    /// What the plan said for the chunk's records, per entity.
    pub planned: BTreeMap<Entity, Counts>,
    /// Where they landed (different for records that changed since they were planned).
    pub landed: BTreeMap<Entity, Counts>,
    /// Records that changed since they were planned and were merged again.
    pub moved: u64,
    /// Records written.
    pub writes: u64,
}

/// Batches: the sync history, and what was applied of each.
pub trait BatchStore {
    fn get_batch(&self, id: &str) -> StoreResult<Option<Batch>>;
    fn put_batch(&self, batch: &Batch) -> StoreResult<()>;
    /// A tenant's batches, oldest first.
    fn list_batches(&self, tenant: &str) -> StoreResult<Vec<Batch>>;
    /// Records that one chunk of a batch's plan was applied, with what it did.
    fn put_chunk_result(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        result: &ChunkResult,
    ) -> StoreResult<()>;
    /// The chunks of a batch applied so far, by chunk number.
    fn chunk_results(&self, tenant: &str, batch: &str) -> StoreResult<BTreeMap<u32, ChunkResult>>;
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
    /// Archived or restored by hand, last (the `status` mark's provenance is manual).
    pub manual_status: bool,
    /// Has fields set by hand.
    pub manual_fields: bool,
    /// The version planning saw: apply writes only if the record is still at it.
    pub version: u64,
}

/// Reading records.
pub trait RecordRead {
    /// Records by sourcedId, in the order asked (`None` where there is none).
    fn get_records(
        &self,
        tenant: &str,
        entity: Entity,
        ids: &[&str],
    ) -> StoreResult<Vec<Option<Record>>>;
    /// How many records of one entity the tenant holds (planning sizes its tables by it).
    fn count_records(&self, tenant: &str, entity: Entity) -> StoreResult<u64>;
    /// Every record of one entity, lightly (for planning), in no particular order.
    fn snapshot(
        &self,
        tenant: &str,
        entity: Entity,
        each: &mut dyn FnMut(Snapshot),
    ) -> StoreResult<()>;
    /// One page of an entity's records in sourcedId order: up to `limit` records after `after`.
    fn list_records(
        &self,
        tenant: &str,
        entity: Entity,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Record>>;
    /// Users by SSO login name.
    fn find_by_username(&self, tenant: &str, username: &str) -> StoreResult<Vec<Record>>;
    /// Users by a `userIds` entry (`ClassLink`, `123`).
    fn find_by_user_id(
        &self,
        tenant: &str,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Vec<Record>>;

    /// Enrollments of one class or of one user, in sourcedId order.
    fn find_enrollments(&self, tenant: &str, of: EnrollmentsOf<'_>) -> StoreResult<Vec<Record>>;

    /// One record by sourcedId.
    fn get_record(
        &self,
        tenant: &str,
        entity: Entity,
        sourced_id: &str,
    ) -> StoreResult<Option<Record>> {
        Ok(self
            .get_records(tenant, entity, &[sourced_id])?
            .pop()
            .flatten())
    }
}

/// Which enrollments [`RecordRead::find_enrollments`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollmentsOf<'a> {
    /// Those of the class with this sourcedId.
    Class(&'a str),
    /// Those of the user with this sourcedId.
    User(&'a str),
}

impl<'a> EnrollmentsOf<'a> {
    /// The enrollment column this looks at.
    pub fn column(self) -> &'static str {
        match self {
            EnrollmentsOf::Class(_) => "classSourcedId",
            EnrollmentsOf::User(_) => "userSourcedId",
        }
    }

    /// The class's or user's sourcedId.
    pub fn id(self) -> &'a str {
        match self {
            EnrollmentsOf::Class(id) | EnrollmentsOf::User(id) => id,
        }
    }

    /// Whether an enrollment record is one of these.
    pub fn matches(self, record: &Record) -> bool {
        record.entity == Entity::Enrollments
            && record.fields.get(self.column()).map(String::as_str) == Some(self.id())
    }
}

/// Visits an entity's records in sourcedId order, one page at a time, starting after `after` and stopping
/// after `limit` records (all of them when `None`); returns how many were visited. Never holds more than a page.
pub fn for_each_record<E: From<StoreError>>(
    store: &dyn RecordRead,
    tenant: &str,
    entity: Entity,
    after: Option<&str>,
    limit: Option<usize>,
    mut each: impl FnMut(&Record) -> Result<(), E>,
) -> Result<usize, E> {
    const PAGE: usize = 1_000;
    let mut cursor = after.map(str::to_string);
    let mut seen = 0;
    loop {
        let want = limit.map_or(PAGE, |l| (l - seen).min(PAGE));
        if want == 0 {
            return Ok(seen);
        }
        let page = store.list_records(tenant, entity, cursor.as_deref(), want)?;
        for record in &page {
            each(record)?;
        }
        seen += page.len();
        match page.last() {
            Some(last) if page.len() == want => cursor = Some(last.sourced_id.clone()),
            _ => return Ok(seen),
        }
    }
}

/// The state a conditional write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No record with this id.
    Absent,
    /// The record at exactly this version.
    Version(u64),
}

/// One conditional record write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Stores `record` (whose `version` is the new one) if the record is as `expect` says.
    Put { record: Record, expect: Expect },
    /// Removes a record if it is at `version`.
    Delete {
        entity: Entity,
        sourced_id: String,
        version: u64,
    },
}

impl Write {
    /// Stores `after` over a record read at `before`'s version (or over nothing), bumping the version.
    pub fn replacing(before: Option<&Record>, mut after: Record) -> Write {
        let expect = match before {
            Some(b) => Expect::Version(b.version),
            None => Expect::Absent,
        };
        after.version = before.map_or(1, |b| b.version + 1);
        Write::Put {
            record: after,
            expect,
        }
    }
}

/// Writing records.
pub trait RecordWrite {
    /// Applies each write that finds its record as expected; returns, per write, whether it was applied. A
    /// write that finds the record moved on changes nothing: the caller reads it again and merges anew.
    fn write_records(&self, tenant: &str, writes: &[Write]) -> StoreResult<Vec<bool>>;
}

/// The state of one record before a batch wrote it, and the version the batch left it at. Stored compactly:
/// a record the batch created is only its entity and id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoItem {
    pub entity: Entity,
    #[serde(rename = "id")]
    pub sourced_id: String,
    /// The record before the batch; `None` when the batch created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Record>,
    /// The version the batch wrote: if the record is at another now, something changed it since.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub written_version: u64,
    /// The count the change landed in (`update`, `kept_manual`, ...), so a resumed run counts it the same.
    #[serde(default = "created_label", skip_serializing_if = "is_created_label")]
    pub landed: String,
}

fn first_version() -> u64 {
    1
}

fn is_first_version(v: &u64) -> bool {
    *v == 1
}

fn created_label() -> String {
    "create".to_string()
}

fn is_created_label(label: &str) -> bool {
    label == "create"
}

/// Undo information, one page per applied chunk, so no step holds a batch's whole undo data.
pub trait UndoStore {
    /// Stores (or replaces) the undo page of one chunk.
    fn put_undo(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        items: &[&UndoItem],
    ) -> StoreResult<()>;
    /// The undo page of one chunk.
    fn undo_page(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
    ) -> StoreResult<Option<Vec<UndoItem>>>;
    /// The chunks of a batch that have an undo page, in order.
    fn undo_chunks(&self, tenant: &str, batch: &str) -> StoreResult<Vec<u32>>;
    /// Forgets a batch's undo information (after it was rolled back).
    fn delete_undo(&self, tenant: &str, batch: &str) -> StoreResult<()>;
}

/// Who holds a tenant's lease, for what, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Names the holder uniquely (a process on a host locally, an execution on AWS).
    pub holder: String,
    /// What the holder is doing, for people (`sync of roster.zip`).
    pub purpose: String,
    /// The batch the holder works on, once it knows it.
    #[serde(default)]
    pub batch: Option<String>,
    /// Seconds since the Unix epoch.
    pub acquired_at: u64,
    /// The holder renews this while it works; a lease past it whose holder stopped renewing is free to take.
    pub expires_at: u64,
}

/// One run per tenant at a time. Nothing here waits: a caller that finds the lease taken decides whether the
/// holder is alive, and waits (or not) itself.
pub trait LeaseStore {
    fn get_lease(&self, tenant: &str) -> StoreResult<Option<Lease>>;
    /// Takes the lease if nobody holds it, or if the current lease is exactly `replacing` (one the caller
    /// judged dead). Returns whether it was taken.
    fn try_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        replacing: Option<&Lease>,
    ) -> StoreResult<bool>;
    /// Moves the holder's expiry (and the batch it works on); false when the holder no longer holds the lease.
    fn renew_lease(
        &self,
        tenant: &str,
        holder: &str,
        expires_at: u64,
        batch: Option<&str>,
    ) -> StoreResult<bool>;
    /// Gives the lease up (nothing happens if `holder` does not hold it).
    fn release_lease(&self, tenant: &str, holder: &str) -> StoreResult<()>;
}

/// A unit of work: what is written through the store until `commit` becomes visible at once, or (dropped without
/// commit) not at all. Stores that commit every write as it happens (DynamoDB) make this a no-op.
pub trait Unit {
    fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Grouping writes into units of work.
pub trait Atomic {
    fn unit(&self) -> StoreResult<Box<dyn Unit + '_>>;
}

/// Everything the pipeline needs, in one handle.
pub trait Store:
    TenantStore + BatchStore + RecordRead + RecordWrite + UndoStore + LeaseStore + Atomic
{
}

impl<T: TenantStore + BatchStore + RecordRead + RecordWrite + UndoStore + LeaseStore + Atomic> Store
    for T
{
}
