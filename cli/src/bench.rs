//! `rollcall bench`: measures validation of a generated district against a raw `csv::ByteRecord` scan of the
//! same files in the same run, and reports wall time, throughput and peak resident memory. Figures, not tests.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rollcall::generate::{GenOptions, OutputFormat, generate};
use rollcall::read::csvread::{RecordReader, Records};
use rollcall::{Limits, NoProgress, validate_path};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// First sync of a generated district into a fresh database, a no-op resync, and a resync with 1 % of
    /// users changed: wall time, rows written, peak memory.
    Sync {
        /// District size in users (about 7 enrollments per student).
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// Folder for the generated district (reused when it is already there).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Validate a generated district and compare with a raw CSV scan.
    Validate {
        /// District size in users (about 7 enrollments per student).
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// Folder for the generated district (reused when it is already there).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Where `bench sync` runs its syncs: the local database, or (`rollcall --aws bench sync`) a deployed stack.
pub enum Target<'a> {
    Local,
    Aws { stack: Option<&'a str> },
}

pub fn run(args: &BenchArgs, target: Target<'_>) -> anyhow::Result<()> {
    match &args.what {
        BenchWhat::Validate { users, data } => bench_validate(*users, data.as_deref()),
        BenchWhat::Sync { users, data } => bench_sync(*users, data.as_deref(), &target),
    }
}

/// The generated district for a size, made once and reused.
fn district(users: u64, data: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = data
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("target/bench/district-{users}")));
    if !dir.join("manifest.csv").exists() {
        let started = Instant::now();
        let opts = GenOptions {
            users,
            ..GenOptions::default()
        };
        let summary =
            generate(&opts, &dir, OutputFormat::Folder).context("generating the district")?;
        outln!(
            "generated {} users, {} enrollments ({:.0} MB) in {:.1}s",
            summary.users(),
            summary.enrollments,
            summary.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(dir)
}

/// A bundle that shares the district's files (linked, not copied) but for the ones given.
fn variant(district: &Path, dir: &Path, replaced: &[(&str, String)]) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for path in csv_files(district)? {
        let name = path
            .file_name()
            .context("file name")?
            .to_string_lossy()
            .into_owned();
        match replaced.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => std::fs::write(dir.join(&name), text)?,
            None => std::fs::hard_link(&path, dir.join(&name))
                .or_else(|_| std::fs::copy(&path, dir.join(&name)).map(|_| ()))?,
        }
    }
    Ok(dir.to_path_buf())
}

fn bench_sync(users: u64, data: Option<&Path>, target: &Target<'_>) -> anyhow::Result<()> {
    use rollcall::model::Tenant;
    use rollcall::store::TenantStore;
    use rollcall::store::sqlite::SqliteStore;

    let dir = district(users, data)?;
    let work = PathBuf::from(format!("target/bench/sync-{users}"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let db = work.join("rollcall.db");
    // Each run is a fresh tenant: on a stack, one named after the time, so runs never meet.
    let (tenant, target_args): (String, Vec<String>) = match target {
        Target::Local => {
            SqliteStore::open(&db)?.put_tenant(&Tenant::new("bench"))?;
            (
                "bench".into(),
                vec!["--db".into(), db.display().to_string()],
            )
        }
        Target::Aws { stack } => {
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let tenant = format!("bench-{since}");
            let mut args = vec!["--aws".to_string()];
            if let Some(stack) = stack {
                args.extend(["--stack".to_string(), stack.to_string()]);
            }
            let exe = std::env::current_exe().context("finding this program")?;
            let added = std::process::Command::new(exe)
                .args(&args)
                .args(["tenant", "add", &tenant])
                .status()
                .context("adding the bench tenant")?;
            anyhow::ensure!(
                added.success(),
                "adding tenant {tenant} on the stack failed"
            );
            (tenant, args)
        }
    };

    let manifest = std::fs::read_to_string(dir.join("manifest.csv"))?;
    let again = variant(
        &dir,
        &work.join("again"),
        &[(
            "manifest.csv",
            manifest.replace("rollcall gen", "rollcall gen again"),
        )],
    )?;
    let users_csv = std::fs::read_to_string(dir.join("users.csv"))?;
    let mut changed = 0u64;
    let total = users_csv.lines().count().saturating_sub(1) as u64;
    let every = 100;
    let users_changed: Vec<String> = users_csv
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i > 0 && i % every == 0 {
                changed += 1;
                let mut fields: Vec<&str> = line.split(',').collect();
                let renamed = format!("{}x", fields.get(8).copied().unwrap_or(""));
                if let Some(f) = fields.get_mut(8) {
                    *f = renamed.as_str();
                }
                return fields.join(",");
            }
            line.to_string()
        })
        .collect();
    let one_percent = variant(
        &dir,
        &work.join("one-percent"),
        &[
            (
                "manifest.csv",
                manifest.replace("rollcall gen", "rollcall gen 1%"),
            ),
            ("users.csv", users_changed.join("\n") + "\n"),
        ],
    )?;

    outln!(
        "{:<26} {:>9} {:>14} {:>14} {:>10}",
        "run",
        "seconds",
        "rows written",
        "peak RSS (MB)",
        "status"
    );
    let mut first_secs = 0.0;
    for (label, bundle) in [
        ("first sync", &dir),
        ("no-op resync", &again),
        ("1% of users changed", &one_percent),
    ] {
        // Each run is a process of its own, as an operator runs it, so its peak memory is its own.
        let started = Instant::now();
        let run = run_sync(&target_args, &tenant, bundle)?;
        let secs = started.elapsed().as_secs_f64();
        if label == "first sync" {
            first_secs = secs;
        }
        anyhow::ensure!(run.status == "applied", "{label}: {}", run.status);
        outln!(
            "{label:<26} {secs:>9.2} {:>14} {:>14} {:>10}",
            run.written,
            fmt_mb(run.peak_mb),
            run.status
        );
        if label == "no-op resync" {
            outln!("{:<26} {:>9.2}", "  no-op / first", secs / first_secs);
        }
    }
    outln!("users changed in the 1% run: {changed} of {total}");
    Ok(())
}

