//! Files long enough to be read in many batches and checked on several workers at once: findings must come
//! out exactly as a single pass in row order would give them (duplicates across batches point at the first
//! use, references to rows further down resolve, a missing file is reported once), and the same every run.

use rollcall::generate::{GenOptions, OutputFormat, generate};
use rollcall::validate::finding::Code;
use rollcall::{Limits, NoProgress, validate_path};
use std::fs;
use std::path::Path;

/// Replaces data line `line` (1-based, the header is line 1) of a file with what `edit` makes of it.
fn edit_line(path: &Path, line: usize, edit: impl Fn(&str) -> String) {
    let text = fs::read_to_string(path).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[line - 1] = edit(&lines[line - 1]);
    fs::write(path, lines.join("\n") + "\n").expect("write");
}

fn append(path: &Path, row: &str) {
    let mut text = fs::read_to_string(path).expect("read");
    text.push_str(row);
    text.push('\n');
    fs::write(path, text).expect("write");
}

fn line(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).expect("read");
    text.lines().nth(n - 1).expect("line").to_string()
}

fn field(row: &str, i: usize) -> String {
    row.split(',').nth(i).expect("field").to_string()
}

fn lines_in(path: &Path) -> usize {
    fs::read_to_string(path).expect("read").lines().count()
}

#[test]
fn findings_across_many_batches_come_out_in_row_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        users: 8_000,
        guardians: true,
        ..GenOptions::default()
    };
    generate(&opts, dir.path(), OutputFormat::Folder).expect("generate");
    let users = dir.path().join("users.csv");
    let enrollments = dir.path().join("enrollments.csv");
    let enrollment_rows = lines_in(&enrollments);
    assert!(
        enrollment_rows > 4 * 4096,
        "enough rows for several batches"
    );

    // Early, middle and late rows, so the findings come from different batches and workers.
    edit_line(&enrollments, 3, |row| row.replace(",student,", ",pupil,"));
    let middle = enrollment_rows / 2;
    edit_line(&enrollments, middle, |row| {
        row.replace(",student,", ",Student,")
    });
    let first_enrollment = field(&line(&enrollments, 2), 0);
    append(
        &enrollments,
        &format!("{first_enrollment},,,cls-nowhere,sch-0001,stu-0000001,student,false,,"),
    );
    // A row from the middle repeated twice at the end: both repeats point at the middle.
    let middle_id = field(&line(&enrollments, middle + 1), 0);
    let copied = line(&enrollments, 4);
    let (_, rest) = copied.split_once(',').expect("a row");
    for _ in 0..2 {
        append(&enrollments, &format!("{middle_id},{rest}"));
    }
    let user_rows = lines_in(&users);
    // A user whose agent is defined further down: no finding. One whose agent is nowhere: a finding.
    let first_user = line(&users, 2);
    let last_user_id = field(&line(&users, user_rows), 0);
    edit_line(&users, 2, |row| {
        let mut fields: Vec<String> = row.split(',').map(str::to_string).collect();
        fields[15] = last_user_id.clone();
        fields.join(",")
    });
    let mut ghost: Vec<String> = first_user.split(',').map(str::to_string).collect();
    ghost[0] = "usr-ghost".into();
    ghost[6] = "ghost.user".into();
    ghost[15] = "usr-nobody".into();
    append(&users, &ghost.join(","));
    // The first user again, at the very end.
    append(&users, &first_user);

    let user_lines = lines_in(&users);
    let enrollment_lines = lines_in(&enrollments);
    let first = validate_path(dir.path(), &Limits::default(), &NoProgress).expect("readable");
    let first_findings = first.findings.to_vec();

    let got: Vec<(Code, &str, u64)> = first_findings
        .iter()
        .map(|f| (f.code, f.file.as_deref().unwrap_or(""), f.line.unwrap_or(0)))
        .collect();
    assert_eq!(
        got,
        // Files in the spec's order, each in line order.
        vec![
            (Code::EnumInvalid, "enrollments.csv", 3),
            (Code::EnumCase, "enrollments.csv", middle as u64),
            (
                Code::RefMissing,
                "enrollments.csv",
                (enrollment_lines - 2) as u64
            ),
            (
                Code::IdDuplicate,
                "enrollments.csv",
                (enrollment_lines - 2) as u64
            ),
            (
                Code::IdDuplicate,
                "enrollments.csv",
                (enrollment_lines - 1) as u64
            ),
            (
                Code::IdDuplicate,
                "enrollments.csv",
                enrollment_lines as u64
            ),
            (Code::RefMissing, "users.csv", (user_lines - 1) as u64),
            (Code::IdDuplicate, "users.csv", user_lines as u64),
        ],
        "{:#?}",
        first.findings
    );
    assert_eq!(
        first.findings.get(7).expect("finding").message,
        format!(
            "the sourcedId {:?} is already used on line 2",
            field(&first_user, 0)
        )
    );
    assert_eq!(
        first.findings.get(3).expect("finding").message,
        format!("the sourcedId \"{first_enrollment}\" is already used on line 2")
    );
    for repeat in &first.findings.to_vec()[4..6] {
        assert_eq!(
            repeat.message,
            format!(
                "the sourcedId \"{middle_id}\" is already used on line {}",
                middle + 1
            )
        );
    }
    assert_eq!(first.counts.errors, 8);
    assert_eq!(
        first.files["enrollments.csv"].rows,
        (enrollment_lines - 1) as u64
    );

    // Workers finish in whatever order the machine likes; the report does not change.
    for _ in 0..3 {
        let again = validate_path(dir.path(), &Limits::default(), &NoProgress).expect("readable");
        assert_eq!(again.to_json(), first.to_json());
    }
}

