//! Checks one record written by hand (an edit, a create) with the validator itself, so a record rollcall
//! writes by hand is never one a sync would have rejected. The record becomes the first row of its file in a
//! small bulk bundle held in memory; the records it refers to, as the roster holds them, fill the files they
//! live in. The validator reads that bundle like any other, and the findings on the record's row are the
//! record's: the same codes, messages and hints a district sees for a bundle's row.

use super::finding::{Finding, Severity};
use super::validate_bundle;
use crate::Limits;
use crate::csvout::push_row;
use crate::model::{Entity, Record};
use crate::progress::NoProgress;
use crate::read::bundle::{Bundle, EntryKind, InputError, Listed, LooseFiles};
use crate::spec::{ColumnType, FileKind};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

/// The line the record's row is on in its file (the header is line 1).
const ROW_LINE: u64 = 2;

/// The records `record` refers to, by entity and sourcedId, as its reference columns name them (each once).
pub fn references(record: &Record) -> Vec<(Entity, String)> {
    let kind = record.entity.file_kind();
    let mut out: Vec<(Entity, String)> = Vec::new();
    let mut add = |target: FileKind, id: &str| {
        let id = id.trim();
        if let Some(entity) = entity_of(target)
            && !id.is_empty()
            && !(entity == record.entity && id == record.sourced_id)
            && !out.iter().any(|(e, i)| *e == entity && i == id)
        {
            out.push((entity, id.to_string()));
        }
    };
    if kind == FileKind::Demographics {
        // A demographics record describes the user with its sourcedId.
        add(FileKind::Users, &record.sourced_id);
    }
    for column in kind.columns() {
        let Some(value) = record.fields.get(column.name) else {
            continue;
        };
        match column.ty {
            ColumnType::Ref(target) => add(target, value),
            ColumnType::SchoolRef => add(FileKind::Orgs, value),
            ColumnType::RefList(target) => value.split(',').for_each(|id| add(target, id)),
            _ => {}
        }
    }
    out
}

/// The validator's findings on `record` (errors and warnings), given the records it refers to as the roster
/// holds them (`referenced`; any it names that are missing are dangling references). An error means the
/// bundle held in memory could not be read, which is rollcall's fault, not the record's.
pub fn check(record: &Record, referenced: &[Record]) -> Result<Vec<Finding>, InputError> {
    let kind = record.entity.file_kind();
    let mut rows: BTreeMap<FileKind, Vec<&Record>> = BTreeMap::new();
    rows.entry(kind).or_default().push(record);
    // Every file a reference column points into is in the bundle (if only as its header), so a reference
    // that finds nothing is a missing record, never a missing file.
    for column in kind.columns() {
        if let ColumnType::Ref(target) | ColumnType::RefList(target) = column.ty {
            rows.entry(target).or_default();
        } else if column.ty == ColumnType::SchoolRef {
            rows.entry(FileKind::Orgs).or_default();
        }
    }
    if kind == FileKind::Demographics {
        rows.entry(FileKind::Users).or_default();
    }
    for other in referenced {
        let same = other.entity == record.entity && other.sourced_id == record.sourced_id;
        if !same {
            rows.entry(other.entity.file_kind())
                .or_default()
                .push(other);
        }
    }
    let mut files = BTreeMap::new();
    let mut manifest =
        String::from("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n");
    for file in FileKind::DEPENDENCY_ORDER {
        let mode = if rows.contains_key(&file) {
            "bulk"
        } else {
            "absent"
        };
        manifest.push_str(&format!("file.{},{mode}\n", file.name()));
    }
    files.insert("manifest.csv".to_string(), manifest.into_bytes());
    for (file, records) in &rows {
        files.insert(file.file_name().to_string(), csv_of(*file, records));
    }
    let name = Path::new("(the record)");
    let limits = Limits::default();
    let mut bundle = Bundle::from_loose(name, Box::new(InMemory(files)), &limits)?;
    let report = validate_bundle(&mut bundle, &limits, &NoProgress)?;
    Ok(report
        .findings
        .into_iter()
        .filter(|f| f.file.as_deref() == Some(kind.file_name()) && f.line == Some(ROW_LINE))
        .collect())
}

/// Only the errors of [`check`]: what refuses the record.
pub fn errors(record: &Record, referenced: &[Record]) -> Result<Vec<Finding>, InputError> {
    let mut found = check(record, referenced)?;
    found.retain(|f| f.severity == Severity::Error);
    Ok(found)
}

/// The entity a OneRoster file holds, for the files rollcall keeps.
fn entity_of(kind: FileKind) -> Option<Entity> {
    Entity::ALL.into_iter().find(|e| e.file_kind() == kind)
}

/// A file of `kind` holding `records` as the roster has them: every spec column, then the `metadata.*`
/// columns any of them has. `status` and `dateLastModified` stay blank (a bulk file).
fn csv_of(kind: FileKind, records: &[&Record]) -> Vec<u8> {
    let columns = kind.columns();
    let mut metadata: Vec<&str> = records
        .iter()
        .flat_map(|r| r.fields.keys())
        .map(String::as_str)
        .filter(|k| k.starts_with("metadata."))
        .collect();
    metadata.sort_unstable();
    metadata.dedup();
    let header: Vec<&str> = columns
        .iter()
        .map(|c| c.name)
        .chain(metadata.iter().copied())
        .collect();
    let mut out = String::new();
    push_row(&mut out, header.iter().copied());
    for record in records {
        let values = header.iter().enumerate().map(|(i, name)| match i {
            0 => record.sourced_id.as_str(),
            1 | 2 => "",
            _ => record.fields.get(*name).map_or("", String::as_str),
        });
        push_row(&mut out, values);
    }
    out.into_bytes()
}

/// Files held in memory, read as loose files.
struct InMemory(BTreeMap<String, Vec<u8>>);

impl LooseFiles for InMemory {
    fn list(&self, folder: &str) -> io::Result<Vec<Listed>> {
        if !folder.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .iter()
            .map(|(name, bytes)| Listed {
                name: name.clone(),
                size: bytes.len() as u64,
                kind: EntryKind::File,
            })
            .collect())
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        match self.0.get(path) {
            Some(bytes) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, path.to_string())),
        }
    }
}
