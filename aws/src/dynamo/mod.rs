//! The store traits on one DynamoDB table (and undo pages in S3). Record writes are conditional on the version
//! they read (a condition expression on `v`), issued many at a time; batch reads and index writes go through
//! `BatchGetItem` / `BatchWriteItem` with what they leave unprocessed sent again after a jittered backoff.
//! Planning reads a tenant's records from the `plan` index, which projects only the SIS hash, version and
//! flags of each record. Nothing here scans the table. The item layout is in `items` and `aws/DYNAMODB.md`.

pub mod items;

use crate::bridge::{AwsError, Bridge, until_done};
use crate::context::Aws;
use crate::s3::S3Blobs;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, ReturnValue, WriteRequest,
};
use futures_util::StreamExt;
use items::*;
use rollcall::blob::BlobStore;
use rollcall::model::{Batch, Entity, Record, Tenant};
use rollcall::store::{
    Atomic, BatchStore, ChunkResult, EnrollmentsOf, Expect, Lease, LeaseStore, RecordRead,
    RecordWrite, Snapshot, StoreError, StoreResult, TenantStore, UndoItem, UndoStore, Unit, Write,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write as _};

type Item = HashMap<String, AttributeValue>;

/// Conditional writes in flight at once per call.
const WRITES_IN_FLIGHT: usize = 32;

/// The most keys one `BatchGetItem` takes.
const GET_BATCH: usize = 100;

/// The most writes one `BatchWriteItem` takes (DynamoDB enforces it; moto does not, so it is kept here).
const WRITE_BATCH: usize = 25;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn failed(doing: impl Into<String>, err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        doing: doing.into(),
        reason: err.to_string(),
    }
}

fn corrupt(what: impl Into<String>, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: err.to_string(),
    }
}

fn from_aws(e: AwsError) -> StoreError {
    failed("talking to DynamoDB", e)
}

fn to_item<T: serde::Serialize>(value: &T) -> StoreResult<Item> {
    serde_dynamo::to_item(value).map_err(|e| corrupt("an item to write", e))
}

fn from_item<T: serde::de::DeserializeOwned>(item: Item, what: &str) -> StoreResult<T> {
    serde_dynamo::from_item(item).map_err(|e| corrupt(what, e))
}

/// Keys still to read, and the items read so far.
struct Gets {
    left: Vec<Item>,
    found: Vec<Item>,
}

impl crate::bridge::Leftover for Gets {
    fn left(&self) -> usize {
        self.left.len()
    }
}

/// A tenant's roster and state in DynamoDB; undo pages in S3.
pub struct DynamoStore {
    client: Client,
    bridge: Bridge,
    table: String,
    blobs: S3Blobs,
}

impl DynamoStore {
    pub fn new(aws: &Aws) -> DynamoStore {
        DynamoStore {
            client: aws.dynamo.clone(),
            bridge: aws.bridge.clone(),
            table: aws.names.table.clone(),
            blobs: S3Blobs::new(aws.s3.clone(), aws.bridge.clone(), &aws.names.bucket),
        }
    }

