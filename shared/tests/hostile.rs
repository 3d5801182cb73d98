//! Hostile and odd input: zip bombs, unsafe entry names, nested folders, absurd lines, fields and column
//! counts, inputs that are not bundles at all. Each must end in a clear finding or a clear `InputError`, never a
//! panic and never unbounded memory.

use rollcall::validate::finding::Code;
use rollcall::{InputError, Limits, NoProgress, Report, validate_path};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/base")
}

fn base_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(base())
        .expect("base")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(fs::File::create(path).expect("create zip"));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(name.as_str(), options).expect("start entry");
        zip.write_all(data).expect("write entry");
    }
    zip.finish().expect("finish zip");
}

fn validate(path: &Path) -> Report {
    validate_path(path, &Limits::default(), &NoProgress).expect("readable bundle")
}

/// Where a finding points: (code, file, line, column).
type Located = (Code, Option<String>, Option<u64>, Option<String>);

/// (code, file, line, column) of every finding.
fn located(report: &Report) -> Vec<Located> {
    report
        .findings
        .iter()
        .map(|f| {
            (
                f.code,
                f.file.as_deref().map(str::to_string),
                f.line,
                f.column.as_deref().map(str::to_string),
            )
        })
        .collect()
}

fn with_file(name: &str, data: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let mut files = base_files();
    for entry in &mut files {
        if entry.0 == name {
            entry.1 = data.clone();
        }
    }
    files
}

#[test]
fn a_zip_of_the_base_bundle_is_valid() {
    let dir = tempfile::tempdir().expect("temp");
    let zip = dir.path().join("roster.zip");
    write_zip(&zip, &base_files());
    let report = validate(&zip);
    assert!(report.findings.is_empty(), "{:?}", located(&report));
    assert_eq!(report.files.len(), 13);
}

#[test]
fn a_zip_whose_files_sit_in_one_folder_is_read_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp");
    let zip = dir.path().join("roster.zip");
    let mut entries: Vec<_> = base_files()
        .into_iter()
        .map(|(name, data)| (format!("OneRoster Export/{name}"), data))
        .collect();
    entries.push((
        "__MACOSX/OneRoster Export/._users.csv".into(),
        b"\0\x05".to_vec(),
    ));
    entries.push(("OneRoster Export/.DS_Store".into(), b"\0".to_vec()));
    write_zip(&zip, &entries);
    let report = validate(&zip);
    assert_eq!(
        located(&report),
        [(Code::InputNestedFolder, None, None, None)]
    );
    assert!(report.valid);
    assert_eq!(report.files["users.csv"].rows, 5);
    assert!(
        report
            .findings
            .get(0)
            .expect("finding")
            .message
            .contains("OneRoster Export/")
    );
}

#[test]
fn a_folder_whose_files_sit_in_one_subfolder_is_read_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp");
    let inner = dir.path().join("export");
    fs::create_dir(&inner).expect("mkdir");
    for (name, data) in base_files() {
        fs::write(inner.join(name), data).expect("write");
    }
    let report = validate(dir.path());
    assert_eq!(
        located(&report),
        [(Code::InputNestedFolder, None, None, None)]
    );
    assert_eq!(report.files.len(), 13);
}

#[test]
fn zip_entries_that_climb_out_are_reported_and_not_read() {
    let dir = tempfile::tempdir().expect("temp");
    let zip = dir.path().join("roster.zip");
    let mut entries = base_files();
    entries.push(("../../etc/cron.d/evil.csv".into(), b"x".to_vec()));
    entries.push(("reports/../../users.csv".into(), b"root".to_vec()));
    entries.push(("/etc/passwd.csv".into(), b"root".to_vec()));
    write_zip(&zip, &entries);
    let report = validate(&zip);
    let codes: Vec<_> = report.findings.iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        [
            Code::InputUnsafePath,
            Code::InputUnsafePath,
            Code::InputUnsafePath
        ]
    );
    assert_eq!(
        report.findings.get(0).expect("finding").value.as_deref(),
        Some("../../etc/cron.d/evil.csv")
    );
    assert!(!report.valid);
    assert_eq!(
        report.files.len(),
        13,
        "the rest of the bundle is still checked"
    );
}

#[test]
fn a_zip_bomb_is_refused_by_its_compression_ratio() {
    let dir = tempfile::tempdir().expect("temp");
    let zip = dir.path().join("bomb.zip");
    let mut bomb = b"sourcedId,status,dateLastModified\n".to_vec();
    bomb.extend(std::iter::repeat_n(b'a', 8 << 20));
    write_zip(&zip, &with_file("users.csv", bomb));
    let err = validate_path(&zip, &Limits::default(), &NoProgress).expect_err("refused");
    assert!(
        matches!(err, InputError::Ratio { ref entry, .. } if entry == "users.csv"),
        "{err}"
    );
    // The library names the limit; the `rollcall` command adds its flag (cli/tests/cli.rs).
    assert!(err.to_string().contains("compression-ratio limit"), "{err}");
}

