//! Validation findings: what is wrong (or odd), where, and what to do about it. Findings are data, never
//! `Err`: a validator keeps going after the first bad row and reports every finding.

use serde::Serialize;
use std::borrow::Cow;

/// Whether a finding blocks the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The bundle is rejected.
    Error,
    /// Worth fixing; the bundle is still accepted.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($variant:ident => $code:literal, $about:literal;)*) => {
        /// A stable finding code. The string form (`enum.case`) is what other tools match on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            /// Every code, in the order they are documented.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable string form.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// One line on what the code means.
            pub fn about(self) -> &'static str {
                match self { $(Code::$variant => $about,)* }
            }
        }
    };
}

codes! {
    InputNestedFolder => "input.nested_folder", "the zip's files sit in one top folder instead of the zip root";
    InputUnknownFile => "input.unknown_file", "a file that is not part of OneRoster 1.1 (ignored)";
    InputFileNameCase => "input.file_name_case", "a OneRoster file name with the wrong capitalisation";
    InputDuplicateFile => "input.duplicate_file", "the same file appears twice in the bundle";
    InputUnsafePath => "input.unsafe_path", "a zip entry whose name climbs out of the bundle (`..` or absolute)";
    InputNotRegular => "input.not_regular_file", "a name in a folder bundle that is a link, pipe or device (not read)";
    InputSizeMismatch => "input.size_mismatch", "a zip entry holding another number of bytes than its header declares";
    InputSingleFile => "input.single_file", "one CSV was checked on its own: no manifest, references to other files not checked";
    ManifestMissing => "manifest.missing", "the bundle has no manifest.csv";
    ManifestHeader => "manifest.header", "manifest.csv's header is not `propertyName,value`";
    ManifestRow => "manifest.row", "a manifest row that does not have exactly two fields";
    ManifestVersionMissing => "manifest.version_missing", "no `manifest.version` property";
    ManifestVersion => "manifest.version", "`manifest.version` is not 1.0";
    ManifestVersionExcel => "manifest.version_excel", "`manifest.version` is `1` (a spreadsheet dropped the `.0`)";
    OneRosterVersionMissing => "oneroster.version_missing", "no `oneroster.version` property";
    OneRosterVersion => "oneroster.version", "`oneroster.version` is not 1.1";
    ManifestMode => "manifest.mode", "a `file.*` value that is not absent, bulk or delta";
    ManifestFileMissing => "manifest.file_missing", "the manifest declares a file as bulk or delta but it is not in the bundle";
    ManifestFileNotDeclared => "manifest.file_not_declared", "a file is in the bundle but the manifest says absent or does not list it";
    ManifestFileRowMissing => "manifest.file_row_missing", "no `file.*` row for a file (it is taken as absent)";
    ManifestUnknownProperty => "manifest.unknown_property", "a manifest property that OneRoster 1.1 does not define";
    ManifestDuplicateProperty => "manifest.duplicate_property", "the same manifest property twice";
    ManifestQuoted => "manifest.quoted", "a manifest value wrapped in quotes inside the field";
    ManifestWhitespace => "manifest.whitespace", "a manifest name or value with spaces around it";
    FileEmpty => "file.empty", "a file with no header row";
    FileNoRows => "file.no_rows", "a file with a header and no data rows";
    CsvRecordTooLong => "csv.record_too_long", "a row longer than the limit (skipped)";
    CsvTooManyFields => "csv.too_many_fields", "a row or header with more fields than the limit (skipped)";
    CsvFieldCount => "csv.field_count", "a row with a different number of fields than the header";
    CsvFieldTooLong => "csv.field_too_long", "a field longer than the limit";
    EncodingUtf8 => "encoding.utf8", "bytes that are not UTF-8";
    EncodingNul => "encoding.nul", "a NUL byte inside a field";
    EncodingUtf16 => "encoding.utf16", "a file saved as UTF-16 instead of UTF-8 (not read)";
    HeaderMissing => "header.missing", "a required column is not in the header";
    HeaderMissingOptional => "header.missing_optional", "an optional column is not in the header";
    HeaderCase => "header.case", "a column name with the wrong capitalisation";
    HeaderMisspelt => "header.misspelt", "a column name close to a OneRoster name (1.0, REST or singular/plural slip)";
    HeaderDuplicate => "header.duplicate", "the same column twice";
    HeaderUnknown => "header.unknown", "a column that is not OneRoster 1.1 and not `metadata.*` (ignored)";
    HeaderOrder => "header.order", "columns not in spec order, or extension columns left of spec columns";
    FieldRequired => "field.required", "a required value is blank";
    FieldLineBreak => "field.line_break", "a value with a line break inside it";
    FieldGuid => "field.guid", "a sourcedId that is not a usable identifier";
    EnumInvalid => "enum.invalid", "a value outside the column's vocabulary";
    EnumCase => "enum.case", "a vocabulary value with the wrong capitalisation";
    EnumDeprecated => "enum.deprecated", "a OneRoster 1.0 value (read as its 1.1 equivalent)";
    BoolInvalid => "bool.invalid", "a boolean that is not `true` or `false`";
    BoolCase => "bool.case", "`TRUE`/`FALSE` (a spreadsheet's spelling), read as `true`/`false`";
    DateInvalid => "date.invalid", "a date that is not a real `YYYY-MM-DD` date";
    DateTimeInvalid => "datetime.invalid", "a date-time that is not ISO 8601 UTC";
    DateTimeBareDate => "datetime.bare_date", "a date where a date-time belongs (read as midnight UTC)";
    YearInvalid => "year.invalid", "a year that is not four digits";
    FloatInvalid => "float.invalid", "a number that does not parse";
    GradeInvalid => "grade.invalid", "a grade that is not a CEDS code";
    ListEmptyItem => "list.empty_item", "an empty item in a comma-separated list";
    ListSpaces => "list.spaces", "spaces around list items (trimmed)";
    ListLengthMismatch => "list.length_mismatch", "`subjects` and `subjectCodes` of different lengths";
    UserIdsInvalid => "userids.invalid", "a `userIds` item not of the form `{type:identifier}`";
    BulkStatusNotBlank => "bulk.status_not_blank", "a bulk row with `status` filled";
    BulkDateLastModifiedNotBlank => "bulk.date_last_modified_not_blank", "a bulk row with `dateLastModified` filled";
    DeltaStatusBlank => "delta.status_blank", "a delta row without `status`";
    DeltaDateLastModifiedBlank => "delta.date_last_modified_blank", "a delta row without `dateLastModified`";
    IdDuplicate => "id.duplicate", "a sourcedId used twice in one file";
    RefMissing => "ref.missing", "a reference to a record the bundle does not define";
    RefTargetAbsent => "ref.target_absent", "a file references records of a file the bundle does not include";
    RefNotSchool => "ref.not_school", "a `schoolSourcedId` that points at an org whose type is not school";
    RefWrongType => "ref.wrong_type", "a reference to a record of the wrong kind";
    RefCycle => "ref.cycle", "parents that loop back on themselves";
    EnrollmentRoleMismatch => "enrollment.role_mismatch", "an enrollment role that differs from the user's role";
    EnrollmentSchoolMismatch => "enrollment.school_mismatch", "an enrollment's school differs from its class's school";
    DatesOrder => "dates.order", "an end date that is not after its start date";
    ReportTruncated => "report.truncated", "more findings than the report keeps (counts stay exact)";
}