/// What one `rollcall sync` process did.
struct SyncRun {
    status: String,
    written: u64,
    peak_mb: Option<f64>,
}

/// Runs `rollcall sync` of a bundle as a child process, following its peak resident memory as it runs (on a
/// stack that is the command's own, which only uploads and follows the pipeline).
fn run_sync(target: &[String], tenant: &str, bundle: &Path) -> anyhow::Result<SyncRun> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = std::process::Command::new(exe)
        .args(target)
        .arg("sync")
        .arg(bundle)
        .args(["--tenant", tenant, "--wait", "86400"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting rollcall sync")?;
    let mut peak_mb = None;
    let status_file = format!("/proc/{}/status", child.id());
    let mut output = String::new();
    let mut stdout = child.stdout.take().context("the sync's output")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    while child.try_wait()?.is_none() {
        // The high-water mark only rises, so the last reading before the process ends is its peak (to
        // within one interval).
        if let Some(mb) = high_water_mb(&status_file) {
            peak_mb = Some(mb);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    output.push_str(&reader.join().unwrap_or_default());
    let last = output.lines().last().unwrap_or_default();
    let status = ["applied", "held", "rejected", "already applied"]
        .into_iter()
        .find(|s| last.contains(&format!(": {s}")))
        .unwrap_or("failed")
        .to_string();
    let written = last
        .split_once("applied (")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(SyncRun {
        status,
        written,
        peak_mb,
    })
}

fn high_water_mb(status_file: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Rounds of (raw scan, validate) timed back to back. The machine's speed drifts (shared hosts), so each
/// ratio compares two runs taken seconds apart, and the median of the rounds is reported.
const ROUNDS: usize = 3;

fn bench_validate(users: u64, data: Option<&Path>) -> anyhow::Result<()> {
    let dir = district(users, data)?;
    let files = csv_files(&dir)?;
    // Warm the page cache so every timed run reads from memory.
    let (raw_rows, bytes) = raw_scan(&files)?;
    let started = Instant::now();
    let reader_rows = reader_scan(&files)?;
    let reader = started.elapsed().as_secs_f64();
    if reader_rows != raw_rows {
        bail!("the readers disagree: {reader_rows} records against {raw_rows}");
    }
    let mb = bytes as f64 / 1e6;
    outln!("folder {} ({mb:.0} MB of CSV)", dir.display());
    outln!(
        "{:<34} {:>9} {:>10} {:>14}",
        "",
        "seconds",
        "MB/s",
        "peak RSS (MB)"
    );
    outln!(
        "{:<34} {reader:>9.2} {:>10.0} {:>14}",
        "rollcall reader, no checks",
        mb / reader,
        ""
    );
    let folder = rounds(
        mb,
        "raw csv::ByteRecord scan",
        || raw_scan(&files).map(|(rows, _)| rows),
        &dir,
        raw_rows,
    )?;
    outln!("validate / raw scan, median of {ROUNDS} rounds: {folder:.2}×");

    // The same district as the zip a district uploads (what `rollcall gen` writes by default).
    let zip = dir.with_extension("zip");
    if !zip.exists() {
        let opts = GenOptions {
            users,
            ..GenOptions::default()
        };
        generate(&opts, &zip, OutputFormat::Zip).context("generating the district as a zip")?;
    }
    outln!(
        "\nzip {} ({:.0} MB compressed)",
        zip.display(),
        std::fs::metadata(&zip)?.len() as f64 / 1e6
    );
    let zipped = rounds(
        mb,
        "raw inflate + ByteRecord scan",
        || raw_zip_scan(&zip),
        &zip,
        raw_rows,
    )?;
    outln!("validate / raw scan, median of {ROUNDS} rounds: {zipped:.2}×");
    Ok(())
}

/// Times `raw` and then `rollcall validate` on `bundle`, [`ROUNDS`] times, printing each run. Returns the
/// median ratio.
fn rounds(
    mb: f64,
    raw_label: &str,
    raw: impl Fn() -> anyhow::Result<u64>,
    bundle: &Path,
    rows: u64,
) -> anyhow::Result<f64> {
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let started = Instant::now();
        let raw_rows = raw()?;
        let raw_secs = started.elapsed().as_secs_f64();
        reset_peak_rss();
        let started = Instant::now();
        let report = validate_path(bundle, &Limits::default(), &NoProgress)?;
        let secs = started.elapsed().as_secs_f64();
        let peak = peak_rss_mb();
        if !report.valid || raw_rows != rows {
            bail!(
                "{} did not validate as expected: {} errors, {raw_rows} records scanned against {rows}",
                bundle.display(),
                report.counts.errors
            );
        }
        outln!(
            "{:<34} {raw_secs:>9.2} {:>10.0} {:>14}",
            format!("{round}. {raw_label}"),
            mb / raw_secs,
            ""
        );
        outln!(
            "{:<34} {secs:>9.2} {:>10.0} {:>14}   {:.2}×",
            format!("{round}. rollcall validate"),
            mb / secs,
            fmt_mb(peak),
            secs / raw_secs
        );
        ratios.push(secs / raw_secs);
    }
    ratios.sort_by(f64::total_cmp);
    Ok(ratios[ratios.len() / 2])
}

/// Inflates every CSV entry of a zip and reads its records with `csv::ByteRecord`.
fn raw_zip_scan(path: &Path) -> anyhow::Result<u64> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path)?)?;
    let mut rows = 0;
    for i in 0..zip.len() {
        let entry = zip.by_index(i)?;
        if !entry.name()?.ends_with(".csv") {
            continue;
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(entry);
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record)? {
            rows += 1;
        }
    }
    Ok(rows)
}

