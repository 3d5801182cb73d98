//! The embedded store: one SQLite database file holding tenants, batches, records with provenance, undo
//! information and leases. A batch's writes are one SQLite transaction, so a failure midway leaves the previous
//! roster readable and nothing half-applied.

use super::{
    BatchStore, Change, LeaseStore, RecordRead, RecordWrite, Snapshot, StoreError, StoreResult,
    TenantStore, Transaction, UndoItem, UndoStore,
};
use crate::model::{Batch, Entity, Origin, Provenance, Record, Tenant, content_hash, now};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA cache_size = -131072;
CREATE TABLE IF NOT EXISTS tenants (id TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS batches_by_tenant ON batches (tenant, seq);
CREATE TABLE IF NOT EXISTS records (
    tenant TEXT NOT NULL, entity TEXT NOT NULL, sourced_id TEXT NOT NULL,
    fields TEXT NOT NULL, sis_fields TEXT, manual TEXT, sis_batches TEXT,
    active INTEGER NOT NULL, origin TEXT NOT NULL, archived_by TEXT,
    batch TEXT, created_batch TEXT, sis_hash INTEGER NOT NULL, username TEXT,
    PRIMARY KEY (tenant, entity, sourced_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_username ON records (tenant, username) WHERE username IS NOT NULL;
CREATE TABLE IF NOT EXISTS user_ids (
    tenant TEXT NOT NULL, kind TEXT NOT NULL, identifier TEXT NOT NULL, sourced_id TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, identifier, sourced_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_ids_by_user ON user_ids (tenant, sourced_id);
CREATE TABLE IF NOT EXISTS undo (
    batch TEXT NOT NULL, seq INTEGER NOT NULL, entity TEXT NOT NULL, sourced_id TEXT NOT NULL,
    prior TEXT NOT NULL, PRIMARY KEY (batch, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (tenant TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);
";

/// A roster database file.
pub struct SqliteStore {
    conn: Connection,
    written: Cell<u64>,
}

fn backend(doing: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Busy {
                doing: doing.to_string(),
            }
        }
        _ => StoreError::Backend {
            doing: doing.to_string(),
            reason: e.to_string(),
        },
    }
}

fn corrupt(what: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// How a manual value is kept.
#[derive(Serialize, Deserialize)]
struct ManualMark {
    by: String,
    at: u64,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, and its folder.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        Self::with_connection(conn).map_err(|e| open_err(e.to_string()))
    }

    /// A throwaway database in memory (tests).
    pub fn in_memory() -> StoreResult<SqliteStore> {
        let conn =
            Connection::open_in_memory().map_err(backend("opening an in-memory database"))?;
        Self::with_connection(conn)
    }

    fn with_connection(conn: Connection) -> StoreResult<SqliteStore> {
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(backend("setting the busy timeout"))?;
        conn.execute_batch(SCHEMA)
            .map_err(backend("creating the schema"))?;
        Ok(SqliteStore {
            conn,
            written: Cell::new(0),
        })
    }

    /// Runs `work` in one write transaction: all of it, or (on any error) none of it.
    fn atomically<T>(&self, doing: &str, work: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(backend(doing))?;
        match work() {
            Ok(value) => {
                self.conn.execute_batch("COMMIT").map_err(backend(doing))?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn count_write(&self) {
        self.written.set(self.written.get() + 1);
    }

    fn put_record(&self, tenant: &str, record: &Record) -> StoreResult<()> {
        self.put_record_as(tenant, record, false)
    }

    /// Writes a record; `is_new` skips clearing index rows a new record cannot have.
    fn put_record_as(&self, tenant: &str, record: &Record, is_new: bool) -> StoreResult<()> {
        let row = encode(record)?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO records (tenant, entity, sourced_id, fields, sis_fields, manual, sis_batches,
                 active, origin, archived_by, batch, created_batch, sis_hash, username)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    tenant,
                    record.entity.name(),
                    record.sourced_id,
                    row.fields,
                    row.sis_fields,
                    row.manual,
                    row.sis_batches,
                    record.active,
                    record.origin.as_str(),
                    record.archived_by.map(Origin::as_str),
                    record.batch,
                    record.created_batch,
                    row.sis_hash as i64,
                    row.username,
                ])
            })
            .map_err(backend("writing a record"))?;
        if record.entity == Entity::Users {
            self.put_user_ids(tenant, record, is_new)?;
        }
        self.count_write();
        Ok(())
    }

    fn put_user_ids(&self, tenant: &str, record: &Record, is_new: bool) -> StoreResult<()> {
        if !is_new {
            self.conn
                .prepare_cached("DELETE FROM user_ids WHERE tenant = ?1 AND sourced_id = ?2")
                .and_then(|mut st| st.execute(params![tenant, record.sourced_id]))
                .map_err(backend("replacing a user's ids"))?;
        }
        for (kind, identifier) in user_ids(record.fields.get("userIds").map_or("", String::as_str))
        {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO user_ids (tenant, kind, identifier, sourced_id) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut st| st.execute(params![tenant, kind, identifier, record.sourced_id]))
                .map_err(backend("indexing a user's ids"))?;
        }
        Ok(())
    }

    fn delete_record(&self, tenant: &str, entity: Entity, sourced_id: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM records WHERE tenant = ?1 AND entity = ?2 AND sourced_id = ?3",
            )
            .and_then(|mut st| st.execute(params![tenant, entity.name(), sourced_id]))
            .map_err(backend("deleting a record"))?;
        if entity == Entity::Users {
            self.conn
                .prepare_cached("DELETE FROM user_ids WHERE tenant = ?1 AND sourced_id = ?2")
                .and_then(|mut st| st.execute(params![tenant, sourced_id]))
                .map_err(backend("deleting a user's ids"))?;
        }
        self.count_write();
        Ok(())
    }

    fn records_where(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> StoreResult<Vec<Record>> {
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(backend("reading records"))?;
        let rows = st
            .query_map(args, raw_record)
            .map_err(backend("reading records"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("reading records"))?;
        rows.into_iter().map(decode).collect()
    }

    fn put_batch_row(&self, batch: &Batch) -> StoreResult<()> {
        let data = serde_json::to_string(batch).map_err(corrupt("a batch"))?;
        self.conn
            .prepare_cached(
                "INSERT INTO batches (id, tenant, seq, data)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM batches), ?3)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            )
            .and_then(|mut st| st.execute(params![batch.id, batch.tenant, data]))
            .map_err(backend("writing a batch"))?;
        Ok(())
    }
}

/// The `userIds` items of a user, as (type, identifier).
pub fn user_ids(text: &str) -> Vec<(String, String)> {
    text.split('}')
        .filter_map(|item| {
            let item = item.trim_start_matches([',', ' ']).strip_prefix('{')?;
            let (kind, id) = item.split_once(':')?;
            Some((kind.trim().to_string(), id.trim().to_string()))
        })
        .collect()
}

struct EncodedRecord {
    fields: String,
    sis_fields: Option<String>,
    manual: Option<String>,
    sis_batches: Option<String>,
    sis_hash: u64,
    username: Option<String>,
}

/// Stores provenance compactly: manual marks in full, SIS batches only where they differ from the creating batch.
fn encode(record: &Record) -> StoreResult<EncodedRecord> {
    let json =
        |v: &BTreeMap<String, String>| serde_json::to_string(v).map_err(corrupt("record fields"));
    let mut manual = BTreeMap::new();
    let mut sis_batches = BTreeMap::new();
    for (field, p) in &record.provenance {
        match p {
            Provenance::Manual { by, at } => {
                manual.insert(
                    field.clone(),
                    ManualMark {
                        by: by.clone(),
                        at: *at,
                    },
                );
            }
            Provenance::Sis { batch } if Some(batch) != record.created_batch.as_ref() => {
                sis_batches.insert(field.clone(), batch.clone());
            }
            Provenance::Sis { .. } => {}
        }
    }
    Ok(EncodedRecord {
        fields: json(&record.fields)?,
        sis_fields: if record.sis_fields == record.fields {
            None
        } else {
            Some(json(&record.sis_fields)?)
        },
        manual: if manual.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&manual).map_err(corrupt("manual marks"))?)
        },
        sis_batches: if sis_batches.is_empty() {
            None
        } else {
            Some(json(&sis_batches)?)
        },
        sis_hash: content_hash(&record.sis_fields),
        username: match record.entity {
            Entity::Users => record.fields.get("username").cloned(),
            _ => None,
        },
    })
}

/// A records row as stored.
struct RawRecord {
    entity: String,
    sourced_id: String,
    fields: String,
    sis_fields: Option<String>,
    manual: Option<String>,
    sis_batches: Option<String>,
    active: bool,
    origin: String,
    archived_by: Option<String>,
    batch: Option<String>,
    created_batch: Option<String>,
}

const RECORD_COLUMNS: &str = "entity, sourced_id, fields, sis_fields, manual, sis_batches, active, origin, archived_by, batch, created_batch";

fn raw_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        entity: row.get(0)?,
        sourced_id: row.get(1)?,
        fields: row.get(2)?,
        sis_fields: row.get(3)?,
        manual: row.get(4)?,
        sis_batches: row.get(5)?,
        active: row.get(6)?,
        origin: row.get(7)?,
        archived_by: row.get(8)?,
        batch: row.get(9)?,
        created_batch: row.get(10)?,
    })
}

