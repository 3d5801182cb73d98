//! Validation of a whole bundle: the manifest against the files present, then each data file in dependency
//! order (so every reference points at a file already indexed), streaming its rows through the checks. Checks
//! of single values are in `fields`, findings in `finding`, the report they make in `report`.

pub mod encoding;
mod fieldpass;
pub mod fields;
pub mod finding;
mod header;
mod linkpass;
pub mod listed;
mod merge;
pub mod record;
pub mod report;
mod state;
pub mod suggest;

use crate::limits::Limits;
use crate::progress::Progress;
use crate::read::bundle::{Bundle, InputError, Shape};
use crate::read::csvread::{Next, Outcome, RecordReader, Records};
use crate::read::manifest::{self, Declared};
use crate::spec::{ColumnType, FileKind, Mode};
use crate::validate::finding::{Code, Finding, Severity};
use crate::validate::report::{FileSummary, Report, ReportBuilder};
use fieldpass::{Batch, FieldPass};
use header::HeaderMap;
use linkpass::{LinkPass, Target};
use merge::Merge;
use state::{DupCheck, Indexes};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

/// Most rows in a batch handed from the reader to a worker.
const BATCH_ROWS: usize = 4096;

/// Most bytes of record data in a batch (a batch of very long rows is cut short).
const BATCH_BYTES: usize = 1 << 20;

/// Most worker threads, however many cores there are: past this the reader cannot keep them busy.
const MOST_WORKERS: usize = 8;

/// Record batches in flight per worker: enough that no thread waits for work, few enough to bound memory.
const BATCHES_PER_WORKER: usize = 3;

/// Findings a batch's vector may keep room for between batches.
const SPARE_FINDINGS: usize = 1 << 16;

