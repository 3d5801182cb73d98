//! The validation report: every finding, exact counts, and what was read. Serialises to the stable JSON shape
//! other tools read, and renders a short text form for people (grouped, counted, a few lines per code).

use crate::spec::{FileKind, Mode};
use crate::validate::finding::{Code, Finding, Severity};
use crate::validate::listed::Findings;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What was read of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// `bulk` or `delta` as the manifest declares it; `None` when there is no usable manifest entry.
    #[serde(serialize_with = "serialize_mode")]
    pub mode: Option<Mode>,
    /// Data rows read (the header not counted).
    pub rows: u64,
}

fn serialize_mode<S: serde::Serializer>(mode: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.serialize_str(m.as_str()),
        None => s.serialize_none(),
    }
}

/// Exact numbers of errors and warnings, even when the findings list was cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub errors: u64,
    pub warnings: u64,
}

/// The outcome of validating one bundle.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// No error findings (warnings allowed).
    pub valid: bool,
    /// `oneroster.version` as the manifest states it.
    pub oneroster_version: Option<String>,
    /// Files read, by file name.
    pub files: BTreeMap<String, FileSummary>,
    pub counts: Counts,
    /// Every finding kept, in file then line order (packed: see [`Findings`]).
    pub findings: Findings,
    /// Exact count per (file, code, severity), also for findings past the kept limit.
    #[serde(skip)]
    pub groups: BTreeMap<(FileRank, Code, Severity), u64>,
}

/// Sort key for files in a report: bundle-level findings first, then the manifest, then data files in spec order,
/// then anything else by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileRank(u8, String);

impl FileRank {
    pub fn of(file: Option<&str>) -> FileRank {
        match file {
            None => FileRank(0, String::new()),
            Some("manifest.csv") => FileRank(1, "manifest.csv".into()),
            Some(name) => match FileKind::ALL.iter().position(|k| k.file_name() == name) {
                Some(i) => FileRank(2 + i as u8, name.into()),
                None => FileRank(100, name.into()),
            },
        }
    }

    /// The file name, or `None` for bundle-level findings.
    pub fn name(&self) -> Option<&str> {
        if self.0 == 0 { None } else { Some(&self.1) }
    }
}

/// Collects findings while a bundle is read, keeping at most `max_findings` of them.
pub struct ReportBuilder {
    max_findings: usize,
    findings: Findings,
    counts: Counts,
    groups: BTreeMap<(FileRank, Code, Severity), u64>,
    dropped: u64,
    files: BTreeMap<String, FileSummary>,
    oneroster_version: Option<String>,
}

impl ReportBuilder {
    pub fn new(max_findings: usize) -> ReportBuilder {
        ReportBuilder {
            max_findings,
            findings: Findings::new(),
            counts: Counts::default(),
            groups: BTreeMap::new(),
            dropped: 0,
            files: BTreeMap::new(),
            oneroster_version: None,
        }
    }

    pub fn push(&mut self, finding: Finding) {
        match finding.severity {
            Severity::Error => self.counts.errors += 1,
            Severity::Warning => self.counts.warnings += 1,
        }
        let key = (
            FileRank::of(finding.file.as_deref()),
            finding.code,
            finding.severity,
        );
        *self.groups.entry(key).or_default() += 1;
        if self.findings.len() < self.max_findings {
            self.findings.push(finding);
        } else {
            self.dropped += 1;
        }
    }

    /// How many findings of `code` a file has had so far (also those past the kept limit).
    pub fn count_of(&self, file: &str, code: Code) -> u64 {
        self.groups
            .iter()
            .filter(|((rank, c, _), _)| *c == code && rank.name() == Some(file))
            .map(|(_, n)| n)
            .sum()
    }

    /// Gives every kept finding of `code` in `file` this hint (once what the file as a whole is is known).
    pub fn rehint(&mut self, file: &str, code: Code, hint: &str) {
        self.findings.rehint(file, code, hint);
    }

    pub fn error_count(&self) -> u64 {
        self.counts.errors
    }

    pub fn set_file(&mut self, name: &str, summary: FileSummary) {
        self.files.insert(name.to_string(), summary);
    }

    pub fn set_oneroster_version(&mut self, version: Option<String>) {
        self.oneroster_version = version;
    }

