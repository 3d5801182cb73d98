//! The seams one pipeline shares between the local command and AWS: plan steps run alone or chained, plan
//! chunks applied twice or after a failure, records that move between planning and applying, approvals after
//! the roster moved on, rollbacks over many chunks, leases whose holder died, and concurrent manual edits.
//! Every test states exact counts and exact stored state.

use rollcall::apply::rollback::{conflicts, roll_back};
use rollcall::apply::{apply_chunk, apply_plan, edit};
use rollcall::blob::BlobStore;
use rollcall::blob::local::LocalBlobs;
use rollcall::model::{BatchStatus, Counts, Entity, Filters, Policy, Record, Tenant, Threshold};
use rollcall::plan::chunk::{Compression, read_chunk};
use rollcall::plan::{Plan, PlanError, Staging, Step, StepInput, plan_all, run_step};
use rollcall::read::bundle::Bundle;
use rollcall::spec::{FileKind, Mode};
use rollcall::store::sqlite::SqliteStore;
use rollcall::store::{
    Atomic, BatchStore, ChunkResult, Lease, LeaseStore, RecordRead, RecordWrite, Snapshot,
    StoreError, StoreResult, TenantStore, UndoItem, UndoStore, Unit, Write, for_each_record,
};
use rollcall::sync::lease::{Holder, LocalLiveness, host_name};
use rollcall::sync::{Local, SyncError, SyncOptions, SyncOutcome, SyncStatus, batch_id};
use rollcall::{Limits, NoProgress};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/base")
}

/// A database, a blob folder, and bundles made from the base fixture.
struct World {
    dir: tempfile::TempDir,
    store: SqliteStore,
    blobs: LocalBlobs,
    bundles: usize,
}

impl World {
    fn new(tenant: Tenant) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("roster.db")).expect("store");
        store.put_tenant(&tenant).expect("tenant");
        let blobs = LocalBlobs::new(&dir.path().join("roster.blobs"));
        World {
            dir,
            store,
            blobs,
            bundles: 0,
        }
    }

    fn local<'a>(&'a self, store: &'a dyn rollcall::store::Store) -> Local<'a> {
        Local {
            store,
            blobs: &self.blobs,
            holder: Holder::this_process(),
            liveness: &LocalLiveness,
        }
    }

    /// A copy of the base bundle with text edits: (file, from, to).
    fn bundle(&mut self, edits: &[(&str, &str, &str)]) -> PathBuf {
        self.bundles += 1;
        let path = self.dir.path().join(format!("bundle-{}", self.bundles));
        make_bundle(&path, edits);
        path
    }

    fn sync(&self, bundle: &Path) -> SyncOutcome {
        self.local(&self.store)
            .sync_path("d1", bundle, &options(), &NoProgress)
            .expect("sync")
    }

    fn tenant(&self) -> Tenant {
        self.store.get_tenant("d1").expect("read").expect("tenant")
    }

    fn record(&self, entity: Entity, id: &str) -> Record {
        self.store
            .get_record("d1", entity, id)
            .expect("read")
            .expect("record exists")
    }
}

fn make_bundle(path: &Path, edits: &[(&str, &str, &str)]) {
    fs::create_dir_all(path).expect("mkdir");
    for entry in fs::read_dir(base()).expect("base") {
        let from = entry.expect("entry").path();
        fs::copy(&from, path.join(from.file_name().expect("name"))).expect("copy");
    }
    for (file, from, to) in edits {
        let p = path.join(file);
        let text = fs::read_to_string(&p).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        fs::write(&p, text.replacen(from, to, 1)).expect("write");
    }
}

/// Chunks of two changes: the base fixture's 21 records make a plan of a dozen chunks.
fn options() -> SyncOptions {
    SyncOptions {
        chunk_size: 2,
        ..SyncOptions::default()
    }
}

/// Every record of every entity, in order.
fn roster(store: &dyn RecordRead) -> Vec<Record> {
    let mut all = Vec::new();
    for entity in Entity::ALL {
        for_each_record(store, "d1", entity, None, None, |r| {
            all.push(r.clone());
            Ok::<_, StoreError>(())
        })
        .expect("list");
    }
    all
}

/// The second day's export: a student renamed, a student gone (a bulk file leaves them out, with their
/// demographics and enrollment, and their parent no longer names them), a new student.
const DAY_TWO: &[(&str, &str, &str)] = &[
    ("users.csv", "Dev,Patel", "Devin,Patel"),
    (
        "users.csv",
        "stu-1,,,true,sch-1,student,cara.kim,{SIS:1001},Cara,Kim,Jo,1001,,,,par-1,03,\n",
        "",
    ),
    (
        "users.csv",
        "par-1,,,true,sch-1,parent,eve.kim,,Eve,Kim,,,eve.kim@example.com,,555-0100,stu-1,,\n",
        "par-1,,,true,sch-1,parent,eve.kim,,Eve,Kim,,,eve.kim@example.com,,555-0100,,,\nstu-3,,,true,sch-1,student,fay.wu,,Fay,Wu,,1003,,,,,03,\n",
    ),
    (
        "demographics.csv",
        "stu-1,,,2018-04-02,female,false,true,false,false,false,false,false,US,CA,Fresno,01652\n",
        "",
    ),
    (
        "enrollments.csv",
        "enr-2,,,cls-1,sch-1,stu-1,student,false,,\n",
        "",
    ),
    ("results.csv", ",stu-1,fully graded", ",stu-2,fully graded"),
];

