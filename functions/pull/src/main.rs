//! The `pull` function. On its schedule (an empty input) it pulls every tenant fed by its OneRoster API; asked
//! for one tenant (`{"tenant": "maple", "full": true}`, as `rollcall --aws pull` does) it pulls that one. Each
//! pulled bundle is written to `inbound/{tenant}/api/`, where the upload path takes it.
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
