//! `rollcall --aws ...`: the roster commands on a deployed stack. The stack's names come from the environment
//! (`ROLLCALL_BUCKET`, `ROLLCALL_TABLE`, `ROLLCALL_STATE_MACHINE_ARN`, ...) or from the outputs of the
//! CloudFormation stack `--stack NAME`; credentials and `AWS_ENDPOINT_URL` from the default chain. Reading and
//! manual edits go straight to DynamoDB through the same library code as locally; `sync` uploads to the
//! tenant's inbound prefix and follows the pipeline to its end; `approve` and `reject` resume the execution
//! waiting for them.

use crate::roster::{self, BatchArgs, RollbackArgs, SyncArgs, TenantCommand, print_outcome};
use crate::{Command, ReportFormat};
use anyhow::Context;
use rollcall::blob::BlobStore;
use rollcall::model::{Batch, BatchStatus, Tenant};
use rollcall::read::bundle::Bundle;
use rollcall::store::{BatchStore, TenantStore};
use rollcall::sync::lease::{self, Holder};
use rollcall::sync::stages;
use rollcall::sync::{SyncError, SyncOutcome, SyncStatus, batch_id};
use rollcall::{NoProgress, validate_bundle};
use rollcall_aws::dynamo::DynamoStore;
use rollcall_aws::s3::S3Blobs;
use rollcall_aws::sfn::{ExecutionLiveness, Executions};
use rollcall_aws::{Aws, Names};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A deployed stack, as the command line talks to it.
pub struct Stack {
    // The runtime the SDK's calls run on; the command blocks on them from its main thread.
    _runtime: tokio::runtime::Runtime,
    pub aws: Aws,
    pub store: DynamoStore,
    pub blobs: S3Blobs,
}

impl Stack {
    pub fn connect(stack: Option<&str>) -> anyhow::Result<Stack> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the AWS client runtime")?;
        let handle = runtime.handle().clone();
        let names = match stack {
            Some(name) => runtime.block_on(names_of_stack(name, handle.clone()))?,
            None => Names::from_env()?,
        };
        let aws = runtime.block_on(Aws::load(names, handle));
        let store = DynamoStore::new(&aws);
        let blobs = S3Blobs::new(aws.s3.clone(), aws.bridge.clone(), &aws.names.bucket);
        Ok(Stack {
            _runtime: runtime,
            aws,
            store,
            blobs,
        })
    }

    fn executions(&self) -> Executions {
        Executions::new(self.aws.sfn.clone(), self.aws.bridge.clone())
    }
}

/// The stack's names from its CloudFormation outputs.
async fn names_of_stack(name: &str, handle: tokio::runtime::Handle) -> anyhow::Result<Names> {
    let probe = Aws::load(Names::default(), handle).await;
    let out = probe
        .cloudformation
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("reading stack {name}: {}", rollcall_aws::s3::describe(&e)))?;
    let outputs: std::collections::BTreeMap<String, String> = out
        .stacks
        .unwrap_or_default()
        .into_iter()
        .next()
        .with_context(|| format!("there is no stack {name:?}"))?
        .outputs
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| Some((o.output_key?, o.output_value?)))
        .collect();
    let get = |key: &str| outputs.get(key).cloned();
    Ok(Names {
        bucket: get("BucketName")
            .with_context(|| format!("stack {name} has no BucketName output"))?,
        table: get("TableName").with_context(|| format!("stack {name} has no TableName output"))?,
        state_machine: get("StateMachineArn"),
        settle_machine: get("SettleMachineArn"),
        event_bus: get("EventBusName"),
        transfer_server: get("TransferServerId"),
        transfer_role: get("TransferUserRoleArn"),
        pull_function: get("PullFunctionName"),
    })
}