/// A tenant whose guard lets the small fixture's changes through.
fn tenant() -> Tenant {
    let mut t = Tenant::new("d1");
    t.threshold = Threshold {
        archive: 1.0,
        update: 1.0,
    };
    t
}

/// The validated modes and a plan input for a bundle.
fn modes(path: &Path) -> BTreeMap<FileKind, Option<Mode>> {
    let report = rollcall::validate_path(path, &Limits::default(), &NoProgress).expect("valid");
    assert!(report.valid, "{}", report.to_json());
    report
        .files
        .iter()
        .filter_map(|(name, s)| FileKind::from_file_name(name).map(|k| (k, s.mode)))
        .collect()
}

/// Chunk contents by the part of the key after the staging prefix.
fn chunk_contents(
    blobs: &LocalBlobs,
    plan: &Plan,
    prefix: &str,
) -> Vec<(String, Vec<rollcall::plan::chunk::Change>)> {
    plan.chunks
        .iter()
        .map(|c| {
            (
                c.key.trim_start_matches(prefix).to_string(),
                read_chunk(blobs, c).expect("chunk"),
            )
        })
        .collect()
}

fn same_plan_both_ways(tenant: Tenant) {
    let mut w = World::new(tenant);
    let first = w.bundle(&[]);
    w.sync(&first);
    let day2 = w.bundle(DAY_TWO);
    let tenant = w.tenant();
    let modes = modes(&day2);
    let input = StepInput {
        tenant: &tenant,
        batch: "b-test",
        modes: &modes,
        limits: &Limits::default(),
        chunk_size: 2,
        compression: Compression::Gzip,
    };
    // GIVEN one walk of the three steps in one process
    let chained = Staging {
        blobs: &w.blobs,
        prefix: "chained/",
    };
    let mut bundle = Bundle::open(&day2, &Limits::default()).expect("open");
    let one_walk = plan_all(&mut bundle, &input, &w.store, chained, &NoProgress).expect("plan");
    // WHEN each step runs alone, on a bundle opened afresh, with the scope handed on through the blob store
    let alone = Staging {
        blobs: &w.blobs,
        prefix: "alone/",
    };
    let steps: Vec<_> = Step::ALL
        .into_iter()
        .map(|step| {
            let mut bundle = Bundle::open(&day2, &Limits::default()).expect("open");
            run_step(step, &mut bundle, &input, &w.store, alone, &NoProgress).expect("step")
        })
        .collect();
    let step_by_step = Plan::assemble(&steps);
    // THEN the plans and every chunk agree
    assert_eq!(step_by_step.counts, one_walk.counts);
    assert_eq!(step_by_step.samples, one_walk.samples);
    assert_eq!(step_by_step.walked, one_walk.walked);
    assert_eq!(
        chunk_contents(&w.blobs, &step_by_step, "alone/"),
        chunk_contents(&w.blobs, &one_walk, "chained/")
    );
    assert!(!one_walk.chunks.is_empty());
}

#[test]
fn each_plan_step_run_alone_gives_the_same_plan_as_one_walk() {
    same_plan_both_ways(tenant());
}

#[test]
fn the_scope_handed_between_steps_gives_the_same_plan_as_one_walk() {
    let mut t = tenant();
    t.filters = Filters {
        schools: vec!["sch-1".into()],
        roles: vec![],
        grades: vec![],
    };
    same_plan_both_ways(t);
}

