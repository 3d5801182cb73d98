//! The lease handler: the execution's job in, the same job out once the execution holds the tenant's lease.

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::Job;
use rollcall_lambda::Failure;

pub async fn handle(aws: &Aws, event: LambdaEvent<Job>) -> Result<Job, Failure> {
    let job = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "lease", move |pipeline| {
        pipeline.lease(&job)?;
        Ok(job)
    })
    .await
}

#[cfg(test)]
mod tests {
    use rollcall_aws::payload::{Job, StepError};

    #[test]
    fn the_job_reads_as_the_state_machine_sends_it() {
        let job: Job = serde_json::from_str(
            r#"{"tenant": "t1", "batch": "b1", "execution": "arn:aws:states:us-east-1:123456789012:execution:rollcall:b1"}"#,
        )
        .expect("job");
        assert_eq!(job.batch, "b1");
        let held = rollcall_lambda::Failure(StepError::LeaseHeld("tenant t1 is busy".into()));
        let diagnostic = lambda_runtime::Diagnostic::from(held);
        assert_eq!(
            diagnostic.error_type, "LeaseHeld",
            "what the state machine retries on"
        );
    }
}