    pub fn finish(mut self) -> Report {
        if self.dropped > 0 {
            let note = Finding::warning(
                Code::ReportTruncated,
                format!(
                    "{} more findings were counted but not listed (the report keeps {})",
                    self.dropped, self.max_findings
                ),
            )
            .hint("fix the listed problems first, or raise the limit on listed findings");
            // A note about the report itself: listed, but not counted among the bundle's findings.
            *self
                .groups
                .entry((FileRank::of(None), note.code, note.severity))
                .or_default() += 1;
            self.findings.push(note);
        }
        // Stable: findings on the same line keep the order they were found in.
        self.findings.sort();
        Report {
            valid: self.counts.errors == 0,
            oneroster_version: self.oneroster_version,
            files: self.files,
            counts: self.counts,
            findings: self.findings,
            groups: self.groups,
        }
    }
}

/// Terminal styling for the text report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Color,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        match self {
            Style::Plain => text.to_string(),
            Style::Color => format!("\x1b[{code}m{text}\x1b[0m"),
        }
    }
}

impl Report {
    /// The stable JSON form.
    /// How many findings of each code there are (errors and warnings, listed or not).
    pub fn counts_by_code(&self) -> BTreeMap<String, u64> {
        let mut by_code = BTreeMap::new();
        for ((_, code, _), n) in &self.groups {
            *by_code.entry(code.as_str().to_string()).or_insert(0) += n;
        }
        by_code
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data to a String cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The stable JSON form, written as it is made (a report listing a million findings is never held as one
    /// string).
    pub fn write_json(&self, out: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(out, self).map_err(std::io::Error::other)
    }

    /// A readable summary: per file, per code, the count and the first `examples` occurrences.
    pub fn render_text(&self, style: Style, examples: usize) -> String {
        let mut out = String::new();
        let mut current_file: Option<Option<&str>> = None;
        // The first `examples` findings of each group, from one pass over the list.
        let mut shown_by_group: BTreeMap<(Option<String>, Code, Severity), Vec<Finding>> =
            BTreeMap::new();
        for f in self.findings.iter() {
            let key = (f.file.as_deref().map(str::to_string), f.code, f.severity);
            let shown = shown_by_group.entry(key).or_default();
            if shown.len() < examples {
                shown.push(f);
            }
        }
        for ((rank, code, severity), count) in &self.groups {
            let file = rank.name();
            if current_file != Some(file) {
                current_file = Some(file);
                let title = match file {
                    None => "bundle".to_string(),
                    Some(name) => match self.files.get(name) {
                        Some(s) => format!(
                            "{name} ({}, {})",
                            s.mode.map_or("mode unknown", Mode::as_str),
                            plural(s.rows, "row")
                        ),
                        None => name.to_string(),
                    },
                };
                let _ = writeln!(out, "\n{}", style.paint("1", &title));
            }
            let label = match severity {
                Severity::Error => style.paint("31;1", "error"),
                Severity::Warning => style.paint("33;1", "warning"),
            };
            let times = if *count == 1 {
                String::new()
            } else {
                format!(" ×{count}")
            };
            let _ = writeln!(out, "  {label} {}{times}: {}", code.as_str(), code.about());
            let shown: Vec<&Finding> = shown_by_group
                .get(&(file.map(str::to_string), *code, *severity))
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            // One hint for the group when every example shares it; otherwise each example carries its own.
            let shared_hint = shown.windows(2).all(|w| w[0].hint == w[1].hint);
            let hint_line = |hint: &str| format!("{} {hint}", style.paint("36", "hint:"));
            for f in &shown {
                let mut place = String::new();
                if let Some(line) = f.line {
                    let _ = write!(place, "line {line}");
                }
                if let Some(column) = &f.column {
                    if !place.is_empty() {
                        place.push_str(", ");
                    }
                    let _ = write!(place, "{column}");
                }
                if !place.is_empty() {
                    place = style.paint("2", &format!("{place}: "));
                }
                let _ = writeln!(out, "    {place}{}", f.message);
                if let (false, Some(hint)) = (shared_hint, &f.hint) {
                    let _ = writeln!(out, "      {}", hint_line(hint));
                }
            }
            let more = count.saturating_sub(shown.len() as u64);
            if more > 0 {
                let _ = writeln!(out, "      … and {more} more");
            }
            if let (true, Some(hint)) = (shared_hint, shown.first().and_then(|f| f.hint.as_deref()))
            {
                let _ = writeln!(out, "    {}", hint_line(hint));
            }
        }
        let verdict = if self.valid {
            style.paint("32;1", "valid")
        } else {
            style.paint("31;1", "invalid")
        };
        let rows: u64 = self.files.values().map(|f| f.rows).sum();
        let _ = writeln!(
            out,
            "\n{verdict}: {}, {}, {}, {}",
            plural(self.files.len() as u64, "file"),
            plural(rows, "row"),
            plural(self.counts.errors, "error"),
            plural(self.counts.warnings, "warning")
        );
        out
    }
}

/// `1 error`, `2 errors`: a count with its noun.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
