//! Opening a bundle from wherever it is: a `.zip` or folder on disk, one CSV file, any `Read + Seek` zip (an
//! object in a bucket read by ranges), or loose files behind a listing and an opener (objects under a prefix).
//! Finds the OneRoster files in it (at the root, or in one top folder with a warning), refuses zip bombs, unsafe
//! entry names, links and special files, and hands out one file at a time as a byte stream that enforces the
//! size limits while it is read. Every stream read to its end adds that file to the bundle's content digest,
//! so the validation pass computes the digest without a read of its own.

use crate::limits::{Limits, RATIO_FLOOR_BYTES};
use crate::spec::FileKind;
use crate::validate::finding::{Code, Finding};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The input could not be read at all (the `rollcall validate` exit code 2 cases).
#[derive(Debug, Error)]
pub enum InputError {
    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read it: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: {what}, not a file or folder; give the .zip, the folder, or one CSV file itself"
    )]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(
        "{path}: not a readable zip archive ({reason}); send a .zip of the CSV files, or the folder that holds them"
    )]
    NotZip { path: PathBuf, reason: String },
    #[error(
        "{path}: not a OneRoster bundle; give a .zip, a folder, or one of the OneRoster CSV files (users.csv, orgs.csv, ...)"
    )]
    NotBundle { path: PathBuf },
    #[error(
        "{path}: the zip holds {entries} entries, more than the limit of {limit}; raise the limit on zip entries if this is genuine"
    )]
    TooManyEntries {
        path: PathBuf,
        entries: usize,
        limit: usize,
    },
    #[error(
        "{path}: {entry} expands {ratio}× ({size} bytes from {compressed}), over the limit of {limit}× (a zip bomb?); raise the compression-ratio limit if this is genuine"
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
        "{path}: the zip expands to more than {limit} bytes; raise the limit on uncompressed size if this is genuine"
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

/// Anything a zip can be read from: a file, a buffer, ranged reads of an object in a bucket.
pub trait ReadSeek: Read + Seek + Send {}

impl<T: Read + Seek + Send> ReadSeek for T {}

/// What a loose listing holds at one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Folder,
    /// Something that is not read: a symbolic link, a named pipe, a device, a socket.
    Special(&'static str),
}

/// One name in a folder of loose files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The name within its folder (no `/`).
    pub name: String,
    pub size: u64,
    pub kind: EntryKind,
}

/// Loose files of a bundle (a folder on disk, objects under a prefix in a bucket): what each folder holds, and
/// how to read one file. Paths are relative to the bundle, with `/` between folder and name.
pub trait LooseFiles: Send {
    /// The names in one folder (`""` for the bundle's top).
    fn list(&self, folder: &str) -> io::Result<Vec<Listed>>;
    /// Opens one file for reading; refuses anything that is not a regular file.
    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>>;
}

/// A folder on disk. Reads regular files only and never follows a symbolic link, so a link to `/etc/passwd`
/// or `/dev/zero` inside a bundle is refused, not read.
pub struct Folder {
    root: PathBuf,
}

impl Folder {
    pub fn new(root: &Path) -> Folder {
        Folder {
            root: root.to_path_buf(),
        }
    }
}

/// What a file system entry is, when it is not a plain file or folder.
fn special_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a named pipe");
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return Some("a device");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
    }
    if file_type.is_symlink() {
        return Some("a symbolic link");
    }
    (!file_type.is_file() && !file_type.is_dir()).then_some("not a regular file")
}

