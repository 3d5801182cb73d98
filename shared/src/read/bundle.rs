//! Opening a bundle: a `.zip`, a folder, or one CSV file. Finds the OneRoster files in it (at the root, or in
//! one top folder with a warning), refuses zip bombs and unsafe entry names, and hands out one file at a time
//! as a byte stream that enforces the size limits while it is read.

use crate::validate::finding::{Code, Finding};
use crate::limits::{Limits, RATIO_FLOOR_BYTES};
use crate::spec::FileKind;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The input could not be read at all (the `rollcall validate` exit code 2 cases).
#[derive(Debug, Error)]
pub enum InputError {
    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read it: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: not a readable zip archive ({reason}); send a .zip of the CSV files, or the folder that holds them"
    )]
    NotZip { path: PathBuf, reason: String },
    #[error(
        "{path}: not a OneRoster bundle; give a .zip, a folder, or one of the OneRoster CSV files (users.csv, orgs.csv, ...)"
    )]
    NotBundle { path: PathBuf },
    #[error(
        "{path}: the zip holds {entries} entries, more than the limit of {limit}; raise it with --max-zip-entries if this is genuine"
    )]
    TooManyEntries {
        path: PathBuf,
        entries: usize,
        limit: usize,
    },
    #[error(
        "{path}: {entry} expands {ratio}× ({size} bytes from {compressed}), over the limit of {limit}× (a zip bomb?); raise it with --max-ratio if this is genuine"
    )]
    Ratio {
        path: PathBuf,
        entry: String,
        size: u64,
        compressed: u64,
        ratio: u64,
        limit: u64,
    },
    #[error(
        "{path}: the zip expands to more than {limit} bytes; raise the limit with --max-uncompressed if this is genuine"
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: {entry}: cannot read it: {source}")]
    Entry {
        path: PathBuf,
        entry: String,
        source: io::Error,
    },
}

/// The most of `manifest.csv` that is read.
pub const MANIFEST_LIMIT: usize = 1 << 20;

/// One readable file of the bundle.
#[derive(Clone, Debug)]
struct Entry {
    /// Index in the zip, or the path on disk.
    location: Location,
    /// Uncompressed size as declared (zip) or on disk.
    size: u64,
}

#[derive(Clone, Debug)]
enum Location {
    Zip(usize),
    Disk(PathBuf),
}

/// How the bundle arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Zip,
    Folder,
    /// A single data file, checked without a manifest.
    SingleFile(FileKind),
}

/// An opened bundle: which OneRoster files it has and how to read each.
pub struct Bundle {
    path: PathBuf,
    shape: Shape,
    zip: Option<zip::ZipArchive<BufReader<File>>>,
    manifest: Option<Entry>,
    files: BTreeMap<FileKind, Entry>,
    /// Files found under their exact name.
    exact: std::collections::BTreeSet<FileKind>,
    findings: Vec<Finding>,
    limits: Limits,
    /// Uncompressed bytes handed out so far (zip only), against `max_uncompressed_bytes`.
    expanded: u64,
    /// Zip entries already charged to `expanded`.
    charged: std::collections::HashSet<usize>,
}

impl Bundle {
    /// Opens a `.zip`, a folder or a single CSV file.
    pub fn open(path: &Path, limits: &Limits) -> Result<Bundle, InputError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => InputError::NotFound {
                path: path.to_path_buf(),
            },
            _ => InputError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let mut bundle = Bundle {
            path: path.to_path_buf(),
            shape: Shape::Folder,
            zip: None,
            manifest: None,
            files: BTreeMap::new(),
            exact: std::collections::BTreeSet::new(),
            findings: Vec::new(),
            limits: limits.clone(),
            expanded: 0,
            charged: std::collections::HashSet::new(),
        };
        if meta.is_dir() {
            bundle.scan_folder()?;
        } else if looks_like_zip(path)? {
            bundle.shape = Shape::Zip;
            bundle.scan_zip()?;
        } else {
            bundle.open_single(meta.len())?;
        }
        Ok(bundle)
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Findings about the bundle's shape (nested folder, unknown or misnamed files, unsafe names).
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    pub fn has_manifest(&self) -> bool {
        self.manifest.is_some()
    }

    pub fn has(&self, kind: FileKind) -> bool {
        self.files.contains_key(&kind)
    }

