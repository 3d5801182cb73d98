//! The finish handler: a job in; the committed batch's counts out, or (when ops rejected the held batch, which
//! the state machine passes as `rejected`) the rejection recorded.

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::Job;
use rollcall_lambda::Failure;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Input {
    #[serde(flatten)]
    pub job: Job,
    #[serde(default)]
    pub rejected: bool,
}

pub async fn handle(aws: &Aws, event: LambdaEvent<Input>) -> Result<serde_json::Value, Failure> {
    let Input { job, rejected } = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "finish", move |pipeline| {
        if rejected {
            pipeline.reject(&job)?;
            return Ok(serde_json::json!({"status": "rejected"}));
        }
        pipeline.finish(&job)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_is_told_from_a_commit() {
        let commit: Input = serde_json::from_value(
            serde_json::json!({"tenant": "t1", "batch": "b1", "execution": "x"}),
        )
        .expect("input");
        assert!(!commit.rejected);
        let rejection: Input = serde_json::from_value(
            serde_json::json!({"tenant": "t1", "batch": "b1", "execution": "x", "rejected": true}),
        )
        .expect("input");
        assert!(rejection.rejected);
    }
}
