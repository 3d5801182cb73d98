//! Bundles from any source: a zip from any `Read + Seek` (an object read by ranges, here a buffer), loose
//! files behind a listing and an opener (objects under a prefix, here a map), and a folder on disk all give
//! the same report and the same content digest, and the digest comes out of the validation pass.

use rollcall::read::bundle::{Bundle, EntryKind, Listed, LooseFiles};
use rollcall::{Limits, NoProgress, validate_bundle};
use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/base")
}

fn base_files() -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(base())
        .expect("base")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(&path).expect("read"),
            )
        })
        .collect()
}

/// Loose files held in memory, counting how often each is opened.
struct InMemory {
    files: BTreeMap<String, Vec<u8>>,
    opened: Arc<Mutex<Vec<String>>>,
}

impl LooseFiles for InMemory {
    fn list(&self, folder: &str) -> io::Result<Vec<Listed>> {
        assert_eq!(folder, "", "the files are at the top");
        Ok(self
            .files
            .iter()
            .map(|(name, bytes)| Listed {
                name: name.clone(),
                size: bytes.len() as u64,
                kind: EntryKind::File,
            })
            .collect())
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        self.opened.lock().expect("lock").push(path.to_string());
        let bytes = self
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_string()))?;
        Ok(Box::new(Cursor::new(bytes)))
    }
}

fn zipped(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        zip.start_file(name.as_str(), opts).expect("entry");
        zip.write_all(bytes).expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

#[test]
fn a_zip_from_any_reader_loose_files_and_a_folder_give_the_same_report_and_digest() {
    let limits = Limits::default();
    let mut folder = Bundle::open(&base(), &limits).expect("folder");
    let from_folder = validate_bundle(&mut folder, &limits, &NoProgress).expect("validate");
    let folder_digest = folder.digest().expect("digest");

    let mut zip = Bundle::from_zip(
        Path::new("s3://bucket/inbound/d1/roster.zip"),
        Box::new(Cursor::new(zipped(&base_files()))),
        &limits,
    )
    .expect("zip");
    let from_zip = validate_bundle(&mut zip, &limits, &NoProgress).expect("validate");

    let opened = Arc::new(Mutex::new(Vec::new()));
    let mut loose = Bundle::from_loose(
        Path::new("s3://bucket/inbound/d1/2026-12-01/"),
        Box::new(InMemory {
            files: base_files(),
            opened: Arc::clone(&opened),
        }),
        &limits,
    )
    .expect("loose");
    let from_loose = validate_bundle(&mut loose, &limits, &NoProgress).expect("validate");

    assert_eq!(from_zip.to_json(), from_folder.to_json());
    assert_eq!(from_loose.to_json(), from_folder.to_json());
    assert_eq!(zip.digest().expect("digest"), folder_digest);
    // The validation pass read every file to its end, so the digest needs no read of its own.
    let reads = opened.lock().expect("lock").len();
    assert_eq!(loose.digest().expect("digest"), folder_digest);
    assert_eq!(
        opened.lock().expect("lock").len(),
        reads,
        "nothing read again"
    );
}

#[test]
fn the_digest_tells_apart_bundles_that_differ_only_in_a_name() {
    let limits = Limits::default();
    let digest_of = |files: BTreeMap<String, Vec<u8>>| {
        let mut bundle = Bundle::from_zip(
            Path::new("roster.zip"),
            Box::new(Cursor::new(zipped(&files))),
            &limits,
        )
        .expect("zip");
        validate_bundle(&mut bundle, &limits, &NoProgress).expect("validate");
        bundle.digest().expect("digest")
    };
    let original = digest_of(base_files());
    let mut renamed = base_files();
    let orgs = renamed.remove("orgs.csv").expect("orgs");
    renamed.insert("orgs.CSV".into(), orgs);
    assert_ne!(digest_of(renamed), original, "orgs.CSV is not orgs.csv");
    let mut extra = base_files();
    extra.insert("notes.txt".into(), b"hello".to_vec());
    assert_ne!(digest_of(extra), original, "a file more is another bundle");
}
