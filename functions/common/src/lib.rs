//! What every rollcall Lambda function shares, so each function's crate only wires its handler: JSON logs
//! through `tracing` (tenant and batch on every line, no roster values), the stack's clients built once per
//! cold start, the library's blocking work run off the runtime's threads, and errors whose type name is what
//! the state machine's `Retry` and `Catch` match on.

use lambda_runtime::Diagnostic;
use rollcall_aws::payload::StepError;
use rollcall_aws::pipeline::Pipeline;
use rollcall_aws::{Aws, Names};
use std::time::Duration;

/// JSON log lines, at the level `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` asks for (info by default).
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// The stack's clients, built once per cold start from the function's environment.
pub async fn aws() -> Result<Aws, lambda_runtime::Error> {
    let names = Names::from_env()?;
    Ok(Aws::load(names, tokio::runtime::Handle::current()).await)
}

/// A handler's failure, named for Step Functions.
#[derive(Debug)]
pub struct Failure(pub StepError);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Failure {
        Failure(e)
    }
}

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Diagnostic {
        Diagnostic {
            error_type: f.0.name().to_string(),
            error_message: f.0.to_string(),
        }
    }
}

/// How long a folder of loose files must stay unchanged (`ROLLCALL_QUIET_SECONDS`, default 120).
pub fn quiet() -> Duration {
    let secs = std::env::var("ROLLCALL_QUIET_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// Runs `work` on the pipeline off the runtime's worker threads (the library blocks on each SDK call), in a
/// span naming the tenant and batch, and logs how it ended.
pub async fn run<T, F>(
    aws: &Aws,
    tenant: &str,
    batch: &str,
    state: &'static str,
    work: F,
) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Pipeline) -> Result<T, StepError> + Send + 'static,
{
    let aws = aws.clone();
    let span = tracing::info_span!("state", state, tenant = %tenant, batch = %batch);
    let inner = span.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _entered = inner.enter();
        let mut pipeline = Pipeline::new(&aws);
        pipeline.quiet = quiet();
        work(&pipeline)
    })
    .await
    .map_err(|e| Failure(StepError::Failed(format!("the {state} state stopped: {e}"))))?;
    let _entered = span.enter();
    match &done {
        Ok(_) => tracing::info!("done"),
        Err(e) => tracing::warn!(error = e.name(), message = %e, "failed"),
    }
    done.map_err(Failure)
}