impl LooseFiles for Folder {
    fn list(&self, folder: &str) -> io::Result<Vec<Listed>> {
        let mut names = Vec::new();
        for item in std::fs::read_dir(self.root.join(folder))? {
            let item = item?;
            // DirEntry::file_type does not follow links: a link is reported as a link.
            let file_type = item.file_type()?;
            let kind = match special_kind(file_type) {
                Some(what) => EntryKind::Special(what),
                None if file_type.is_dir() => EntryKind::Folder,
                None => EntryKind::File,
            };
            let size = match kind {
                EntryKind::File => item.metadata().map_or(0, |m| m.len()),
                _ => 0,
            };
            names.push(Listed {
                name: item.file_name().to_string_lossy().into_owned(),
                size,
                kind,
            });
        }
        names.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(names)
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        let full = self.root.join(path);
        let listed = std::fs::symlink_metadata(&full)?;
        if let Some(what) = special_kind(listed.file_type()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is {what}, not a regular file"),
            ));
        }
        let file = File::open(&full)?;
        // The name could have been swapped for something else between the look and the open.
        let opened = file.metadata()?;
        if !opened.is_file() || !same_file(&listed, &opened) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it changed while it was being opened",
            ));
        }
        Ok(Box::new(file))
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len()
}

/// One readable file of the bundle.
#[derive(Clone, Debug)]
struct Entry {
    /// Its name within the bundle (after a nesting folder is stripped), which the digest is keyed by.
    name: String,
    /// Index in the zip, or the path within the loose files.
    location: Location,
    /// Uncompressed size as declared (zip) or listed (loose files).
    size: u64,
}

#[derive(Clone, Debug)]
enum Location {
    Zip(usize),
    Loose(String),
}

/// How the bundle arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Zip,
    Folder,
    /// A single data file, checked without a manifest.
    SingleFile(FileKind),
}

/// Where the bundle's bytes come from.
enum Source {
    Zip(Box<zip::ZipArchive<Box<dyn ReadSeek>>>),
    Loose(Box<dyn LooseFiles>),
}

/// An opened bundle: which OneRoster files it has and how to read each.
pub struct Bundle {
    /// What the bundle is called in messages: its path, or its object key.
    path: PathBuf,
    shape: Shape,
    source: Source,
    manifest: Option<Entry>,
    files: BTreeMap<FileKind, Entry>,
    /// Files found under their exact name.
    exact: std::collections::BTreeSet<FileKind>,
    /// Every name the bundle holds (but operating-system litter), as the digest sees them.
    names: Vec<String>,
    findings: Vec<Finding>,
    limits: Limits,
    /// Uncompressed bytes handed out so far (zip only), against `max_uncompressed_bytes`.
    expanded: u64,
    /// Zip entries already charged to `expanded`.
    charged: std::collections::HashSet<usize>,
    /// Digests of the files read to their end so far, by name, with the bytes each held.
    digests: Arc<Mutex<BTreeMap<String, (u128, u64)>>>,
    /// The zip's own length in bytes (zip only): what bounds how far its declared sizes are believed.
    zip_len: Option<u64>,
}

/// How many times its compressed length a zip is believed to expand to when sizing memory ahead (CSV deflates
/// about six to ten times). A zip that claims more still validates; its tables grow with the rows read instead
/// of being reserved from a header that may lie.
const BELIEVED_RATIO: u64 = 16;

