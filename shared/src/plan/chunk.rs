//! Plan chunks: the decided changes, written down so that applying needs neither the bundle nor the planner.
//!
//! A chunk holds the changes of one entity and one phase (upserts, or archives), at most a few thousand, as
//! JSON Lines: one change per line, compressed with gzip when the key ends in `.gz`. A line reads
//!
//! ```json
//! {"entity":"users","sourcedId":"stu-1","action":"update","version":3,"sis":{"familyName":"Kim","givenName":"Cara"}}
//! ```
//!
//! * `action`: `create`, `update`, `restore`, `keep_manual` (record the SIS values beside manual work that
//!   stays) or `archive`, with `why` (`omitted` from a bulk file, `deleted` by a delta, `out_of_scope`);
//! * `version`: the version of the stored record the change was planned against (absent for `create`): a
//!   record found at another version changed since, and is decided again under the tenant's policy;
//! * `sis`: the values the SIS sent (absent for archives).

use super::PlanError;
use super::decide::{Action, ArchiveWhy};
use crate::blob::BlobStore;
use crate::model::Entity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

/// What a change does, as a chunk line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Create,
    Update,
    Restore,
    KeepManual,
    Archive,
}

/// One decided change to one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub entity: Entity,
    #[serde(rename = "sourcedId")]
    pub sourced_id: String,
    pub action: ChangeAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<ArchiveWhy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sis: BTreeMap<String, String>,
}

impl Change {
    /// The decision the change was planned as.
    pub fn planned(&self) -> Action {
        match self.action {
            ChangeAction::Create => Action::Create,
            ChangeAction::Update => Action::Update,
            ChangeAction::Restore => Action::Restore,
            ChangeAction::KeepManual => Action::KeptManual { write: true },
            ChangeAction::Archive => Action::Archive(self.why.unwrap_or(ArchiveWhy::Omitted)),
        }
    }
}

/// When in applying a chunk comes: upserts first (parents first), archives after (children first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Upsert,
    Archive,
}

impl Phase {
    pub fn of(action: ChangeAction) -> Phase {
        match action {
            ChangeAction::Archive => Phase::Archive,
            _ => Phase::Upsert,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Upsert => "upsert",
            Phase::Archive => "archive",
        }
    }
}

/// A chunk as the plan lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// Its place in the apply order, from 1; assigned when the steps' plans are put together.
    #[serde(default)]
    pub number: u32,
    pub entity: Entity,
    pub phase: Phase,
    /// Where it is in the blob store.
    pub key: String,
    pub changes: u32,
}

impl ChunkInfo {
    /// The apply order: upserts in entity order (parents first), then archives in reverse (children first).
    pub fn order(&self) -> (Phase, i32, String) {
        let rank = Entity::ALL
            .iter()
            .position(|e| *e == self.entity)
            .unwrap_or(0) as i32;
        let rank = match self.phase {
            Phase::Upsert => rank,
            Phase::Archive => -rank,
        };
        (self.phase, rank, self.key.clone())
    }
}

/// Whether chunks are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    /// Plain JSON Lines, for a plan a person reads (`--plan-out`).
    None,
}

/// One line of a chunk as it is written: the fields of a [`Change`], with the SIS values borrowed from
/// wherever they are (a bundle row, or a change read back), so nothing is copied to write them.
#[derive(Serialize)]
struct Line<'a, S: Serialize> {
    entity: Entity,
    #[serde(rename = "sourcedId")]
    sourced_id: &'a str,
    action: ChangeAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<ArchiveWhy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sis: Option<S>,
}

/// What a decision writes into a chunk, if anything: the change's action and why.
pub fn change_action(action: Action) -> Option<(ChangeAction, Option<ArchiveWhy>)> {
    Some(match action {
        Action::Create => (ChangeAction::Create, None),
        Action::Update => (ChangeAction::Update, None),
        Action::Restore => (ChangeAction::Restore, None),
        Action::KeptManual { write: true } => (ChangeAction::KeepManual, None),
        Action::Archive(why) => (ChangeAction::Archive, Some(why)),
        Action::Unchanged | Action::OutOfScope | Action::KeptManual { write: false } => {
            return None;
        }
    })
}

/// A chunk's lines, ready to be compressed and stored.
type Sealed = (String, Vec<u8>);

/// Writes changes into chunks under a key prefix, one entity and phase at a time. Sealed chunks go to a thread
/// of their own that compresses and stores them, while the walk goes on (see [`writing_chunks`]).
pub struct ChunkWriter {
    prefix: String,
    size: u32,
    ext: &'static str,
    pending: BTreeMap<(Entity, Phase), (Vec<u8>, u32)>,
    written: BTreeMap<(Entity, Phase), u32>,
    chunks: Vec<ChunkInfo>,
    out: std::sync::mpsc::SyncSender<Sealed>,
}

impl ChunkWriter {
    /// Writes one change (its SIS values `sis`, when it carries them).
    pub fn push<S: Serialize>(
        &mut self,
        entity: Entity,
        sourced_id: &str,
        (action, why): (ChangeAction, Option<ArchiveWhy>),
        version: Option<u64>,
        sis: Option<S>,
    ) -> Result<(), PlanError> {
        let slot = (entity, Phase::of(action));
        let (lines, count) = self.pending.entry(slot).or_default();
        let line = Line {
            entity,
            sourced_id,
            action,
            why,
            version,
            sis: sis.filter(|_| action != ChangeAction::Archive),
        };
        serde_json::to_writer(&mut *lines, &line).map_err(|e| PlanError::Staged {
            what: "a plan chunk".into(),
            reason: e.to_string(),
        })?;
        lines.push(b'\n');
        *count += 1;
        if *count >= self.size {
            self.seal(slot)?;
        }
        Ok(())
    }

