//! The `validate` function. An object created under `inbound/` (the EventBridge event S3 sends), or a folder of loose files after its quiet period: route it to its tenant, validate it, record the batch and its report, and start the pipeline execution named after the batch (or reject it, with the report in S3).
//! Wiring only: the clients are built once per cold start, and each invocation calls the handler.

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rollcall_lambda::init_logging();
    let aws = rollcall_lambda::aws().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        handler::handle(&aws, event)
    }))
    .await
}