    fn key(pk: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    fn get(&self, pk: &str, sk: &str, doing: &str) -> StoreResult<Option<Item>> {
        let out = self
            .bridge
            .run(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(pk, sk)))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| failed(doing, crate::s3::describe(&e)))?;
        Ok(out.item)
    }

    fn put(&self, item: Item, doing: &str) -> StoreResult<()> {
        self.bridge
            .run(
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .send(),
            )
            .map_err(|e| failed(doing, crate::s3::describe(&e)))?;
        Ok(())
    }

    /// Every item of a key condition, page after page (`index` for a secondary index).
    async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        values: &[(&str, AttributeValue)],
        projection: Option<&str>,
    ) -> Result<Vec<Item>, AwsError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut call = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(condition)
                .set_exclusive_start_key(start.take())
                .set_projection_expression(projection.map(str::to_string));
            for (name, value) in values {
                call = call.expression_attribute_values(*name, value.clone());
            }
            if index.is_none() {
                call = call.consistent_read(true);
            }
            let out = call
                .send()
                .await
                .map_err(|e| AwsError::call("DynamoDB", "querying", crate::s3::describe(&e)))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Items by key, a hundred keys a call, what is left unprocessed asked again.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, AwsError> {
        let mut found = Vec::new();
        for group in keys.chunks(GET_BATCH) {
            let start = Gets {
                left: group.to_vec(),
                found: Vec::new(),
            };
            let done = until_done("reading records", start, |work: Gets| {
                let client = self.client.clone();
                let table = self.table.clone();
                async move {
                    let keys = KeysAndAttributes::builder()
                        .set_keys(Some(work.left))
                        .consistent_read(true)
                        .build()
                        .map_err(|e| AwsError::call("DynamoDB", "reading records", e))?;
                    let out = client
                        .batch_get_item()
                        .request_items(&table, keys)
                        .send()
                        .await
                        .map_err(|e| {
                            AwsError::call("DynamoDB", "reading records", crate::s3::describe(&e))
                        })?;
                    let mut got = work.found;
                    if let Some(mut responses) = out.responses {
                        got.extend(responses.remove(&table).unwrap_or_default());
                    }
                    Ok(Gets {
                        left: out
                            .unprocessed_keys
                            .and_then(|mut u| u.remove(&table))
                            .map(|k| k.keys)
                            .unwrap_or_default(),
                        found: got,
                    })
                }
            })
            .await?;
            found.extend(done.found);
        }
        Ok(found)
    }

    /// Unconditional writes, 25 a call, what is left unprocessed written again.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), AwsError> {
        for group in requests.chunks(WRITE_BATCH) {
            until_done(
                "writing index entries",
                group.to_vec(),
                |left: Vec<WriteRequest>| {
                    let call = self
                        .client
                        .batch_write_item()
                        .request_items(&self.table, left);
                    let table = self.table.clone();
                    async move {
                        let out = call.send().await.map_err(|e| {
                            AwsError::call(
                                "DynamoDB",
                                "writing index entries",
                                crate::s3::describe(&e),
                            )
                        })?;
                        Ok(out
                            .unprocessed_items
                            .and_then(|mut u| u.remove(&table))
                            .unwrap_or_default())
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Records by id from items, keyed by sourcedId.
    fn records(items: Vec<Item>) -> StoreResult<HashMap<String, Record>> {
        items
            .into_iter()
            .map(|item| {
                let parsed: RecordItem = from_item(item, "a record")?;
                let record = parsed.record().map_err(|e| corrupt("a record", e))?;
                Ok((record.sourced_id.clone(), record))
            })
            .collect()
    }

    /// One conditional record write; whether the record was as expected.
    async fn write_one(&self, tenant: &str, write: &Write) -> Result<bool, AwsError> {
        let doing = "writing a record";
        let result = match write {
            Write::Put { record, expect } => {
                let item = serde_dynamo::to_item(RecordItem::of(tenant, record))
                    .map_err(|e| AwsError::call("DynamoDB", doing, e))?;
                let call = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item));
                let call = match expect {
                    Expect::Absent => call.condition_expression("attribute_not_exists(pk)"),
                    Expect::Version(v) => call
                        .condition_expression("v = :v")
                        .expression_attribute_values(":v", n(*v)),
                };
                match call.send().await {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(crate::s3::describe(&e)),
                }
            }
            Write::Delete {
                entity,
                sourced_id,
                version,
            } => {
                let pk = record_pk(tenant, *entity, shard(sourced_id));
                let call = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(&pk, sourced_id)))
                    .condition_expression("v = :v")
                    .expression_attribute_values(":v", n(*version));
                match call.send().await {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(crate::s3::describe(&e)),
                }
            }
        };
        result.map_err(|e| AwsError::call("DynamoDB", doing, e))
    }

    fn undo_key(tenant: &str, batch: &str, chunk: u32) -> String {
        format!("{}{chunk:06}.json.gz", Self::undo_prefix(tenant, batch))
    }

    fn undo_prefix(tenant: &str, batch: &str) -> String {
        format!("undo/{tenant}/{batch}/")
    }

    /// The task token of the execution waiting for a held batch's approval.
    pub fn task_token(&self, batch: &str) -> StoreResult<Option<String>> {
        let item = self.get(&batch_pk(batch), BATCH_SK, "reading a batch")?;
        Ok(match item {
            Some(item) => from_item::<BatchItem>(item, "a batch")?.token,
            None => None,
        })
    }

    /// Notes why applying a chunk failed (the last failure of that chunk is kept).
    pub fn note_chunk_failure(&self, batch: &str, chunk: u32, reason: &str) -> StoreResult<()> {
        let item = to_item(&ChunkFailureItem {
            pk: batch_pk(batch),
            sk: chunk_failure_sk(chunk),
            reason: reason.to_string(),
            at: rollcall::model::now(),
        })?;
        self.put(item, "noting a chunk's failure")
    }

    /// The failures noted for a batch's chunks, by chunk number.
    pub fn chunk_failures(&self, batch: &str) -> StoreResult<BTreeMap<u32, String>> {
        let items = self
            .bridge
            .run(self.query_all(
                None,
                "pk = :pk AND begins_with(sk, :f)",
                &[(":pk", s(batch_pk(batch))), (":f", s("FAILED#"))],
                None,
            ))
            .map_err(from_aws)?;
        items
            .into_iter()
            .map(|item| {
                let parsed: ChunkFailureItem = from_item(item, "a chunk's failure")?;
                let number = parsed
                    .sk
                    .trim_start_matches("FAILED#")
                    .parse::<u32>()
                    .map_err(|e| corrupt("a chunk's number", e))?;
                Ok((number, parsed.reason))
            })
            .collect()
    }

    /// Keeps the task token of the execution waiting for a held batch's approval (or clears it).
    pub fn set_task_token(&self, batch: &str, token: Option<&str>) -> StoreResult<()> {
        let call = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&batch_pk(batch), BATCH_SK)))
            .condition_expression("attribute_exists(pk)");
        let call = match token {
            Some(t) => call
                .update_expression("SET #t = :t")
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":t", s(t)),
            None => call
                .update_expression("REMOVE #t")
                .expression_attribute_names("#t", "token"),
        };
        self.bridge
            .run(call.send())
            .map_err(|e| failed("keeping a batch's task token", crate::s3::describe(&e)))?;
        Ok(())
    }
}

