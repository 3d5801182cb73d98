//! What cross-file checks need to remember about files already read: each file's ids (as fingerprints) and the
//! few attributes later files are checked against (org type, session type, user role, a class's school).
//! Kept compact so a district of a million users and ten million enrollments fits in well under a gigabyte.

use crate::index::{Fp, FpMap, IdTable, fp_map};
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
    pub users: IdTable<(u32, u8)>,
    /// Line and school of each class.
    pub classes: IdTable<(u32, Option<Fp>)>,
    /// Line of each record of every other file, indexed by `FileKind as usize`.
    pub others: Vec<IdTable<u32>>,
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
#[derive(Clone, Copy)]
pub enum Attributes {
    Plain,
    /// An org or session: its type index and parent.
    Node {
        kind: u8,
        parent: Option<Fp>,
    },
    User {
        role: u8,
    },
    Class {
        school: Option<Fp>,
    },
}

/// The index of the file being read. The merging thread owns it (taken out of [`Indexes`]) while the workers
/// share the indexes of the files read before, which no longer change.
pub enum Own {
    Nodes(FpMap<Node>),
    Users(IdTable<(u32, u8)>),
    Classes(IdTable<(u32, Option<Fp>)>),
    Lines(IdTable<u32>),
}

impl Indexes {
    pub fn new() -> Indexes {
        Indexes {
            orgs: fp_map(),
            sessions: fp_map(),
            users: IdTable::default(),
            classes: IdTable::default(),
            others: FileKind::ALL.iter().map(|_| IdTable::default()).collect(),
            complete: BTreeSet::new(),
        }
    }

    /// Finds a record by id, with the attributes later checks need.
    #[inline]
    pub fn lookup(&self, kind: FileKind, fp: &Fp) -> Option<Found> {
        match kind {
            FileKind::Orgs => self.orgs.get(fp).map(|n| Found::Typed(n.kind)),
            FileKind::AcademicSessions => self.sessions.get(fp).map(|n| Found::Typed(n.kind)),
            FileKind::Users => self.users.get(fp).map(|u| Found::User(u.1)),
            FileKind::Classes => self.classes.get(fp).map(|c| Found::Class(c.1)),
            other => self.others[other as usize].get(fp).map(|_| Found::Plain),
        }
    }

    /// Starts bringing the slot where [`Indexes::lookup`] starts for an id into cache, without waiting (see
    /// [`IdTable::prefetch`]). Small indexes stay in cache anyway.
    #[inline]
    pub fn prefetch(&self, kind: FileKind, fp: &Fp) {
        match kind {
            FileKind::Orgs | FileKind::AcademicSessions => {}
            FileKind::Users => self.users.prefetch(fp),
            FileKind::Classes => self.classes.prefetch(fp),
            other => self.others[other as usize].prefetch(fp),
        }
    }

    /// Takes out the index of a file about to be read.
    pub fn take(&mut self, kind: FileKind) -> Own {
        match kind {
            FileKind::Orgs => Own::Nodes(std::mem::take(&mut self.orgs)),
            FileKind::AcademicSessions => Own::Nodes(std::mem::take(&mut self.sessions)),
            FileKind::Users => Own::Users(std::mem::take(&mut self.users)),
            FileKind::Classes => Own::Classes(std::mem::take(&mut self.classes)),
            other => Own::Lines(std::mem::take(&mut self.others[other as usize])),
        }
    }

    /// Puts back the index [`Indexes::take`] took out, once its file is read.
    pub fn put(&mut self, kind: FileKind, own: Own) {
        match (kind, own) {
            (FileKind::Orgs, Own::Nodes(map)) => self.orgs = map,
            (FileKind::AcademicSessions, Own::Nodes(map)) => self.sessions = map,
            (FileKind::Users, Own::Users(map)) => self.users = map,
            (FileKind::Classes, Own::Classes(map)) => self.classes = map,
            (other, Own::Lines(map)) => self.others[other as usize] = map,
            // Take and put always pair up by kind; anything else is dropped.
            _ => {}
        }
    }
}

impl Own {
    /// Makes room for `n` ids in all, if the memory is there.
    pub fn reserve(&mut self, n: usize) {
        match self {
            Own::Nodes(m) => {
                let _ = m.try_reserve(n.saturating_sub(m.len()));
            }
            Own::Users(m) => m.reserve(n),
            Own::Classes(m) => m.reserve(n),
            Own::Lines(m) => m.reserve(n),
        }
    }

    /// Starts bringing the slot where [`Own::insert`] starts for an id into cache (see [`IdTable::prefetch`]).
    #[inline]
    pub fn prefetch(&self, fp: &Fp) {
        match self {
            Own::Nodes(_) => {}
            Own::Users(m) => m.prefetch(fp),
            Own::Classes(m) => m.prefetch(fp),
            Own::Lines(m) => m.prefetch(fp),
        }
    }

