//! The embedded store: one SQLite database file holding tenants, batches, records with provenance and versions,
//! undo pages, chunk results and leases. Every record write is one statement conditional on the version it
//! expects; a unit of work (a batch's whole apply) is one SQLite transaction, so a failure midway leaves the
//! previous roster readable and nothing half-applied.

use super::compact::{self, Compact};
use super::{
    Atomic, BatchStore, ChunkResult, EnrollmentsOf, Expect, Lease, LeaseStore, RecordRead,
    RecordWrite, Snapshot, StoreError, StoreResult, TenantStore, UndoItem, UndoStore, Unit, Write,
};
use crate::model::{Batch, Entity, Origin, Record, Tenant, content_hash};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Write as _};
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
    version INTEGER NOT NULL DEFAULT 0, flags INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, entity, sourced_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_ids (
    tenant TEXT NOT NULL, kind TEXT NOT NULL, identifier TEXT NOT NULL, sourced_id TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, identifier, sourced_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_ids_by_user ON user_ids (tenant, sourced_id);
CREATE TABLE IF NOT EXISTS undo_pages (
    tenant TEXT NOT NULL, batch TEXT NOT NULL, chunk INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (tenant, batch, chunk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunk_results (
    tenant TEXT NOT NULL, batch TEXT NOT NULL, chunk INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (tenant, batch, chunk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_leases (
    tenant TEXT PRIMARY KEY, holder TEXT NOT NULL, purpose TEXT NOT NULL, batch TEXT,
    acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
";

/// Indexes, made once the columns they name exist (older databases get their columns first).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS records_by_username ON records (tenant, username) WHERE username IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_for_planning ON records (tenant, entity, sourced_id, sis_hash, version, flags);
";

/// The bits of a record's `flags`: what planning needs besides the hash and version, so its read of a whole
/// entity is served by the narrow `records_for_planning` index instead of the records themselves.
const ACTIVE: i64 = 1;
const MANUAL_ORIGIN: i64 = 2;
const MANUAL_ARCHIVE: i64 = 4;
const MANUAL_FIELDS: i64 = 8;
const MANUAL_STATUS: i64 = 16;

fn flags_of(record: &Record) -> i64 {
    let bit = |on: bool, b: i64| if on { b } else { 0 };
    bit(record.active, ACTIVE)
        | bit(record.origin == Origin::Manual, MANUAL_ORIGIN)
        | bit(record.archived_by == Some(Origin::Manual), MANUAL_ARCHIVE)
        | bit(record.has_manual_fields(), MANUAL_FIELDS)
        | bit(record.manual_status(), MANUAL_STATUS)
}

/// A roster database file.
pub struct SqliteStore {
    conn: Connection,
    written: Cell<u64>,
    savepoints: Cell<u32>,
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

    /// Opens an existing database for reading only: nothing is created, and a database the user may read but
    /// not write can still be read.
    pub fn open_read_only(path: &Path) -> StoreResult<SqliteStore> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if !path.is_file() {
            return Err(open_err(
                "there is no database there (nothing has been synced with it yet)".into(),
            ));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(SqliteStore {
            conn,
            written: Cell::new(0),
            savepoints: Cell::new(0),
        })
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
        let has_column = |name: &str| -> StoreResult<bool> {
            conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('records') WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(backend("reading the schema"))
        };
        // Databases made before records had versions get the column (every record starts at version 0).
        if !has_column("version")? {
            conn.execute_batch("ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
                .map_err(backend("adding record versions"))?;
        }
        if !has_column("flags")? {
            conn.execute_batch(&format!(
                "ALTER TABLE records ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
                 UPDATE records SET flags = (CASE WHEN active THEN {ACTIVE} ELSE 0 END)
                   | (CASE WHEN origin = 'manual' THEN {MANUAL_ORIGIN} ELSE 0 END)
                   | (CASE WHEN archived_by = 'manual' THEN {MANUAL_ARCHIVE} ELSE 0 END)
                   | (CASE WHEN manual IS NOT NULL THEN {MANUAL_FIELDS} ELSE 0 END)
                   | (CASE WHEN json_extract(manual, '$.status') IS NOT NULL THEN {MANUAL_STATUS} ELSE 0 END);"
            ))
            .map_err(backend("adding record flags"))?;
        }
        conn.execute_batch(INDEXES)
            .map_err(backend("creating the indexes"))?;
        Ok(SqliteStore {
            conn,
            written: Cell::new(0),
            savepoints: Cell::new(0),
        })
    }

    /// Records written so far by this handle (tests and benchmarks: a no-op sync writes none).
    pub fn records_written(&self) -> u64 {
        self.written.get()
    }

    /// Starts a transaction, or a savepoint inside the one already open.
    fn begin(&self, doing: &str) -> StoreResult<Option<String>> {
        if self.conn.is_autocommit() {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(backend(doing))?;
            return Ok(None);
        }
        let n = self.savepoints.get() + 1;
        self.savepoints.set(n);
        let name = format!("sp{n}");
        self.conn
            .execute_batch(&format!("SAVEPOINT {name}"))
            .map_err(backend(doing))?;
        Ok(Some(name))
    }

    fn finish(&self, savepoint: Option<String>, doing: &str, ok: bool) -> StoreResult<()> {
        let sql = match (&savepoint, ok) {
            (None, true) => "COMMIT".to_string(),
            (None, false) => "ROLLBACK".to_string(),
            (Some(name), true) => format!("RELEASE {name}"),
            (Some(name), false) => format!("ROLLBACK TO {name}; RELEASE {name}"),
        };
        if savepoint.is_some() {
            self.savepoints.set(self.savepoints.get().saturating_sub(1));
        }
        self.conn.execute_batch(&sql).map_err(backend(doing))
    }

    /// Runs `work` atomically: all of it, or (on any error) none of it.
    fn atomically<T>(&self, doing: &str, work: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        let savepoint = self.begin(doing)?;
        match work() {
            Ok(value) => {
                self.finish(savepoint, doing, true)?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.finish(savepoint, doing, false);
                Err(e)
            }
        }
    }

    fn count_write(&self) {
        self.written.set(self.written.get() + 1);
    }

    /// One conditional write; whether it found the record as expected.
    fn write_one(&self, tenant: &str, write: &Write) -> StoreResult<bool> {
        let (entity, id, applied, is_new) = match write {
            Write::Put { record, expect } => {
                let row = encode(record)?;
                let (sis_hash, version, flags) =
                    (row.sis_hash as i64, record.version as i64, flags_of(record));
                let (entity, origin, archived_by) = (
                    record.entity.name(),
                    record.origin.as_str(),
                    record.archived_by.map(Origin::as_str),
                );
                let mut values: Vec<&dyn rusqlite::ToSql> = vec![
                    &tenant,
                    &entity,
                    &record.sourced_id,
                    &row.fields,
                    &row.sis_fields,
                    &row.manual,
                    &row.sis_batches,
                    &record.active,
                    &origin,
                    &archived_by,
                    &record.batch,
                    &record.created_batch,
                    &sis_hash,
                    &row.username,
                    &version,
                    &flags,
                ];
                let expected = match expect {
                    Expect::Absent => 0,
                    Expect::Version(v) => *v as i64,
                };
                let sql = match expect {
                    Expect::Absent => {
                        "INSERT INTO records (tenant, entity, sourced_id, fields, sis_fields, manual, sis_batches,
                         active, origin, archived_by, batch, created_batch, sis_hash, username, version, flags)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                         ON CONFLICT DO NOTHING"
                    }
                    Expect::Version(_) => {
                        values.push(&expected);
                        "UPDATE records SET fields = ?4, sis_fields = ?5, manual = ?6, sis_batches = ?7,
                         active = ?8, origin = ?9, archived_by = ?10, batch = ?11, created_batch = ?12,
                         sis_hash = ?13, username = ?14, version = ?15, flags = ?16
                         WHERE tenant = ?1 AND entity = ?2 AND sourced_id = ?3 AND version = ?17"
                    }
                };
                let changed = self
                    .conn
                    .prepare_cached(sql)
                    .and_then(|mut st| st.execute(values.as_slice()))
                    .map_err(backend("writing a record"))?;
                (
                    record.entity,
                    &record.sourced_id,
                    changed == 1,
                    *expect == Expect::Absent,
                )
            }
            Write::Delete {
                entity,
                sourced_id,
                version,
            } => {
                let changed = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM records WHERE tenant = ?1 AND entity = ?2 AND sourced_id = ?3 AND version = ?4",
                    )
                    .and_then(|mut st| st.execute(params![tenant, entity.name(), sourced_id, *version as i64]))
                    .map_err(backend("deleting a record"))?;
                (*entity, sourced_id, changed == 1, false)
            }
        };
        if !applied {
            return Ok(false);
        }
        if entity == Entity::Users {
            if !is_new {
                self.conn
                    .prepare_cached("DELETE FROM user_ids WHERE tenant = ?1 AND sourced_id = ?2")
                    .and_then(|mut st| st.execute(params![tenant, id]))
                    .map_err(backend("replacing a user's ids"))?;
            }
            if let Write::Put { record, .. } = write {
                self.put_user_ids(tenant, record)?;
            }
        }
        self.count_write();
        Ok(true)
    }

    fn put_user_ids(&self, tenant: &str, record: &Record) -> StoreResult<()> {
        for (kind, identifier) in
            crate::model::user_ids(record.fields.get("userIds").map_or("", String::as_str))
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

struct EncodedRecord {
    fields: String,
    sis_fields: Option<String>,
    manual: Option<String>,
    sis_batches: Option<String>,
    sis_hash: u64,
    username: Option<String>,
}

/// A record as its row stores it (provenance compactly, see [`Compact`]).
fn encode(record: &Record) -> StoreResult<EncodedRecord> {
    let json =
        |v: &BTreeMap<String, String>| serde_json::to_string(v).map_err(corrupt("record fields"));
    let compact = Compact::of(record);
    Ok(EncodedRecord {
        fields: json(&record.fields)?,
        sis_fields: if record.sis_fields == record.fields {
            None
        } else {
            Some(json(&record.sis_fields)?)
        },
        manual: if compact.manual.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&compact.manual).map_err(corrupt("manual marks"))?)
        },
        sis_batches: if compact.sis_batches.is_empty() {
            None
        } else {
            Some(json(&compact.sis_batches)?)
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
    version: i64,
}

const RECORD_COLUMNS: &str = "entity, sourced_id, fields, sis_fields, manual, sis_batches, active, origin, archived_by, batch, created_batch, version";

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
        version: row.get(11)?,
    })
}

fn origin(text: &str) -> StoreResult<Origin> {
    compact::origin(text).ok_or_else(|| StoreError::Corrupt {
        what: "a record's origin".into(),
        reason: format!("{text:?} is neither sis nor manual"),
    })
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
    let compact = Compact {
        manual: match &raw.manual {
            Some(text) => serde_json::from_str(text).map_err(corrupt("manual marks"))?,
            None => BTreeMap::new(),
        },
        sis_batches: match &raw.sis_batches {
            Some(text) => serde_json::from_str(text).map_err(corrupt("SIS batches"))?,
            None => BTreeMap::new(),
        },
    };
    let provenance = compact.provenance(&fields, raw.created_batch.as_ref(), raw.batch.as_ref());
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
        version: raw.version.max(0) as u64,
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

    fn put_chunk_result(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        result: &ChunkResult,
    ) -> StoreResult<()> {
        let data = serde_json::to_string(result).map_err(corrupt("a chunk's result"))?;
        self.conn
            .prepare_cached(
                "INSERT INTO chunk_results (tenant, batch, chunk, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET data = excluded.data",
            )
            .and_then(|mut st| st.execute(params![tenant, batch, chunk, data]))
            .map_err(backend("recording an applied chunk"))?;
        Ok(())
    }

    fn chunk_results(&self, tenant: &str, batch: &str) -> StoreResult<BTreeMap<u32, ChunkResult>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT chunk, data FROM chunk_results WHERE tenant = ?1 AND batch = ?2 ORDER BY chunk",
            )
            .map_err(backend("reading applied chunks"))?;
        let rows = st
            .query_map(params![tenant, batch], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(backend("reading applied chunks"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("reading applied chunks"))?;
        rows.into_iter()
            .map(|(chunk, data)| {
                serde_json::from_str(&data)
                    .map(|r| (chunk, r))
                    .map_err(corrupt("a chunk's result"))
            })
            .collect()
    }
}

impl RecordRead for SqliteStore {
    fn get_records(
        &self,
        tenant: &str,
        entity: Entity,
        ids: &[&str],
    ) -> StoreResult<Vec<Option<Record>>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND entity = ?2 AND sourced_id = ?3"
        );
        ids.iter()
            .map(|id| {
                Ok(self
                    .records_where(&sql, &[&tenant, &entity.name(), id])?
                    .pop())
            })
            .collect()
    }

    fn count_records(&self, tenant: &str, entity: Entity) -> StoreResult<u64> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*) FROM records INDEXED BY records_for_planning WHERE tenant = ?1 AND entity = ?2",
            )
            .and_then(|mut st| st.query_row(params![tenant, entity.name()], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(backend("counting records"))
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
                "SELECT sourced_id, sis_hash, version, flags FROM records INDEXED BY records_for_planning
                 WHERE tenant = ?1 AND entity = ?2",
            )
            .map_err(backend("reading the roster"))?;
        let mut rows = st
            .query(params![tenant, entity.name()])
            .map_err(backend("reading the roster"))?;
        while let Some(row) = rows.next().map_err(backend("reading the roster"))? {
            let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Snapshot> {
                let flags: i64 = r.get(3)?;
                Ok(Snapshot {
                    sourced_id: r.get(0)?,
                    sis_hash: r.get::<_, i64>(1)? as u64,
                    version: r.get::<_, i64>(2)?.max(0) as u64,
                    active: flags & ACTIVE != 0,
                    manual_origin: flags & MANUAL_ORIGIN != 0,
                    manual_archive: flags & MANUAL_ARCHIVE != 0,
                    manual_fields: flags & MANUAL_FIELDS != 0,
                    manual_status: flags & MANUAL_STATUS != 0,
                })
            };
            each(read(row).map_err(backend("reading the roster"))?);
        }
        Ok(())
    }

    fn list_records(
        &self,
        tenant: &str,
        entity: Entity,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND entity = ?2 AND sourced_id > ?3
             ORDER BY sourced_id LIMIT ?4"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.records_where(
            &sql,
            &[&tenant, &entity.name(), &after.unwrap_or(""), &limit],
        )
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

    fn find_enrollments(&self, tenant: &str, of: EnrollmentsOf<'_>) -> StoreResult<Vec<Record>> {
        self.enrollments_where(tenant, of)
    }
}

