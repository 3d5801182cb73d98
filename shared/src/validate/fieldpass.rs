//! The field pass over a batch of rows, run on a worker thread: every check of a row that needs nothing but the
//! row itself (encoding, lengths, types, vocabularies, lists, the bulk/delta rules for `status` and
//! `dateLastModified`, date order). It leaves compact facts per row (id, references, vocabulary values) for
//! the link pass that runs next on the same worker.

use super::Plan;
use super::header::HeaderMap;
use super::linkpass::Target;
use super::state::Indexes;
use crate::index::Fp;
use crate::read::csvread::{Flags, RecordView};
use crate::spec::{Column, ColumnType, FileKind, Mode, STATUS_VALUES};
use crate::validate::fields::{self, Problem, Vocabulary};
use crate::validate::finding::{Code, Finding};

/// Most columns any OneRoster 1.1 file has (users.csv).
pub const MAX_COLUMNS: usize = 18;

/// Findings of the field pass, in the order they were found.
#[derive(Default)]
pub struct Pending(pub Vec<Finding>);

impl Pending {
    pub fn push(&mut self, finding: Finding) {
        self.0.push(finding);
    }
}

/// One reference item of a row: a single reference column, or one item of a list.
pub struct RefItem {
    /// Spec position of the column.
    pub pos: u8,
    /// Whether the column is a list (list items carry no attributes for later checks).
    pub list: bool,
    pub fp: Fp,
    /// The id as written, as a range of the batch's record data.
    pub text: (u32, u32),
}

/// What the field pass learned about one row.
#[derive(Clone, Copy)]
pub struct RowFacts {
    pub line: u64,
    /// `tobedeleted` (or 1.0 `inactive`): references are not checked.
    pub deleting: bool,
    pub id: Option<Fp>,
    pub id_text: (u32, u32),
    /// Index of the row's `type` (orgs, sessions) or `role` (users, enrollments) in its vocabulary, the one
    /// value the link checks compare; `u8::MAX` when blank, invalid or not a column of the file.
    pub vocab: u8,
    /// Range of [`Batch::refs`].
    pub refs: (u32, u32),
    /// Range of [`Batch::findings`].
    pub findings: (u32, u32),
}

impl RowFacts {
    fn new(line: u64) -> RowFacts {
        RowFacts {
            line,
            deleting: false,
            id: None,
            id_text: (0, 0),
            vocab: u8::MAX,
            refs: (0, 0),
            findings: (0, 0),
        }
    }
}

/// What the checks learned about a batch of rows (texts are ranges of the batch's record data).
#[derive(Default)]
pub struct Batch {
    pub rows: Vec<RowFacts>,
    pub refs: Vec<RefItem>,
    /// The field pass's findings; after the link pass, every finding of the batch, row by row.
    pub findings: Pending,
}

impl Batch {
    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.refs.clear();
        self.findings.0.clear();
    }
}

/// What a blank value means for a column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blank {
    /// Nothing to check.
    Fine,
    /// The value is required (unless the row is being deleted).
    Required,
    /// Blank or not, the value needs its full check (`status` and `dateLastModified` follow the file's mode).
    Check,
}

/// What the field pass checks in one column's value: the column's type, with the two columns whose meaning
/// follows the file's mode told apart. Worked out once per file, so a row costs one dispatch per field.
#[derive(Clone, Copy)]
enum Check {
    Id,
    Status,
    DateLastModified,
    Text,
    DateTime,
    Date,
    Year,
    Bool,
    Float,
    /// A vocabulary: the index of its [`Vocabulary`] in the field pass.
    Enum(u8),
    UserIds,
    TextList,
    EnumList(u8),
    Grades,
    Ref,
    RefList,
}

