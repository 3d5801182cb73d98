//! The apply handler: a job and one chunk of its plan in, what the chunk did out; without a chunk, it makes the
//! batch `applying` (the state before the maps).

use lambda_runtime::LambdaEvent;
use rollcall::plan::chunk::ChunkInfo;
use rollcall_aws::Aws;
use rollcall_aws::payload::Job;
use rollcall_lambda::Failure;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Input {
    #[serde(flatten)]
    pub job: Job,
    #[serde(default)]
    pub chunk: Option<ChunkInfo>,
}

pub async fn handle(aws: &Aws, event: LambdaEvent<Input>) -> Result<serde_json::Value, Failure> {
    let Input { job, chunk } = event.payload;
    let (tenant, batch) = (job.tenant.clone(), job.batch.clone());
    rollcall_lambda::run(aws, &tenant, &batch, "apply", move |pipeline| match chunk {
        None => {
            pipeline.begin_apply(&job)?;
            Ok(serde_json::json!({"applying": true}))
        }
        Some(chunk) => {
            let result = pipeline.apply(&job, &chunk)?;
            Ok(serde_json::json!({"chunk": chunk.number, "writes": result.writes, "moved": result.moved}))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_item_carries_its_chunk() {
        let item: Input = serde_json::from_value(serde_json::json!({
            "tenant": "t1", "batch": "b1", "execution": "x",
            "chunk": {"number": 3, "entity": "users", "phase": "upsert",
                      "key": "staged/t1/b1/chunks/users-upsert-00001.jsonl.gz", "changes": 2000}
        }))
        .expect("item");
        assert_eq!(item.chunk.map(|c| c.number), Some(3));
        let begin: Input = serde_json::from_value(
            serde_json::json!({"tenant": "t1", "batch": "b1", "execution": "x"}),
        )
        .expect("begin");
        assert!(begin.chunk.is_none());
    }
}