fn origin(text: &str) -> StoreResult<Origin> {
    match text {
        "sis" => Ok(Origin::Sis),
        "manual" => Ok(Origin::Manual),
        other => Err(StoreError::Corrupt {
            what: "a record's origin".into(),
            reason: format!("{other:?} is neither sis nor manual"),
        }),
    }
}

fn decode(raw: RawRecord) -> StoreResult<Record> {
    let entity = Entity::parse(&raw.entity).ok_or_else(|| StoreError::Corrupt {
        what: "a record's entity".into(),
        reason: format!("{:?} is not an entity", raw.entity),
    })?;
    let fields: BTreeMap<String, String> =
        serde_json::from_str(&raw.fields).map_err(corrupt("record fields"))?;
    let sis_fields = match &raw.sis_fields {
        Some(text) => serde_json::from_str(text).map_err(corrupt("record SIS fields"))?,
        None => fields.clone(),
    };
    let manual: BTreeMap<String, ManualMark> = match &raw.manual {
        Some(text) => serde_json::from_str(text).map_err(corrupt("manual marks"))?,
        None => BTreeMap::new(),
    };
    let sis_batches: BTreeMap<String, String> = match &raw.sis_batches {
        Some(text) => serde_json::from_str(text).map_err(corrupt("SIS batches"))?,
        None => BTreeMap::new(),
    };
    let mut provenance = BTreeMap::new();
    for field in fields.keys() {
        let p = match manual.get(field) {
            Some(m) => Provenance::Manual {
                by: m.by.clone(),
                at: m.at,
            },
            None => Provenance::Sis {
                batch: sis_batches
                    .get(field)
                    .or(raw.created_batch.as_ref())
                    .or(raw.batch.as_ref())
                    .cloned()
                    .unwrap_or_default(),
            },
        };
        provenance.insert(field.clone(), p);
    }
    // A manual mark on a field with no value (cleared by hand) still counts.
    for (field, m) in manual {
        provenance
            .entry(field)
            .or_insert(Provenance::Manual { by: m.by, at: m.at });
    }
    Ok(Record {
        entity,
        sourced_id: raw.sourced_id,
        fields,
        sis_fields,
        provenance,
        active: raw.active,
        origin: origin(&raw.origin)?,
        archived_by: raw.archived_by.as_deref().map(origin).transpose()?,
        batch: raw.batch,
        created_batch: raw.created_batch,
    })
}

