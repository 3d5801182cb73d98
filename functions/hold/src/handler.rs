//! The hold handler: a job and the task token of the waiting execution in; nothing out (the execution waits
//! until ops approve or reject).

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::HoldJob;
use rollcall_lambda::Failure;

pub async fn handle(aws: &Aws, event: LambdaEvent<HoldJob>) -> Result<serde_json::Value, Failure> {
    let HoldJob { job, token } = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "hold", move |pipeline| {
        pipeline.hold(&job, &token)?;
        Ok(serde_json::json!({"held": true}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use rollcall_aws::payload::HoldJob;

    #[test]
    fn the_token_comes_with_the_job() {
        let job: HoldJob = serde_json::from_value(serde_json::json!({
            "tenant": "t1", "batch": "b1", "execution": "x", "token": "AAAA-token"
        }))
        .expect("job");
        assert_eq!(job.token, "AAAA-token");
    }
}