impl SqliteStore {
    /// Enrollments by class or user. Not indexed: a scan of the tenant's enrollments, which keeps a first load
    /// of millions of enrollments free of two more index writes per row; the product reads these on DynamoDB,
    /// where `class_enrollments` and `user_enrollments` serve them.
    fn enrollments_where(&self, tenant: &str, of: EnrollmentsOf<'_>) -> StoreResult<Vec<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE tenant = ?1 AND entity = 'enrollments'
             AND json_extract(fields, ?2) = ?3 ORDER BY sourced_id"
        );
        let path = format!("$.{}", of.column());
        self.records_where(&sql, &[&tenant, &path, &of.id()])
    }
}

impl RecordWrite for SqliteStore {
    fn write_records(&self, tenant: &str, writes: &[Write]) -> StoreResult<Vec<bool>> {
        self.atomically("writing records", || {
            writes.iter().map(|w| self.write_one(tenant, w)).collect()
        })
    }
}

/// Undo pages are stored compressed: a page of prior records is mostly repeated field names.
fn pack(items: &[&UndoItem]) -> StoreResult<Vec<u8>> {
    let json = serde_json::to_vec(items).map_err(corrupt("undo information"))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| StoreError::Backend {
            doing: "compressing undo information".into(),
            reason: e.to_string(),
        })
}