#[test]
fn the_plan_says_what_apply_needs_without_the_bundle() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let day2 = w.bundle(DAY_TWO);
    let tenant = w.tenant();
    let modes = modes(&day2);
    let input = StepInput {
        tenant: &tenant,
        batch: "b-test",
        modes: &modes,
        limits: &Limits::default(),
        chunk_size: 100,
        compression: Compression::None,
    };
    let staging = Staging {
        blobs: &w.blobs,
        prefix: "p/",
    };
    let mut bundle = Bundle::open(&day2, &Limits::default()).expect("open");
    let plan = plan_all(&mut bundle, &input, &w.store, staging, &NoProgress).expect("plan");
    let keys: Vec<&str> = plan.chunks.iter().map(|c| c.key.as_str()).collect();
    // Upserts parents first, then archives children first.
    assert_eq!(
        keys,
        [
            "p/chunks/users-upsert-00001.jsonl",
            "p/chunks/enrollments-archive-00001.jsonl",
            "p/chunks/demographics-archive-00001.jsonl",
            "p/chunks/users-archive-00001.jsonl",
        ]
    );
    let text = fs::read_to_string(w.blobs.path_of(keys[0]).expect("path")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let version = w.record(Entity::Users, "stu-2").version;
    assert_eq!(
        [lines[0], lines[2]],
        [
            format!(
                r#"{{"entity":"users","sourcedId":"stu-2","action":"update","version":{version},"sis":{{"enabledUser":"true","familyName":"Patel","givenName":"Devin","grades":"09","identifier":"1002","orgSourcedIds":"sch-2","role":"student","userIds":"{{SIS:1002}}","username":"dev.patel"}}}}"#
            ),
            r#"{"entity":"users","sourcedId":"stu-3","action":"create","sis":{"enabledUser":"true","familyName":"Wu","givenName":"Fay","grades":"03","identifier":"1003","orgSourcedIds":"sch-1","role":"student","username":"fay.wu"}}"#.to_string(),
        ]
        .map(|l| l.to_string())
    );
    let archived = fs::read_to_string(w.blobs.path_of(keys[3]).expect("path")).expect("read");
    assert_eq!(
        archived.trim(),
        format!(
            r#"{{"entity":"users","sourcedId":"stu-1","action":"archive","why":"omitted","version":{}}}"#,
            w.record(Entity::Users, "stu-1").version
        )
    );
    assert_eq!(plan.counts[&Entity::Users], counts(1, 2, 1, 0, 2, 0, 0));
    assert_eq!(
        plan.counts[&Entity::Demographics],
        counts(0, 0, 1, 0, 1, 0, 0)
    );
    assert_eq!(
        plan.counts[&Entity::Enrollments],
        counts(0, 0, 1, 0, 3, 0, 0)
    );
}

/// Stages the day-two plan against `w`'s roster (after a first sync) and returns it.
fn staged_day_two(w: &mut World, prefix: &str) -> Plan {
    let day2 = w.bundle(DAY_TWO);
    let tenant = w.tenant();
    let modes = modes(&day2);
    let input = StepInput {
        tenant: &tenant,
        batch: "b-day2",
        modes: &modes,
        limits: &Limits::default(),
        chunk_size: 2,
        compression: Compression::Gzip,
    };
    let staging = Staging {
        blobs: &w.blobs,
        prefix,
    };
    let mut bundle = Bundle::open(&day2, &Limits::default()).expect("open");
    plan_all(&mut bundle, &input, &w.store, staging, &NoProgress).expect("plan")
}

#[test]
fn every_chunk_applied_twice_writes_each_record_once() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let plan = staged_day_two(&mut w, "s/");
    let tenant = w.tenant();
    let before = w.store.records_written();
    let applied = apply_plan(
        &w.store,
        &w.blobs,
        &tenant,
        "b-day2",
        &plan,
        &mut |_| Ok(()),
    )
    .expect("apply");
    let changed = plan
        .chunks
        .iter()
        .map(|c| u64::from(c.changes))
        .sum::<u64>();
    assert_eq!(applied.writes, changed);
    assert_eq!(w.store.records_written() - before, changed);
    let state = roster(&w.store);
    // Every chunk again, as a retried Lambda invocation would: nothing is written, and each lands as before.
    for chunk in &plan.chunks {
        let changes = read_chunk(&w.blobs, chunk).expect("chunk");
        let again = apply_chunk(&w.store, &tenant, "b-day2", chunk, &changes).expect("again");
        let first_time = w
            .store
            .chunk_results("d1", "b-day2")
            .expect("results")
            .remove(&chunk.number)
            .expect("recorded");
        assert_eq!(again.landed, first_time.landed, "chunk {}", chunk.number);
        assert_eq!(again.moved, 0);
    }
    assert_eq!(
        w.store.records_written() - before,
        changed,
        "each record once"
    );
    assert_eq!(roster(&w.store), state);
    assert_eq!(applied.counts[&Entity::Users], counts(1, 2, 1, 0, 2, 0, 0));
}

#[allow(clippy::too_many_arguments)]
fn counts(
    create: u64,
    update: u64,
    archive: u64,
    restore: u64,
    unchanged: u64,
    kept_manual: u64,
    out_of_scope: u64,
) -> Counts {
    Counts {
        create,
        update,
        archive,
        restore,
        unchanged,
        kept_manual,
        out_of_scope,
    }
}

/// A store that fails its record writes after a number of successful ones: a crash midway, injected.
struct Failing<'a> {
    inner: &'a SqliteStore,
    writes_left: Cell<usize>,
}

impl Failing<'_> {
    fn check(&self) -> StoreResult<()> {
        match self.writes_left.get() {
            0 => Err(StoreError::Backend {
                doing: "writing records".into(),
                reason: "injected failure".into(),
            }),
            n => {
                self.writes_left.set(n - 1);
                Ok(())
            }
        }
    }
}

impl TenantStore for Failing<'_> {
    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.inner.get_tenant(id)
    }
    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.inner.put_tenant(tenant)
    }
    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.inner.list_tenants()
    }
}

