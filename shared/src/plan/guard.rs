//! The guard: whether a plan looks like a broken export. Per entity, a plan that would archive or update more
//! than the tenant's thresholds allow of the active records is held for a person to approve or reject. A
//! tenant's first sync is exempt (everything is new).

use super::Plan;
use crate::model::{Entity, Tenant};

/// Reasons to hold a plan for approval; empty when it may go ahead.
pub fn guard(tenant: &Tenant, plan: &Plan, first_sync: bool) -> Vec<String> {
    if first_sync {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    for entity in Entity::ALL {
        let base = plan.walked.active_before.get(&entity).copied().unwrap_or(0);
        let Some(counts) = plan.counts.get(&entity) else {
            continue;
        };
        if base == 0 {
            continue;
        }
        let t = tenant.threshold_for(entity);
        for (what, n, limit) in [
            ("archived", counts.archive, t.archive),
            ("updated", counts.update, t.update),
        ] {
            let fraction = n as f64 / base as f64;
            if fraction > limit {
                reasons.push(format!(
                    "{entity}: {n} of {base} active records ({:.1}%) would be {what}; the threshold is {:.0}%",
                    fraction * 100.0,
                    limit * 100.0
                ));
            }
        }
    }
    reasons
}