/// Opens and validates a `.zip`, a folder or a single CSV file.
pub fn validate_path(
    path: &Path,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<Report, InputError> {
    let mut bundle = Bundle::open(path, limits)?;
    validate_bundle(&mut bundle, limits, progress)
}

/// Validates an opened bundle.
pub fn validate_bundle(
    bundle: &mut Bundle,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<Report, InputError> {
    let mut report = ReportBuilder::new(limits.max_findings);
    for finding in bundle.take_findings() {
        report.push(finding);
    }
    let modes = check_manifest(bundle, &mut report)?;
    if let Some(lie) = bundle.size_mismatch(None) {
        report.push(lie);
    }
    let mut idx = Indexes::new();
    for kind in FileKind::DEPENDENCY_ORDER {
        if !bundle.has(kind) {
            continue;
        }
        let mode = modes.get(&kind).copied().flatten();
        let rows = check_file(
            bundle,
            kind,
            mode,
            &modes,
            limits,
            &mut idx,
            &mut report,
            progress,
        )?;
        report.set_file(kind.file_name(), FileSummary { mode, rows });
        if let Some(lie) = bundle.size_mismatch(Some(kind)) {
            report.push(lie);
        }
    }
    Ok(report.finish())
}

/// Reads the manifest and compares it with the files present. Returns each present file's mode (`None` where
/// it is unknown: no manifest, not declared, or an invalid value).
fn check_manifest(
    bundle: &mut Bundle,
    report: &mut ReportBuilder,
) -> Result<BTreeMap<FileKind, Option<Mode>>, InputError> {
    let mut modes = BTreeMap::new();
    if let Shape::SingleFile(kind) = bundle.shape() {
        modes.insert(kind, None);
        return Ok(modes);
    }
    let Some(bytes) = bundle.read_manifest()? else {
        report.push(
            Finding::error(Code::ManifestMissing, "the bundle has no manifest.csv")
                .file("manifest.csv")
                .hint("add manifest.csv with manifest.version,1.0, oneroster.version,1.1 and a file.<name> row (absent, bulk or delta) for each file"),
        );
        for kind in bundle.kinds() {
            modes.insert(kind, None);
        }
        return Ok(modes);
    };
    let mut findings = Vec::new();
    if bytes.len() >= crate::read::bundle::MANIFEST_LIMIT {
        findings.push(
            Finding::error(
                Code::ManifestRow,
                "manifest.csv is larger than 1 MiB; only its beginning was read",
            )
            .file("manifest.csv")
            .hint("a manifest is a few dozen short rows: check that this is the right file"),
        );
    }
    let manifest = manifest::parse(&bytes, &mut findings);
    for finding in findings {
        report.push(finding);
    }
    report.set_oneroster_version(manifest.oneroster_version.clone());
    for kind in FileKind::ALL {
        let present = bundle.has(kind);
        let declared = manifest.files.get(&kind).copied();
        let file = kind.file_name();
        let key = format!("file.{}", kind.name());
        let line = manifest.lines.get(&key).copied();
        let mut push = |f: Finding| {
            report.push(match line {
                Some(l) => f.line(l),
                None => f,
            })
        };
        match (declared, present) {
            (Some(Declared::Present(mode)), true) => {
                modes.insert(kind, Some(mode));
            }
            (Some(Declared::Present(mode)), false) => push(
                Finding::error(
                    Code::ManifestFileMissing,
                    format!(
                        "manifest.csv declares {file} as {} but the bundle has no {file}",
                        mode.as_str()
                    ),
                )
                .file("manifest.csv")
                .column(key)
                .hint(format!(
                    "add {file} to the bundle, or set file.{} to absent",
                    kind.name()
                )),
            ),
            (Some(Declared::Absent), true) | (None, true) => {
                let said = if declared.is_some() {
                    "declares it absent"
                } else {
                    "does not list it"
                };
                push(
                    Finding::error(
                        Code::ManifestFileNotDeclared,
                        format!("{file} is in the bundle but manifest.csv {said}"),
                    )
                    .file("manifest.csv")
                    .column(key)
                    .hint(format!(
                        "set file.{} to bulk or delta in manifest.csv, or remove {file}",
                        kind.name()
                    )),
                );
                modes.insert(kind, None);
            }
            (None, false) => push(
                Finding::warning(
                    Code::ManifestFileRowMissing,
                    format!("manifest.csv has no {key} row; {file} is taken as absent"),
                )
                .file("manifest.csv")
                .column(key.clone())
                .hint(format!(
                    "add the row {key},absent (some systems require every file row)"
                )),
            ),
            (Some(Declared::Invalid), present) => {
                if present {
                    modes.insert(kind, None);
                }
            }
            (Some(Declared::Absent), false) => {}
        }
    }
    Ok(modes)
}

/// How references from `kind` (in `mode`) to `target` are checked, given what has been read so far.
fn target_for(
    kind: FileKind,
    mode: Option<Mode>,
    target: FileKind,
    modes: &BTreeMap<FileKind, Option<Mode>>,
    single: bool,
    ids_readable: bool,
    idx: &Indexes,
) -> Target {
    let severity_in = |m: Option<Mode>| match m {
        Some(Mode::Delta) => Severity::Warning,
        _ => Severity::Error,
    };
    if target == kind {
        // Without a readable sourcedId column the file's own ids are unknown (its header finding says why).
        return if ids_readable {
            Target::Check(severity_in(mode))
        } else {
            Target::Skip
        };
    }
    if single {
        return Target::Skip;
    }
    match modes.get(&target) {
        Some(target_mode) if idx.complete.contains(&target) => {
            Target::Check(severity_in(*target_mode))
        }
        // Present but its ids could not be read (its own findings say why).
        Some(_) => Target::Skip,
        None => Target::Absent(severity_in(mode)),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_file(
    bundle: &mut Bundle,
    kind: FileKind,
    mode: Option<Mode>,
    modes: &BTreeMap<FileKind, Option<Mode>>,
    limits: &Limits,
    idx: &mut Indexes,
    report: &mut ReportBuilder,
    progress: &dyn Progress,
) -> Result<u64, InputError> {
    let single = matches!(bundle.shape(), Shape::SingleFile(_));
    let path = bundle.path().to_path_buf();
    let file = kind.file_name();
    let bundle_size = bundle.size(kind);
    let size_hint = bundle.size_hint(kind);
    progress.file_started(file, bundle_size);
    let stream = bundle.open_file(kind)?;
    let mut reader = RecordReader::new(stream, limits.max_record_bytes, limits.max_columns);
    let read_error = |source| InputError::Entry {
        path: path.clone(),
        entry: file.to_string(),
        source,
    };

    let header_line = match reader.next_record().map_err(read_error)? {
        Next::Record { line } => line,
        Next::End => {
            report.push(
                Finding::error(
                    Code::FileEmpty,
                    format!("{file} is empty: it has no header row"),
                )
                .file(file)
                .line(1)
                .hint(format!(
                    "add the header row, or leave {file} out and declare it absent in manifest.csv"
                )),
            );
            progress.file_finished();
            return Ok(0);
        }
        Next::TooLong { line } => {
            report.push(
                Finding::error(
                    Code::CsvRecordTooLong,
                    format!(
                        "the header of {file} is longer than {} bytes; the file was not read",
                        limits.max_record_bytes
                    ),
                )
                .file(file)
                .line(line)
                .hint("check that this is a OneRoster CSV; raise the row-length limit if its header is genuinely that long"),
            );
            progress.file_finished();
            return Ok(0);
        }
        Next::TooManyFields { line } => {
            report.push(
                Finding::error(
                    Code::CsvTooManyFields,
                    format!(
                        "the header of {file} has more than {} fields; the file was not read",
                        limits.max_columns
                    ),
                )
                .file(file)
                .line(line)
                .hint("check that this is a OneRoster CSV; raise the column limit if it genuinely has that many columns"),
            );
            progress.file_finished();
            return Ok(0);
        }
    };
    let names: Vec<Vec<u8>> = (0..reader.len())
        .map(|i| reader.field(i).to_vec())
        .collect();
    // UTF-16 (what some spreadsheets call "Unicode text") shows as a byte-order mark or NULs in the header.
    let raw_header = reader.record_bytes();
    if raw_header.starts_with(b"\xff\xfe")
        || raw_header.starts_with(b"\xfe\xff")
        || raw_header.contains(&0)
    {
        let flavour = encoding::utf16_flavour(raw_header);
        report.push(
            Finding::error(
                Code::EncodingUtf16,
                format!("{file} is not UTF-8 text (it is {flavour}); the file was not read"),
            )
            .file(file)
            .line(header_line)
            .hint(format!(
                "save {file} as UTF-8 (in Excel: Save As, \"CSV UTF-8\", not \"Unicode Text\"; or convert it with \
                 iconv -f {} -t UTF-8 {file} > {file}.utf8)",
                flavour.replace(' ', "")
            )),
        );
        progress.file_finished();
        return Ok(0);
    }
    let mut header_findings = Vec::new();
    let header = header::map_header(kind, header_line, &names, &mut header_findings);
    for finding in header_findings {
        report.push(finding);
    }
    let ids_readable = header.fields[0].is_some();
    let id_field = header.fields[0];
    if mode == Some(Mode::Delta) {
        // A delta row without status or dateLastModified means nothing: the columns are required here.
        for (pos, code) in [
            (1, Code::DeltaStatusBlank),
            (2, Code::DeltaDateLastModifiedBlank),
        ] {
            if header.fields[pos].is_none() {
                let name = kind.columns()[pos].name;
                report.push(
                    Finding::error(code, format!("{file} is declared delta but has no {name} column"))
                        .file(file)
                        .line(header_line)
                        .column(name)
                        .hint(format!("add the {name} column and fill it on every row, or declare the file as bulk")),
                );
            }
        }
    }

    let columns = kind.columns();
    let targets: Vec<Target> = columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Ref(t) | ColumnType::RefList(t) => {
                target_for(kind, mode, t, modes, single, ids_readable, idx)
            }
            ColumnType::SchoolRef => {
                target_for(kind, mode, FileKind::Orgs, modes, single, ids_readable, idx)
            }
            _ => Target::Skip,
        })
        .collect();
    let demographics_user = target_for(
        kind,
        mode,
        FileKind::Users,
        modes,
        single,
        ids_readable,
        idx,
    );
    // Memory is sized ahead from what the file may be believed to hold, not from what a zip header claims.
    let mut merge = Merge::new(kind, mode, &targets, idx, size_hint);
    let plan = Plan {
        kind,
        mode,
        header,
        targets,
        demographics_user,
        limits,
    };
    let before = report.count_of(file, Code::EncodingUtf8);
    let kept = check_rows(reader, &plan, idx, &mut merge, report, progress).map_err(read_error)?;
    if report.count_of(file, Code::EncodingUtf8) > before {
        // The file is not UTF-8: name what it most likely is (a second, bounded read of a broken file only).
        let guessed = encoding::guess(bundle.open_file(kind)?).map_err(read_error)?;
        report.rehint(
            file,
            Code::EncodingUtf8,
            &encoding::resave_hint(file, guessed),
        );
    }
    let duplicates = merge.duplicates(kept);
    if !duplicates.is_empty() {
        report_duplicates(bundle, kind, id_field, &duplicates, limits, report)?;
    }
    let rows = merge.rows;
    merge.finish(idx, report);
    if ids_readable {
        idx.complete.insert(kind);
    }
    progress.file_finished();
    Ok(rows)
}

/// How the rows of one file are checked: what every worker needs.
struct Plan<'a> {
    kind: FileKind,
    mode: Option<Mode>,
    header: HeaderMap,
    targets: Vec<Target>,
    demographics_user: Target,
    limits: &'a Limits,
}

/// Workers that check rows: one per core (the reader and the merger are light and share them).
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, MOST_WORKERS))
}