impl BatchStore for Failing<'_> {
    fn get_batch(&self, id: &str) -> StoreResult<Option<rollcall::model::Batch>> {
        self.inner.get_batch(id)
    }
    fn put_batch(&self, batch: &rollcall::model::Batch) -> StoreResult<()> {
        self.inner.put_batch(batch)
    }
    fn list_batches(&self, tenant: &str) -> StoreResult<Vec<rollcall::model::Batch>> {
        self.inner.list_batches(tenant)
    }
    fn put_chunk_result(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        result: &ChunkResult,
    ) -> StoreResult<()> {
        self.inner.put_chunk_result(tenant, batch, chunk, result)
    }
    fn chunk_results(&self, tenant: &str, batch: &str) -> StoreResult<BTreeMap<u32, ChunkResult>> {
        self.inner.chunk_results(tenant, batch)
    }
}

impl RecordRead for Failing<'_> {
    fn get_records(
        &self,
        tenant: &str,
        entity: Entity,
        ids: &[&str],
    ) -> StoreResult<Vec<Option<Record>>> {
        self.inner.get_records(tenant, entity, ids)
    }
    fn count_records(&self, tenant: &str, entity: Entity) -> StoreResult<u64> {
        self.inner.count_records(tenant, entity)
    }
    fn snapshot(
        &self,
        tenant: &str,
        entity: Entity,
        each: &mut dyn FnMut(Snapshot),
    ) -> StoreResult<()> {
        self.inner.snapshot(tenant, entity, each)
    }
    fn list_records(
        &self,
        tenant: &str,
        entity: Entity,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Record>> {
        self.inner.list_records(tenant, entity, after, limit)
    }
    fn find_by_username(&self, tenant: &str, username: &str) -> StoreResult<Vec<Record>> {
        self.inner.find_by_username(tenant, username)
    }
    fn find_by_user_id(&self, tenant: &str, kind: &str, id: &str) -> StoreResult<Vec<Record>> {
        self.inner.find_by_user_id(tenant, kind, id)
    }
    fn find_enrollments(
        &self,
        tenant: &str,
        of: rollcall::store::EnrollmentsOf<'_>,
    ) -> StoreResult<Vec<Record>> {
        self.inner.find_enrollments(tenant, of)
    }
}

impl RecordWrite for Failing<'_> {
    fn write_records(&self, tenant: &str, writes: &[Write]) -> StoreResult<Vec<bool>> {
        self.check()?;
        self.inner.write_records(tenant, writes)
    }
}

impl UndoStore for Failing<'_> {
    fn put_undo(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
        items: &[&UndoItem],
    ) -> StoreResult<()> {
        self.inner.put_undo(tenant, batch, chunk, items)
    }
    fn undo_page(
        &self,
        tenant: &str,
        batch: &str,
        chunk: u32,
    ) -> StoreResult<Option<Vec<UndoItem>>> {
        self.inner.undo_page(tenant, batch, chunk)
    }
    fn undo_chunks(&self, tenant: &str, batch: &str) -> StoreResult<Vec<u32>> {
        self.inner.undo_chunks(tenant, batch)
    }
    fn delete_undo(&self, tenant: &str, batch: &str) -> StoreResult<()> {
        self.inner.delete_undo(tenant, batch)
    }
}

impl LeaseStore for Failing<'_> {
    fn get_lease(&self, tenant: &str) -> StoreResult<Option<Lease>> {
        self.inner.get_lease(tenant)
    }
    fn try_lease(
        &self,
        tenant: &str,
        lease: &Lease,
        replacing: Option<&Lease>,
    ) -> StoreResult<bool> {
        self.inner.try_lease(tenant, lease, replacing)
    }
    fn renew_lease(
        &self,
        tenant: &str,
        holder: &str,
        expires_at: u64,
        batch: Option<&str>,
    ) -> StoreResult<bool> {
        self.inner.renew_lease(tenant, holder, expires_at, batch)
    }
    fn release_lease(&self, tenant: &str, holder: &str) -> StoreResult<()> {
        self.inner.release_lease(tenant, holder)
    }
}

impl Atomic for Failing<'_> {
    fn unit(&self) -> StoreResult<Box<dyn Unit + '_>> {
        self.inner.unit()
    }
}

/// The roster after a first sync and the day-two plan applied without interruption.
fn uninterrupted() -> (Vec<Record>, BTreeMap<Entity, Counts>) {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let plan = staged_day_two(&mut w, "s/");
    let applied = apply_plan(
        &w.store,
        &w.blobs,
        &w.tenant(),
        "b-day2",
        &plan,
        &mut |_| Ok(()),
    )
    .expect("apply");
    (roster(&w.store), applied.counts)
}

