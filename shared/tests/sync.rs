//! Sync on the embedded store, as a district and its ops team meet it: first load, resyncs, bulk and delta
//! semantics, filters, manual work under both policies, the guard, approval, rollback, duplicates and
//! concurrency. Every test states exact counts and exact stored state.

use rollcall::apply::edit;
use rollcall::blob::local::LocalBlobs;
use rollcall::model::{
    BatchStatus, Counts, Entity, Filters, Policy, Provenance, Record, Tenant, Threshold,
};
use rollcall::store::sqlite::SqliteStore;
use rollcall::store::{EnrollmentsOf, Lease, LeaseStore, RecordRead, TenantStore, for_each_record};
use rollcall::sync::lease::{Holder, LocalLiveness};
use rollcall::sync::{Local, SyncError, SyncOptions, SyncOutcome, SyncStatus};
use rollcall::{NoProgress, store::BatchStore};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/base")
}

/// A workspace: a database file, a blob folder for staged plans and kept bundles, and bundles made from the
/// base fixture.
struct World {
    dir: tempfile::TempDir,
    store: SqliteStore,
    blobs: LocalBlobs,
    bundles: usize,
}

/// Records with their versions cleared, to compare what they hold.
fn unversioned(records: Vec<Record>) -> Vec<Record> {
    records
        .into_iter()
        .map(|mut r| {
            r.version = 0;
            r
        })
        .collect()
}

/// Every record of an entity, in sourcedId order.
fn all_records(store: &SqliteStore, entity: Entity) -> Vec<Record> {
    let mut records = Vec::new();
    for_each_record(store, "d1", entity, None, None, |r| {
        records.push(r.clone());
        Ok::<_, rollcall::store::StoreError>(())
    })
    .expect("list");
    records
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

    fn local(&self) -> Local<'_> {
        Local {
            store: &self.store,
            blobs: &self.blobs,
            holder: Holder::this_process(),
            liveness: &LocalLiveness,
        }
    }

    /// Chunks of two changes, so every test applies its plans over many chunks.
    fn options(&self) -> SyncOptions {
        SyncOptions {
            chunk_size: 2,
            ..SyncOptions::default()
        }
    }

    /// A copy of the base bundle with text edits: (file, from, to); an empty `to` with `from` a whole line
    /// removes it.
    fn bundle(&mut self, edits: &[(&str, &str, &str)]) -> PathBuf {
        self.bundles += 1;
        let path = self.dir.path().join(format!("bundle-{}", self.bundles));
        fs::create_dir_all(&path).expect("mkdir");
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
        path
    }

    fn sync(&self, bundle: &Path) -> SyncOutcome {
        self.local()
            .sync_path("d1", bundle, &self.options(), &NoProgress)
            .expect("sync")
    }

    fn record(&self, entity: Entity, id: &str) -> rollcall::model::Record {
        self.store
            .get_record("d1", entity, id)
            .expect("read")
            .expect("record exists")
    }

    fn active(&self, entity: Entity) -> Vec<String> {
        all_records(&self.store, entity)
            .into_iter()
            .filter(|r| r.active)
            .map(|r| r.sourced_id)
            .collect()
    }
}

fn counts(outcome: &SyncOutcome, entity: Entity) -> Counts {
    outcome.counts.get(&entity).copied().unwrap_or_default()
}

fn c(
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

fn tenant() -> Tenant {
    Tenant::new("d1")
}

/// A second export of the same roster: only the manifest's source name differs, so it is a new batch.
const SAME_ROSTER: (&str, &str, &str) = ("manifest.csv", "Example SIS", "Example SIS v2");

#[test]
fn first_load_creates_everything_with_sis_provenance() {
    let mut w = World::new(tenant());
    let b = w.bundle(&[]);
    let out = w.sync(&b);
    assert_eq!(out.status, SyncStatus::Applied);
    assert_eq!(counts(&out, Entity::Orgs), c(3, 0, 0, 0, 0, 0, 0));
    assert_eq!(
        counts(&out, Entity::AcademicSessions),
        c(3, 0, 0, 0, 0, 0, 0)
    );
    assert_eq!(counts(&out, Entity::Courses), c(2, 0, 0, 0, 0, 0, 0));
    assert_eq!(counts(&out, Entity::Classes), c(2, 0, 0, 0, 0, 0, 0));
    assert_eq!(counts(&out, Entity::Users), c(5, 0, 0, 0, 0, 0, 0));
    assert_eq!(counts(&out, Entity::Demographics), c(2, 0, 0, 0, 0, 0, 0));
    assert_eq!(counts(&out, Entity::Enrollments), c(4, 0, 0, 0, 0, 0, 0));
    assert_eq!(out.writes, 21);
    assert_eq!(w.store.records_written(), 21);
    let user = w.record(Entity::Users, "stu-1");
    assert_eq!(user.fields["givenName"], "Cara");
    assert_eq!(user.fields["orgSourcedIds"], "sch-1");
    assert!(!user.fields.contains_key("status"));
    assert_eq!(
        user.provenance["givenName"],
        Provenance::Sis {
            batch: out.batch.clone()
        }
    );
    assert_eq!(user.created_batch.as_deref(), Some(out.batch.as_str()));
    let batch = w.store.get_batch(&out.batch).expect("read").expect("batch");
    assert_eq!(batch.status, BatchStatus::Applied);
    assert_eq!(batch.tenant, "d1");
    assert_eq!(
        w.store.find_by_username("d1", "cara.kim").expect("find")[0].sourced_id,
        "stu-1"
    );
    assert_eq!(
        w.store
            .find_by_user_id("d1", "ClassLink", "4512")
            .expect("find")[0]
            .sourced_id,
        "tch-2"
    );
    let ids = |of| -> Vec<String> {
        w.store
            .find_enrollments("d1", of)
            .expect("find")
            .into_iter()
            .map(|r| r.sourced_id)
            .collect()
    };
    assert_eq!(ids(EnrollmentsOf::Class("cls-1")), ["enr-1", "enr-2"]);
    assert_eq!(ids(EnrollmentsOf::User("stu-2")), ["enr-4"]);
    assert!(ids(EnrollmentsOf::Class("cls-9")).is_empty());
}

#[test]
fn an_identical_resync_writes_nothing() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let before = w.store.records_written();
    let again = w.bundle(&[SAME_ROSTER]);
    let out = w.sync(&again);
    assert_eq!(out.status, SyncStatus::Applied);
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 0, 0, 5, 0, 0));
    assert_eq!(counts(&out, Entity::Enrollments), c(0, 0, 0, 0, 4, 0, 0));
    assert_eq!(out.writes, 0);
    assert_eq!(w.store.records_written(), before, "no record was written");
}

