//! A tenant's lease, as a run takes and keeps it: one run per tenant at a time. The lease names its holder (a
//! process on a host locally), what it is doing and an expiry it renews while it works. A lease whose holder
//! died (locally: a process that no longer runs on this host; elsewhere: an expiry that passed without renewal)
//! is taken over, and the taker says so. Nothing here waits: a lease held by a live holder is reported, and the
//! caller decides whether to wait (the command line does, and says for whom).

use crate::model::now;
use crate::store::{Lease, LeaseStore, StoreError, StoreResult};
use std::time::Duration;

/// Who is taking a lease: this process, named so that another process can tell whether it still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// `local:{host}:{pid}:{start}:{nonce}`: the host and process id, the process's start time (so a reused
    /// process id is not mistaken for it), and a nonce that tells runs of one process apart.
    pub id: String,
}

impl Holder {
    /// This process, as a lease holder.
    pub fn this_process() -> Holder {
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Holder {
            id: format!("local:{}:{pid}:{start}:{nanos:09}", host_name()),
        }
    }
}

/// The parts of a local holder id.
struct LocalHolder<'a> {
    host: &'a str,
    pid: u32,
    start: u64,
}

fn parse_local(id: &str) -> Option<LocalHolder<'_>> {
    let rest = id.strip_prefix("local:")?;
    let mut parts = rest.rsplitn(4, ':');
    let _nonce = parts.next()?;
    let start = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    Some(LocalHolder { host, pid, start })
}

/// A holder as people read it: `pid 4242 on build-1`.
pub fn describe_holder(id: &str) -> String {
    match parse_local(id) {
        Some(h) => format!("pid {} on {}", h.pid, h.host),
        None => id.to_string(),
    }
}

/// This machine's name, as lease holders record it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().replace(':', "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// When a process started, in clock ticks since boot (Linux); `None` when it does not run (or is a zombie that
/// only waits to be reaped) or this cannot tell.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether a process runs on this machine (as the same process that took the lease).
fn process_alive(pid: u32, start: u64) -> bool {
    if !std::path::Path::new("/proc/self/stat").exists() {
        // No /proc: the process cannot be checked, so only the lease's expiry tells.
        return true;
    }
    match process_start(pid) {
        Some(now) => start == 0 || now == start,
        None => false,
    }
}

/// Tells whether a lease's holder is gone, and why.
pub trait Liveness {
    /// `Some(reason)` when the holder is gone and its lease may be taken over.
    fn gone(&self, lease: &Lease, now: u64) -> Option<String>;
}

/// Local runs: a holder on this host is alive while its process runs; a holder elsewhere is alive while it
/// renews its lease.
pub struct LocalLiveness;

impl Liveness for LocalLiveness {
    fn gone(&self, lease: &Lease, now: u64) -> Option<String> {
        if let Some(h) = parse_local(&lease.holder)
            && h.host == host_name()
        {
            return (!process_alive(h.pid, h.start))
                .then(|| format!("process {} on {} is no longer running", h.pid, h.host));
        }
        (lease.expires_at <= now).then(|| {
            format!(
                "its lease expired {} ago without being renewed",
                elapsed(now.saturating_sub(lease.expires_at))
            )
        })
    }
}

fn elapsed(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// What taking a lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Nobody held it.
    Free,
    /// Its holder was gone; `lease` is what it left, `why` how that was told.
    TookOver { lease: Lease, why: String },
}

/// The lease, held until dropped (or released).
pub struct LeaseGuard<'a> {
    store: &'a dyn LeaseStore,
    tenant: String,
    holder: String,
    ttl: Duration,
    pub taken: Taken,
    /// Released by another process of the same holder, not by this guard.
    kept: bool,
}

impl LeaseGuard<'_> {
    /// Moves the expiry on (and records the batch the holder now works on).
    pub fn renew(&self, batch: Option<&str>) -> StoreResult<()> {
        let expires = now() + self.ttl.as_secs();
        if self
            .store
            .renew_lease(&self.tenant, &self.holder, expires, batch)?
        {
            return Ok(());
        }
        Err(StoreError::Backend {
            doing: format!("renewing the lease of tenant {}", self.tenant),
            reason: "another run took the lease over (this run was taken for dead)".into(),
        })
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Keeps the lease past this guard: a holder that works in several processes (an execution's states)
    /// releases it in the last of them.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = self.store.release_lease(&self.tenant, &self.holder);
        }
    }
}

/// Takes the tenant's lease for `holder`, or says who holds it (`Err(lease)`) when its holder is alive.
pub fn take<'a>(
    store: &'a dyn LeaseStore,
    tenant: &str,
    holder: &Holder,
    purpose: &str,
    ttl: Duration,
    liveness: &dyn Liveness,
) -> StoreResult<Result<LeaseGuard<'a>, Lease>> {
    // Two tries: the lease may change hands between the look and the take.
    for _ in 0..2 {
        let t = now();
        let mine = Lease {
            holder: holder.id.clone(),
            purpose: purpose.to_string(),
            batch: None,
            acquired_at: t,
            expires_at: t + ttl.as_secs(),
        };
        let current = store.get_lease(tenant)?;
        let taken = match &current {
            None => Taken::Free,
            Some(lease) => match liveness.gone(lease, t) {
                Some(why) => Taken::TookOver {
                    lease: lease.clone(),
                    why,
                },
                None => return Ok(Err(lease.clone())),
            },
        };
        if store.try_lease(tenant, &mine, current.as_ref())? {
            return Ok(Ok(LeaseGuard {
                store,
                tenant: tenant.to_string(),
                holder: holder.id.clone(),
                ttl,
                taken,
                kept: false,
            }));
        }
    }
    match store.get_lease(tenant)? {
        Some(lease) => Ok(Err(lease)),
        None => Err(StoreError::Busy {
            doing: format!("taking the lease of tenant {tenant}"),
        }),
    }
}

/// Clears a tenant's lease whose holder is gone (`rollcall tenant unlock`). Refuses, returning the lease,
/// while its holder is alive; `Ok(None)` when there was no lease.
pub fn unlock(
    store: &dyn LeaseStore,
    tenant: &str,
    liveness: &dyn Liveness,
) -> StoreResult<Result<Option<(Lease, String)>, Lease>> {
    let Some(lease) = store.get_lease(tenant)? else {
        return Ok(Ok(None));
    };
    let Some(why) = liveness.gone(&lease, now()) else {
        return Ok(Err(lease));
    };
    store.release_lease(tenant, &lease.holder)?;
    Ok(Ok(Some((lease, why))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_holder_names_this_process() {
        let me = Holder::this_process();
        let parsed = parse_local(&me.id).expect("parses");
        assert_eq!(parsed.pid, std::process::id());
        assert_eq!(parsed.host, host_name());
        let lease = Lease {
            holder: me.id.clone(),
            purpose: "test".into(),
            batch: None,
            acquired_at: 0,
            expires_at: 0,
        };
        assert_eq!(
            LocalLiveness.gone(&lease, now()),
            None,
            "this process is alive, whatever the expiry says"
        );
        assert_eq!(
            describe_holder(&me.id),
            format!("pid {} on {}", std::process::id(), host_name())
        );
    }

    #[test]
    fn a_holder_elsewhere_is_alive_until_its_expiry() {
        let lease = Lease {
            holder: "local:other-host:1:1:0".into(),
            purpose: "test".into(),
            batch: None,
            acquired_at: 0,
            expires_at: 1_000,
        };
        assert_eq!(LocalLiveness.gone(&lease, 999), None);
        assert!(LocalLiveness.gone(&lease, 1_060).is_some());
    }
}
