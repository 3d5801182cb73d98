//! The guard handler: a job in, whether the plan is held and where the apply maps find its chunks out.

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::{Guarded, Job};
use rollcall_lambda::Failure;

pub async fn handle(aws: &Aws, event: LambdaEvent<Job>) -> Result<Guarded, Failure> {
    let job = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "guard", move |pipeline| {
        pipeline.guard(&job)
    })
    .await
}

#[cfg(test)]
mod tests {
    use rollcall_aws::payload::Guarded;

    #[test]
    fn the_answer_is_what_the_state_machine_chooses_on() {
        let answer = Guarded {
            held: true,
            reasons: vec!["enrollments: 3 of 4 active records (75.0%) would be archived; the threshold is 10%".into()],
            upserts: 0,
            archives: 1,
            upserts_key: "staged/t1/b1/upserts.json".into(),
            archives_key: "staged/t1/b1/archives.json".into(),
        };
        let json = serde_json::to_value(&answer).expect("json");
        assert_eq!(json["held"], true);
        assert_eq!(json["archives_key"], "staged/t1/b1/archives.json");
    }
}
