//! OneRoster 1.1 REST JSON to the CSV binding's rows, faithfully: GUIDRefs (`{"sourcedId": ...}`, or only an
//! `href`, relative or not) to sourcedIds, arrays to comma lists, `userIds` to `{type:identifier}` items,
//! booleans and the strings servers send for them (`"false"`, `"TRUE"`) to `true`/`false`, `null` to blank,
//! numbers as written, and `metadata` kept as `metadata.*` columns.

use crate::spec::{ColumnType, FileKind, Mode};
use serde_json::{Map, Value};

/// One record as a CSV row: the spec columns in spec order, then its `metadata.*` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub values: Vec<String>,
    pub metadata: Vec<(String, String)>,
}

/// Where a CSV column's value lives in the JSON object: the same name, or for references the name without
/// `SourcedId` (`courseSourcedId` → `course`), plural for lists (`orgSourcedIds` → `orgs`).
fn json_names(column: &str) -> Vec<String> {
    let mut names = vec![column.to_string()];
    if let Some(stem) = column.strip_suffix("SourcedIds") {
        names.push(format!("{stem}s"));
    } else if let Some(stem) = column.strip_suffix("SourcedId") {
        names.push(stem.to_string());
    }
    names
}

/// The sourcedId a GUIDRef names: its `sourcedId`, else the last segment of its `href`.
fn guid_ref(v: &Value) -> String {
    match v {
        Value::Object(o) => match o.get("sourcedId") {
            Some(Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => scalar(other),
            _ => o
                .get("href")
                .and_then(Value::as_str)
                .and_then(|h| h.trim_end_matches('/').rsplit('/').next())
                .unwrap_or("")
                .to_string(),
        },
        other => scalar(other),
    }
}

/// A plain value as text.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Object(_) => guid_ref(v),
    }
}

fn boolean(v: &Value) -> String {
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "t" || s == "1" => "true".into(),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "f" || s == "0" => {
            "false".into()
        }
        Value::Number(n) if n.as_u64() == Some(1) => "true".into(),
        Value::Number(n) if n.as_u64() == Some(0) => "false".into(),
        other => scalar(other),
    }
}

fn user_ids(v: &Value) -> String {
    let one = |item: &Value| match item {
        Value::Object(o) => format!(
            "{{{}:{}}}",
            o.get("type").map(scalar).unwrap_or_default(),
            o.get("identifier").map(scalar).unwrap_or_default()
        ),
        other => scalar(other),
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => one(other),
    }
}

/// A CSV field's text for a JSON value of a column of type `ty`.
fn field(ty: ColumnType, v: &Value) -> String {
    match ty {
        ColumnType::Bool => boolean(v),
        ColumnType::UserIds => user_ids(v),
        ColumnType::Ref(_) | ColumnType::SchoolRef => guid_ref(v),
        ColumnType::RefList(_) => match v {
            Value::Array(items) => items.iter().map(guid_ref).collect::<Vec<_>>().join(","),
            other => guid_ref(other),
        },
        _ => scalar(v),
    }
}

/// The row of one REST record for a file of `kind` in a bundle of `mode`. A bulk file has no `status` or
/// `dateLastModified` and leaves out records marked `tobedeleted` (they are not in the roster); a delta file
/// keeps both columns and every record. `None` for a record a bulk file leaves out.
pub fn row(kind: FileKind, object: &Map<String, Value>, mode: Mode) -> Option<Row> {
    let status = object.get("status").map(scalar).unwrap_or_default();
    if mode == Mode::Bulk && status.eq_ignore_ascii_case("tobedeleted") {
        return None;
    }
    let values = kind
        .columns()
        .iter()
        .enumerate()
        .map(|(pos, column)| match (pos, mode) {
            (1 | 2, Mode::Bulk) => String::new(),
            _ => json_names(column.name)
                .iter()
                .find_map(|name| object.get(name))
                .map(|v| field(column.ty, v))
                .unwrap_or_default(),
        })
        .collect();
    let mut metadata: Vec<(String, String)> = match object.get("metadata") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (format!("metadata.{k}"), scalar(v)))
            .collect(),
        _ => Vec::new(),
    };
    metadata.sort();
    Some(Row { values, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn a_user_comes_out_as_its_csv_row() {
        let user = object(
            r#"{"sourcedId":"tch-2","status":"active","dateLastModified":"2026-11-30T10:00:00.000Z",
                "enabledUser":"false","orgs":[{"href":"~/ims/oneroster/v1p1/orgs/sch-1","sourcedId":"sch-1","type":"org"},
                {"href":"/ims/oneroster/v1p1/orgs/sch-2","type":"org"}],
                "role":"teacher","username":"ben.okafor",
                "userIds":[{"type":"LDAP","identifier":"ben.okafor"},{"type":"ClassLink","identifier":"4512"}],
                "givenName":"Ben","familyName":"Okafor","middleName":null,"identifier":"T002",
                "email":"ben.okafor@mv.example.org","agents":[],"grades":["09","10"],
                "metadata":{"classlink.id":4512}}"#,
        );
        let bulk = row(FileKind::Users, &user, Mode::Bulk).expect("row");
        assert_eq!(
            bulk.values,
            [
                "tch-2",
                "",
                "",
                "false",
                "sch-1,sch-2",
                "teacher",
                "ben.okafor",
                "{LDAP:ben.okafor},{ClassLink:4512}",
                "Ben",
                "Okafor",
                "",
                "T002",
                "ben.okafor@mv.example.org",
                "",
                "",
                "",
                "09,10",
                ""
            ]
        );
        assert_eq!(
            bulk.metadata,
            [("metadata.classlink.id".to_string(), "4512".to_string())]
        );
        let delta = row(FileKind::Users, &user, Mode::Delta).expect("row");
        assert_eq!(delta.values[1..3], ["active", "2026-11-30T10:00:00.000Z"]);
    }

    #[test]
    fn a_record_to_be_deleted_is_left_out_of_bulk_and_kept_in_delta() {
        let gone = object(
            r#"{"sourcedId":"cls-9","status":"tobedeleted","dateLastModified":"2026-11-30T10:00:00Z"}"#,
        );
        assert_eq!(row(FileKind::Classes, &gone, Mode::Bulk), None);
        let kept = row(FileKind::Classes, &gone, Mode::Delta).expect("kept");
        assert_eq!(
            kept.values[..3],
            ["cls-9", "tobedeleted", "2026-11-30T10:00:00Z"]
        );
    }

    #[test]
    fn a_class_takes_its_course_school_and_terms_from_guid_refs() {
        let class = object(
            r#"{"sourcedId":"cls-2","title":"Biology - P2","grades":["09","10"],
                "course":{"sourcedId":"crs-2"},"classCode":"BIO2","classType":"scheduled","location":"Lab 2",
                "school":{"sourcedId":"sch-2"},"terms":[{"sourcedId":"s1-2027"},{"sourcedId":"sy-2027"}],
                "subjects":["Science"],"subjectCodes":["03051"],"periods":["2","3"]}"#,
        );
        let r = row(FileKind::Classes, &class, Mode::Bulk).expect("row");
        assert_eq!(
            r.values,
            [
                "cls-2",
                "",
                "",
                "Biology - P2",
                "09,10",
                "crs-2",
                "BIO2",
                "scheduled",
                "Lab 2",
                "sch-2",
                "s1-2027,sy-2027",
                "Science",
                "03051",
                "2,3"
            ]
        );
    }
}
