//! What cross-file checks need to remember about files already read: each file's ids (as fingerprints) and the
//! few attributes later files are checked against (org type, session type, user role, a class's school).
//! Kept compact so a district of a million users and ten million enrollments fits in well under a gigabyte.

use crate::index::{Fp, FpMap, fp_map};
use crate::spec::FileKind;
use std::collections::BTreeSet;

/// A record in a small hierarchy (orgs, academic sessions): enough to check types and find parent cycles.
pub struct Node {
    pub line: u32,
    /// Index into the type vocabulary, or `u8::MAX` when unknown.
    pub kind: u8,
    pub parent: Option<Fp>,
    pub id: Box<str>,
}

/// Ids of every file read so far.
pub struct Indexes {
    pub orgs: FpMap<Node>,
    pub sessions: FpMap<Node>,
    /// Line and role index of each user.
    pub users: FpMap<(u32, u8)>,
    /// Line and school of each class.
    pub classes: FpMap<(u32, Option<Fp>)>,
    /// Line of each record of every other file, indexed by `FileKind as usize`.
    pub others: Vec<FpMap<u32>>,
    /// Files whose ids are all indexed (their sourcedId column was readable).
    pub complete: BTreeSet<FileKind>,
}

/// What a reference found: the attributes later checks need, from one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Plain,
    /// An org or session, with its type index.
    Typed(u8),
    /// A user, with their role index.
    User(u8),
    /// A class, with its school.
    Class(Option<Fp>),
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
        Indexes {
            orgs: fp_map(),
            sessions: fp_map(),
            users: fp_map(),
            classes: fp_map(),
            others: FileKind::ALL.iter().map(|_| fp_map()).collect(),
            complete: BTreeSet::new(),
        }
    }

    pub fn contains(&self, kind: FileKind, fp: &Fp) -> bool {
        self.lookup(kind, fp).is_some()
    }

    /// Finds a record by id, with the attributes later checks need.
    pub fn lookup(&self, kind: FileKind, fp: &Fp) -> Option<Found> {
        match kind {
            FileKind::Orgs => self.orgs.get(fp).map(|n| Found::Typed(n.kind)),
            FileKind::AcademicSessions => self.sessions.get(fp).map(|n| Found::Typed(n.kind)),
            FileKind::Users => self.users.get(fp).map(|u| Found::User(u.1)),
            FileKind::Classes => self.classes.get(fp).map(|c| Found::Class(c.1)),
            other => self.others[other as usize].get(fp).map(|_| Found::Plain),
        }
    }

    /// Sizes the map for a file about to be read, so a large file does not rehash as it grows.
    pub fn reserve(&mut self, kind: FileKind, rows: usize) {
        // Only a hint: if the memory is not there, the maps grow as rows arrive instead.
        let _ = match kind {
            FileKind::Users => self.users.try_reserve(rows),
            FileKind::Classes => self.classes.try_reserve(rows),
            FileKind::Orgs | FileKind::AcademicSessions => Ok(()),
            other => self.others[other as usize].try_reserve(rows),
        };
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
            (other, _) => put(&mut self.others[other as usize], fp, line, |v| *v),
        }
    }
}

/// Buckets a duplicate check spreads ids over (by the top bits of the fingerprint).
const DUP_BUCKETS: usize = 64;

/// The ids of a file that no other file references (enrollments, demographics, results, the resource links):
/// only duplicates matter, so ids are appended to buckets as they come (sequential writes, no hashing) and each
/// bucket is sorted once at the end. Cheaper than a hash set for the ten million enrollments of a large
/// district, and smaller.
pub struct DupCheck {
    buckets: Vec<Vec<(Fp, u32)>>,
}

impl DupCheck {
    pub fn new(expected_rows: usize) -> DupCheck {
        let per_bucket = expected_rows / DUP_BUCKETS + expected_rows / (DUP_BUCKETS * 8);
        DupCheck {
            buckets: (0..DUP_BUCKETS)
                .map(|_| Vec::with_capacity(per_bucket))
                .collect(),
        }
    }

    pub fn push(&mut self, fp: Fp, line: u32) {
        let bucket = (fp.high() >> 58) as usize % DUP_BUCKETS;
        self.buckets[bucket].push((fp, line));
    }

    /// Every repeated id as (line, line of its first use), in line order. The buckets are sorted on two
    /// threads: this runs at the end of a file, when the field pass's core is free.
    pub fn duplicates(self) -> Vec<(u32, u32)> {
        fn scan(buckets: Vec<Vec<(Fp, u32)>>) -> Vec<(u32, u32)> {
            let mut found = Vec::new();
            for mut bucket in buckets {
                bucket.sort_unstable();
                let mut first: Option<(Fp, u32)> = None;
                for (fp, line) in bucket {
                    match first {
                        Some((seen, at)) if seen == fp => found.push((line, at)),
                        _ => first = Some((fp, line)),
                    }
                }
            }
            found
        }
        let mut buckets = self.buckets;
        let second_half = buckets.split_off(buckets.len() / 2);
        let mut found = std::thread::scope(|s| {
            let other = s.spawn(move || scan(second_half));
            let mut found = scan(buckets);
            // Sorting cannot fail on input; a panic there is a bug, so it is passed on rather than hidden.
            match other.join() {
                Ok(more) => found.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            found
        });
        found.sort_unstable();
        found
    }
}
