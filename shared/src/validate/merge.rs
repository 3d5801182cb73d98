//! The merger of one file's checked batches, on the validating thread. Workers finish batches out of order;
//! the merger takes them in row order, moves their findings into the report, records each row's id in the
//! file's own index (reporting duplicates), resolves references within the file, and at the end runs the checks
//! that need the whole file: references to records further down, parent cycles, an empty file. The ids of a
//! file nothing references are the workers' to keep (only their duplicates matter, found at the end), so for
//! such a file a batch without findings needs nothing here.

use super::fieldpass::{Batch, RefItem, RowFacts};
use super::linkpass::{Target, missing_reference, refs_of, target_of, text_at};
use super::state::{Attributes, DupCheck, Indexes, Node, Own};
use crate::index::{Fp, FpMap, fp_map};
use crate::spec::{Column, FileKind, Mode};
use crate::validate::finding::{Code, Finding, Severity};
use crate::validate::report::ReportBuilder;
use std::collections::HashSet;

/// The most rows an index is sized for up front: a size taken from the file (or a zip's header, which the
/// sender writes) is only a hint, so beyond this the index grows with the rows actually read.
const MOST_ROWS_RESERVED: u64 = 4_000_000;

/// Rows ahead of the one being merged whose id slot is fetched: far enough that the fetch is done by then.
const PREFETCH_AHEAD: usize = 16;

/// A reference within the file that did not resolve yet (it may be defined further down).
struct Deferred {
    fp: Fp,
    line: u32,
    pos: u8,
}

/// Where the file's own ids go.
enum Ids {
    /// A file others reference: its index, taken out of [`Indexes`] while the file is read.
    Own(Own),
    /// A file nothing references: only duplicates matter, and the workers keep its ids for finding them.
    Dups,
}

/// What the ids of a file others reference are recorded with: the few attributes later files are checked
/// against, from the row's vocabulary value and references.
struct Recorded {
    kind: FileKind,
    /// Spec positions of the references an id is recorded with: an org's or session's parent, a class's
    /// school.
    parent: Option<usize>,
    school: Option<usize>,
}

impl Recorded {
    fn attributes(&self, row: &RowFacts, refs: &[RefItem]) -> Attributes {
        let refs = refs_of(refs, row);
        let single = |pos: Option<usize>| {
            let pos = pos?;
            refs.iter()
                .find(|item| usize::from(item.pos) == pos && !item.list)
                .map(|item| item.fp)
        };
        match self.kind {
            FileKind::Orgs | FileKind::AcademicSessions => Attributes::Node {
                kind: row.vocab,
                parent: single(self.parent),
            },
            FileKind::Users => Attributes::User { role: row.vocab },
            FileKind::Classes => Attributes::Class {
                school: single(self.school),
            },
            _ => Attributes::Plain,
        }
    }
}

/// The merger's state for one file.
pub struct Merge {
    kind: FileKind,
    mode: Option<Mode>,
    columns: &'static [Column],
    /// Per spec position: the column's references are checked within this file (a parent, a user's agents).
    within: Vec<bool>,
    /// Some column references the file itself.
    self_refs: bool,
    recorded: Recorded,
    ids: Ids,
    deferred: Vec<Deferred>,
    /// The text of each deferred id, once.
    deferred_text: FpMap<String>,
    /// Ids the current row deferred already.
    deferred_in_row: HashSet<Fp>,
    /// Columns whose missing file was reported (once per file, at the first row that needed it).
    absent_reported: Vec<String>,
    /// The file's size in bytes, until the index is sized from it.
    size: Option<u64>,
    /// Rows seen so far.
    pub rows: u64,
}

impl Merge {
    /// Starts on `kind` (`size` bytes, if known), taking its index out of `idx` if other files reference it.
    pub fn new(
        kind: FileKind,
        mode: Option<Mode>,
        targets: &[Target],
        idx: &mut Indexes,
        size: Option<u64>,
    ) -> Merge {
        let columns = kind.columns();
        let within: Vec<bool> = columns
            .iter()
            .zip(targets)
            .map(|(c, t)| matches!(t, Target::Check(_)) && target_of(c) == kind)
            .collect();
        let self_refs = within.contains(&true);
        let ids = if kind.is_referenced() {
            Ids::Own(idx.take(kind))
        } else {
            Ids::Dups
        };
        Merge {
            kind,
            mode,
            columns,
            within,
            self_refs,
            recorded: Recorded {
                kind,
                parent: kind.try_position("parentSourcedId"),
                school: kind.try_position("schoolSourcedId"),
            },
            ids,
            deferred: Vec::new(),
            deferred_text: fp_map(),
            deferred_in_row: HashSet::new(),
            absent_reported: Vec::new(),
            size,
            rows: 0,
        }
    }

    /// Sizes the id index for the whole file from its size and the first batch's rows, so a large file does
    /// not rehash as it grows. Only a hint (a zip's sizes come from its sender): past a bound, and where the
    /// memory is not there, the index grows with the rows actually read.
    fn size_index(&mut self, data: &[u8], batch: &Batch) {
        let (Some(bytes), rows) = (self.size.take(), batch.rows.len() as u64) else {
            return;
        };
        if rows == 0 {
            return;
        }
        // The record data leaves out the commas and line ends: about one byte a column.
        let per_row = data.len() as u64 / rows + self.columns.len() as u64;
        let expected = (bytes / per_row.max(1)).min(MOST_ROWS_RESERVED) as usize;
        if let Ids::Own(own) = &mut self.ids {
            own.reserve(expected);
        }
    }