impl TenantStore for SqliteStore {
    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        let config: Option<String> = self
            .conn
            .query_row("SELECT config FROM tenants WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(backend("reading a tenant"))?;
        config
            .map(|c| serde_json::from_str(&c).map_err(corrupt("a tenant's configuration")))
            .transpose()
    }

    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let config = serde_json::to_string(tenant).map_err(corrupt("a tenant's configuration"))?;
        self.conn
            .execute(
                "INSERT INTO tenants (id, config) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET config = excluded.config",
                params![tenant.id, config],
            )
            .map_err(backend("writing a tenant"))?;
        Ok(())
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let mut st = self
            .conn
            .prepare("SELECT config FROM tenants ORDER BY id")
            .map_err(backend("listing tenants"))?;
        let configs = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend("listing tenants"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("listing tenants"))?;
        configs
            .iter()
            .map(|c| serde_json::from_str(c).map_err(corrupt("a tenant's configuration")))
            .collect()
    }
}

impl BatchStore for SqliteStore {
    fn get_batch(&self, id: &str) -> StoreResult<Option<Batch>> {
        let data: Option<String> = self
            .conn
            .query_row("SELECT data FROM batches WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(backend("reading a batch"))?;
        data.map(|d| serde_json::from_str(&d).map_err(corrupt("a batch")))
            .transpose()
    }

    fn put_batch(&self, batch: &Batch) -> StoreResult<()> {
        self.put_batch_row(batch)
    }

    fn list_batches(&self, tenant: &str) -> StoreResult<Vec<Batch>> {
        let mut st = self
            .conn
            .prepare("SELECT data FROM batches WHERE tenant = ?1 ORDER BY seq")
            .map_err(backend("listing batches"))?;
        let rows = st
            .query_map([tenant], |r| r.get::<_, String>(0))
            .map_err(backend("listing batches"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("listing batches"))?;
        rows.iter()
            .map(|d| serde_json::from_str(d).map_err(corrupt("a batch")))
            .collect()
    }
}

impl RecordRead for SqliteStore {
    fn get_record(
        &self,
        tenant: &str,
        entity: Entity,
        sourced_id: &str,
    ) -> StoreResult<Option<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND entity = ?2 AND sourced_id = ?3"
        );
        let mut found = self.records_where(&sql, &[&tenant, &entity.name(), &sourced_id])?;
        Ok(found.pop())
    }

