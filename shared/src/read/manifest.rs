//! `manifest.csv`: the bundle's versions and each file's mode (absent, bulk or delta). Parsed by hand because
//! it is tiny and because the quirks worth a warning (quoted values, stray spaces, `1` for `1.0`) are only
//! visible in the raw text.

use crate::spec::{FileKind, Mode};
use crate::validate::finding::{Code, Finding, shown_value};
use std::collections::{BTreeMap, HashSet};

const FILE: &str = "manifest.csv";

/// What the manifest says of one data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    Absent,
    Present(Mode),
    /// The value was not absent/bulk/delta (already reported).
    Invalid,
}

/// The parsed manifest.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    /// Line each property was read from.
    pub lines: BTreeMap<String, u64>,
    pub manifest_version: Option<String>,
    pub oneroster_version: Option<String>,
    pub files: BTreeMap<FileKind, Declared>,
    pub source_system_name: Option<String>,
    pub source_system_code: Option<String>,
}

impl Manifest {
    /// The mode of a file as declared, when it is bulk or delta.
    pub fn mode(&self, kind: FileKind) -> Option<Mode> {
        match self.files.get(&kind) {
            Some(Declared::Present(mode)) => Some(*mode),
            _ => None,
        }
    }
}

/// One manifest field as written.
struct RawField {
    text: String,
    quoted: bool,
}

/// Parses manifest bytes, pushing findings for everything off.
pub fn parse(bytes: &[u8], findings: &mut Vec<Finding>) -> Manifest {
    let mut manifest = Manifest::default();
    let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes));
    if text.contains('\u{fffd}') {
        findings.push(
            Finding::error(
                Code::EncodingUtf8,
                "manifest.csv has bytes that are not UTF-8",
            )
            .file(FILE)
            .hint("save the file as UTF-8"),
        );
    }
    // LF, CRLF and a lone CR (old spreadsheets) all end a line.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        findings.push(
            Finding::error(Code::FileEmpty, "manifest.csv is empty")
                .file(FILE)
                .line(1)
                .hint("the first line must be propertyName,value"),
        );
        return manifest;
    };
    let header_fields: Vec<String> = split_fields(header)
        .into_iter()
        .map(|f| f.text.trim().to_string())
        .collect();
    // A manifest without its header row starts with a property: one mistake, one finding, and the row read.
    let first_is_property = header_fields.len() == 2
        && ["manifest.", "oneroster.", "file.", "source."]
            .iter()
            .any(|p| header_fields[0].starts_with(p));
    let mut first_row = None;
    if first_is_property {
        findings.push(
            Finding::error(
                Code::ManifestHeader,
                format!(
                    "manifest.csv has no header row: its first line is the property \"{}\"",
                    shown_value(header_fields[0].as_bytes())
                ),
            )
            .file(FILE)
            .line(header_line)
            .value(header.as_bytes())
            .hint("add propertyName,value as the first line"),
        );
        first_row = Some((header_line, header));
    } else if header_fields != ["propertyName", "value"] {
        findings.push(
            Finding::error(
                Code::ManifestHeader,
                format!(
                    "manifest.csv's header is \"{}\"; it must be propertyName,value",
                    shown_value(header.as_bytes())
                ),
            )
            .file(FILE)
            .line(header_line)
            .value(header.as_bytes())
            .hint("make the first line exactly propertyName,value"),
        );
    }
    let mut seen = HashSet::new();
    for (line, raw) in first_row.into_iter().chain(lines) {
        let fields = split_fields(raw);
        if fields.len() != 2 {
            findings.push(
                Finding::error(
                    Code::ManifestRow,
                    format!(
                        "a manifest row has {} fields; each row is one property and its value",
                        fields.len()
                    ),
                )
                .file(FILE)
                .line(line)
                .value(raw.as_bytes())
                .hint("write each row as name,value (for example file.users,bulk)"),
            );
            continue;
        }
        let name = clean(&fields[0], line, "propertyName", findings);
        let value = clean(&fields[1], line, "value", findings);
        if !seen.insert(name.clone()) {
            findings.push(
                Finding::error(
                    Code::ManifestDuplicateProperty,
                    format!(
                        "{} is set more than once; the first value counts",
                        shown_value(name.as_bytes())
                    ),
                )
                .file(FILE)
                .line(line)
                .column("propertyName")
                .value(name.as_bytes())
                .hint("keep one row per property"),
            );
            continue;
        }
        manifest.lines.insert(name.clone(), line);
        apply(&mut manifest, &name, &value, line, findings);
    }
    check_versions(&manifest, findings);
    manifest
}

