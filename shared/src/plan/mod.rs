//! Planning: what a validated bundle does to a tenant's roster, decided record by record and written down as
//! data. Three steps, each of which can run on its own (a Lambda invocation each on AWS): `orgs` (orgs,
//! academicSessions, courses, classes), `users` (users, demographics) and `enrollments`. A step takes the scope
//! the steps before it kept (`scope`), walks its files in dependency order, decides for every record (`decide`):
//! create, update, restore, archive, unchanged, kept manual or out of scope, and writes the changes as chunks
//! to a blob store (`chunk`), with counts and sample ids beside them. Put together, the steps' plans are the
//! plan the guard judges (`guard`) and apply writes.

pub mod chunk;
pub mod decide;
pub mod guard;
pub mod scope;

use crate::blob::{BlobError, BlobStore};
use crate::index::{Fp, FpMap, fp_map_for};
use crate::limits::Limits;
use crate::model::{Counts, Entity, Tenant};
use crate::progress::Progress;
use crate::read::bundle::{Bundle, InputError};
use crate::read::rows::{Row, for_each_row};
use crate::spec::{FileKind, Mode};
use crate::store::{RecordRead, StoreError};
use chunk::{ChunkInfo, ChunkWriter, Compression, change_action, writing_chunks};
use decide::{Action, ArchiveWhy, Known, decide, decide_unsent};
use scope::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Planning or applying could not go on.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("{what} is damaged or missing: {reason}")]
    Staged { what: String, reason: String },
}

/// The plan steps, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Orgs,
    Users,
    Enrollments,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Orgs, Step::Users, Step::Enrollments];

    /// The entities a step plans, parents first.
    pub fn entities(self) -> &'static [Entity] {
        match self {
            Step::Orgs => &[
                Entity::Orgs,
                Entity::AcademicSessions,
                Entity::Courses,
                Entity::Classes,
            ],
            Step::Users => &[Entity::Users, Entity::Demographics],
            Step::Enrollments => &[Entity::Enrollments],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Orgs => "orgs",
            Step::Users => "users",
            Step::Enrollments => "enrollments",
        }
    }

    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Most ids kept per entity and action to show what lies behind a count.
pub const SAMPLE_IDS: usize = 20;

/// The labels of the counts that keep sample ids.
const SAMPLED: [&str; 4] = ["update", "archive", "restore", "kept_manual"];

/// What the walk learned beyond the decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Active records of each entity before the sync (the base of the guard's fractions).
    pub active_before: BTreeMap<Entity, u64>,
}

/// The plan: counts per entity and action, with sample ids behind the interesting ones, and the chunks that
/// hold its changes in apply order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub counts: BTreeMap<Entity, Counts>,
    /// Up to [`SAMPLE_IDS`] ids per entity and action (`update`, `archive`, `restore`, `kept_manual`).
    pub samples: BTreeMap<(Entity, &'static str), Vec<String>>,
    pub walked: Walked,
    pub chunks: Vec<ChunkInfo>,
}

impl Plan {
    /// An empty plan with a zero count for every entity, so every entity shows in the output.
    pub fn new() -> Plan {
        Plan {
            counts: Entity::ALL
                .into_iter()
                .map(|e| (e, Counts::default()))
                .collect(),
            ..Plan::default()
        }
    }

    /// Counts one decision (and keeps its id as a sample when the count is one worth a look).
    pub fn count(&mut self, entity: Entity, action: Action, sourced_id: &str) {
        let counts = self.counts.entry(entity).or_default();
        let (slot, sampled) = match action {
            Action::Create => (&mut counts.create, false),
            Action::Unchanged => (&mut counts.unchanged, false),
            Action::OutOfScope => (&mut counts.out_of_scope, false),
            Action::Update => (&mut counts.update, true),
            Action::Archive(_) => (&mut counts.archive, true),
            Action::Restore => (&mut counts.restore, true),
            Action::KeptManual { .. } => (&mut counts.kept_manual, true),
        };
        *slot += 1;
        if sampled {
            let ids = self.samples.entry((entity, action.label())).or_default();
            if ids.len() < SAMPLE_IDS {
                ids.push(sourced_id.to_string());
            }
        }
    }