    /// Takes the next batch in row order (`data` is its record data). Its findings are moved into the report.
    pub fn batch(&mut self, data: &[u8], batch: &mut Batch, report: &mut ReportBuilder) {
        // A file nothing references, and a batch without findings: nothing to do row by row.
        if matches!(self.ids, Ids::Dups) && !self.self_refs && batch.findings.0.is_empty() {
            self.rows += batch.rows.len() as u64;
            return;
        }
        self.size_index(data, batch);
        let mut findings = batch.findings.0.drain(..);
        for (r, row) in batch.rows.iter().enumerate() {
            // Start fetching the slot an id a few rows on goes to, so it is in cache when that row comes.
            if let (Ids::Own(own), Some(ahead)) = (
                &self.ids,
                batch.rows.get(r + PREFETCH_AHEAD).and_then(|row| row.id),
            ) {
                own.prefetch(&ahead);
            }
            for f in findings
                .by_ref()
                .take((row.findings.1 - row.findings.0) as usize)
            {
                if f.code == Code::RefTargetAbsent {
                    let column = f.column.as_deref().unwrap_or("").to_string();
                    if self.absent_reported.contains(&column) {
                        continue;
                    }
                    self.absent_reported.push(column);
                }
                report.push(f);
            }
            self.rows += 1;
            let line = u32::try_from(row.line).unwrap_or(u32::MAX);
            if self.self_refs && !row.deleting {
                self.deferred_in_row.clear();
                for item in refs_of(&batch.refs, row) {
                    let within = self.within.get(usize::from(item.pos)) == Some(&true);
                    if !within || self.knows(&item.fp) {
                        continue;
                    }
                    // Defined further down, perhaps: decided at the end. Kept compactly (the text once per
                    // distinct id), and once per row however often the row repeats it.
                    if self.deferred_in_row.insert(item.fp) {
                        self.deferred.push(Deferred {
                            fp: item.fp,
                            line,
                            pos: item.pos,
                        });
                        self.deferred_text
                            .entry(item.fp)
                            .or_insert_with(|| text_at(data, item.text).to_string());
                    }
                }
            }
            // A file nothing references keeps no index here (its workers kept the ids).
            let (Some(fp), Ids::Own(own)) = (row.id, &mut self.ids) else {
                continue;
            };
            let attributes = self.recorded.attributes(row, &batch.refs);
            let id = || text_at(data, row.id_text);
            if let Some(first) = own.insert(fp, line, attributes, id) {
                let id = id();
                report.push(
                    Finding::error(
                        Code::IdDuplicate,
                        format!("the sourcedId {id:?} is already used on line {first}"),
                    )
                    .file(self.kind.file_name())
                    .line(row.line)
                    .column("sourcedId")
                    .value(id.as_bytes())
                    .hint("give every record in a file its own sourcedId"),
                );
            }
        }
    }

    fn knows(&self, fp: &Fp) -> bool {
        match &self.ids {
            Ids::Own(own) => own.contains(fp),
            Ids::Dups => false,
        }
    }

    /// Repeated ids of a file nothing references, as (line, line of first use), in line order, from the ids
    /// the workers kept. Their text was not kept; the caller reads those lines again to name them.
    pub fn duplicates(&self, kept: Vec<DupCheck>) -> Vec<(u32, u32)> {
        match self.ids {
            Ids::Dups => DupCheck::duplicates(kept),
            Ids::Own(_) => Vec::new(),
        }
    }

    /// Checks that need the whole file, then puts the file's index back among the others.
    pub fn finish(self, idx: &mut Indexes, report: &mut ReportBuilder) {
        let severity = match self.mode {
            Some(Mode::Delta) => Severity::Warning,
            _ => Severity::Error,
        };
        for d in &self.deferred {
            if !self.knows(&d.fp) {
                let value = self.deferred_text.get(&d.fp).map_or("", String::as_str);
                report.push(missing_reference(
                    self.kind,
                    &self.columns[d.pos as usize],
                    u64::from(d.line),
                    self.kind,
                    severity,
                    value,
                ));
            }
        }
        if let Ids::Own(Own::Nodes(nodes)) = &self.ids {
            report_cycles(self.kind, nodes, report);
        }
        // An empty delta file says nothing changed, which is news, not a problem.
        if self.rows == 0 && self.mode != Some(Mode::Delta) {
            report.push(
                Finding::warning(
                    Code::FileNoRows,
                    format!("{} has a header but no rows", self.kind.file_name()),
                )
                .file(self.kind.file_name())
                .hint(format!(
                    "leave the file out and declare it absent in manifest.csv; an empty bulk file would remove every {}",
                    self.kind.name()
                )),
            );
        }
        if let Ids::Own(own) = self.ids {
            idx.put(self.kind, own);
        }
    }
}

/// Reports each loop of parents once, at the line of its first member.
fn report_cycles(kind: FileKind, nodes: &FpMap<Node>, report: &mut ReportBuilder) {
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