fn unpack(bytes: &[u8]) -> StoreResult<Vec<UndoItem>> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| StoreError::Corrupt {
            what: "undo information".into(),
            reason: e.to_string(),
        })?;
    serde_json::from_slice(&json).map_err(corrupt("undo information"))
}

impl UndoStore for SqliteStore {
    fn put_undo(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        items: &[&UndoItem],
    ) -> StoreResult<()> {
        let data = pack(items)?;
        self.conn
            .prepare_cached(
                "INSERT INTO undo_pages (tenant, batch, chunk, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET data = excluded.data",
            )
            .and_then(|mut st| st.execute(params![tenant, batch, chunk, data]))
            .map_err(backend("keeping undo information"))?;
        Ok(())
    }

    fn undo_page(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
    ) -> StoreResult<Option<Vec<UndoItem>>> {
        let data: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT data FROM undo_pages WHERE tenant = ?1 AND batch = ?2 AND chunk = ?3",
            )
            .and_then(|mut st| {
                st.query_row(params![tenant, batch, chunk], |r| r.get(0))
                    .optional()
            })
            .map_err(backend("reading undo information"))?;
        data.map(|d| unpack(&d)).transpose()
    }

    fn undo_chunks(&self, tenant: &str, batch: &str) -> StoreResult<Vec<u32>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT chunk FROM undo_pages WHERE tenant = ?1 AND batch = ?2 ORDER BY chunk",
            )
            .map_err(backend("reading undo information"))?;
        st.query_map(params![tenant, batch], |r| r.get::<_, u32>(0))
            .map_err(backend("reading undo information"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("reading undo information"))
    }

    fn delete_undo(&self, tenant: &str, batch: &str) -> StoreResult<()> {
        self.conn
            .execute(
                "DELETE FROM undo_pages WHERE tenant = ?1 AND batch = ?2",
                params![tenant, batch],
            )
            .map_err(backend("clearing undo information"))?;
        Ok(())
    }
}