#[test]
fn the_ratio_limit_can_be_raised() {
    let dir = tempfile::tempdir().expect("temp");
    let zip = dir.path().join("bomb.zip");
    let mut users = fs::read(base().join("users.csv")).expect("users");
    // A very compressible but genuine file: the same user row padded with a long blank-free password.
    let line = format!(
        "stu-9,,,true,sch-1,student,x,,X,Y,,,,,,,,{}\n",
        "p".repeat(4 << 20)
    );
    users.extend(line.as_bytes());
    write_zip(&zip, &with_file("users.csv", users));
    let limits = Limits {
        max_compression_ratio: 100_000,
        max_record_bytes: 8 << 20,
        max_field_bytes: 8 << 20,
        ..Limits::default()
    };
    let report = validate_path(&zip, &limits, &NoProgress).expect("accepted with a raised limit");
    assert_eq!(report.files["users.csv"].rows, 6);
}

#[test]
fn total_uncompressed_size_and_entry_count_are_bounded() {
    let dir = tempfile::tempdir().expect("temp");
    let zip = dir.path().join("roster.zip");
    write_zip(&zip, &base_files());
    let small = Limits {
        max_uncompressed_bytes: 1_000,
        ..Limits::default()
    };
    let err = validate_path(&zip, &small, &NoProgress).expect_err("too large");
    assert!(
        matches!(err, InputError::TooLarge { limit: 1_000, .. }),
        "{err}"
    );
    let few = Limits {
        max_zip_entries: 5,
        ..Limits::default()
    };
    let err = validate_path(&zip, &few, &NoProgress).expect_err("too many entries");
    assert!(
        matches!(
            err,
            InputError::TooManyEntries {
                entries: 14,
                limit: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn inputs_that_are_not_bundles_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp");
    let missing = validate_path(
        &dir.path().join("nope.zip"),
        &Limits::default(),
        &NoProgress,
    );
    assert!(matches!(missing, Err(InputError::NotFound { .. })));
    let fake = dir.path().join("roster.zip");
    fs::write(&fake, b"this is not a zip").expect("write");
    let err = validate_path(&fake, &Limits::default(), &NoProgress).expect_err("not a zip");
    assert!(matches!(err, InputError::NotZip { .. }), "{err}");
    let notes = dir.path().join("notes.txt");
    fs::write(&notes, b"hello").expect("write");
    let err = validate_path(&notes, &Limits::default(), &NoProgress).expect_err("not a bundle");
    assert!(matches!(err, InputError::NotBundle { .. }), "{err}");
}

#[test]
fn a_single_csv_is_checked_on_its_own() {
    let report = validate(&base().join("users.csv"));
    assert_eq!(
        located(&report),
        [(Code::InputSingleFile, None, None, None)]
    );
    assert!(report.valid);
    assert_eq!(report.files["users.csv"].mode, None);

    let dir = tempfile::tempdir().expect("temp");
    let classes = dir.path().join("classes.csv");
    let text = fs::read_to_string(base().join("classes.csv")).expect("classes");
    fs::write(&classes, text.replace(",scheduled,", ",Scheduled,")).expect("write");
    let report = validate(&classes);
    let found = located(&report);
    assert_eq!(
        found[1],
        (
            Code::EnumCase,
            Some("classes.csv".into()),
            Some(3),
            Some("classType".into())
        )
    );
    assert_eq!(
        found.len(),
        2,
        "references to other files are not checked: {found:?}"
    );
}

#[test]
fn pointing_at_manifest_csv_checks_its_folder() {
    let report = validate(&base().join("manifest.csv"));
    assert!(report.findings.is_empty());
    assert_eq!(report.files.len(), 13);
}

#[test]
fn an_absurdly_long_field_is_reported_and_reading_goes_on() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    let mut users = fs::read_to_string(base().join("users.csv")).expect("users");
    users.push_str(&format!(
        "stu-9,,,true,sch-1,student,long,,{},Y,,,,,,,,\n",
        "g".repeat(100_000)
    ));
    users.push_str("stu-10,,,maybe,sch-1,student,ok,,X,Y,,,,,,,,\n");
    fs::write(dir.path().join("users.csv"), users).expect("write");
    let report = validate(dir.path());
    assert_eq!(
        located(&report),
        [
            (
                Code::CsvFieldTooLong,
                Some("users.csv".into()),
                Some(7),
                Some("givenName".into())
            ),
            (
                Code::BoolInvalid,
                Some("users.csv".into()),
                Some(8),
                Some("enabledUser".into())
            ),
        ]
    );
    let first = report.findings.get(0).expect("finding");
    let shown = first.value.as_deref().expect("value shown");
    assert!(
        shown.chars().count() <= 81,
        "the value is cut: {} chars",
        shown.chars().count()
    );
}

#[test]
fn a_runaway_row_is_skipped_within_the_row_limit() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    // An unclosed quote swallows everything after it into one enormous field.
    let mut users = fs::read_to_string(base().join("users.csv")).expect("users");
    users.push_str("stu-9,,,true,sch-1,student,\"open,,X,Y,,,,,,,,\n");
    users.push_str(&"x,".repeat(200_000));
    fs::write(dir.path().join("users.csv"), users).expect("write");
    let limits = Limits {
        max_record_bytes: 64 << 10,
        ..Limits::default()
    };
    let report = validate_path(dir.path(), &limits, &NoProgress).expect("readable");
    let found = located(&report);
    assert_eq!(
        found,
        [(
            Code::CsvRecordTooLong,
            Some("users.csv".into()),
            Some(7),
            None
        )]
    );
    assert!(
        report
            .findings
            .get(0)
            .expect("finding")
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("unclosed quote")
    );
}

#[test]
fn thousands_of_columns_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    let header: Vec<String> = (0..5_000).map(|i| format!("c{i}")).collect();
    fs::write(
        dir.path().join("categories.csv"),
        format!("{}\n", header.join(",")),
    )
    .expect("write");
    let report = validate(dir.path());
    let found = located(&report);
    assert!(
        found.contains(&(
            Code::CsvTooManyFields,
            Some("categories.csv".into()),
            Some(1),
            None
        )),
        "{found:?}"
    );
    assert_eq!(report.files["categories.csv"].rows, 0);
    // lineItems reference categories, which could not be indexed: no flood of ref.missing.
    assert!(!found.iter().any(|f| f.0 == Code::RefMissing), "{found:?}");
}