impl TenantStore for DynamoStore {
    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.get(TENANTS, &tenant_sk(id), "reading a tenant")?
            .map(|item| from_item::<TenantItem>(item, "a tenant").map(|t| t.tenant))
            .transpose()
    }

    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let item = to_item(&TenantItem {
            pk: TENANTS.into(),
            sk: tenant_sk(&tenant.id),
            tenant: tenant.clone(),
        })?;
        self.put(item, "writing a tenant")
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let items = self
            .bridge
            .run(self.query_all(None, "pk = :pk", &[(":pk", s(TENANTS))], None))
            .map_err(from_aws)?;
        items
            .into_iter()
            .map(|item| from_item::<TenantItem>(item, "a tenant").map(|t| t.tenant))
            .collect()
    }
}

impl BatchStore for DynamoStore {
    fn get_batch(&self, id: &str) -> StoreResult<Option<Batch>> {
        self.get(&batch_pk(id), BATCH_SK, "reading a batch")?
            .map(|item| from_item::<BatchItem>(item, "a batch").map(|b| b.batch))
            .transpose()
    }

    fn put_batch(&self, batch: &Batch) -> StoreResult<()> {
        let existing = self
            .get(&batch_pk(&batch.id), BATCH_SK, "reading a batch")?
            .map(|item| from_item::<BatchItem>(item, "a batch"))
            .transpose()?;
        let (hsk, token) = match existing {
            Some(old) => (old.hsk, old.token),
            None => {
                // A new batch takes the tenant's next place in its history.
                let out = self
                    .bridge
                    .run(
                        self.client
                            .update_item()
                            .table_name(&self.table)
                            .set_key(Some(Self::key(&tenant_pk(&batch.tenant), SEQ_SK)))
                            .update_expression("ADD #n :one")
                            .expression_attribute_names("#n", "n")
                            .expression_attribute_values(":one", n(1))
                            .return_values(ReturnValue::UpdatedNew)
                            .send(),
                    )
                    .map_err(|e| failed("numbering a batch", crate::s3::describe(&e)))?;
                let seq = out
                    .attributes
                    .and_then(|a| a.get("n").cloned())
                    .and_then(|v| v.as_n().ok().and_then(|n| n.parse::<u64>().ok()))
                    .ok_or_else(|| corrupt("the tenant's batch sequence", "it is not a number"))?;
                (format!("{seq:012}"), None)
            }
        };
        let item = to_item(&BatchItem {
            pk: batch_pk(&batch.id),
            sk: BATCH_SK.into(),
            hpk: history_pk(&batch.tenant),
            hsk,
            batch: batch.clone(),
            token,
        })?;
        self.put(item, "writing a batch")
    }

    fn list_batches(&self, tenant: &str) -> StoreResult<Vec<Batch>> {
        let items = self
            .bridge
            .run(self.query_all(
                Some("history"),
                "hpk = :h",
                &[(":h", s(history_pk(tenant)))],
                None,
            ))
            .map_err(from_aws)?;
        let mut batches = items
            .into_iter()
            .map(|item| from_item::<BatchItem>(item, "a batch").map(|b| (b.hsk, b.batch)))
            .collect::<StoreResult<Vec<_>>>()?;
        batches.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(batches.into_iter().map(|(_, b)| b).collect())
    }