impl Check {
    /// The check of column `pos`, of type `ty`; a vocabulary is prepared and added to `vocabularies`.
    fn of(pos: usize, ty: ColumnType, vocabularies: &mut Vec<Vocabulary>) -> Check {
        let mut prepare = |allowed| {
            vocabularies.push(Vocabulary::new(allowed));
            (vocabularies.len() - 1) as u8
        };
        match ty {
            ColumnType::Guid => Check::Id,
            ColumnType::Status => Check::Status,
            ColumnType::DateTime if pos == 2 => Check::DateLastModified,
            ColumnType::DateTime => Check::DateTime,
            ColumnType::Text => Check::Text,
            ColumnType::Date => Check::Date,
            ColumnType::Year => Check::Year,
            ColumnType::Bool => Check::Bool,
            ColumnType::Float => Check::Float,
            ColumnType::Enum(allowed) => Check::Enum(prepare(allowed)),
            ColumnType::UserIds => Check::UserIds,
            ColumnType::TextList => Check::TextList,
            ColumnType::EnumList(allowed) => Check::EnumList(prepare(allowed)),
            ColumnType::Grades => Check::Grades,
            ColumnType::Ref(_) | ColumnType::SchoolRef => Check::Ref,
            ColumnType::RefList(_) => Check::RefList,
        }
    }
}

/// One column the file has, as the field pass visits it.
#[derive(Clone, Copy)]
struct Step {
    /// Spec position.
    pos: usize,
    /// Field index in the file.
    field: usize,
    blank: Blank,
    check: Check,
}

/// The field pass's state for one file.
pub struct FieldPass<'i> {
    kind: FileKind,
    /// The indexes of the files read before, which the link pass looks references up in.
    idx: &'i Indexes,
    /// Per spec position: the index the link pass looks the column's references up in.
    look_in: [Option<FileKind>; MAX_COLUMNS],
    /// The index a row's own id is looked up in (a demographics row's user).
    id_look_in: Option<FileKind>,
    /// Per spec position: the last reference of at most 16 bytes seen (its length and [`fields::short_key`])
    /// and its fingerprint.
    last_ref: [Option<(usize, u128, Fp)>; MAX_COLUMNS],
    mode: Option<Mode>,
    columns: &'static [Column],
    header: HeaderMap,
    max_field_bytes: usize,
    start_end: Option<(usize, usize)>,
    subjects: Option<(usize, usize)>,
    numbers: Vec<Option<i64>>,
    /// Positions whose `numbers` entry a row may set (dates, lists), cleared before each row.
    numbered: Vec<usize>,
    /// Spec position of the column [`RowFacts::vocab`] comes from.
    vocab_pos: Option<usize>,
    /// The spec columns the file has, in spec order (`status` comes before the columns it excuses).
    steps: Vec<Step>,
    /// The vocabularies of the file's columns, prepared for matching.
    vocabularies: Vec<Vocabulary>,
    deleting: bool,
    facts: RowFacts,
    /// Where the current row starts in the batch's record data, and its bytes' address (to place list items).
    row_offset: usize,
    row_address: usize,
    /// What kinds of bytes the current row holds.
    flags: Flags,
    batch: Batch,
}

