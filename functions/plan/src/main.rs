//! The `plan` function. One plan step (`orgs`, `users` or `enrollments`, in the payload): reads the bundle from S3 and the tenant's state from DynamoDB, and writes the step's chunks and the scope it hands on to S3.
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