/// Reads the rows of a file on one thread, checks them in batches on every core, and merges the checked
/// batches back in row order on this thread. The file's own index is the merger's; the workers only read the
/// indexes of files read before, which no longer change. For a file nothing references, each worker keeps the
/// ids of the rows it checked, to find duplicates at the end: those are returned.
fn check_rows<R: std::io::Read + Send>(
    mut reader: RecordReader<R>,
    plan: &Plan,
    idx: &Indexes,
    merge: &mut Merge,
    report: &mut ReportBuilder,
    progress: &dyn Progress,
) -> std::io::Result<Vec<DupCheck>> {
    let workers = worker_count();
    let file = plan.kind.file_name();
    let in_flight = workers * BATCHES_PER_WORKER;
    // A fixed set of record batches goes round: reader → worker → merger → back to the reader, which waits
    // when none is free. Memory is allocated once per file and bounded by the batches in flight, however
    // slow one batch is to check.
    let (spare_tx, spare_rx) = channel::<Records>();
    for _ in 0..in_flight {
        let _ = spare_tx.send(Records::default());
    }
    let spare_batches: Mutex<Vec<Batch>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let (work_tx, work_rx) = sync_channel::<(u64, Records)>(in_flight);
        // Shared by the workers, and dropped with the last of them, so the reader never waits on nobody.
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = sync_channel::<Checked>(in_flight);
        let spare_batches = &spare_batches;
        let reading = std::thread::Builder::new()
            .name(format!("read {file}"))
            .spawn_scoped(scope, move || -> std::io::Result<()> {
                for seq in 0.. {
                    // No spare batch ever again: the merger has stopped.
                    let Ok(mut records) = spare_rx.recv() else {
                        break;
                    };
                    records.clear();
                    let more = reader.read_batch(&mut records, BATCH_ROWS, BATCH_BYTES)?;
                    records.bytes_read = reader.bytes_read();
                    if !records.is_empty() && work_tx.send((seq, records)).is_err() {
                        break;
                    }
                    if !more {
                        break;
                    }
                }
                Ok(())
            })?;
        let mut checking = Vec::with_capacity(workers);
        for n in 0..workers {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("check {file} {n}"))
                .spawn_scoped(scope, move || {
                    // A worker that panics (a bug) tells the merger, which stops rather than wait for its
                    // batch; the panic is passed on when the threads are joined.
                    let _failed = OnPanic(&done_tx);
                    let mut field = FieldPass::new(plan, idx);
                    let mut link =
                        LinkPass::new(plan.kind, plan.targets.clone(), plan.demographics_user);
                    let mut ids = (!plan.kind.is_referenced()).then(DupCheck::new);
                    loop {
                        // Batches are taken in sequence order, so a worker sees its own batches in row order.
                        let job = match work_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        let Ok((seq, records)) = job else { break };
                        check_batch(&mut field, plan, &records);
                        let mut batch =
                            field.take_batch(take_spare(spare_batches).unwrap_or_default());
                        link.batch(&mut batch, records.data(), idx);
                        if let Some(ids) = &mut ids {
                            for row in &batch.rows {
                                if let Some(fp) = row.id {
                                    ids.push(fp, u32::try_from(row.line).unwrap_or(u32::MAX));
                                }
                            }
                        }
                        if done_tx.send(Checked::Done(seq, records, batch)).is_err() {
                            break;
                        }
                    }
                    ids
                })?;
            checking.push(worker);
        }
        drop(work_rx);
        drop(done_tx);
        // Workers finish out of order; batches wait here until every earlier one is merged.
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        for checked in done_rx {
            let Checked::Done(seq, records, batch) = checked else {
                break;
            };
            waiting.insert(seq, (records, batch));
            while let Some((records, mut batch)) = waiting.remove(&next) {
                progress.advanced(records.bytes_read);
                merge.batch(records.data(), &mut batch, report);
                let _ = spare_tx.send(records);
                // A batch of unusually many findings does not keep its memory.
                if batch.findings.0.capacity() > SPARE_FINDINGS {
                    batch.findings.0 = Vec::new();
                }
                if let Ok(mut pool) = spare_batches.lock() {
                    pool.push(batch);
                }
                next += 1;
            }
        }
        // Stopping early (a worker failed): the reader finds no spare batch and ends.
        drop(spare_tx);
        // Neither reading nor checking can panic on input; a panic there is a bug, so it is passed on rather
        // than hidden.
        let mut kept = Vec::new();
        for worker in checking {
            match worker.join() {
                Ok(ids) => kept.extend(ids),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match reading.join() {
            Ok(read) => read.map(|()| kept),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What a worker hands the merger.
enum Checked {
    /// Batch `seq`, checked.
    Done(u64, Records, Batch),
    /// The worker panicked.
    Failed,
}

/// Tells the merger when the worker holding it panics.
struct OnPanic<'a>(&'a SyncSender<Checked>);

impl Drop for OnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Checked::Failed);
        }
    }
}