impl<'i> FieldPass<'i> {
    /// The field pass of the file `plan` checks. `idx` holds the files read before: the field pass starts
    /// fetching what the link pass will look up in it as soon as it knows the ids.
    pub fn new(plan: &Plan, idx: &'i Indexes) -> FieldPass<'i> {
        let (kind, mode, header) = (plan.kind, plan.mode, plan.header.clone());
        let max_field_bytes = plan.limits.max_field_bytes;
        let at = |name| kind.try_position(name);
        let start = if kind == FileKind::Enrollments {
            at("beginDate")
        } else {
            at("startDate")
        };
        let columns = kind.columns();
        let mut vocabularies = Vec::new();
        let steps = (0..columns.len())
            .filter_map(|pos| {
                let fi = header.fields[pos]?;
                let blank = match columns[pos].ty {
                    // Blank is right in bulk files and all a file of unknown mode can be held to.
                    ColumnType::Status if mode == Some(Mode::Delta) => Blank::Check,
                    ColumnType::DateTime if pos == 2 && mode == Some(Mode::Delta) => Blank::Check,
                    ColumnType::Status => Blank::Fine,
                    ColumnType::DateTime if pos == 2 => Blank::Fine,
                    _ if columns[pos].required => Blank::Required,
                    _ => Blank::Fine,
                };
                Some(Step {
                    pos,
                    field: fi,
                    blank,
                    check: Check::of(pos, columns[pos].ty, &mut vocabularies),
                })
            })
            .collect();
        let numbered = (0..columns.len())
            .filter(|&pos| matches!(columns[pos].ty, ColumnType::Date | ColumnType::TextList))
            .collect();
        FieldPass {
            idx,
            look_in: super::linkpass::lookups(kind, &plan.targets),
            id_look_in: (kind == FileKind::Demographics
                && matches!(plan.demographics_user, Target::Check(_)))
            .then_some(FileKind::Users),
            last_ref: [None; MAX_COLUMNS],
            numbered,
            steps,
            vocabularies,
            vocab_pos: at("type").or_else(|| at("role")),
            kind,
            mode,
            columns,
            header,
            max_field_bytes,
            start_end: start.zip(at("endDate")),
            subjects: at("subjects").zip(at("subjectCodes")),
            numbers: vec![None; kind.columns().len()],
            deleting: false,
            facts: RowFacts::new(0),
            row_offset: 0,
            row_address: 0,
            flags: Flags::default(),
            batch: Batch::default(),
        }
    }

    /// Hands over the rows checked so far and carries on in `next` (a batch handed back, to reuse its memory).
    pub fn take_batch(&mut self, mut next: Batch) -> Batch {
        next.clear();
        std::mem::replace(&mut self.batch, next)
    }

    fn file(&self) -> &'static str {
        self.kind.file_name()
    }

    fn at(&self, line: u64, pos: usize, problem: Problem, value: &[u8]) -> Finding {
        let mut f = Finding::new(problem.severity, problem.code, problem.message)
            .file(self.file())
            .line(line)
            .column(self.columns[pos].name)
            .value(value);
        f.hint = problem.hint;
        f
    }

    /// A row that was skipped whole (too long, too many fields): counted, with its finding.
    pub fn skipped(&mut self, line: u64, finding: Finding) {
        let f0 = self.batch.findings.0.len() as u32;
        self.batch.findings.push(finding);
        let mut facts = RowFacts::new(line);
        facts.refs = (self.batch.refs.len() as u32, self.batch.refs.len() as u32);
        facts.findings = (f0, f0 + 1);
        self.batch.rows.push(facts);
    }

    /// Checks one record. `batch_text` is the batch's record data, when all of it is valid UTF-8.
    pub fn row(&mut self, line: u64, rec: &RecordView, batch_text: Option<&str>) {
        let mut report = std::mem::take(&mut self.batch.findings);
        let f0 = report.0.len() as u32;
        let r0 = self.batch.refs.len() as u32;
        self.facts = RowFacts::new(line);
        if rec.len() != self.header.len {
            report.push(
                Finding::error(
                    Code::CsvFieldCount,
                    format!("the row has {} fields; the header has {}", rec.len(), self.header.len),
                )
                .file(self.file())
                .line(line)
                .hint("quote fields that contain commas, and give every row one field per header column"),
            );
        }
        for pos in self.numbered.iter().copied() {
            self.numbers[pos] = None;
        }
        self.deleting = false;
        // One UTF-8 and NUL check for the whole row (or none, when the whole batch was valid UTF-8: rows start
        // and end on character boundaries); fields then slice it without checking again. The reader already
        // knows whether the row is plain ASCII.
        let bytes = rec.bytes();
        self.flags = rec.flags();
        self.row_offset = rec.offset();
        self.row_address = bytes.as_ptr() as usize;
        let whole = batch_text
            .and_then(|t| t.get(self.row_offset..self.row_offset + bytes.len()))
            .or_else(|| std::str::from_utf8(bytes).ok())
            .filter(|_| self.flags.plain || memchr::memchr(0, bytes).is_none());
        // A row of valid text no longer than a field may be needs no check of its own per field.
        let fast = whole.is_some() && bytes.len() <= self.max_field_bytes;
        // Taken out for the loop, so the checks below may borrow the pass mutably.
        let steps = std::mem::take(&mut self.steps);
        for &step in &steps {
            let (start, end) = rec.field_range(step.field);
            if start == end {
                match step.blank {
                    Blank::Fine => continue,
                    Blank::Required if step.pos > 0 && self.deleting => continue,
                    Blank::Required => {
                        let name = self.columns[step.pos].name;
                        report.push(
                            Finding::error(Code::FieldRequired, format!("{name} is required"))
                                .file(self.file())
                                .line(line)
                                .column(name)
                                .hint(format!("fill in {name} for this row")),
                        );
                        continue;
                    }
                    Blank::Check => {}
                }
            }
            let text = whole.and_then(|w| w.get(start..end));
            let v = match text {
                Some(v) if fast => v,
                _ => {
                    let raw = bytes.get(start..end).unwrap_or(&[]);
                    match self.decode(line, step.pos, raw, text, &mut report) {
                        Some(v) => v,
                        None => continue,
                    }
                }
            };
            self.check_value(line, step, v, &mut report);
        }
        self.steps = steps;
        self.check_dates(line, &mut report);
        self.check_subjects(line, &mut report);
        self.facts.deleting = self.deleting;
        self.facts.refs = (r0, self.batch.refs.len() as u32);
        self.facts.findings = (f0, report.0.len() as u32);
        self.batch.findings = report;
        self.batch.rows.push(self.facts);
    }