#[test]
fn a_missing_file_is_reported_once_however_many_batches_need_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        users: 3_000,
        ..GenOptions::default()
    };
    generate(&opts, dir.path(), OutputFormat::Folder).expect("generate");
    fs::remove_file(dir.path().join("classes.csv")).expect("remove");
    let manifest = fs::read_to_string(dir.path().join("manifest.csv")).expect("manifest");
    fs::write(
        dir.path().join("manifest.csv"),
        manifest.replace("file.classes,bulk", "file.classes,absent"),
    )
    .expect("write");
    let report = validate_path(dir.path(), &Limits::default(), &NoProgress).expect("readable");
    let report_findings = report.findings.to_vec();

    let absent: Vec<(&str, u64, &str)> = report_findings
        .iter()
        .filter(|f| f.code == Code::RefTargetAbsent)
        .map(|f| {
            (
                f.file.as_deref().unwrap_or(""),
                f.line.unwrap_or(0),
                f.column.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(absent, vec![("enrollments.csv", 2, "classSourcedId")]);
}

#[test]
fn nothing_a_row_found_carries_over_to_the_first_row_of_a_later_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        users: 3_000,
        ..GenOptions::default()
    };
    generate(&opts, dir.path(), OutputFormat::Folder).expect("generate");
    let enrollments = dir.path().join("enrollments.csv");
    let rows = lines_in(&enrollments) - 1;
    // Batches hold 4,096 rows, so these are the first rows of every batch after the first. Each names a
    // class and a user that do not exist, with the role of a teacher: what the row before found (a class's
    // school, a student's role) must not be compared with it.
    let starts: Vec<usize> = (1..)
        .map(|k| 2 + 4096 * k)
        .take_while(|&l| l <= rows + 1)
        .collect();
    assert!(starts.len() >= 3, "enough batches: {rows} rows");
    for &at in &starts {
        edit_line(&enrollments, at, |row| {
            let mut fields: Vec<String> = row.split(',').map(str::to_string).collect();
            fields[3] = "cls-nowhere".into();
            fields[5] = "usr-nowhere".into();
            fields[6] = "teacher".into();
            fields.join(",")
        });
    }
    let report = validate_path(dir.path(), &Limits::default(), &NoProgress).expect("readable");
    let report_findings = report.findings.to_vec();

    let got: Vec<(Code, u64, &str)> = report_findings
        .iter()
        .map(|f| {
            (
                f.code,
                f.line.unwrap_or(0),
                f.column.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let want: Vec<(Code, u64, &str)> = starts
        .iter()
        .flat_map(|&at| {
            [
                (Code::RefMissing, at as u64, "classSourcedId"),
                (Code::RefMissing, at as u64, "userSourcedId"),
            ]
        })
        .collect();
    assert_eq!(got, want, "{:#?}", report.findings);
}