#[test]
fn a_failure_after_half_the_chunks_then_a_resumed_run_gives_the_uninterrupted_state() {
    let (expected, expected_counts) = uninterrupted();
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let plan = staged_day_two(&mut w, "s/");
    let tenant = w.tenant();
    let half = plan.chunks.len() / 2;
    assert!(half >= 1, "the plan has {} chunks", plan.chunks.len());
    // GIVEN chunks that commit one by one (as on DynamoDB), and a failure after half of them
    let failing = Failing {
        inner: &w.store,
        writes_left: Cell::new(half),
    };
    let err = apply_plan(
        &failing,
        &w.blobs,
        &tenant,
        "b-day2",
        &plan,
        &mut |_| Ok(()),
    )
    .expect_err("injected");
    assert!(matches!(err, PlanError::Store(_)), "{err}");
    assert_eq!(
        w.store
            .chunk_results("d1", "b-day2")
            .expect("results")
            .len(),
        half
    );
    // WHEN a later run resumes
    let before = w.store.records_written();
    let resumed = apply_plan(
        &w.store,
        &w.blobs,
        &tenant,
        "b-day2",
        &plan,
        &mut |_| Ok(()),
    )
    .expect("resume");
    // THEN the roster and the counts are exactly those of an uninterrupted run
    assert_eq!(resumed.chunks_applied, plan.chunks.len() - half);
    assert_eq!(roster(&w.store), expected);
    assert_eq!(resumed.counts, expected_counts);
    let remaining: u64 = plan.chunks[half..]
        .iter()
        .map(|c| u64::from(c.changes))
        .sum();
    assert_eq!(
        w.store.records_written() - before,
        remaining,
        "no record written twice"
    );
}

#[test]
fn a_failure_midway_through_a_chunk_is_resumed_without_writing_a_record_twice() {
    let (expected, expected_counts) = uninterrupted();
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let plan = staged_day_two(&mut w, "s/");
    let tenant = w.tenant();
    // A chunk whose records were written but whose result was never recorded (the process died between).
    let chunk = &plan.chunks[0];
    let changes = read_chunk(&w.blobs, chunk).expect("chunk");
    apply_chunk(&w.store, &tenant, "b-day2", chunk, &changes).expect("apply");
    assert!(
        rusqlite_forget(&w, chunk.number),
        "the chunk's result is forgotten"
    );
    let before = w.store.records_written();
    let resumed = apply_plan(
        &w.store,
        &w.blobs,
        &tenant,
        "b-day2",
        &plan,
        &mut |_| Ok(()),
    )
    .expect("resume");
    let rest: u64 = plan.chunks[1..].iter().map(|c| u64::from(c.changes)).sum();
    assert_eq!(w.store.records_written() - before, rest);
    assert_eq!(
        resumed.counts, expected_counts,
        "the first chunk counts as it landed"
    );
    assert_eq!(resumed.writes, rest + u64::from(chunk.changes));
    assert_eq!(roster(&w.store), expected);
}

/// Removes one chunk's recorded result straight from the database file, as if the run died before it.
fn rusqlite_forget(w: &World, chunk: u32) -> bool {
    let conn = rusqlite_open(&w.dir.path().join("roster.db"));
    conn.execute(
        "DELETE FROM chunk_results WHERE tenant = 'd1' AND batch = 'b-day2' AND chunk = ?1",
        [chunk],
    )
    .expect("delete")
        == 1
}

fn rusqlite_open(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open")
}

#[test]
fn a_sync_that_died_while_applying_is_resumed_by_the_next_sync() {
    // The uninterrupted history: day one, day two, then day three.
    let mut straight = World::new(tenant());
    let days: Vec<PathBuf> = [
        &[][..],
        DAY_TWO,
        &[("users.csv", "Ben,Okafor", "Benjamin,Okafor")],
    ]
    .iter()
    .map(|edits| straight.bundle(edits))
    .collect();
    for day in &days {
        assert_eq!(straight.sync(day).status, SyncStatus::Applied);
    }
    let mut w = World::new(tenant());
    let ours: Vec<PathBuf> = [
        &[][..],
        DAY_TWO,
        &[("users.csv", "Ben,Okafor", "Benjamin,Okafor")],
    ]
    .iter()
    .map(|edits| w.bundle(edits))
    .collect();
    w.sync(&ours[0]);
    // GIVEN day two's sync dies after two chunks
    let failing = Failing {
        inner: &w.store,
        writes_left: Cell::new(2),
    };
    let err = w
        .local(&failing)
        .sync_path("d1", &ours[1], &options(), &NoProgress)
        .expect_err("injected");
    assert!(matches!(err, SyncError::Plan(_)), "{err}");
    let batches = w.store.list_batches("d1").expect("history");
    assert_eq!(
        batches.last().map(|b| b.status),
        Some(BatchStatus::Applying)
    );
    let day2_batch = batches.last().map(|b| b.id.clone()).unwrap_or_default();
    // Locally a batch's chunks commit together: nothing of it is visible yet.
    assert_eq!(w.record(Entity::Users, "stu-2").fields["givenName"], "Dev");
    // WHEN the next sync comes
    let out = w.sync(&ours[2]);
    // THEN it first finishes day two, then applies day three: the roster is as if nothing had died
    assert_eq!(out.status, SyncStatus::Applied);
    assert_eq!(
        out.notes,
        [format!(
            "resumed batch {day2_batch}, which a run that stopped had begun to apply: now applied (6 records written by this run)"
        )]
    );
    assert_eq!(roster(&w.store), roster(&straight.store));
    let statuses: Vec<BatchStatus> = w
        .store
        .list_batches("d1")
        .expect("history")
        .iter()
        .map(|b| b.status)
        .collect();
    assert_eq!(statuses, [BatchStatus::Applied; 3]);
    assert_eq!(
        w.store.list_batches("d1").expect("history")[1].counts,
        straight.store.list_batches("d1").expect("history")[1].counts
    );
}