/// A batch handed back to be filled again, if there is one.
fn take_spare<T>(pool: &Mutex<Vec<T>>) -> Option<T> {
    pool.lock().ok().and_then(|mut p| p.pop())
}

/// The field pass over one batch of records.
fn check_batch(field: &mut FieldPass, plan: &Plan, records: &Records) {
    let file = plan.kind.file_name();
    let (max_columns, max_record_bytes) = (plan.limits.max_columns, plan.limits.max_record_bytes);
    // One UTF-8 check for the whole batch (with the processor's vector instructions): nearly always it passes,
    // and rows need none of their own.
    let text = simdutf8::basic::from_utf8(records.data()).ok();
    for i in 0..records.len() {
        let Some((line, outcome, view)) = records.get(i) else {
            continue;
        };
        match outcome {
            Outcome::Read => field.row(line, &view, text),
            Outcome::TooLong => field.skipped(line, Finding::error(
                Code::CsvRecordTooLong,
                format!("the row is longer than {max_record_bytes} bytes; it was skipped"),
            )
            .file(file)
            .line(line)
            .hint("look for an unclosed quote that joins many lines into one; raise the row-length limit if the row is genuine")),
            Outcome::TooManyFields => field.skipped(line, Finding::error(
                Code::CsvTooManyFields,
                format!("the row has more than {max_columns} fields; it was skipped"),
            )
            .file(file)
            .line(line)
            .hint("quote fields that contain commas; raise the column limit if the row is genuine")),
        }
    }
}