fn apply(manifest: &mut Manifest, name: &str, value: &str, line: u64, findings: &mut Vec<Finding>) {
    match name {
        "manifest.version" => manifest.manifest_version = Some(value.to_string()),
        "oneroster.version" => manifest.oneroster_version = Some(value.to_string()),
        "source.systemName" => manifest.source_system_name = Some(value.to_string()),
        "source.systemCode" => manifest.source_system_code = Some(value.to_string()),
        _ => {
            if let Some(kind) = name.strip_prefix("file.").and_then(FileKind::from_name) {
                let declared = match value {
                    "absent" => Declared::Absent,
                    "bulk" => Declared::Present(Mode::Bulk),
                    "delta" => Declared::Present(Mode::Delta),
                    other => {
                        let hint = match ["absent", "bulk", "delta"]
                            .into_iter()
                            .find(|m| m.eq_ignore_ascii_case(other.trim()))
                        {
                            Some(m) => format!("did you mean {m}? values are lower case"),
                            None => "use absent, bulk or delta".to_string(),
                        };
                        findings.push(
                            Finding::error(
                                Code::ManifestMode,
                                format!(
                                    "{name} is \"{}\"; it must be absent, bulk or delta",
                                    shown_value(other.as_bytes())
                                ),
                            )
                            .file(FILE)
                            .line(line)
                            .column("value")
                            .value(other.as_bytes())
                            .hint(hint),
                        );
                        Declared::Invalid
                    }
                };
                manifest.files.insert(kind, declared);
            } else {
                findings.push(unknown_property(name, line));
            }
        }
    }
}

fn unknown_property(name: &str, line: u64) -> Finding {
    let mut known: Vec<String> = FileKind::ALL
        .iter()
        .map(|k| format!("file.{}", k.name()))
        .collect();
    known.extend(
        [
            "manifest.version",
            "oneroster.version",
            "source.systemName",
            "source.systemCode",
        ]
        .map(String::from),
    );
    let hint = match crate::validate::suggest::closest(name, known.iter().map(String::as_str)) {
        Some(best) => format!("did you mean {best}? this row was ignored"),
        None => "this row was ignored; remove it".to_string(),
    };
    Finding::warning(
        Code::ManifestUnknownProperty,
        format!(
            "{} is not a OneRoster 1.1 manifest property",
            shown_value(name.as_bytes())
        ),
    )
    .file(FILE)
    .line(line)
    .column("propertyName")
    .value(name.as_bytes())
    .hint(hint)
}