fn csv_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every record of every file with `csv::ByteRecord` and does nothing with it: the floor for any reader.
fn raw_scan(files: &[PathBuf]) -> anyhow::Result<(u64, u64)> {
    let mut rows = 0;
    let mut bytes = 0;
    for path in files {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record)? {
            rows += 1;
        }
        bytes += reader.position().byte();
    }
    Ok((rows, bytes))
}

/// Reads every record with rollcall's own reader (no checks): what validation costs beyond reading.
fn reader_scan(files: &[PathBuf]) -> anyhow::Result<u64> {
    let mut rows = 0;
    for path in files {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let limits = Limits::default();
        let mut reader = RecordReader::new(file, limits.max_record_bytes, limits.max_columns);
        // In batches, as validation reads (the header is a record too).
        let mut batch = Records::default();
        loop {
            batch.clear();
            let more = reader.read_batch(&mut batch, 4096, 1 << 20)?;
            rows += batch.len() as u64;
            if !more {
                break;
            }
        }
    }
    Ok(rows)
}

/// Resets the kernel's high-water mark of resident memory for this process (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory in MB since the last reset (Linux; `None` elsewhere).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn fmt_mb(mb: Option<f64>) -> String {
    mb.map_or_else(|| "n/a".to_string(), |m| format!("{m:.0}"))
}