    fn put_chunk_result(
        &self,
        _tenant: &str,
        batch: &str,
        chunk: u32,
        result: &ChunkResult,
    ) -> StoreResult<()> {
        let item = to_item(&ChunkItem {
            pk: batch_pk(batch),
            sk: chunk_sk(chunk),
            result: result.clone(),
        })?;
        self.put(item, "recording an applied chunk")
    }

    fn chunk_results(&self, _tenant: &str, batch: &str) -> StoreResult<BTreeMap<u32, ChunkResult>> {
        let items = self
            .bridge
            .run(self.query_all(
                None,
                "pk = :pk AND begins_with(sk, :c)",
                &[(":pk", s(batch_pk(batch))), (":c", s("CHUNK#"))],
                None,
            ))
            .map_err(from_aws)?;
        items
            .into_iter()
            .map(|item| {
                let parsed: ChunkItem = from_item(item, "a chunk's result")?;
                let number = parsed
                    .sk
                    .trim_start_matches("CHUNK#")
                    .parse::<u32>()
                    .map_err(|e| corrupt("a chunk's number", e))?;
                Ok((number, parsed.result))
            })
            .collect()
    }
}

impl RecordRead for DynamoStore {
    fn get_records(
        &self,
        tenant: &str,
        entity: Entity,
        ids: &[&str],
    ) -> StoreResult<Vec<Option<Record>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids
            .iter()
            .map(|id| Self::key(&record_pk(tenant, entity, shard(id)), id))
            .collect();
        let items = self.bridge.run(self.batch_get(keys)).map_err(from_aws)?;
        let mut found = Self::records(items)?;
        Ok(ids.iter().map(|id| found.remove(*id)).collect())
    }

    fn count_records(&self, _tenant: &str, _entity: Entity) -> StoreResult<u64> {
        // Counting would read the whole planning index a second time; planning sizes its tables as it goes.
        Ok(0)
    }

    fn snapshot(
        &self,
        tenant: &str,
        entity: Entity,
        each: &mut dyn FnMut(Snapshot),
    ) -> StoreResult<()> {
        for shard in 0..SHARDS {
            let mut start = None;
            loop {
                let out = self
                    .bridge
                    .run(
                        self.client
                            .query()
                            .table_name(&self.table)
                            .index_name("plan")
                            .key_condition_expression("ppk = :p")
                            .expression_attribute_values(":p", s(record_pk(tenant, entity, shard)))
                            .projection_expression("psk, h, v, fl")
                            .set_exclusive_start_key(start.take())
                            .send(),
                    )
                    .map_err(|e| failed("reading the roster", crate::s3::describe(&e)))?;
                for item in out.items.unwrap_or_default() {
                    let entry: PlanEntry = from_item(item, "a planning entry")?;
                    each(entry.snapshot());
                }
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
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
        // Each shard holds its share in sourcedId order: take the first `limit` of each, merge, cut. A shard
        // whose page ended early (DynamoDB's 1 MB page) bounds the merge: past its last key, records of that
        // shard are missing from the merge, so the page ends there and the next call resumes after it.
        let limit = limit.clamp(1, 10_000);
        let mut all = Vec::new();
        let mut horizon: Option<String> = None;
        for shard in 0..SHARDS {
            let mut call = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(record_pk(tenant, entity, shard)))
                .limit(limit as i32)
                .consistent_read(true);
            // An empty string cannot be compared with a key: without `after` the shard is read from its start.
            call = match after {
                Some(after) if !after.is_empty() => call
                    .key_condition_expression("pk = :pk AND sk > :after")
                    .expression_attribute_values(":after", s(after)),
                _ => call.key_condition_expression("pk = :pk"),
            };
            let out = self
                .bridge
                .run(call.send())
                .map_err(|e| failed("listing records", crate::s3::describe(&e)))?;
            let records = Self::records(out.items.unwrap_or_default())?;
            let short = records.len() < limit && out.last_evaluated_key.is_some();
            if short
                && let Some(last) = records.keys().max()
                && horizon.as_ref().is_none_or(|h| last < h)
            {
                horizon = Some(last.clone());
            }
            all.extend(records.into_values());
        }
        all.sort_by(|a, b| a.sourced_id.cmp(&b.sourced_id));
        if let Some(h) = horizon {
            all.retain(|r| r.sourced_id <= h);
        }
        all.truncate(limit);
        Ok(all)
    }

    fn find_by_username(&self, tenant: &str, username: &str) -> StoreResult<Vec<Record>> {
        let keys = self
            .bridge
            .run(self.query_all(
                Some("username"),
                "upk = :u",
                &[(":u", s(username_pk(tenant, username)))],
                Some("pk, sk"),
            ))
            .map_err(from_aws)?;
        let items = self.bridge.run(self.batch_get(keys)).map_err(from_aws)?;
        let mut found: Vec<Record> = Self::records(items)?.into_values().collect();
        found.sort_by(|a, b| a.sourced_id.cmp(&b.sourced_id));
        Ok(found)
    }

    fn find_by_user_id(
        &self,
        tenant: &str,
        kind: &str,
        identifier: &str,
    ) -> StoreResult<Vec<Record>> {
        let entries = self
            .bridge
            .run(self.query_all(
                None,
                "pk = :pk",
                &[(":pk", s(user_id_pk(tenant, kind, identifier)))],
                None,
            ))
            .map_err(from_aws)?;
        let ids: Vec<String> = entries
            .into_iter()
            .filter_map(|item| from_item::<UserIdItem>(item, "a userIds entry").ok())
            .map(|e| e.sk)
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        // The index entries are written after their record and never removed: the record is the truth.
        let mut found: Vec<Record> = self
            .get_records(tenant, Entity::Users, &refs)?
            .into_iter()
            .flatten()
            .filter(|r| {
                rollcall::model::user_ids(r.fields.get("userIds").map_or("", String::as_str))
                    .iter()
                    .any(|(k, i)| k == kind && i == identifier)
            })
            .collect();
        found.sort_by(|a, b| a.sourced_id.cmp(&b.sourced_id));
        Ok(found)
    }

    fn find_enrollments(&self, tenant: &str, of: EnrollmentsOf<'_>) -> StoreResult<Vec<Record>> {
        let (index, condition, key) = match of {
            EnrollmentsOf::Class(class) => {
                ("class_enrollments", "cpk = :k", class_pk(tenant, class))
            }
            EnrollmentsOf::User(user) => {
                ("user_enrollments", "epk = :k", enrolled_pk(tenant, user))
            }
        };
        let keys = self
            .bridge
            .run(self.query_all(Some(index), condition, &[(":k", s(key))], Some("pk, sk")))
            .map_err(from_aws)?;
        let items = self.bridge.run(self.batch_get(keys)).map_err(from_aws)?;
        // The index is eventually consistent: what the records say now is the answer.
        let mut found: Vec<Record> = Self::records(items)?
            .into_values()
            .filter(|r| of.matches(r))
            .collect();
        found.sort_by(|a, b| a.sourced_id.cmp(&b.sourced_id));
        Ok(found)
    }
}