fn check_versions(manifest: &Manifest, findings: &mut Vec<Finding>) {
    let line_of = |name: &str| manifest.lines.get(name).copied().unwrap_or(0);
    let at = |f: Finding, name: &str| f.line(line_of(name));
    match manifest.manifest_version.as_deref() {
        None => findings.push(
            Finding::error(
                Code::ManifestVersionMissing,
                "manifest.csv has no manifest.version row",
            )
            .file(FILE)
            .hint("add the row manifest.version,1.0"),
        ),
        Some("1.0") => {}
        Some("1") => findings.push(at(
            Finding::warning(
                Code::ManifestVersionExcel,
                "manifest.version is 1, read as 1.0 (a spreadsheet drops the .0)",
            )
            .file(FILE)
            .column("value")
            .value(b"1")
            .hint("write 1.0, and edit CSV files in a plain-text editor"),
            "manifest.version",
        )),
        Some(other) => findings.push(at(
            Finding::error(
                Code::ManifestVersion,
                format!(
                    "manifest.version is \"{}\"; OneRoster 1.1 manifests are version 1.0",
                    shown_value(other.as_bytes())
                ),
            )
            .file(FILE)
            .column("value")
            .value(other.as_bytes())
            .hint("set manifest.version to 1.0"),
            "manifest.version",
        )),
    }
    match manifest.oneroster_version.as_deref() {
        None => findings.push(
            Finding::error(
                Code::OneRosterVersionMissing,
                "manifest.csv has no oneroster.version row",
            )
            .file(FILE)
            .hint("add the row oneroster.version,1.1"),
        ),
        Some("1.1") => {}
        Some(other) => findings.push(at(
            Finding::error(
                Code::OneRosterVersion,
                format!(
                    "oneroster.version is \"{}\"; rollcall reads OneRoster 1.1",
                    shown_value(other.as_bytes())
                ),
            )
            .file(FILE)
            .column("value")
            .value(other.as_bytes())
            .hint("export the roster as OneRoster 1.1 and set oneroster.version to 1.1"),
            "oneroster.version",
        )),
    }
}

/// Trims a field and strips quotes left inside it, warning about each.
fn clean(field: &RawField, line: u64, column: &'static str, findings: &mut Vec<Finding>) -> String {
    let trimmed = field.text.trim();
    if trimmed.len() != field.text.len() {
        findings.push(
            Finding::warning(
                Code::ManifestWhitespace,
                format!(
                    "\"{}\" has spaces around it; read as \"{}\"",
                    shown_value(field.text.as_bytes()),
                    shown_value(trimmed.as_bytes())
                ),
            )
            .file(FILE)
            .line(line)
            .column(column)
            .value(field.text.as_bytes())
            .hint("remove the spaces after the comma"),
        );
    }
    let unquoted = trimmed
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| trimmed.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
        .filter(|t| !t.is_empty());
    if field.quoted || unquoted.is_some() {
        let text = unquoted.unwrap_or(trimmed);
        findings.push(
            Finding::warning(
                Code::ManifestQuoted,
                format!(
                    "{} is written in quotes; read without them",
                    shown_value(text.as_bytes())
                ),
            )
            .file(FILE)
            .line(line)
            .column(column)
            .value(field.text.as_bytes())
            .hint("manifest values need no quotes"),
        );
        return text.to_string();
    }
    trimmed.to_string()
}

/// Splits one CSV line into fields, honouring double quotes (`""` inside quotes is a quote).
fn split_fields(line: &str) -> Vec<RawField> {
    let mut fields = Vec::new();
    let mut text = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c != '"' {
                text.push(c);
            } else if chars.peek() == Some(&'"') {
                text.push('"');
                chars.next();
            } else {
                in_quotes = false;
            }
        } else if c == '"' && !quoted && text.trim().is_empty() {
            quoted = true;
            in_quotes = true;
            text.clear();
        } else if c == ',' {
            fields.push(RawField {
                text: std::mem::take(&mut text),
                quoted,
            });
            quoted = false;
        } else if !(quoted && c.is_whitespace()) {
            text.push(c);
        }
    }
    fields.push(RawField { text, quoted });
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<(String, bool)> {
        split_fields(line)
            .into_iter()
            .map(|f| (f.text, f.quoted))
            .collect()
    }

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(fields("a,b"), [("a".into(), false), ("b".into(), false)]);
        assert_eq!(
            fields("\"a\",\"b\""),
            [("a".into(), true), ("b".into(), true)]
        );
        assert_eq!(
            fields("a, 1.0"),
            [("a".into(), false), (" 1.0".into(), false)]
        );
        assert_eq!(
            fields("a,\"x\"\"y\""),
            [("a".into(), false), ("x\"y".into(), true)]
        );
        assert_eq!(fields("a,b,c").len(), 3);
        assert_eq!(fields("a,").len(), 2);
    }
}
