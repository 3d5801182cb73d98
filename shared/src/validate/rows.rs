//! Row checks for one data file: every field by its column's type, the bulk/delta rules for `status` and
//! `dateLastModified`, sourcedId uniqueness, references into files already read, and the checks particular to
//! each entity (session dates, a class's school, an enrollment's role). One reused buffer per file; nothing
//! allocated per row unless something is wrong.

use super::header::HeaderMap;
use super::state::{Attributes, Indexes};
use crate::csvread::RecordReader;
use crate::fields::{self, Problem};
use crate::finding::{Code, Finding, Severity};
use crate::index::Fp;
use crate::report::ReportBuilder;
use crate::spec::{
    Column, ColumnType, ENROLLMENT_ROLES, FileKind, Mode, ORG_TYPES, SESSION_TYPES, STATUS_VALUES,
    USER_ROLES,
};
use std::io::Read;

/// How references from one column into another file are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Not a reference column, or references that cannot be checked (already explained elsewhere).
    Skip,
    /// Look the id up; an id not found is reported with this severity.
    Check(Severity),
    /// The referenced file is not in the bundle: report that once, with this severity.
    Absent(Severity),
}

/// A reference to the file being read that did not resolve yet (it may be defined further down).
struct Deferred {
    fp: Fp,
    line: u64,
    pos: usize,
    value: String,
}

/// The state of checking one file.
pub struct FileCheck {
    pub kind: FileKind,
    mode: Option<Mode>,
    columns: &'static [Column],
    header: HeaderMap,
    targets: Vec<Target>,
    /// How a demographics row's sourcedId is checked against users.
    demographics_user: Target,
    absent_reported: Vec<bool>,
    max_field_bytes: usize,
    // Per-row scratch, indexed by spec position.
    fps: Vec<Option<Fp>>,
    enums: Vec<Option<u8>>,
    numbers: Vec<Option<i64>>,
    deleting: bool,
    current_id: String,
    deferred: Vec<Deferred>,
    pub rows: u64,
}

