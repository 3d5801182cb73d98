//! Header checks: exact, case-sensitive names; required columns present; no duplicates; `metadata.*` extension
//! columns accepted; near misses (wrong case, 1.0 and REST names, singular/plural slips) reported with a
//! did-you-mean and still read, so the rest of the report is useful.

use crate::spec::{FileKind, known_misspelling};
use crate::validate::finding::{Code, Finding, shown_value};
use crate::validate::suggest;

/// Where each spec column sits in the file.
#[derive(Clone)]
pub struct HeaderMap {
    /// Field index of each spec column, in spec order.
    pub fields: Vec<Option<usize>>,
    /// Number of fields in the header.
    pub len: usize,
}

/// Maps a header row onto the spec's columns, pushing a finding for everything off.
pub fn map_header(
    kind: FileKind,
    line: u64,
    names: &[Vec<u8>],
    findings: &mut Vec<Finding>,
) -> HeaderMap {
    let file = kind.file_name();
    let columns = kind.columns();
    let mut fields: Vec<Option<usize>> = vec![None; columns.len()];
    let names: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let mut handled = vec![false; names.len()];

    // Exact names first, so a near miss never takes the place of the real column.
    for (fi, name) in names.iter().enumerate() {
        if let Some(pos) = columns.iter().position(|c| c.name == name) {
            handled[fi] = true;
            if fields[pos].is_some() {
                findings.push(
                    Finding::error(
                        Code::HeaderDuplicate,
                        format!("the column {name} appears more than once; only the first is read"),
                    )
                    .file(file)
                    .line(line)
                    .column(name.clone())
                    .hint("remove the extra column"),
                );
            } else {
                fields[pos] = Some(fi);
            }
        } else if name.starts_with("metadata.") && name.len() > "metadata.".len() {
            handled[fi] = true;
        }
    }

    for (fi, name) in names.iter().enumerate() {
        if handled[fi] {
            continue;
        }
        let near = near_miss(kind, name);
        match near {
            Some((pos, code, hint)) => {
                let right = columns[pos].name;
                let mut finding = Finding::error(
                    code,
                    format!("the column {:?} should be {right}", shown_value(name.as_bytes())),
                )
                .file(file)
                .line(line)
                .column(name.clone())
                .value(name.as_bytes())
                .hint(hint);
                if fields[pos].is_none() {
                    fields[pos] = Some(fi);
                } else {
                    finding.message.push_str(" (that column is also present; this one was ignored)");
                }
                findings.push(finding);
            }
            None if name.is_empty() => findings.push(
                Finding::warning(
                    Code::HeaderUnknown,
                    format!("column {} has no name; it was ignored", fi + 1),
                )
                .file(file)
                .line(line)
                .hint("remove the column, or name it metadata.<something> if it carries extension data"),
            ),
            None => findings.push(
                Finding::warning(
                    Code::HeaderUnknown,
                    format!("{:?} is not a {file} column; it was ignored", shown_value(name.as_bytes())),
                )
                .file(file)
                .line(line)
                .column(name.clone())
                .value(name.as_bytes())
                .hint("extension columns must be named metadata.<something> and sit right of the spec columns"),
            ),
        }
    }

    for (pos, column) in columns.iter().enumerate() {
        if fields[pos].is_some() {
            continue;
        }
        let finding = if column.required {
            Finding::error(
                Code::HeaderMissing,
                format!("{file} has no {} column, which is required", column.name),
            )
            .hint(format!("add the {} column", column.name))
        } else {
            Finding::warning(
                Code::HeaderMissingOptional,
                format!("{file} has no {} column (read as blank)", column.name),
            )
            .hint(format!(
                "include every column in the header, even when its values are blank: add {}",
                column.name
            ))
        };
        findings.push(finding.file(file).line(line).column(column.name));
    }

    check_order(kind, line, &names, &fields, findings);
    HeaderMap {
        fields,
        len: names.len(),
    }
}

/// A name that is almost a spec column: which column, what kind of slip, and the hint.
fn near_miss(kind: FileKind, name: &str) -> Option<(usize, Code, String)> {
    let columns = kind.columns();
    // A known slip (1.0 or REST name) explains itself best, even when it differs only by case.
    if let Some((right, why)) = known_misspelling(kind, name) {
        let pos = kind.position(right);
        return Some((
            pos,
            Code::HeaderMisspelt,
            format!("did you mean {right}? {why}"),
        ));
    }
    if let Some(pos) = columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name.trim()))
    {
        let right = columns[pos].name;
        let hint = if name.trim() != name {
            format!("remove the spaces around {right}")
        } else {
            format!("did you mean {right}? header names are case-sensitive")
        };
        return Some((pos, Code::HeaderCase, hint));
    }
    let best = suggest::closest(name, columns.iter().map(|c| c.name))?;
    let pos = kind.position(best);
    Some((pos, Code::HeaderMisspelt, format!("did you mean {best}?")))
}

fn check_order(
    kind: FileKind,
    line: u64,
    names: &[String],
    fields: &[Option<usize>],
    findings: &mut Vec<Finding>,
) {
    let placed: Vec<usize> = fields.iter().flatten().copied().collect();
    let in_order = placed.windows(2).all(|w| w[0] < w[1]);
    let last_spec = placed.iter().max().copied();
    let extension_left = names
        .iter()
        .enumerate()
        .any(|(fi, n)| n.starts_with("metadata.") && last_spec.is_some_and(|last| fi < last));
    if !in_order || extension_left {
        let why = if in_order {
            "metadata.* columns sit left of spec columns"
        } else {
            "the columns are not in spec order"
        };
        let expected: Vec<&str> = kind.columns().iter().map(|c| c.name).collect();
        findings.push(
            Finding::warning(
                Code::HeaderOrder,
                format!("in {}, {why} (read by name)", kind.file_name()),
            )
            .file(kind.file_name())
            .line(line)
            .hint(format!(
                "order the columns {}, then any metadata.* columns",
                expected.join(",")
            )),
        );
    }
}
