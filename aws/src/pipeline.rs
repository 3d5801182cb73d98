//! The pipeline's states on AWS: each function of the state machine calls one of these, which runs the
//! library's stage against DynamoDB and S3 and does what only AWS has (starting executions, keeping task
//! tokens, publishing events). An upload is routed to its tenant by its key, a zip being a bundle by itself
//! and a folder of loose files becoming one when it is complete and quiet.

use crate::context::Aws;
use crate::dynamo::DynamoStore;
use crate::events;
use crate::payload::{Caught, Guarded, Job, StepError};
use crate::s3::S3Blobs;
use crate::sfn::{ExecutionLiveness, Executions, Started, execution_name};
use rollcall::apply::rollback::roll_back;
use rollcall::blob::BlobStore;
use rollcall::limits::Limits;
use rollcall::model::{Batch, BatchStatus, SourceKind, Tenant};
use rollcall::plan::Step;
use rollcall::plan::chunk::ChunkInfo;
use rollcall::read::bundle::Bundle;
use rollcall::spec::FileKind;
use rollcall::store::{BatchStore, ChunkResult, LeaseStore, TenantStore};
use rollcall::sync::SyncStatus;
use rollcall::sync::lease::{self, Holder};
use rollcall::sync::stages::{self, Arrival, Received};
use rollcall::{NoProgress, Progress};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How long a lease held by an execution stays valid without renewal (each state renews it).
const LEASE_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a batch the validate function recorded may wait for its execution to start. The function starts
/// it right after recording the batch; one that died in between is invoked again by Lambda's retries (which
/// start it, see `receive`), so only a batch without an execution for longer than this is taken as abandoned.
const START_GRACE: Duration = Duration::from_secs(30 * 60);

/// Most changes in a plan chunk on AWS: one apply invocation writes one chunk well within a Lambda's time.
const CHUNK_SIZE: usize = 2_000;

/// What happened to an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Upload {
    /// Validated and recorded; its execution is started (or already was).
    Started { batch: String, execution: String },
    /// The same content again: nothing new to do.
    Duplicate { batch: String },
    /// Refused (invalid, from the other source, or outside every tenant's prefix); the report says why.
    Rejected {
        batch: Option<String>,
        report: String,
    },
    /// One file of a loose upload: the folder is processed once it is complete and quiet.
    Settling { folder: String },
    /// A loose upload that is still incomplete after its quiet period; the report names what is missing.
    Incomplete {
        folder: String,
        missing: Vec<String>,
        report: String,
    },
    /// Nothing to do (a file that is not part of a bundle, a folder superseded by newer uploads).
    Ignored { reason: String },
}

/// The pipeline's states against one stack.
pub struct Pipeline<'a> {
    pub aws: &'a Aws,
    pub store: DynamoStore,
    pub blobs: S3Blobs,
    pub limits: Limits,
    /// How long a folder of loose files must stay unchanged before it is taken as complete.
    pub quiet: Duration,
}

/// Where an upload's key says it belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub tenant: String,
    pub source: SourceKind,
    /// The rest of the key after `inbound/{tenant}/`.
    pub rest: String,
}

/// Routes an object key to its tenant: `inbound/{tenant}/...`, from the API when under `inbound/{tenant}/api/`.
pub fn route(key: &str) -> Option<Route> {
    let rest = key.strip_prefix("inbound/")?;
    let (tenant, rest) = rest.split_once('/')?;
    if tenant.is_empty() || rest.is_empty() {
        return None;
    }
    let source = if rest.starts_with("api/") {
        SourceKind::Api
    } else {
        SourceKind::Sftp
    };
    Some(Route {
        tenant: tenant.to_string(),
        source,
        rest: rest.to_string(),
    })
}

/// The folder (prefix, ending in `/`) a loose file of an upload belongs to.
pub fn folder_of(key: &str) -> String {
    match key.rsplit_once('/') {
        Some((folder, _)) => format!("{folder}/"),
        None => String::new(),
    }
}

