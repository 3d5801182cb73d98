//! Operator-facing defects of the local pipeline, through the binary: tenant ids held to a safe set, reads of
//! an unknown tenant that name it, and the policy spelled as it is stored.

use std::path::Path;
use std::process::{Command, Output};

fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env("ROLLCALL_DB", db)
        .env("NO_COLOR", "1")
        .output()
        .expect("run rollcall")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail with exit 2, and returns its error line.
fn refused(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "", "{args:?}");
    stderr(&out).trim_end().to_string()
}

#[test]
fn tenant_ids_outside_the_safe_set_are_refused_with_the_reason_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let long = "a".repeat(5000);
    let cases: [(&str, &str); 8] = [
        ("", "error: a tenant id may not be empty"),
        (
            "..",
            "error: a tenant id is made of lowercase letters a-z, digits, '-' and '_' (it becomes an S3 prefix and \
             part of DynamoDB keys); character 1 is '.'",
        ),
        (
            "a/b",
            "error: a tenant id is made of lowercase letters a-z, digits, '-' and '_' (it becomes an S3 prefix and \
             part of DynamoDB keys); character 2 is '/'",
        ),
        (
            "maple\u{202e}",
            "error: a tenant id is made of lowercase letters a-z, digits, '-' and '_' (it becomes an S3 prefix and \
             part of DynamoDB keys); character 6 is '\\u{202e}'",
        ),
        (
            "ma\u{200b}ple",
            "error: a tenant id is made of lowercase letters a-z, digits, '-' and '_' (it becomes an S3 prefix and \
             part of DynamoDB keys); character 3 is '\\u{200b}'",
        ),
        (
            "a#b",
            "error: a tenant id is made of lowercase letters a-z, digits, '-' and '_' (it becomes an S3 prefix and \
             part of DynamoDB keys); character 2 is '#'",
        ),
        (
            "-maple",
            "error: a tenant id starts with a letter or a digit",
        ),
        (
            &long,
            "error: a tenant id is at most 64 characters; this one has 5000",
        ),
    ];
    for (id, message) in cases {
        assert_eq!(
            refused(&db, &["tenant", "add", "--", id]),
            message,
            "{id:?}"
        );
    }
    let listed = run(&db, &["tenant", "list"]);
    assert!(
        !stdout(&listed).contains("added") && !stdout(&listed).contains('/'),
        "{}",
        stdout(&listed)
    );
    // The ids the safe set exists for still work.
    let out = run(&db, &["tenant", "add", "maple-valley_2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn show_and_find_name_an_unknown_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    assert_eq!(run(&db, &["tenant", "add", "maple"]).status.code(), Some(0));
    let message =
        "error: there is no tenant \"mapel\"; `rollcall tenant list` shows the tenants there are";
    assert_eq!(
        refused(&db, &["show", "--tenant", "mapel", "users"]),
        message
    );
    assert_eq!(
        refused(&db, &["find", "--tenant", "mapel", "--username", "ava"]),
        message
    );
    assert_eq!(
        refused(&db, &["find", "--tenant", "mapel", "--class", "cls-1"]),
        message
    );
}

#[test]
fn the_policy_is_accepted_as_it_is_stored_and_as_clap_spells_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let out = run(&db, &["tenant", "add", "maple", "--policy", "sis_wins"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("policy sis_wins"), "{}", stdout(&out));
    let out = run(
        &db,
        &["tenant", "set", "maple", "--policy", "preserve_manual"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("policy preserve_manual"),
        "{}",
        stdout(&out)
    );
    let out = run(&db, &["tenant", "set", "maple", "--policy", "sis-wins"]);
    assert!(stdout(&out).contains("policy sis_wins"), "{}", stdout(&out));
}

/// The subcommands `rollcall --help` lists.
fn subcommands(db: &Path) -> Vec<String> {
    let help = stdout(&run(db, &["--help"]));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The option and argument lines of a help text that say nothing about what they are.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut bare = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        // Option and argument lines; not the "- value: what it means" lines of a list of possible values.
        let is_arg = line.starts_with("  ")
            && (trimmed.starts_with('-') || trimmed.starts_with('<'))
            && !trimmed.starts_with("- ");
        if !is_arg {
            continue;
        }
        // "  --tenant <TENANT>  The tenant ..." or the description on the next, deeper-indented line.
        let described_here = trimmed.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
        let indent = line.len() - trimmed.len();
        let described_below = lines.get(i + 1).is_some_and(|next| {
            let t = next.trim_start();
            !t.is_empty() && next.len() - t.len() > indent && !t.starts_with('-')
        });
        if !described_here && !described_below {
            bare.push(trimmed.to_string());
        }
    }
    bare
}

#[test]
fn every_option_and_argument_of_every_command_says_what_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let commands = subcommands(&db);
    assert!(commands.len() >= 15, "{commands:?}");
    let mut missing = Vec::new();
    for command in &commands {
        let mut args: Vec<&str> = vec![command.as_str()];
        let help = stdout(&run(&db, &[command, "--help"]));
        // Commands with subcommands of their own (tenant, bench): each of those too.
        let nested: Vec<String> = help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_string)
            .collect();
        for line in undescribed(&help) {
            missing.push(format!("{command}: {line}"));
        }
        for sub in &nested {
            args.push(sub);
            args.push("--help");
            let help = stdout(&run(&db, &args));
            for line in undescribed(&help) {
                missing.push(format!("{command} {sub}: {line}"));
            }
            args.truncate(1);
        }
    }
    assert!(missing.is_empty(), "undescribed:\n{}", missing.join("\n"));
}