    /// Whether applying the plan would write anything.
    pub fn writes_nothing(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The plans of the three steps put together, chunks numbered in apply order.
    pub fn assemble(steps: &[StepPlan]) -> Plan {
        let mut plan = Plan::new();
        for step in steps {
            for (entity, part) in &step.entities {
                plan.counts.insert(*entity, part.counts);
                plan.walked
                    .active_before
                    .insert(*entity, part.active_before);
                for (label, ids) in &part.samples {
                    if let Some(label) = SAMPLED.into_iter().find(|l| l == label) {
                        plan.samples.insert((*entity, label), ids.clone());
                    }
                }
            }
            plan.chunks.extend(step.chunks.iter().cloned());
        }
        plan.chunks.sort_by_key(ChunkInfo::order);
        for (n, chunk) in plan.chunks.iter_mut().enumerate() {
            chunk.number = n as u32 + 1;
        }
        plan
    }

    /// The plan as the file `plan.json` holds it.
    pub fn to_file(&self, tenant: &str, batch: &str) -> PlanFile {
        let mut entities: BTreeMap<Entity, EntityPlan> = BTreeMap::new();
        for (entity, counts) in &self.counts {
            let part = entities.entry(*entity).or_default();
            part.counts = *counts;
            part.active_before = self.walked.active_before.get(entity).copied().unwrap_or(0);
        }
        for ((entity, label), ids) in &self.samples {
            entities
                .entry(*entity)
                .or_default()
                .samples
                .insert(label.to_string(), ids.clone());
        }
        PlanFile {
            tenant: tenant.to_string(),
            batch: batch.to_string(),
            entities,
            chunks: self.chunks.clone(),
        }
    }

    pub fn from_file(file: &PlanFile) -> Plan {
        let step = StepPlan {
            step: None,
            entities: file.entities.clone(),
            chunks: Vec::new(),
        };
        let mut plan = Plan::assemble(&[step]);
        plan.chunks = file.chunks.clone();
        plan
    }
}

/// One entity's part of a plan, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityPlan {
    pub counts: Counts,
    /// Active records before the sync.
    pub active_before: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<String, Vec<String>>,
}

/// What one plan step decided, as it hands it on (`{step}.json` beside its chunks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    pub entities: BTreeMap<Entity, EntityPlan>,
    pub chunks: Vec<ChunkInfo>,
}

/// A whole plan, as `plan.json` holds it: the counts, samples and chunks the guard and apply read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFile {
    pub tenant: String,
    pub batch: String,
    pub entities: BTreeMap<Entity, EntityPlan>,
    pub chunks: Vec<ChunkInfo>,
}

/// What every plan step needs to know about the run.
pub struct StepInput<'a> {
    pub tenant: &'a Tenant,
    /// The batch being planned.
    pub batch: &'a str,
    /// Each present file's mode (from the validation report).
    pub modes: &'a BTreeMap<FileKind, Option<Mode>>,
    pub limits: &'a Limits,
    /// Most changes in one chunk.
    pub chunk_size: usize,
    pub compression: Compression,
}

/// Where a plan is staged: a blob store and a key prefix (`staged/{tenant}/{batch}/`, or empty for a folder
/// of its own).
#[derive(Clone, Copy)]
pub struct Staging<'a> {
    pub blobs: &'a dyn BlobStore,
    pub prefix: &'a str,
}