    pub fn contains(&self, fp: &Fp) -> bool {
        match self {
            Own::Nodes(m) => m.contains_key(fp),
            Own::Users(m) => m.contains(fp),
            Own::Classes(m) => m.contains(fp),
            Own::Lines(m) => m.contains(fp),
        }
    }

    /// Records a row's id (`id` gives its text, kept for orgs and sessions). Returns the line the id was first
    /// used on when it is a duplicate.
    pub fn insert<'t>(
        &mut self,
        fp: Fp,
        line: u32,
        attributes: Attributes,
        id: impl FnOnce() -> &'t str,
    ) -> Option<u32> {
        use std::collections::hash_map::Entry;
        fn put<V>(
            map: &mut FpMap<V>,
            fp: Fp,
            value: impl FnOnce() -> V,
            line_of: impl Fn(&V) -> u32,
        ) -> Option<u32> {
            match map.entry(fp) {
                Entry::Occupied(e) => Some(line_of(e.get())),
                Entry::Vacant(e) => {
                    e.insert(value());
                    None
                }
            }
        }
        match (self, attributes) {
            (Own::Nodes(map), attributes) => {
                let (kind, parent) = match attributes {
                    Attributes::Node { kind, parent } => (kind, parent),
                    _ => (u8::MAX, None),
                };
                put(
                    map,
                    fp,
                    || Node {
                        line,
                        kind,
                        parent,
                        id: id().into(),
                    },
                    |n| n.line,
                )
            }
            (Own::Users(map), attributes) => {
                let role = match attributes {
                    Attributes::User { role } => role,
                    _ => u8::MAX,
                };
                map.insert_new(fp, (line, role)).map(|v| v.0)
            }
            (Own::Classes(map), attributes) => {
                let school = match attributes {
                    Attributes::Class { school } => school,
                    _ => None,
                };
                map.insert_new(fp, (line, school)).map(|v| v.0)
            }
            (Own::Lines(map), _) => map.insert_new(fp, line),
        }
    }
}

/// Buckets a duplicate check spreads ids over (by the top bits of the fingerprint): few enough to append to
/// cheaply, many enough that one bucket's table fits a core's cache.
const DUP_BUCKETS: usize = 256;

/// The ids of a file that no other file references (enrollments, demographics, results, the resource links):
/// only duplicates matter, so ids are appended to buckets as they come (sequential writes, no hashing) and each
/// bucket is checked once at the end, in a table small enough to stay in cache. Cheaper than one large hash set
/// for the ten million enrollments of a large district, and smaller. Each worker thread keeps its own, for the
/// rows it checked; [`DupCheck::duplicates`] takes them all.
pub struct DupCheck {
    buckets: Vec<Vec<(Fp, u32)>>,
}

impl DupCheck {
    pub fn new() -> DupCheck {
        DupCheck {
            buckets: (0..DUP_BUCKETS).map(|_| Vec::new()).collect(),
        }
    }

    /// Adds the id of the row on `line`.
    pub fn push(&mut self, fp: Fp, line: u32) {
        let bucket = (fp.high() >> 56) as usize % DUP_BUCKETS;
        self.buckets[bucket].push((fp, line));
    }

    /// Every repeated id among all of `checks` (one file's), as (line, line of its first use), in line order.
    /// The buckets are checked on two threads: this runs at the end of a file, when the workers' cores are
    /// free.
    pub fn duplicates(checks: Vec<DupCheck>) -> Vec<(u32, u32)> {
        /// One bucket of every check at a time: its ids come from several threads, so not in line order.
        fn scan(buckets: Vec<Vec<Vec<(Fp, u32)>>>) -> Vec<(u32, u32)> {
            let mut found = Vec::new();
            let mut first: FpMap<u32> = fp_map();
            for parts in buckets {
                let ids = || parts.iter().flatten();
                let total = parts.iter().map(Vec::len).sum();
                first.clear();
                first.reserve(total);
                for &(fp, line) in ids() {
                    first
                        .entry(fp)
                        .and_modify(|first| *first = (*first).min(line))
                        .or_insert(line);
                }
                // Nearly always every id is new; otherwise a second pass names each repeat's first use.
                if first.len() < total {
                    found.extend(ids().filter_map(|(fp, line)| {
                        first
                            .get(fp)
                            .filter(|first| *first != line)
                            .map(|first| (*line, *first))
                    }));
                }
            }
            found
        }
        let mut buckets: Vec<Vec<Vec<(Fp, u32)>>> = (0..DUP_BUCKETS).map(|_| Vec::new()).collect();
        for check in checks {
            for (parts, bucket) in buckets.iter_mut().zip(check.buckets) {
                parts.push(bucket);
            }
        }
        let second_half = buckets.split_off(buckets.len() / 2);
        let mut found = std::thread::scope(|s| {
            let other = s.spawn(move || scan(second_half));
            let mut found = scan(buckets);
            // Checking cannot fail on input; a panic there is a bug, so it is passed on rather than hidden.
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