fn edit_between_plan_and_apply(policy: Policy) -> (Record, rollcall::apply::Applied) {
    let mut t = tenant();
    t.policy = policy;
    let mut w = World::new(t);
    let first = w.bundle(&[]);
    w.sync(&first);
    let plan = staged_day_two(&mut w, "s/");
    // Support renames the student by hand after the plan was made, before it is applied.
    edit::edit(
        &w.store,
        "d1",
        Entity::Users,
        "stu-2",
        &[
            ("givenName".into(), "Deven".into()),
            ("middleName".into(), "R".into()),
        ],
        "alice",
    )
    .expect("edit");
    let applied = apply_plan(
        &w.store,
        &w.blobs,
        &w.tenant(),
        "b-day2",
        &plan,
        &mut |_| Ok(()),
    )
    .expect("apply");
    (w.record(Entity::Users, "stu-2"), applied)
}

#[test]
fn a_manual_edit_between_plan_and_apply_is_kept_under_preserve_manual() {
    let (stu2, applied) = edit_between_plan_and_apply(Policy::PreserveManual);
    assert_eq!(applied.moved, 1);
    assert_eq!(stu2.fields["givenName"], "Deven", "the edit stands");
    assert_eq!(stu2.fields["middleName"], "R");
    assert_eq!(
        stu2.sis_fields["givenName"], "Devin",
        "the SIS value beside it"
    );
    // Planned as an update, it landed as kept manual work (with the SIS values recorded).
    assert_eq!(applied.counts[&Entity::Users], counts(1, 1, 1, 0, 2, 1, 0));
    assert_eq!(stu2.batch.as_deref(), Some("b-day2"));
}

#[test]
fn a_manual_edit_between_plan_and_apply_is_overwritten_under_sis_wins() {
    let (stu2, applied) = edit_between_plan_and_apply(Policy::SisWins);
    assert_eq!(applied.moved, 1);
    assert_eq!(
        stu2.fields["givenName"], "Devin",
        "the SIS wins what it sends"
    );
    assert!(
        !stu2.fields.contains_key("middleName"),
        "a field the SIS sends blank is the SIS's too"
    );
    assert_eq!(applied.counts[&Entity::Users], counts(1, 2, 1, 0, 2, 0, 0));
}

/// A broken export: three of four enrollments missing.
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "enrollments.csv",
        "enr-2,,,cls-1,sch-1,stu-1,student,false,,\n",
        "",
    ),
    (
        "enrollments.csv",
        "enr-3,,,cls-2,sch-2,tch-2,teacher,true,,\n",
        "",
    ),
    (
        "enrollments.csv",
        "enr-4,,,cls-2,sch-2,stu-2,student,false,,\n",
        "",
    ),
];

#[test]
fn a_held_batch_approved_after_a_newer_sync_is_refused_and_reverts_nothing() {
    let mut w = World::new(Tenant::new("d1"));
    let first = w.bundle(&[]);
    w.sync(&first);
    let broken = w.bundle(BROKEN);
    let held = w.sync(&broken);
    assert_eq!(held.status, SyncStatus::Held);
    let newer = w.bundle(&[("users.csv", "Dev,Patel", "Devin,Patel")]);
    let applied = w.sync(&newer);
    assert_eq!(applied.status, SyncStatus::Applied);
    let state = roster(&w.store);
    let err = w
        .local(&w.store)
        .approve(&held.batch, &options())
        .expect_err("superseded");
    assert_eq!(
        err.to_string(),
        format!(
            "batch {} was superseded: batch {} was applied after it was held; its plan no longer fits the roster, so it cannot be approved (send its bundle again to plan it afresh)",
            held.batch, applied.batch
        )
    );
    assert_eq!(roster(&w.store), state, "nothing reverted");
    assert_eq!(
        w.record(Entity::Users, "stu-2").fields["givenName"],
        "Devin"
    );
    let batch = w
        .store
        .get_batch(&held.batch)
        .expect("read")
        .expect("batch");
    assert_eq!(batch.status, BatchStatus::Superseded);
    assert!(
        w.blobs
            .list(&format!("staged/d1/{}/", held.batch))
            .expect("list")
            .is_empty(),
        "its staged plan is gone"
    );
    assert!(
        w.blobs
            .list(&format!("bundles/d1/{}/", held.batch))
            .expect("list")
            .is_empty(),
        "its kept bundle is gone"
    );
    // The newer bundle is not taken for applied twice, and the older one can be planned afresh.
    assert_eq!(w.sync(&newer).status, SyncStatus::AlreadyApplied);
    let again = w.sync(&broken);
    assert_eq!(again.status, SyncStatus::Held);
    assert_ne!(again.batch, held.batch);
}

