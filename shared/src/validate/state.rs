//! What cross-file checks need to remember about files already read: each file's ids (as fingerprints) and the
//! few attributes later files are checked against (org type, session type, user role, a class's school).
//! Kept compact so a district of a million users and ten million enrollments fits in well under a gigabyte.

use crate::index::{Fp, FpMap, fp_map};
use crate::spec::FileKind;
use std::collections::{BTreeMap, BTreeSet};

/// A record in a small hierarchy (orgs, academic sessions): enough to check types and find parent cycles.
pub struct Node {
    pub line: u32,
    /// Index into the type vocabulary, or `u8::MAX` when unknown.
    pub kind: u8,
    pub parent: Option<Fp>,
    pub id: Box<str>,
}

/// Ids of every file read so far.
#[derive(Default)]
pub struct Indexes {
    pub orgs: FpMap<Node>,
    pub sessions: FpMap<Node>,
    /// Line and role index of each user.
    pub users: FpMap<(u32, u8)>,
    /// Line and school of each class.
    pub classes: FpMap<(u32, Option<Fp>)>,
    /// Line of each record of every other file.
    pub others: BTreeMap<FileKind, FpMap<u32>>,
    /// Files whose ids are all indexed (their sourcedId column was readable).
    pub complete: BTreeSet<FileKind>,
}

/// Attributes of a row that later files are checked against.
pub enum Attributes {
    Plain,
    Node {
        kind: u8,
        parent: Option<Fp>,
        id: Box<str>,
    },
    User {
        role: u8,
    },
    Class {
        school: Option<Fp>,
    },
}

impl Indexes {
    pub fn new() -> Indexes {
        Indexes::default()
    }

    pub fn contains(&self, kind: FileKind, fp: &Fp) -> bool {
        match kind {
            FileKind::Orgs => self.orgs.contains_key(fp),
            FileKind::AcademicSessions => self.sessions.contains_key(fp),
            FileKind::Users => self.users.contains_key(fp),
            FileKind::Classes => self.classes.contains_key(fp),
            other => self.others.get(&other).is_some_and(|m| m.contains_key(fp)),
        }
    }

    /// Records a row's id. Returns the line the id was first used on when it is a duplicate.
    pub fn insert(
        &mut self,
        kind: FileKind,
        fp: Fp,
        line: u32,
        attributes: Attributes,
    ) -> Option<u32> {
        use std::collections::hash_map::Entry;
        fn put<V>(
            map: &mut FpMap<V>,
            fp: Fp,
            value: V,
            line_of: impl Fn(&V) -> u32,
        ) -> Option<u32> {
            match map.entry(fp) {
                Entry::Occupied(e) => Some(line_of(e.get())),
                Entry::Vacant(e) => {
                    e.insert(value);
                    None
                }
            }
        }
        match (kind, attributes) {
            (FileKind::Orgs, Attributes::Node { kind, parent, id }) => put(
                &mut self.orgs,
                fp,
                Node {
                    line,
                    kind,
                    parent,
                    id,
                },
                |n| n.line,
            ),
            (FileKind::AcademicSessions, Attributes::Node { kind, parent, id }) => put(
                &mut self.sessions,
                fp,
                Node {
                    line,
                    kind,
                    parent,
                    id,
                },
                |n| n.line,
            ),
            (FileKind::Users, Attributes::User { role }) => {
                put(&mut self.users, fp, (line, role), |v| v.0)
            }
            (FileKind::Classes, Attributes::Class { school }) => {
                put(&mut self.classes, fp, (line, school), |v| v.0)
            }
            (other, _) => put(
                self.others.entry(other).or_insert_with(fp_map),
                fp,
                line,
                |v| *v,
            ),
        }
    }
}
