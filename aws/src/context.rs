//! The deployed stack as the adapters see it: its resource names (from the environment the template gives
//! each function, or that `scripts/aws-local` exports) and the SDK clients, built once. Clients use the
//! default credential chain and `AWS_ENDPOINT_URL`; when an endpoint is set (the AWS APIs on loopback), S3 is
//! addressed by path, as emulators need; on AWS it is left to the SDK.

use crate::bridge::{AwsError, Bridge};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// The stack's resources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The bucket of uploads, reports, staged plans and undo pages.
    pub bucket: String,
    /// The table of tenants, batches, records and leases.
    pub table: String,
    /// The pipeline's state machine (Orgs → Users → Enrollments → Guard → Apply).
    pub state_machine: Option<String>,
    /// The state machine that waits for a loose upload to be complete and quiet.
    pub settle_machine: Option<String>,
    /// The EventBridge bus batch events are published on.
    pub event_bus: Option<String>,
    /// The Transfer Family server tenants upload to.
    pub transfer_server: Option<String>,
    /// The role Transfer Family users act as.
    pub transfer_role: Option<String>,
    /// The function that pulls API tenants (`rollcall --aws pull` invokes it).
    pub pull_function: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String, AwsError> {
    var(name).ok_or_else(|| AwsError::Missing {
        what: name.to_string(),
        hint: "set it to the stack's resource (the template sets it for every function; \
               `rollcall --aws --stack NAME` reads it from the stack's outputs)"
            .to_string(),
    })
}

impl Names {
    /// From `ROLLCALL_BUCKET`, `ROLLCALL_TABLE` (required) and `ROLLCALL_STATE_MACHINE_ARN`,
    /// `ROLLCALL_SETTLE_MACHINE_ARN`, `ROLLCALL_EVENT_BUS`, `ROLLCALL_TRANSFER_SERVER`,
    /// `ROLLCALL_TRANSFER_ROLE`, `ROLLCALL_PULL_FUNCTION`.
    pub fn from_env() -> Result<Names, AwsError> {
        Ok(Names {
            bucket: required("ROLLCALL_BUCKET")?,
            table: required("ROLLCALL_TABLE")?,
            state_machine: var("ROLLCALL_STATE_MACHINE_ARN"),
            settle_machine: var("ROLLCALL_SETTLE_MACHINE_ARN"),
            event_bus: var("ROLLCALL_EVENT_BUS"),
            transfer_server: var("ROLLCALL_TRANSFER_SERVER"),
            transfer_role: var("ROLLCALL_TRANSFER_ROLE"),
            pull_function: var("ROLLCALL_PULL_FUNCTION"),
        })
    }

    pub fn state_machine(&self) -> Result<&str, AwsError> {
        self.state_machine
            .as_deref()
            .ok_or_else(|| AwsError::Missing {
                what: "ROLLCALL_STATE_MACHINE_ARN".into(),
                hint: "set it to the pipeline state machine's ARN".into(),
            })
    }
}

/// The SDK clients of one stack, built once (per Lambda cold start, per command).
#[derive(Clone)]
pub struct Aws {
    pub bridge: Bridge,
    pub names: Names,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub transfer: aws_sdk_transfer::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Aws {
    /// Builds the clients from the environment, on the runtime `handle` points at.
    pub async fn load(names: Names, handle: tokio::runtime::Handle) -> Aws {
        // rustls with ring: one TLS stack for every client (no aws-lc to build).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            // Throttling is retried, never dropped: more attempts than the default three.
            .retry_config(RetryConfig::standard().with_max_attempts(10))
            .load()
            .await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&config);
        if var("AWS_ENDPOINT_URL").is_some() || var("AWS_ENDPOINT_URL_S3").is_some() {
            s3 = s3.force_path_style(true);
        }
        Aws {
            bridge: Bridge::new(handle),
            names,
            dynamo: aws_sdk_dynamodb::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sfn: aws_sdk_sfn::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            transfer: aws_sdk_transfer::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
        }
    }
}