impl Staging<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn put_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), PlanError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| PlanError::Staged {
            what: self.key(name),
            reason: e.to_string(),
        })?;
        Ok(self.blobs.put(&self.key(name), &bytes)?)
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, PlanError> {
        let key = self.key(name);
        let bytes = self.blobs.get(&key)?.ok_or_else(|| PlanError::Staged {
            what: key.clone(),
            reason: "it is not in the blob store".into(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| PlanError::Staged {
            what: key,
            reason: e.to_string(),
        })
    }

    /// The scope a step hands on.
    pub fn put_scope(&self, after: Step, scope: &Scope) -> Result<(), PlanError> {
        Ok(self.blobs.put(
            &self.key(&format!("{}.scope", after.name())),
            &scope.encode(),
        )?)
    }

    /// The scope the step before `step` handed on (a fresh one for the first step).
    pub fn scope_before(&self, step: Step, tenant: &Tenant) -> Result<Scope, PlanError> {
        let before = match step {
            Step::Orgs => return Ok(Scope::new(tenant)),
            Step::Users => Step::Orgs,
            Step::Enrollments => Step::Users,
        };
        let key = self.key(&format!("{}.scope", before.name()));
        let bytes = self.blobs.get(&key)?.ok_or_else(|| PlanError::Staged {
            what: key,
            reason: format!("the {} step has not run", before.name()),
        })?;
        Scope::decode(&bytes)
    }

    pub fn put_step(&self, plan: &StepPlan) -> Result<(), PlanError> {
        let step = plan.step.map_or("step", Step::name);
        self.put_json(&format!("{step}.json"), plan)
    }

    pub fn step(&self, step: Step) -> Result<StepPlan, PlanError> {
        self.get_json(&format!("{}.json", step.name()))
    }

    pub fn put_plan(&self, plan: &PlanFile) -> Result<(), PlanError> {
        self.put_json("plan.json", plan)
    }

    pub fn plan(&self) -> Result<PlanFile, PlanError> {
        self.get_json("plan.json")
    }

    /// Removes everything staged under the prefix.
    pub fn clear(&self) -> Result<(), PlanError> {
        Ok(self.blobs.delete_prefix(self.prefix)?)
    }
}

/// Runs one plan step: reads the scope the step before kept, plans the step's files, writes their changes as
/// chunks, and stores the step's plan and the scope it hands on.
pub fn run_step(
    step: Step,
    bundle: &mut Bundle,
    input: &StepInput<'_>,
    store: &dyn RecordRead,
    staging: Staging<'_>,
    progress: &dyn Progress,
) -> Result<StepPlan, PlanError> {
    let mut scope = staging.scope_before(step, input.tenant)?;
    let plan = plan_step(step, bundle, input, &mut scope, store, staging, progress)?;
    staging.put_scope(step, &scope)?;
    staging.put_step(&plan)?;
    Ok(plan)
}

/// Runs the three steps one after the other in this process (the scope handed on in memory), and stores the
/// plan they make together.
pub fn plan_all(
    bundle: &mut Bundle,
    input: &StepInput<'_>,
    store: &dyn RecordRead,
    staging: Staging<'_>,
    progress: &dyn Progress,
) -> Result<Plan, PlanError> {
    let mut scope = Scope::new(input.tenant);
    let mut steps = Vec::new();
    for step in Step::ALL {
        let plan = plan_step(step, bundle, input, &mut scope, store, staging, progress)?;
        staging.put_step(&plan)?;
        steps.push(plan);
    }
    let plan = Plan::assemble(&steps);
    staging.put_plan(&plan.to_file(&input.tenant.id, input.batch))?;
    Ok(plan)
}

/// A stored record as the walk keeps it: what a decision needs, and whether the bundle sent it. Compact, for a
/// table of every enrollment a district holds.
#[derive(Clone, Copy)]
struct Slot {
    sis_hash: u64,
    version: u64,
    flags: u8,
}

const ACTIVE: u8 = 1;
const MANUAL_ORIGIN: u8 = 2;
const MANUAL_ARCHIVE: u8 = 4;
const MANUAL_FIELDS: u8 = 8;
const SEEN: u8 = 16;
const MANUAL_STATUS: u8 = 32;

impl Slot {
    fn of(s: &crate::store::Snapshot) -> Slot {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        Slot {
            sis_hash: s.sis_hash,
            version: s.version,
            flags: flag(s.active, ACTIVE)
                | flag(s.manual_origin, MANUAL_ORIGIN)
                | flag(s.manual_archive, MANUAL_ARCHIVE)
                | flag(s.manual_fields, MANUAL_FIELDS)
                | flag(s.manual_status, MANUAL_STATUS),
        }
    }

    /// Marks the record sent by the bundle, and says what a decision knows of it.
    fn see(&mut self) -> Known {
        self.flags |= SEEN;
        Known {
            sis_hash: self.sis_hash,
            active: self.flags & ACTIVE != 0,
            manual_origin: self.flags & MANUAL_ORIGIN != 0,
            manual_archive: self.flags & MANUAL_ARCHIVE != 0,
            manual_fields: self.flags & MANUAL_FIELDS != 0,
            manual_status: self.flags & MANUAL_STATUS != 0,
            version: self.version,
        }
    }

    /// Active, made by the SIS, and not sent: what a bulk file leaves out and archives.
    fn omitted(&self) -> bool {
        self.flags & (SEEN | ACTIVE | MANUAL_ORIGIN) == ACTIVE
    }
}

/// Records every decision of a step: counts, samples, and the changes into chunks.
struct Recorder<'w> {
    plan: Plan,
    chunks: &'w mut ChunkWriter,
}