impl RecordWrite for DynamoStore {
    fn write_records(&self, tenant: &str, writes: &[Write]) -> StoreResult<Vec<bool>> {
        self.bridge.run(async {
            let results: Vec<Result<bool, AwsError>> = futures_util::stream::iter(writes)
                .map(|w| self.write_one(tenant, w))
                .buffered(WRITES_IN_FLIGHT)
                .collect()
                .await;
            let applied = results
                .into_iter()
                .collect::<Result<Vec<bool>, _>>()
                .map_err(from_aws)?;
            // The users' SSO identities, for lookups by `userIds` entry.
            let mut entries = Vec::new();
            for (write, ok) in writes.iter().zip(&applied) {
                if let (Write::Put { record, .. }, true) = (write, ok)
                    && record.entity == Entity::Users
                {
                    let ids = rollcall::model::user_ids(
                        record.fields.get("userIds").map_or("", String::as_str),
                    );
                    for (kind, identifier) in ids {
                        let item = to_item(&UserIdItem {
                            pk: user_id_pk(tenant, &kind, &identifier),
                            sk: record.sourced_id.clone(),
                        })?;
                        let put = PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .map_err(|e| failed("indexing a user's ids", e))?;
                        entries.push(WriteRequest::builder().put_request(put).build());
                    }
                }
            }
            self.batch_write(entries).await.map_err(from_aws)?;
            Ok(applied)
        })
    }
}

