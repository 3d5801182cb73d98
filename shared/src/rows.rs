//! Rows of a validated bundle by column name, for planning. Streams one file at a time with the same reader
//! the validator uses; only the row at hand is held.

use crate::csvread::{Next, RecordReader};
use crate::input::{Bundle, InputError};
use crate::limits::Limits;
use crate::spec::FileKind;
use std::collections::BTreeMap;

/// One data row: its sourcedId, whether it deletes, and its other non-blank values by column name.
pub struct Row {
    pub line: u64,
    pub sourced_id: String,
    /// `status` is `tobedeleted` (or the 1.0 `inactive`).
    pub deleting: bool,
    /// Non-blank values, without `sourcedId`, `status` and `dateLastModified`.
    pub fields: BTreeMap<String, String>,
}

/// Calls `each` for every row of one file of the bundle, in file order.
pub fn for_each_row<E: From<InputError>>(
    bundle: &mut Bundle,
    kind: FileKind,
    limits: &Limits,
    mut each: impl FnMut(Row) -> Result<(), E>,
) -> Result<(), E> {
    let path = bundle.path().to_path_buf();
    let read_error = |source| InputError::Entry {
        path: path.clone(),
        entry: kind.file_name().to_string(),
        source,
    };
    let stream = bundle.open_file(kind)?;
    let mut reader = RecordReader::new(stream, limits.max_record_bytes, limits.max_columns);
    let header: Vec<String> = match reader.next_record().map_err(read_error)? {
        Next::Record { .. } => (0..reader.len())
            .map(|i| String::from_utf8_lossy(reader.field(i)).into_owned())
            .collect(),
        _ => return Ok(()),
    };
    let position = |name: &str| header.iter().position(|h| h == name);
    let (id_at, status_at) = (position("sourcedId"), position("status"));
    loop {
        match reader.next_record().map_err(read_error)? {
            Next::Record { line } => {
                let text = |i: usize| String::from_utf8_lossy(reader.field(i)).into_owned();
                let mut fields = BTreeMap::new();
                for (i, name) in header.iter().enumerate() {
                    if matches!(name.as_str(), "sourcedId" | "status" | "dateLastModified") {
                        continue;
                    }
                    let value = reader.field(i);
                    if !value.is_empty() {
                        fields.insert(name.clone(), text(i));
                    }
                }
                let status = status_at.map(|i| reader.field(i)).unwrap_or_default();
                each(Row {
                    line,
                    sourced_id: id_at.map(text).unwrap_or_default(),
                    deleting: status == b"tobedeleted" || status == b"inactive",
                    fields,
                })?;
            }
            Next::TooLong { .. } | Next::TooManyFields { .. } => {}
            Next::End => return Ok(()),
        }
    }
}
