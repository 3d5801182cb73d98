//! The `fail` function. The failure path every state's `Catch` leads to: undoes what the batch had applied, marks it failed with the reason, releases the lease, and publishes the event.
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
