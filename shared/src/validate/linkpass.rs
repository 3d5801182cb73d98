//! The link pass over a batch of rows, on the worker thread right after the field pass: everything that needs
//! the files read before. It resolves references into those files (their indexes no longer change, so every
//! worker reads them at once) and runs the checks that compare records: an org that must be a school, a
//! course's school year, an enrollment's role and school. References within the file being read, and its own
//! ids, are the merger's (see `merge`), which sees the rows in order.

use super::fieldpass::{Batch, MAX_COLUMNS, RefItem, RowFacts};
use super::state::{Found, Indexes};
use crate::index::Fp;
use crate::spec::{
    Column, ColumnType, ENROLLMENT_ROLES, FileKind, ORG_TYPES, SESSION_TYPES, USER_ROLES,
};
use crate::validate::finding::{Code, Finding, Severity};

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

/// Spec positions of the columns the link checks read, looked up once per file rather than once per row.
struct Cols {
    school: Option<usize>,
    class: Option<usize>,
    user: Option<usize>,
    school_year: Option<usize>,
}

impl Cols {
    fn of(kind: FileKind) -> Cols {
        let at = |name| kind.try_position(name);
        Cols {
            school: at("schoolSourcedId"),
            class: at("classSourcedId"),
            user: at("userSourcedId"),
            school_year: at("schoolYearSourcedId"),
        }
    }
}

/// The text of a range of a batch's record data (the field pass only keeps ranges of valid UTF-8).
pub fn text_at(data: &[u8], range: (u32, u32)) -> &str {
    data.get(range.0 as usize..range.1 as usize)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// The reference items of a row.
pub fn refs_of<'b>(refs: &'b [RefItem], row: &RowFacts) -> &'b [RefItem] {
    refs.get(row.refs.0 as usize..row.refs.1 as usize)
        .unwrap_or(&[])
}

/// The file a reference column points into.
pub fn target_of(column: &Column) -> FileKind {
    match column.ty {
        ColumnType::Ref(t) | ColumnType::RefList(t) => t,
        _ => FileKind::Orgs,
    }
}

/// A reference that resolves nowhere.
pub fn missing_reference(
    kind: FileKind,
    column: &Column,
    line: u64,
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
    .file(kind.file_name())
    .line(line)
    .column(column.name)
    .value(v.as_bytes())
    .hint(hint)
}

/// Per spec position of `kind`: the index a column's references are looked up in by the link pass, when they
/// are (references into the file being read are the merger's).
pub fn lookups(kind: FileKind, targets: &[Target]) -> [Option<FileKind>; MAX_COLUMNS] {
    let mut look_in = [None; MAX_COLUMNS];
    for (pos, column) in kind.columns().iter().enumerate().take(MAX_COLUMNS) {
        let target = target_of(column);
        if matches!(targets.get(pos), Some(Target::Check(_))) && target != kind {
            look_in[pos] = Some(target);
        }
    }
    look_in
}

/// One worker's link pass state for one file.
pub struct LinkPass {
    cols: Cols,
    kind: FileKind,
    columns: &'static [Column],
    targets: Vec<Target>,
    /// Per spec position: the file a reference column points into.
    points_to: [FileKind; MAX_COLUMNS],
    /// Per spec position: the index to look references up in, when they are looked up here (references into
    /// the file being read are the merger's).
    look_in: [Option<FileKind>; MAX_COLUMNS],
    /// Per spec position: the column must point at a school.
    school: [bool; MAX_COLUMNS],
    /// How a demographics row's sourcedId is checked against users.
    demographics_user: Target,
    /// Per column (and one more slot for a demographics row's own id): the absent file was reported. The
    /// merger keeps only the first such finding of the file; this just spares it the repeats. It loses
    /// nothing because workers take batches in sequence order: whichever worker holds the earliest row that
    /// needs the file has not reported it before.
    absent_reported: Vec<bool>,
    // Per-row scratch, indexed by spec position.
    fps: [Option<Fp>; MAX_COLUMNS],
    found: [Option<Found>; MAX_COLUMNS],
    /// The current row's [`RowFacts::vocab`].
    vocab: u8,
    /// What each reference of the current batch found (kept to reuse its allocation).
    founds: Vec<Option<Found>>,
    users_of_demographics: Vec<Option<Found>>,
    /// The batch's findings, row by row, as they are put in order (kept to reuse its allocation).
    ordered: Vec<Finding>,
}

