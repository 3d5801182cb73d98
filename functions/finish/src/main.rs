//! The `finish` function. Commits the batch once every chunk is recorded as applied, releases the lease and publishes the batch's event; or, after ops rejected a held batch, records the rejection.
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