impl Bundle {
    /// Opens a `.zip`, a folder or a single CSV file on disk.
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
        if meta.is_dir() {
            return Bundle::from_loose(path, Box::new(Folder::new(path)), limits);
        }
        if let Some(what) = special_kind(meta.file_type()) {
            // A named pipe or device would block or never end; only a regular file is read.
            return Err(InputError::NotRegular {
                path: path.to_path_buf(),
                what,
            });
        }
        if looks_like_zip(path)? {
            let file = File::open(path).map_err(|source| InputError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            return Bundle::from_zip(path, Box::new(BufReader::new(file)), limits);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if name == "manifest.csv" {
            // Someone pointed at the manifest: they mean the folder it describes.
            return Bundle::from_loose(&folder, Box::new(Folder::new(&folder)), limits);
        }
        let mut bundle = Bundle::empty(path, Source::Loose(Box::new(Folder::new(&folder))), limits);
        bundle.open_single(&name, meta.len())?;
        Ok(bundle)
    }

    /// Opens a zip from anything that reads and seeks; `name` is what messages call it.
    pub fn from_zip(
        name: &Path,
        reader: Box<dyn ReadSeek>,
        limits: &Limits,
    ) -> Result<Bundle, InputError> {
        let mut reader = reader;
        let zip_len = reader
            .seek(io::SeekFrom::End(0))
            .and_then(|len| reader.seek(io::SeekFrom::Start(0)).map(|_| len))
            .map_err(|source| InputError::Io {
                path: name.to_path_buf(),
                source,
            })?;
        let zip = zip::ZipArchive::new(reader).map_err(|e| InputError::NotZip {
            path: name.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut bundle = Bundle::empty(name, Source::Zip(Box::new(zip)), limits);
        bundle.shape = Shape::Zip;
        bundle.zip_len = Some(zip_len);
        bundle.scan_zip()?;
        Ok(bundle)
    }

    /// Opens loose files (a folder of CSVs with their manifest); `name` is what messages call it.
    pub fn from_loose(
        name: &Path,
        files: Box<dyn LooseFiles>,
        limits: &Limits,
    ) -> Result<Bundle, InputError> {
        let mut bundle = Bundle::empty(name, Source::Loose(files), limits);
        bundle.scan_loose()?;
        Ok(bundle)
    }

    fn empty(name: &Path, source: Source, limits: &Limits) -> Bundle {
        Bundle {
            path: name.to_path_buf(),
            shape: Shape::Folder,
            source,
            manifest: None,
            files: BTreeMap::new(),
            exact: std::collections::BTreeSet::new(),
            names: Vec::new(),
            findings: Vec::new(),
            limits: limits.clone(),
            expanded: 0,
            charged: std::collections::HashSet::new(),
            digests: Arc::default(),
            zip_len: None,
        }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// What the bundle is called in messages.
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

    /// The size of a data file as far as it may be believed when reserving memory: a zip's header says what
    /// its sender wrote there, so it is held to [`BELIEVED_RATIO`] times the zip's own length.
    pub fn size_hint(&self, kind: FileKind) -> Option<u64> {
        let size = self.size(kind)?;
        Some(match self.zip_len {
            Some(len) => size.min(len.saturating_mul(BELIEVED_RATIO)),
            None => size,
        })
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
                path: path.clone(),
                entry: "manifest.csv".into(),
                source,
            })?;
        if bytes.len() < MANIFEST_LIMIT {
            // Read to its end: one more read tells the digest so.
            let _ = reader
                .read(&mut [0u8; 1])
                .map_err(|source| InputError::Entry {
                    path,
                    entry: "manifest.csv".into(),
                    source,
                })?;
        }
        Ok(Some(bytes))
    }

    /// A fingerprint of the bundle's content: every name it holds, and the manifest and every data file by name
    /// and bytes. The same files give the same digest however they were packed (zip or folder, nested or not);
    /// a misnamed or duplicated file gives another. Files the validation pass read to their end are not read
    /// again.
    pub fn digest(&mut self) -> Result<u128, InputError> {
        let mut entries: Vec<Entry> = self.manifest.iter().cloned().collect();
        entries.extend(self.files.values().cloned());
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for name in &self.names {
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
        }
        hasher.update(&[0]);
        for entry in entries {
            let known = self.lock_digests().get(&entry.name).map(|(d, _)| *d);
            let digest = match known {
                Some(d) => d,
                None => self.read_digest(&entry)?,
            };
            hasher.update(entry.name.as_bytes());
            hasher.update(&[0]);
            hasher.update(&digest.to_le_bytes());
        }
        Ok(hasher.digest128())
    }

    /// A finding when a zip entry read to its end held another number of bytes than its header declared: the
    /// header lied (or the zip is damaged), and nothing sized from it can be trusted.
    pub fn size_mismatch(&self, kind: Option<FileKind>) -> Option<Finding> {
        if self.shape != Shape::Zip {
            return None;
        }
        let entry = match kind {
            Some(kind) => self.files.get(&kind)?,
            None => self.manifest.as_ref()?,
        };
        let (_, held) = *self.lock_digests().get(&entry.name)?;
        (held != entry.size).then(|| {
            Finding::error(
                Code::InputSizeMismatch,
                format!(
                    "the zip's header says {} holds {} bytes, but it holds {held}",
                    entry.name, entry.size
                ),
            )
            .file(entry.name.clone())
            .hint("the zip is damaged or was altered: make it again from the files")
        })
    }

    fn lock_digests(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u128, u64)>> {
        // A poisoned lock only means a reader thread panicked mid-file; the digests it holds are still whole.
        self.digests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_digest(&mut self, entry: &Entry) -> Result<u128, InputError> {
        let path = self.path.clone();
        let name = entry.name.clone();
        let mut stream = self.open_entry(entry, &name)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = stream.read(&mut buf).map_err(|source| InputError::Entry {
                path: path.clone(),
                entry: name.clone(),
                source,
            })?;
            if n == 0 {
                break;
            }
        }
        drop(stream);
        self.lock_digests()
            .get(&name)
            .map(|(d, _)| *d)
            .ok_or_else(|| InputError::Entry {
                path,
                entry: name,
                source: io::Error::other("its digest was not recorded"),
            })
    }

    /// The OneRoster files of the bundle under their canonical names (`manifest.csv` first): what a kept copy
    /// of it holds.
    pub fn roster_files(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        if self.manifest.is_some() {
            names.push("manifest.csv");
        }
        names.extend(self.files.keys().map(|k| k.file_name()));
        names
    }

    /// A byte stream of one OneRoster file by its canonical name (see [`Bundle::roster_files`]).
    pub fn open_roster_file(
        &mut self,
        name: &str,
    ) -> Result<Box<dyn Read + Send + '_>, InputError> {
        if name == "manifest.csv" {
            let entry = self
                .manifest
                .clone()
                .ok_or_else(|| self.not_in_bundle(name))?;
            return self.open_entry(&entry, name);
        }
        let kind = FileKind::from_file_name(name).ok_or_else(|| self.not_in_bundle(name))?;
        self.open_file(kind)
    }

    fn not_in_bundle(&self, name: &str) -> InputError {
        InputError::Entry {
            path: self.path.clone(),
            entry: name.into(),
            source: io::Error::new(io::ErrorKind::NotFound, "not in the bundle"),
        }
    }

    /// A byte stream of one data file.
    pub fn open_file(&mut self, kind: FileKind) -> Result<Box<dyn Read + Send + '_>, InputError> {
        let entry = self
            .files
            .get(&kind)
            .cloned()
            .ok_or_else(|| self.not_in_bundle(kind.file_name()))?;
        self.open_entry(&entry, kind.file_name())
    }

