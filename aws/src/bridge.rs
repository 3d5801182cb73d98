//! Between the library's synchronous traits and the asynchronous SDK. The store traits stay synchronous
//! (validation and planning are blocking work over `Read`); each adapter holds a Tokio runtime handle and
//! blocks on one SDK call at a time, from a thread that is not one of the runtime's workers (a Lambda handler
//! runs the library inside `spawn_blocking`; the command line blocks from its main thread). Also the retry
//! of batch calls that leave work unprocessed, with jittered exponential backoff.

use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// An AWS call failed.
#[derive(Debug, Error)]
pub enum AwsError {
    #[error("{service} failed while {doing}: {reason}")]
    Call {
        service: &'static str,
        doing: String,
        reason: String,
    },
    #[error("{what} is not set; {hint}")]
    Missing { what: String, hint: String },
    #[error("{what} is damaged: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(
        "{what}: {left} still unprocessed after {tries} tries (the table is throttling); try again later"
    )]
    Unprocessed {
        what: String,
        left: usize,
        tries: u32,
    },
}

impl AwsError {
    pub fn call(
        service: &'static str,
        doing: impl Into<String>,
        err: impl std::fmt::Display,
    ) -> AwsError {
        AwsError::Call {
            service,
            doing: doing.into(),
            reason: err.to_string(),
        }
    }
}

/// Runs SDK futures to completion from synchronous code.
#[derive(Clone)]
pub struct Bridge {
    handle: tokio::runtime::Handle,
}

impl Bridge {
    pub fn new(handle: tokio::runtime::Handle) -> Bridge {
        Bridge { handle }
    }

    /// Blocks this (non-runtime) thread until `future` is done.
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// Most tries of a batch call that keeps leaving work unprocessed (throttled).
pub const MOST_TRIES: u32 = 12;

/// The wait before try `attempt` (from 1): exponential from 50 ms, capped at 5 s, with full jitter, so retries
/// of many callers spread out instead of arriving together.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (50u64 << attempt.min(7)).min(5_000);
    Duration::from_millis(jitter(cap_ms))
}

/// A number in `0..=max`, from the clock and a counter: randomness enough to spread retries.
fn jitter(max: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = xxhash_rust::xxh3::xxh3_64(&[nanos.to_le_bytes(), n.to_le_bytes()].concat());
    h % (max + 1)
}

/// Calls `call` with the work left until none is left: a batch call answers with what it could not process
/// (throttling), which is sent again after a jittered backoff. Fails, naming how much is still left, after
/// [`MOST_TRIES`] calls: nothing is ever dropped silently.
pub async fn until_done<W, F, Fut>(what: &str, mut work: W, mut call: F) -> Result<W, AwsError>
where
    W: Leftover,
    F: FnMut(W) -> Fut,
    Fut: Future<Output = Result<W, AwsError>>,
{
    for attempt in 1..=MOST_TRIES {
        if work.left() == 0 {
            return Ok(work);
        }
        if attempt > 1 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        work = call(work).await?;
    }
    match work.left() {
        0 => Ok(work),
        left => Err(AwsError::Unprocessed {
            what: what.to_string(),
            left,
            tries: MOST_TRIES,
        }),
    }
}

/// Work a batch call may leave partly undone.
pub trait Leftover {
    /// Items still to do.
    fn left(&self) -> usize;
}

impl<T> Leftover for Vec<T> {
    fn left(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose clock only moves when every task waits: backoffs take no real time.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    }

    #[test]
    fn unprocessed_work_is_sent_again_until_it_is_all_done() {
        let mut calls = Vec::new();
        let result = runtime().block_on(until_done("writing", vec![1, 2, 3, 4], |w: Vec<u32>| {
            calls.push(w.clone());
            // Throttled: each call processes only the first item.
            let left = w[1..].to_vec();
            async move { Ok(left) }
        }));
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            calls,
            [vec![1, 2, 3, 4], vec![2, 3, 4], vec![3, 4], vec![4]]
        );
    }

    #[test]
    fn work_that_is_never_processed_is_reported_not_dropped() {
        let result = runtime().block_on(until_done(
            "writing 1 item",
            vec![7],
            |w: Vec<u32>| async move { Ok(w) },
        ));
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err(format!("writing 1 item: 1 still unprocessed after {MOST_TRIES} tries (the table is throttling); try again later").to_string())
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempt in 1..30 {
            let cap = (50u64 << attempt.min(7)).min(5_000);
            assert!(backoff(attempt) <= Duration::from_millis(cap));
        }
        let spread: std::collections::BTreeSet<Duration> = (0..50).map(|_| backoff(6)).collect();
        assert!(spread.len() > 10, "waits are spread: {spread:?}");
    }
}