#[test]
fn gen_refuses_a_size_it_cannot_make_a_place_that_is_taken_and_says_a_write_error_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let out = dir.path().join("d.zip");
    let out = out.to_str().expect("path");
    assert_eq!(
        refused(
            &db,
            &["gen", "--users", "18446744073709551615", "--out", out]
        ),
        format!(
            "error: generating a district into {out}: 18446744073709551615 users is more than the generator makes \
             (at most 20000000; the largest US district has about 1M)"
        )
    );
    assert!(!Path::new(out).exists());
    assert_eq!(
        refused(&db, &["gen", "--users", "5", "--out", out]),
        format!(
            "error: generating a district into {out}: a district of 1 school needs at least 13 users (each school \
             needs an administrator, a teacher and students); give more --users or fewer --schools"
        )
    );

    // A bundle there already is never overwritten.
    let made = run(&db, &["gen", "--users", "40", "--out", out]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let before = std::fs::read(out).expect("zip");
    assert_eq!(
        refused(&db, &["gen", "--users", "60", "--seed", "2", "--out", out]),
        format!(
            "error: generating a district into {out}: {out} is there already; choose another place, or remove it first"
        )
    );
    assert_eq!(std::fs::read(out).expect("zip"), before);
    let folder = dir.path().join("folder");
    let folder = folder.to_str().expect("path");
    assert_eq!(
        run(&db, &["gen", "--users", "40", "--out", folder])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        refused(&db, &["gen", "--users", "40", "--out", folder]),
        format!(
            "error: generating a district into {folder}: {folder} is there already; choose another place, or remove \
             it first"
        )
    );

    // A write that fails: the cause once, not once per layer of the error.
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "x").expect("write");
    let inside = file.join("d.zip");
    let inside = inside.to_str().expect("path");
    assert_eq!(
        refused(&db, &["gen", "--users", "40", "--out", inside]),
        format!(
            "error: generating a district into {inside}: {} is not a folder",
            file.display()
        )
    );
    if cfg!(target_os = "linux") {
        // /proc takes no new files: the operating system's reason, said once.
        assert_eq!(
            refused(
                &db,
                &[
                    "gen",
                    "--users",
                    "40",
                    "--out",
                    "/proc/rollcall-district.zip"
                ]
            ),
            "error: generating a district into /proc/rollcall-district.zip: /proc/rollcall-district.zip: cannot \
             write: No such file or directory (os error 2)"
        );
    }
}

fn base() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/base")
}

