//! The validate handler: an S3 "Object Created" event from EventBridge, or a settled folder from the settle
//! state machine, in; what happened to the upload out.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::pipeline::Upload;
use rollcall_lambda::Failure;
use serde::{Deserialize, Serialize};

/// The part of an S3 event's detail the handler reads.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct S3Detail {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct S3Object {
    pub key: String,
}

/// A folder of loose files that stayed as it was through its quiet period.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Settled {
    pub folder: String,
    pub listing: String,
}

/// What invokes the function.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Input {
    Settled { settle: Settled },
    Created(EventBridgeEvent<S3Detail>),
}

impl Input {
    /// The key (or folder) it is about, for the logs.
    pub fn about(&self) -> &str {
        match self {
            Input::Settled { settle } => &settle.folder,
            Input::Created(event) => &event.detail.object.key,
        }
    }
}

pub async fn handle(aws: &Aws, event: LambdaEvent<Input>) -> Result<Upload, Failure> {
    let input = event.payload;
    let about = input.about().to_string();
    rollcall_lambda::run(aws, &about, "", "validate", move |pipeline| match input {
        Input::Settled { settle } => pipeline.settled(&settle.folder, &settle.listing),
        Input::Created(event) => pipeline.upload(&event.detail.object.key),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_event_and_a_settled_folder_are_told_apart() {
        let created: Input = serde_json::from_str(
            r#"{"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
                "source": "aws.s3", "account": "123456789012", "time": "2026-12-01T19:23:10Z", "region": "us-east-1",
                "resources": ["arn:aws:s3:::rc-bucket"],
                "detail": {"version": "0", "bucket": {"name": "rc-bucket"},
                           "object": {"key": "inbound/t1/2026-12-01/bundle.zip", "size": 22, "eTag": "76cd", "sequencer": "617f"},
                           "request-id": "N4N7", "requester": "123456789012", "reason": "PutObject"}}"#,
        )
        .expect("an S3 event");
        assert!(matches!(&created, Input::Created(e) if e.detail.bucket.name == "rc-bucket"));
        assert_eq!(created.about(), "inbound/t1/2026-12-01/bundle.zip");
        let settled: Input = serde_json::from_str(
            r#"{"settle": {"folder": "inbound/t1/loose/", "listing": "00ab", "quiet": 120}}"#,
        )
        .expect("a settled folder");
        assert_eq!(settled.about(), "inbound/t1/loose/");
    }
}
