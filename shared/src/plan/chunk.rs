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
    /// The change a decision makes, or `None` for decisions that write nothing.
    pub fn of(
        entity: Entity,
        sourced_id: &str,
        action: Action,
        version: Option<u64>,
        sis: impl FnOnce() -> BTreeMap<String, String>,
    ) -> Option<Change> {
        let (action, why, sis) = match action {
            Action::Create => (ChangeAction::Create, None, sis()),
            Action::Update => (ChangeAction::Update, None, sis()),
            Action::Restore => (ChangeAction::Restore, None, sis()),
            Action::KeptManual { write: true } => (ChangeAction::KeepManual, None, sis()),
            Action::Archive(why) => (ChangeAction::Archive, Some(why), BTreeMap::new()),
            Action::Unchanged | Action::OutOfScope | Action::KeptManual { write: false } => {
                return None;
            }
        };
        Some(Change {
            entity,
            sourced_id: sourced_id.to_string(),
            action,
            why,
            version,
            sis,
        })
    }

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

/// Writes changes into chunks under a key prefix, one entity and phase at a time.
pub struct ChunkWriter<'a> {
    blobs: &'a dyn BlobStore,
    prefix: String,
    size: usize,
    compression: Compression,
    pending: BTreeMap<(Entity, Phase), Vec<Change>>,
    written: BTreeMap<(Entity, Phase), u32>,
    chunks: Vec<ChunkInfo>,
}

impl<'a> ChunkWriter<'a> {
    /// Chunks of at most `size` changes under `prefix` (which ends in `/`, or is empty).
    pub fn new(
        blobs: &'a dyn BlobStore,
        prefix: &str,
        size: usize,
        compression: Compression,
    ) -> ChunkWriter<'a> {
        ChunkWriter {
            blobs,
            prefix: prefix.to_string(),
            size: size.max(1),
            compression,
            pending: BTreeMap::new(),
            written: BTreeMap::new(),
            chunks: Vec::new(),
        }
    }

    pub fn push(&mut self, change: Change) -> Result<(), PlanError> {
        let slot = (change.entity, Phase::of(change.action));
        let pending = self.pending.entry(slot).or_default();
        pending.push(change);
        if pending.len() >= self.size {
            self.flush(slot)?;
        }
        Ok(())
    }

    /// Writes what is pending for one entity (at the end of its file).
    pub fn finish_entity(&mut self, entity: Entity) -> Result<(), PlanError> {
        for phase in [Phase::Upsert, Phase::Archive] {
            self.flush((entity, phase))?;
        }
        Ok(())
    }

    fn flush(&mut self, slot: (Entity, Phase)) -> Result<(), PlanError> {
        let Some(changes) = self.pending.remove(&slot).filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        let seq = self.written.entry(slot).or_insert(0);
        *seq += 1;
        let (entity, phase) = slot;
        let ext = match self.compression {
            Compression::Gzip => "jsonl.gz",
            Compression::None => "jsonl",
        };
        let key = format!(
            "{}chunks/{entity}-{}-{:05}.{ext}",
            self.prefix,
            phase.name(),
            *seq
        );
        self.blobs.put(&key, &encode(&changes, self.compression)?)?;
        self.chunks.push(ChunkInfo {
            number: 0,
            entity,
            phase,
            key,
            changes: changes.len() as u32,
        });
        Ok(())
    }

    /// Writes whatever is pending and lists the chunks written.
    pub fn finish(mut self) -> Result<Vec<ChunkInfo>, PlanError> {
        let slots: Vec<_> = self.pending.keys().copied().collect();
        for slot in slots {
            self.flush(slot)?;
        }
        Ok(self.chunks)
    }
}

fn encode(changes: &[Change], compression: Compression) -> Result<Vec<u8>, PlanError> {
    let mut lines = Vec::with_capacity(changes.len() * 160);
    for change in changes {
        serde_json::to_writer(&mut lines, change).map_err(|e| PlanError::Staged {
            what: "a plan chunk".into(),
            reason: e.to_string(),
        })?;
        lines.push(b'\n');
    }
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
