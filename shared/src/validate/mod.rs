//! Validation of a whole bundle: the manifest against the files present, then each data file in dependency
//! order (so every reference points at a file already indexed), streaming its rows through the checks.

mod fieldpass;
mod header;
mod linkpass;
mod state;

use crate::csvread::{Next, RecordReader};
use crate::finding::{Code, Finding, Severity};
use crate::input::{Bundle, InputError, Shape};
use crate::limits::Limits;
use crate::manifest::{self, Declared};
use crate::progress::Progress;
use crate::report::{FileSummary, Report, ReportBuilder};
use crate::spec::{ColumnType, FileKind, Mode};
use fieldpass::{BATCH_ROWS, Batch, FieldPass};
use linkpass::{LinkPass, Target};
use state::Indexes;
use std::collections::BTreeMap;
use std::path::Path;

/// Batches in flight between the field pass and the link pass (bounds memory while keeping both cores busy).
const BATCHES_IN_FLIGHT: usize = 8;

/// Bytes per row assumed when sizing a file's id index before reading it.
const BYTES_PER_ROW_ESTIMATE: u64 = 72;

/// The most rows an index is sized for up front: a size taken from the file (or a zip's header, which the
/// sender writes) is only a hint, so beyond this the index grows with the rows actually read.
const MOST_ROWS_RESERVED: u64 = 4_000_000;

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
    if bytes.len() >= crate::input::MANIFEST_LIMIT {
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
                .hint("check that this is a OneRoster CSV; raise --max-record-bytes if its header is genuinely that long"),
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
                .hint("check that this is a OneRoster CSV; raise --max-columns if it genuinely has that many columns"),
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
        report.push(
            Finding::error(
                Code::EncodingUtf16,
                format!("{file} is not UTF-8 text (it looks like UTF-16); the file was not read"),
            )
            .file(file)
            .line(header_line)
            .hint("save the file as CSV UTF-8"),
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
    let expected_rows = bundle_size.map_or(0, |bytes| {
        (bytes / BYTES_PER_ROW_ESTIMATE).min(MOST_ROWS_RESERVED) as usize
    });
    if kind.is_referenced() {
        idx.reserve(kind, expected_rows);
    }
    let mut link = LinkPass::new(kind, mode, targets, demographics_user, expected_rows);
    let mut field = FieldPass::new(kind, mode, header, limits.max_field_bytes);
    let (max_columns, max_record_bytes) = (limits.max_columns, limits.max_record_bytes);

    // The field pass reads and checks rows on its own thread; this thread links them as batches arrive.
    let outcome = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Batch>>(BATCHES_IN_FLIGHT);
        // Linked batches come back empty to be filled again, so memory is allocated once per file.
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Batch>();
        let spawned = std::thread::Builder::new().name(format!("read {file}")).spawn_scoped(scope, move || {
            loop {
                let next = match reader.next_record() {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                match next {
                    Next::Record { line } => field.row(line, &reader),
                    Next::TooLong { line } => field.skipped(line, Finding::error(
                        Code::CsvRecordTooLong,
                        format!("the row is longer than {max_record_bytes} bytes; it was skipped"),
                    )
                    .file(file)
                    .line(line)
                    .hint("look for an unclosed quote that joins many lines into one; raise --max-record-bytes if the row is genuine")),
                    Next::TooManyFields { line } => field.skipped(line, Finding::error(
                        Code::CsvTooManyFields,
                        format!("the row has more than {max_columns} fields; it was skipped"),
                    )
                    .file(file)
                    .line(line)
                    .hint("quote fields that contain commas; raise --max-columns if the row is genuine")),
                    Next::End => break,
                }
                if field.pending_rows() >= BATCH_ROWS {
                    let spare = back_rx.try_recv().unwrap_or_default();
                    if tx.send(Ok(field.take_batch(reader.bytes_read(), spare))).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(field.take_batch(reader.bytes_read(), Batch::default())));
        });
        spawned?;
        for batch in rx {
            let mut batch = batch?;
            progress.advanced(batch.bytes_read);
            link.batch(&mut batch, idx, report);
            // The field pass may be done already; then the batch is simply dropped.
            let _ = back_tx.send(batch);
        }
        Ok::<(), std::io::Error>(())
    });
    outcome.map_err(read_error)?;
    let duplicates = link.duplicates();
    if !duplicates.is_empty() {
        report_duplicates(bundle, kind, id_field, &duplicates, limits, report)?;
    }
    link.finish(idx, report);
    if ids_readable {
        idx.complete.insert(kind);
    }
    progress.file_finished();
    Ok(link.rows)
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
                    crate::finding::shown_value(id)
                )
            }
            None => format!("this sourcedId is already used on line {first}"),
        };
        report.push(finding);
    }
    Ok(())
}
