//! The link pass over one data file, on the validating thread: everything that needs what other rows and
//! files said. It records each row's id (reporting duplicates), resolves references against the files already
//! read (or later in the same file), and runs the checks that compare records: an org that must be a school,
//! a course's school year, an enrollment's role and school, parent cycles.

use super::fieldpass::{Batch, MAX_COLUMNS, RowFacts};
use super::state::{Attributes, DupCheck, Found, Indexes};
use crate::finding::{Code, Finding, Severity};
use crate::index::Fp;
use crate::report::ReportBuilder;
use crate::spec::{
    Column, ColumnType, ENROLLMENT_ROLES, FileKind, Mode, ORG_TYPES, SESSION_TYPES, USER_ROLES,
};

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

/// Which user roles fit each enrollment role (`ENROLLMENT_ROLES` × `USER_ROLES`): the same role, or a proctor
/// who is an aide.
const ROLES_AGREE: [[bool; 8]; 4] = {
    let mut table = [[false; 8]; 4];
    let mut e = 0;
    while e < ENROLLMENT_ROLES.len() {
        let mut u = 0;
        while u < USER_ROLES.len() {
            let (a, b) = (ENROLLMENT_ROLES[e].as_bytes(), USER_ROLES[u].as_bytes());
            let mut same = a.len() == b.len();
            let mut i = 0;
            while same && i < a.len() {
                same = a[i] == b[i];
                i += 1;
            }
            table[e][u] = same;
            u += 1;
        }
        e += 1;
    }
    // ENROLLMENT_ROLES[1] is proctor; USER_ROLES[1] is aide.
    table[1][1] = true;
    table
};

/// A reference to the file being read that did not resolve yet (it may be defined further down).
struct Deferred {
    fp: Fp,
    line: u32,
    pos: u8,
}

/// Spec positions of the columns the link checks read, looked up once per file rather than once per row.
struct Cols {
    kind: Option<usize>,
    parent: Option<usize>,
    role: Option<usize>,
    school: Option<usize>,
    class: Option<usize>,
    user: Option<usize>,
    school_year: Option<usize>,
}

impl Cols {
    fn of(kind: FileKind) -> Cols {
        let at = |name| kind.try_position(name);
        Cols {
            kind: at("type"),
            parent: at("parentSourcedId"),
            role: at("role"),
            school: at("schoolSourcedId"),
            class: at("classSourcedId"),
            user: at("userSourcedId"),
            school_year: at("schoolYearSourcedId"),
        }
    }
}

/// The link pass's state for one file.
pub struct LinkPass {
    cols: Cols,
    kind: FileKind,
    mode: Option<Mode>,
    columns: &'static [Column],
    targets: Vec<Target>,
    /// How a demographics row's sourcedId is checked against users.
    demographics_user: Target,
    absent_reported: Vec<bool>,
    // Per-row scratch, indexed by spec position.
    fps: [Option<Fp>; MAX_COLUMNS],
    found: [Option<Found>; MAX_COLUMNS],
    enums: [u8; MAX_COLUMNS],
    /// For files no other file references: ids kept only to find duplicates, sorted once at the end.
    dups: Option<DupCheck>,
    /// Positions set by the current row.
    touched: Vec<usize>,
    /// What each reference of the current batch found (kept to reuse its allocation).
    founds: Vec<Option<Found>>,
    deferred: Vec<Deferred>,
    /// The text of each deferred id, once.
    deferred_text: crate::index::FpMap<String>,
    /// Ids the current row deferred already.
    deferred_in_row: std::collections::HashSet<Fp>,
    /// Rows seen so far.
    pub rows: u64,
}

impl LinkPass {
    pub fn new(
        kind: FileKind,
        mode: Option<Mode>,
        targets: Vec<Target>,
        demographics_user: Target,
        expected_rows: usize,
    ) -> LinkPass {
        LinkPass {
            dups: (!kind.is_referenced()).then(|| DupCheck::new(expected_rows)),
            cols: Cols::of(kind),
            kind,
            mode,
            columns: kind.columns(),
            targets,
            demographics_user,
            absent_reported: vec![false; kind.columns().len() + 1],
            fps: [None; MAX_COLUMNS],
            found: [None; MAX_COLUMNS],
            enums: [u8::MAX; MAX_COLUMNS],
            touched: Vec::with_capacity(MAX_COLUMNS),
            founds: Vec::new(),
            deferred: Vec::new(),
            deferred_text: crate::index::fp_map(),
            deferred_in_row: std::collections::HashSet::new(),
            rows: 0,
        }
    }