/// Runs a command against the stack; `None` for commands that have no AWS form (they run locally).
pub fn run(command: &Command, stack: Option<&str>) -> Option<anyhow::Result<ExitCode>> {
    let needs_stack = matches!(
        command,
        Command::Tenant(_)
            | Command::Sync(_)
            | Command::Approve(_)
            | Command::Reject(_)
            | Command::Rollback(_)
            | Command::Edit(_)
            | Command::Create(_)
            | Command::Archive(_)
            | Command::Restore(_)
            | Command::Show(_)
            | Command::Find(_)
            | Command::History(_)
            | Command::Demo(_)
    );
    let needs_stack = needs_stack || matches!(command, Command::Source(_) | Command::Pull(_));
    if !needs_stack {
        return None;
    }
    let stack = match Stack::connect(stack) {
        Ok(stack) => stack,
        Err(e) => return Some(Err(e)),
    };
    Some(match command {
        Command::Tenant(cmd) => tenant(&stack, cmd),
        Command::Sync(args) => sync(&stack, args),
        Command::Approve(args) => decide(&stack, args, true),
        Command::Reject(args) => decide(&stack, args, false),
        Command::Rollback(args) => rollback(&stack, args),
        Command::Edit(args) => roster::edit_record(&stack.store, args, false),
        Command::Create(args) => roster::edit_record(&stack.store, args, true),
        Command::Archive(args) => roster::archive_record(&stack.store, args, true),
        Command::Restore(args) => roster::archive_record(&stack.store, args, false),
        Command::Show(args) => roster::show(&stack.store, args),
        Command::Find(args) => roster::find(&stack.store, args),
        Command::History(args) => {
            let bucket = &stack.aws.names.bucket;
            roster::history(&stack.store, args, &|key| format!("s3://{bucket}/{key}"))
        }
        Command::Demo(args) => crate::demo::run_aws(args, &stack),
        Command::Source(crate::pull::SourceCommand::Set(args)) => source_set(&stack, args),
        Command::Source(crate::pull::SourceCommand::Check(args)) => source_check(&stack, args),
        Command::Pull(args) => pull(&stack, args),
        _ => return None,
    })
}

fn tenant(stack: &Stack, command: &TenantCommand) -> anyhow::Result<ExitCode> {
    let liveness = ExecutionLiveness {
        executions: stack.executions(),
    };
    let code = roster::tenants(&stack.store, command, &liveness)?;
    if let TenantCommand::Add { id, settings } | TenantCommand::Set { id, settings } = command
        && let Some(key_file) = &settings.sftp_key
    {
        let key = std::fs::read_to_string(key_file)
            .with_context(|| format!("reading the SSH public key {}", key_file.display()))?;
        anyhow::ensure!(
            key.trim().starts_with("ssh-") || key.trim().starts_with("ecdsa-"),
            "{} is not an OpenSSH public key (it should start with ssh-ed25519, ssh-rsa or ecdsa-...)",
            key_file.display()
        );
        let names = &stack.aws.names;
        let server = names.transfer_server.as_deref().context(
            "ROLLCALL_TRANSFER_SERVER is not set: the stack's SFTP server is needed for --sftp-key",
        )?;
        let role = names
            .transfer_role
            .as_deref()
            .context("ROLLCALL_TRANSFER_ROLE is not set: the role SFTP users act as is needed for --sftp-key")?;
        let set = stack.aws.bridge.run(rollcall_aws::transfer::set_key(
            &stack.aws.transfer,
            server,
            role,
            &names.bucket,
            id,
            &key,
        ))?;
        let user = rollcall_aws::transfer::user_name(id);
        let what = match set {
            rollcall_aws::transfer::KeySet::Created => "created",
            rollcall_aws::transfer::KeySet::Added => "has the key added",
            rollcall_aws::transfer::KeySet::Unchanged => "has this key already",
        };
        outln!("SFTP user {user} {what}; its uploads land in inbound/{id}/");
    }
    Ok(code)
}

/// The key an upload of `path` lands under: a zip as it is named, a folder's files in a folder of their own.
fn upload_prefix(tenant: &str, path: &Path) -> String {
    let stamp = rollcall::model::iso_time(rollcall::model::now()).replace(':', "-");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    format!("inbound/{tenant}/{stamp}-{name}")
}

