//! The pull handler: one tenant, or (on the schedule) every API tenant in turn; what each pull gave, out. With
//! `check`, it only asks the tenant's endpoints for one record each (`rollcall --aws source check`).

use lambda_runtime::LambdaEvent;
use rollcall_aws::Aws;
use rollcall_aws::payload::StepError;
use rollcall_lambda::Failure;
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Input {
    /// One tenant; none means every tenant fed by pulls (the schedule's input is empty).
    #[serde(default)]
    pub tenant: Option<String>,
    /// A full (bulk) pull even when a delta would do.
    #[serde(default)]
    pub full: bool,
    /// Check the tenant's source instead of pulling.
    #[serde(default)]
    pub check: bool,
}

pub async fn handle(aws: &Aws, event: LambdaEvent<Input>) -> Result<serde_json::Value, Failure> {
    let Input {
        tenant,
        full,
        check,
    } = event.payload;
    if check {
        let Some(tenant) = tenant else {
            return Err(Failure(StepError::Refused(
                "a source check names its tenant".into(),
            )));
        };
        let id = tenant.clone();
        let check = rollcall_lambda::run(aws, &tenant, "", "check", move |pipeline| {
            pipeline.check_source(&id)
        })
        .await?;
        return serde_json::to_value(check).map_err(|e| Failure(StepError::Failed(e.to_string())));
    }
    if let Some(tenant) = tenant {
        let id = tenant.clone();
        return rollcall_lambda::run(aws, &tenant, "", "pull", move |pipeline| {
            pipeline.pull(&id, full)
        })
        .await;
    }
    let tenants =
        rollcall_lambda::run(aws, "", "", "pull", |pipeline| pipeline.api_tenants()).await?;
    // One tenant's failure does not stop the others; each is reported.
    let mut results = Vec::new();
    for tenant in tenants {
        let id = tenant.clone();
        let result = rollcall_lambda::run(aws, &tenant, "", "pull", move |pipeline| {
            pipeline.pull(&id, full)
        })
        .await;
        results.push(match result {
            Ok(pulled) => pulled,
            Err(e) => {
                serde_json::json!({"tenant": tenant, "error": e.0.name(), "message": e.to_string()})
            }
        });
    }
    Ok(serde_json::json!({ "pulled": results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedules_empty_input_means_every_api_tenant() {
        let scheduled: Input = serde_json::from_value(serde_json::json!({})).expect("input");
        assert_eq!(scheduled.tenant, None);
        assert!(!scheduled.full);
        let one: Input =
            serde_json::from_value(serde_json::json!({"tenant": "maple", "full": true}))
                .expect("input");
        assert_eq!(one.tenant.as_deref(), Some("maple"));
        assert!(one.full);
        assert!(!one.check);
        let check: Input =
            serde_json::from_value(serde_json::json!({"tenant": "maple", "check": true}))
                .expect("input");
        assert!(check.check);
    }
}