#[test]
fn one_changed_field_is_one_update_with_new_provenance_for_that_field_only() {
    let mut w = World::new(tenant());
    let first_bundle = w.bundle(&[]);
    let first = w.sync(&first_bundle);
    let changed = w.bundle(&[("users.csv", "Dev,Patel", "Devin,Patel")]);
    let out = w.sync(&changed);
    assert_eq!(counts(&out, Entity::Users), c(0, 1, 0, 0, 4, 0, 0));
    assert_eq!(out.writes, 1);
    let user = w.record(Entity::Users, "stu-2");
    assert_eq!(user.fields["givenName"], "Devin");
    assert_eq!(
        user.provenance["givenName"],
        Provenance::Sis {
            batch: out.batch.clone()
        }
    );
    assert_eq!(
        user.provenance["familyName"],
        Provenance::Sis {
            batch: first.batch.clone()
        }
    );
    assert_eq!(user.batch.as_deref(), Some(out.batch.as_str()));
}

#[test]
fn a_record_left_out_of_a_bulk_file_is_archived_and_restored_when_it_returns() {
    let mut t = tenant();
    t.threshold = Threshold {
        archive: 0.5,
        update: 0.75,
    };
    let mut w = World::new(t);
    let full = w.bundle(&[]);
    w.sync(&full);
    let without = w.bundle(&[
        (
            "users.csv",
            "stu-2,,,true,sch-2,student,dev.patel,{SIS:1002},Dev,Patel,,1002,,,,,09,\n",
            "",
        ),
        (
            "demographics.csv",
            "stu-2,,,2011-11-20,male,false,false,false,false,true,false,true,US,CA,Modesto,01652\n",
            "",
        ),
        (
            "enrollments.csv",
            "enr-4,,,cls-2,sch-2,stu-2,student,false,,\n",
            "",
        ),
    ]);
    let out = w.sync(&without);
    assert_eq!(out.status, SyncStatus::Applied);
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 1, 0, 4, 0, 0));
    assert_eq!(counts(&out, Entity::Demographics), c(0, 0, 1, 0, 1, 0, 0));
    assert_eq!(counts(&out, Entity::Enrollments), c(0, 0, 1, 0, 3, 0, 0));
    let archived = w.record(Entity::Users, "stu-2");
    assert!(!archived.active);
    assert_eq!(archived.archived_by, Some(rollcall::model::Origin::Sis));
    assert_eq!(
        archived.fields["givenName"], "Dev",
        "archiving keeps the record, never deletes it"
    );

    let back = w.bundle(&[SAME_ROSTER]);
    let out = w.sync(&back);
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 0, 1, 4, 0, 0));
    assert_eq!(counts(&out, Entity::Enrollments), c(0, 0, 0, 1, 3, 0, 0));
    assert!(w.record(Entity::Users, "stu-2").active);
    assert_eq!(w.record(Entity::Users, "stu-2").archived_by, None);
}

#[test]
fn a_delta_tobedeleted_archives_and_leaves_unlisted_records_alone() {
    let mut t = tenant();
    t.threshold = Threshold {
        archive: 0.5,
        update: 0.75,
    };
    let mut w = World::new(t);
    let full = w.bundle(&[]);
    w.sync(&full);
    let header = fs::read_to_string(base().join("users.csv")).expect("users");
    let header = header.lines().next().expect("header");
    let delta = w.bundle(&[("manifest.csv", "file.users,bulk", "file.users,delta")]);
    fs::write(
        delta.join("users.csv"),
        format!("{header}\nstu-2,tobedeleted,2026-11-20T08:15:00.000Z,,,,,,,,,,,,,,,\n"),
    )
    .expect("write");
    // Demographics and enrollments still mention stu-2: keep them out of this bundle.
    for name in ["demographics.csv", "enrollments.csv"] {
        fs::remove_file(delta.join(name)).expect("remove");
    }
    let manifest = fs::read_to_string(delta.join("manifest.csv")).expect("manifest");
    let manifest = manifest
        .replace("file.demographics,bulk", "file.demographics,absent")
        .replace("file.enrollments,bulk", "file.enrollments,absent");
    fs::write(delta.join("manifest.csv"), manifest).expect("write");
    let out = w.sync(&delta);
    assert_eq!(out.status, SyncStatus::Applied, "{:?}", out.held_reasons);
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 1, 0, 0, 0, 0));
    assert_eq!(counts(&out, Entity::Enrollments), c(0, 0, 0, 0, 0, 0, 0));
    assert_eq!(
        w.active(Entity::Users),
        ["par-1", "stu-1", "tch-1", "tch-2"]
    );
    assert_eq!(
        w.active(Entity::Enrollments).len(),
        4,
        "a delta leaves unlisted records alone"
    );
}