impl FileCheck {
    pub fn new(
        kind: FileKind,
        mode: Option<Mode>,
        header: HeaderMap,
        targets: Vec<Target>,
        demographics_user: Target,
        max_field_bytes: usize,
    ) -> FileCheck {
        let n = kind.columns().len();
        FileCheck {
            kind,
            mode,
            columns: kind.columns(),
            header,
            targets,
            demographics_user,
            absent_reported: vec![false; n + 1],
            max_field_bytes,
            fps: vec![None; n],
            enums: vec![None; n],
            numbers: vec![None; n],
            deleting: false,
            current_id: String::new(),
            deferred: Vec::new(),
            rows: 0,
        }
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

    /// Checks the record the reader holds.
    pub fn check_row<R: Read>(
        &mut self,
        line: u64,
        rec: &RecordReader<R>,
        idx: &mut Indexes,
        report: &mut ReportBuilder,
    ) {
        self.rows += 1;
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
        self.fps.fill(None);
        self.enums.fill(None);
        self.numbers.fill(None);
        self.deleting = false;
        for pos in 0..self.columns.len() {
            let Some(fi) = self.header.fields[pos] else {
                continue;
            };
            let raw = rec.field(fi);
            self.check_field(line, pos, raw, idx, report);
        }
        self.after_row(line, idx, report);
    }

    fn check_field(
        &mut self,
        line: u64,
        pos: usize,
        raw: &[u8],
        idx: &Indexes,
        report: &mut ReportBuilder,
    ) {
        let column = self.columns[pos];
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
            return;
        }
        if raw.contains(&0) {
            report.push(
                Finding::error(Code::EncodingNul, "the value contains a NUL byte")
                    .file(self.file())
                    .line(line)
                    .column(column.name)
                    .value(raw)
                    .hint("remove the NUL bytes; the file may be UTF-16 or binary rather than UTF-8 text"),
            );
            return;
        }
        let Ok(v) = std::str::from_utf8(raw) else {
            report.push(
                Finding::error(Code::EncodingUtf8, "the value is not valid UTF-8")
                    .file(self.file())
                    .line(line)
                    .column(column.name)
                    .value(raw)
                    .hint("save the file as UTF-8 (not Windows-1252 or Latin-1)"),
            );
            return;
        };
        match column.ty {
            ColumnType::Status => return self.check_status(line, pos, v, report),
            ColumnType::DateTime if pos == 2 => {
                return self.check_date_last_modified(line, pos, v, report);
            }
            _ => {}
        }
        if v.is_empty() {
            if column.required && (pos == 0 || !self.deleting) {
                report.push(
                    Finding::error(Code::FieldRequired, format!("{} is required", column.name))
                        .file(self.file())
                        .line(line)
                        .column(column.name)
                        .hint(format!("fill in {} for this row", column.name)),
                );
            }
            return;
        }
        let push = |this: &Self, report: &mut ReportBuilder, p: Problem, value: &[u8]| {
            report.push(this.at(line, pos, p, value));
        };
        match column.ty {
            ColumnType::Guid => match fields::guid(v) {
                Some(p) => push(self, report, p, raw),
                None => {
                    self.fps[pos] = Some(Fp::of(raw));
                    self.current_id.clear();
                    self.current_id.push_str(v);
                }
            },
            ColumnType::Status | ColumnType::Text => {}
            ColumnType::DateTime => {
                if let Some(p) = fields::date_time(v) {
                    push(self, report, p, raw);
                }
            }
            ColumnType::Date => match fields::date(v) {
                Ok(day) => self.numbers[pos] = Some(day),
                Err(p) => push(self, report, p, raw),
            },
            ColumnType::Year => {
                if let Some(p) = fields::year(v) {
                    push(self, report, p, raw);
                }
            }
            ColumnType::Bool => {
                if let (_, Some(p)) = fields::boolean(v) {
                    push(self, report, p, raw);
                }
            }
            ColumnType::Float => {
                if let Some(p) = fields::float(v) {
                    push(self, report, p, raw);
                }
            }
            ColumnType::Enum(allowed) => match fields::one_of(v, allowed) {
                Ok(i) => self.enums[pos] = Some(i),
                Err(p) => push(self, report, p, raw),
            },
            ColumnType::UserIds => {
                if let Some(p) = fields::user_ids(v) {
                    push(self, report, p, raw);
                }
            }
            ColumnType::TextList => {
                let (items, problems) = fields::list_items(v);
                self.numbers[pos] = Some(items.len() as i64);
                for p in problems {
                    push(self, report, p, raw);
                }
            }
            ColumnType::EnumList(allowed) => {
                let (items, problems) = fields::list_items(v);
                for p in problems {
                    push(self, report, p, raw);
                }
                for item in items {
                    if let Err(p) = fields::one_of(item, allowed) {
                        push(self, report, p, item.as_bytes());
                    }
                }
            }
            ColumnType::Grades => {
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
            ColumnType::Ref(target) => self.check_reference(line, pos, target, v, idx, report),
            ColumnType::SchoolRef => {
                self.check_reference(line, pos, FileKind::Orgs, v, idx, report);
                self.check_school(line, pos, v, idx, report);
            }
            ColumnType::RefList(target) => {
                let (items, problems) = fields::list_items(v);
                for p in problems {
                    push(self, report, p, raw);
                }
                for item in items {
                    self.check_reference(line, pos, target, item, idx, report);
                }
            }
        }
    }

    fn check_status(&mut self, line: u64, pos: usize, v: &str, report: &mut ReportBuilder) {
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

    fn check_date_last_modified(
        &mut self,
        line: u64,
        pos: usize,
        v: &str,
        report: &mut ReportBuilder,
    ) {
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

    fn check_reference(
        &mut self,
        line: u64,
        pos: usize,
        target: FileKind,
        v: &str,
        idx: &Indexes,
        report: &mut ReportBuilder,
    ) {
        if let Some(p) = fields::guid(v) {
            report.push(self.at(line, pos, p, v.as_bytes()));
            return;
        }
        let fp = Fp::of(v.as_bytes());
        if !matches!(self.columns[pos].ty, ColumnType::RefList(_)) {
            self.fps[pos] = Some(fp);
        }
        if self.deleting {
            return;
        }
        self.resolve(line, pos, target, self.targets[pos], fp, v, idx, report);
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve(
        &mut self,
        line: u64,
        pos: usize,
        target: FileKind,
        how: Target,
        fp: Fp,
        v: &str,
        idx: &Indexes,
        report: &mut ReportBuilder,
    ) {
        match how {
            Target::Skip => {}
            Target::Absent(severity) => {
                let slot = if self.kind == FileKind::Demographics && pos == 0 {
                    self.columns.len()
                } else {
                    pos
                };
                if !self.absent_reported[slot] {
                    self.absent_reported[slot] = true;
                    report.push(
                        Finding::new(
                            severity,
                            Code::RefTargetAbsent,
                            format!(
                                "{} references {} records, but the bundle has no {}; these references were not checked",
                                self.columns[pos].name,
                                target.name(),
                                target.file_name()
                            ),
                        )
                        .file(self.file())
                        .line(line)
                        .column(self.columns[pos].name)
                        .hint(match severity {
                            Severity::Error => format!(
                                "a bulk bundle must include every file it references: add {}",
                                target.file_name()
                            ),
                            Severity::Warning => format!(
                                "fine if these {} already exist from an earlier sync; otherwise add {}",
                                target.name(),
                                target.file_name()
                            ),
                        }),
                    );
                }
            }
            Target::Check(severity) => {
                if idx.contains(target, &fp) {
                    return;
                }
                if target == self.kind {
                    // Defined further down the same file, perhaps: decide at the end.
                    self.deferred.push(Deferred {
                        fp,
                        line,
                        pos,
                        value: v.to_string(),
                    });
                    return;
                }
                report.push(self.missing_reference(line, pos, target, severity, v));
            }
        }
    }

    fn missing_reference(
        &self,
        line: u64,
        pos: usize,
        target: FileKind,
        severity: Severity,
        v: &str,
    ) -> Finding {
        let hint = match severity {
            Severity::Error => format!(
                "add the record to {}, or correct the reference",
                target.file_name()
            ),
            Severity::Warning => format!(
                "fine if it already exists from an earlier sync; otherwise add it to {}",
                target.file_name()
            ),
        };
        Finding::new(
            severity,
            Code::RefMissing,
            format!("{v:?} is not a sourcedId in {}", target.file_name()),
        )
        .file(self.file())
        .line(line)
        .column(self.columns[pos].name)
        .value(v.as_bytes())
        .hint(hint)
    }

    fn check_school(
        &self,
        line: u64,
        pos: usize,
        v: &str,
        idx: &Indexes,
        report: &mut ReportBuilder,
    ) {
        let Some(org) = self.fps[pos].and_then(|fp| idx.orgs.get(&fp)) else {
            return;
        };
        if ORG_TYPES.get(org.kind as usize) == Some(&"school") || org.kind == u8::MAX {
            return;
        }
        report.push(
            Finding::error(
                Code::RefNotSchool,
                format!(
                    "{v:?} is an org of type {}, not a school",
                    ORG_TYPES[org.kind as usize]
                ),
            )
            .file(self.file())
            .line(line)
            .column(self.columns[pos].name)
            .value(v.as_bytes())
            .hint("point schoolSourcedId at an org whose type is school"),
        );
    }

    /// Records the row's id and runs the checks particular to the entity.
    fn after_row(&mut self, line: u64, idx: &mut Indexes, report: &mut ReportBuilder) {
        let kind = self.kind;
        match kind {
            FileKind::AcademicSessions => self.check_dates(line, "startDate", "endDate", report),
            FileKind::Enrollments => {
                self.check_dates(line, "beginDate", "endDate", report);
                self.check_enrollment(line, idx, report);
            }
            FileKind::Classes => self.check_subjects(line, report),
            FileKind::Courses => {
                self.check_subjects(line, report);
                self.check_school_year(line, idx, report);
            }
            _ => {}
        }
        let Some(fp) = self.fps[0] else { return };
        if kind == FileKind::Demographics && !self.deleting {
            // A demographics record describes the user with the same sourcedId.
            let id = std::mem::take(&mut self.current_id);
            self.resolve(
                line,
                0,
                FileKind::Users,
                self.demographics_user,
                fp,
                &id,
                idx,
                report,
            );
            self.current_id = id;
        }
        let attributes = match kind {
            FileKind::Orgs | FileKind::AcademicSessions => Attributes::Node {
                kind: self.enums[kind.position("type")].unwrap_or(u8::MAX),
                parent: self.fps[kind.position("parentSourcedId")],
                id: self.current_id.as_str().into(),
            },
            FileKind::Users => Attributes::User {
                role: self.enums[kind.position("role")].unwrap_or(u8::MAX),
            },
            FileKind::Classes => Attributes::Class {
                school: self.fps[kind.position("schoolSourcedId")],
            },
            _ => Attributes::Plain,
        };
        let line32 = u32::try_from(line).unwrap_or(u32::MAX);
        if let Some(first) = idx.insert(kind, fp, line32, attributes) {
            report.push(
                Finding::error(
                    Code::IdDuplicate,
                    format!(
                        "the sourcedId {:?} is already used on line {first}",
                        self.current_id
                    ),
                )
                .file(self.file())
                .line(line)
                .column("sourcedId")
                .value(self.current_id.as_bytes())
                .hint("give every record in a file its own sourcedId"),
            );
        }
    }

    /// An end date must come after its start date (OneRoster end dates are exclusive).
    fn check_dates(
        &self,
        line: u64,
        start: &'static str,
        end: &'static str,
        report: &mut ReportBuilder,
    ) {
        let (s, e) = (self.kind.position(start), self.kind.position(end));
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
    fn check_subjects(&self, line: u64, report: &mut ReportBuilder) {
        let (s, c) = (
            self.kind.position("subjects"),
            self.kind.position("subjectCodes"),
        );
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

    fn check_school_year(&self, line: u64, idx: &Indexes, report: &mut ReportBuilder) {
        let pos = self.kind.position("schoolYearSourcedId");
        let Some(session) = self.fps[pos].and_then(|fp| idx.sessions.get(&fp)) else {
            return;
        };
        if session.kind == u8::MAX || SESSION_TYPES[session.kind as usize] == "schoolYear" {
            return;
        }
        report.push(
            Finding::warning(
                Code::RefWrongType,
                format!(
                    "schoolYearSourcedId points at {:?}, a session of type {}, not schoolYear",
                    session.id, SESSION_TYPES[session.kind as usize]
                ),
            )
            .file(self.file())
            .line(line)
            .column("schoolYearSourcedId")
            .value(session.id.as_bytes())
            .hint("point schoolYearSourcedId at the academic session of type schoolYear"),
        );
    }

    /// An enrollment's role should match its user's role, and its school its class's school.
    fn check_enrollment(&self, line: u64, idx: &Indexes, report: &mut ReportBuilder) {
        let k = FileKind::Enrollments;
        let role = self.enums[k.position("role")].map(|i| ENROLLMENT_ROLES[i as usize]);
        let user = self.fps[k.position("userSourcedId")].and_then(|fp| idx.users.get(&fp));
        if let (Some(role), Some(&(_, user_role))) = (role, user)
            && let Some(&user_role) = USER_ROLES.get(user_role as usize)
            && role != user_role
            && !(role == "proctor" && user_role == "aide")
        {
            report.push(
                Finding::warning(
                    Code::EnrollmentRoleMismatch,
                    format!("the enrollment role is {role} but the user's role is {user_role}"),
                )
                .file(self.file())
                .line(line)
                .column("role")
                .value(role.as_bytes())
                .hint("check the user's role in users.csv and the enrollment's role"),
            );
        }
        let school = self.fps[k.position("schoolSourcedId")];
        let class = self.fps[k.position("classSourcedId")].and_then(|fp| idx.classes.get(&fp));
        if let (Some(school), Some(&(_, Some(class_school)))) = (school, class)
            && school != class_school
        {
            let name = idx
                .orgs
                .get(&class_school)
                .map_or_else(|| "another school".to_string(), |o| format!("{:?}", o.id));
            report.push(
                Finding::warning(
                    Code::EnrollmentSchoolMismatch,
                    format!("the enrollment's school differs from its class's school ({name})"),
                )
                .file(self.file())
                .line(line)
                .column("schoolSourcedId")
                .hint("an enrollment's schoolSourcedId should be the school of its class"),
            );
        }
    }

    /// Checks that need the whole file: references to records further down, parent cycles, an empty file.
    pub fn finish(&mut self, idx: &Indexes, report: &mut ReportBuilder) {
        let severity = match self.mode {
            Some(Mode::Delta) => Severity::Warning,
            _ => Severity::Error,
        };
        for d in std::mem::take(&mut self.deferred) {
            if !idx.contains(self.kind, &d.fp) {
                report.push(self.missing_reference(d.line, d.pos, self.kind, severity, &d.value));
            }
        }
        match self.kind {
            FileKind::Orgs => report_cycles(self.kind, &idx.orgs, report),
            FileKind::AcademicSessions => report_cycles(self.kind, &idx.sessions, report),
            _ => {}
        }
        if self.rows == 0 {
            report.push(
                Finding::warning(
                    Code::FileNoRows,
                    format!("{} has a header but no rows", self.file()),
                )
                .file(self.file())
                .hint(format!(
                    "leave the file out and declare it absent in manifest.csv; an empty bulk file would remove every {}",
                    self.kind.name()
                )),
            );
        }
    }
}

/// Reports each loop of parents once, at the line of its first member.
fn report_cycles(
    kind: FileKind,
    nodes: &crate::index::FpMap<super::state::Node>,
    report: &mut ReportBuilder,
) {
    use std::collections::HashMap;
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state: HashMap<Fp, u8> = HashMap::with_capacity(nodes.len());
    let mut starts: Vec<(&Fp, u32)> = nodes.iter().map(|(fp, n)| (fp, n.line)).collect();
    starts.sort_by_key(|(_, line)| *line);
    for (start, _) in starts {
        let mut path: Vec<Fp> = Vec::new();
        let mut at = Some(*start);
        while let Some(fp) = at {
            match state.get(&fp).copied().unwrap_or(0) {
                2 => break,
                1 => {
                    let from = path.iter().position(|p| *p == fp).unwrap_or(0);
                    let cycle = &path[from..];
                    let first = cycle
                        .iter()
                        .filter_map(|p| nodes.get(p))
                        .min_by_key(|n| n.line);
                    let mut names: Vec<&str> = cycle
                        .iter()
                        .filter_map(|p| nodes.get(p))
                        .map(|n| &*n.id)
                        .collect();
                    if let (Some(first), Some(head)) = (first, names.first().copied()) {
                        names.push(head);
                        report.push(
                            Finding::error(
                                Code::RefCycle,
                                format!("parents loop back on themselves: {}", names.join(" → ")),
                            )
                            .file(kind.file_name())
                            .line(u64::from(first.line))
                            .column("parentSourcedId")
                            .value(first.id.as_bytes())
                            .hint("every parent chain must end at a record without a parent"),
                        );
                    }
                    break;
                }
                _ => {
                    state.insert(fp, 1);
                    path.push(fp);
                    at = nodes.get(&fp).and_then(|n| n.parent);
                }
            }
        }
        for fp in path {
            state.insert(fp, 2);
        }
    }
}
