//! Where staged data lives beside the store: plan chunks and scope between the plan steps, kept bundles of
//! held batches. A blob store is a flat space of keys (`staged/{tenant}/{batch}/...`) holding bytes: a folder
//! locally (`local`), a bucket on AWS. Nothing here knows what the bytes mean.

pub mod local;

use std::io::Read;
use thiserror::Error;

/// A blob store could not do what was asked.
#[derive(Debug, Error)]
pub enum BlobError {
    #[error("{key:?} is not a usable key: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("the blob store failed while {doing} {key}: {reason}")]
    Backend {
        doing: &'static str,
        key: String,
        reason: String,
    },
}

pub type BlobResult<T> = Result<T, BlobError>;

/// One stored blob, as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub key: String,
    pub size: u64,
}

/// Keys to bytes. Shared between threads: plan chunks are written and read ahead on a thread of their own.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing what was there.
    fn put(&self, key: &str, bytes: &[u8]) -> BlobResult<()>;
    /// Stores what `reader` yields under `key` without holding it all in memory; returns the bytes stored.
    fn put_from(&self, key: &str, reader: &mut dyn Read) -> BlobResult<u64>;
    /// The bytes under `key`, or `None` when there are none.
    fn get(&self, key: &str) -> BlobResult<Option<Vec<u8>>>;
    /// A stream of the bytes under `key`, or `None` when there are none.
    fn open(&self, key: &str) -> BlobResult<Option<Box<dyn Read + Send>>>;
    /// Every key that starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> BlobResult<Vec<BlobEntry>>;
    /// Removes every key that starts with `prefix` (nothing there is not an error).
    fn delete_prefix(&self, prefix: &str) -> BlobResult<()>;
}

/// Checks that a key is a relative path of plain names: it becomes a file path locally and an object key on AWS.
pub fn check_key(key: &str) -> BlobResult<()> {
    let bad = |reason| {
        Err(BlobError::BadKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.starts_with('/') || key.contains('\\') {
        return bad("it must be a relative path with / between names");
    }
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("every part between slashes must be a plain name");
    }
    if key.chars().any(char::is_control) {
        return bad("it holds a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_are_relative_paths_of_plain_names() {
        assert!(check_key("staged/t1/b1/chunk-00001.jsonl.gz").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a/\u{7}",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