    fn snapshot(
        &self,
        tenant: &str,
        entity: Entity,
        each: &mut dyn FnMut(Snapshot),
    ) -> StoreResult<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT sourced_id, sis_hash, active, origin, archived_by, manual IS NOT NULL
                 FROM records WHERE tenant = ?1 AND entity = ?2",
            )
            .map_err(backend("reading the roster"))?;
        let mut rows = st
            .query(params![tenant, entity.name()])
            .map_err(backend("reading the roster"))?;
        while let Some(row) = rows.next().map_err(backend("reading the roster"))? {
            let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Snapshot> {
                Ok(Snapshot {
                    sourced_id: r.get(0)?,
                    sis_hash: r.get::<_, i64>(1)? as u64,
                    active: r.get(2)?,
                    manual_origin: r.get::<_, String>(3)? == "manual",
                    manual_archive: r.get::<_, Option<String>>(4)?.as_deref() == Some("manual"),
                    manual_fields: r.get(5)?,
                })
            };
            each(read(row).map_err(backend("reading the roster"))?);
        }
        Ok(())
    }

    fn list_records(&self, tenant: &str, entity: Entity) -> StoreResult<Vec<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND entity = ?2 ORDER BY sourced_id"
        );
        self.records_where(&sql, &[&tenant, &entity.name()])
    }

    fn find_by_username(&self, tenant: &str, username: &str) -> StoreResult<Vec<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND username = ?2 ORDER BY sourced_id"
        );
        self.records_where(&sql, &[&tenant, &username])
    }

    fn find_by_user_id(
        &self,
        tenant: &str,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Vec<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND entity = 'users' AND sourced_id IN
             (SELECT sourced_id FROM user_ids WHERE tenant = ?1 AND kind = ?2 AND identifier = ?3)
             ORDER BY sourced_id"
        );
        self.records_where(&sql, &[&tenant, &kind, &identifier])
    }

    fn records_written(&self) -> u64 {
        self.written.get()
    }
}

/// An open SQLite transaction for one batch; rolled back if dropped without commit.
struct SqliteTransaction<'a> {
    store: &'a SqliteStore,
    tenant: String,
    undo_seq: i64,
    done: bool,
}