    /// Data files present, in spec order.
    pub fn kinds(&self) -> Vec<FileKind> {
        self.files.keys().copied().collect()
    }

    /// Declared (zip) or actual (disk) size of a data file, for progress.
    pub fn size(&self, kind: FileKind) -> Option<u64> {
        self.files.get(&kind).map(|e| e.size)
    }

    /// Reads `manifest.csv` whole (it is tiny; it is cut at [`MANIFEST_LIMIT`] and the caller reports that).
    pub fn read_manifest(&mut self) -> Result<Option<Vec<u8>>, InputError> {
        let Some(entry) = self.manifest.clone() else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        let path = self.path.clone();
        let mut reader = self.open_entry(&entry, "manifest.csv")?;
        reader
            .by_ref()
            .take(MANIFEST_LIMIT as u64)
            .read_to_end(&mut bytes)
            .map_err(|source| InputError::Entry {
                path,
                entry: "manifest.csv".into(),
                source,
            })?;
        Ok(Some(bytes))
    }

    /// A fingerprint of the bundle's content: the manifest and every data file, by name and bytes. The same
    /// files give the same digest however they were packed (zip or folder, nested or not).
    pub fn digest(&mut self) -> Result<u128, InputError> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        if let Some(manifest) = self.read_manifest()? {
            hasher.update(b"manifest.csv\0");
            hasher.update(&manifest);
        }
        let path = self.path.clone();
        let mut buf = vec![0u8; 256 << 10];
        for kind in self.kinds() {
            hasher.update(kind.file_name().as_bytes());
            hasher.update(&[0]);
            let mut stream = self.open_file(kind)?;
            loop {
                let n = stream.read(&mut buf).map_err(|source| InputError::Entry {
                    path: path.clone(),
                    entry: kind.file_name().into(),
                    source,
                })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        Ok(hasher.digest128())
    }

    /// A byte stream of one data file.
    pub fn open_file(&mut self, kind: FileKind) -> Result<Box<dyn Read + Send + '_>, InputError> {
        let entry = self
            .files
            .get(&kind)
            .cloned()
            .ok_or_else(|| InputError::Entry {
                path: self.path.clone(),
                entry: kind.file_name().into(),
                source: io::Error::new(io::ErrorKind::NotFound, "not in the bundle"),
            })?;
        self.open_entry(&entry, kind.file_name())
    }

