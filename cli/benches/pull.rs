//! `cargo bench -p rollcall-cli --no-default-features --bench pull`: a pull of a generated district (100,000
//! users unless `ROLLCALL_BENCH_USERS` says otherwise) from a OneRoster 1.1 provider served on loopback (the
//! test suite's, checking every request's OAuth 1.0a signature) at page size 1,000 (`ROLLCALL_BENCH_PAGE_SIZE`),
//! run as `rollcall pull` into a fresh database. It reports the requests, the pull's wall time and peak
//! memory, and beside them a `rollcall sync` of the bundle the pull wrote, so the pull's own share shows.
//! Figures, not a test.

#[allow(dead_code)]
#[path = "../tests/common/provider.rs"]
mod provider;

use provider::{KEY, Provider, ProviderAuth, serve, with_secret_on_stdin};
use rollcall::generate::{GenOptions, OutputFormat, generate};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench pull: {e}");
            ExitCode::FAILURE
        }
    }
}

fn setting(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<(), String> {
    let users = setting("ROLLCALL_BENCH_USERS", 100_000)?;
    let page_size = setting("ROLLCALL_BENCH_PAGE_SIZE", 1_000)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let district = root.join(format!("pull-district-{users}"));
    if !district.join("manifest.csv").exists() {
        let options = GenOptions {
            users,
            ..GenOptions::default()
        };
        generate(&options, &district, OutputFormat::Folder).map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let mut served = Provider::serving(ProviderAuth::OAuth1, &district);
    served.cap = usize::MAX;
    let records: usize = served.records.values().map(Vec::len).sum();
    eprintln!(
        "provider: {records} records as REST JSON in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let shared = Arc::new(Mutex::new(served));
    let origin = serve(shared.clone());

    let work = root.join(format!("pull-{users}"));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("clearing {}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| format!("making {}: {e}", work.display()))?;
    let pulled_db = work.join("pulled.db");
    let api = format!("{origin}/ims/oneroster/v1p1");
    let page = page_size.to_string();
    quietly(
        &pulled_db,
        &["tenant", "add", "bench", "--source", "api"],
        false,
    )?;
    #[rustfmt::skip]
    let source = ["source", "set", "--tenant", "bench", "--api-url", &api, "--key", KEY, "--secret-stdin",
        "--page-size", &page];
    quietly(&pulled_db, &source, true)?;

    let pull = timed(
        &pulled_db,
        &["pull", "--tenant", "bench", "--format", "json"],
    )?;
    let requests = shared
        .lock()
        .map_err(|_| "the provider stopped")?
        .seen
        .len();
    let out: Value = serde_json::from_str(&pull.stdout).map_err(|e| format!("pull's JSON: {e}"))?;
    let status = out["status"].as_str().unwrap_or("?").to_string();
    if status != "applied" {
        return Err(format!("the pull ended {status}: {}", pull.stdout));
    }
    let pulled: u64 = out["pull"]["endpoints"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["records"].as_u64()).sum())
        .unwrap_or(0);
    if pulled != records as u64 {
        return Err(format!(
            "the pull wrote {pulled} records of the {records} served"
        ));
    }
    let bundle = PathBuf::from(out["pull"]["bundle"].as_str().unwrap_or_default());

    // The same bundle synced alone into a fresh database: what the pull adds is the rest.
    let synced_db = work.join("synced.db");
    quietly(&synced_db, &["tenant", "add", "bench"], false)?;
    let bundle_arg = bundle.display().to_string();
    let sync = timed(
        &synced_db,
        &["sync", &bundle_arg, "--tenant", "bench", "--format", "json"],
    )?;
    let synced: Value =
        serde_json::from_str(&sync.stdout).map_err(|e| format!("sync's JSON: {e}"))?;
    if synced["status"] != "applied" {
        return Err(format!(
            "the sync ended {}: {}",
            synced["status"], sync.stdout
        ));
    }

    println!(
        "pull of a {users}-user district ({records} records) at page size {page_size}, {requests} requests"
    );
    println!(
        "{:<34} {:>10} {:>14} {:>14}",
        "run", "wall (s)", "records/s", "peak RSS (MB)"
    );
    for (name, run) in [
        ("rollcall pull (pull + sync)", &pull),
        ("rollcall sync of the pulled bundle", &sync),
    ] {
        println!(
            "{:<34} {:>10.2} {:>14.0} {:>14.0}",
            name,
            run.wall.as_secs_f64(),
            records as f64 / run.wall.as_secs_f64(),
            run.peak_mb
        );
    }
    let own = pull.wall.saturating_sub(sync.wall);
    println!(
        "the pull's own share: {:.2} s ({:.0} records/s, {:.1} ms a request)",
        own.as_secs_f64(),
        records as f64 / own.as_secs_f64().max(f64::EPSILON),
        own.as_secs_f64() * 1000.0 / requests.max(1) as f64
    );
    Ok(())
}

fn rollcall(db: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollcall"));
    command
        .args(args)
        .env("ROLLCALL_DB", db)
        .env("NO_COLOR", "1")
        .env_remove("ROLLCALL_API_SECRET")
        .env_remove("ROLLCALL_API_KEY");
    command
}

/// Runs a set-up command (with the provider's secret on its input when asked) and checks it worked.
fn quietly(db: &Path, args: &[&str], with_secret: bool) -> Result<(), String> {
    let mut command = rollcall(db, args);
    let out = if with_secret {
        with_secret_on_stdin(&mut command)
    } else {
        command.output().map_err(|e| e.to_string())?
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rollcall {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

struct Run {
    wall: Duration,
    peak_mb: f64,
    stdout: String,
}

/// Runs a command as its own process, following its peak resident memory (the high-water mark only rises,
/// so the last reading before it ends is its peak, to within one interval).
fn timed(db: &Path, args: &[&str]) -> Result<Run, String> {
    let started = Instant::now();
    let mut child = rollcall(db, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().ok_or("no output")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_mb = 0.0;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if let Some(mb) = high_water_mb(&status_file) {
            peak_mb = mb;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed();
    let stdout = reader.join().unwrap_or_default();
    Ok(Run {
        wall,
        peak_mb,
        stdout,
    })
}

fn high_water_mb(status_file: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
