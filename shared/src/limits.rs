//! Limits that keep hostile or broken input from using unbounded memory or time. Each has a sane default and
//! can be raised (the `rollcall` command has a flag for each).

/// Bounds applied while a bundle is opened and read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total uncompressed bytes a zip may expand to.
    pub max_uncompressed_bytes: u64,
    /// Largest uncompressed/compressed ratio for a zip entry over 1 MiB.
    pub max_compression_ratio: u64,
    /// Most entries a zip may hold.
    pub max_zip_entries: usize,
    /// Longest single field, in bytes.
    pub max_field_bytes: usize,
    /// Longest row (all its fields together), in bytes.
    pub max_record_bytes: usize,
    /// Most fields in a header or row.
    pub max_columns: usize,
    /// Most findings kept in a report; past it findings are counted, not listed.
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_uncompressed_bytes: 32 << 30,
            max_compression_ratio: 200,
            max_zip_entries: 1_000,
            max_field_bytes: 64 << 10,
            max_record_bytes: 1 << 20,
            max_columns: 1_000,
            max_findings: 1_000_000,
        }
    }
}

/// Entries smaller than this are never judged by their compression ratio (a tiny file compresses oddly well).
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;
