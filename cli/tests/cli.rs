//! The `rollcall` command as a user runs it: exit codes, the JSON report other tools read, the text report
//! people read, help texts, and the district generator.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rollcall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run rollcall")
}

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/base")
}

/// A copy of the base bundle in a temporary folder, with `edit` applied to one file.
fn bundle_with(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in fs::read_dir(base()).expect("base") {
        let path = entry.expect("entry").path();
        fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let path = dir.path().join(file);
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, edit(text)).expect("write");
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_valid_bundle_exits_0_with_a_one_line_verdict() {
    let out = rollcall(&["validate", base().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        "valid: 13 files, 27 rows, 0 errors, 0 warnings"
    );
}

#[test]
fn an_invalid_bundle_exits_1_and_the_json_locates_the_problem() {
    let dir = bundle_with("classes.csv", |t| t.replace(",scheduled,", ",Scheduled,"));
    let out = rollcall(&[
        "validate",
        dir.path().to_str().expect("path"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(json["valid"], false);
    assert_eq!(json["oneroster_version"], "1.1");
    assert_eq!(
        json["counts"],
        serde_json::json!({"errors": 1, "warnings": 0})
    );
    assert_eq!(
        json["files"]["classes.csv"],
        serde_json::json!({"mode": "bulk", "rows": 2})
    );
    assert_eq!(
        json["findings"],
        serde_json::json!([{
            "severity": "error",
            "code": "enum.case",
            "file": "classes.csv",
            "line": 3,
            "column": "classType",
            "value": "Scheduled",
            "message": "\"Scheduled\" must be written \"scheduled\"; values are case-sensitive",
            "hint": "did you mean scheduled?"
        }])
    );
}

#[test]
fn unreadable_input_exits_2_with_a_message() {
    let out = rollcall(&["validate", "/no/such/roster.zip"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "error: /no/such/roster.zip: no such file or folder"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn two_hundred_thousand_bad_rows_give_a_short_report() {
    let dir = bundle_with("classes.csv", |mut t| {
        for i in 0..200_000 {
            t.push_str(&format!(
                "cls-x{i},,,T,,crs-1,,Scheduled,,sch-1,s1-2027,,,\n"
            ));
        }
        t
    });
    let out = rollcall(&["validate", dir.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.lines().count() < 20, "{text}");
    assert!(text.contains("error enum.case ×200000"), "{text}");
    assert!(
        text.contains("line 4, classType: \"Scheduled\" must be written \"scheduled\""),
        "{text}"
    );
    assert!(text.contains("… and 199997 more"), "{text}");
    assert!(text.contains("hint: did you mean scheduled?"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("invalid: 13 files, 200027 rows, 200000 errors, 0 warnings"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn every_command_explains_itself_with_an_example() {
    for command in ["validate", "gen", "demo", "bench"] {
        let out = rollcall(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command}");
        let text = stdout(&out);
        assert!(
            text.contains("Example"),
            "{command} --help has no example:\n{text}"
        );
    }
    let top = stdout(&rollcall(&["--help"]));
    for command in ["validate", "gen", "demo", "bench"] {
        assert!(top.contains(command), "{top}");
    }
}

#[test]
fn generated_districts_are_deterministic_and_valid() {
    let dir = tempfile::tempdir().expect("temp");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for out in [&a, &b] {
        let run = rollcall(&[
            "gen",
            "--users",
            "1500",
            "--seed",
            "7",
            "--guardians",
            "--out",
            out.to_str().expect("path"),
        ]);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(stdout(&run).contains("1500 users"), "{}", stdout(&run));
    }
    let mut names: Vec<_> = fs::read_dir(&a)
        .expect("a")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 8);
    for name in &names {
        assert_eq!(
            fs::read(a.join(name)).expect("a"),
            fs::read(b.join(name)).expect("b"),
            "{name:?}"
        );
    }
    let out = rollcall(&["validate", a.to_str().expect("path"), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        json["counts"],
        serde_json::json!({"errors": 0, "warnings": 0}),
        "{}",
        stdout(&out)
    );
    assert_eq!(json["files"]["users.csv"]["rows"], 1500);

    let zip = dir.path().join("district.zip");
    let run = rollcall(&[
        "gen",
        "--users",
        "800",
        "--out",
        zip.to_str().expect("path"),
    ]);
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(
        rollcall(&["validate", zip.to_str().expect("path")])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn the_demo_runs_the_whole_local_pipeline() {
    let out = rollcall(&["demo", "--users", "600"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    for expected in [
        "valid: 7 files",
        "applied (",
        "(manual, by support)",
        "primaryAdministrator = \"true\"",
        "error enum.case",
        "rejected: the bundle is invalid, nothing was changed",
        "held: enrollments:",
        "would be archived; the threshold is 10%",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// Runs `rollcall` against one database.
fn with_db(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env("ROLLCALL_DB", db)
        .output()
        .expect("run rollcall")
}

#[test]
fn a_tenant_is_synced_from_the_command_line_with_exit_codes_for_each_outcome() {
    let dir = tempfile::tempdir().expect("temp");
    let db = dir.path().join("roster.db");
    let bundle = base();
    let bundle = bundle.to_str().expect("path");

    let out = with_db(&db, &["sync", bundle, "--tenant", "maple"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: there is no tenant \"maple\"; add it first with `rollcall tenant add maple`"
    );

    let out = with_db(
        &db,
        &[
            "tenant",
            "add",
            "maple",
            "--name",
            "Maple Valley USD",
            "--archive-threshold",
            "0.2",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        "added tenant maple (Maple Valley USD): policy preserve_manual, source sftp, hold above 20% archived or 75% updated, filters: none, manual creation allowed"
    );

    let out = with_db(
        &db,
        &["sync", bundle, "--tenant", "maple", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{json}");
    assert_eq!(json["status"], "applied");
    assert_eq!(
        json["findings"],
        serde_json::json!({"errors": 0, "warnings": 0})
    );
    assert_eq!(
        json["counts"]["users"],
        serde_json::json!({"create": 5, "update": 0, "archive": 0, "restore": 0, "unchanged": 0, "kept_manual": 0, "out_of_scope": 0})
    );
    let entities: Vec<&str> = json["counts"]
        .as_object()
        .expect("counts")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        entities,
        [
            "academicSessions",
            "classes",
            "courses",
            "demographics",
            "enrollments",
            "orgs",
            "users"
        ]
    );
    let batch = json["batch"].as_str().expect("batch id").to_string();

    let again = with_db(
        &db,
        &["sync", bundle, "--tenant", "maple", "--format", "json"],
    );
    assert_eq!(again.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(json["status"], "already_applied");
    assert_eq!(json["batch"], batch.as_str());

    let broken = bundle_with("enrollments.csv", |t| {
        t.lines().take(2).map(|l| format!("{l}\n")).collect()
    });
    let held = with_db(
        &db,
        &[
            "sync",
            broken.path().to_str().expect("path"),
            "--tenant",
            "maple",
        ],
    );
    assert_eq!(held.status.code(), Some(3));
    let text = stdout(&held);
    assert!(text.contains("held: enrollments: 3 of 4 active records (75.0%) would be archived; the threshold is 20%"), "{text}");
    let held_id = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(':').next())
        .expect("batch id")
        .to_string();
    let approved = with_db(&db, &["approve", &held_id]);
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );

    let invalid = bundle_with("classes.csv", |t| t.replace(",scheduled,", ",Scheduled,"));
    let out = with_db(
        &db,
        &[
            "sync",
            invalid.path().to_str().expect("path"),
            "--tenant",
            "maple",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("rejected: the bundle is invalid, nothing was changed (1 error, 0 warnings)")
    );

    let history = stdout(&with_db(&db, &["history", "--tenant", "maple"]));
    let statuses: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(statuses, ["applied", "applied", "rejected"], "{history}");

    let edit = with_db(
        &db,
        &[
            "edit",
            "--tenant",
            "maple",
            "users",
            "stu-1",
            "--set",
            "givenName=Ana",
            "--by",
            "alice",
        ],
    );
    assert_eq!(
        edit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&edit.stderr)
    );
    let shown = stdout(&with_db(
        &db,
        &["show", "--tenant", "maple", "users", "stu-1"],
    ));
    assert!(
        shown.contains("givenName = \"Ana\"  [manual, by alice at "),
        "{shown}"
    );
    assert!(shown.contains("(the SIS says \"Cara\")"), "{shown}");
    let found = stdout(&with_db(
        &db,
        &["find", "--tenant", "maple", "--user-id", "ClassLink:4512"],
    ));
    assert!(
        found.starts_with("users tch-2 active origin sis"),
        "{found}"
    );
    let bad = with_db(
        &db,
        &[
            "edit",
            "--tenant",
            "maple",
            "users",
            "stu-1",
            "--set",
            "role=pupil",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "error: users stu-1 was not changed: a sync would reject it (1 error)\n  error enum.invalid, role: \
         \"pupil\" is not one of the allowed values\n    hint: allowed: administrator, aide, guardian, parent, \
         proctor, relative, student, teacher\n"
    );
}