    /// Where a value of the current row sits in the batch's record data.
    fn span(&self, v: &str) -> (u32, u32) {
        let start = self.row_offset + (v.as_ptr() as usize).wrapping_sub(self.row_address);
        (start as u32, (start + v.len()) as u32)
    }

    /// A sourcedId's syntax. In a bare row every byte is one an id may have, so only the length is left.
    fn guid(&self, v: &str) -> Option<Problem> {
        if self.flags.bare && !v.is_empty() && v.len() <= fields::MAX_GUID_BYTES {
            return None;
        }
        fields::guid(v)
    }

    /// Checks a reference's syntax and keeps it for the link pass.
    #[inline(always)]
    fn keep_reference(&mut self, line: u64, pos: usize, v: &str, list: bool, report: &mut Pending) {
        if let Some(p) = self.guid(v) {
            report.push(self.at(line, pos, p, v.as_bytes()));
            return;
        }
        let text = self.span(v);
        // A reference often repeats the one above it (an enrollment's class and school): then its fingerprint
        // is known, and its slot already fetched.
        let key = fields::short_key(v.as_bytes());
        let fp = match (self.last_ref[pos], key) {
            (Some((len, last, fp)), Some(key)) if len == v.len() && last == key => fp,
            _ => {
                let fp = Fp::of(v.as_bytes());
                if let Some(target) = self.look_in[pos] {
                    self.idx.prefetch(target, &fp);
                }
                self.last_ref[pos] = key.map(|key| (v.len(), key, fp));
                fp
            }
        };
        self.batch.refs.push(RefItem {
            pos: pos as u8,
            list,
            fp,
            text,
        });
    }

