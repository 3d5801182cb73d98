//! What to do next, in this command's words. The library's errors say what went wrong without naming commands
//! or flags (a Lambda has none); here each is matched by its type and the `rollcall` command or flag that
//! helps is added.

use rollcall::InputError;
use rollcall::apply::edit::EditError;
use rollcall::generate::GenError;
use rollcall::sync::SyncError;

/// The next step for an error, when this command has one to offer.
pub fn advice(err: &anyhow::Error) -> Option<String> {
    if let Some(e) = err.downcast_ref::<SyncError>() {
        return sync_advice(e);
    }
    if let Some(EditError::UnknownTenant(id)) = err.downcast_ref::<EditError>() {
        return Some(add_tenant(id));
    }
    if let Some(e) = err.downcast_ref::<InputError>() {
        return input_advice(e);
    }
    match err.downcast_ref::<GenError>() {
        Some(GenError::TooFewUsers { .. }) => Some("give more --users or fewer --schools".into()),
        Some(GenError::NoSchools) => Some("give --schools 1 or more".into()),
        _ => None,
    }
}

fn add_tenant(id: &str) -> String {
    format!("add it first with `rollcall tenant add {id}`")
}

fn sync_advice(e: &SyncError) -> Option<String> {
    Some(match e {
        SyncError::UnknownTenant(id) => add_tenant(id),
        SyncError::UnknownBatch(_) => {
            "`rollcall history --tenant TENANT` lists a tenant's batches".to_string()
        }
        SyncError::RollbackConflict { id, .. } | SyncError::LaterDepends { id, .. } => {
            format!("`rollcall rollback {id} --force` restores its prior states anyway")
        }
        SyncError::Superseded { .. } => {
            "`rollcall sync BUNDLE --tenant TENANT` plans it against the current roster".to_string()
        }
        SyncError::Input(e) => return input_advice(e),
        _ => return None,
    })
}

fn input_advice(e: &InputError) -> Option<String> {
    Some(match e {
        InputError::TooManyEntries { .. } => "raise it with --max-zip-entries".to_string(),
        InputError::Ratio { .. } => "raise it with --max-ratio".to_string(),
        InputError::TooLarge { .. } => "raise it with --max-uncompressed".to_string(),
        _ => return None,
    })
}