#[test]
fn filters_keep_out_what_the_tenant_does_not_take() {
    let mut t = tenant();
    t.filters = Filters {
        schools: vec!["0600002".into()],
        roles: vec![],
        grades: vec![],
    };
    let mut w = World::new(t);
    let b = w.bundle(&[]);
    let out = w.sync(&b);
    assert_eq!(counts(&out, Entity::Orgs), c(2, 0, 0, 0, 0, 0, 1));
    assert_eq!(counts(&out, Entity::Courses), c(1, 0, 0, 0, 0, 0, 1));
    assert_eq!(counts(&out, Entity::Classes), c(1, 0, 0, 0, 0, 0, 1));
    assert_eq!(counts(&out, Entity::Users), c(4, 0, 0, 0, 0, 0, 1));
    assert_eq!(counts(&out, Entity::Demographics), c(1, 0, 0, 0, 0, 0, 1));
    assert_eq!(counts(&out, Entity::Enrollments), c(2, 0, 0, 0, 0, 0, 2));
    assert_eq!(
        w.active(Entity::Users),
        ["par-1", "stu-1", "tch-1", "tch-2"]
    );

    let mut roles = tenant();
    roles.id = "d2".into();
    roles.filters.roles = vec!["student".into()];
    w.store.put_tenant(&roles).expect("tenant");
    let out = w
        .local()
        .sync_path("d2", &b, &w.options(), &NoProgress)
        .expect("sync");
    assert_eq!(counts(&out, Entity::Users), c(2, 0, 0, 0, 0, 0, 3));
    assert_eq!(counts(&out, Entity::Enrollments), c(2, 0, 0, 0, 0, 0, 2));
}

#[test]
fn preserve_manual_keeps_a_manual_edit_and_records_the_sis_value_beside_it() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    edit::edit(
        &w.store,
        "d1",
        Entity::Users,
        "stu-1",
        &[("givenName".into(), "Carita".into())],
        "alice",
    )
    .expect("edit");
    let changed = w.bundle(&[("users.csv", "Cara,Kim", "Carla,Kim")]);
    let out = w.sync(&changed);
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 0, 0, 4, 1, 0));
    let user = w.record(Entity::Users, "stu-1");
    assert_eq!(user.fields["givenName"], "Carita");
    assert_eq!(user.sis_fields["givenName"], "Carla");
    assert!(
        matches!(&user.provenance["givenName"], Provenance::Manual { by, .. } if by == "alice")
    );
}

#[test]
fn sis_wins_overwrites_a_manual_edit() {
    let mut t = tenant();
    t.policy = Policy::SisWins;
    let mut w = World::new(t);
    let first = w.bundle(&[]);
    w.sync(&first);
    edit::edit(
        &w.store,
        "d1",
        Entity::Users,
        "stu-1",
        &[("givenName".into(), "Carita".into())],
        "alice",
    )
    .expect("edit");
    let changed = w.bundle(&[("users.csv", "Cara,Kim", "Carla,Kim")]);
    let out = w.sync(&changed);
    assert_eq!(counts(&out, Entity::Users), c(0, 1, 0, 0, 4, 0, 0));
    let user = w.record(Entity::Users, "stu-1");
    assert_eq!(user.fields["givenName"], "Carla");
    assert_eq!(
        user.provenance["givenName"],
        Provenance::Sis {
            batch: out.batch.clone()
        }
    );
}

#[test]
fn a_manual_archive_holds_under_preserve_manual_and_is_undone_under_sis_wins() {
    for (policy, expected, active_after) in [
        (Policy::PreserveManual, c(0, 0, 0, 0, 4, 1, 0), false),
        (Policy::SisWins, c(0, 0, 0, 1, 4, 0, 0), true),
    ] {
        let mut t = tenant();
        t.policy = policy;
        let mut w = World::new(t);
        let first = w.bundle(&[]);
        w.sync(&first);
        edit::archive(&w.store, "d1", Entity::Users, "stu-2", "support").expect("archive");
        let again = w.bundle(&[SAME_ROSTER]);
        let out = w.sync(&again);
        assert_eq!(counts(&out, Entity::Users), expected, "{policy:?}");
        assert_eq!(
            w.record(Entity::Users, "stu-2").active,
            active_after,
            "{policy:?}"
        );
    }
}