#[test]
fn findings_past_the_limit_are_counted_not_kept() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    let mut classes = fs::read_to_string(base().join("classes.csv")).expect("classes");
    for i in 0..50 {
        classes.push_str(&format!(
            "cls-x{i},,,T,,crs-1,,Scheduled,,sch-1,s1-2027,,,\n"
        ));
    }
    fs::write(dir.path().join("classes.csv"), classes).expect("write");
    let limits = Limits {
        max_findings: 10,
        ..Limits::default()
    };
    let report = validate_path(dir.path(), &limits, &NoProgress).expect("readable");
    assert_eq!(report.counts.errors, 50);
    assert_eq!(
        report.counts.warnings, 0,
        "the truncation note is not a finding about the bundle"
    );
    assert_eq!(report.findings.len(), 11);
    assert_eq!(
        report.findings.get(0).expect("finding").code,
        Code::ReportTruncated
    );
    assert!(
        report
            .findings
            .get(0)
            .expect("finding")
            .message
            .starts_with("40 more findings")
    );
}

#[test]
fn json_report_has_the_documented_shape() {
    let report = validate(&base());
    let text = report.to_json();
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let top: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  \"").and_then(|l| l.split('"').next()))
        .collect();
    assert_eq!(
        top,
        ["valid", "oneroster_version", "files", "counts", "findings"]
    );
    assert_eq!(
        json["files"]["users.csv"],
        serde_json::json!({"mode": "bulk", "rows": 5})
    );
    assert_eq!(
        json["counts"],
        serde_json::json!({"errors": 0, "warnings": 0})
    );
}

#[test]
fn messages_quote_values_cut_to_a_readable_length() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    let mut users = fs::read_to_string(base().join("users.csv")).expect("users");
    users.push_str(&format!(
        "stu-9,,,{},sch-1,student,u9,,X,Y,,,,,,,,\n",
        "y".repeat(60_000)
    ));
    fs::write(dir.path().join("users.csv"), users).expect("write");
    let report = validate(dir.path());
    assert_eq!(
        located(&report),
        [(
            Code::BoolInvalid,
            Some("users.csv".into()),
            Some(7),
            Some("enabledUser".into())
        )]
    );
    assert!(
        report.findings.get(0).expect("finding").message.len() < 200,
        "{} bytes",
        report.findings.get(0).expect("finding").message.len()
    );
}

#[test]
fn a_utf16_file_gets_one_clear_finding() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    let text = fs::read_to_string(base().join("users.csv")).expect("users");
    let mut utf16 = vec![0xff, 0xfe];
    for unit in text.encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    fs::write(dir.path().join("users.csv"), utf16).expect("write");
    let report = validate(dir.path());
    assert_eq!(
        located(&report),
        [(Code::EncodingUtf16, Some("users.csv".into()), Some(1), None)]
    );
}

