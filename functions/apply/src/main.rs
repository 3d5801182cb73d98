//! The `apply` function. Applies one chunk of the plan (one map item), or, called without a chunk, makes the batch `applying` (refusing, `Superseded`, when the roster moved on since it was planned).
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