/// A user a support person adds by hand: everything a bundle's row needs.
fn tutor() -> Vec<(String, String)> {
    [
        ("enabledUser", "true"),
        ("orgSourcedIds", "sch-1"),
        ("role", "aide"),
        ("username", "tia.tutor"),
        ("givenName", "Tia"),
        ("familyName", "Tutor"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn a_record_created_by_hand_is_left_alone_by_bulk_syncs_under_both_policies() {
    for policy in [Policy::PreserveManual, Policy::SisWins] {
        let mut t = tenant();
        t.policy = policy;
        let mut w = World::new(t);
        let first = w.bundle(&[]);
        w.sync(&first);
        edit::create(
            &w.store,
            "d1",
            Entity::Users,
            "tutor-1",
            &tutor(),
            "support",
        )
        .expect("create");
        let again = w.bundle(&[SAME_ROSTER]);
        let out = w.sync(&again);
        assert_eq!(
            counts(&out, Entity::Users),
            c(0, 0, 0, 0, 5, 0, 0),
            "{policy:?}"
        );
        let tutor = w.record(Entity::Users, "tutor-1");
        assert!(tutor.active, "{policy:?}");
        assert_eq!(tutor.origin, rollcall::model::Origin::Manual);
    }
}

#[test]
fn a_primary_administrator_flag_survives_syncs_under_both_policies() {
    for policy in [Policy::PreserveManual, Policy::SisWins] {
        let mut t = tenant();
        t.policy = policy;
        let mut w = World::new(t);
        let first = w.bundle(&[]);
        w.sync(&first);
        edit::edit(
            &w.store,
            "d1",
            Entity::Users,
            "tch-1",
            &[("primaryAdministrator".into(), "true".into())],
            "support",
        )
        .expect("edit");
        let changed = w.bundle(&[("users.csv", "Ana,Lopez", "Anna,Lopez")]);
        let out = w.sync(&changed);
        assert_eq!(
            counts(&out, Entity::Users),
            c(0, 1, 0, 0, 4, 0, 0),
            "{policy:?}"
        );
        let teacher = w.record(Entity::Users, "tch-1");
        assert_eq!(teacher.fields["givenName"], "Anna", "{policy:?}");
        assert_eq!(teacher.fields["primaryAdministrator"], "true", "{policy:?}");
    }
}

/// A broken export: every enrollment but one is gone.
fn broken_export(w: &mut World) -> PathBuf {
    w.bundle(&[
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
    ])
}

#[test]
fn the_guard_holds_a_broken_export_and_approval_applies_it() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let broken = broken_export(&mut w);
    let out = w.sync(&broken);
    assert_eq!(out.status, SyncStatus::Held);
    assert_eq!(
        out.held_reasons,
        ["enrollments: 3 of 4 active records (75.0%) would be archived; the threshold is 10%"]
    );
    assert_eq!(
        w.active(Entity::Enrollments).len(),
        4,
        "nothing applied while held"
    );
    assert_eq!(
        w.store
            .get_batch(&out.batch)
            .expect("read")
            .expect("batch")
            .status,
        BatchStatus::Held
    );

    let applied = w
        .local()
        .approve(&out.batch, &w.options())
        .expect("approve");
    assert_eq!(applied.status, SyncStatus::Applied);
    assert_eq!(
        counts(&applied, Entity::Enrollments),
        c(0, 0, 3, 0, 1, 0, 0)
    );
    assert_eq!(w.active(Entity::Enrollments), ["enr-1"]);
    assert_eq!(
        w.store
            .get_batch(&out.batch)
            .expect("read")
            .expect("batch")
            .status,
        BatchStatus::Applied
    );
}

#[test]
fn a_rejected_held_batch_changes_nothing_and_cannot_be_approved_later() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let broken = broken_export(&mut w);
    let out = w.sync(&broken);
    let rejected = w.local().reject(&out.batch, &w.options()).expect("reject");
    assert_eq!(rejected.status, BatchStatus::Rejected);
    assert_eq!(w.active(Entity::Enrollments).len(), 4);
    let err = w
        .local()
        .approve(&out.batch, &w.options())
        .expect_err("not held");
    assert_eq!(
        err.to_string(),
        format!(
            "batch {} is rejected; only a held batch can be approved or rejected",
            out.batch
        )
    );
}

#[test]
fn the_first_sync_of_a_tenant_is_not_guarded() {
    let mut w = World::new(tenant());
    let broken = broken_export(&mut w);
    let out = w.sync(&broken);
    assert_eq!(out.status, SyncStatus::Applied);
}

#[test]
fn rollback_restores_exactly_what_was_there_and_refuses_after_later_changes() {
    let mut t = tenant();
    t.threshold = Threshold {
        archive: 1.0,
        update: 1.0,
    };
    let mut w = World::new(t);
    let first = w.bundle(&[]);
    w.sync(&first);
    let before: Vec<_> = all_records(&w.store, Entity::Users);
    let changed = w.bundle(&[
        ("users.csv", "Dev,Patel", "Devin,Patel"),
        (
            "users.csv",
            "par-1,,,true,sch-1,parent,eve.kim,,Eve,Kim,,,eve.kim@example.com,,555-0100,stu-1,,\n",
            "",
        ),
        ("users.csv", ",par-1,03,", ",,03,"),
        (
            "users.csv",
            "stu-1,,,true",
            "stu-1b,,,true,sch-1,student,new.kid,,New,Kid,,,,,,,03,\nstu-1,,,true",
        ),
    ]);
    let out = w.sync(&changed);
    assert_eq!(counts(&out, Entity::Users), c(1, 2, 1, 0, 2, 0, 0));
    let batch = w
        .local()
        .rollback(&out.batch, false, &w.options())
        .expect("rollback");
    assert_eq!(batch.status, BatchStatus::RolledBack);
    // Exactly what was there, but for the versions: a rollback is a write too, so they count on.
    assert_eq!(
        unversioned(all_records(&w.store, Entity::Users)),
        unversioned(before)
    );

    // Apply it again, then change one of its records by hand: the rollback now refuses.
    let again = w.bundle(&[
        ("users.csv", "Dev,Patel", "Devin,Patel"),
        ("manifest.csv", "Example SIS", "Example SIS again"),
    ]);
    let out = w.sync(&again);
    edit::edit(
        &w.store,
        "d1",
        Entity::Users,
        "stu-2",
        &[("middleName".into(), "R".into())],
        "alice",
    )
    .expect("edit");
    let err = w
        .local()
        .rollback(&out.batch, false, &w.options())
        .expect_err("conflict");
    assert!(
        matches!(err, SyncError::RollbackConflict { count: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("users stu-2"), "{err}");
    w.local()
        .rollback(&out.batch, true, &w.options())
        .expect("forced rollback");
    assert_eq!(w.record(Entity::Users, "stu-2").fields["givenName"], "Dev");
}

#[test]
fn the_same_bundle_twice_is_applied_once() {
    let mut w = World::new(tenant());
    let b = w.bundle(&[]);
    let first = w.sync(&b);
    let written = w.store.records_written();
    let second = w.sync(&b);
    assert_eq!(second.status, SyncStatus::AlreadyApplied);
    assert_eq!(second.batch, first.batch);
    assert_eq!(
        counts(&second, Entity::Users),
        counts(&first, Entity::Users)
    );
    assert_eq!(w.store.records_written(), written);
    assert_eq!(w.store.list_batches("d1").expect("list").len(), 1);
}

#[test]
fn an_invalid_bundle_is_rejected_and_changes_nothing() {
    let mut w = World::new(tenant());
    let b = w.bundle(&[("classes.csv", ",scheduled,", ",Scheduled,")]);
    let out = w.sync(&b);
    assert_eq!(out.status, SyncStatus::Rejected);
    assert_eq!(out.findings.errors, 1);
    assert_eq!(w.store.records_written(), 0);
    assert_eq!(
        w.store
            .get_batch(&out.batch)
            .expect("read")
            .expect("batch")
            .status,
        BatchStatus::Rejected
    );
}

#[test]
fn an_unknown_tenant_is_refused_by_name() {
    // The command that adds it is the command line's to name (cli/tests/cli.rs checks that message).
    let w = World::new(tenant());
    let err = w
        .local()
        .sync_path("nope", &base(), &w.options(), &NoProgress)
        .expect_err("unknown");
    assert!(
        matches!(err, SyncError::UnknownTenant(ref t) if t == "nope"),
        "{err}"
    );
    assert_eq!(err.to_string(), "there is no tenant \"nope\"");
}

#[test]
fn batch_ids_differ_across_tenants_for_the_same_bundle() {
    let w = World::new(tenant());
    let mut other = tenant();
    other.id = "d2".into();
    w.store.put_tenant(&other).expect("tenant");
    let a = w
        .local()
        .sync_path("d1", &base(), &w.options(), &NoProgress)
        .expect("sync");
    let b = w
        .local()
        .sync_path("d2", &base(), &w.options(), &NoProgress)
        .expect("sync");
    assert_ne!(a.batch, b.batch);
    assert_eq!(b.status, SyncStatus::Applied);
}

/// A lease held by a run on another host that keeps renewing it.
fn lease_elsewhere(holder: &str) -> Lease {
    let now = rollcall::model::now();
    Lease {
        holder: format!("local:another-host:4242:1:{holder}"),
        purpose: "sync of roster.zip".into(),
        batch: None,
        acquired_at: now,
        expires_at: now + 600,
    }
}

#[test]
fn a_sync_finds_the_tenant_lease_taken_and_says_by_whom_without_waiting() {
    // The library never waits; the command line waits and gives up (cli/tests/cli.rs).
    let mut w = World::new(tenant());
    let b = w.bundle(&[]);
    let other = lease_elsewhere("someone else");
    assert!(w.store.try_lease("d1", &other, None).expect("lease"));
    let started = std::time::Instant::now();
    let err = w
        .local()
        .sync_path("d1", &b, &w.options(), &NoProgress)
        .expect_err("busy");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it did not wait"
    );
    assert!(
        matches!(err, SyncError::Leased { ref lease, .. } if *lease == other),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "tenant d1 is busy: pid 4242 on another-host is running a sync of roster.zip (since "
        ),
        "{err}"
    );
    assert_eq!(w.store.records_written(), 0);
    w.store.release_lease("d1", &other.holder).expect("release");
    assert_eq!(w.sync(&b).status, SyncStatus::Applied);
}

/// Syncs, waiting for the tenant's lease as the command line does.
fn sync_waiting(
    store: &SqliteStore,
    blobs: &LocalBlobs,
    bundle: &Path,
    opts: &SyncOptions,
) -> SyncOutcome {
    let local = Local {
        store,
        blobs,
        holder: Holder::this_process(),
        liveness: &LocalLiveness,
    };
    let started = std::time::Instant::now();
    loop {
        match local.sync_path("d1", bundle, opts, &NoProgress) {
            Err(SyncError::Leased { .. }) if started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.expect("sync"),
        }
    }
}

#[test]
fn concurrent_syncs_of_one_tenant_run_one_after_the_other() {
    let mut w = World::new(tenant());
    let a = w.bundle(&[("users.csv", "Dev,Patel", "Devin,Patel")]);
    let b = w.bundle(&[("users.csv", "Cara,Kim", "Carla,Kim")]);
    let db = w.dir.path().join("roster.db");
    let opts = w.options();
    let blobs = &w.blobs;
    let outcomes: Vec<SyncOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = [a, b]
            .into_iter()
            .map(|bundle| {
                let (db, opts) = (db.clone(), opts.clone());
                s.spawn(move || {
                    let store = SqliteStore::open(&db).expect("own connection");
                    sync_waiting(&store, blobs, &bundle, &opts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(outcomes.iter().all(|o| o.status == SyncStatus::Applied));
    // Whichever ran second saw the first one's records: one created everything, the other updated one user.
    let mut creates: Vec<u64> = outcomes
        .iter()
        .map(|o| counts(o, Entity::Users).create)
        .collect();
    creates.sort();
    assert_eq!(creates, [0, 5]);
    let batches = w.store.list_batches("d1").expect("list");
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.status == BatchStatus::Applied));
    let last = &batches[1];
    let expected_name = if last.id == outcomes[0].batch {
        ("stu-2", "Devin")
    } else {
        ("stu-1", "Carla")
    };
    assert_eq!(
        w.record(Entity::Users, expected_name.0).fields["givenName"],
        expected_name.1
    );
    assert_eq!(
        w.store.get_lease("d1").expect("lease"),
        None,
        "leases were released"
    );
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let mut w = World::new(tenant());
    let b = w.bundle(&[]);
    let mut opts = w.options();
    opts.dry_run = true;
    let out = w
        .local()
        .sync_path("d1", &b, &opts, &NoProgress)
        .expect("dry run");
    assert_eq!(out.status, SyncStatus::Planned);
    assert_eq!(counts(&out, Entity::Users), c(5, 0, 0, 0, 0, 0, 0));
    assert_eq!(w.store.records_written(), 0);
    assert!(w.store.list_batches("d1").expect("list").is_empty());
}

#[test]
fn a_second_approval_of_the_same_batch_is_refused() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let broken = broken_export(&mut w);
    let held = w.sync(&broken);
    w.local()
        .approve(&held.batch, &w.options())
        .expect("first approval");
    let err = w
        .local()
        .approve(&held.batch, &w.options())
        .expect_err("already applied");
    assert!(
        matches!(
            err,
            SyncError::NotHeld {
                status: "applied",
                ..
            }
        ),
        "{err}"
    );
    let err = w
        .local()
        .reject(&held.batch, &w.options())
        .expect_err("cannot reject an applied batch");
    assert!(
        matches!(
            err,
            SyncError::NotHeld {
                status: "applied",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_older_export_sent_again_after_a_newer_one_is_applied_again() {
    let mut w = World::new(tenant());
    let old = w.bundle(&[]);
    let first = w.sync(&old);
    let newer = w.bundle(&[("users.csv", "Dev,Patel", "Devin,Patel")]);
    w.sync(&newer);
    let again = w.sync(&old);
    assert_eq!(
        again.status,
        SyncStatus::Applied,
        "the roster had moved on, so this is a new batch"
    );
    assert_eq!(again.batch, format!("{}-2", first.batch));
    assert_eq!(counts(&again, Entity::Users), c(0, 1, 0, 0, 4, 0, 0));
    assert_eq!(w.record(Entity::Users, "stu-2").fields["givenName"], "Dev");
    // And now that the roster is that content, the same bundle once more is nothing to do.
    assert_eq!(w.sync(&old).status, SyncStatus::AlreadyApplied);
}

#[test]
fn a_bundle_rolled_back_can_be_sent_again() {
    let mut t = tenant();
    t.threshold = Threshold {
        archive: 1.0,
        update: 1.0,
    };
    let mut w = World::new(t);
    let first = w.bundle(&[]);
    w.sync(&first);
    let change = w.bundle(&[("users.csv", "Dev,Patel", "Devin,Patel")]);
    let applied = w.sync(&change);
    w.local()
        .rollback(&applied.batch, false, &w.options())
        .expect("rollback");
    assert_eq!(w.record(Entity::Users, "stu-2").fields["givenName"], "Dev");
    let again = w.sync(&change);
    assert_eq!(again.status, SyncStatus::Applied);
    assert_eq!(counts(&again, Entity::Users), c(0, 1, 0, 0, 4, 0, 0));
    assert_eq!(
        w.record(Entity::Users, "stu-2").fields["givenName"],
        "Devin"
    );
    w.local()
        .rollback(&again.batch, false, &w.options())
        .expect("the second application rolls back too");
}

#[test]
fn rollback_refuses_when_later_batches_may_refer_to_records_it_created() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let new_user = w.bundle(&[(
        "users.csv",
        "stu-1,,,true",
        "stu-7,,,true,sch-1,student,new.kid,,New,Kid,,,,,,,03,\nstu-1,,,true",
    )]);
    let created = w.sync(&new_user);
    let enrolled = w.bundle(&[
        (
            "users.csv",
            "stu-1,,,true",
            "stu-7,,,true,sch-1,student,new.kid,,New,Kid,,,,,,,03,\nstu-1,,,true",
        ),
        (
            "enrollments.csv",
            "enr-1,,,",
            "enr-7,,,cls-1,sch-1,stu-7,student,false,,\nenr-1,,,",
        ),
    ]);
    w.sync(&enrolled);
    let err = w
        .local()
        .rollback(&created.batch, false, &w.options())
        .expect_err("a later batch enrolled stu-7");
    assert!(
        matches!(err, SyncError::LaterDepends { created: 1, .. }),
        "{err}"
    );
    assert!(w.record(Entity::Users, "stu-7").active);
}

#[test]
fn filters_carry_over_to_later_delta_bundles() {
    let mut t = tenant();
    t.filters.schools = vec!["sch-1".into()];
    let mut w = World::new(t);
    let first = w.bundle(&[]);
    w.sync(&first);
    let header = |file: &str| {
        fs::read_to_string(base().join(file))
            .expect("read")
            .lines()
            .next()
            .expect("header")
            .to_string()
    };
    let delta = w.bundle(&[
        ("manifest.csv", "file.users,bulk", "file.users,delta"),
        (
            "manifest.csv",
            "file.enrollments,bulk",
            "file.enrollments,delta",
        ),
    ]);
    let dlm = "2026-11-20T08:15:00.000Z";
    fs::write(
        delta.join("users.csv"),
        format!(
            "{}\nstu-8,active,{dlm},true,sch-2,student,late.kid,,Late,Kid,,,,,,,09,\n",
            header("users.csv")
        ),
    )
    .expect("write");
    fs::write(
        delta.join("enrollments.csv"),
        format!(
            "{}\nenr-9,active,{dlm},cls-2,sch-2,stu-2,student,false,,\n",
            header("enrollments.csv")
        ),
    )
    .expect("write");
    for name in ["demographics.csv", "results.csv"] {
        fs::remove_file(delta.join(name)).expect("remove");
        let manifest = fs::read_to_string(delta.join("manifest.csv")).expect("manifest");
        let key = format!("file.{},bulk", name.trim_end_matches(".csv"));
        fs::write(
            delta.join("manifest.csv"),
            manifest.replace(&key, &key.replace("bulk", "absent")),
        )
        .expect("write");
    }
    let out = w.sync(&delta);
    assert_eq!(
        out.status,
        SyncStatus::Applied,
        "{:?}",
        out.report.map(|r| r.counts)
    );
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 0, 0, 0, 0, 1));
    assert_eq!(counts(&out, Entity::Enrollments), c(0, 0, 0, 0, 0, 0, 1));
    assert!(
        w.store
            .get_record("d1", Entity::Users, "stu-8")
            .expect("read")
            .is_none()
    );
    assert!(
        w.store
            .get_record("d1", Entity::Enrollments, "enr-9")
            .expect("read")
            .is_none()
    );
}

#[test]
fn under_preserve_manual_a_record_made_by_hand_keeps_its_values_when_the_sis_sends_it_too() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    edit::create(
        &w.store,
        "d1",
        Entity::Users,
        "stu-9",
        &sets(&[
            ("enabledUser", "true"),
            ("orgSourcedIds", "sch-1"),
            ("role", "student"),
            ("username", "nia.sandoval"),
            ("givenName", "Nia"),
            ("familyName", "Sandoval"),
        ]),
        "support",
    )
    .expect("create");
    let with_stu9 = w.bundle(&[(
        "users.csv",
        "stu-1,,,true",
        "stu-9,,,true,sch-1,student,nia.s,{SIS:1009},Nia,Sands,,1009,,,,,03,\nstu-1,,,true",
    )]);
    let out = w.sync(&with_stu9);
    assert_eq!(counts(&out, Entity::Users), c(0, 0, 0, 0, 5, 1, 0));
    let nia = w.record(Entity::Users, "stu-9");
    let fields: Vec<&str> = nia.fields.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "enabledUser",
            "familyName",
            "givenName",
            "orgSourcedIds",
            "role",
            "username"
        ],
        "the SIS's values are not written into the manual record"
    );
    assert_eq!(nia.fields["username"], "nia.sandoval");
    assert_eq!(
        (&nia.sis_fields["username"], &nia.sis_fields["userIds"]),
        (&"nia.s".to_string(), &"{SIS:1009}".to_string()),
        "but they are recorded beside it"
    );
    assert_eq!(nia.origin, rollcall::model::Origin::Manual);
}

#[test]
fn a_tenant_fed_by_api_pulls_refuses_an_uploaded_bundle() {
    let mut t = tenant();
    t.source = rollcall::model::SourceKind::Api;
    let mut w = World::new(t);
    let b = w.bundle(&[]);
    let out = w.sync(&b);
    assert_eq!(out.status, SyncStatus::Rejected);
    assert_eq!(
        out.held_reasons,
        [
            "tenant d1 is fed by API pulls; a bundle from SFTP uploads is refused (change the tenant's source if the district has moved to it)"
        ]
    );
    assert_eq!(w.store.records_written(), 0);
    let mut opts = w.options();
    opts.source = rollcall::model::SourceKind::Api;
    let pulled = w
        .local()
        .sync_path("d1", &b, &opts, &NoProgress)
        .expect("sync");
    assert_eq!(pulled.status, SyncStatus::Applied);
}

#[test]
fn a_record_restored_by_hand_stays_under_preserve_manual_and_is_archived_again_under_sis_wins() {
    for policy in [Policy::PreserveManual, Policy::SisWins] {
        let mut t = tenant();
        t.policy = policy;
        t.threshold = Threshold {
            archive: 0.5,
            update: 0.75,
        };
        let mut w = World::new(t);
        let full = w.bundle(&[]);
        w.sync(&full);
        let stu2 = [
            (
                "users.csv",
                "stu-2,,,true,sch-2,student,dev.patel,{SIS:1002},Dev,Patel,,1002,,,,,09,\n",
                "",
            ),
            (
                "demographics.csv",
                "stu-2,,,2011-11-20,male,false,false,false,false,true,false,true,US,CA,Modesto,01652\n",
                "",
            ),
            (
                "enrollments.csv",
                "enr-4,,,cls-2,sch-2,stu-2,student,false,,\n",
                "",
            ),
        ];
        let without = w.bundle(&stu2);
        let out = w.sync(&without);
        assert_eq!(counts(&out, Entity::Users), c(0, 0, 1, 0, 4, 0, 0));
        assert!(!w.record(Entity::Users, "stu-2").active);

        edit::restore(&w.store, "d1", Entity::Users, "stu-2", "support").expect("restore");
        assert!(w.record(Entity::Users, "stu-2").active);

        // The district's next export still leaves the user out.
        let mut edits = stu2.to_vec();
        edits.push(SAME_ROSTER);
        let again = w.bundle(&edits);
        let out = w.sync(&again);
        assert_eq!(out.status, SyncStatus::Applied, "{policy:?}");
        let user = w.record(Entity::Users, "stu-2");
        match policy {
            Policy::PreserveManual => {
                assert_eq!(counts(&out, Entity::Users), c(0, 0, 0, 0, 4, 1, 0));
                assert!(user.active, "restored by hand, kept");
                assert_eq!(user.archived_by, None);
            }
            Policy::SisWins => {
                assert_eq!(counts(&out, Entity::Users), c(0, 0, 1, 0, 4, 0, 0));
                assert!(!user.active, "the SIS wins");
                assert_eq!(user.archived_by, Some(rollcall::model::Origin::Sis));
            }
        }
    }
}

/// What a finding says, wherever it was found: code, column, message and hint.
type Said = (String, Option<String>, String, Option<String>);

fn said(findings: &[rollcall::Finding]) -> Vec<Said> {
    findings
        .iter()
        .map(|f| {
            (
                f.code.as_str().to_string(),
                f.column.as_deref().map(str::to_string),
                f.message.clone(),
                f.hint.clone(),
            )
        })
        .collect()
}

/// The validator's errors on the line of `file` holding `marker`, in a bundle with `edits` made.
fn validator_says(
    w: &mut World,
    edits: &[(&str, &str, &str)],
    file: &str,
    marker: &str,
) -> Vec<Said> {
    let bundle = w.bundle(edits);
    let text = fs::read_to_string(bundle.join(file)).expect("read");
    let line = text
        .split_inclusive('\n')
        .scan(1u64, |line, row| {
            let at = *line;
            *line += row.matches('\n').count() as u64;
            Some((at, row))
        })
        .find(|(_, row)| row.contains(marker))
        .map(|(at, _)| at)
        .expect("marked row");
    let report = rollcall::validate_path(&bundle, &rollcall::Limits::default(), &NoProgress)
        .expect("validate");
    let on_line: Vec<_> = report
        .findings
        .into_iter()
        .filter(|f| f.file.as_deref() == Some(file) && f.line == Some(line))
        .filter(|f| f.severity == rollcall::Severity::Error)
        .collect();
    said(&on_line)
}

fn refused(result: Result<Record, edit::EditError>) -> Vec<Said> {
    match result {
        Err(edit::EditError::Invalid { findings, .. }) => said(&findings),
        other => panic!("expected the change refused, got {other:?}"),
    }
}

fn sets(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn manual_edits_and_creates_get_the_validators_findings_and_write_nothing() {
    let mut w = World::new(tenant());
    let first = w.bundle(&[]);
    w.sync(&first);
    let before = all_records(&w.store, Entity::Users);
    let written = w.store.records_written();
    let edit_user = |w: &World, sets_: &[(&str, &str)]| {
        edit::edit(
            &w.store,
            "d1",
            Entity::Users,
            "tch-1",
            &sets(sets_),
            "support",
        )
    };

    // A dangling reference, bad userIds, a line break inside a name: what the validator says of the same row.
    let dangling = refused(edit_user(&w, &[("orgSourcedIds", "sch-9")]));
    assert_eq!(
        dangling,
        vec![(
            "ref.missing".to_string(),
            Some("orgSourcedIds".to_string()),
            "\"sch-9\" is not a sourcedId in orgs.csv".to_string(),
            Some("add the record to orgs.csv, or correct the reference".to_string()),
        )]
    );
    let tch1 = "tch-1,,,true,sch-1,";
    assert_eq!(
        dangling,
        validator_says(
            &mut w,
            &[("users.csv", tch1, "tch-1,,,true,sch-9,")],
            "users.csv",
            "tch-1,"
        )
    );
    let user_ids = refused(edit_user(&w, &[("userIds", "{LDAP}")]));
    assert_eq!(user_ids[0].0, "userids.invalid");
    assert_eq!(
        user_ids,
        validator_says(
            &mut w,
            &[("users.csv", "{LDAP:ana.lopez}", "{LDAP}")],
            "users.csv",
            "tch-1,"
        )
    );
    let line_break = refused(edit_user(&w, &[("givenName", "Ana\nMaria")]));
    assert_eq!(
        line_break,
        vec![(
            "field.line_break".to_string(),
            Some("givenName".to_string()),
            "the value has a line break inside it".to_string(),
            Some(
                "keep the value on one line: remove the line break in the SIS (it usually comes from a paste)"
                    .to_string()
            ),
        )]
    );
    assert_eq!(
        line_break,
        validator_says(
            &mut w,
            &[("users.csv", ",Ana,", ",\"Ana\nMaria\",")],
            "users.csv",
            "tch-1,"
        )
    );
    // Clearing a required field is a blank required value.
    let cleared = refused(edit_user(&w, &[("username", "")]));
    assert_eq!(
        cleared,
        validator_says(
            &mut w,
            &[("users.csv", ",ana.lopez,", ",,")],
            "users.csv",
            "tch-1,"
        )
    );
    assert_eq!(cleared[0].0, "field.required");
    // The product's own flag is a boolean, checked as a boolean column is.
    let flag = refused(edit_user(&w, &[("primaryAdministrator", "banana")]));
    let enabled = validator_says(
        &mut w,
        &[("users.csv", tch1, "tch-1,,,banana,sch-1,")],
        "users.csv",
        "tch-1,",
    );
    assert_eq!(flag.len(), 1);
    assert_eq!(flag[0].0, "bool.invalid");
    assert_eq!(flag[0].1.as_deref(), Some("primaryAdministrator"));
    assert_eq!((&flag[0].2, &flag[0].3), (&enabled[0].2, &enabled[0].3));

    // Creates: a user with no role or username, a record with no fields, an enrollment with no school.
    let create = |entity, id, pairs: &[(&str, &str)]| {
        edit::create(&w.store, "d1", entity, id, &sets(pairs), "support")
    };
    let columns = |said: &[Said]| -> Vec<(String, String)> {
        said.iter()
            .map(|s| (s.0.clone(), s.1.clone().unwrap_or_default()))
            .collect()
    };
    let required = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ("field.required".to_string(), n.to_string()))
            .collect()
    };
    let mut partial = tutor();
    partial.retain(|(k, _)| k != "role" && k != "username");
    let no_role = edit::create(
        &w.store,
        "d1",
        Entity::Users,
        "tutor-1",
        &partial,
        "support",
    );
    assert_eq!(columns(&refused(no_role)), required(&["role", "username"]));
    assert_eq!(
        columns(&refused(create(Entity::Users, "tutor-2", &[]))),
        required(&[
            "enabledUser",
            "orgSourcedIds",
            "role",
            "username",
            "givenName",
            "familyName"
        ])
    );
    let enrollment = [
        ("classSourcedId", "cls-1"),
        ("userSourcedId", "stu-1"),
        ("role", "student"),
    ];
    assert_eq!(
        columns(&refused(create(Entity::Enrollments, "enr-9", &enrollment))),
        required(&["schoolSourcedId"])
    );
    let bad_id = refused(create(Entity::Users, "tutor 3", &[]));
    assert_eq!(bad_id[0].0, "field.guid");
    assert_eq!(bad_id[0].1.as_deref(), Some("sourcedId"));

    // Nothing of it was written.
    assert_eq!(w.store.records_written(), written);
    assert_eq!(all_records(&w.store, Entity::Users), before);
    assert!(
        w.store
            .get_record("d1", Entity::Enrollments, "enr-9")
            .expect("read")
            .is_none()
    );

    // The message names the record and every finding.
    let err = edit_user(&w, &[("orgSourcedIds", "sch-9")]).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "users tch-1 was not changed: a sync would reject it (1 error)\n  error ref.missing, orgSourcedIds: \
         \"sch-9\" is not a sourcedId in orgs.csv\n    hint: add the record to orgs.csv, or correct the reference"
    );
    // A valid edit and a valid create still go through.
    edit_user(&w, &[("orgSourcedIds", "sch-1,sch-2")]).expect("edit");
    edit::create(
        &w.store,
        "d1",
        Entity::Users,
        "tutor-1",
        &tutor(),
        "support",
    )
    .expect("create");
    create(
        Entity::Enrollments,
        "enr-9",
        &[
            ("classSourcedId", "cls-1"),
            ("schoolSourcedId", "sch-1"),
            ("userSourcedId", "tutor-1"),
            ("role", "proctor"),
        ],
    )
    .expect("create enrollment");
}