#[test]
fn an_exactly_named_file_wins_over_a_misnamed_twin() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    let orgs = fs::read_to_string(base().join("orgs.csv")).expect("orgs");
    fs::write(
        dir.path().join("Orgs.csv"),
        orgs.replace(",school,", ",School,"),
    )
    .expect("write");
    let report = validate(dir.path());
    assert_eq!(
        located(&report),
        [(Code::InputFileNameCase, Some("Orgs.csv".into()), None, None)]
    );
}

/// Rewrites every size a zip's headers declare (local and central), leaving the data as it is.
fn lie_about_sizes(path: &Path, compressed: u32, uncompressed: u32) {
    let mut data = fs::read(path).expect("read zip");
    for (signature, at_compressed) in [(b"PK\x03\x04", 18), (b"PK\x01\x02", 20)] {
        let mut i = 0;
        while let Some(found) = data[i..].windows(4).position(|w| w == signature) {
            let at = i + found + at_compressed;
            data[at..at + 4].copy_from_slice(&compressed.to_le_bytes());
            data[at + 4..at + 8].copy_from_slice(&uncompressed.to_le_bytes());
            i += found + 4;
        }
    }
    fs::write(path, data).expect("write zip");
}

#[test]
fn a_zip_whose_headers_claim_huge_sizes_is_not_believed_when_memory_is_sized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lying.zip");
    write_zip(&path, &base_files());
    let real = fs::metadata(&path).expect("zip").len();
    // Each entry claims 1 GiB (from 256 MiB compressed): within the ratio and total limits, a lie all the same.
    lie_about_sizes(&path, 1 << 28, 1 << 30);
    let bundle = rollcall::read::bundle::Bundle::open(&path, &Limits::default()).expect("opens");
    let users = rollcall::spec::FileKind::Users;
    assert_eq!(bundle.size(users), Some(1 << 30), "what the header says");
    assert_eq!(
        bundle.size_hint(users),
        Some(real * 16),
        "what memory is sized from: at most 16 times the zip's own length"
    );
    // Each entry read to its end holds far less than its header says: a finding per entry, the bundle invalid.
    let report = validate(&path);
    assert!(!report.valid);
    let report_findings = report.findings.to_vec();

    let lies: Vec<&str> = report_findings
        .iter()
        .filter(|f| f.code == Code::InputSizeMismatch)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(lies.len(), base_files().len(), "{lies:#?}");
    let users = fs::read(base().join("users.csv")).expect("users").len();
    assert!(
        lies.contains(
            &format!(
                "the zip's header says users.csv holds 1073741824 bytes, but it holds {users}"
            )
            .as_str()
        ),
        "{lies:#?}"
    );
}

#[test]
fn a_hundred_thousand_listed_findings_are_kept_in_little_memory_and_all_come_back() {
    let dir = tempfile::tempdir().expect("temp");
    for (name, data) in base_files() {
        fs::write(dir.path().join(name), data).expect("write");
    }
    // Every added class has a bad classType: one listed finding each, with its value, message and hint.
    let mut classes = fs::read_to_string(base().join("classes.csv")).expect("classes");
    let n = 100_000;
    for i in 0..n {
        classes.push_str(&format!(
            "cls-x{i},,,Class {i},,crs-1,,Scheduled{i},,sch-1,s1-2027,,,\n"
        ));
    }
    fs::write(dir.path().join("classes.csv"), classes).expect("write");
    let report = validate(dir.path());
    assert_eq!(report.counts.errors, n);
    assert_eq!(report.findings.len(), n as usize);
    // As a vector of findings this list took about 1 KB a finding; packed it takes well under 150 bytes.
    let per_finding = report.findings.heap_bytes() / report.findings.len();
    assert!(per_finding < 150, "{per_finding} bytes a finding");
    let last = report.findings.get(n as usize - 1).expect("last");
    assert_eq!(last.code, Code::EnumInvalid);
    assert_eq!(last.line, Some(n + 3));
    assert_eq!(last.column.as_deref(), Some("classType"));
    assert_eq!(last.value.as_deref(), Some("Scheduled99999"));
    assert_eq!(
        last.message,
        "\"Scheduled99999\" is not one of the allowed values"
    );
    // The streamed JSON lists every one of them.
    let mut json = Vec::new();
    report.write_json(&mut json).expect("write");
    let parsed: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(
        parsed["findings"].as_array().expect("findings").len(),
        n as usize
    );
    assert_eq!(
        parsed["findings"][n as usize - 1]["value"],
        "Scheduled99999"
    );
}