#[test]
fn approval_applies_the_plan_that_was_held_even_when_the_bundle_is_gone() {
    let mut w = World::new(Tenant::new("d1"));
    let first = w.bundle(&[]);
    w.sync(&first);
    let broken = w.bundle(BROKEN);
    let held = w.sync(&broken);
    assert_eq!(held.status, SyncStatus::Held);
    let kept: Vec<String> = w
        .blobs
        .list(&format!("bundles/d1/{}/", held.batch))
        .expect("list")
        .into_iter()
        .map(|b| b.key.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    let mut expected: Vec<String> = fs::read_dir(base())
        .expect("base")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(kept, expected, "the kept copy holds the OneRoster files");
    fs::remove_dir_all(&broken).expect("the upload is cleaned up");
    let out = w
        .local(&w.store)
        .approve(&held.batch, &options())
        .expect("approve");
    assert_eq!(out.status, SyncStatus::Applied);
    assert_eq!(
        out.counts[&Entity::Enrollments],
        counts(0, 0, 3, 0, 1, 0, 0)
    );
    for prefix in ["staged/", "bundles/"] {
        assert!(
            w.blobs.list(prefix).expect("list").is_empty(),
            "the staged plan and the kept bundle are removed once applied"
        );
    }
}

#[test]
fn rollback_of_a_batch_applied_in_many_chunks_restores_every_record() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let before = roster(&w.store);
    let day2 = w.bundle(DAY_TWO);
    let out = w.sync(&day2);
    let undo_pages = w.store.undo_chunks("d1", &out.batch).expect("pages");
    assert_eq!(undo_pages, [1, 2, 3, 4, 5], "one page per chunk");
    assert_eq!(
        conflicts(&w.store, "d1", &out.batch).expect("check").count,
        0
    );
    let batch = w
        .local(&w.store)
        .rollback(&out.batch, false, &options())
        .expect("rollback");
    assert_eq!(batch.status, BatchStatus::RolledBack);
    let unversioned = |records: Vec<Record>| -> Vec<Record> {
        records
            .into_iter()
            .map(|mut r| {
                r.version = 0;
                r
            })
            .collect()
    };
    assert_eq!(unversioned(roster(&w.store)), unversioned(before));
    assert!(
        w.store
            .undo_chunks("d1", &out.batch)
            .expect("pages")
            .is_empty()
    );
    // Rolling back page by page again finds everything restored already and writes nothing.
    let written = w.store.records_written();
    assert_eq!(
        roll_back(&w.store, "d1", &out.batch, false).expect("again"),
        0
    );
    assert_eq!(w.store.records_written(), written);
}

#[test]
fn a_plan_written_out_is_applied_by_a_run_that_does_not_plan() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let day2 = w.bundle(DAY_TWO);
    let out_dir = w.dir.path().join("plan-out");
    let opts = SyncOptions {
        dry_run: true,
        plan_out: Some(out_dir.clone()),
        ..options()
    };
    let planned = w
        .local(&w.store)
        .sync_path("d1", &day2, &opts, &NoProgress)
        .expect("dry run");
    assert_eq!(planned.status, SyncStatus::Planned);
    let written = w.store.records_written();
    // A person can read it: plan.json and plain JSON Lines.
    let plan_json: serde_json::Value =
        serde_json::from_slice(&fs::read(out_dir.join("plan.json")).expect("plan.json"))
            .expect("json");
    assert_eq!(plan_json["batch"], planned.batch.as_str());
    assert_eq!(plan_json["entities"]["users"]["counts"]["update"], 2);
    let first_chunk = plan_json["chunks"][0]["key"].as_str().expect("key");
    assert!(first_chunk.ends_with(".jsonl"), "{first_chunk}");
    assert!(out_dir.join(first_chunk).is_file());
    // Another run reads it back and applies it, with no bundle and no planner.
    let file: rollcall::plan::PlanFile = serde_json::from_value(plan_json).expect("a plan file");
    let plan = Plan::from_file(&file);
    let plan_blobs = LocalBlobs::new(&out_dir);
    let applied = apply_plan(
        &w.store,
        &plan_blobs,
        &w.tenant(),
        &file.batch,
        &plan,
        &mut |_| Ok(()),
    )
    .expect("apply");
    assert_eq!(applied.counts, planned.counts);
    assert_eq!(w.store.records_written() - written, applied.writes);
    assert_eq!(
        w.record(Entity::Users, "stu-2").fields["givenName"],
        "Devin"
    );
    assert!(!w.record(Entity::Users, "stu-1").active);
    assert_eq!(w.record(Entity::Users, "stu-3").fields["givenName"], "Fay");
}