    /// The file a reference column points into.
    fn target_of(&self, pos: usize) -> FileKind {
        match self.columns[pos].ty {
            ColumnType::Ref(t) | ColumnType::RefList(t) => t,
            _ => FileKind::Orgs,
        }
    }

    fn fp_at(&self, pos: Option<usize>) -> Option<Fp> {
        pos.and_then(|p| self.fps[p])
    }

    fn enum_at(&self, pos: Option<usize>) -> Option<u8> {
        pos.map(|p| self.enums[p]).filter(|e| *e != u8::MAX)
    }

    fn file(&self) -> &'static str {
        self.kind.file_name()
    }

    /// Links every row of a batch, reporting the field pass's findings in row order on the way.
    /// The batch's findings are moved into the report; the rest is left for the caller to recycle.
    pub fn batch(&mut self, batch: &mut Batch, idx: &mut Indexes, report: &mut ReportBuilder) {
        let Batch {
            rows,
            refs,
            text,
            findings,
            ..
        } = batch;
        let text_of =
            |range: (u32, u32)| text.get(range.0 as usize..range.1 as usize).unwrap_or("");
        // Look every reference of the batch up in one tight loop first: the lookups are independent, so the
        // processor overlaps their cache misses instead of waiting for each in turn.
        let mut founds = std::mem::take(&mut self.founds);
        founds.clear();
        founds.extend(refs.iter().map(|item| {
            let pos = item.pos as usize;
            let target = self.target_of(pos);
            match self.targets[pos] {
                // References into this same file are looked up row by row, after earlier rows are recorded.
                Target::Check(_) if target != self.kind => idx.lookup(target, &item.fp),
                _ => None,
            }
        }));
        let users_of_demographics: Vec<Option<Found>> = if self.kind == FileKind::Demographics
            && matches!(self.demographics_user, Target::Check(_))
        {
            rows.iter()
                .map(|r| r.id.and_then(|fp| idx.lookup(FileKind::Users, &fp)))
                .collect()
        } else {
            Vec::new()
        };
        let mut findings = findings.0.drain(..);
        for (r, row) in rows.iter().enumerate() {
            for _ in row.findings.0..row.findings.1 {
                if let Some(f) = findings.next() {
                    report.push(f);
                }
            }
            self.rows += 1;
            // Clear only what the previous row set: cheaper than wiping the arrays row after row.
            for pos in self.touched.drain(..) {
                self.fps[pos] = None;
                self.found[pos] = None;
            }
            if !self.deferred_in_row.is_empty() {
                self.deferred_in_row.clear();
            }
            self.enums = row.enums;
            for (i, item) in refs
                .iter()
                .enumerate()
                .take(row.refs.1 as usize)
                .skip(row.refs.0 as usize)
            {
                let pos = item.pos as usize;
                self.touched.push(pos);
                if !item.list {
                    self.fps[pos] = Some(item.fp);
                }
                if row.deleting {
                    continue;
                }
                let value = text_of(item.text);
                let target = self.target_of(pos);
                let found = if target == self.kind {
                    idx.lookup(target, &item.fp)
                } else {
                    founds[i]
                };
                self.resolve(
                    row.line,
                    pos,
                    target,
                    self.targets[pos],
                    item.fp,
                    value,
                    found,
                    report,
                );
                if self.columns[pos].ty == ColumnType::SchoolRef {
                    self.check_school(row.line, pos, value, report);
                }
            }
            let user = users_of_demographics.get(r).copied().flatten();
            self.after_row(row, text_of(row.id_text), user, idx, report);
        }
        self.founds = founds;
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
        found: Option<Found>,
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
                if let Some(found) = found {
                    if pos < self.found.len() {
                        self.found[pos] = Some(found);
                        self.touched.push(pos);
                    }
                    return;
                }
                if target == self.kind {
                    // Defined further down the same file, perhaps: decide at the end. Kept compactly (the
                    // text once per distinct id), and once per row however often the row repeats it.
                    if self.deferred_in_row.insert(fp) {
                        self.deferred.push(Deferred {
                            fp,
                            line: u32::try_from(line).unwrap_or(u32::MAX),
                            pos: pos as u8,
                        });
                        self.deferred_text
                            .entry(fp)
                            .or_insert_with(|| v.to_string());
                    }
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

    fn check_school(&self, line: u64, pos: usize, v: &str, report: &mut ReportBuilder) {
        let Some(Found::Typed(kind)) = self.found[pos] else {
            return;
        };
        let Some(&org_type) = ORG_TYPES.get(kind as usize) else {
            return;
        };
        if org_type == "school" {
            return;
        }
        report.push(
            Finding::error(
                Code::RefNotSchool,
                format!("{v:?} is an org of type {org_type}, not a school"),
            )
            .file(self.file())
            .line(line)
            .column(self.columns[pos].name)
            .value(v.as_bytes())
            .hint("point schoolSourcedId at an org whose type is school"),
        );
    }

    /// Records the row's id and runs the checks that compare it with other records.
    fn after_row(
        &mut self,
        row: &RowFacts,
        id: &str,
        user: Option<Found>,
        idx: &mut Indexes,
        report: &mut ReportBuilder,
    ) {
        let line = row.line;
        let kind = self.kind;
        match kind {
            FileKind::Enrollments if !row.deleting => self.check_enrollment(line, idx, report),
            FileKind::Courses => self.check_school_year(line, idx, report),
            _ => {}
        }
        let Some(fp) = row.id else { return };
        if kind == FileKind::Demographics && !row.deleting {
            // A demographics record describes the user with the same sourcedId.
            self.resolve(
                line,
                0,
                FileKind::Users,
                self.demographics_user,
                fp,
                id,
                user,
                report,
            );
        }
        let attributes = match kind {
            FileKind::Orgs | FileKind::AcademicSessions => Attributes::Node {
                kind: self.enum_at(self.cols.kind).unwrap_or(u8::MAX),
                parent: self.fp_at(self.cols.parent),
                id: id.into(),
            },
            FileKind::Users => Attributes::User {
                role: self.enum_at(self.cols.role).unwrap_or(u8::MAX),
            },
            FileKind::Classes => Attributes::Class {
                school: self.fp_at(self.cols.school),
            },
            _ => Attributes::Plain,
        };
        let line32 = u32::try_from(line).unwrap_or(u32::MAX);
        if let Some(dups) = &mut self.dups {
            dups.push(fp, line32);
            return;
        }
        if let Some(first) = idx.insert(kind, fp, line32, attributes) {
            report.push(
                Finding::error(
                    Code::IdDuplicate,
                    format!("the sourcedId {id:?} is already used on line {first}"),
                )
                .file(self.file())
                .line(line)
                .column("sourcedId")
                .value(id.as_bytes())
                .hint("give every record in a file its own sourcedId"),
            );
        }
    }

    fn check_school_year(&self, line: u64, idx: &Indexes, report: &mut ReportBuilder) {
        let Some(pos) = self.cols.school_year else {
            return;
        };
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
        let role = self.enum_at(self.cols.role);
        let user = self.cols.user.and_then(|p| self.found[p]);
        if let (Some(role), Some(Found::User(user_role))) = (role, user)
            && let (Some(&agrees), Some(&user_role_name)) = (
                ROLES_AGREE
                    .get(role as usize)
                    .and_then(|r| r.get(user_role as usize)),
                USER_ROLES.get(user_role as usize),
            )
            && !agrees
        {
            let (role, user_role) = (ENROLLMENT_ROLES[role as usize], user_role_name);
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
        let school = self.fp_at(self.cols.school);
        let class = self.cols.class.and_then(|p| self.found[p]);
        if let (Some(school), Some(Found::Class(Some(class_school)))) = (school, class)
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

    /// Repeated ids of a file nothing references, as (line, line of first use), in line order. Their text was
    /// not kept; the caller reads those lines again to name them.
    pub fn duplicates(&mut self) -> Vec<(u32, u32)> {
        self.dups
            .take()
            .map(DupCheck::duplicates)
            .unwrap_or_default()
    }

    /// Checks that need the whole file: references to records further down, parent cycles, an empty file.
    pub fn finish(&mut self, idx: &Indexes, report: &mut ReportBuilder) {
        let severity = match self.mode {
            Some(Mode::Delta) => Severity::Warning,
            _ => Severity::Error,
        };
        for d in std::mem::take(&mut self.deferred) {
            if !idx.contains(self.kind, &d.fp) {
                let value = self.deferred_text.get(&d.fp).map_or("", String::as_str);
                report.push(self.missing_reference(
                    u64::from(d.line),
                    d.pos as usize,
                    self.kind,
                    severity,
                    value,
                ));
            }
        }
        self.deferred_text = crate::index::fp_map();
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