impl LinkPass {
    pub fn new(kind: FileKind, targets: Vec<Target>, demographics_user: Target) -> LinkPass {
        let columns = kind.columns();
        let mut points_to = [kind; MAX_COLUMNS];
        let mut school = [false; MAX_COLUMNS];
        for (pos, column) in columns.iter().enumerate().take(MAX_COLUMNS) {
            points_to[pos] = target_of(column);
            school[pos] = column.ty == ColumnType::SchoolRef;
        }
        let look_in = lookups(kind, &targets);
        LinkPass {
            points_to,
            look_in,
            school,
            cols: Cols::of(kind),
            kind,
            columns: kind.columns(),
            targets,
            demographics_user,
            absent_reported: vec![false; kind.columns().len() + 1],
            fps: [None; MAX_COLUMNS],
            found: [None; MAX_COLUMNS],
            vocab: u8::MAX,
            founds: Vec::new(),
            users_of_demographics: Vec::new(),
            ordered: Vec::new(),
        }
    }

    fn fp_at(&self, pos: Option<usize>) -> Option<Fp> {
        pos.and_then(|p| self.fps[p])
    }

    /// The row's `type` or `role` (whichever the file has), when valid.
    fn vocab(&self) -> Option<u8> {
        Some(self.vocab).filter(|v| *v != u8::MAX)
    }