impl Recorder<'_> {
    fn decided(
        &mut self,
        entity: Entity,
        action: Action,
        sourced_id: &str,
        version: Option<u64>,
        row: Option<&Row<'_>>,
    ) -> Result<(), PlanError> {
        self.plan.count(entity, action, sourced_id);
        // The values go from the row straight into the chunk, only for records that are written.
        if let Some(change) = change_action(action) {
            let sis = row.map(Row::values);
            self.chunks.push(entity, sourced_id, change, version, sis)?;
        }
        Ok(())
    }
}

/// Plans one step's files against the store, changing `scope` as the step's rows admit or drop records.
fn plan_step(
    step: Step,
    bundle: &mut Bundle,
    input: &StepInput<'_>,
    scope: &mut Scope,
    store: &dyn RecordRead,
    staging: Staging<'_>,
    progress: &dyn Progress,
) -> Result<StepPlan, PlanError> {
    let (plan, chunks) = writing_chunks(
        staging.blobs,
        staging.prefix,
        input.chunk_size,
        input.compression,
        |writer| walk_step(step, bundle, input, scope, store, progress, writer),
    )?;
    let mut step_plan = StepPlan {
        step: Some(step),
        entities: BTreeMap::new(),
        chunks,
    };
    for &entity in step.entities() {
        let part = step_plan.entities.entry(entity).or_default();
        part.counts = plan.counts.get(&entity).copied().unwrap_or_default();
        part.active_before = plan.walked.active_before.get(&entity).copied().unwrap_or(0);
        for ((e, label), ids) in &plan.samples {
            if *e == entity {
                part.samples.insert(label.to_string(), ids.clone());
            }
        }
    }
    Ok(step_plan)
}

/// Walks one step's files, deciding every record and writing the changes through `writer`.
fn walk_step(
    step: Step,
    bundle: &mut Bundle,
    input: &StepInput<'_>,
    scope: &mut Scope,
    store: &dyn RecordRead,
    progress: &dyn Progress,
    writer: &mut ChunkWriter,
) -> Result<Plan, PlanError> {
    let tenant = input.tenant;
    let mut recorder = Recorder {
        plan: Plan::default(),
        chunks: writer,
    };
    for &entity in step.entities() {
        scope.load(&tenant.id, entity, store)?;
        let held = store.count_records(&tenant.id, entity)?;
        let mut known: FpMap<Slot> = fp_map_for(usize::try_from(held).unwrap_or(0));
        let mut active = 0;
        store.snapshot(&tenant.id, entity, &mut |s| {
            active += u64::from(s.active);
            known.insert(Fp::of(s.sourced_id.as_bytes()), Slot::of(&s));
        })?;
        recorder.plan.walked.active_before.insert(entity, active);
        recorder.plan.counts.entry(entity).or_default();
        let kind = entity.file_kind();
        if let Some(mode) = input.modes.get(&kind).copied().flatten() {
            for_each_row(
                bundle,
                kind,
                input.limits,
                progress,
                |row: &Row<'_>| -> Result<(), PlanError> {
                    let existing = known
                        .get_mut(&Fp::of(row.sourced_id().as_bytes()))
                        .map(Slot::see);
                    let action = if scope.admits(entity, row) {
                        decide(tenant.policy, entity, row, existing, &mut || {
                            store.get_record(&tenant.id, entity, row.sourced_id())
                        })?
                    } else {
                        decide_unsent(tenant.policy, ArchiveWhy::OutOfScope, existing)
                    };
                    let version = existing.map(|k| k.version);
                    recorder.decided(entity, action, row.sourced_id(), version, Some(row))
                },
            )?;
            let omitted = known.values().filter(|s| s.omitted()).count();
            if mode == Mode::Bulk && omitted > 0 {
                // A bulk file is the whole set: what it leaves out is archived (records made by hand stay).
                let mut omitted = Vec::new();
                store.snapshot(&tenant.id, entity, &mut |s| {
                    if let Some(slot) = known
                        .get_mut(&Fp::of(s.sourced_id.as_bytes()))
                        .filter(|slot| slot.omitted())
                    {
                        omitted.push((s.sourced_id, slot.see()));
                    }
                })?;
                omitted.sort_by(|a, b| a.0.cmp(&b.0));
                for (id, known) in omitted {
                    let action = decide_unsent(tenant.policy, ArchiveWhy::Omitted, Some(known));
                    recorder.decided(entity, action, &id, Some(known.version), None)?;
                }
            }
        }
        recorder.chunks.finish_entity(entity)?;
    }
    Ok(recorder.plan)
}