    /// Writes one change read back from a chunk.
    pub fn push_change(&mut self, change: &Change) -> Result<(), PlanError> {
        let sis = (!change.sis.is_empty()).then_some(&change.sis);
        self.push(
            change.entity,
            &change.sourced_id,
            (change.action, change.why),
            change.version,
            sis,
        )
    }

    /// Seals what is pending for one entity (at the end of its file).
    pub fn finish_entity(&mut self, entity: Entity) -> Result<(), PlanError> {
        for phase in [Phase::Upsert, Phase::Archive] {
            self.seal((entity, phase))?;
        }
        Ok(())
    }

    fn seal(&mut self, slot: (Entity, Phase)) -> Result<(), PlanError> {
        let Some((lines, count)) = self.pending.remove(&slot).filter(|(_, n)| *n > 0) else {
            return Ok(());
        };
        let seq = self.written.entry(slot).or_insert(0);
        *seq += 1;
        let (entity, phase) = slot;
        let key = format!(
            "{}chunks/{entity}-{}-{:05}.{}",
            self.prefix,
            phase.name(),
            *seq,
            self.ext
        );
        self.chunks.push(ChunkInfo {
            number: 0,
            entity,
            phase,
            key: key.clone(),
            changes: count,
        });
        self.out.send((key, lines)).map_err(|_| PlanError::Staged {
            what: "a plan chunk".into(),
            reason: "the thread that stores chunks stopped".into(),
        })
    }
}

/// Runs `work` with a chunk writer whose chunks are compressed and stored under `prefix` in `blobs` by a thread
/// of its own; returns what `work` returned and the chunks written, once every one is stored.
pub fn writing_chunks<R>(
    blobs: &dyn BlobStore,
    prefix: &str,
    size: usize,
    compression: Compression,
    work: impl FnOnce(&mut ChunkWriter) -> Result<R, PlanError>,
) -> Result<(R, Vec<ChunkInfo>), PlanError> {
    std::thread::scope(|scope| {
        // Two sealed chunks in flight at most: enough to keep both threads busy, little memory.
        let (out, sealed) = std::sync::mpsc::sync_channel::<Sealed>(2);
        let storer = scope.spawn(move || -> Result<(), PlanError> {
            for (key, lines) in sealed {
                blobs.put(&key, &compress(lines, compression)?)?;
            }
            Ok(())
        });
        let mut writer = ChunkWriter {
            prefix: prefix.to_string(),
            size: u32::try_from(size.max(1)).unwrap_or(u32::MAX),
            ext: match compression {
                Compression::Gzip => "jsonl.gz",
                Compression::None => "jsonl",
            },
            pending: BTreeMap::new(),
            written: BTreeMap::new(),
            chunks: Vec::new(),
            out,
        };
        let result = work(&mut writer).and_then(|r| {
            let slots: Vec<_> = writer.pending.keys().copied().collect();
            for slot in slots {
                writer.seal(slot)?;
            }
            Ok(r)
        });
        let ChunkWriter { chunks, out, .. } = writer;
        drop(out);
        let stored = storer.join().unwrap_or_else(|_| {
            Err(PlanError::Staged {
                what: "a plan chunk".into(),
                reason: "the thread that stores chunks failed".into(),
            })
        });
        // A storing failure explains a writing one (the writer only sees the thread gone).
        stored?;
        Ok((result?, chunks))
    })
}

fn compress(lines: Vec<u8>, compression: Compression) -> Result<Vec<u8>, PlanError> {
    match compression {
        Compression::None => Ok(lines),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(lines.len() / 4),
                flate2::Compression::fast(),
            );
            gz.write_all(&lines)
                .and_then(|()| gz.finish())
                .map_err(|e| PlanError::Staged {
                    what: "a plan chunk".into(),
                    reason: e.to_string(),
                })
        }
    }
}

/// Reads one chunk back.
pub fn read_chunk(blobs: &dyn BlobStore, chunk: &ChunkInfo) -> Result<Vec<Change>, PlanError> {
    let bad = |reason: String| PlanError::Staged {
        what: format!("plan chunk {}", chunk.key),
        reason,
    };
    let stream = blobs
        .open(&chunk.key)?
        .ok_or_else(|| bad("it is not in the blob store".into()))?;
    let stream: Box<dyn Read> = if chunk.key.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(stream))
    } else {
        stream
    };
    let mut changes = Vec::with_capacity(chunk.changes as usize);
    for (n, line) in BufReader::new(stream).lines().enumerate() {
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let change: Change =
            serde_json::from_str(&line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
        if change.entity != chunk.entity || Phase::of(change.action) != chunk.phase {
            return Err(bad(format!(
                "line {} is a {} {} change in a chunk of {} {}s",
                n + 1,
                change.entity,
                Phase::of(change.action).name(),
                chunk.entity,
                chunk.phase.name()
            )));
        }
        changes.push(change);
    }
    if changes.len() != chunk.changes as usize {
        return Err(bad(format!(
            "it holds {} changes where the plan lists {}",
            changes.len(),
            chunk.changes
        )));
    }
    Ok(changes)
}