    fn open_entry(
        &mut self,
        entry: &Entry,
        name: &str,
    ) -> Result<Box<dyn Read + Send + '_>, InputError> {
        match &entry.location {
            Location::Disk(p) => {
                let file = File::open(p).map_err(|source| InputError::Entry {
                    path: self.path.clone(),
                    entry: name.into(),
                    source,
                })?;
                Ok(Box::new(file))
            }
            Location::Zip(index) => {
                let path = self.path.clone();
                let budget = if self.charged.contains(index) {
                    entry.size
                } else {
                    self.limits
                        .max_uncompressed_bytes
                        .saturating_sub(self.expanded)
                };
                // Charge the declared size the first time an entry is read (a file may be read more than once);
                // the reader below also refuses to go past it.
                if self.charged.insert(*index) {
                    self.expanded = self.expanded.saturating_add(entry.size);
                }
                let declared = entry.size;
                let zip = self
                    .zip
                    .as_mut()
                    .ok_or_else(|| InputError::NotBundle { path: path.clone() })?;
                let file = zip.by_index(*index).map_err(|e| InputError::Entry {
                    path: path.clone(),
                    entry: name.into(),
                    source: io::Error::other(e.to_string()),
                })?;
                Ok(Box::new(Bounded {
                    inner: file,
                    left: declared.min(budget),
                    declared,
                    name: name.to_string(),
                }))
            }
        }
    }

    fn scan_folder(&mut self) -> Result<(), InputError> {
        let names = list_folder(&self.path)?;
        let root_has_csv = names.iter().any(|(n, dir)| !dir && is_csv(n));
        if !root_has_csv {
            let dirs: Vec<_> = names
                .iter()
                .filter(|(n, dir)| *dir && !ignorable(n))
                .collect();
            if let [(only, _)] = dirs.as_slice() {
                let inner = self.path.join(only);
                let inner_names = list_folder(&inner)?;
                if inner_names.iter().any(|(n, dir)| !dir && is_csv(n)) {
                    self.findings.push(nested_folder_finding(only));
                    for (name, dir) in inner_names {
                        if !dir {
                            let size = file_size(&inner.join(&name));
                            self.place(&name, Location::Disk(inner.join(&name)), size);
                        }
                    }
                    return Ok(());
                }
            }
        }
        for (name, dir) in names {
            if !dir {
                let size = file_size(&self.path.join(&name));
                self.place(&name, Location::Disk(self.path.join(&name)), size);
            }
        }
        Ok(())
    }

    fn scan_zip(&mut self) -> Result<(), InputError> {
        let file = File::open(&self.path).map_err(|source| InputError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut zip =
            zip::ZipArchive::new(BufReader::new(file)).map_err(|e| InputError::NotZip {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        if zip.len() > self.limits.max_zip_entries {
            return Err(InputError::TooManyEntries {
                path: self.path.clone(),
                entries: zip.len(),
                limit: self.limits.max_zip_entries,
            });
        }
        if zip.has_duplicate_names() {
            self.findings.push(
                Finding::error(
                    Code::InputDuplicateFile,
                    "the zip holds two entries with the same name; only one of them can be read",
                )
                .hint("zip each file once"),
            );
        }
        let mut listed = Vec::new();
        let mut total: u64 = 0;
        for index in 0..zip.len() {
            let entry = zip.by_index_raw(index).map_err(|e| InputError::NotZip {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            let raw_name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            if entry.is_dir() {
                continue;
            }
            let absolute = raw_name.starts_with(['/', '\\'])
                || (raw_name.len() >= 2
                    && raw_name.as_bytes()[1] == b':'
                    && raw_name.as_bytes()[0].is_ascii_alphabetic());
            if absolute || entry.enclosed_name().is_none() {
                self.findings.push(
                    Finding::error(
                        Code::InputUnsafePath,
                        format!(
                            "the zip entry {raw_name:?} points outside the bundle; it was not read"
                        ),
                    )
                    .value(raw_name.as_bytes())
                    .hint("zip the CSV files themselves, with plain names such as users.csv"),
                );
                continue;
            }
            let (size, compressed) = (entry.size(), entry.compressed_size());
            total = total.saturating_add(size);
            if total > self.limits.max_uncompressed_bytes {
                return Err(InputError::TooLarge {
                    path: self.path.clone(),
                    limit: self.limits.max_uncompressed_bytes,
                });
            }
            let ratio = size / compressed.max(1);
            if size > RATIO_FLOOR_BYTES && ratio > self.limits.max_compression_ratio {
                return Err(InputError::Ratio {
                    path: self.path.clone(),
                    entry: raw_name,
                    size,
                    compressed,
                    ratio,
                    limit: self.limits.max_compression_ratio,
                });
            }
            listed.push((raw_name, index, size));
        }
        self.zip = Some(zip);
        let visible: Vec<_> = listed
            .iter()
            .filter(|(name, _, _)| !ignorable(name))
            .collect();
        let at_root = visible
            .iter()
            .any(|(name, _, _)| !name.contains('/') && is_csv(name));
        let top: Option<&str> = visible.first().and_then(|(n, _, _)| n.split('/').next());
        let nested = !at_root
            && visible.iter().all(|(n, _, _)| {
                n.split_once('/')
                    .is_some_and(|(first, _)| Some(first) == top)
            });
        if nested && let Some(top) = top {
            self.findings.push(nested_folder_finding(top));
        }
        for (name, index, size) in &visible {
            let local = if nested {
                name.split_once('/').map_or(name.as_str(), |(_, rest)| rest)
            } else {
                name.as_str()
            };
            self.place(local, Location::Zip(*index), *size);
        }
        Ok(())
    }

    fn open_single(&mut self, size: u64) -> Result<(), InputError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "manifest.csv" {
            // Someone pointed at the manifest: they mean the folder it describes.
            let folder = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
            self.path = if folder.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                folder
            };
            return self.scan_folder();
        }
        let kind = FileKind::from_file_name(&name)
            .or_else(|| FileKind::from_file_name_ignore_case(&name))
            .ok_or_else(|| InputError::NotBundle {
                path: self.path.clone(),
            })?;
        self.shape = Shape::SingleFile(kind);
        self.findings.push(
            Finding::warning(
                Code::InputSingleFile,
                format!(
                    "{name} was checked on its own: without manifest.csv its mode is unknown and references to other files are not checked"
                ),
            )
            .hint("check the whole bundle (the .zip or the folder) for the full picture"),
        );
        self.files.insert(
            kind,
            Entry {
                location: Location::Disk(self.path.clone()),
                size,
            },
        );
        Ok(())
    }

    /// Files a name found in the bundle under the right slot, with findings for anything odd about it.
    fn place(&mut self, name: &str, location: Location, size: u64) {
        if ignorable(name) {
            return;
        }
        let entry = Entry { location, size };
        if name == "manifest.csv" {
            if self.manifest.is_some() {
                self.findings.push(duplicate_finding(name));
            } else {
                self.manifest = Some(entry);
            }
            return;
        }
        if let Some(kind) = FileKind::from_file_name(name) {
            // The exactly named file wins over a misnamed one (which has its own finding); two exact ones
            // cannot both be read.
            if !self.exact.insert(kind) {
                self.findings.push(duplicate_finding(name));
                return;
            }
            self.files.insert(kind, entry);
            return;
        }
        if let Some(kind) = FileKind::from_file_name_ignore_case(name) {
            self.findings.push(
                Finding::error(
                    Code::InputFileNameCase,
                    format!(
                        "{name} should be named {}; file names are case-sensitive",
                        kind.file_name()
                    ),
                )
                .file(name.to_string())
                .value(name.as_bytes())
                .hint(format!("rename it to {}", kind.file_name())),
            );
            // Read it anyway (unless the exactly named file is there too), so the rest of the report is useful.
            match self.files.entry(kind) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    self.findings.push(duplicate_finding(kind.file_name()));
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
            }
            return;
        }
        if name.eq_ignore_ascii_case("manifest.csv") {
            self.findings.push(
                Finding::error(
                    Code::InputFileNameCase,
                    format!("{name} should be named manifest.csv; file names are case-sensitive"),
                )
                .file(name.to_string())
                .value(name.as_bytes())
                .hint("rename it to manifest.csv"),
            );
            if self.manifest.is_none() {
                self.manifest = Some(entry);
            }
            return;
        }
        let hint = match name {
            "roles.csv" | "userProfiles.csv" | "userResources.csv" => {
                format!("{name} belongs to OneRoster 1.2; rollcall reads 1.1 bundles")
            }
            _ => "remove it from the bundle, or check its name against the OneRoster 1.1 file list"
                .into(),
        };
        self.findings.push(
            Finding::warning(
                Code::InputUnknownFile,
                format!("{name} is not a OneRoster 1.1 file; it was not read"),
            )
            .file(name.to_string())
            .hint(hint),
        );
    }
}

/// A zip entry stream that stops at its declared size, so a lying header cannot expand without bound.
struct Bounded<R> {
    inner: R,
    left: u64,
    declared: u64,
    name: String,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One probe byte tells a well-formed end from an entry that expands past what it declared.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} expands past its declared {} bytes or the uncompressed limit (a zip bomb?)",
                    self.name, self.declared
                ))),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn nested_folder_finding(folder: &str) -> Finding {
    Finding::warning(
        Code::InputNestedFolder,
        format!("the files sit in the folder {folder}/ instead of at the top of the bundle; they were read from there"),
    )
    .hint("zip the CSV files themselves, not the folder that holds them")
}

fn duplicate_finding(name: &str) -> Finding {
    Finding::error(
        Code::InputDuplicateFile,
        format!("{name} appears more than once in the bundle; one copy was read (the exactly named one, else the first)"),
    )
    .file(name.to_string())
    .hint("keep one copy of each file")
}

fn looks_like_zip(path: &Path) -> Result<bool, InputError> {
    let is_zip_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let n = file.read(&mut magic).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(is_zip_name || (n == 4 && &magic == b"PK\x03\x04"))
}

fn list_folder(path: &Path) -> Result<Vec<(String, bool)>, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for item in std::fs::read_dir(path).map_err(io_err)? {
        let item = item.map_err(io_err)?;
        let is_dir = item.file_type().map_err(io_err)?.is_dir();
        names.push((item.file_name().to_string_lossy().into_owned(), is_dir));
    }
    names.sort();
    Ok(names)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn is_csv(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".csv")
}

/// Operating-system litter that zips and folders pick up; never worth a finding.
fn ignorable(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name.starts_with("__MACOSX") || base.starts_with('.') || base.is_empty() || base == "Thumbs.db"
}
