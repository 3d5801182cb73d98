//! The local blob store: one folder, a key's slashes its subfolders. Writes go to a temporary file renamed into
//! place, so a reader never sees half a blob.

use super::{BlobEntry, BlobError, BlobResult, BlobStore, check_key};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A folder of blobs.
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created when first written). A relative root is made absolute now, so the store
    /// finds the same blobs whatever the working folder is later.
    pub fn new(root: &Path) -> LocalBlobs {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        LocalBlobs { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a key is stored in.
    pub fn path_of(&self, key: &str) -> BlobResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn write_with(
        &self,
        key: &str,
        fill: impl FnOnce(&mut File) -> io::Result<u64>,
    ) -> BlobResult<u64> {
        let path = self.path_of(key)?;
        let failed = |e: io::Error| backend("writing", key, e);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(failed)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.{}.part", std::process::id()));
        let mut file = File::create(&temp).map_err(failed)?;
        let written = fill(&mut file).and_then(|n| file.flush().map(|()| n));
        let written = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(failed(e));
            }
        };
        drop(file);
        fs::rename(&temp, &path).map_err(failed)?;
        Ok(written)
    }
}

fn backend(doing: &'static str, key: &str, e: io::Error) -> BlobError {
    BlobError::Backend {
        doing,
        key: key.to_string(),
        reason: e.to_string(),
    }
}

impl BlobStore for LocalBlobs {
    fn put(&self, key: &str, bytes: &[u8]) -> BlobResult<()> {
        self.write_with(key, |f| f.write_all(bytes).map(|()| bytes.len() as u64))
            .map(|_| ())
    }

    fn put_from(&self, key: &str, reader: &mut dyn Read) -> BlobResult<u64> {
        self.write_with(key, |f| io::copy(reader, f))
    }

    fn get(&self, key: &str) -> BlobResult<Option<Vec<u8>>> {
        match fs::read(self.path_of(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend("reading", key, e)),
        }
    }

    fn open(&self, key: &str) -> BlobResult<Option<Box<dyn Read + Send>>> {
        match File::open(self.path_of(key)?) {
            Ok(file) => Ok(Some(Box::new(io::BufReader::new(file)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend("reading", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> BlobResult<Vec<BlobEntry>> {
        // Walk the deepest folder the prefix names, then filter by the whole prefix.
        let folder = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let start = if folder.is_empty() {
            self.root.clone()
        } else {
            self.path_of(folder)?
        };
        let mut found = Vec::new();
        walk(&start, folder, &mut found).map_err(|e| backend("listing", prefix, e))?;
        found.retain(|b| b.key.starts_with(prefix));
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn delete_prefix(&self, prefix: &str) -> BlobResult<()> {
        for blob in self.list(prefix)? {
            let path = self.path_of(&blob.key)?;
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(backend("deleting", &blob.key, e)),
            }
            // Empty folders left behind go too, up to the root.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != self.root) {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(())
    }
}

fn walk(dir: &Path, key_prefix: &str, found: &mut Vec<BlobEntry>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // Temporary files of writes in progress.
            continue;
        }
        let key = if key_prefix.is_empty() {
            name
        } else {
            format!("{key_prefix}/{name}")
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&entry.path(), &key, found)?;
        } else if file_type.is_file() {
            found.push(BlobEntry {
                key,
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_listed_read_and_deleted_by_prefix() {
        let dir = tempfile::tempdir().expect("temp");
        let blobs = LocalBlobs::new(dir.path());
        blobs.put("staged/t1/b1/plan.json", b"{}").expect("put");
        blobs
            .put_from("staged/t1/b1/chunk-1", &mut &b"abc"[..])
            .expect("put_from");
        blobs.put("staged/t1/b2/plan.json", b"[]").expect("put");
        let keys: Vec<String> = blobs
            .list("staged/t1/b1/")
            .expect("list")
            .into_iter()
            .map(|b| b.key)
            .collect();
        assert_eq!(keys, ["staged/t1/b1/chunk-1", "staged/t1/b1/plan.json"]);
        assert_eq!(
            blobs.get("staged/t1/b1/chunk-1").expect("get"),
            Some(b"abc".to_vec())
        );
        assert_eq!(blobs.get("staged/t1/none").expect("get"), None);
        blobs.delete_prefix("staged/t1/b1/").expect("delete");
        assert!(blobs.list("staged/t1/b1/").expect("list").is_empty());
        assert_eq!(blobs.list("staged/").expect("list").len(), 1);
        assert!(
            !dir.path().join("staged/t1/b1").exists(),
            "empty folders go"
        );
        assert!(blobs.put("../outside", b"x").is_err());
    }
}
