//! The AWS pipeline end to end, on loopback: uploads to S3 (by the SDK, by `rollcall --aws sync`, by a real
//! SFTP client), the real state machine definitions run by moto's Step Functions engine, rollcall's Lambda
//! functions as processes, DynamoDB and S3 as moto serves them. Each test asserts what ends up stored.
//!
//! They need the stack, so a plain `cargo test` skips them (ignored). The test command runs them through the
//! harness: `scripts/aws-local --retry-clock 0.1 -- cargo test -p rollcall-cli --test aws -- --ignored`.
#![cfg(feature = "aws")]

mod common;

use common::provider::{KEY, Provider, ProviderAuth, SECRET, serve, with_secret_on_stdin};
use rollcall::blob::BlobStore;
use rollcall::model::{Batch, BatchStatus, Entity};
use rollcall::store::{BatchStore, LeaseStore};
use rollcall_aws::aws_sdk_dynamodb::types::AttributeValue;
use rollcall_aws::dynamo::{DynamoStore, items};
use rollcall_aws::s3::S3Blobs;
use rollcall_aws::{Aws, Names};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const ENTITIES: [&str; 7] = [
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "demographics",
    "enrollments",
];

// --- The stack --------------------------------------------------------------------------------------------

struct Stack {
    _runtime: tokio::runtime::Runtime,
    aws: Aws,
    store: DynamoStore,
    blobs: S3Blobs,
    harness: String,
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let harness = std::env::var("ROLLCALL_HARNESS_URL").expect(
            "these tests need the stack on loopback: \
             scripts/aws-local --retry-clock 0.1 -- cargo test -p rollcall-cli --test aws -- --ignored",
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let names = Names::from_env().expect("the stack's names");
        let aws = runtime.block_on(Aws::load(names, runtime.handle().clone()));
        let store = DynamoStore::new(&aws);
        let blobs = S3Blobs::new(aws.s3.clone(), aws.bridge.clone(), &aws.names.bucket);
        Stack {
            _runtime: runtime,
            aws,
            store,
            blobs,
            harness,
        }
    })
}

/// A request to the harness's own endpoint (events seen, faults, write counts, redelivery).
fn harness(method: &str, path: &str, body: &str) -> Value {
    let address = stack().harness.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&address).expect("reach the harness");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).expect("ask the harness");
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("the harness's answer");
    let (_, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(json).expect("JSON from the harness")
}

/// Successful record writes (PutItem, DeleteItem) on the tenant's record partitions so far.
fn record_writes(tenant: &str) -> (u64, u64) {
    let got = harness("GET", &format!("/writes?contains=R%23{tenant}%23"), "");
    (
        got["put_item"].as_u64().expect("puts"),
        got["delete_item"].as_u64().expect("deletes"),
    )
}

fn events(tenant: &str) -> Vec<Value> {
    harness("GET", &format!("/events?tenant={tenant}"), "")
        .as_array()
        .expect("events")
        .clone()
}

