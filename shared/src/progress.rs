//! Progress reporting while long files are read. The library only calls this trait; the command draws a bar.

/// Receives progress while a bundle is read.
pub trait Progress {
    /// A file starts; `bytes` is its (uncompressed) size when known.
    fn file_started(&self, _file: &str, _bytes: Option<u64>) {}
    /// `bytes` of the current file have been read so far.
    fn advanced(&self, _bytes: u64) {}
    /// The current file is done.
    fn file_finished(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
