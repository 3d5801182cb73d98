//! The fail handler: the job and what `Catch` caught in; the batch is failed with the reason (what it had
//! applied undone) and the lease released.

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::FailJob;
use rollcall_lambda::Failure;

pub async fn handle(aws: &Aws, event: LambdaEvent<FailJob>) -> Result<serde_json::Value, Failure> {
    let FailJob { job, error } = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "fail", move |pipeline| {
        pipeline.fail(&job, error.as_ref())?;
        Ok(serde_json::json!({"status": "failed", "reason": error.map(|e| e.reason())}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use rollcall_aws::payload::FailJob;

    #[test]
    fn what_catch_caught_comes_with_the_job() {
        let job: FailJob = serde_json::from_value(serde_json::json!({
            "tenant": "t1", "batch": "b1", "execution": "x",
            "error": {"Error": "Incomplete", "Cause": "{\"errorType\":\"Incomplete\",\"errorMessage\":\"chunks [3] were not applied\"}"}
        }))
        .expect("job");
        assert_eq!(
            job.error.map(|e| e.reason()).as_deref(),
            Some("Incomplete: chunks [3] were not applied")
        );
    }
}
