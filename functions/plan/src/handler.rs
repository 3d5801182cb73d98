//! The plan handler: a job and the step to run in, the step's chunk count out.

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::StepJob;
use rollcall_lambda::Failure;

pub async fn handle(aws: &Aws, event: LambdaEvent<StepJob>) -> Result<serde_json::Value, Failure> {
    let StepJob { job, step } = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "plan", move |pipeline| {
        pipeline.plan(&job, &step)
    })
    .await
}

#[cfg(test)]
mod tests {
    use rollcall::plan::Step;
    use rollcall_aws::payload::StepJob;

    #[test]
    fn each_state_names_its_step() {
        for step in Step::ALL {
            let input = serde_json::json!({"tenant": "t1", "batch": "b1", "execution": "x", "step": step.name()});
            let job: StepJob = serde_json::from_value(input).expect("job");
            assert_eq!(Step::parse(&job.step), Some(step));
        }
    }
}
