//! Fixture tests: each case under `fixtures/cases/<name>/` is the valid base bundle in `fixtures/base/` with a
//! few files replaced (and the files named in `REMOVE` taken out). `expected` lists every finding the case must
//! produce, one per line as `severity code file line column` (`-` for none), in report order: exactly these,
//! no more.

use rollcall::{Limits, NoProgress, validate_path};
use std::fs;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The base bundle with the case's files laid over it, in a fresh temporary folder.
fn assemble(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let case_dir = fixtures().join("cases").join(case);
    assert!(case_dir.is_dir(), "no fixture folder for {case}");
    for entry in fs::read_dir(fixtures().join("base")).expect("base fixtures") {
        let path = entry.expect("entry").path();
        fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy base");
    }
    if let Ok(remove) = fs::read_to_string(case_dir.join("REMOVE")) {
        for name in remove.lines().filter(|l| !l.is_empty()) {
            fs::remove_file(dir.path().join(name)).expect("remove listed file");
        }
    }
    for entry in fs::read_dir(&case_dir).expect("case dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name != "expected" && name != "REMOVE" {
            fs::copy(&path, dir.path().join(&name)).expect("copy case file");
        }
    }
    dir
}

fn check(case: &str) {
    let dir = assemble(case);
    let report =
        validate_path(dir.path(), &Limits::default(), &NoProgress).expect("bundle readable");
    let report_findings = report.findings.to_vec();

    let actual: Vec<String> = report_findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {}",
                f.severity.as_str(),
                f.code.as_str(),
                f.file.as_deref().unwrap_or("-"),
                f.line.map_or("-".to_string(), |l| l.to_string()),
                f.column.as_deref().unwrap_or("-")
            )
        })
        .collect();
    let expected: Vec<String> =
        fs::read_to_string(fixtures().join("cases").join(case).join("expected"))
            .expect("expected file")
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
    let report_findings = report.findings.to_vec();

    let messages: Vec<String> = report_findings
        .iter()
        .map(|f| format!("{} ({:?})", f.message, f.hint))
        .collect();
    assert_eq!(actual, expected, "case {case}; messages: {messages:#?}");
    let errors = expected.iter().filter(|l| l.starts_with("error ")).count();
    assert_eq!(report.valid, errors == 0, "case {case}: valid flag");
    assert_eq!(
        report.counts.errors as usize, errors,
        "case {case}: error count"
    );
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check(stringify!($name)); } )*

        #[test]
        fn every_fixture_folder_is_a_test() {
            let listed = [$(stringify!($name)),*];
            let mut missing = Vec::new();
            for entry in fs::read_dir(fixtures().join("cases")).expect("cases") {
                let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
                if !listed.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
            assert!(missing.is_empty(), "fixture folders without a test: {missing:?}");
        }
    };
}

#[test]
fn a_repeated_enrollment_id_is_named_in_its_finding() {
    let dir = assemble("enrollment_id_duplicate");
    let report = validate_path(dir.path(), &Limits::default(), &NoProgress).expect("readable");
    let f = &report.findings.get(0).expect("finding");
    assert_eq!(f.value.as_deref(), Some("enr-2"));
    assert_eq!(
        f.message,
        "the sourcedId \"enr-2\" is already used on line 3"
    );
}

#[test]
fn base_bundle_is_valid_with_no_findings() {
    let report =
        validate_path(&fixtures().join("base"), &Limits::default(), &NoProgress).expect("readable");
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.files.len(), 13);
    assert_eq!(report.files["users.csv"].rows, 5);
    assert_eq!(report.oneroster_version.as_deref(), Some("1.1"));
}

cases! {
    bool_invalid,
    bulk_date_last_modified_filled,
    bulk_status_filled,
    class_resource_missing,
    classes_class_type_wrong_case,
    course_school_year_is_a_semester,
    date_impossible,
    date_us_format,
    delta_date_last_modified_bare_date,
    delta_date_last_modified_blank,
    delta_date_last_modified_non_ascii,
    delta_date_last_modified_not_iso,
    delta_file_without_status_column,
    delta_status_blank,
    delta_status_inactive_from_1_0,
    delta_tobedeleted_needs_only_sourced_id,
    delta_valid,
    demographics_for_unknown_user,
    encoding_latin1,
    enrollment_id_duplicate,
    enrollment_role_differs_from_user,
    enrollment_school_differs_from_class,
    enrollments_role_aide,
    field_guid_with_space,
    field_required_blank,
    file_empty,
    file_header_only,
    float_invalid,
    grade_without_leading_zero,
    grades_space_separated,
    header_columns_out_of_order,
    header_duplicate,
    header_grade_singular,
    header_metadata_extension,
    header_metadata_left_of_spec,
    header_missing_optional,
    header_missing_required,
    header_org_sourced_id_singular,
    header_unknown,
    header_wrong_case,
    id_duplicate,
    input_file_name_case,
    input_unknown_file_roles,
    line_item_class_missing,
    list_empty_item,
    list_spaces_after_commas,
    manifest_declared_file_missing,
    manifest_duplicate_property,
    manifest_header_row_missing,
    manifest_header_wrong,
    manifest_missing,
    manifest_mode_wrong_case,
    manifest_quoted_values,
    manifest_row_missing_file_absent,
    manifest_row_missing_file_present,
    manifest_says_absent_file_present,
    manifest_space_after_comma,
    manifest_unknown_property_typo,
    manifest_version_excel,
    manifest_version_missing,
    manifest_version_wrong,
    nul_byte_in_field,
    oneroster_version_1_2,
    oneroster_version_missing,
    org_parent_cycle,
    org_parent_defined_below,
    org_parent_missing,
    orgs_without_sourced_id_column,
    quirk_bom_crlf,
    quirk_cr_only_line_ends,
    quirk_demographics_1_0_headers,
    quirk_excel_true_false,
    ref_missing_delta_into_bulk_is_error,
    ref_missing_delta_is_warning,
    ref_missing_user,
    ref_school_is_district,
    ref_target_file_absent,
    resources_roles_wrong_case,
    result_line_item_missing,
    session_ends_before_it_starts,
    session_is_its_own_parent,
    subjects_and_codes_differ,
    term_missing,
    unquoted_comma_shifts_fields,
    user_agent_missing,
    user_agent_repeated_and_missing,
    user_ids_without_braces,
    users_role_not_in_vocabulary,
    year_two_digits,
}