/// One thing the validator noticed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(serialize_with = "serialize_code")]
    pub code: Code,
    pub file: Option<Cow<'static, str>>,
    pub line: Option<u64>,
    pub column: Option<Cow<'static, str>>,
    pub value: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

fn serialize_code<S: serde::Serializer>(code: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

/// Values longer than this are cut in findings, so a report stays readable.
pub const MAX_VALUE_CHARS: usize = 80;

/// The offending value as shown in a finding: lossy UTF-8, control characters made visible, cut to a sane length.
pub fn shown_value(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(MAX_VALUE_CHARS + 3));
    for (i, ch) in text.chars().enumerate() {
        if i == MAX_VALUE_CHARS {
            out.push('…');
            break;
        }
        match ch {
            '\0' => out.push_str("\\0"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl Finding {
    /// A finding with just a code, severity and message; the builder methods add where and what.
    pub fn new(severity: Severity, code: Code, message: impl Into<String>) -> Finding {
        Finding {
            severity,
            code,
            file: None,
            line: None,
            column: None,
            value: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn error(code: Code, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Error, code, message)
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Warning, code, message)
    }

    pub fn file(mut self, file: impl Into<Cow<'static, str>>) -> Finding {
        self.file = Some(file.into());
        self
    }

    pub fn line(mut self, line: u64) -> Finding {
        self.line = Some(line);
        self
    }

    pub fn column(mut self, column: impl Into<Cow<'static, str>>) -> Finding {
        self.column = Some(column.into());
        self
    }

    pub fn value(mut self, value: &[u8]) -> Finding {
        self.value = Some(shown_value(value));
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(hint.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_dotted() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert!(code.as_str().contains('.'), "{}", code.as_str());
        }
    }

    #[test]
    fn shown_values_are_cut_and_made_visible() {
        assert_eq!(shown_value(b"a\0b\r\n"), "a\\0b\\r\\n");
        let long = "x".repeat(500);
        let shown = shown_value(long.as_bytes());
        assert_eq!(shown.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(shown_value(b"caf\xe9"), "caf\u{fffd}");
    }
}
