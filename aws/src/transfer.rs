//! Tenants' SFTP users on Transfer Family: one service-managed user per tenant, its logical home directory
//! mapped to the tenant's inbound prefix (`/` is `s3://bucket/inbound/{tenant}`), so a district sees only its
//! own folder, and a scope-down policy that allows nothing outside it.

use crate::bridge::AwsError;
use crate::s3::describe;
use aws_sdk_transfer::types::{HomeDirectoryMapEntry, HomeDirectoryType};

/// The Transfer Family user of a tenant (user names have at least three characters; tenant ids may have one).
pub fn user_name(tenant: &str) -> String {
    format!("rollcall-{tenant}")
}

/// Where a tenant's user lands: its inbound prefix.
pub fn home_target(bucket: &str, tenant: &str) -> String {
    format!("/{bucket}/inbound/{tenant}")
}

/// A session policy confining the user to the tenant's prefix, whatever its role allows.
pub fn scope_down(bucket: &str, tenant: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListOwnFolder",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}"),
                "Condition": {"StringLike": {"s3:prefix": [format!("inbound/{tenant}/*"), format!("inbound/{tenant}")]}}
            },
            {
                "Sid": "UploadToOwnFolder",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"],
                "Resource": format!("arn:aws:s3:::{bucket}/inbound/{tenant}/*")
            }
        ]
    })
    .to_string()
}

/// What setting a tenant's key did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySet {
    /// The user was created with the key.
    Created,
    /// The user existed; the key was added to it.
    Added,
    /// The user already had this key.
    Unchanged,
}

/// Creates the tenant's user with `public_key`, or adds the key to the user that exists.
pub async fn set_key(
    client: &aws_sdk_transfer::Client,
    server: &str,
    role: &str,
    bucket: &str,
    tenant: &str,
    public_key: &str,
) -> Result<KeySet, AwsError> {
    let name = user_name(tenant);
    let key = public_key.trim();
    let described = client
        .describe_user()
        .server_id(server)
        .user_name(&name)
        .send()
        .await;
    match described {
        Ok(out) => {
            let known = out
                .user
                .and_then(|u| u.ssh_public_keys)
                .unwrap_or_default()
                .iter()
                .any(|k| k.ssh_public_key_body.trim() == key);
            if known {
                return Ok(KeySet::Unchanged);
            }
            client
                .import_ssh_public_key()
                .server_id(server)
                .user_name(&name)
                .ssh_public_key_body(key)
                .send()
                .await
                .map_err(|e| {
                    AwsError::call(
                        "Transfer Family",
                        format!("adding a key to {name}"),
                        describe(&e),
                    )
                })?;
            Ok(KeySet::Added)
        }
        Err(e) if not_found(&e) => {
            let home = HomeDirectoryMapEntry::builder()
                .entry("/")
                .target(home_target(bucket, tenant))
                .build()
                .map_err(|e| AwsError::call("Transfer Family", format!("creating {name}"), e))?;
            client
                .create_user()
                .server_id(server)
                .user_name(&name)
                .role(role)
                .home_directory_type(HomeDirectoryType::Logical)
                .home_directory_mappings(home)
                .policy(scope_down(bucket, tenant))
                .ssh_public_key_body(key)
                .send()
                .await
                .map_err(|e| {
                    AwsError::call("Transfer Family", format!("creating {name}"), describe(&e))
                })?;
            Ok(KeySet::Created)
        }
        Err(e) => Err(AwsError::call(
            "Transfer Family",
            format!("reading {name}"),
            describe(&e),
        )),
    }
}

/// An unknown user: `ResourceNotFoundException` on AWS (some emulators name it `UserNotFound`).
fn not_found<E: aws_sdk_transfer::error::ProvideErrorMetadata>(
    e: &aws_sdk_transfer::error::SdkError<E>,
) -> bool {
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "ResourceNotFoundException" || c == "UserNotFound")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_user_is_confined_to_its_inbound_prefix() {
        assert_eq!(user_name("t1"), "rollcall-t1");
        assert_eq!(home_target("rc-bucket", "t1"), "/rc-bucket/inbound/t1");
        let policy: serde_json::Value =
            serde_json::from_str(&scope_down("rc-bucket", "t1")).expect("json");
        let statements = policy["Statement"].as_array().expect("statements");
        assert_eq!(
            statements[1]["Resource"],
            "arn:aws:s3:::rc-bucket/inbound/t1/*"
        );
        assert!(
            statements
                .iter()
                .all(|s| s["Action"] != "*" && s["Resource"] != "*")
        );
    }
}
