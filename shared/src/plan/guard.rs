//! The guard: whether a plan looks like a broken export. Per entity, a plan that would archive or update more
//! than the tenant's thresholds allow of the active records is held for a person to approve or reject. A
//! tenant's first sync is exempt (everything is new).

use super::Plan;
use crate::model::{Entity, Tenant};

/// Reasons to hold a plan for approval; empty when it may go ahead.
pub fn guard(tenant: &Tenant, plan: &Plan, first_sync: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    // Filters that leave no user in scope are a mistake in the tenant's settings, not a roster to apply (a
    // first sync included: it would load a district with nobody in it).
    if let Some(users) = plan
        .counts
        .get(&Entity::Users)
        .filter(|_| !tenant.filters.is_empty())
    {
        let kept =
            users.create + users.update + users.restore + users.unchanged + users.kept_manual;
        // Users the filters drop are counted out_of_scope, or archived when they were active; a delta that
        // sends only dropped users leaves the others as they are, so only an empty roster after the sync counts.
        let dropped = users.out_of_scope + users.archive;
        let before = plan
            .walked
            .active_before
            .get(&Entity::Users)
            .copied()
            .unwrap_or(0);
        let after = (before + users.create + users.restore).saturating_sub(users.archive);
        if kept == 0 && dropped > 0 && after == 0 {
            reasons.push(format!(
                "users: the tenant's filters ({}) leave no user in scope ({dropped} would be archived or left \
                 out); check the filters with `tenant list`",
                tenant.filters.describe(),
            ));
        }
    }
    if first_sync {
        return reasons;
    }
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