    fn open_entry(
        &mut self,
        entry: &Entry,
        name: &str,
    ) -> Result<Box<dyn Read + Send + '_>, InputError> {
        let path = self.path.clone();
        let entry_error = |source: io::Error| InputError::Entry {
            path: path.clone(),
            entry: name.into(),
            source,
        };
        let digest = |inner| Digesting {
            inner,
            hasher: Some(xxhash_rust::xxh3::Xxh3::new()),
            read: 0,
            name: entry.name.clone(),
            done: Arc::clone(&self.digests),
        };
        match (&entry.location, &mut self.source) {
            (Location::Loose(p), Source::Loose(files)) => {
                let stream = files.open(p).map_err(entry_error)?;
                Ok(Box::new(digest(stream)))
            }
            (Location::Zip(index), Source::Zip(zip)) => {
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
                let file = zip
                    .by_index(*index)
                    .map_err(|e| entry_error(io::Error::other(e.to_string())))?;
                let bounded: Box<dyn Read + Send + '_> = Box::new(Bounded {
                    inner: file,
                    left: declared.min(budget),
                    declared,
                    name: name.to_string(),
                });
                Ok(Box::new(digest(bounded)))
            }
            _ => Err(InputError::NotBundle { path: path.clone() }),
        }
    }

    fn scan_loose(&mut self) -> Result<(), InputError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InputError::Io { path, source }
        };
        let Source::Loose(files) = &self.source else {
            return Err(InputError::NotBundle {
                path: self.path.clone(),
            });
        };
        let names = files.list("").map_err(io_err(&self.path))?;
        let root_has_csv = names
            .iter()
            .any(|l| l.kind == EntryKind::File && is_csv(&l.name));
        let mut folder = String::new();
        let mut listed = names;
        if !root_has_csv {
            let dirs: Vec<_> = listed
                .iter()
                .filter(|l| l.kind == EntryKind::Folder && !ignorable(&l.name))
                .collect();
            if let [only] = dirs.as_slice() {
                let inner = files
                    .list(&only.name)
                    .map_err(io_err(&self.path.join(&only.name)))?;
                if inner
                    .iter()
                    .any(|l| l.kind == EntryKind::File && is_csv(&l.name))
                {
                    self.findings.push(nested_folder_finding(&only.name));
                    folder = format!("{}/", only.name);
                    listed = inner;
                }
            }
        }
        for item in listed {
            match item.kind {
                EntryKind::File => self.place(
                    &item.name,
                    Location::Loose(format!("{folder}{}", item.name)),
                    item.size,
                ),
                EntryKind::Special(what) if !ignorable(&item.name) => {
                    self.names.push(item.name.clone());
                    self.findings.push(not_regular_finding(&item.name, what));
                }
                EntryKind::Special(_) | EntryKind::Folder => {}
            }
        }
        Ok(())
    }

    fn scan_zip(&mut self) -> Result<(), InputError> {
        let Source::Zip(zip) = &mut self.source else {
            return Err(InputError::NotBundle {
                path: self.path.clone(),
            });
        };
        if zip.len() > self.limits.max_zip_entries {
            return Err(InputError::TooManyEntries {
                path: self.path.clone(),
                entries: zip.len(),
                limit: self.limits.max_zip_entries,
            });
        }
        let duplicate_names = zip.has_duplicate_names();
        let mut listed = Vec::new();
        let mut unsafe_names = Vec::new();
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
                unsafe_names.push(raw_name);
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
        if duplicate_names {
            self.findings.push(
                Finding::error(
                    Code::InputDuplicateFile,
                    "the zip holds two entries with the same name; only one of them can be read",
                )
                .hint("zip each file once"),
            );
        }
        for raw_name in unsafe_names {
            self.names.push(raw_name.clone());
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
        }
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

    fn open_single(&mut self, name: &str, size: u64) -> Result<(), InputError> {
        let kind = FileKind::from_file_name(name)
            .or_else(|| FileKind::from_file_name_ignore_case(name))
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
        self.names.push(name.to_string());
        self.files.insert(
            kind,
            Entry {
                name: name.to_string(),
                location: Location::Loose(name.to_string()),
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
        self.names.push(name.to_string());
        let entry = Entry {
            name: name.to_string(),
            location,
            size,
        };
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

/// A stream that adds the file to its bundle's digest once it has been read to its end.
struct Digesting<R> {
    inner: R,
    hasher: Option<xxhash_rust::xxh3::Xxh3>,
    name: String,
    /// Bytes read so far.
    read: u64,
    done: Arc<Mutex<BTreeMap<String, (u128, u64)>>>,
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            self.read += n as u64;
        } else if !buf.is_empty()
            && let Some(h) = self.hasher.take()
        {
            let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            done.insert(self.name.clone(), (h.digest128(), self.read));
        }
        Ok(n)
    }
}

fn not_regular_finding(name: &str, what: &str) -> Finding {
    Finding::error(
        Code::InputNotRegular,
        format!("{name} is {what}, not a regular file; it was not read"),
    )
    .file(name.to_string())
    .value(name.as_bytes())
    .hint("put the CSV file itself in the bundle, not a link or a pipe to it")
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

fn is_csv(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".csv")
}

/// Operating-system litter that zips and folders pick up; never worth a finding.
fn ignorable(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name.starts_with("__MACOSX") || base.starts_with('.') || base.is_empty() || base == "Thumbs.db"
}
