//! The items of the one DynamoDB table, mapped with serde_dynamo. Layout (see `aws/DYNAMODB.md` for the reads
//! each key serves):
//!
//! | item | pk | sk | index keys |
//! |---|---|---|---|
//! | tenant | `TENANTS` | `T#{tenant}` | |
//! | lease | `T#{tenant}` | `LEASE` | (`ttl` attribute) |
//! | batch sequence | `T#{tenant}` | `SEQ` | |
//! | batch | `BATCH#{batch}` | `BATCH` | `history`: `hpk` = `H#{tenant}`, `hsk` = sequence |
//! | chunk result | `BATCH#{batch}` | `CHUNK#{n}` | |
//! | chunk failure | `BATCH#{batch}` | `FAILED#{n}` | (the last error of an invocation applying chunk n) |
//! | record | `R#{tenant}#{entity}#{shard}` | sourcedId | `plan`: `ppk`/`psk`; `username`: `upk`/`usk`; `class_enrollments`: `cpk`/`csk`; `user_enrollments`: `epk`/`esk` |
//! | userIds entry | `UID#{tenant}#{type}#{identifier}` | sourcedId | |

use rollcall::model::{Batch, Entity, Origin, Record, Tenant, content_hash};
use rollcall::store::compact::{self, Compact, ManualMark};
use rollcall::store::{ChunkResult, Lease, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Records of one tenant and entity are spread over this many partition keys, so a first load of a million
/// users (or seven million enrollments) is not held to one partition's write rate.
pub const SHARDS: u32 = 32;

pub const TENANTS: &str = "TENANTS";
pub const BATCH_SK: &str = "BATCH";
pub const LEASE_SK: &str = "LEASE";
pub const SEQ_SK: &str = "SEQ";

pub fn tenant_sk(tenant: &str) -> String {
    format!("T#{tenant}")
}

pub fn tenant_pk(tenant: &str) -> String {
    format!("T#{tenant}")
}

pub fn batch_pk(batch: &str) -> String {
    format!("BATCH#{batch}")
}

pub fn chunk_sk(chunk: u32) -> String {
    format!("CHUNK#{chunk:06}")
}

pub fn history_pk(tenant: &str) -> String {
    format!("H#{tenant}")
}

/// The shard a record's sourcedId falls in.
pub fn shard(sourced_id: &str) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(sourced_id.as_bytes()) % u64::from(SHARDS)) as u32
}

/// The partition of one shard of one tenant's entity.
pub fn record_pk(tenant: &str, entity: Entity, shard: u32) -> String {
    format!("R#{tenant}#{entity}#{shard:02}")
}

pub fn username_pk(tenant: &str, username: &str) -> String {
    format!("U#{tenant}#{username}")
}

pub fn user_id_pk(tenant: &str, kind: &str, identifier: &str) -> String {
    format!("UID#{tenant}#{kind}#{identifier}")
}

pub fn class_pk(tenant: &str, class: &str) -> String {
    format!("EC#{tenant}#{class}")
}

pub fn enrolled_pk(tenant: &str, user: &str) -> String {
    format!("EU#{tenant}#{user}")
}

#[derive(Serialize, Deserialize)]
pub struct TenantItem {
    pub pk: String,
    pub sk: String,
    pub tenant: Tenant,
}

#[derive(Serialize, Deserialize)]
pub struct BatchItem {
    pub pk: String,
    pub sk: String,
    pub hpk: String,
    pub hsk: String,
    pub batch: Batch,
    /// The task token of the execution waiting for this batch's approval, while it is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct ChunkItem {
    pub pk: String,
    pub sk: String,
    pub result: ChunkResult,
}

/// Why an invocation applying a chunk failed, kept so the failure path can say more than "a map item failed".
#[derive(Serialize, Deserialize)]
pub struct ChunkFailureItem {
    pub pk: String,
    /// `FAILED#{chunk}`.
    pub sk: String,
    pub reason: String,
    pub at: u64,
}

pub fn chunk_failure_sk(chunk: u32) -> String {
    format!("FAILED#{chunk:06}")
}

#[derive(Serialize, Deserialize)]
pub struct LeaseItem {
    pub pk: String,
    pub sk: String,
    pub holder: String,
    pub purpose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    pub acquired_at: u64,
    pub expires_at: u64,
    /// DynamoDB's time to live: a lease left behind is removed a day after it expired.
    pub ttl: u64,
}

impl LeaseItem {
    pub fn of(tenant: &str, lease: &Lease) -> LeaseItem {
        LeaseItem {
            pk: tenant_pk(tenant),
            sk: LEASE_SK.into(),
            holder: lease.holder.clone(),
            purpose: lease.purpose.clone(),
            batch: lease.batch.clone(),
            acquired_at: lease.acquired_at,
            expires_at: lease.expires_at,
            ttl: lease.expires_at + 86_400,
        }
    }

    pub fn lease(self) -> Lease {
        Lease {
            holder: self.holder,
            purpose: self.purpose,
            batch: self.batch,
            acquired_at: self.acquired_at,
            expires_at: self.expires_at,
        }
    }
}