#[test]
fn a_rejected_sync_says_why_in_its_json_and_in_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    for entry in std::fs::read_dir(base()).expect("base") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, bad.join(p.file_name().expect("name"))).expect("copy");
    }
    let users = std::fs::read_to_string(bad.join("users.csv")).expect("users");
    std::fs::write(
        bad.join("users.csv"),
        users.replacen(",teacher,ana.lopez,", ",tutor,ana.lopez,", 1),
    )
    .expect("write");
    assert_eq!(run(&db, &["tenant", "add", "maple"]).status.code(), Some(0));
    let bad = bad.to_str().expect("path");
    let out = run(&db, &["sync", bad, "--tenant", "maple", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(json["status"], "rejected");
    let batch = json["batch"].as_str().expect("batch").to_string();
    let report = std::path::absolute(dir.path().join("r.blobs"))
        .expect("absolute")
        .join(format!("reports/maple/{batch}/report.json"));
    assert_eq!(
        json["rejection"],
        serde_json::json!({
            "findings_by_code": {"enum.invalid": 1},
            "report": report.display().to_string(),
        })
    );
    let kept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report).expect("the report is where it says"),
    )
    .expect("report json");
    assert_eq!(kept["valid"], false);

    let history = run(&db, &["history", "--tenant", "maple"]);
    let line = stdout(&history);
    let line = line.trim_end();
    assert!(
        line.starts_with(&format!("{batch} rejected     received ")),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            " rejected: 1 error, 0 warnings: enum.invalid 1; report {}",
            report.display()
        )),
        "{line}"
    );
    let history = run(&db, &["history", "--tenant", "maple", "--format", "json"]);
    let batches: serde_json::Value = serde_json::from_str(&stdout(&history)).expect("json");
    assert_eq!(
        batches[0]["findings_by_code"],
        serde_json::json!({"enum.invalid": 1})
    );
    assert_eq!(
        batches[0]["report"],
        format!("reports/maple/{batch}/report.json")
    );
}

#[test]
fn tenant_filters_are_checked_and_filters_that_leave_nobody_hold_the_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    assert_eq!(
        refused(&db, &["tenant", "add", "maple", "--role", "Student"]),
        "error: role filter: \"Student\" must be written \"student\"; values are case-sensitive (did you mean \
         student?)"
    );
    assert_eq!(
        refused(&db, &["tenant", "add", "maple", "--grade", "9"]),
        "error: grade filter: \"9\" is not one of the allowed values (did you mean 09? allowed: IT, PR, PK, TK, \
         KG, 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12, 13, PS, UG, Other)"
    );
    // Nothing was stored: the tenant can be added as it should have been.
    assert_eq!(run(&db, &["tenant", "add", "maple"]).status.code(), Some(0));
    let base = base();
    let base = base.to_str().expect("path");
    assert_eq!(
        run(&db, &["sync", base, "--tenant", "maple"]).status.code(),
        Some(0)
    );
    // A school the roster does not have.
    assert_eq!(
        refused(&db, &["tenant", "set", "maple", "--school", "sch-9"]),
        "error: school filter: tenant maple has no org with the sourcedId or identifier \"sch-9\"; `rollcall show \
         --tenant maple orgs` lists them"
    );
    // Filters that keep nobody: the next sync is held, not applied.
    let out = run(&db, &["tenant", "set", "maple", "--role", "guardian"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).expect("mkdir");
    for entry in std::fs::read_dir(base).expect("base") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, again.join(p.file_name().expect("name"))).expect("copy");
    }
    let manifest = std::fs::read_to_string(again.join("manifest.csv")).expect("manifest");
    std::fs::write(
        again.join("manifest.csv"),
        manifest.replace("Example SIS", "Example SIS v2"),
    )
    .expect("write");
    let out = run(
        &db,
        &[
            "sync",
            again.to_str().expect("path"),
            "--tenant",
            "maple",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(json["status"], "held");
    assert_eq!(
        json["held_reasons"][0],
        "users: the tenant's filters (roles guardian) leave no user in scope (5 would be archived or left out); \
         check the filters with `tenant list`"
    );
}

#[test]
fn a_manifest_without_its_header_row_gets_one_finding_and_its_rows_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let bundle = dir.path().join("b");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    for entry in std::fs::read_dir(base()).expect("base") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, bundle.join(p.file_name().expect("name"))).expect("copy");
    }
    let manifest = std::fs::read_to_string(bundle.join("manifest.csv")).expect("manifest");
    let rows: Vec<&str> = manifest.lines().skip(1).collect();
    std::fs::write(bundle.join("manifest.csv"), rows.join("\n") + "\n").expect("write");
    let out = run(
        &db,
        &[
            "validate",
            bundle.to_str().expect("path"),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["code"], "manifest.header");
    assert_eq!(
        findings[0]["message"],
        "manifest.csv has no header row: its first line is the property \"manifest.version\""
    );
    assert_eq!(
        findings[0]["hint"],
        "add propertyName,value as the first line"
    );
}