impl Transaction for SqliteTransaction<'_> {
    fn write(&mut self, change: Change) -> StoreResult<()> {
        if let Some(before) = &change.before {
            let batch = change.after.batch.clone().unwrap_or_default();
            let prior = serde_json::to_string(&StoredPrior::from(before))
                .map_err(corrupt("undo information"))?;
            self.undo_seq += 1;
            self.store
                .conn
                .prepare_cached(
                    "INSERT INTO undo (batch, seq, entity, sourced_id, prior) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| {
                    st.execute(params![batch, self.undo_seq, before.entity.name(), before.sourced_id, prior])
                })
                .map_err(backend("keeping undo information"))?;
        }
        self.store
            .put_record_as(&self.tenant, &change.after, change.before.is_none())
    }

    fn commit(mut self: Box<Self>, batch: &Batch) -> StoreResult<()> {
        self.store.put_batch_row(batch)?;
        self.store
            .conn
            .execute_batch("COMMIT")
            .map_err(backend("committing the batch"))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for SqliteTransaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.store.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A prior record state as kept for undo (the whole record).
#[derive(Serialize, Deserialize)]
struct StoredPrior {
    record: Record,
}

impl From<&Record> for StoredPrior {
    fn from(record: &Record) -> StoredPrior {
        StoredPrior {
            record: record.clone(),
        }
    }
}

impl RecordWrite for SqliteStore {
    fn begin(&self, tenant: &str) -> StoreResult<Box<dyn Transaction + '_>> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(backend("starting the batch's transaction"))?;
        Ok(Box::new(SqliteTransaction {
            store: self,
            tenant: tenant.to_string(),
            undo_seq: 0,
            done: false,
        }))
    }

    fn write_manual(&self, tenant: &str, change: Change) -> StoreResult<()> {
        self.put_record(tenant, &change.after)
    }
}

