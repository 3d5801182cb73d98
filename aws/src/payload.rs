//! What the state machine passes between its states, and the errors its `Retry` and `Catch` match on. Payloads
//! stay small (Step Functions caps them at 256 KB): ids, keys and counts; everything else is in the table and
//! the bucket.

use rollcall::plan::chunk::ChunkInfo;
use rollcall::sync::SyncError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The batch a state works on, and the execution working on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub tenant: String,
    pub batch: String,
    /// The execution (`$$.Execution.Id`): the holder of the tenant's lease while it works.
    #[serde(default)]
    pub execution: String,
}

/// A plan step's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepJob {
    #[serde(flatten)]
    pub job: Job,
    /// `orgs`, `users` or `enrollments`.
    pub step: String,
}

/// One item of the apply map: a chunk of the batch's plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkJob {
    #[serde(flatten)]
    pub job: Job,
    pub chunk: ChunkInfo,
}

/// The held state's input: the token that resumes the execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldJob {
    #[serde(flatten)]
    pub job: Job,
    pub token: String,
}

/// What a `Catch` hands the failure state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caught {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

/// The failure state's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailJob {
    #[serde(flatten)]
    pub job: Job,
    #[serde(default)]
    pub error: Option<Caught>,
}

impl Caught {
    /// The reason a person reads: the error's message when the cause is a function's error JSON.
    pub fn reason(&self) -> String {
        let message = self
            .cause
            .as_deref()
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
            .or_else(|| self.cause.clone())
            .unwrap_or_default();
        match (self.error.as_str(), message.is_empty()) {
            ("", _) => message,
            (name, true) => name.to_string(),
            (name, false) => format!("{name}: {message}"),
        }
    }
}

/// What the guard state answers: whether the plan is held, and where the apply maps find their chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guarded {
    pub held: bool,
    pub reasons: Vec<String>,
    pub upserts: usize,
    pub archives: usize,
    /// Keys of the JSON arrays of chunks the two apply maps read (`ItemReader` from S3).
    pub upserts_key: String,
    pub archives_key: String,
}

/// Why a state failed, by the name `Retry` and `Catch` match on (the Lambda error type).
#[derive(Debug, Error)]
pub enum StepError {
    /// Another execution holds the tenant's lease: wait and try again.
    #[error("{0}")]
    LeaseHeld(String),
    /// A passing fault (throttling, a network error): try again.
    #[error("{0}")]
    Transient(String),
    /// Another batch was applied after this one was planned; it cannot be applied.
    #[error("{0}")]
    Superseded(String),
    /// Not every chunk of the plan was applied (a map item failed): the batch cannot be committed.
    #[error("{0}")]
    Incomplete(String),
    /// The input cannot be processed (an unknown tenant or batch, an unreadable bundle): do not retry.
    #[error("{0}")]
    Refused(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl StepError {
    /// The name the state machine matches (`Retry` on `LeaseHeld`, `Catch` on `States.ALL`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            StepError::LeaseHeld(_) => "LeaseHeld",
            StepError::Transient(_) => "Transient",
            StepError::Superseded(_) => "Superseded",
            StepError::Incomplete(_) => "Incomplete",
            StepError::Refused(_) => "Refused",
            StepError::Failed(_) => "Failed",
        }
    }
}

impl From<SyncError> for StepError {
    fn from(e: SyncError) -> StepError {
        use rollcall::plan::PlanError;
        use rollcall::store::StoreError;
        let text = e.to_string();
        match e {
            SyncError::Leased { .. } => StepError::LeaseHeld(text),
            SyncError::Superseded { .. } => StepError::Superseded(text),
            SyncError::Incomplete { .. } => StepError::Incomplete(text),
            SyncError::UnknownTenant(_)
            | SyncError::UnknownBatch(_)
            | SyncError::Input(_)
            | SyncError::NotHeld { .. }
            | SyncError::NotApplied { .. }
            | SyncError::NotApplying { .. } => StepError::Refused(text),
            SyncError::Store(StoreError::Busy { .. } | StoreError::Backend { .. })
            | SyncError::Plan(PlanError::Store(
                StoreError::Busy { .. } | StoreError::Backend { .. },
            ))
            | SyncError::Blob(_)
            | SyncError::Plan(PlanError::Blob(_)) => StepError::Transient(text),
            _ => StepError::Failed(text),
        }
    }
}

impl From<rollcall::store::StoreError> for StepError {
    fn from(e: rollcall::store::StoreError) -> StepError {
        StepError::from(SyncError::Store(e))
    }
}

impl From<crate::bridge::AwsError> for StepError {
    fn from(e: crate::bridge::AwsError) -> StepError {
        match e {
            crate::bridge::AwsError::Missing { .. } => StepError::Refused(e.to_string()),
            _ => StepError::Transient(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_error_reads_as_its_message() {
        let caught = Caught {
            error: "Superseded".into(),
            cause: Some(r#"{"errorType":"Superseded","errorMessage":"batch b2 was applied after it was planned"}"#.into()),
        };
        assert_eq!(
            caught.reason(),
            "Superseded: batch b2 was applied after it was planned"
        );
        let timeout = Caught {
            error: "States.Timeout".into(),
            cause: None,
        };
        assert_eq!(timeout.reason(), "States.Timeout");
    }

    #[test]
    fn errors_are_named_for_retry_and_catch() {
        let e = StepError::from(SyncError::UnknownTenant("t9".into()));
        assert_eq!(
            (e.name(), e.to_string().as_str()),
            ("Refused", "there is no tenant \"t9\"")
        );
        let busy = StepError::from(rollcall::store::StoreError::Busy {
            doing: "writing".into(),
        });
        assert_eq!(busy.name(), "Transient");
    }
}