#[test]
fn show_gives_fields_cleared_by_hand_and_the_sis_values_beside_manual_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let base = base();
    let base = base.to_str().expect("path");
    assert_eq!(run(&db, &["tenant", "add", "maple"]).status.code(), Some(0));
    assert_eq!(
        run(&db, &["sync", base, "--tenant", "maple"]).status.code(),
        Some(0)
    );
    let edit = run(
        &db,
        &[
            "edit",
            "--tenant",
            "maple",
            "users",
            "stu-1",
            "--set",
            "givenName=Kay",
            "--set",
            "middleName=",
            "--by",
            "support",
        ],
    );
    assert_eq!(edit.status.code(), Some(0), "{}", stderr(&edit));
    let shown = stdout(&run(&db, &["show", "--tenant", "maple", "users", "stu-1"]));
    let line = |field: &str| -> String {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("  {field} = ")))
            .unwrap_or_else(|| panic!("no {field} line in:\n{shown}"))
            .to_string()
    };
    let given = line("givenName");
    assert!(
        given.starts_with("  givenName = \"Kay\"  [manual, by support at 20")
            && given.ends_with("Z] (the SIS says \"Cara\")"),
        "{given}"
    );
    let middle = line("middleName");
    assert!(
        middle.starts_with("  middleName = \"\"  [cleared by hand, by support at 20")
            && middle.ends_with("Z] (the SIS says \"Jo\")"),
        "{middle}"
    );
    assert!(
        line("familyName").starts_with("  familyName = \"Kim\"  [sis, batch "),
        "{shown}"
    );

    let archive = run(
        &db,
        &[
            "archive", "--tenant", "maple", "users", "stu-1", "--by", "support",
        ],
    );
    assert_eq!(archive.status.code(), Some(0), "{}", stderr(&archive));
    let shown = stdout(&run(&db, &["show", "--tenant", "maple", "users", "stu-1"]));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("  archived by hand, by support at 20")),
        "{shown}"
    );
}

#[test]
fn archiving_an_archived_record_changes_nothing_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let base = base();
    assert_eq!(run(&db, &["tenant", "add", "maple"]).status.code(), Some(0));
    let base = base.to_str().expect("path");
    assert_eq!(
        run(&db, &["sync", base, "--tenant", "maple"]).status.code(),
        Some(0)
    );
    let archive = [
        "archive", "--tenant", "maple", "users", "stu-1", "--by", "support",
    ];
    assert_eq!(run(&db, &archive).status.code(), Some(0));
    let show = [
        "show", "--tenant", "maple", "users", "stu-1", "--format", "json",
    ];
    let before = stdout(&run(&db, &show));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = run(&db, &archive);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        "users stu-1 is already archived; nothing changed\n"
    );
    assert_eq!(
        stdout(&run(&db, &show)),
        before,
        "not re-stamped, not re-versioned"
    );
    let restore = run(&db, &["restore", "--tenant", "maple", "users", "stu-2"]);
    assert_eq!(
        stdout(&restore),
        "users stu-2 is already active; nothing changed\n"
    );
}

