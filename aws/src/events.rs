//! Batch events on EventBridge: one event per batch that finished (applied, rejected, failed) or is held, with
//! tenant, batch, status and counts, for the product to subscribe to (and for the template's rule that
//! notifies ops of held and failed batches).

use crate::bridge::AwsError;
use crate::s3::describe;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use rollcall::model::Batch;
use serde_json::json;

/// The source every rollcall event carries.
pub const SOURCE: &str = "rollcall";

/// The detail of a batch event: what a subscriber needs without reading the table.
pub fn detail(batch: &Batch) -> serde_json::Value {
    json!({
        "tenant": batch.tenant,
        "batch": batch.id,
        "status": batch.status.as_str(),
        "counts": batch.counts,
        "moved": batch.moved,
        "errors": batch.errors,
        "warnings": batch.warnings,
        "reasons": batch.held_reasons,
        "failure": batch.failure,
    })
}

/// The detail type of a batch's event (`Batch Applied`, `Batch Held`, ...).
pub fn detail_type(batch: &Batch) -> String {
    let status = batch.status.as_str().replace('_', " ");
    let mut words = status.split(' ').map(|w| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    });
    format!("Batch {}", words.next().unwrap_or_default())
        + &words.map(|w| format!(" {w}")).collect::<String>()
}

/// Publishes a batch's event on `bus`.
pub async fn publish(
    client: &aws_sdk_eventbridge::Client,
    bus: &str,
    batch: &Batch,
) -> Result<(), AwsError> {
    let entry = PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(SOURCE)
        .detail_type(detail_type(batch))
        .detail(detail(batch).to_string())
        .build();
    let out = client
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| AwsError::call("EventBridge", "publishing a batch event", describe(&e)))?;
    if out.failed_entry_count > 0 {
        let reason = out
            .entries
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| e.error_message)
            .unwrap_or_else(|| "the event was not accepted".into());
        return Err(AwsError::call(
            "EventBridge",
            "publishing a batch event",
            reason,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall::model::BatchStatus;

    #[test]
    fn events_are_named_after_the_batch_status() {
        let mut b: Batch = serde_json::from_value(json!({
            "id": "b1", "tenant": "t1", "source": "inbound/t1/x.zip", "status": "rolled_back",
            "received_at": 0, "updated_at": 0, "counts": {}, "held_reasons": [], "errors": 0,
            "warnings": 0, "bundle": ""
        }))
        .expect("batch");
        assert_eq!(detail_type(&b), "Batch Rolled Back");
        b.status = BatchStatus::Held;
        assert_eq!(detail_type(&b), "Batch Held");
        assert_eq!(detail(&b)["status"], "held");
    }
}