/// Reports repeated ids of a file nothing references, reading just those lines again to name each id (only
/// fingerprints were kept while the file streamed by).
fn report_duplicates(
    bundle: &mut Bundle,
    kind: FileKind,
    id_field: Option<usize>,
    duplicates: &[(u32, u32)],
    limits: &Limits,
    report: &mut ReportBuilder,
) -> Result<(), InputError> {
    let file = kind.file_name();
    let wanted: std::collections::HashSet<u32> = duplicates.iter().map(|(line, _)| *line).collect();
    let mut ids: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    if let Some(id_field) = id_field {
        let path = bundle.path().to_path_buf();
        let stream = bundle.open_file(kind)?;
        let mut reader = RecordReader::new(stream, limits.max_record_bytes, limits.max_columns);
        loop {
            let next = reader.next_record().map_err(|source| InputError::Entry {
                path: path.clone(),
                entry: file.to_string(),
                source,
            })?;
            match next {
                Next::Record { line } => {
                    let line = u32::try_from(line).unwrap_or(u32::MAX);
                    if wanted.contains(&line) {
                        ids.insert(line, reader.field(id_field).to_vec());
                    }
                }
                Next::TooLong { .. } | Next::TooManyFields { .. } => {}
                Next::End => break,
            }
        }
    }
    for (line, first) in duplicates {
        let mut finding = Finding::error(Code::IdDuplicate, "")
            .file(file)
            .line(u64::from(*line))
            .column("sourcedId")
            .hint("give every record in a file its own sourcedId");
        finding.message = match ids.get(line) {
            Some(id) => {
                finding = finding.value(id);
                format!(
                    "the sourcedId \"{}\" is already used on line {first}",
                    crate::validate::finding::shown_value(id)
                )
            }
            None => format!("this sourcedId is already used on line {first}"),
        };
        report.push(finding);
    }
    Ok(())
}