/// Planning's flags: active, created by hand, archived by hand, has fields set by hand, archived or restored
/// by hand last.
pub const ACTIVE: u8 = 1;
pub const MANUAL_ORIGIN: u8 = 2;
pub const MANUAL_ARCHIVE: u8 = 4;
pub const MANUAL_FIELDS: u8 = 8;
pub const MANUAL_STATUS: u8 = 16;

/// One roster record as its item holds it: provenance compactly (as the embedded store keeps it), and the
/// attributes the indexes are keyed on.
#[derive(Serialize, Deserialize)]
pub struct RecordItem {
    pub pk: String,
    pub sk: String,
    /// Entity.
    pub e: Entity,
    /// Fields in force.
    pub f: BTreeMap<String, String>,
    /// The SIS's values, when they differ from those in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<BTreeMap<String, String>>,
    /// Fields set by hand: who, when.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub m: BTreeMap<String, ManualMark>,
    /// The batch that set a field, where it is not the one that created the record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sb: BTreeMap<String, String>,
    pub a: bool,
    pub o: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cb: Option<String>,
    /// Version.
    pub v: u64,
    /// Hash of the SIS values, and planning's flags: what the `plan` index projects.
    pub h: u64,
    pub fl: u8,
    pub ppk: String,
    pub psk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esk: Option<String>,
}

impl RecordItem {
    pub fn of(tenant: &str, record: &Record) -> RecordItem {
        let pk = record_pk(tenant, record.entity, shard(&record.sourced_id));
        let compact = Compact::of(record);
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        let field = |name: &str| record.fields.get(name).filter(|v| !v.is_empty());
        let id = || Some(record.sourced_id.clone());
        let (upk, cpk, epk) = match record.entity {
            Entity::Users => (
                field("username").map(|u| username_pk(tenant, u)),
                None,
                None,
            ),
            Entity::Enrollments => (
                None,
                field("classSourcedId").map(|c| class_pk(tenant, c)),
                field("userSourcedId").map(|u| enrolled_pk(tenant, u)),
            ),
            _ => (None, None, None),
        };
        RecordItem {
            ppk: pk.clone(),
            psk: record.sourced_id.clone(),
            pk,
            sk: record.sourced_id.clone(),
            e: record.entity,
            f: record.fields.clone(),
            s: (record.sis_fields != record.fields).then(|| record.sis_fields.clone()),
            m: compact.manual,
            sb: compact.sis_batches,
            a: record.active,
            o: record.origin.as_str().to_string(),
            ab: record.archived_by.map(|o| o.as_str().to_string()),
            b: record.batch.clone(),
            cb: record.created_batch.clone(),
            v: record.version,
            h: content_hash(&record.sis_fields),
            fl: bit(record.active, ACTIVE)
                | bit(record.origin == Origin::Manual, MANUAL_ORIGIN)
                | bit(record.archived_by == Some(Origin::Manual), MANUAL_ARCHIVE)
                | bit(record.has_manual_fields(), MANUAL_FIELDS)
                | bit(record.manual_status(), MANUAL_STATUS),
            usk: upk.as_ref().and_then(|_| id()),
            upk,
            csk: cpk.as_ref().and_then(|_| id()),
            cpk,
            esk: epk.as_ref().and_then(|_| id()),
            epk,
        }
    }

    pub fn record(self) -> Result<Record, String> {
        let origin = |t: &str| compact::origin(t).ok_or_else(|| format!("{t:?} is not an origin"));
        let compact = Compact {
            manual: self.m,
            sis_batches: self.sb,
        };
        let provenance = compact.provenance(&self.f, self.cb.as_ref(), self.b.as_ref());
        Ok(Record {
            entity: self.e,
            sourced_id: self.sk,
            sis_fields: self.s.unwrap_or_else(|| self.f.clone()),
            fields: self.f,
            provenance,
            active: self.a,
            origin: origin(&self.o)?,
            archived_by: self.ab.as_deref().map(origin).transpose()?,
            batch: self.b,
            created_batch: self.cb,
            version: self.v,
        })
    }
}

/// What the `plan` index holds of a record.
#[derive(Deserialize)]
pub struct PlanEntry {
    pub psk: String,
    pub h: u64,
    pub v: u64,
    pub fl: u8,
}

impl PlanEntry {
    pub fn snapshot(self) -> Snapshot {
        Snapshot {
            sourced_id: self.psk,
            sis_hash: self.h,
            active: self.fl & ACTIVE != 0,
            manual_origin: self.fl & MANUAL_ORIGIN != 0,
            manual_archive: self.fl & MANUAL_ARCHIVE != 0,
            manual_fields: self.fl & MANUAL_FIELDS != 0,
            manual_status: self.fl & MANUAL_STATUS != 0,
            version: self.v,
        }
    }
}

/// One entry of a user's `userIds`, indexed for lookups by SSO identity.
#[derive(Serialize, Deserialize)]
pub struct UserIdItem {
    pub pk: String,
    pub sk: String,
}