impl UndoStore for DynamoStore {
    fn put_undo(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        items: &[&UndoItem],
    ) -> StoreResult<()> {
        let json = serde_json::to_vec(items).map_err(|e| corrupt("undo information", e))?;
        let gz = flate2_gz(json).map_err(|e| failed("compressing undo information", e))?;
        self.blobs
            .put(&Self::undo_key(tenant, batch, chunk), &gz)
            .map_err(|e| failed("keeping undo information", e))
    }

    fn undo_page(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
    ) -> StoreResult<Option<Vec<UndoItem>>> {
        let key = Self::undo_key(tenant, batch, chunk);
        let Some(bytes) = self
            .blobs
            .get(&key)
            .map_err(|e| failed("reading undo information", e))?
        else {
            return Ok(None);
        };
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut json)
            .map_err(|e| corrupt("undo information", e))?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| corrupt("undo information", e))
    }

    fn undo_chunks(&self, tenant: &str, batch: &str) -> StoreResult<Vec<u32>> {
        let prefix = Self::undo_prefix(tenant, batch);
        let listed = self
            .blobs
            .list(&prefix)
            .map_err(|e| failed("reading undo information", e))?;
        let mut chunks: Vec<u32> = listed
            .iter()
            .filter_map(|b| {
                b.key[prefix.len()..]
                    .trim_end_matches(".json.gz")
                    .parse()
                    .ok()
            })
            .collect();
        chunks.sort_unstable();
        Ok(chunks)
    }

    fn delete_undo(&self, tenant: &str, batch: &str) -> StoreResult<()> {
        self.blobs
            .delete_prefix(&Self::undo_prefix(tenant, batch))
            .map_err(|e| failed("clearing undo information", e))
    }
}

fn flate2_gz(json: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json)?;
    gz.finish()
}

impl LeaseStore for DynamoStore {
    fn get_lease(&self, tenant: &str) -> StoreResult<Option<Lease>> {
        self.get(&tenant_pk(tenant), LEASE_SK, "reading the tenant's lease")?
            .map(|item| from_item::<LeaseItem>(item, "a lease").map(LeaseItem::lease))
            .transpose()
    }

    fn try_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        replacing: Option<&Lease>,
    ) -> StoreResult<bool> {
        let item = to_item(&LeaseItem::of(tenant, lease))?;
        let call = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        // Taken only if nobody holds it, or if it is still exactly the lease the caller judged dead.
        let call = match replacing {
            None => call.condition_expression("attribute_not_exists(pk)"),
            Some(old) => call
                .condition_expression("holder = :h AND acquired_at = :a AND expires_at = :e")
                .expression_attribute_values(":h", s(&old.holder))
                .expression_attribute_values(":a", n(old.acquired_at))
                .expression_attribute_values(":e", n(old.expires_at)),
        };
        match self.bridge.run(call.send()) {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(failed("taking the tenant's lease", crate::s3::describe(&e))),
        }
    }

    fn renew_lease(
        &self,
        tenant: &str,
        holder: &str,
        expires_at: u64,
        batch: Option<&str>,
    ) -> StoreResult<bool> {
        let mut update = "SET expires_at = :e, #ttl = :t".to_string();
        if batch.is_some() {
            update.push_str(", #batch = :b");
        }
        let mut call = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&tenant_pk(tenant), LEASE_SK)))
            .update_expression(update)
            .condition_expression("holder = :me")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":e", n(expires_at))
            .expression_attribute_values(":t", n(expires_at + 86_400))
            .expression_attribute_values(":me", s(holder));
        if let Some(b) = batch {
            // `batch` is one of DynamoDB's reserved words.
            call = call
                .expression_attribute_names("#batch", "batch")
                .expression_attribute_values(":b", s(b));
        }
        match self.bridge.run(call.send()) {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(failed(
                "renewing the tenant's lease",
                crate::s3::describe(&e),
            )),
        }
    }

    fn release_lease(&self, tenant: &str, holder: &str) -> StoreResult<()> {
        let call = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&tenant_pk(tenant), LEASE_SK)))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(holder));
        match self.bridge.run(call.send()) {
            Ok(_) => Ok(()),
            // Not ours (any more): nothing to release.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(failed(
                "releasing the tenant's lease",
                crate::s3::describe(&e),
            )),
        }
    }
}

/// DynamoDB commits every write as it is made: a unit of work groups nothing.
struct EachWrite;

impl Unit for EachWrite {
    fn commit(self: Box<Self>) -> StoreResult<()> {
        Ok(())
    }
}

impl Atomic for DynamoStore {
    fn unit(&self) -> StoreResult<Box<dyn Unit + '_>> {
        Ok(Box::new(EachWrite))
    }
}