fn raw_lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        holder: r.get(0)?,
        purpose: r.get(1)?,
        batch: r.get(2)?,
        acquired_at: r.get::<_, i64>(3)?.max(0) as u64,
        expires_at: r.get::<_, i64>(4)?.max(0) as u64,
    })
}

impl LeaseStore for SqliteStore {
    fn get_lease(&self, tenant: &str) -> StoreResult<Option<Lease>> {
        self.conn
            .prepare_cached(
                "SELECT holder, purpose, batch, acquired_at, expires_at FROM tenant_leases WHERE tenant = ?1",
            )
            .and_then(|mut st| st.query_row([tenant], raw_lease).optional())
            .map_err(backend("reading the tenant's lease"))
    }

    fn try_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        replacing: Option<&Lease>,
    ) -> StoreResult<bool> {
        let doing = "taking the tenant's lease";
        self.atomically(doing, || {
            let current = self.get_lease(tenant)?;
            if current.as_ref() != replacing {
                return Ok(false);
            }
            self.conn
                .execute(
                    "INSERT INTO tenant_leases (tenant, holder, purpose, batch, acquired_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder, purpose = excluded.purpose,
                     batch = excluded.batch, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                    params![
                        tenant,
                        lease.holder,
                        lease.purpose,
                        lease.batch,
                        lease.acquired_at as i64,
                        lease.expires_at as i64
                    ],
                )
                .map_err(backend(doing))?;
            Ok(true)
        })
    }

    fn renew_lease(
        &self,
        tenant: &str,
        holder: &str,
        expires_at: u64,
        batch: Option<&str>,
    ) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE tenant_leases SET expires_at = ?3, batch = COALESCE(?4, batch)
                 WHERE tenant = ?1 AND holder = ?2",
            )
            .and_then(|mut st| st.execute(params![tenant, holder, expires_at as i64, batch]))
            .map_err(backend("renewing the tenant's lease"))?;
        Ok(changed == 1)
    }

    fn release_lease(&self, tenant: &str, holder: &str) -> StoreResult<()> {
        self.conn
            .execute(
                "DELETE FROM tenant_leases WHERE tenant = ?1 AND holder = ?2",
                params![tenant, holder],
            )
            .map_err(backend("releasing the tenant's lease"))?;
        Ok(())
    }
}