    /// A field's text, once its length and encoding pass; otherwise the finding that says why not.
    fn decode<'a>(
        &self,
        line: u64,
        pos: usize,
        raw: &'a [u8],
        text: Option<&'a str>,
        report: &mut Pending,
    ) -> Option<&'a str> {
        let column = &self.columns[pos];
        if raw.len() > self.max_field_bytes {
            report.push(
                Finding::error(
                    Code::CsvFieldTooLong,
                    format!(
                        "the value is {} bytes long; the limit is {}",
                        raw.len(),
                        self.max_field_bytes
                    ),
                )
                .file(self.file())
                .line(line)
                .column(column.name)
                .value(raw)
                .hint(
                    "check the export for a runaway field (an unclosed quote joins lines together)",
                ),
            );
            return None;
        }
        if text.is_none() && raw.contains(&0) {
            report.push(
                Finding::error(Code::EncodingNul, "the value contains a NUL byte")
                    .file(self.file())
                    .line(line)
                    .column(column.name)
                    .value(raw)
                    .hint("remove the NUL bytes; the file may be UTF-16 or binary rather than UTF-8 text"),
            );
            return None;
        }
        let decoded = text.or_else(|| std::str::from_utf8(raw).ok());
        if decoded.is_none() {
            report.push(
                Finding::error(Code::EncodingUtf8, "the value is not valid UTF-8")
                    .file(self.file())
                    .line(line)
                    .column(column.name)
                    .value(raw)
                    .hint("save the file as UTF-8 (not Windows-1252 or Latin-1)"),
            );
        }
        decoded
    }

    /// A line break inside a quoted text value: OneRoster values are single lines, and the apps that show names
    /// and titles break on them.
    fn check_line_break(&self, line: u64, pos: usize, v: &str, report: &mut Pending) {
        if self.flags.breaks
            && let Some(p) = fields::line_break(v)
        {
            report.push(self.at(line, pos, p, v.as_bytes()));
        }
    }

    /// Checks one value (blank only for `status` and `dateLastModified`, whose blanks the mode decides). Inlined
    /// into the row loop, its one caller: it runs for every field of every row.
    #[inline(always)]
    fn check_value(&mut self, line: u64, step: Step, v: &str, report: &mut Pending) {
        let pos = step.pos;
        let push = |this: &Self, report: &mut Pending, p: Problem, value: &[u8]| {
            report.push(this.at(line, pos, p, value));
        };
        let raw = v.as_bytes();
        match step.check {
            Check::Id => match self.guid(v) {
                Some(p) => push(self, report, p, raw),
                None => {
                    let fp = Fp::of(raw);
                    if let Some(target) = self.id_look_in {
                        self.idx.prefetch(target, &fp);
                    }
                    self.facts.id = Some(fp);
                    self.facts.id_text = self.span(v);
                }
            },
            Check::Status => self.check_status(line, pos, v, report),
            Check::DateLastModified => self.check_date_last_modified(line, pos, v, report),
            Check::Text => self.check_line_break(line, pos, v, report),
            Check::DateTime => {
                if let Some(p) = fields::date_time(v) {
                    push(self, report, p, raw);
                }
            }
            Check::Date => match fields::date(v) {
                Ok(day) => self.numbers[pos] = Some(day),
                Err(p) => push(self, report, p, raw),
            },
            Check::Year => {
                if let Some(p) = fields::year(v) {
                    push(self, report, p, raw);
                }
            }
            Check::Bool => {
                if let (_, Some(p)) = fields::boolean(v) {
                    push(self, report, p, raw);
                }
            }
            Check::Float => {
                if let Some(p) = fields::float(v) {
                    push(self, report, p, raw);
                }
            }
            Check::Enum(vocabulary) => match self.vocabularies[vocabulary as usize].find(v) {
                Ok(i) => {
                    if Some(pos) == self.vocab_pos {
                        self.facts.vocab = i;
                    }
                }
                Err(p) => push(self, report, p, raw),
            },
            Check::UserIds => {
                if let Some(p) = fields::user_ids(v) {
                    push(self, report, p, raw);
                }
            }
            Check::TextList => {
                self.check_line_break(line, pos, v, report);
                let (items, problems) = fields::list_items(v);
                self.numbers[pos] = Some(items.count() as i64);
                for p in problems {
                    push(self, report, p, raw);
                }
            }
            Check::EnumList(vocabulary) => {
                let (items, problems) = fields::list_items(v);
                for p in problems {
                    push(self, report, p, raw);
                }
                for item in items {
                    if let Err(p) = self.vocabularies[vocabulary as usize].find(item) {
                        push(self, report, p, item.as_bytes());
                    }
                }
            }
            Check::Grades => {
                let (items, problems) = fields::list_items(v);
                for p in problems {
                    push(self, report, p, raw);
                }
                for item in items {
                    if let Some(p) = fields::grade(item) {
                        push(self, report, p, item.as_bytes());
                    }
                }
            }
            Check::Ref => self.keep_reference(line, pos, v, false, report),
            Check::RefList => {
                let (items, problems) = fields::list_items(v);
                for p in problems {
                    push(self, report, p, raw);
                }
                for item in items {
                    self.keep_reference(line, pos, item, true, report);
                }
            }
        }
    }

    fn check_status(&mut self, line: u64, pos: usize, v: &str, report: &mut Pending) {
        match (self.mode, v.is_empty()) {
            (Some(Mode::Bulk), false) => report.push(
                Finding::error(
                    Code::BulkStatusNotBlank,
                    "status must be blank in a bulk file (a bulk file is the whole set)",
                )
                .file(self.file())
                .line(line)
                .column("status")
                .value(v.as_bytes())
                .hint("empty the status column, or declare the file as delta in manifest.csv"),
            ),
            (Some(Mode::Delta), true) => report.push(
                Finding::error(Code::DeltaStatusBlank, "status is required in a delta file")
                    .file(self.file())
                    .line(line)
                    .column("status")
                    .hint("set status to active (create or update) or tobedeleted (remove)"),
            ),
            (_, true) => {}
            (_, false) => {
                if v == "inactive" {
                    self.deleting = true;
                    report.push(
                        Finding::warning(
                            Code::EnumDeprecated,
                            "status inactive is OneRoster 1.0; it was read as tobedeleted",
                        )
                        .file(self.file())
                        .line(line)
                        .column("status")
                        .value(v.as_bytes())
                        .hint("write tobedeleted"),
                    );
                    return;
                }
                match fields::one_of(v, STATUS_VALUES) {
                    Ok(i) => self.deleting = STATUS_VALUES[i as usize] == "tobedeleted",
                    Err(p) => report.push(self.at(line, pos, p, v.as_bytes())),
                }
            }
        }
    }

    fn check_date_last_modified(&mut self, line: u64, pos: usize, v: &str, report: &mut Pending) {
        match (self.mode, v.is_empty()) {
            (Some(Mode::Bulk), false) => report.push(
                Finding::error(
                    Code::BulkDateLastModifiedNotBlank,
                    "dateLastModified must be blank in a bulk file",
                )
                .file(self.file())
                .line(line)
                .column("dateLastModified")
                .value(v.as_bytes())
                .hint("empty the dateLastModified column, or declare the file as delta in manifest.csv"),
            ),
            (Some(Mode::Delta), true) => report.push(
                Finding::error(Code::DeltaDateLastModifiedBlank, "dateLastModified is required in a delta file")
                    .file(self.file())
                    .line(line)
                    .column("dateLastModified")
                    .hint("set dateLastModified to when the record changed, for example 2026-08-17T14:03:00.000Z"),
            ),
            (_, true) => {}
            (_, false) => {
                if let Some(p) = fields::date_time(v) {
                    report.push(self.at(line, pos, p, v.as_bytes()));
                }
            }
        }
    }

    /// An end date must come after its start date (OneRoster end dates are exclusive).
    fn check_dates(&self, line: u64, report: &mut Pending) {
        let Some((s, e)) = self.start_end else {
            return;
        };
        let (start, end) = (self.columns[s].name, self.columns[e].name);
        if let (Some(a), Some(b)) = (self.numbers[s], self.numbers[e])
            && b <= a
        {
            report.push(
                Finding::error(Code::DatesOrder, format!("{end} is not after {start}"))
                    .file(self.file())
                    .line(line)
                    .column(end)
                    .hint(format!(
                        "{end} must be later than {start} (the end date is exclusive)"
                    )),
            );
        }
    }

    /// `subjects` and `subjectCodes` pair up item by item.
    fn check_subjects(&self, line: u64, report: &mut Pending) {
        let Some((s, c)) = self.subjects else {
            return;
        };
        if let (Some(a), Some(b)) = (self.numbers[s], self.numbers[c])
            && a != b
        {
            report.push(
                Finding::warning(
                    Code::ListLengthMismatch,
                    format!("subjects has {a} items but subjectCodes has {b}"),
                )
                .file(self.file())
                .line(line)
                .column("subjectCodes")
                .hint("give one subject code per subject, in the same order"),
            );
        }
    }
}
