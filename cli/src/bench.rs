//! `rollcall bench`: measures validation of a generated district against a raw `csv::ByteRecord` scan of the
//! same files in the same run, and reports wall time, throughput and peak resident memory. Figures, not tests.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rollcall::csvread::{Next, RecordReader};
use rollcall::generate::{GenOptions, OutputFormat, generate};
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

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.what {
        BenchWhat::Validate { users, data } => bench_validate(*users, data.as_deref()),
    }
}

fn bench_validate(users: u64, data: Option<&Path>) -> anyhow::Result<()> {
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
        println!(
            "generated {} users, {} enrollments ({:.0} MB) in {:.1}s",
            summary.users(),
            summary.enrollments,
            summary.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    let files = csv_files(&dir)?;
    // Warm the page cache so both timed runs read from memory.
    raw_scan(&files)?;
    reset_peak_rss();
    let started = Instant::now();
    let (raw_rows, bytes) = raw_scan(&files)?;
    let raw = started.elapsed().as_secs_f64();
    let raw_peak = peak_rss_mb();

    let started = Instant::now();
    let reader_rows = reader_scan(&files)?;
    let reader = started.elapsed().as_secs_f64();

    reset_peak_rss();
    let started = Instant::now();
    let report = validate_path(&dir, &Limits::default(), &NoProgress)?;
    let validate = started.elapsed().as_secs_f64();
    let validate_peak = peak_rss_mb();
    let rows: u64 = report.files.values().map(|f| f.rows).sum();
    if !report.valid {
        bail!(
            "the generated district did not validate: {} errors",
            report.counts.errors
        );
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "data: {} ({mb:.0} MB, {rows} data rows, {raw_rows} records with headers)",
        dir.display()
    );
    println!(
        "{:<28} {:>9} {:>10} {:>14}",
        "", "seconds", "MB/s", "peak RSS (MB)"
    );
    println!(
        "{:<28} {raw:>9.2} {:>10.0} {:>14}",
        "raw csv::ByteRecord scan",
        mb / raw,
        fmt_mb(raw_peak)
    );
    println!(
        "{:<28} {reader:>9.2} {:>10.0} {:>14}",
        "rollcall reader, no checks",
        mb / reader,
        ""
    );
    if reader_rows != raw_rows {
        bail!("the readers disagree: {reader_rows} records against {raw_rows}");
    }
    println!(
        "{:<28} {validate:>9.2} {:>10.0} {:>14}",
        "rollcall validate",
        mb / validate,
        fmt_mb(validate_peak)
    );
    println!("validate / raw scan: {:.2}×", validate / raw);
    Ok(())
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
        while reader.next_record()? != Next::End {
            rows += 1;
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
