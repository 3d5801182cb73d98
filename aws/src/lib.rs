//! rollcall on AWS: the adapters that let the `rollcall` library run against a deployed stack. The store traits
//! on DynamoDB (`dynamo`), the blob store and bundles on S3 (`s3`), executions and task tokens on Step Functions
//! (`sfn`), batch events on EventBridge (`events`), tenants' SFTP users on Transfer Family (`transfer`), API pulls
//! with their secrets in Secrets Manager (`pull`), and the
//! stack's names and clients (`context`). The library itself knows nothing of AWS; the Lambda functions and the
//! `rollcall --aws` commands are built on this crate.

pub mod bridge;
pub mod context;
pub mod dynamo;
pub mod events;
pub mod payload;
pub mod pipeline;
pub mod pull;
pub mod s3;
pub mod sfn;
pub mod transfer;

pub use bridge::{AwsError, Bridge};
pub use context::{Aws, Names};
/// The SDK crates whose clients `Aws` holds, for callers that make calls of their own (tests, tools).
pub use {aws_sdk_dynamodb, aws_sdk_lambda, aws_sdk_s3, aws_sdk_sfn};