/// The base bundle with users.csv replaced by `users` (bytes in some encoding).
fn with_users(dir: &Path, name: &str, users: &[u8]) -> std::path::PathBuf {
    let bundle = dir.join(name);
    std::fs::create_dir_all(&bundle).expect("mkdir");
    for entry in std::fs::read_dir(base()).expect("base") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, bundle.join(p.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(bundle.join("users.csv"), users).expect("write");
    bundle
}

/// users.csv with given and family names replaced by `names` (already encoded), in turn.
fn users_named(names: &[&[u8]]) -> Vec<u8> {
    let text = std::fs::read_to_string(base().join("users.csv")).expect("users");
    let mut out = Vec::new();
    let mut next = names.iter().cycle();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if i == 0 || fields.len() < 10 || line.contains('"') {
            out.extend_from_slice(line.as_bytes());
        } else {
            for (f, field) in fields.iter().enumerate() {
                if f > 0 {
                    out.push(b',');
                }
                match f {
                    8 | 9 => out.extend_from_slice(next.next().expect("cycle")),
                    _ => out.extend_from_slice(field.as_bytes()),
                }
            }
        }
        out.push(b'\n');
    }
    out
}

fn hints_of(db: &Path, bundle: &Path) -> (Vec<String>, Vec<String>) {
    let out = run(
        db,
        &[
            "validate",
            bundle.to_str().expect("path"),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let findings = report["findings"].as_array().expect("findings");
    let mut codes: Vec<String> = findings
        .iter()
        .map(|f| f["code"].as_str().unwrap_or("").to_string())
        .collect();
    let mut hints: Vec<String> = findings
        .iter()
        .map(|f| f["hint"].as_str().unwrap_or("").to_string())
        .collect();
    codes.dedup();
    hints.dedup();
    (codes, hints)
}

#[test]
fn a_file_in_another_encoding_is_named_with_how_to_resave_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    // Shift_JIS: 山田, 佐藤, 鈴木, 高橋.
    let sjis: [&[u8]; 4] = [
        b"\x8e\x52\x93\x63",
        b"\x8d\xb2\x93\xa1",
        b"\x97\xe9\x96\xd8",
        b"\x8d\x82\x8b\xb4",
    ];
    let bundle = with_users(dir.path(), "sjis", &users_named(&sjis));
    assert_eq!(
        hints_of(&db, &bundle),
        (
            vec!["encoding.utf8".to_string()],
            vec![
                "the bytes look like Shift_JIS: save users.csv as UTF-8 (in Excel: Save As, \"CSV UTF-8\"; or \
                 convert it with iconv -f SHIFT_JIS -t UTF-8 users.csv > users.csv.utf8)"
                    .to_string()
            ]
        )
    );
    // Mac Roman: Müller, Françoise, Señor, Øyvind.
    let mac: [&[u8]; 4] = [b"M\x9fller", b"Fran\x8doise", b"Se\x96or", b"\xafyvind"];
    let bundle = with_users(dir.path(), "mac", &users_named(&mac));
    assert_eq!(
        hints_of(&db, &bundle).1,
        [
            "the bytes look like windows-1252 (Western; or Mac Roman, if the file was made on a Mac): save \
          users.csv as UTF-8 (in Excel: Save As, \"CSV UTF-8\"; or convert it with iconv -f WINDOWS-1252 -t \
          UTF-8 users.csv > users.csv.utf8)"
        ]
    );
    // UTF-16 LE without a byte-order mark.
    let text = std::fs::read_to_string(base().join("users.csv")).expect("users");
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let bundle = with_users(dir.path(), "utf16", &utf16);
    let out = run(&db, &["validate", bundle.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "    line 1: users.csv is not UTF-8 text (it is UTF-16 LE); the file was not read\n    hint: save \
             users.csv as UTF-8 (in Excel: Save As, \"CSV UTF-8\", not \"Unicode Text\"; or convert it with iconv \
             -f UTF-16LE -t UTF-8 users.csv > users.csv.utf8)\n"
        ),
        "{text}"
    );
}
