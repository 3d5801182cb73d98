//! Running the local pipeline as an operator does, with real processes: a sync killed midway and what the next
//! command finds, leases held by live and dead runs, edits racing syncs and each other, approvals from another
//! working folder, syncing the working folder itself, and paging through a large entity.

use rollcall::store::sqlite::SqliteStore;
use rollcall::store::{Lease, LeaseStore};
use rollcall::sync::lease::{Holder, host_name};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/base")
}

fn rollcall(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollcall"));
    cmd.args(args).env("ROLLCALL_DB", db).env("NO_COLOR", "1");
    cmd
}

fn run(db: &Path, args: &[&str]) -> Output {
    rollcall(db, args).output().expect("run rollcall")
}

fn ok(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rollcall {args:?}\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_base(to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(base()).expect("base") {
        let path = entry.expect("entry").path();
        fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// Removes three of four enrollments: a broken export the guard holds.
fn break_enrollments(dir: &Path) {
    let path = dir.join("enrollments.csv");
    let text = fs::read_to_string(&path).expect("read");
    let kept: Vec<&str> = text.lines().take(2).collect();
    fs::write(&path, kept.join("\n") + "\n").expect("write");
}

fn generate(dir: &Path, users: u64, name: &str) -> PathBuf {
    let out = dir.join(name);
    let users = users.to_string();
    ok(
        &dir.join("unused.db"),
        &[
            "gen",
            "--users",
            &users,
            "--out",
            out.to_str().expect("path"),
        ],
    );
    out
}

/// A copy of a generated district (files copied, so each copy can be changed on its own).
fn copy_district(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("district") {
        let path = entry.expect("entry").path();
        fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// Waits until `rollcall history` shows a batch in `status`, then kills the child with SIGKILL.
fn kill_when(db: &Path, child: &mut Child, status: &str) {
    let started = Instant::now();
    loop {
        let history = stdout(&run(db, &["history", "--tenant", "t1"]));
        if history.lines().any(|l| l.contains(&format!(" {status} "))) {
            break;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the sync ended before it was {status}: {history}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never {status}: {history}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

#[test]
fn a_sync_killed_while_planning_is_taken_over_by_the_next_sync_and_shows_in_history() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    let district = generate(dir.path(), 6_000, "district");
    ok(&db, &["tenant", "add", "t1"]);
    let path = district.to_str().expect("path");
    // GIVEN a sync killed with SIGKILL once its batch is recorded
    let mut child = rollcall(&db, &["sync", path, "--tenant", "t1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    kill_when(&db, &mut child, "validated");
    // WHEN the next sync comes, it does not wait: it takes the dead run's lease over and says so
    let started = Instant::now();
    let out = ok(&db, &["sync", path, "--tenant", "t1", "--wait", "600"]);
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "it did not wait for the dead run"
    );
    assert!(
        out.contains(&format!(
            "note: took over tenant t1's lease from pid {pid} on {host} (sync of {path}, since ",
            host = host_name()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "process {pid} on {} is no longer running",
            host_name()
        )),
        "{out}"
    );
    assert!(out.contains("was left validated by a run that stopped; it is marked failed (nothing of it was applied)"), "{out}");
    assert!(out.contains(": applied ("), "{out}");
    // THEN history shows the dead run's batch as failed, with why
    let history = ok(&db, &["history", "--tenant", "t1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(lines[0].contains(" failed "), "{history}");
    assert!(
        lines[0].ends_with(
            "(the run that handled it stopped before it finished; nothing of it was applied)"
        ),
        "{history}"
    );
    assert!(lines[1].contains(" applied "), "{history}");
}

#[test]
fn a_sync_killed_while_applying_is_finished_by_the_next_command_of_the_tenant() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    let district = generate(dir.path(), 6_000, "district");
    ok(&db, &["tenant", "add", "t1"]);
    let path = district.to_str().expect("path");
    let mut child = rollcall(&db, &["sync", path, "--tenant", "t1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    kill_when(&db, &mut child, "applying");
    let history = ok(&db, &["history", "--tenant", "t1"]);
    let batch = history
        .split_whitespace()
        .next()
        .expect("batch")
        .to_string();
    // Nothing of the batch is visible while it is applying: the local roster is all or nothing.
    assert_eq!(
        ok(&db, &["show", "--tenant", "t1", "users", "--limit", "1"]),
        ""
    );
    // The same bundle again: the run first finishes the batch, then finds the bundle applied.
    let out = ok(&db, &["sync", path, "--tenant", "t1"]);
    assert!(
        out.contains(&format!(
            "note: resumed batch {batch}, which a run that stopped had begun to apply: now applied ("
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("batch {batch}: already applied")),
        "{out}"
    );
    let history = ok(&db, &["history", "--tenant", "t1"]);
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains(" applied "), "{history}");
    let users = ok(&db, &["show", "--tenant", "t1", "users"]);
    let generated = fs::read_to_string(district.join("users.csv")).expect("users");
    assert_eq!(users.lines().count(), generated.lines().count() - 1);
}

/// A lease held by this test process: alive for as long as the test runs.
fn live_lease(db: &Path, tenant: &str) -> Lease {
    let store = SqliteStore::open(db).expect("store");
    let now = rollcall::model::now();
    let lease = Lease {
        holder: Holder::this_process().id,
        purpose: "sync of elsewhere.zip".into(),
        batch: None,
        acquired_at: now,
        expires_at: now + 120,
    };
    assert!(store.try_lease(tenant, &lease, None).expect("lease"));
    lease
}

#[test]
fn commands_wait_for_a_live_run_saying_for_whom_then_give_up() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    ok(&db, &["tenant", "add", "t1"]);
    let bundle = base();
    let path = bundle.to_str().expect("path");
    live_lease(&db, "t1");
    let me = format!("pid {} on {}", std::process::id(), host_name());
    for args in [
        vec!["sync", path, "--tenant", "t1", "--wait", "1"],
        vec!["tenant", "unlock", "t1"],
    ] {
        let out = run(&db, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        if args[0] == "sync" {
            assert!(
                err.starts_with(&format!(
                    "waiting up to 1s: tenant t1 is busy: {me} is running a sync of elsewhere.zip (since "
                )),
                "{err}"
            );
            assert!(
                err.contains("and it did not finish within 1s; try again when it is done (if that run is gone, `rollcall tenant unlock` clears its lease)"),
                "{err}"
            );
        } else {
            assert!(
                err.contains(&format!(
                    "error: tenant t1's lease is held by {me}, which is alive and running a sync of elsewhere.zip"
                )),
                "{err}"
            );
        }
    }
}

#[test]
fn a_lease_left_by_a_dead_run_is_cleared_by_unlock() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    ok(&db, &["tenant", "add", "t1"]);
    assert_eq!(
        ok(&db, &["tenant", "unlock", "t1"]),
        "tenant t1 has no lease; nothing to clear\n"
    );
    let mut child = Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("wait");
    let store = SqliteStore::open(&db).expect("store");
    let lease = Lease {
        holder: format!("local:{}:{dead}:1:0", host_name()),
        purpose: "sync of roster.zip".into(),
        batch: None,
        acquired_at: 0,
        expires_at: u64::MAX / 2,
    };
    assert!(store.try_lease("t1", &lease, None).expect("lease"));
    assert_eq!(
        ok(&db, &["tenant", "unlock", "t1"]),
        format!(
            "cleared tenant t1's lease, held by pid {dead} on {host} for a sync of roster.zip since 1970-01-01T00:00:00Z: process {dead} on {host} is no longer running\n",
            host = host_name()
        )
    );
    assert_eq!(store.get_lease("t1").expect("lease"), None);
}

#[test]
fn twenty_concurrent_edits_of_one_record_from_twenty_processes_are_all_kept() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    ok(&db, &["tenant", "add", "t1"]);
    ok(
        &db,
        &["sync", base().to_str().expect("path"), "--tenant", "t1"],
    );
    let children: Vec<Child> = (0..20)
        .map(|n| {
            rollcall(
                &db,
                &[
                    "edit",
                    "--tenant",
                    "t1",
                    "users",
                    "stu-1",
                    "--set",
                    &format!("metadata.note{n:02}=edit {n}"),
                    "--by",
                    &format!("editor-{n}"),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("edit");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let shown = ok(
        &db,
        &[
            "show", "--tenant", "t1", "users", "stu-1", "--format", "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let fields = json[0]["fields"].as_object().expect("fields");
    let notes: Vec<&String> = fields
        .keys()
        .filter(|k| k.starts_with("metadata.note"))
        .collect();
    assert_eq!(notes.len(), 20, "{shown}");
    for n in 0..20 {
        assert_eq!(fields[&format!("metadata.note{n:02}")], format!("edit {n}"));
        assert_eq!(
            json[0]["provenance"][format!("metadata.note{n:02}")]["by"],
            format!("editor-{n}")
        );
    }
    assert_eq!(json[0]["version"], 21);
}

#[test]
fn a_manual_edit_racing_a_sync_in_another_process_keeps_both_under_preserve_manual() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    let district = generate(dir.path(), 3_000, "day1");
    ok(&db, &["tenant", "add", "t1", "--update-threshold", "1"]);
    ok(
        &db,
        &["sync", district.to_str().expect("path"), "--tenant", "t1"],
    );
    let victim = "stu-0000010";
    for (round, delay_ms) in [0u64, 150, 400, 800, 1500].into_iter().enumerate() {
        // The SIS renames every student's family (so the sync has work to do) ...
        let day = dir.path().join(format!("day{}", round + 2));
        copy_district(&district, &day);
        let text = fs::read_to_string(day.join("users.csv")).expect("users");
        let renamed: Vec<String> = text
            .lines()
            .map(|l| {
                let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
                if l.starts_with("stu-") {
                    fields[9] = format!("{}{round}", fields[9]);
                }
                if l.starts_with(&format!("{victim},")) {
                    fields[9] = format!("Family{round}");
                }
                fields.join(",")
            })
            .collect();
        fs::write(day.join("users.csv"), renamed.join("\n") + "\n").expect("write");
        let sync = rollcall(
            &db,
            &["sync", day.to_str().expect("path"), "--tenant", "t1"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
        // ... while support renames the student by hand.
        std::thread::sleep(Duration::from_millis(delay_ms));
        ok(
            &db,
            &[
                "edit",
                "--tenant",
                "t1",
                "users",
                victim,
                "--set",
                &format!("givenName=Manual{round}"),
                "--by",
                "support",
            ],
        );
        let synced = sync.wait_with_output().expect("sync");
        assert_eq!(synced.status.code(), Some(0), "{}", stderr(&synced));
        let shown = ok(
            &db,
            &[
                "show", "--tenant", "t1", "users", victim, "--format", "json",
            ],
        );
        let json: serde_json::Value = serde_json::from_str(&shown).expect("json");
        assert_eq!(
            json[0]["fields"]["givenName"],
            format!("Manual{round}"),
            "round {round}: the edit survives"
        );
        assert_eq!(
            json[0]["fields"]["familyName"],
            format!("Family{round}"),
            "round {round}: the sync's change survives"
        );
        // The bundle is applied, and its records really are: sending it again changes nothing.
        let again = ok(
            &db,
            &["sync", day.to_str().expect("path"), "--tenant", "t1"],
        );
        assert!(again.contains("already applied"), "{again}");
    }
}

#[test]
fn a_held_batch_is_approved_from_another_working_folder() {
    let dir = tempfile::tempdir().expect("temp");
    let work = dir.path().join("work");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    copy_base(&work.join("day1"));
    copy_base(&work.join("day2"));
    break_enrollments(&work.join("day2"));
    let in_work = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(args)
            .current_dir(&work)
            .env_remove("ROLLCALL_DB")
            .output()
            .expect("run")
    };
    assert_eq!(in_work(&["tenant", "add", "t1"]).status.code(), Some(0));
    assert_eq!(
        in_work(&["sync", "day1", "--tenant", "t1"]).status.code(),
        Some(0)
    );
    let held = in_work(&["sync", "day2", "--tenant", "t1", "--format", "json"]);
    assert_eq!(held.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&held.stdout).expect("json");
    let batch = json["batch"].as_str().expect("batch").to_string();
    // From another folder, by the database's absolute path (and by a relative one).
    let absolute = work.join(".rollcall/rollcall.db");
    let approved = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["approve", &batch])
        .current_dir(&elsewhere)
        .env("ROLLCALL_DB", &absolute)
        .output()
        .expect("run");
    assert_eq!(approved.status.code(), Some(0), "{}", stderr(&approved));
    assert!(stdout(&approved).contains(&format!("batch {batch}: applied (3 records written)")));
    let history = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args([
            "history",
            "--tenant",
            "t1",
            "--db",
            "../work/.rollcall/rollcall.db",
        ])
        .current_dir(&elsewhere)
        .env_remove("ROLLCALL_DB")
        .output()
        .expect("run");
    assert!(
        stdout(&history).contains(&format!("{batch} applied")),
        "{}",
        stdout(&history)
    );
}

#[test]
fn syncing_the_working_folder_keeps_only_the_roster_files_and_removes_them_when_done() {
    let dir = tempfile::tempdir().expect("temp");
    let work = dir.path();
    copy_base(work);
    fs::write(work.join("notes.txt"), "not a roster file").expect("write");
    let here = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(args)
            .current_dir(work)
            .env_remove("ROLLCALL_DB")
            .output()
            .expect("run")
    };
    assert_eq!(here(&["tenant", "add", "t1"]).status.code(), Some(0));
    let first = here(&["sync", ".", "--tenant", "t1"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    break_enrollments(work);
    let held = here(&["sync", ".", "--tenant", "t1", "--format", "json"]);
    assert_eq!(held.status.code(), Some(3), "{}", stderr(&held));
    let json: serde_json::Value = serde_json::from_slice(&held.stdout).expect("json");
    let batch = json["batch"].as_str().expect("batch");
    let kept = work.join(format!(".rollcall/rollcall.blobs/bundles/t1/{batch}"));
    let mut names: Vec<String> = fs::read_dir(&kept)
        .expect("kept copy")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = fs::read_dir(base())
        .expect("base")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "only the OneRoster files, no .rollcall inside"
    );
    let rejected = here(&["reject", batch]);
    assert_eq!(rejected.status.code(), Some(0));
    assert!(!kept.exists(), "the kept copy is removed with the batch");
    for kind in ["staged", "bundles"] {
        let left: Vec<PathBuf> = walk(&work.join(".rollcall/rollcall.blobs").join(kind));
        assert!(left.is_empty(), "nothing is left in {kind}/: {left:?}");
    }
    let reports = walk(&work.join(".rollcall/rollcall.blobs/reports/t1"));
    assert_eq!(
        reports.len(),
        4,
        "each batch's report is kept, as JSON and text: {reports:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn show_streams_an_entity_and_pages_it_with_limit_and_after() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    let district = generate(dir.path(), 2_500, "district");
    ok(&db, &["tenant", "add", "t1"]);
    ok(
        &db,
        &["sync", district.to_str().expect("path"), "--tenant", "t1"],
    );
    let all = ok(&db, &["show", "--tenant", "t1", "enrollments"]);
    let generated = fs::read_to_string(district.join("enrollments.csv")).expect("enrollments");
    let mut ids: Vec<&str> = generated
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    ids.sort();
    assert_eq!(
        all.lines().count(),
        ids.len(),
        "every record, past one page"
    );
    let first: Vec<String> = ok(
        &db,
        &["show", "--tenant", "t1", "enrollments", "--limit", "3"],
    )
    .lines()
    .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
    .collect();
    assert_eq!(first, ids[..3]);
    let next: Vec<String> = ok(
        &db,
        &[
            "show",
            "--tenant",
            "t1",
            "enrollments",
            "--limit",
            "2",
            "--after",
            &first[2],
        ],
    )
    .lines()
    .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
    .collect();
    assert_eq!(next, ids[3..5]);
    let json = ok(
        &db,
        &[
            "show",
            "--tenant",
            "t1",
            "enrollments",
            "--format",
            "json",
            "--limit",
            "1500",
        ],
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("one JSON array");
    assert_eq!(parsed.as_array().map(Vec::len), Some(1500));
    let empty = ok(
        &db,
        &[
            "show", "--tenant", "t1", "orgs", "--format", "json", "--after", "zzz",
        ],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&empty).expect("json"),
        serde_json::json!([])
    );
}

#[test]
fn a_zip_bomb_is_refused_with_the_flag_that_raises_the_limit() {
    let dir = tempfile::tempdir().expect("temp");
    let zip_path = dir.path().join("bomb.zip");
    let file = fs::File::create(&zip_path).expect("create");
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    use std::io::Write as _;
    zip.start_file("manifest.csv", opts).expect("entry");
    zip.write_all(
        b"propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.users,bulk\n",
    )
    .expect("write");
    zip.start_file("users.csv", opts).expect("entry");
    zip.write_all(b"sourcedId,status,dateLastModified\n")
        .expect("write");
    zip.write_all(&vec![b'a'; 8 << 20]).expect("write");
    zip.finish().expect("finish");
    let out = run(
        &dir.path().join("db"),
        &["validate", zip_path.to_str().expect("path")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("over the limit of 200× (a zip bomb?); raise the compression-ratio limit if this is genuine; raise it with --max-ratio"), "{err}");
}