#[test]
fn a_dead_runs_lease_is_taken_over_and_its_batch_marked_failed() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    // GIVEN a run that recorded its batch, then died holding the lease
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("wait");
    let day2 = w.bundle(DAY_TWO);
    let mut bundle = Bundle::open(&day2, &Limits::default()).expect("open");
    rollcall::validate_bundle(&mut bundle, &Limits::default(), &NoProgress).expect("validate");
    let id = batch_id("d1", bundle.digest().expect("digest"));
    let mut orphan = w.store.list_batches("d1").expect("history")[0].clone();
    orphan.id = id.clone();
    orphan.content = id.clone();
    orphan.status = BatchStatus::Validated;
    w.store.put_batch(&orphan).expect("batch");
    let lease = Lease {
        holder: format!("local:{}:{dead}:1:0", host_name()),
        purpose: "sync of day2".into(),
        batch: Some(id.clone()),
        acquired_at: 1_000,
        expires_at: u64::MAX / 2,
    };
    assert!(w.store.try_lease("d1", &lease, None).expect("lease"));
    // WHEN the next sync comes, it takes over at once and says so
    let out = w.sync(&day2);
    assert_eq!(out.status, SyncStatus::Applied);
    assert_eq!(
        out.notes,
        [
            format!(
                "took over tenant d1's lease from pid {dead} on {} (sync of day2, since 1970-01-01T00:16:40Z): process {dead} on {} is no longer running",
                host_name(),
                host_name()
            ),
            format!(
                "batch {id} was left validated by a run that stopped; it is marked failed (nothing of it was applied)"
            ),
        ]
    );
    let history = w.store.list_batches("d1").expect("history");
    let failed = history
        .iter()
        .find(|b| b.id == id)
        .expect("the dead run's batch");
    assert_eq!(failed.status, BatchStatus::Failed);
    assert_eq!(
        failed.failure.as_deref(),
        Some("the run that handled it stopped before it finished; nothing of it was applied")
    );
    assert_eq!(
        history.last().map(|b| b.id.clone()),
        Some(format!("{id}-2"))
    );
    assert_eq!(w.store.get_lease("d1").expect("lease"), None);
}

#[test]
fn twenty_concurrent_edits_of_one_record_are_all_kept() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let db = w.dir.path().join("roster.db");
    std::thread::scope(|s| {
        for n in 0..20 {
            let db = db.clone();
            s.spawn(move || {
                let store = SqliteStore::open(&db).expect("own connection");
                edit::edit(
                    &store,
                    "d1",
                    Entity::Users,
                    "stu-1",
                    &[(format!("metadata.note{n:02}"), format!("edit {n}"))],
                    &format!("editor-{n}"),
                )
                .expect("edit");
            });
        }
    });
    let stu1 = w.record(Entity::Users, "stu-1");
    let notes: Vec<&String> = stu1
        .fields
        .keys()
        .filter(|k| k.starts_with("metadata.note"))
        .collect();
    assert_eq!(notes.len(), 20, "{:?}", stu1.fields);
    assert_eq!(stu1.version, 1 + 20, "one version per write");
    assert_eq!(stu1.fields["givenName"], "Cara");
}

/// What the AWS pipeline does with one batch, stage by stage: plan steps, guard, apply every chunk, finish.
fn run_stages(w: &World, batch: &str, bundle: &Path) -> Result<rollcall::model::Batch, SyncError> {
    use rollcall::sync::stages;
    for step in Step::ALL {
        let mut opened = Bundle::open(bundle, &Limits::default()).expect("bundle");
        stages::plan_stage(
            &w.store,
            &w.blobs,
            batch,
            step,
            &mut opened,
            &Limits::default(),
            2,
            &NoProgress,
        )?;
    }
    let (guarded, _) = stages::guard_stage(&w.store, &w.blobs, batch)?;
    assert!(!guarded.held, "{:?}", guarded.reasons);
    stages::begin_apply(&w.store, batch)?;
    for chunk in guarded.upserts.iter().chain(&guarded.archives) {
        stages::apply_stage(&w.store, &w.blobs, batch, chunk)?;
    }
    Ok(stages::finish_stage(&w.store, &w.blobs, batch)?.0)
}

#[test]
fn a_batch_received_while_another_was_applied_is_planned_against_the_roster_of_its_turn() {
    // On AWS a bundle is validated and recorded before its execution holds the tenant's lease: two uploads
    // arriving together are both received first, then planned and applied one after the other.
    use rollcall::sync::stages::{self, Arrival, Received};
    let mut w = World::new(Tenant::new("d1"));
    let one = w.bundle(&[]);
    let two = w.bundle(&[("users.csv", "Dev,Patel", "Devin,Patel")]);
    let tenant = w.tenant();
    let receive = |path: &Path| -> String {
        let mut bundle = Bundle::open(path, &Limits::default()).expect("bundle");
        let arrival = Arrival {
            source: rollcall::model::SourceKind::Sftp,
            location: path.to_str().expect("path"),
        };
        match stages::receive(
            &w.store,
            &w.blobs,
            &tenant,
            &mut bundle,
            arrival,
            &Limits::default(),
            false,
            &NoProgress,
        )
        .expect("receive")
        {
            Received::Accepted { batch, .. } => batch.id,
            _ => panic!("accepted expected"),
        }
    };
    let first = receive(&one);
    let second = receive(&two);
    let applied = run_stages(&w, &first, &one).expect("the first applies");
    assert_eq!(applied.status, BatchStatus::Applied);
    let applied = run_stages(&w, &second, &two).expect("the second applies after it");
    assert_eq!(applied.status, BatchStatus::Applied);
    assert_eq!(applied.planned_after.as_deref(), Some(first.as_str()));
    assert_eq!(applied.counts[&Entity::Users].update, 1);
    assert_eq!(applied.counts[&Entity::Users].create, 0);
    assert_eq!(
        w.record(Entity::Users, "stu-2").fields["givenName"],
        "Devin"
    );
}