impl UndoStore for SqliteStore {
    fn undo_items(&self, tenant: &str, batch: &str) -> StoreResult<Vec<UndoItem>> {
        let mut items = Vec::new();
        let mut st = self
            .conn
            .prepare("SELECT prior FROM undo WHERE batch = ?1 ORDER BY seq")
            .map_err(backend("reading undo information"))?;
        let priors = st
            .query_map([batch], |r| r.get::<_, String>(0))
            .map_err(backend("reading undo information"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("reading undo information"))?;
        for prior in priors {
            let stored: StoredPrior =
                serde_json::from_str(&prior).map_err(corrupt("undo information"))?;
            items.push(UndoItem {
                entity: stored.record.entity,
                sourced_id: stored.record.sourced_id.clone(),
                before: Some(stored.record),
            });
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT entity, sourced_id FROM records WHERE tenant = ?1 AND created_batch = ?2",
            )
            .map_err(backend("reading records a batch created"))?;
        let created = st
            .query_map(params![tenant, batch], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(backend("reading records a batch created"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("reading records a batch created"))?;
        for (entity, sourced_id) in created {
            let entity = Entity::parse(&entity).ok_or_else(|| StoreError::Corrupt {
                what: "a record's entity".into(),
                reason: entity.clone(),
            })?;
            items.push(UndoItem {
                entity,
                sourced_id,
                before: None,
            });
        }
        Ok(items)
    }

    fn restore(&self, tenant: &str, items: &[UndoItem], batch: &Batch) -> StoreResult<()> {
        self.atomically("rolling back", || {
            for item in items {
                match &item.before {
                    Some(record) => self.put_record(tenant, record)?,
                    None => self.delete_record(tenant, item.entity, &item.sourced_id)?,
                }
            }
            self.conn
                .execute("DELETE FROM undo WHERE batch = ?1", [&batch.id])
                .map_err(backend("clearing undo information"))?;
            self.put_batch_row(batch)
        })
    }
}

impl LeaseStore for SqliteStore {
    fn acquire(&self, tenant: &str, holder: &str, ttl_secs: u64) -> StoreResult<Option<String>> {
        let t = now() as i64;
        self.atomically("taking the tenant's lease", || {
        let current: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT holder, expires_at FROM leases WHERE tenant = ?1",
                [tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend("taking the tenant's lease"))?;
        let taken_by_other = current.filter(|(h, expires)| h != holder && *expires > t).map(|(h, _)| h);
        if taken_by_other.is_none() {
            self.conn
                .execute(
                    "INSERT INTO leases (tenant, holder, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                    params![tenant, holder, t + ttl_secs as i64],
                )
                .map_err(backend("taking the tenant's lease"))?;
        }
        Ok(taken_by_other)
        })
    }

    fn release(&self, tenant: &str, holder: &str) -> StoreResult<()> {
        self.conn
            .execute(
                "DELETE FROM leases WHERE tenant = ?1 AND holder = ?2",
                params![tenant, holder],
            )
            .map_err(backend("releasing the tenant's lease"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        let mut fields = BTreeMap::new();
        fields.insert("username".to_string(), format!("{id}.name"));
        fields.insert(
            "userIds".to_string(),
            "{ClassLink:123},{LDAP:x}".to_string(),
        );
        let provenance = fields
            .keys()
            .map(|k| (k.clone(), Provenance::Sis { batch: "b1".into() }))
            .collect();
        Record {
            entity: Entity::Users,
            sourced_id: id.into(),
            sis_fields: fields.clone(),
            fields,
            provenance,
            active: true,
            origin: Origin::Sis,
            archived_by: None,
            batch: Some("b1".into()),
            created_batch: Some("b1".into()),
        }
    }

    #[test]
    fn records_round_trip_with_provenance_and_sso_lookups() {
        let store = SqliteStore::in_memory().expect("store");
        let mut r = record("stu-1");
        r.fields.insert("givenName".into(), "Ana".into());
        r.provenance.insert(
            "givenName".into(),
            Provenance::Manual {
                by: "alice".into(),
                at: 42,
            },
        );
        store
            .write_manual(
                "t1",
                Change {
                    before: None,
                    after: r.clone(),
                },
            )
            .expect("write");
        assert_eq!(
            store
                .get_record("t1", Entity::Users, "stu-1")
                .expect("read"),
            Some(r.clone())
        );
        assert_eq!(
            store
                .find_by_username("t1", "stu-1.name")
                .expect("find")
                .len(),
            1
        );
        assert_eq!(
            store
                .find_by_user_id("t1", "ClassLink", "123")
                .expect("find")
                .len(),
            1
        );
        assert!(
            store
                .find_by_user_id("t2", "ClassLink", "123")
                .expect("find")
                .is_empty()
        );
        assert_eq!(store.records_written(), 1);
    }

    #[test]
    fn a_transaction_dropped_without_commit_leaves_nothing() {
        let store = SqliteStore::in_memory().expect("store");
        {
            let mut tx = store.begin("t1").expect("begin");
            tx.write(Change {
                before: None,
                after: record("stu-1"),
            })
            .expect("write");
        }
        assert_eq!(
            store
                .get_record("t1", Entity::Users, "stu-1")
                .expect("read"),
            None
        );
    }

    #[test]
    fn a_lease_is_exclusive_until_released_or_expired() {
        let store = SqliteStore::in_memory().expect("store");
        assert_eq!(store.acquire("t1", "a", 60).expect("acquire"), None);
        assert_eq!(
            store.acquire("t1", "b", 60).expect("acquire"),
            Some("a".into())
        );
        assert_eq!(store.acquire("t2", "b", 60).expect("other tenant"), None);
        store.release("t1", "a").expect("release");
        assert_eq!(store.acquire("t1", "b", 60).expect("acquire"), None);
        assert_eq!(
            store.acquire("t1", "c", 0).expect("acquire"),
            Some("b".into())
        );
    }

    #[test]
    fn user_ids_are_parsed() {
        assert_eq!(
            user_ids("{ClassLink:123},{LDAP: x }"),
            [
                ("ClassLink".to_string(), "123".to_string()),
                ("LDAP".to_string(), "x".to_string())
            ]
        );
        assert!(user_ids("").is_empty());
    }
}
