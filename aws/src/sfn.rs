//! Step Functions as the pipeline sees it: an execution per batch (named after it, so a second start of the
//! same batch is recognised), the task tokens of held batches, and whether a lease's holder (an execution) is
//! still running.

use crate::bridge::{AwsError, Bridge};
use crate::s3::describe;
use rollcall::store::Lease;
use rollcall::sync::lease::Liveness;

/// Executions of one state machine.
#[derive(Clone)]
pub struct Executions {
    client: aws_sdk_sfn::Client,
    bridge: Bridge,
}

/// Whether a start made a new execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    New(String),
    /// An execution of that name exists (running, or done): nothing new was started.
    Already(String),
}

/// An execution's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionState {
    pub status: String,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub output: Option<String>,
}

impl ExecutionState {
    pub fn running(&self) -> bool {
        self.status == "RUNNING"
    }
}

/// The ARN an execution of `state_machine` named `name` has.
pub fn execution_arn(state_machine: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// An execution name from anything: Step Functions takes up to 80 characters of letters, digits, `-` and `_`.
pub fn execution_name(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= 80 {
        return clean;
    }
    let digest = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
    format!("{}-{digest:016x}", &clean[..63])
}

impl Executions {
    pub fn new(client: aws_sdk_sfn::Client, bridge: Bridge) -> Executions {
        Executions { client, bridge }
    }

    /// Starts an execution named `name`; an execution of that name already there is not an error.
    pub async fn start(
        &self,
        state_machine: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<Started, AwsError> {
        let sent = self
            .client
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Started::New(out.execution_arn)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(Started::Already(execution_arn(state_machine, name)))
            }
            Err(e) => Err(AwsError::call(
                "Step Functions",
                format!("starting execution {name}"),
                describe(&e),
            )),
        }
    }

    /// The state of an execution; `None` when there is no such execution.
    pub async fn state(&self, arn: &str) -> Result<Option<ExecutionState>, AwsError> {
        match self
            .client
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ExecutionState {
                status: out.status.as_str().to_string(),
                error: out.error,
                cause: out.cause,
                output: out.output,
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(AwsError::call(
                "Step Functions",
                format!("reading execution {arn}"),
                describe(&e),
            )),
        }
    }

    /// Lets a task waiting for `token` go on with `output`.
    pub async fn resume(&self, token: &str, output: &serde_json::Value) -> Result<(), AwsError> {
        self.client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map_err(|e| {
                AwsError::call(
                    "Step Functions",
                    "resuming a waiting execution",
                    describe(&e),
                )
            })?;
        Ok(())
    }

    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }
}

/// On AWS a lease's holder is an execution: it is gone when the execution no longer runs (or its lease
/// expired without renewal, whoever holds it).
pub struct ExecutionLiveness {
    pub executions: Executions,
}

impl Liveness for ExecutionLiveness {
    fn gone(&self, lease: &Lease, now: u64) -> Option<String> {
        if lease.holder.starts_with("arn:aws:states:") {
            let state = self
                .executions
                .bridge
                .run(self.executions.state(&lease.holder));
            match state {
                Ok(Some(s)) if !s.running() => {
                    return Some(format!("its execution ended ({})", s.status.to_lowercase()));
                }
                Ok(None) => return Some("its execution does not exist".into()),
                // Running, or not known right now: the expiry decides.
                _ => {}
            }
        }
        (lease.expires_at <= now).then(|| "its lease expired without being renewed".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_are_named_within_step_functions_rules() {
        assert_eq!(execution_name("b0123abcdef-2"), "b0123abcdef-2");
        assert_eq!(
            execution_name("settle/inbound/t1/x y"),
            "settle-inbound-t1-x-y"
        );
        let long = execution_name(&"x".repeat(200));
        assert_eq!(long.len(), 80);
        assert_ne!(long, execution_name(&"x".repeat(201)));
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:rollcall-dev",
                "b1"
            ),
            "arn:aws:states:us-east-1:123456789012:execution:rollcall-dev:b1"
        );
    }
}
