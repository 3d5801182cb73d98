//! The `hold` function. A held batch waits for ops: keeps the task token that resumes the execution, lets the tenant's lease go, and publishes the batch's event (the template notifies ops).
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