/// The tenant's batch events once `done` holds of them (events arrive through a queue, a moment after the
/// batch settles), or as they are after half a minute.
fn events_until(tenant: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = events(tenant);
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The tenant's batch events once the last one is of this kind.
fn events_ending(tenant: &str, kind: &str) -> Vec<Value> {
    events_until(tenant, |e| {
        e.last().is_some_and(|last| last["detail-type"] == kind)
    })
}

// --- Running the command ----------------------------------------------------------------------------------

fn rollcall(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .current_dir(dir)
        .env("ROLLCALL_DB", dir.join("local.db"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run rollcall")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `rollcall --aws ARGS` and expects exit status `code`; its standard output.
fn on_aws(dir: &Path, code: i32, args: &[&str]) -> String {
    let mut all = vec!["--aws"];
    all.extend_from_slice(args);
    let out = rollcall(dir, &all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "rollcall {all:?}\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `rollcall ARGS` on the local database in `dir` and expects exit status `code`.
fn locally(dir: &Path, code: i32, args: &[&str]) -> String {
    let out = rollcall(dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "rollcall {args:?}\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

// --- Bundles ----------------------------------------------------------------------------------------------

/// A generated district as a folder.
fn district(dir: &Path, name: &str, users: u32) -> PathBuf {
    let out = dir.join(name);
    locally(
        dir,
        0,
        &["gen", "--users", &users.to_string(), "--out", path(&out)],
    );
    out
}

fn copy_folder(from: &Path, to: &Path) -> PathBuf {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read folder") {
        let p = entry.expect("entry").path();
        fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
    to.to_path_buf()
}

/// Rewrites one CSV file of a folder line by line (the header is line 0).
fn rewrite(folder: &Path, file: &str, mut change: impl FnMut(usize, &str) -> Option<String>) {
    let p = folder.join(file);
    let before = fs::read_to_string(&p).expect("read csv");
    let after: String = before
        .lines()
        .enumerate()
        .filter_map(|(i, line)| change(i, line))
        .map(|l| l + "\n")
        .collect();
    fs::write(&p, after).expect("write csv");
}

/// The sourcedId (first column) of row `n` (from 1) of a file.
fn row_id(folder: &Path, file: &str, n: usize) -> String {
    let all = fs::read_to_string(folder.join(file)).expect("read csv");
    let line = all.lines().nth(n).expect("row");
    line.split(',')
        .next()
        .expect("id")
        .trim_matches('"')
        .to_string()
}

/// The value of one column in the `n`th data row (from 1) of a CSV file.
fn row_field(folder: &Path, file: &str, n: usize, column: &str) -> String {
    let mut reader = csv::Reader::from_path(folder.join(file)).expect("read csv");
    let at = reader
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == column)
        .expect("column");
    let row = reader.records().nth(n - 1).expect("row").expect("csv row");
    row[at].to_string()
}

/// A day of changes: a user renamed, the last enrollment gone.
fn day_of_changes(from: &Path, to: &Path) -> (String, usize) {
    copy_folder(from, to);
    let renamed = row_id(to, "users.csv", 1);
    let header = fs::read_to_string(to.join("users.csv")).expect("users");
    let given = header
        .lines()
        .next()
        .expect("header")
        .split(',')
        .position(|c| c == "givenName")
        .expect("givenName column");
    rewrite(to, "users.csv", |i, line| {
        if i != 1 {
            return Some(line.to_string());
        }
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        cells[given] = "Renamed".into();
        Some(cells.join(","))
    });
    let rows = fs::read_to_string(to.join("enrollments.csv"))
        .expect("enrollments")
        .lines()
        .count();
    rewrite(to, "enrollments.csv", |i, line| {
        (i != rows - 1).then(|| line.to_string())
    });
    (renamed, rows - 1)
}

/// Keeps one enrollment in ten: the broken export the guard holds.
fn break_enrollments(from: &Path, to: &Path, keep_one_in: usize) -> PathBuf {
    copy_folder(from, to);
    rewrite(to, "enrollments.csv", |i, line| {
        (i == 0 || i % keep_one_in == 0).then(|| line.to_string())
    });
    to.to_path_buf()
}

/// A folder zipped, as districts upload bundles.
fn zip(folder: &Path) -> PathBuf {
    let out = folder.with_extension("zip");
    let file = fs::File::create(&out).expect("create zip");
    let mut writer = zip::ZipWriter::new(file);
    let mut names: Vec<PathBuf> = fs::read_dir(folder)
        .expect("read folder")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for p in names {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        writer
            .write_all(&fs::read(&p).expect("read file"))
            .expect("zip write");
    }
    writer.finish().expect("finish zip");
    out
}

// --- What is stored ---------------------------------------------------------------------------------------

/// Every record of a tenant as `rollcall show --format json` prints it, by entity, with the times of manual
/// edits left out (they differ between two runs).
fn shown(dir: &Path, aws: bool, tenant: &str) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for entity in ENTITIES {
        let args = ["show", "--tenant", tenant, entity, "--format", "json"];
        let out = if aws {
            on_aws(dir, 0, &args)
        } else {
            locally(dir, 0, &args)
        };
        let mut value: Value = serde_json::from_str(&out).expect("show's JSON");
        strip_times(&mut value);
        all.insert(entity.to_string(), value);
    }
    all
}

/// One record as `rollcall --aws show --format json` prints it.
fn show_one(dir: &Path, tenant: &str, entity: &str, id: &str) -> Value {
    let out = on_aws(
        dir,
        0,
        &["show", "--tenant", tenant, entity, id, "--format", "json"],
    );
    let mut all: Vec<Value> = serde_json::from_str(&out).expect("show's JSON");
    assert_eq!(all.len(), 1, "{out}");
    all.remove(0)
}

fn strip_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| k != "at" && !k.ends_with("_at"));
            map.values_mut().for_each(strip_times);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// The raw record items of a tenant in the table: (pk, sourcedId) → version, read shard by shard as the layout
/// allows (keys and versions only).
fn record_items(tenant: &str) -> BTreeMap<(String, String), u64> {
    let s = stack();
    let mut found = BTreeMap::new();
    for name in ENTITIES {
        for shard in 0..items::SHARDS {
            let pk = items::record_pk(tenant, entity(name), shard);
            let mut start = None;
            loop {
                let out = s
                    .aws
                    .bridge
                    .run(
                        s.aws
                            .dynamo
                            .query()
                            .table_name(&s.aws.names.table)
                            .key_condition_expression("pk = :pk")
                            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                            .projection_expression("sk, v")
                            .consistent_read(true)
                            .set_exclusive_start_key(start)
                            .send(),
                    )
                    .expect("query");
                for item in out.items.unwrap_or_default() {
                    let sk = item
                        .get("sk")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default();
                    let version = item
                        .get("v")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse().ok())
                        .expect("a record item has a version");
                    found.insert((pk.clone(), sk), version);
                }
                start = out.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
    }
    found
}

/// Record items per entity.
fn items_per_entity(tenant: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (pk, _) in record_items(tenant).keys() {
        let entity = pk.split('#').nth(2).expect("entity").to_string();
        *counts.entry(entity).or_insert(0) += 1;
    }
    counts
}

fn entity(name: &str) -> Entity {
    Entity::parse(name).expect("an entity")
}

fn keys(prefix: &str) -> Vec<String> {
    stack()
        .blobs
        .list(prefix)
        .expect("list keys")
        .into_iter()
        .map(|b| b.key)
        .collect()
}

fn batches(tenant: &str) -> Vec<Batch> {
    stack().store.list_batches(tenant).expect("batches")
}

/// The tenant's lease is released. A held batch is marked held before its execution releases the lease (so no
/// other run plans while the hold is being recorded), and the command reports the hold as soon as it is marked:
/// the release follows within moments.
fn assert_lease_free(tenant: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack().store.get_lease(tenant).expect("lease").is_some() {
        assert!(
            Instant::now() < deadline,
            "tenant {tenant}'s lease is still held"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the tenant has `n` batches, all final (or held), and returns them.
fn settled_batches(tenant: &str, n: usize, within: Duration) -> Vec<Batch> {
    let started = Instant::now();
    loop {
        let all = batches(tenant);
        if all.len() >= n
            && all
                .iter()
                .all(|b| b.status.is_final() || b.status == BatchStatus::Held)
        {
            return all;
        }
        assert!(
            started.elapsed() < within,
            "tenant {tenant}: {n} settled batches expected within {within:?}, found {:?}",
            all.iter()
                .map(|b| (&b.id, b.status.as_str()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn upload(key: &str, file: &Path) {
    let mut f = fs::File::open(file).expect("open upload");
    stack().blobs.put_from(key, &mut f).expect("upload to S3");
}

fn count(summary: &str, entity: &str, column: usize) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(entity))
        .unwrap_or_else(|| panic!("no {entity} line in\n{summary}"));
    line.split_whitespace()
        .nth(column)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("column {column} of {line:?}"))
}

fn tenant_add(dir: &Path, id: &str, extra: &[&str]) {
    let mut args = vec!["tenant", "add", id];
    args.extend_from_slice(extra);
    on_aws(dir, 0, &args);
}

// --- The tests --------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn first_load_the_same_upload_again_then_a_day_of_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "alder";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 120);
    let day1_zip = zip(&day1);

    let out = on_aws(d, 0, &["sync", path(&day1_zip), "--tenant", t]);
    assert!(out.contains("applied"), "{out}");
    let local = tempfile::tempdir().expect("tempdir");
    locally(local.path(), 0, &["tenant", "add", t]);
    let local_out = locally(local.path(), 0, &["sync", path(&day1), "--tenant", t]);
    // What sync prints is the same both ways (batch ids are derived from the content).
    assert_eq!(out, local_out);

    let all = batches(t);
    assert_eq!(all.len(), 1);
    let first = &all[0];
    assert_eq!(first.status, BatchStatus::Applied);
    let records: u64 = first.counts.values().map(|c| c.create).sum();
    assert_eq!(first.writes, records);
    let items = record_items(t);
    assert_eq!(items.len() as u64, records);
    assert!(
        items.values().all(|v| *v == 1),
        "a first load writes each record once"
    );
    assert_eq!(record_writes(t), (records, 0));
    for (entity, n) in items_per_entity(t) {
        assert_eq!(
            first.counts[&self::entity(&entity)].create as usize,
            n,
            "{entity}"
        );
    }
    assert_lease_free(t);
    let reports = format!("reports/{t}/{}/", first.id);
    assert_eq!(
        keys(&reports),
        vec![
            format!("{reports}report.json"),
            format!("{reports}report.txt")
        ]
    );
    let report: Value = serde_json::from_slice(
        &stack()
            .blobs
            .get(&format!("{reports}report.json"))
            .expect("get")
            .expect("report"),
    )
    .expect("report JSON");
    assert_eq!(report["valid"], Value::Bool(true));
    assert!(!keys(&format!("staged/{t}/{}/", first.id)).is_empty());
    let seen = events_until(t, |e| !e.is_empty());
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["detail-type"], "Batch Applied");
    assert_eq!(seen[0]["detail"]["batch"], first.id.as_str());
    assert_eq!(seen[0]["detail"]["counts"]["users"]["create"], 120);

    // The same upload again: nothing new is written, no new batch.
    let again = on_aws(d, 0, &["sync", path(&day1_zip), "--tenant", t]);
    assert!(again.contains("already applied"), "{again}");
    assert_eq!(batches(t).len(), 1);
    assert_eq!(record_writes(t), (records, 0));
    assert_eq!(record_items(t), items);

    // A day of changes: one user renamed, one enrollment gone.
    let (renamed, _) = day_of_changes(&day1, &d.join("day2"));
    let day2_zip = zip(&d.join("day2"));
    let out = on_aws(d, 0, &["sync", path(&day2_zip), "--tenant", t]);
    assert_eq!(count(&out, "users", 2), 1, "{out}");
    assert_eq!(count(&out, "enrollments", 3), 1, "{out}");
    assert_eq!(count(&out, "users", 1), 0, "{out}");
    let all = batches(t);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].status, BatchStatus::Applied);
    assert_eq!(all[1].writes, 2);
    // The renamed user moved to version 2, the archived enrollment too; nothing else was written.
    let after = record_items(t);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| items.get(*k) != Some(*v))
        .map(|((_, id), v)| (id.clone(), *v))
        .collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed.contains(&(renamed.clone(), 2)), "{changed:?}");
    assert_eq!(record_writes(t), (records + 2, 0));
    let user = show_one(d, t, "users", &renamed);
    assert_eq!(user["fields"]["givenName"], "Renamed");
    assert_eq!(events_until(t, |e| e.len() >= 2).len(), 2);
    assert_lease_free(t);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn an_invalid_bundle_is_rejected_with_its_report_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "birch";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 40);
    on_aws(d, 0, &["sync", path(&zip(&day1)), "--tenant", t]);
    let before = record_items(t);
    let writes = record_writes(t);

    let bad = copy_folder(&day1, &d.join("bad"));
    let mut line_of_first_student = None;
    rewrite(&bad, "users.csv", |i, line| {
        Some(
            if line_of_first_student.is_none() && line.contains(",student,") {
                line_of_first_student = Some(i + 1);
                line.replacen(",student,", ",pupil,", 1)
            } else {
                line.to_string()
            },
        )
    });
    let line = line_of_first_student.expect("a student");
    let out = on_aws(d, 1, &["sync", path(&zip(&bad)), "--tenant", t]);
    assert!(
        out.contains("users.csv (bulk, 40 rows)")
            && out.contains(&format!(
                "line {line}, role: \"pupil\" is not one of the allowed values"
            )),
        "the report names the file and line:\n{out}"
    );
    assert!(out.contains("rejected"), "{out}");

    let all = batches(t);
    assert_eq!(all.len(), 2);
    let rejected = &all[1];
    assert_eq!(rejected.status, BatchStatus::Rejected);
    assert_eq!(rejected.errors, 1);
    let report: Value = serde_json::from_slice(
        &stack()
            .blobs
            .get(&format!("reports/{t}/{}/report.json", rejected.id))
            .expect("get")
            .expect("the report is in S3"),
    )
    .expect("report JSON");
    assert_eq!(report["valid"], Value::Bool(false));
    assert!(report.to_string().contains("pupil"), "{report}");
    assert!(keys(&format!("staged/{t}/{}/", rejected.id)).is_empty());
    assert_eq!(record_items(t), before);
    assert_eq!(record_writes(t), writes);
    let seen = events_ending(t, "Batch Rejected");
    assert_eq!(seen.last().expect("event")["detail-type"], "Batch Rejected");
    assert_lease_free(t);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn a_held_batch_approved_and_another_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "cedar";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 60);
    on_aws(d, 0, &["sync", path(&zip(&day1)), "--tenant", t]);
    let loaded = record_items(t);

    // Nine in ten enrollments missing: held, then rejected. Nothing changes.
    let broken = zip(&break_enrollments(&day1, &d.join("broken"), 10));
    let out = on_aws(d, 3, &["sync", path(&broken), "--tenant", t]);
    assert!(out.contains("held for approval"), "{out}");
    let held = batches(t).pop().expect("held batch");
    assert_eq!(held.status, BatchStatus::Held);
    assert!(
        held.held_reasons[0].starts_with("enrollments:"),
        "{:?}",
        held.held_reasons
    );
    assert_lease_free(t);
    assert_eq!(
        events_ending(t, "Batch Held").last().expect("event")["detail-type"],
        "Batch Held"
    );
    on_aws(d, 0, &["reject", &held.id]);
    assert_eq!(
        stack()
            .store
            .get_batch(&held.id)
            .expect("get")
            .expect("batch")
            .status,
        BatchStatus::Rejected
    );
    assert_eq!(record_items(t), loaded);

    // Four in five missing: held, then approved. The archives land.
    let broken = zip(&break_enrollments(&day1, &d.join("broken2"), 5));
    on_aws(d, 3, &["sync", path(&broken), "--tenant", t]);
    let held = batches(t).pop().expect("held batch");
    assert_eq!(held.status, BatchStatus::Held);
    let archives = held.counts[&entity("enrollments")].archive;
    assert!(archives > 0);
    let out = on_aws(d, 0, &["approve", &held.id]);
    assert!(out.contains("applied"), "{out}");
    let approved = stack()
        .store
        .get_batch(&held.id)
        .expect("get")
        .expect("batch");
    assert_eq!(approved.status, BatchStatus::Applied);
    assert_eq!(approved.writes, archives);
    let after = record_items(t);
    let bumped = after
        .iter()
        .filter(|(k, v)| loaded.get(*k) != Some(*v))
        .count() as u64;
    assert_eq!(bumped, archives);
    assert_lease_free(t);
    let kinds: Vec<String> = events_until(t, |e| e.len() >= 5)
        .iter()
        .map(|e| e["detail-type"].as_str().expect("type").to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "Batch Applied",
            "Batch Held",
            "Batch Rejected",
            "Batch Held",
            "Batch Applied"
        ]
    );
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn a_batch_whose_execution_has_not_started_yet_goes_first_once_its_redelivery_starts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "rowan";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 60);
    let (renamed, _) = day_of_changes(&day1, &d.join("day2"));
    let one = zip(&day1);
    let two = zip(&d.join("day2"));
    // The validate invocation of the first upload records its batch, then dies before its execution starts
    // (as a Lambda timing out between the two would).
    let job = format!(r#""tenant":"{t}""#);
    let fault = serde_json::json!({"contains": job, "operation": "start_execution", "fail": 1});
    harness("POST", "/faults", &fault.to_string());
    let key_one = format!("inbound/{t}/one.zip");
    upload(&key_one, &one);
    let waiting = settled_recorded(t, 1);
    assert_eq!(waiting.status, BatchStatus::Validated);

    // The second upload's execution starts, and waits for the first batch: it is neither taken for dead nor
    // overtaken.
    upload(&format!("inbound/{t}/two.zip"), &two);
    let second = settled_recorded(t, 2);
    std::thread::sleep(Duration::from_secs(5));
    let all = batches(t);
    assert_eq!(all.len(), 2, "{all:?}");
    for b in &all {
        assert_eq!(b.status, BatchStatus::Validated, "{b:?}");
        assert_eq!(b.failure, None, "{b:?}");
    }

    // Lambda invokes validate again with the same event: the first batch's pipeline starts now, it is
    // applied, and then the second after it.
    let answer = harness("POST", &format!("/redeliver?key={key_one}"), "");
    assert_eq!(answer["error"], Value::Null, "{answer}");
    assert_eq!(answer["result"]["outcome"], "started", "{answer}");
    assert_eq!(answer["result"]["batch"], waiting.id.as_str());
    let done = settled_batches(t, 2, Duration::from_secs(240));
    assert!(
        done.iter().all(|b| b.status == BatchStatus::Applied),
        "{done:?}"
    );
    assert_eq!(done[0].id, waiting.id);
    assert_eq!(done[0].planned_after, None);
    assert_eq!(done[1].id, second.id);
    assert_eq!(done[1].planned_after.as_deref(), Some(waiting.id.as_str()));
    // The roster is the newer upload's.
    let user = show_one(d, t, "users", &renamed);
    assert_eq!(user["fields"]["givenName"], "Renamed");
    assert_lease_free(t);
}

/// Waits until the tenant has `n` recorded batches and returns the last.
fn settled_recorded(tenant: &str, n: usize) -> Batch {
    let started = Instant::now();
    loop {
        let all = batches(tenant);
        if all.len() >= n {
            return all[n - 1].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{all:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn a_duplicate_s3_event_does_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "dogwood";
    tenant_add(d, t, &[]);
    let day1 = zip(&district(d, "day1", 30));
    let key = format!("inbound/{t}/day1.zip");
    upload(&key, &day1);
    let done = settled_batches(t, 1, Duration::from_secs(120));
    assert_eq!(done[0].status, BatchStatus::Applied);
    let items = record_items(t);
    let writes = record_writes(t);

    let answer = harness("POST", &format!("/redeliver?key={key}"), "");
    assert_eq!(answer["error"], Value::Null, "{answer}");
    assert_eq!(answer["result"]["outcome"], "duplicate", "{answer}");
    assert_eq!(answer["result"]["batch"], done[0].id.as_str());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(batches(t).len(), 1);
    assert_eq!(record_items(t), items);
    assert_eq!(record_writes(t), writes);
    assert_eq!(events_until(t, |e| !e.is_empty()).len(), 1);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn tenants_are_kept_apart_and_keys_outside_them_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    tenant_add(d, "elm", &[]);
    tenant_add(d, "fir", &[]);
    tenant_add(d, "fir-api", &["--source", "api"]);
    on_aws(
        d,
        0,
        &[
            "sync",
            path(&zip(&district(d, "elm", 30))),
            "--tenant",
            "elm",
        ],
    );
    let elm = record_items("elm");
    let elm_batches = batches("elm").len();

    on_aws(
        d,
        0,
        &[
            "sync",
            path(&zip(&district(d, "fir", 50))),
            "--tenant",
            "fir",
        ],
    );
    assert_eq!(record_items("elm"), elm);
    assert_eq!(batches("elm").len(), elm_batches);
    assert_eq!(items_per_entity("fir")["users"], 50);

    // No tenant "nobody": refused with a report, nothing stored for anyone.
    let stray = zip(&district(d, "stray", 20));
    upload("inbound/nobody/stray.zip", &stray);
    // A tenant whose roster comes from its API does not take SFTP uploads.
    upload("inbound/fir-api/stray.zip", &stray);
    let started = Instant::now();
    let refused = loop {
        let found = keys("reports/_refused/");
        if found.len() >= 2 || started.elapsed() > Duration::from_secs(60) {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let bodies: Vec<String> = refused
        .iter()
        .map(|k| {
            String::from_utf8_lossy(&stack().blobs.get(k).expect("get").expect("report"))
                .into_owned()
        })
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("inbound/nobody/stray.zip")
            && b.contains("there is no tenant \\\"nobody\\\"")),
        "{bodies:?}"
    );
    let api = batches("fir-api");
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("inbound/fir-api/stray.zip"))
            || api.iter().all(|b| b.status == BatchStatus::Rejected),
        "{bodies:?} {api:?}"
    );
    assert!(record_items("nobody").is_empty());
    assert!(record_items("fir-api").is_empty());
    assert_eq!(record_items("elm"), elm);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn manual_edits_are_kept_under_preserve_manual_and_overwritten_under_sis_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    tenant_add(d, "gum", &["--policy", "preserve-manual"]);
    tenant_add(d, "hazel", &["--policy", "sis-wins"]);
    let day1 = district(d, "day1", 30);
    let (renamed, _) = day_of_changes(&day1, &d.join("day2"));
    let day1_zip = zip(&day1);
    let day2_zip = zip(&d.join("day2"));
    for t in ["gum", "hazel"] {
        on_aws(d, 0, &["sync", path(&day1_zip), "--tenant", t]);
        on_aws(
            d,
            0,
            &[
                "edit",
                "--tenant",
                t,
                "users",
                &renamed,
                "--set",
                "givenName=ByHand",
                "--by",
                "support",
            ],
        );
        on_aws(d, 0, &["sync", path(&day2_zip), "--tenant", t]);
    }
    let kept = show_one(d, "gum", "users", &renamed);
    assert_eq!(kept["fields"]["givenName"], "ByHand");
    assert_eq!(kept["sis_fields"]["givenName"], "Renamed");
    assert_eq!(kept["provenance"]["givenName"]["source"], "manual");
    assert_eq!(kept["provenance"]["givenName"]["by"], "support");
    let overwritten = show_one(d, "hazel", "users", &renamed);
    assert_eq!(overwritten["fields"]["givenName"], "Renamed");
    assert_eq!(overwritten["provenance"]["givenName"]["source"], "sis");
    let gum = batches("gum");
    assert_eq!(gum[1].counts[&entity("users")].kept_manual, 1);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn a_rollback_restores_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "holly";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 40);
    on_aws(d, 0, &["sync", path(&zip(&day1)), "--tenant", t]);
    let loaded = shown(d, true, t);
    day_of_changes(&day1, &d.join("day2"));
    on_aws(d, 0, &["sync", path(&zip(&d.join("day2"))), "--tenant", t]);
    assert_ne!(shown(d, true, t), loaded);
    let applied = batches(t).pop().expect("batch");
    let out = on_aws(d, 0, &["rollback", &applied.id]);
    assert!(out.contains("rolled back"), "{out}");
    // The records are as they were; the versions count on (a rollback is a write too).
    let mut now = shown(d, true, t);
    let mut before = loaded.clone();
    for v in now.values_mut().chain(before.values_mut()) {
        for r in v.as_array_mut().expect("records") {
            r.as_object_mut().expect("record").remove("version");
        }
    }
    assert_eq!(now, before);
    assert_eq!(
        stack()
            .store
            .get_batch(&applied.id)
            .expect("get")
            .expect("batch")
            .status,
        BatchStatus::RolledBack
    );
    assert_lease_free(t);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn loose_files_are_a_bundle_once_complete_and_an_incomplete_upload_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "juniper";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 30);
    let mut files: Vec<PathBuf> = fs::read_dir(&day1)
        .expect("read")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        upload(&format!("inbound/{t}/monday/{name}"), f);
    }
    // One upload only, however many files: processed once, when the folder is complete and quiet.
    let done = settled_batches(t, 1, Duration::from_secs(120));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, BatchStatus::Applied);
    assert_eq!(items_per_entity(t)["users"], 30);

    // Tuesday's upload stops before users.csv: it gets a report naming what is missing, and nothing else.
    for f in files.iter().filter(|f| !f.ends_with("users.csv")) {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        upload(&format!("inbound/{t}/tuesday/{name}"), f);
    }
    let report_key = format!("reports/{t}/incomplete/tuesday.json");
    let started = Instant::now();
    let report = loop {
        if let Some(body) = stack().blobs.get(&report_key).expect("get") {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no report at {report_key}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let report: Value = serde_json::from_slice(&report).expect("json");
    assert_eq!(report["missing"], serde_json::json!(["users.csv"]));
    assert!(
        report["reason"]
            .as_str()
            .expect("reason")
            .contains(&format!("upload it to inbound/{t}/tuesday/")),
        "{report}"
    );
    assert_eq!(batches(t).len(), 1);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn an_sftp_upload_is_synced_and_the_user_is_confined_to_its_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "kapok";
    let key = d.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", path(&key)])
        .output()
        .expect("ssh-keygen");
    assert!(made.status.success(), "{}", text(&made));
    let out = on_aws(
        d,
        0,
        &[
            "tenant",
            "add",
            t,
            "--sftp-key",
            path(&key.with_extension("pub")),
        ],
    );
    assert!(
        out.contains(&format!("SFTP user rollcall-{t} created")),
        "{out}"
    );
    // Another tenant's upload, which this user must not see.
    tenant_add(d, "larch", &[]);
    let other = zip(&district(d, "other", 20));
    upload("inbound/larch/secret.zip", &other);

    let bundle = zip(&district(d, "day1", 30));
    fs::write(d.join("notes.txt"), "not a roster").expect("write");
    let script = format!(
        "put {} day1.zip\nls\n-get ../larch/secret.zip {}\n-put {} ../../reports/escape.txt\n-ls /reports\n",
        path(&bundle),
        path(&d.join("stolen.zip")),
        path(&d.join("notes.txt")),
    );
    fs::write(d.join("batch.sftp"), script).expect("write");
    let port = std::env::var("ROLLCALL_SFTP_PORT").expect("ROLLCALL_SFTP_PORT");
    let session = Command::new("sftp")
        .args([
            "-b",
            path(&d.join("batch.sftp")),
            "-P",
            &port,
            "-i",
            path(&key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &format!("UserKnownHostsFile={}", path(&d.join("known_hosts"))),
            "-o",
            "BatchMode=yes",
            &format!("rollcall-{t}@127.0.0.1"),
        ])
        .output()
        .expect("sftp");
    assert!(session.status.success(), "{}", text(&session));
    let listing = String::from_utf8_lossy(&session.stdout);
    assert!(listing.contains("day1.zip"), "{listing}");
    assert!(
        !d.join("stolen.zip").exists(),
        "the user read another tenant's upload"
    );

    let done = settled_batches(t, 1, Duration::from_secs(120));
    assert_eq!(done[0].status, BatchStatus::Applied);
    assert_eq!(items_per_entity(t)["users"], 30);
    // What the user wrote stayed in its home, whatever path it asked for.
    let mine = keys(&format!("inbound/{t}/"));
    assert!(mine.contains(&format!("inbound/{t}/day1.zip")), "{mine:?}");
    assert!(keys("reports/escape.txt").is_empty());
    assert!(keys("inbound/escape.txt").is_empty());
    assert!(keys("escape.txt").is_empty());
    assert_eq!(
        keys("inbound/larch/"),
        vec!["inbound/larch/secret.zip".to_string()]
    );

    // A key the stack does not know is refused.
    let stranger = d.join("stranger");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", path(&stranger)])
        .output()
        .expect("ssh-keygen");
    let refused = Command::new("sftp")
        .args([
            "-b",
            "/dev/null",
            "-P",
            &port,
            "-i",
            path(&stranger),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &format!("UserKnownHostsFile={}", path(&d.join("known_hosts"))),
            "-o",
            "BatchMode=yes",
            &format!("rollcall-{t}@127.0.0.1"),
        ])
        .output()
        .expect("sftp");
    assert!(!refused.status.success(), "{}", text(&refused));
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn a_chunk_failing_midway_is_retried_to_the_state_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "maple";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 150);
    // After 250 record writes, the next 3 fail: the chunk being applied stops midway and is retried.
    harness(
        "POST",
        "/faults",
        &format!(r#"{{"contains": "R#{t}#", "after": 250, "fail": 3}}"#),
    );
    let out = on_aws(d, 0, &["sync", path(&zip(&day1)), "--tenant", t]);
    let faults = harness("GET", "/faults", "");
    let ours = faults
        .as_array()
        .expect("faults")
        .iter()
        .find(|f| f["contains"] == format!("R#{t}#"))
        .expect("our fault")
        .clone();
    assert_eq!(ours["failed"], 3, "the fault was hit: {ours}");

    let batch = batches(t).pop().expect("batch");
    assert_eq!(batch.status, BatchStatus::Applied);
    let records: u64 = batch.counts.values().map(|c| c.create).sum();
    let items = record_items(t);
    assert_eq!(items.len() as u64, records);
    assert!(items.values().all(|v| *v == 1), "each record written once");
    assert_eq!(record_writes(t), (records, 0), "no record written twice");

    // The same bundle through the local pipeline, uninterrupted: the same records, field for field.
    locally(d, 0, &["tenant", "add", t]);
    let local_out = locally(d, 0, &["sync", path(&day1), "--tenant", t]);
    assert_eq!(out, local_out);
    assert_eq!(shown(d, true, t), shown(d, false, t));
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn a_failed_execution_marks_the_batch_failed_undoes_it_and_releases_the_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "oak";
    tenant_add(d, t, &[]);
    let day1 = zip(&district(d, "day1", 60));
    // Every write after the 100th fails: the retries run out, the execution fails.
    harness(
        "POST",
        "/faults",
        &format!(r#"{{"contains": "R#{t}#", "after": 100, "fail": 1000000}}"#),
    );
    let mut args = vec!["--aws", "sync", path(&day1), "--tenant", t];
    args.extend(["--wait", "300"]);
    let out = rollcall(d, &args);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed"), "{err}");
    assert!(err.contains("InjectedFault"), "the reason is kept: {err}");

    let batch = batches(t).pop().expect("batch");
    assert_eq!(batch.status, BatchStatus::Failed);
    assert!(
        batch
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("InjectedFault")),
        "{:?}",
        batch.failure
    );
    assert_lease_free(t);
    // What had landed was undone; the report stays.
    assert!(record_items(t).is_empty());
    assert_eq!(
        keys(&format!("reports/{t}/{}/", batch.id)).len(),
        2,
        "the report is kept"
    );
    assert_eq!(
        events_ending(t, "Batch Failed").last().expect("event")["detail-type"],
        "Batch Failed"
    );

    // Once the fault is gone, the same upload goes through.
    harness(
        "POST",
        "/faults",
        &format!(r#"{{"contains": "R#{t}#", "after": 0, "fail": 0}}"#),
    );
    let out = on_aws(d, 0, &["sync", path(&day1), "--tenant", t]);
    assert!(out.contains("applied"), "{out}");
    assert_eq!(items_per_entity(t)["users"], 60);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn two_uploads_at_once_are_applied_one_after_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "pine";
    tenant_add(d, t, &[]);
    let day1 = district(d, "day1", 60);
    day_of_changes(&day1, &d.join("day2"));
    let one = zip(&day1);
    let two = zip(&d.join("day2"));
    upload(&format!("inbound/{t}/one.zip"), &one);
    upload(&format!("inbound/{t}/two.zip"), &two);
    let done = settled_batches(t, 2, Duration::from_secs(240));
    assert!(
        done.iter().all(|b| b.status == BatchStatus::Applied),
        "{done:?}"
    );
    // They went in the order they were recorded (whichever upload's event came first): the second was
    // planned against what the first applied.
    let (first, second) = (&done[0], &done[1]);
    assert_eq!(first.planned_after, None, "{done:?}");
    assert_eq!(
        second.planned_after.as_deref(),
        Some(first.id.as_str()),
        "{done:?}"
    );
    assert_lease_free(t);

    // The stored roster is what the local pipeline makes of the two in the same order.
    let first_path = if first.source.contains("one") {
        &day1
    } else {
        &d.join("day2")
    };
    let second_path = if first.source.contains("one") {
        d.join("day2")
    } else {
        day1.clone()
    };
    locally(d, 0, &["tenant", "add", t]);
    locally(d, 0, &["sync", path(first_path), "--tenant", t]);
    locally(d, 0, &["sync", path(&second_path), "--tenant", t]);
    let mut aws = shown(d, true, t);
    let mut local = shown(d, false, t);
    // Batch labels differ only where the local run saw a different source name; compare the fields.
    for v in aws.values_mut().chain(local.values_mut()) {
        for r in v.as_array_mut().expect("records") {
            r.as_object_mut().expect("record").remove("version");
        }
    }
    assert_eq!(aws, local);
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn the_aws_and_local_pipelines_store_the_same_records_and_provenance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t = "quince";
    let day1 = district(d, "day1", 80);
    let (renamed, _) = day_of_changes(&day1, &d.join("day2"));
    let day3 = break_enrollments(&d.join("day2"), &d.join("day3"), 2);
    let class = row_id(&day1, "classes.csv", 1);
    tenant_add(d, t, &["--archive-threshold", "0.9"]);
    locally(d, 0, &["tenant", "add", t, "--archive-threshold", "0.9"]);
    let edits: [&[&str]; 2] = [
        &[
            "edit",
            "--tenant",
            t,
            "users",
            &renamed,
            "--set",
            "givenName=Support",
            "--by",
            "support",
        ],
        &[
            "edit",
            "--tenant",
            t,
            "classes",
            &class,
            "--set",
            "title=Renamed by hand",
            "--by",
            "support",
        ],
    ];
    for (step, bundle) in [&day1, &d.join("day2"), &day3].into_iter().enumerate() {
        let zipped = zip(bundle);
        let aws_out = on_aws(d, 0, &["sync", path(&zipped), "--tenant", t]);
        let local_out = locally(d, 0, &["sync", path(bundle), "--tenant", t]);
        assert_eq!(aws_out, local_out, "step {step}");
        if step == 0 {
            for edit in edits {
                on_aws(d, 0, edit);
                locally(d, 0, edit);
            }
        }
    }
    assert_eq!(shown(d, true, t), shown(d, false, t));
    // The lookups the product makes: by username, by class and by user, through DynamoDB's indexes.
    let user = row_field(&day1, "enrollments.csv", 1, "userSourcedId");
    let username = row_field(&day1, "users.csv", 3, "username");
    let lookups: [&[&str]; 3] = [
        &["find", "--tenant", t, "--class", &class, "--format", "json"],
        &[
            "find",
            "--tenant",
            t,
            "--enrolled",
            &user,
            "--format",
            "json",
        ],
        &[
            "find",
            "--tenant",
            t,
            "--username",
            &username,
            "--format",
            "json",
        ],
    ];
    for args in lookups {
        let parse = |out: String| -> Value {
            let mut v: Value = serde_json::from_str(&out).expect("find's JSON");
            strip_times(&mut v);
            v
        };
        let aws = parse(on_aws(d, 0, args));
        assert!(!aws.as_array().expect("records").is_empty(), "{args:?}");
        assert_eq!(aws, parse(locally(d, 0, args)), "{args:?}");
    }
    let history = |aws: bool| -> Value {
        let args = ["history", "--tenant", t, "--format", "json"];
        let out = if aws {
            on_aws(d, 0, &args)
        } else {
            locally(d, 0, &args)
        };
        let mut v: Value = serde_json::from_str(&out).expect("history json");
        strip_times(&mut v);
        // Where the bundle came from: a path locally, an object key on AWS.
        for b in v.as_array_mut().expect("batches") {
            let b = b.as_object_mut().expect("batch");
            b.remove("source");
            b.remove("bundle");
        }
        v
    };
    assert_eq!(history(true), history(false));
}

#[test]
#[ignore = "needs the stack on loopback: scripts/aws-local"]
fn an_api_tenant_is_pulled_by_the_pull_function_and_its_cursor_moves_when_the_batch_is_applied() {
    let dir = tempfile::tempdir().expect("temp");
    let dir = dir.path();
    let provider = Arc::new(Mutex::new(Provider::new(ProviderAuth::OAuth1)));
    provider
        .lock()
        .expect("provider")
        .failures
        .insert("users".into(), vec![429]);
    let origin = serve(Arc::clone(&provider));
    let api = format!("{origin}/ims/oneroster/v1p1");
    tenant_add(dir, "t-api", &["--source", "api"]);
    let mut outputs = Vec::new();
    let set = with_secret_on_stdin(
        Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args([
                "--aws",
                "source",
                "set",
                "--tenant",
                "t-api",
                "--api-url",
                &api,
                "--key",
                KEY,
                "--secret-stdin",
            ])
            .current_dir(dir),
    );
    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
    let secret_name = rollcall_aws::pull::secret_id(&stack().aws.names.table, "t-api");
    assert!(
        String::from_utf8_lossy(&set.stdout).contains(&format!("Secrets Manager as {secret_name}")),
        "{}",
        text(&set)
    );
    outputs.push(set);
    // The secret has the documented shape.
    let secret = rollcall_aws::pull::get_secret(&stack().aws, "t-api").expect("secret");
    assert_eq!(
        (
            secret.api_url.as_str(),
            secret.key.as_str(),
            secret.secret.as_str()
        ),
        (api.as_str(), KEY, SECRET)
    );
    assert_eq!(secret.auth, rollcall::pull::source::Auth::OAuth1Sha256);

    let check = on_aws(dir, 0, &["source", "check", "--tenant", "t-api"]);
    assert!(check.ends_with("a pull would work\n"), "{check}");

    // The pull function pulls (retrying the 429), writes the zip under inbound/t-api/api/, and the pipeline
    // applies it like an upload.
    let first: Value = serde_json::from_str(&on_aws(
        dir,
        0,
        &["pull", "--tenant", "t-api", "--format", "json"],
    ))
    .expect("json");
    assert_eq!(first["status"], "applied");
    assert_eq!(first["pull"]["mode"], "bulk");
    let key = first["pull"]["key"].as_str().expect("key");
    assert!(
        key.starts_with("inbound/t-api/api/") && key.ends_with(".zip"),
        "{key}"
    );
    assert!(
        stack().blobs.get(key).expect("read").is_some(),
        "the pulled bundle is kept"
    );
    assert_eq!(
        items_per_entity("t-api"),
        BTreeMap::from([
            ("academicSessions".to_string(), 3),
            ("classes".to_string(), 2),
            ("courses".to_string(), 2),
            ("demographics".to_string(), 2),
            ("enrollments".to_string(), 4),
            ("orgs".to_string(), 3),
            ("users".to_string(), 5),
        ])
    );
    let tenant = |id: &str| {
        rollcall::store::TenantStore::get_tenant(&stack().store, id)
            .expect("read")
            .expect("tenant")
    };
    let cursor = first["pull"]["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let after_first = tenant("t-api").api.expect("api");
    assert_eq!(
        after_first.cursor.as_deref(),
        Some(cursor.as_str()),
        "applied: the cursor moved"
    );
    assert_eq!(after_first.pending, None);

    // A day of changes, pulled as a delta from the cursor.
    {
        let mut p = provider.lock().expect("provider");
        let ana = p.record("users", "tch-1");
        ana["givenName"] = serde_json::json!("Anna");
        ana["dateLastModified"] = serde_json::json!("2099-01-01T00:00:00.000Z");
        p.seen.clear();
    }
    let second: Value = serde_json::from_str(&on_aws(
        dir,
        0,
        &["pull", "--tenant", "t-api", "--format", "json"],
    ))
    .expect("json");
    assert_eq!(second["status"], "applied");
    assert_eq!(second["pull"]["mode"], "delta");
    assert_eq!(second["pull"]["since"], cursor.as_str());
    let filter = format!("dateLastModified>'{cursor}'");
    assert!(
        provider
            .lock()
            .expect("provider")
            .seen
            .iter()
            .all(|(_, q)| q.iter().any(|(k, v)| k == "filter" && *v == filter)),
        "every request of the delta filters on the cursor"
    );
    assert_eq!(
        show_one(dir, "t-api", "users", "tch-1")["fields"]["givenName"],
        "Anna"
    );
    assert_eq!(
        tenant("t-api").api.expect("api").cursor.as_deref(),
        second["pull"]["cursor"].as_str()
    );

    // The schedule's invocation (an empty input) pulls every API tenant; its batch goes through like the others.
    let scheduled = stack()
        .aws
        .bridge
        .run(
            stack()
                .aws
                .lambda
                .invoke()
                .function_name(
                    stack()
                        .aws
                        .names
                        .pull_function
                        .clone()
                        .expect("pull function"),
                )
                .payload(rollcall_aws::aws_sdk_lambda::primitives::Blob::new("{}"))
                .send(),
        )
        .expect("invoke the pull function");
    assert_eq!(scheduled.function_error(), None);
    let answer: Value =
        serde_json::from_slice(scheduled.payload().expect("payload").as_ref()).expect("json");
    let ours = answer["pulled"]
        .as_array()
        .expect("pulled")
        .iter()
        .find(|p| p["tenant"] == "t-api")
        .cloned()
        .expect("t-api pulled on the schedule");
    assert_eq!(ours["mode"], "delta");
    let scheduled_key = ours["key"].as_str().expect("key").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = batches("t-api")
            .into_iter()
            .find(|b| b.source == scheduled_key && b.status.is_final());
        if let Some(b) = done {
            assert_eq!(b.status, BatchStatus::Applied);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled pull's batch did not finish"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        tenant("t-api").api.expect("api").cursor.as_deref(),
        ours["cursor"].as_str()
    );

    // A provider that refuses the key: the pull fails with what it said, nothing is written, the cursor stays.
    provider.lock().expect("provider").auth = ProviderAuth::OAuth2;
    let before = tenant("t-api").api.expect("api").cursor;
    let refused = rollcall(dir, &["--aws", "pull", "--tenant", "t-api"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("orgs: the server answered HTTP 401: Invalid signature"),
        "{}",
        text(&refused)
    );
    assert_eq!(tenant("t-api").api.expect("api").cursor, before);
    outputs.push(refused);
    outputs.push(rollcall(dir, &["--aws", "tenant", "list"]));
    outputs.push(rollcall(dir, &["--aws", "history", "--tenant", "t-api"]));
    for out in &outputs {
        assert!(
            !text(out).contains(SECRET),
            "the secret shows in: {}",
            text(out)
        );
    }
}