    fn file(&self) -> &'static str {
        self.kind.file_name()
    }

    /// Links every row of a batch (`data` is its record data). Afterwards the batch's findings are all of
    /// them, row by row.
    pub fn batch(&mut self, batch: &mut Batch, data: &[u8], idx: &Indexes) {
        let Batch {
            rows,
            refs,
            findings,
        } = batch;
        // Look every reference of the batch up in one tight loop first: the lookups are independent, so the
        // processor overlaps their cache misses instead of waiting for each in turn. (The field pass started
        // fetching the slots they read.)
        let mut founds = std::mem::take(&mut self.founds);
        founds.clear();
        // A reference that repeats the one before it in its column (an enrollment's class and school) finds
        // what that one found.
        let mut last: [Option<(Fp, Option<Found>)>; MAX_COLUMNS] = [None; MAX_COLUMNS];
        founds.extend(refs.iter().map(|item| {
            let pos = item.pos as usize;
            let target = self.look_in[pos]?;
            match last[pos] {
                Some((fp, found)) if fp == item.fp => found,
                _ => {
                    let found = idx.lookup(target, &item.fp);
                    last[pos] = Some((item.fp, found));
                    found
                }
            }
        }));
        let mut users = std::mem::take(&mut self.users_of_demographics);
        users.clear();
        if self.kind == FileKind::Demographics && matches!(self.demographics_user, Target::Check(_))
        {
            users.extend(
                rows.iter()
                    .map(|r| r.id.and_then(|fp| idx.lookup(FileKind::Users, &fp))),
            );
        }
        let mut out = std::mem::take(&mut self.ordered);
        out.clear();
        let mut field_findings = findings.0.drain(..);
        // The row arrays start the batch empty; after that each row clears only what the row before it set
        // (cheaper than wiping them row after row).
        self.fps = [None; MAX_COLUMNS];
        self.found = [None; MAX_COLUMNS];
        let mut previous: &[RefItem] = &[];
        for (r, row) in rows.iter_mut().enumerate() {
            let f0 = out.len() as u32;
            if row.findings.1 > row.findings.0 {
                out.extend(
                    field_findings
                        .by_ref()
                        .take((row.findings.1 - row.findings.0) as usize),
                );
            }
            // Position 0 is also a demographics row's own user, which is no reference item.
            for item in previous {
                self.fps[item.pos as usize] = None;
                self.found[item.pos as usize] = None;
            }
            self.found[0] = None;
            self.vocab = row.vocab;
            let mine = refs_of(refs, row);
            previous = mine;
            for (item, i) in mine.iter().zip(row.refs.0 as usize..) {
                let pos = item.pos as usize;
                if !item.list {
                    self.fps[pos] = Some(item.fp);
                }
                let target = self.points_to[pos];
                if row.deleting || target == self.kind {
                    continue;
                }
                self.resolve(
                    row.line,
                    pos,
                    target,
                    self.targets[pos],
                    item.text,
                    founds[i],
                    data,
                    &mut out,
                );
                if self.school[pos] {
                    self.check_school(row.line, pos, item.text, data, &mut out);
                }
            }
            let user = users.get(r).copied().flatten();
            self.after_row(row, data, user, idx, &mut out);
            row.findings = (f0, out.len() as u32);
        }
        drop(field_findings);
        // The field pass's findings are all moved; its vector becomes next batch's scratch.
        std::mem::swap(&mut findings.0, &mut out);
        self.ordered = out;
        self.founds = founds;
        self.users_of_demographics = users;
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn resolve(
        &mut self,
        line: u64,
        pos: usize,
        target: FileKind,
        how: Target,
        text: (u32, u32),
        found: Option<Found>,
        data: &[u8],
        out: &mut Vec<Finding>,
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
                    out.push(absent_target(
                        self.kind,
                        &self.columns[pos],
                        line,
                        target,
                        severity,
                    ));
                }
            }
            Target::Check(severity) => match found {
                Some(found) => self.found[pos] = Some(found),
                None => out.push(missing_reference(
                    self.kind,
                    &self.columns[pos],
                    line,
                    target,
                    severity,
                    text_at(data, text),
                )),
            },
        }
    }

    fn check_school(
        &self,
        line: u64,
        pos: usize,
        text: (u32, u32),
        data: &[u8],
        out: &mut Vec<Finding>,
    ) {
        let Some(Found::Typed(kind)) = self.found[pos] else {
            return;
        };
        let Some(&org_type) = ORG_TYPES.get(kind as usize) else {
            return;
        };
        if org_type == "school" {
            return;
        }
        let v = text_at(data, text);
        out.push(
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

    /// Runs the checks that compare the row with other records, and notes what its id is recorded with.
    fn after_row(
        &mut self,
        row: &mut RowFacts,
        data: &[u8],
        user: Option<Found>,
        idx: &Indexes,
        out: &mut Vec<Finding>,
    ) {
        let line = row.line;
        match self.kind {
            FileKind::Enrollments if !row.deleting => self.check_enrollment(line, idx, out),
            FileKind::Courses => self.check_school_year(line, idx, out),
            _ => {}
        }
        if self.kind == FileKind::Demographics && !row.deleting && row.id.is_some() {
            // A demographics record describes the user with the same sourcedId.
            self.resolve(
                line,
                0,
                FileKind::Users,
                self.demographics_user,
                row.id_text,
                user,
                data,
                out,
            );
        }
    }

    fn check_school_year(&self, line: u64, idx: &Indexes, out: &mut Vec<Finding>) {
        let Some(pos) = self.cols.school_year else {
            return;
        };
        let Some(session) = self.fps[pos].and_then(|fp| idx.sessions.get(&fp)) else {
            return;
        };
        if session.kind == u8::MAX || SESSION_TYPES[session.kind as usize] == "schoolYear" {
            return;
        }
        out.push(
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
    fn check_enrollment(&self, line: u64, idx: &Indexes, out: &mut Vec<Finding>) {
        let role = self.vocab();
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
            out.push(
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
            out.push(
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
}

/// The referenced file is not in the bundle: said once per column.
fn absent_target(
    kind: FileKind,
    column: &Column,
    line: u64,
    target: FileKind,
    severity: Severity,
) -> Finding {
    Finding::new(
        severity,
        Code::RefTargetAbsent,
        format!(
            "{} references {} records, but the bundle has no {}; these references were not checked",
            column.name,
            target.name(),
            target.file_name()
        ),
    )
    .file(kind.file_name())
    .line(line)
    .column(column.name)
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
    })
}
