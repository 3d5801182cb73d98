//! Rows of a validated bundle by column name, for planning. Streams one file at a time with the same reader
//! the validator uses; only the row at hand is held, and a row's values are copied out only for records that
//! are written (an unchanged record is recognised by its hash, computed in place).

use crate::limits::Limits;
use crate::progress::Progress;
use crate::read::bundle::{Bundle, InputError};
use crate::read::csvread::{Next, RecordReader};
use crate::spec::FileKind;
use std::collections::BTreeMap;
use std::io::Read;

/// The columns of a file, resolved once.
struct Columns {
    names: Vec<String>,
    id: Option<usize>,
    status: Option<usize>,
    /// Value columns (all but sourcedId, status, dateLastModified) in name order, as hashing wants them.
    values: Vec<usize>,
}

/// Field access to the record a reader holds, whatever it reads from.
trait Fields {
    fn field(&self, i: usize) -> &[u8];
}

impl<R: Read> Fields for RecordReader<R> {
    fn field(&self, i: usize) -> &[u8] {
        RecordReader::field(self, i)
    }
}

/// One data row, read in place.
pub struct Row<'a> {
    pub line: u64,
    columns: &'a Columns,
    reader: &'a dyn Fields,
}

impl Row<'_> {
    fn text(&self, i: usize) -> &str {
        std::str::from_utf8(self.reader.field(i)).unwrap_or("")
    }

    pub fn sourced_id(&self) -> &str {
        self.columns.id.map_or("", |i| self.text(i))
    }

    /// `status` is `tobedeleted` (or the 1.0 `inactive`).
    pub fn deleting(&self) -> bool {
        matches!(
            self.columns.status.map(|i| self.reader.field(i)),
            Some(b"tobedeleted" | b"inactive")
        )
    }

    /// A non-blank value by column name.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.columns.names.iter().position(|n| n == name)?;
        Some(self.text(i)).filter(|v| !v.is_empty())
    }

    /// The non-blank values by column name (without sourcedId, status and dateLastModified).
    pub fn fields(&self) -> BTreeMap<String, String> {
        self.columns
            .values
            .iter()
            .filter(|&&i| !self.reader.field(i).is_empty())
            .map(|&i| (self.columns.names[i].clone(), self.text(i).to_string()))
            .collect()
    }

    /// The non-blank values as a map for serializing, borrowed from the row (nothing is copied).
    pub fn values(&self) -> RowValues<'_> {
        RowValues(self)
    }

    /// The same hash as [`crate::model::content_hash`] of [`Row::fields`], without building them.
    pub fn hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for &i in &self.columns.values {
            let value = self.reader.field(i);
            if value.is_empty() {
                continue;
            }
            h.update(self.columns.names[i].as_bytes());
            h.update(&[0]);
            h.update(value);
            h.update(&[0]);
        }
        h.digest()
    }
}

/// A row's non-blank values, serialized as a map in column-name order (the same order and content as
/// [`Row::fields`]) straight from the row.
pub struct RowValues<'r>(&'r Row<'r>);

impl serde::Serialize for RowValues<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let row = self.0;
        let mut map = serializer.serialize_map(None)?;
        for &i in &row.columns.values {
            if !row.reader.field(i).is_empty() {
                map.serialize_entry(&row.columns.names[i], row.text(i))?;
            }
        }
        map.end()
    }
}

/// Calls `each` for every row of one file of the bundle, in file order.
pub fn for_each_row<E: From<InputError>>(
    bundle: &mut Bundle,
    kind: FileKind,
    limits: &Limits,
    progress: &dyn Progress,
    mut each: impl FnMut(&Row<'_>) -> Result<(), E>,
) -> Result<(), E> {
    progress.file_started(kind.file_name(), bundle.size(kind));
    let result = read_rows(bundle, kind, limits, progress, &mut each);
    progress.file_finished();
    result
}

fn read_rows<E: From<InputError>>(
    bundle: &mut Bundle,
    kind: FileKind,
    limits: &Limits,
    progress: &dyn Progress,
    each: &mut impl FnMut(&Row<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let path = bundle.path().to_path_buf();
    let read_error = |source| InputError::Entry {
        path: path.clone(),
        entry: kind.file_name().to_string(),
        source,
    };
    let stream = bundle.open_file(kind)?;
    let mut reader = RecordReader::new(stream, limits.max_record_bytes, limits.max_columns);
    let names: Vec<String> = match reader.next_record().map_err(read_error)? {
        Next::Record { .. } => (0..reader.len())
            .map(|i| String::from_utf8_lossy(reader.field(i)).into_owned())
            .collect(),
        _ => return Ok(()),
    };
    let position = |name: &str| names.iter().position(|h| h == name);
    let mut values: Vec<usize> = (0..names.len())
        .filter(|&i| {
            !matches!(
                names[i].as_str(),
                "sourcedId" | "status" | "dateLastModified"
            )
        })
        .collect();
    values.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let columns = Columns {
        id: position("sourcedId"),
        status: position("status"),
        values,
        names,
    };
    let mut rows: u64 = 0;
    loop {
        rows += 1;
        if rows.is_multiple_of(65_536) {
            progress.advanced(reader.bytes_read());
        }
        match reader.next_record().map_err(read_error)? {
            Next::Record { line } => each(&Row {
                line,
                columns: &columns,
                reader: &reader,
            })?,
            Next::TooLong { .. } | Next::TooManyFields { .. } => {}
            Next::End => return Ok(()),
        }
    }
}