/// Whether a batch is still on its way to an end (validated, planned or applying; a held one waits for ops).
fn unfinished(batch: &Batch) -> bool {
    matches!(
        batch.status,
        BatchStatus::Validated | BatchStatus::Planned | BatchStatus::Applying
    )
}

/// Whether a batch was recorded (or last changed) less than `START_GRACE` ago.
fn within_grace(batch: &Batch) -> bool {
    batch.updated_at + START_GRACE.as_secs() > rollcall::model::now()
}

fn is_zip(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with(".zip")
}

fn is_csv(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with(".csv")
}

impl<'a> Pipeline<'a> {
    pub fn new(aws: &'a Aws) -> Pipeline<'a> {
        Pipeline {
            aws,
            store: DynamoStore::new(aws),
            blobs: S3Blobs::new(aws.s3.clone(), aws.bridge.clone(), &aws.names.bucket),
            limits: Limits::default(),
            quiet: Duration::from_secs(120),
        }
    }

    fn executions(&self) -> Executions {
        Executions::new(self.aws.sfn.clone(), self.aws.bridge.clone())
    }

    fn publish(&self, batch: &Batch) {
        if let Some(bus) = &self.aws.names.event_bus {
            let published = self
                .aws
                .bridge
                .run(events::publish(&self.aws.events, bus, batch));
            if let Err(e) = published {
                // The batch's state is in the table whatever happens to its event.
                tracing::warn!(tenant = %batch.tenant, batch = %batch.id, error = %e, "the batch event was not published");
            }
        }
    }

    /// A report for an upload no tenant takes, or that cannot be read: kept under `reports/_refused/`.
    fn refuse(&self, key: &str, reason: &str) -> Result<Upload, StepError> {
        let name = execution_name(key);
        let report = format!("reports/_refused/{name}.json");
        let body = serde_json::json!({"key": key, "valid": false, "reason": reason});
        self.blobs
            .put(&report, body.to_string().as_bytes())
            .map_err(|e| StepError::Transient(e.to_string()))?;
        tracing::warn!(key, reason, "upload refused");
        Ok(Upload::Rejected {
            batch: None,
            report,
        })
    }

    /// An object created under `inbound/`: a zip is validated at once; a loose file waits for its folder.
    pub fn upload(&self, key: &str) -> Result<Upload, StepError> {
        let Some(route) = route(key) else {
            return self.refuse(
                key,
                "the key is not under inbound/{tenant}/, so no tenant takes it",
            );
        };
        let Some(tenant) = self.store.get_tenant(&route.tenant)? else {
            return self.refuse(
                key,
                &format!(
                    "there is no tenant {:?}, so nothing takes this upload",
                    route.tenant
                ),
            );
        };
        if is_zip(key) {
            let Some(object) = self
                .blobs
                .object(key)
                .map_err(|e| StepError::Transient(e.to_string()))?
            else {
                return Ok(Upload::Ignored {
                    reason: format!("{key} is gone"),
                });
            };
            let mut bundle = Bundle::from_zip(Path::new(key), Box::new(object), &self.limits)
                .map_err(|e| StepError::Refused(e.to_string()));
            return match &mut bundle {
                Ok(bundle) => self.receive(&tenant, bundle, route.source, key),
                Err(e) => self.refuse(key, &e.to_string()),
            };
        }
        if !is_csv(key) {
            return Ok(Upload::Ignored {
                reason: format!("{key} is neither a zip nor a CSV file"),
            });
        }
        // One file of a folder: wait until the folder has been quiet for a while, then look again.
        let folder = folder_of(key);
        let listing = self.listing(&folder)?;
        let settle =
            self.aws.names.settle_machine.as_deref().ok_or_else(|| {
                StepError::Refused("ROLLCALL_SETTLE_MACHINE_ARN is not set".into())
            })?;
        let name = execution_name(&format!("settle-{}-{listing:016x}", route.tenant));
        let input = serde_json::json!({
            "settle": {"folder": folder, "listing": format!("{listing:016x}"), "quiet": self.quiet.as_secs()}
        });
        self.aws
            .bridge
            .run(self.executions().start(settle, &name, &input))?;
        Ok(Upload::Settling { folder })
    }

    /// A digest of what a folder holds now (names, sizes): a folder is quiet when it has not changed.
    fn listing(&self, folder: &str) -> Result<u64, StepError> {
        let listed = self
            .blobs
            .list(folder)
            .map_err(|e| StepError::Transient(e.to_string()))?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(folder.as_bytes());
        for b in listed {
            h.update(b.key.as_bytes());
            h.update(&b.size.to_le_bytes());
        }
        Ok(h.digest())
    }

    /// A folder of loose files after its quiet period: processed when it is still as it was and complete.
    pub fn settled(&self, folder: &str, listing: &str) -> Result<Upload, StepError> {
        if format!("{:016x}", self.listing(folder)?) != listing {
            return Ok(Upload::Ignored {
                reason: format!("{folder} changed since; the newer upload is waited for"),
            });
        }
        let Some(route) = route(folder) else {
            return self.refuse(folder, "the folder is not under inbound/{tenant}/");
        };
        let Some(tenant) = self.store.get_tenant(&route.tenant)? else {
            return self.refuse(folder, &format!("there is no tenant {:?}", route.tenant));
        };
        let missing = self.missing(folder)?;
        if !missing.is_empty() {
            let name = folder
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("upload");
            let report = format!("reports/{}/incomplete/{name}.json", route.tenant);
            let body = serde_json::json!({
                "folder": folder,
                "valid": false,
                "missing": missing,
                "reason": format!(
                    "the upload stayed incomplete: {} not there; upload {} to {folder}",
                    missing.join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ),
            });
            self.blobs
                .put(
                    &report,
                    serde_json::to_vec_pretty(&body)
                        .unwrap_or_default()
                        .as_slice(),
                )
                .map_err(|e| StepError::Transient(e.to_string()))?;
            return Ok(Upload::Incomplete {
                folder: folder.to_string(),
                missing,
                report,
            });
        }
        let files = self.blobs.folder(folder);
        let mut bundle = match Bundle::from_loose(Path::new(folder), Box::new(files), &self.limits)
        {
            Ok(b) => b,
            Err(e) => return self.refuse(folder, &e.to_string()),
        };
        self.receive(&tenant, &mut bundle, route.source, folder)
    }

    /// The files a folder's manifest declares (and the manifest itself) that are not there.
    fn missing(&self, folder: &str) -> Result<Vec<String>, StepError> {
        let present: Vec<String> = self
            .blobs
            .list(folder)
            .map_err(|e| StepError::Transient(e.to_string()))?
            .into_iter()
            .map(|b| b.key[folder.len()..].to_string())
            .collect();
        let Some(manifest) = self
            .blobs
            .get(&format!("{folder}manifest.csv"))
            .map_err(|e| StepError::Transient(e.to_string()))?
        else {
            return Ok(vec!["manifest.csv".into()]);
        };
        let mut findings = Vec::new();
        let parsed = rollcall::read::manifest::parse(&manifest, &mut findings);
        Ok(FileKind::ALL
            .into_iter()
            .filter(|k| parsed.mode(*k).is_some())
            .map(|k| k.file_name().to_string())
            .filter(|name| !present.iter().any(|p| p == name))
            .collect())
    }

    /// Validates and records a bundle, and starts its execution.
    fn receive(
        &self,
        tenant: &Tenant,
        bundle: &mut Bundle,
        source: SourceKind,
        location: &str,
    ) -> Result<Upload, StepError> {
        let arrival = Arrival { source, location };
        let received = stages::receive(
            &self.store,
            &self.blobs,
            tenant,
            bundle,
            arrival,
            &self.limits,
            false,
            &NoProgress,
        )?;
        match received {
            Received::Duplicate(done) => {
                // Another delivery of an upload under way: its execution may never have started (the
                // invocation that recorded the batch died before starting it). It is started now, unless it
                // waited so long that a later batch may already have taken it for abandoned.
                if done.status == SyncStatus::Planned
                    && let Some(batch) = self.store.get_batch(&done.batch)?
                    && self.awaits_start(&batch)?
                    && let Started::New(execution) = self.start(&tenant.id, &done.batch)?
                {
                    tracing::info!(tenant = %tenant.id, batch = %done.batch, execution, "the batch's pipeline had not started; started now");
                    return Ok(Upload::Started {
                        batch: done.batch,
                        execution,
                    });
                }
                Ok(Upload::Duplicate { batch: done.batch })
            }
            Received::Rejected(done) => {
                if let Some(batch) = self.store.get_batch(&done.batch)? {
                    self.publish(&batch);
                }
                Ok(Upload::Rejected {
                    report: format!(
                        "{}report.json",
                        stages::report_prefix(&tenant.id, &done.batch)
                    ),
                    batch: Some(done.batch),
                })
            }
            Received::Accepted { batch, .. } => {
                let execution = match self.start(&tenant.id, &batch.id)? {
                    Started::New(arn) | Started::Already(arn) => arn,
                };
                tracing::info!(tenant = %tenant.id, batch = %batch.id, execution, "batch validated, pipeline started");
                Ok(Upload::Started {
                    batch: batch.id.clone(),
                    execution,
                })
            }
        }
    }

    /// Starts the execution of a batch (named after it: a second start finds the first).
    fn start(&self, tenant: &str, batch: &str) -> Result<Started, StepError> {
        let machine = self.aws.names.state_machine()?;
        let input = serde_json::to_value(Job {
            tenant: tenant.to_string(),
            batch: batch.to_string(),
            execution: String::new(),
        })
        .map_err(|e| StepError::Failed(e.to_string()))?;
        Ok(self.aws.bridge.run(
            self.executions()
                .start(machine, &execution_name(batch), &input),
        )?)
    }

    /// Takes the tenant's lease for the execution (failing with `LeaseHeld` while another one holds it, or
    /// while a batch that arrived earlier has yet to finish), and fails what a dead execution left half done.
    pub fn lease(&self, job: &Job) -> Result<(), StepError> {
        // Batches go in the order they arrived: an upload's execution that gets here first still waits for an
        // earlier one's (a newer roster must not be overwritten by an older one that merely started late).
        let batches = self.store.list_batches(&job.tenant)?;
        match batches.iter().find(|b| b.id == job.batch) {
            // An execution that started late finds its batch already ended (taken for abandoned): it must
            // not plan or apply it over what came after.
            Some(own) if own.status.is_final() => {
                return Err(StepError::Refused(format!(
                    "batch {} already ended ({}); send its bundle again to sync it",
                    own.id,
                    own.status.as_str()
                )));
            }
            Some(_) => {}
            None => {
                if self.store.get_batch(&job.batch)?.is_none() {
                    return Err(StepError::Refused(format!(
                        "there is no batch {}",
                        job.batch
                    )));
                }
                // Recorded a moment ago and not yet in the tenant's history index (it catches up within
                // seconds): the batches before it are not all known yet.
                return Err(StepError::LeaseHeld(format!(
                    "batch {} is not yet in tenant {}'s history",
                    job.batch, job.tenant
                )));
            }
        }
        let earlier = batches
            .iter()
            .take_while(|b| b.id != job.batch)
            .filter(|b| unfinished(b));
        for batch in earlier {
            if !self.abandoned(batch)? {
                return Err(StepError::LeaseHeld(format!(
                    "tenant {} has an earlier batch to finish first: batch {} arrived before batch {} and is {}",
                    job.tenant,
                    batch.id,
                    job.batch,
                    batch.status.as_str()
                )));
            }
        }
        let holder = Holder {
            id: job.execution.clone(),
        };
        let liveness = ExecutionLiveness {
            executions: self.executions(),
        };
        let purpose = format!("pipeline of batch {}", job.batch);
        let taken = lease::take(
            &self.store,
            &job.tenant,
            &holder,
            &purpose,
            LEASE_TTL,
            &liveness,
        )?;
        let guard = match taken {
            Ok(guard) => guard,
            Err(other) => {
                return Err(StepError::LeaseHeld(format!(
                    "tenant {} is busy: {} holds its lease for the {} (since {})",
                    job.tenant,
                    other.holder,
                    other.purpose,
                    rollcall::model::iso_time(other.acquired_at)
                )));
            }
        };
        guard.renew(Some(&job.batch))?;
        // The lease outlives this invocation: the execution releases it when it finishes or fails.
        guard.keep();
        for batch in self.store.list_batches(&job.tenant)? {
            if batch.id != job.batch && unfinished(&batch) && self.abandoned(&batch)? {
                self.undo_and_fail(
                    &batch.id,
                    "its execution stopped before it finished; what it had applied was undone",
                )?;
            }
        }
        Ok(())
    }

    /// Whether an unfinished batch has no execution working on it any more: its execution ended, or it never
    /// got one within `START_GRACE` of being recorded (a batch recorded a moment ago is still being started).
    fn abandoned(&self, batch: &Batch) -> Result<bool, StepError> {
        Ok(match self.execution_running(batch)? {
            Some(running) => !running,
            None => !self.state_machine_known() || !within_grace(batch),
        })
    }

    /// Whether a validated batch never got an execution and may still get one (within `START_GRACE`).
    fn awaits_start(&self, batch: &Batch) -> Result<bool, StepError> {
        Ok(batch.status == BatchStatus::Validated
            && self.state_machine_known()
            && within_grace(batch)
            && self.execution_running(batch)?.is_none())
    }

    fn state_machine_known(&self) -> bool {
        self.aws.names.state_machine.is_some()
    }

    /// Whether the batch's execution runs; `None` when it has none (or the state machine is not known).
    fn execution_running(&self, batch: &Batch) -> Result<Option<bool>, StepError> {
        let Some(machine) = self.aws.names.state_machine.as_deref() else {
            return Ok(None);
        };
        let arn = crate::sfn::execution_arn(machine, &execution_name(&batch.id));
        Ok(self
            .aws
            .bridge
            .run(self.executions().state(&arn))?
            .map(|state| state.running()))
    }

    /// Renews the execution's lease (every state does, so a live execution is never taken for dead).
    fn renew(&self, job: &Job) -> Result<(), StepError> {
        let expires = rollcall::model::now() + LEASE_TTL.as_secs();
        if !self
            .store
            .renew_lease(&job.tenant, &job.execution, expires, Some(&job.batch))?
        {
            return Err(StepError::Failed(format!(
                "execution {} no longer holds tenant {}'s lease",
                job.execution, job.tenant
            )));
        }
        Ok(())
    }

    fn release(&self, job: &Job) -> Result<(), StepError> {
        Ok(self.store.release_lease(&job.tenant, &job.execution)?)
    }

    /// Opens a batch's bundle where it was uploaded: a zip by ranged reads, a folder by listing.
    fn bundle_of(&self, batch: &Batch) -> Result<Bundle, StepError> {
        let key = &batch.bundle;
        if key.ends_with('/') {
            let files = self.blobs.folder(key);
            return Bundle::from_loose(Path::new(key), Box::new(files), &self.limits)
                .map_err(|e| StepError::Refused(e.to_string()));
        }
        let object = self
            .blobs
            .object(key)
            .map_err(|e| StepError::Transient(e.to_string()))?
            .ok_or_else(|| {
                StepError::Refused(format!("the bundle {key} is gone from the bucket"))
            })?;
        Bundle::from_zip(Path::new(key), Box::new(object), &self.limits)
            .map_err(|e| StepError::Refused(e.to_string()))
    }

    fn batch(&self, id: &str) -> Result<Batch, StepError> {
        self.store
            .get_batch(id)?
            .ok_or_else(|| StepError::Refused(format!("there is no batch {id:?}")))
    }

    /// One plan step.
    pub fn plan(&self, job: &Job, step: &str) -> Result<serde_json::Value, StepError> {
        let step = Step::parse(step)
            .ok_or_else(|| StepError::Refused(format!("{step:?} is not a plan step")))?;
        self.renew(job)?;
        let batch = self.batch(&job.batch)?;
        let mut bundle = self.bundle_of(&batch)?;
        let progress: &dyn Progress = &NoProgress;
        let planned = stages::plan_stage(
            &self.store,
            &self.blobs,
            &job.batch,
            step,
            &mut bundle,
            &self.limits,
            CHUNK_SIZE,
            progress,
        )?;
        let changes: u64 = planned.chunks.iter().map(|c| u64::from(c.changes)).sum();
        Ok(
            serde_json::json!({"step": step.name(), "chunks": planned.chunks.len(), "changes": changes}),
        )
    }

    /// Puts the plan together and holds it, or lets it go on; writes the chunk lists the apply maps read.
    pub fn guard(&self, job: &Job) -> Result<Guarded, StepError> {
        self.renew(job)?;
        let (guarded, _) = stages::guard_stage(&self.store, &self.blobs, &job.batch)?;
        let batch = self.batch(&job.batch)?;
        let key = |name: &str| format!("{}{name}", batch.plan);
        let write = |name: &str, chunks: &[ChunkInfo]| -> Result<(), StepError> {
            let bytes = serde_json::to_vec(chunks).map_err(|e| StepError::Failed(e.to_string()))?;
            self.blobs
                .put(&key(name), &bytes)
                .map_err(|e| StepError::Transient(e.to_string()))
        };
        write("upserts.json", &guarded.upserts)?;
        write("archives.json", &guarded.archives)?;
        Ok(Guarded {
            held: guarded.held,
            reasons: guarded.reasons,
            upserts: guarded.upserts.len(),
            archives: guarded.archives.len(),
            upserts_key: key("upserts.json"),
            archives_key: key("archives.json"),
        })
    }

    /// A held batch waits for ops: its task token is kept with it, the lease is let go (other uploads of the
    /// tenant may go ahead meanwhile), and ops are told.
    pub fn hold(&self, job: &Job, token: &str) -> Result<(), StepError> {
        self.store.set_task_token(&job.batch, Some(token))?;
        self.release(job)?;
        self.publish(&self.batch(&job.batch)?);
        Ok(())
    }

    /// Makes a planned (or approved) batch applying; refuses (`Superseded`) when the roster moved on since.
    pub fn begin_apply(&self, job: &Job) -> Result<(), StepError> {
        self.renew(job)?;
        self.store.set_task_token(&job.batch, None)?;
        stages::begin_apply(&self.store, &job.batch)?;
        Ok(())
    }

    /// One chunk of the plan. A failure is noted with the batch, so that when the map gives up on the chunk
    /// the failure path can say why (a failed map item only tells the state machine that it failed).
    pub fn apply(&self, job: &Job, chunk: &ChunkInfo) -> Result<ChunkResult, StepError> {
        self.renew(job)?;
        let applied = stages::apply_stage(&self.store, &self.blobs, &job.batch, chunk)
            .map_err(StepError::from);
        if let Err(e) = &applied {
            let reason = format!("{}: {e}", e.name());
            if let Err(note) = self
                .store
                .note_chunk_failure(&job.batch, chunk.number, &reason)
            {
                tracing::warn!(chunk = chunk.number, error = %note, "the chunk's failure was not noted");
            }
        }
        applied
    }

    /// Commits the batch once every chunk is recorded as applied, releases the lease, tells subscribers, and
    /// ends the waits of held batches it superseded.
    pub fn finish(&self, job: &Job) -> Result<serde_json::Value, StepError> {
        let (batch, superseded) = stages::finish_stage(&self.store, &self.blobs, &job.batch)?;
        // A pulled batch moves its tenant's delta cursor now that it is applied.
        if batch.status == rollcall::model::BatchStatus::Applied {
            rollcall::pull::note_applied(&self.store, &batch)?;
        }
        self.release(job)?;
        self.publish(&batch);
        for other in superseded {
            self.publish(&other);
            if let Some(token) = self.store.task_token(&other.id)? {
                let answer = serde_json::json!({"approved": false, "superseded": true});
                if let Err(e) = self
                    .aws
                    .bridge
                    .run(self.executions().resume(&token, &answer))
                {
                    tracing::warn!(tenant = %other.tenant, batch = %other.id, error = %e, "could not end a superseded batch's wait");
                }
                self.store.set_task_token(&other.id, None)?;
            }
        }
        Ok(
            serde_json::json!({"status": batch.status.as_str(), "counts": batch.counts, "moved": batch.moved, "writes": batch.writes}),
        )
    }

    /// A held batch that ops rejected (or that was superseded while it waited).
    pub fn reject(&self, job: &Job) -> Result<(), StepError> {
        self.store.set_task_token(&job.batch, None)?;
        match stages::reject_stage(&self.store, &job.batch) {
            Ok(batch) => {
                rollcall::pull::note_rejected(&self.store, &batch)?;
                self.publish(&batch)
            }
            Err(rollcall::sync::SyncError::Superseded { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The failure path: undoes what the batch had applied, marks it failed with the reason, releases the
    /// lease, and tells subscribers (and ops).
    pub fn fail(&self, job: &Job, caught: Option<&Caught>) -> Result<(), StepError> {
        let mut reason = caught.map_or_else(|| "the pipeline failed".to_string(), Caught::reason);
        // A chunk the map gave up on (failed, never applied after): its own error says what went wrong.
        let applied = self.store.chunk_results(&job.tenant, &job.batch)?;
        let unapplied = self
            .store
            .chunk_failures(&job.batch)?
            .into_iter()
            .find(|(chunk, _)| !applied.contains_key(chunk));
        if let Some((chunk, why)) = unapplied {
            reason = format!("{reason} (chunk {chunk} failed with {why})");
        }
        self.undo_and_fail(&job.batch, &reason)?;
        if !job.execution.is_empty() {
            self.release(job)?;
        }
        Ok(())
    }

    fn undo_and_fail(&self, batch_id: &str, reason: &str) -> Result<(), StepError> {
        let Some(batch) = self.store.get_batch(batch_id)? else {
            return Ok(());
        };
        if batch.status == BatchStatus::Applying {
            // Chunks already applied are undone: the roster is left as it was before the batch.
            roll_back(&self.store, &batch.tenant, &batch.id, true)
                .map_err(|e| StepError::Transient(e.to_string()))?;
        }
        let failed = stages::fail_stage(&self.store, batch_id, reason)?;
        self.publish(&failed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_routed_to_their_tenant_by_key() {
        assert_eq!(
            route("inbound/t1/2026-12-01/roster.zip"),
            Some(Route {
                tenant: "t1".into(),
                source: SourceKind::Sftp,
                rest: "2026-12-01/roster.zip".into()
            })
        );
        assert_eq!(
            route("inbound/t1/api/2026-12-01T06/manifest.csv").map(|r| r.source),
            Some(SourceKind::Api)
        );
        for outside in [
            "elsewhere/t1/x.zip",
            "inbound/x.zip",
            "inbound//x.zip",
            "inbound/t1/",
        ] {
            assert_eq!(route(outside), None, "{outside}");
        }
        assert_eq!(folder_of("inbound/t1/loose/users.csv"), "inbound/t1/loose/");
    }
}