/// Uploads a bundle to the tenant's inbound prefix, then follows the pipeline until the batch is done (or held).
fn sync(stack: &Stack, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.dry_run,
        "--dry-run plans locally: run it without --aws"
    );
    let mut outcome = sync_outcome(
        stack,
        &args.tenant,
        &args.path,
        &args.limits.limits(),
        args.wait,
    )?;
    let bucket = stack.aws.names.bucket.clone();
    roster::locate_report(&mut outcome, |key| format!("s3://{bucket}/{key}"));
    if outcome.status == SyncStatus::Rejected && args.format == ReportFormat::Text {
        let key = format!(
            "{}report.txt",
            stages::report_prefix(&args.tenant, &outcome.batch)
        );
        if let Some(text) = stack.blobs.get(&key)? {
            out!("{}", String::from_utf8_lossy(&text));
        }
    }
    print_outcome(&outcome, args.format);
    Ok(roster::exit_for(outcome.status))
}

/// Uploads a bundle and waits for what the pipeline makes of it.
pub fn sync_outcome(
    stack: &Stack,
    tenant_id: &str,
    path: &Path,
    limits: &rollcall::Limits,
    wait: u64,
) -> anyhow::Result<SyncOutcome> {
    let tenant: Tenant = stack
        .store
        .get_tenant(tenant_id)?
        .ok_or_else(|| SyncError::UnknownTenant(tenant_id.to_string()))?;
    // The content id the pipeline will derive, so the batch can be told from the others.
    let mut bundle = Bundle::open(path, limits)?;
    validate_bundle(&mut bundle, limits, &NoProgress)?;
    let content = batch_id(&tenant.id, bundle.digest()?);
    let before: Vec<String> = stack
        .store
        .list_batches(&tenant.id)?
        .into_iter()
        .map(|b| b.id)
        .collect();
    let prefix = upload_prefix(&tenant.id, path);
    if path.is_dir() {
        // The OneRoster files of a folder, manifest last: the folder is a bundle once it is complete.
        let mut names = bundle.roster_files();
        names.rotate_left(1);
        for name in names {
            let mut stream = bundle.open_roster_file(name)?;
            stack
                .blobs
                .put_from(&format!("{prefix}/{name}"), &mut stream)
                .with_context(|| format!("uploading {name}"))?;
        }
    } else {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        stack
            .blobs
            .put_from(&prefix, &mut file)
            .with_context(|| format!("uploading {}", path.display()))?;
    }
    eprintln!(
        "uploaded to s3://{}/{prefix}; following the pipeline",
        stack.aws.names.bucket
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(wait.max(30));
    loop {
        let batches = stack.store.list_batches(&tenant.id)?;
        let ours = batches
            .iter()
            .rev()
            .find(|b| !before.contains(&b.id) && b.content == content);
        if let Some(batch) = ours
            && (batch.status.is_final() || batch.status == BatchStatus::Held)
        {
            return outcome_of(stack, batch);
        }
        // No new batch after a while: the content was seen before (applied, or held already).
        if ours.is_none()
            && started.elapsed() > Duration::from_secs(20)
            && let Some(b) = batches.iter().rev().find(|b| b.content == content)
        {
            let status = match b.status {
                BatchStatus::Held => SyncStatus::Held,
                _ => SyncStatus::AlreadyApplied,
            };
            return Ok(SyncOutcome::of_batch(b, status));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pipeline did not finish batch {content} within {wait}s; `rollcall --aws history --tenant {}` shows where it is",
            tenant.id
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What a local sync would have said of a batch that ran through the pipeline (the ids behind the counts
/// come from its staged plan, while the bucket keeps it).
fn outcome_of(stack: &Stack, batch: &Batch) -> anyhow::Result<SyncOutcome> {
    let status = match batch.status {
        BatchStatus::Applied => SyncStatus::Applied,
        BatchStatus::Held => SyncStatus::Held,
        BatchStatus::Rejected => SyncStatus::Rejected,
        BatchStatus::Failed | BatchStatus::Superseded => anyhow::bail!(
            "batch {} {}: {}",
            batch.id,
            batch.status.as_str(),
            batch.failure.clone().unwrap_or_default()
        ),
        other => anyhow::bail!("batch {} is {}", batch.id, other.as_str()),
    };
    let mut outcome = SyncOutcome::of_batch(batch, status);
    if status == SyncStatus::Rejected {
        outcome.counts.clear();
    } else if !batch.plan.is_empty()
        && let Some(bytes) = stack.blobs.get(&format!("{}plan.json", batch.plan))?
        && let Ok(file) = serde_json::from_slice::<rollcall::plan::PlanFile>(&bytes)
    {
        outcome.samples = rollcall::plan::Plan::from_file(&file).samples;
    }
    outcome.writes = batch.writes;
    Ok(outcome)
}

/// Approves or rejects a held batch: resumes the execution waiting for it, and follows it to its end.
fn decide(stack: &Stack, args: &BatchArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let batch = decide_batch(stack, &args.batch, approve, args.wait)?;
    if !approve {
        outln!("batch {} rejected: nothing from it was applied", batch.id);
        return Ok(ExitCode::SUCCESS);
    }
    print_outcome(&outcome_of(stack, &batch)?, args.format);
    Ok(ExitCode::SUCCESS)
}

/// Resumes the execution waiting for a held batch with ops' decision, and waits for the batch to end.
pub fn decide_batch(
    stack: &Stack,
    batch_id: &str,
    approve: bool,
    wait: u64,
) -> anyhow::Result<Batch> {
    let batch = stages::held(&stack.store, batch_id)?;
    let token = stack.store.task_token(&batch.id)?.with_context(|| {
        format!(
            "batch {} is held but no execution waits for it (its wait timed out?)",
            batch.id
        )
    })?;
    let answer = serde_json::json!({"approved": approve, "by": crate::roster::whoami()});
    stack
        .aws
        .bridge
        .run(stack.executions().resume(&token, &answer))?;
    let deadline = Instant::now() + Duration::from_secs(wait.max(30));
    loop {
        let now = stack
            .store
            .get_batch(&batch.id)?
            .ok_or_else(|| SyncError::UnknownBatch(batch.id.clone()))?;
        if now.status.is_final() {
            let expected = if approve {
                BatchStatus::Applied
            } else {
                BatchStatus::Rejected
            };
            anyhow::ensure!(
                now.status == expected,
                "batch {} is {}: {}",
                now.id,
                now.status.as_str(),
                now.failure.clone().unwrap_or_default()
            );
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "batch {} did not finish within {wait}s",
            batch.id
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Undoes an applied batch, from the command line, under the tenant's lease.
fn rollback(stack: &Stack, args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let batch = stack
        .store
        .get_batch(&args.batch)?
        .ok_or_else(|| SyncError::UnknownBatch(args.batch.clone()))?;
    let liveness = ExecutionLiveness {
        executions: stack.executions(),
    };
    let holder = Holder::this_process();
    let ttl = Duration::from_secs(15 * 60);
    let purpose = format!("rollback of batch {}", batch.id);
    let started = Instant::now();
    let guard = loop {
        match lease::take(
            &stack.store,
            &batch.tenant,
            &holder,
            &purpose,
            ttl,
            &liveness,
        )? {
            Ok(guard) => break guard,
            Err(other) if started.elapsed() < Duration::from_secs(args.wait) => {
                eprintln!(
                    "waiting: {} holds tenant {}'s lease ({})",
                    other.holder, batch.tenant, other.purpose
                );
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(other) => anyhow::bail!(
                "tenant {} is busy: {} holds its lease ({}); try again when it is done",
                batch.tenant,
                other.holder,
                other.purpose
            ),
        }
    };
    guard.renew(Some(&batch.id))?;
    let rolled = stages::rollback_stage(&stack.store, &batch.id, args.force)?;
    drop(guard);
    outln!(
        "batch {} rolled back: every record it changed is as it was before",
        rolled.id
    );
    Ok(ExitCode::SUCCESS)
}

/// `source set` on the stack: the connection into the tenant's secret in Secrets Manager, the settings into
/// the tenant.
fn source_set(stack: &Stack, args: &crate::pull::SetArgs) -> anyhow::Result<ExitCode> {
    let (source, credentials) = crate::pull::source_from(args)?;
    if stack.store.get_tenant(&args.tenant)?.is_none() {
        anyhow::bail!(SyncError::UnknownTenant(args.tenant.clone()));
    }
    let secret = rollcall_aws::pull::TenantSecret {
        api_url: source.api_url.clone(),
        auth: source.auth,
        key: credentials.key.clone(),
        secret: credentials.secret,
        token_url: source.token_url.clone(),
        scope: source.scope.clone(),
    };
    rollcall_aws::pull::put_secret(&stack.aws, &args.tenant, &secret)?;
    let kept = format!(
        "Secrets Manager as {}",
        rollcall_aws::pull::secret_id(&stack.aws.names.table, &args.tenant)
    );
    crate::pull::set_tenant_source(&stack.store, &args.tenant, source, &args.key, &kept)?;
    Ok(ExitCode::SUCCESS)
}

/// `source check` on the stack: the pull function asks each endpoint for one record with the tenant's secret,
/// from where the pulls run.
fn source_check(stack: &Stack, args: &crate::pull::CheckArgs) -> anyhow::Result<ExitCode> {
    let input = serde_json::json!({"tenant": args.tenant, "check": true});
    let payload = match invoke_pull(stack, &input)? {
        Ok(payload) => payload,
        Err(message) => {
            eprintln!(
                "error: the source check of tenant {} failed: {message}",
                args.tenant
            );
            return Ok(ExitCode::from(2));
        }
    };
    let check: rollcall::pull::Check =
        serde_json::from_value(payload).context("reading the pull function's check")?;
    Ok(crate::pull::print_check(&check))
}

/// Invokes the stack's pull function; its answer, or the message of its error.
fn invoke_pull(
    stack: &Stack,
    input: &serde_json::Value,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let function = stack.aws.names.pull_function.clone().context(
        "the stack's pull function is not known: set ROLLCALL_PULL_FUNCTION or give --stack",
    )?;
    let out = stack
        .aws
        .bridge
        .run(
            stack
                .aws
                .lambda
                .invoke()
                .function_name(&function)
                .payload(rollcall_aws::aws_sdk_lambda::primitives::Blob::new(
                    input.to_string(),
                ))
                .send(),
        )
        .map_err(|e| anyhow::anyhow!("invoking {function}: {}", rollcall_aws::s3::describe(&e)))?;
    let payload: serde_json::Value = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or_default();
    if out.function_error().is_some() {
        let message = payload["errorMessage"]
            .as_str()
            .unwrap_or("the function failed")
            .to_string();
        return Ok(Err(message));
    }
    Ok(Ok(payload))
}

/// `pull` on the stack: invokes the pull function for the tenant, then follows the pulled bundle's batch
/// through the pipeline, as `sync` follows an upload.
fn pull(stack: &Stack, args: &crate::pull::PullArgs) -> anyhow::Result<ExitCode> {
    let input = serde_json::json!({"tenant": args.tenant, "full": args.full});
    let payload = match invoke_pull(stack, &input)? {
        Ok(payload) => payload,
        Err(message) => {
            eprintln!(
                "error: the pull of tenant {} failed: {message}",
                args.tenant
            );
            return Ok(ExitCode::from(2));
        }
    };
    for warning in payload["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", warning.as_str().unwrap_or_default());
    }
    let key = payload["key"].as_str().unwrap_or_default().to_string();
    eprintln!(
        "pulled a {} bundle: {} records into s3://{}/{key}; following the pipeline",
        payload["mode"].as_str().unwrap_or("?"),
        payload["records"],
        stack.aws.names.bucket
    );
    let deadline = Instant::now() + Duration::from_secs(args.wait.max(30));
    loop {
        let batches = stack.store.list_batches(&args.tenant)?;
        if let Some(batch) = batches.iter().rev().find(|b| b.source == key)
            && (batch.status.is_final() || batch.status == BatchStatus::Held)
        {
            let outcome = outcome_of(stack, batch)?;
            crate::pull::print_pulled(&outcome, payload, args.format);
            return Ok(roster::exit_for(outcome.status));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pipeline did not finish the pulled bundle {key} within {}s; `rollcall --aws history --tenant {}` shows where it is",
            args.wait,
            args.tenant
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