/// A unit of work on the database: a transaction, or a savepoint inside one.
struct SqliteUnit<'a> {
    store: &'a SqliteStore,
    savepoint: Option<String>,
    done: bool,
}

impl Unit for SqliteUnit<'_> {
    fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.done = true;
        self.store
            .finish(self.savepoint.take(), "committing the batch", true)
    }
}

impl Drop for SqliteUnit<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .store
                .finish(self.savepoint.take(), "rolling back", false);
        }
    }
}

impl Atomic for SqliteStore {
    fn unit(&self) -> StoreResult<Box<dyn Unit + '_>> {
        let savepoint = self.begin("starting a unit of work")?;
        Ok(Box::new(SqliteUnit {
            store: self,
            savepoint,
            done: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Provenance;

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
            version: 0,
        }
    }

    fn put(store: &SqliteStore, before: Option<&Record>, after: Record) -> bool {
        store
            .write_records("t1", &[Write::replacing(before, after)])
            .expect("write")[0]
    }

    #[test]
    fn records_round_trip_with_provenance_versions_and_sso_lookups() {
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
        assert!(put(&store, None, r.clone()));
        let stored = store
            .get_record("t1", Entity::Users, "stu-1")
            .expect("read")
            .expect("stored");
        r.version = 1;
        assert_eq!(stored, r);
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
    fn a_write_from_a_stale_read_changes_nothing() {
        let store = SqliteStore::in_memory().expect("store");
        assert!(put(&store, None, record("stu-1")));
        assert!(!put(&store, None, record("stu-1")), "it exists already");
        let v1 = store
            .get_record("t1", Entity::Users, "stu-1")
            .expect("read")
            .expect("stored");
        let mut first = v1.clone();
        first.fields.insert("givenName".into(), "Ana".into());
        assert!(put(&store, Some(&v1), first));
        let mut stale = v1.clone();
        stale.fields.insert("familyName".into(), "Lee".into());
        assert!(!put(&store, Some(&v1), stale), "read at version 1, now 2");
        let now = store
            .get_record("t1", Entity::Users, "stu-1")
            .expect("read")
            .expect("stored");
        assert_eq!(now.version, 2);
        assert_eq!(now.fields.get("givenName").map(String::as_str), Some("Ana"));
        assert!(!now.fields.contains_key("familyName"));
        let gone = store
            .write_records(
                "t1",
                &[Write::Delete {
                    entity: Entity::Users,
                    sourced_id: "stu-1".into(),
                    version: 1,
                }],
            )
            .expect("delete");
        assert_eq!(gone, [false], "a delete is conditional too");
        assert_eq!(store.records_written(), 2);
    }

    #[test]
    fn a_unit_dropped_without_commit_leaves_nothing() {
        let store = SqliteStore::in_memory().expect("store");
        {
            let _unit = store.unit().expect("begin");
            assert!(put(&store, None, record("stu-1")));
            // A write batch inside the unit is a savepoint, undone with the unit.
            store.put_undo("t1", "b1", 1, &[]).expect("undo");
        }
        assert_eq!(
            store
                .get_record("t1", Entity::Users, "stu-1")
                .expect("read"),
            None
        );
        assert!(store.undo_chunks("t1", "b1").expect("undo").is_empty());
        let unit = store.unit().expect("begin");
        assert!(put(&store, None, record("stu-1")));
        unit.commit().expect("commit");
        assert!(
            store
                .get_record("t1", Entity::Users, "stu-1")
                .expect("read")
                .is_some()
        );
    }

    #[test]
    fn records_are_listed_in_pages() {
        let store = SqliteStore::in_memory().expect("store");
        for id in ["a", "b", "c", "d", "e"] {
            assert!(put(&store, None, record(id)));
        }
        let page = |after: Option<&str>| -> Vec<String> {
            store
                .list_records("t1", Entity::Users, after, 2)
                .expect("list")
                .into_iter()
                .map(|r| r.sourced_id)
                .collect()
        };
        assert_eq!(page(None), ["a", "b"]);
        assert_eq!(page(Some("b")), ["c", "d"]);
        assert_eq!(page(Some("d")), ["e"]);
        assert!(page(Some("e")).is_empty());
    }

    #[test]
    fn undo_pages_round_trip() {
        let store = SqliteStore::in_memory().expect("store");
        let items = vec![
            UndoItem {
                entity: Entity::Users,
                sourced_id: "stu-1".into(),
                before: Some(record("stu-1")),
                written_version: 2,
                landed: "update".into(),
            },
            UndoItem {
                entity: Entity::Users,
                sourced_id: "stu-2".into(),
                before: None,
                written_version: 1,
                landed: "create".into(),
            },
        ];
        let all: Vec<&UndoItem> = items.iter().collect();
        store.put_undo("t1", "b1", 3, &all).expect("put");
        store.put_undo("t1", "b1", 1, &all[..1]).expect("put");
        assert_eq!(store.undo_chunks("t1", "b1").expect("chunks"), [1, 3]);
        assert_eq!(store.undo_page("t1", "b1", 3).expect("page"), Some(items));
        assert_eq!(store.undo_page("t1", "b1", 2).expect("page"), None);
        store.delete_undo("t1", "b1").expect("delete");
        assert!(store.undo_chunks("t1", "b1").expect("chunks").is_empty());
    }

    fn lease(holder: &str, expires_at: u64) -> Lease {
        Lease {
            holder: holder.into(),
            purpose: "sync".into(),
            batch: None,
            acquired_at: 1,
            expires_at,
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_or_when_replacing_exactly_the_one_there() {
        let store = SqliteStore::in_memory().expect("store");
        let a = lease("a", 100);
        assert!(store.try_lease("t1", &a, None).expect("take"));
        assert!(
            !store
                .try_lease("t1", &lease("b", 100), None)
                .expect("taken")
        );
        assert!(
            store
                .try_lease("t2", &lease("b", 100), None)
                .expect("other tenant")
        );
        assert!(
            store
                .renew_lease("t1", "a", 200, Some("b1"))
                .expect("renew")
        );
        assert!(!store.renew_lease("t1", "b", 300, None).expect("not b's"));
        let renewed = store.get_lease("t1").expect("read").expect("held");
        assert_eq!(
            (renewed.expires_at, renewed.batch.as_deref()),
            (200, Some("b1"))
        );
        assert!(
            !store
                .try_lease("t1", &lease("b", 100), Some(&a))
                .expect("stale"),
            "a renewed lease is not the one judged dead"
        );
        assert!(
            store
                .try_lease("t1", &lease("b", 100), Some(&renewed))
                .expect("take over")
        );
        store.release_lease("t1", "a").expect("not a's any more");
        assert_eq!(
            store.get_lease("t1").expect("read").map(|l| l.holder),
            Some("b".into())
        );
        store.release_lease("t1", "b").expect("release");
        assert_eq!(store.get_lease("t1").expect("read"), None);
    }

    #[test]
    fn user_ids_are_parsed() {
        assert_eq!(
            crate::model::user_ids("{ClassLink:123},{LDAP: x }"),
            [
                ("ClassLink".to_string(), "123".to_string()),
                ("LDAP".to_string(), "x".to_string())
            ]
        );
        assert!(crate::model::user_ids("").is_empty());
    }
}
