//! The `guard` function. Puts the three steps' plans together and holds a plan that looks like a broken export; writes the lists of chunks the apply maps read.
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
