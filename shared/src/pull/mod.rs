//! Pulling a roster from a district's OneRoster 1.1 REST API into a bundle on disk, which then enters the
//! same validate → plan → guard → apply path as an upload. Each endpoint is read page by page (limit/offset,
//! stable `sort=sourcedId`, the server's `Link: rel="next"` when it gives one) and written as it comes, so a
//! million-user pull never holds its rows in memory. Paging is checked as it goes: a page without its envelope
//! key is an error (never an empty roster), an id seen twice means the server shifted under the paging, and
//! `X-Total-Count` cross-checks the rows read. A delta pull asks only for what changed since the tenant's
//! cursor; the cursor moves only when the pulled batch is applied.

pub mod convert;
pub mod http;
pub mod oauth;
pub mod source;

use crate::csvout::push_row;
use crate::model::iso_time;
use crate::spec::{FileKind, Mode};
use http::{Answer, Client, HttpError};
use serde::Serialize;
use serde_json::Value;
use source::ApiSource;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One collection a pull reads.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub path: &'static str,
    pub kind: FileKind,
    /// The envelope keys its records may come under (the spec's first, then spellings servers use).
    pub keys: &'static [&'static str],
    /// Whether a pull fails without it (demographics is left out, with a warning, by servers that lack it).
    pub required: bool,
}

/// The endpoints a pull reads, parents first.
pub const ENDPOINTS: [Endpoint; 7] = [
    Endpoint {
        path: "orgs",
        kind: FileKind::Orgs,
        keys: &["orgs", "schools"],
        required: true,
    },
    Endpoint {
        path: "academicSessions",
        kind: FileKind::AcademicSessions,
        keys: &["academicSessions", "terms"],
        required: true,
    },
    Endpoint {
        path: "courses",
        kind: FileKind::Courses,
        keys: &["courses"],
        required: true,
    },
    Endpoint {
        path: "classes",
        kind: FileKind::Classes,
        keys: &["classes"],
        required: true,
    },
    Endpoint {
        path: "users",
        kind: FileKind::Users,
        keys: &["users", "students", "teachers"],
        required: true,
    },
    Endpoint {
        path: "enrollments",
        kind: FileKind::Enrollments,
        keys: &["enrollments"],
        required: true,
    },
    Endpoint {
        path: "demographics",
        kind: FileKind::Demographics,
        keys: &["demographics"],
        required: false,
    },
];

/// A pull that did not produce a bundle.
#[derive(Debug, Error)]
pub enum PullError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{endpoint}: the server answered HTTP {status}{}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(), advice(*status))]
    Refused {
        endpoint: String,
        status: u16,
        description: Option<String>,
    },
    #[error(
        "{endpoint}: the answer is not JSON ({reason}); check that the API URL ends in /ims/oneroster/v1p1"
    )]
    NotJson { endpoint: String, reason: String },
    #[error(
        "{endpoint}: the answer has no {keys} list (it has: {found}); rollcall will not take a missing list for an empty roster"
    )]
    NoEnvelope {
        endpoint: String,
        keys: String,
        found: String,
    },
    #[error(
        "{endpoint}: sourcedId {id:?} came twice (page {first} and page {again}): the server's paging shifted while it was read, so records may be missing too; pull again"
    )]
    Duplicate {
        endpoint: String,
        id: String,
        first: u64,
        again: u64,
    },
    #[error(
        "{endpoint}: {read} records read but the server counts {total} (X-Total-Count); records are missing, pull again"
    )]
    Missing {
        endpoint: String,
        read: u64,
        total: u64,
    },
    #[error("{endpoint}: more than {pages} pages; raise the page size or the page bound")]
    TooManyPages { endpoint: String, pages: u64 },
    #[error("{endpoint}: a record without a sourcedId (record {index} of page {page})")]
    NoId {
        endpoint: String,
        index: usize,
        page: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn advice(status: u16) -> &'static str {
    match status {
        401 => "; check the key and secret (and, for oauth1, that this machine's clock is right)",
        403 => {
            "; the credentials are valid but may not read this; ask the district to grant the roster scopes"
        }
        404 => "; check the API URL (it usually ends in /ims/oneroster/v1p1)",
        _ => "",
    }
}

/// How a pull reads.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// A full (bulk) pull even when a delta would do.
    pub full: bool,
    /// The most pages read of one endpoint.
    pub max_pages: u64,
    pub client: http::ClientOptions,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            full: false,
            max_pages: 100_000,
            client: http::ClientOptions::default(),
        }
    }
}

/// What one endpoint gave.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointSummary {
    pub endpoint: String,
    /// Records written (a bulk file leaves out those marked tobedeleted).
    pub records: u64,
    pub pages: u64,
    /// Left out of the bundle (an optional endpoint the server does not have).
    pub skipped: bool,
}

/// A finished pull: the bundle it wrote and how.
#[derive(Clone, Debug, Serialize)]
pub struct Pulled {
    pub bundle: PathBuf,
    pub mode: &'static str,
    /// The time taken just before the pull began: the cursor the tenant moves to once the batch is applied.
    pub cursor: String,
    pub started: u64,
    /// The cursor a delta asked from.
    pub since: Option<String>,
    pub endpoints: Vec<EndpointSummary>,
    pub warnings: Vec<String>,
}

/// The first `imsx_description` of a status payload, wherever the server put it.
fn description(body: &[u8]) -> Option<String> {
    fn find(v: &Value, key: &str) -> Option<String> {
        match v {
            Value::Object(o) => o
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.as_str().map(str::to_string))
                .or_else(|| o.values().find_map(|v| find(v, key))),
            Value::Array(items) => items.iter().find_map(|v| find(v, key)),
            _ => None,
        }
    }
    let json: Value = serde_json::from_slice(body).ok()?;
    find(&json, "imsx_description").or_else(|| find(&json, "description"))
}

/// Whether a status payload says the operation is not supported.
fn unsupported(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("\"unsupported\"") || text.contains("unsupportedoperation")
}

/// Rows of one file, spilled to disk as they are converted (the `metadata.*` columns are only known at the end,
/// so the CSV is written from the spill once every page is read).
struct Spill {
    path: PathBuf,
    out: BufWriter<File>,
    metadata: BTreeSet<String>,
}

impl Spill {
    fn new(path: PathBuf) -> Result<Spill, PullError> {
        let file = File::create(&path).map_err(io(&path))?;
        Ok(Spill {
            path,
            out: BufWriter::new(file),
            metadata: BTreeSet::new(),
        })
    }

    fn push(&mut self, row: &convert::Row) -> Result<(), PullError> {
        for (k, _) in &row.metadata {
            if !self.metadata.contains(k) {
                self.metadata.insert(k.clone());
            }
        }
        let line = serde_json::to_string(&(&row.values, &row.metadata)).unwrap_or_default();
        writeln!(self.out, "{line}").map_err(io(&self.path))
    }

    /// Writes the CSV file from the spill and removes the spill.
    fn finish(mut self, kind: FileKind, csv: &Path) -> Result<(), PullError> {
        self.out.flush().map_err(io(&self.path))?;
        let columns: Vec<&str> = kind.columns().iter().map(|c| c.name).collect();
        let metadata: Vec<&str> = self.metadata.iter().map(String::as_str).collect();
        let file = File::create(csv).map_err(io(csv))?;
        let mut out = BufWriter::new(file);
        let mut line = String::new();
        push_row(&mut line, columns.iter().chain(metadata.iter()).copied());
        out.write_all(line.as_bytes()).map_err(io(csv))?;
        let spill = File::open(&self.path).map_err(io(&self.path))?;
        for text in BufReader::new(spill).lines() {
            let text = text.map_err(io(&self.path))?;
            let (values, extra): (Vec<String>, Vec<(String, String)>) = serde_json::from_str(&text)
                .map_err(|e| PullError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })?;
            line.clear();
            let extra_values = metadata.iter().map(|name| {
                extra
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or("", |(_, v)| v.as_str())
            });
            push_row(
                &mut line,
                values.iter().map(String::as_str).chain(extra_values),
            );
            out.write_all(line.as_bytes()).map_err(io(csv))?;
        }
        out.flush().map_err(io(csv))?;
        drop(out);
        fs::remove_file(&self.path).map_err(io(&self.path))?;
        Ok(())
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The records of a page, under whichever envelope key the server used.
fn records<'v>(endpoint: &Endpoint, json: &'v Value) -> Result<&'v Vec<Value>, PullError> {
    let found = |json: &Value| match json {
        Value::Object(o) => o.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => "no keys: not a JSON object".to_string(),
    };
    endpoint
        .keys
        .iter()
        .find_map(|k| json.get(*k).and_then(Value::as_array))
        .ok_or_else(|| PullError::NoEnvelope {
            endpoint: endpoint.path.to_string(),
            keys: endpoint.keys.join(" or "),
            found: found(json),
        })
}

/// How every endpoint of one pull is read.
struct Reading<'a> {
    page_size: u32,
    filter: Option<&'a str>,
    mode: Mode,
    options: &'a PullOptions,
}

/// Reads one endpoint page by page, writing each record's row to `spill`.
fn read_endpoint(
    client: &Client,
    endpoint: &Endpoint,
    how: &Reading<'_>,
    spill: &mut Spill,
    warnings: &mut Vec<String>,
) -> Result<EndpointSummary, PullError> {
    let name = endpoint.path.to_string();
    let mut summary = EndpointSummary {
        endpoint: name.clone(),
        records: 0,
        pages: 0,
        skipped: false,
    };
    let (filter, mode, options) = (how.filter, how.mode, how.options);
    let mut limit = how.page_size.max(1);
    let mut offset: u64 = 0;
    let mut next: Option<url::Url> = None;
    // Each id read (by hash) and the page it came on, to find one a shifting server sends twice.
    let mut seen: HashMap<u128, u64> = HashMap::new();
    let mut read: u64 = 0;
    let mut total: Option<u64> = None;
    loop {
        if summary.pages >= options.max_pages {
            return Err(PullError::TooManyPages {
                endpoint: name,
                pages: options.max_pages,
            });
        }
        let answer: Answer = match &next {
            Some(url) => client.get(url, &[])?,
            None => {
                let mut params = vec![
                    ("limit".to_string(), limit.to_string()),
                    ("offset".to_string(), offset.to_string()),
                    ("sort".to_string(), "sourcedId".to_string()),
                    ("orderBy".to_string(), "asc".to_string()),
                ];
                if let Some(f) = filter {
                    params.push(("filter".to_string(), f.to_string()));
                }
                client.get(&client.endpoint_url(endpoint.path)?, &params)?
            }
        };
        if !(200..300).contains(&answer.status) {
            if !endpoint.required
                && summary.pages == 0
                && (answer.status == 404 || unsupported(&answer.body))
            {
                warnings.push(format!(
                    "{name}: the server does not offer it (HTTP {}); the bundle has no {}",
                    answer.status,
                    endpoint.kind.file_name()
                ));
                summary.skipped = true;
                return Ok(summary);
            }
            return Err(PullError::Refused {
                endpoint: name,
                status: answer.status,
                description: description(&answer.body),
            });
        }
        summary.pages += 1;
        let json: Value = serde_json::from_slice(&answer.body).map_err(|e| PullError::NotJson {
            endpoint: name.clone(),
            reason: e.to_string(),
        })?;
        let page = records(endpoint, &json)?;
        if let Some(t) = answer.total {
            total = Some(t);
        }
        for (index, record) in page.iter().enumerate() {
            let Some(object) = record.as_object() else {
                continue;
            };
            let id = object
                .get("sourcedId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| PullError::NoId {
                    endpoint: name.clone(),
                    index: index + 1,
                    page: summary.pages,
                })?;
            let key = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
            if let Some(&first) = seen.get(&key) {
                return Err(PullError::Duplicate {
                    endpoint: name,
                    id: id.to_string(),
                    first,
                    again: summary.pages,
                });
            }
            seen.insert(key, summary.pages);
            read += 1;
            if let Some(row) = convert::row(endpoint.kind, object, mode) {
                spill.push(&row)?;
                summary.records += 1;
            }
        }
        let rows = page.len() as u64;
        let more_by_count = total.is_some_and(|t| read < t);
        next = match &answer.next {
            Some(link) if rows > 0 => Some(client.resolve(link)?),
            _ => None,
        };
        if next.is_some() {
            continue;
        }
        if rows == 0 {
            break;
        }
        if rows < u64::from(limit) {
            if !more_by_count {
                break;
            }
            // A server that caps its pages below what was asked: ask for what it gives.
            limit = rows as u32;
        }
        offset += rows;
    }
    if let Some(t) = total {
        if read < t {
            return Err(PullError::Missing {
                endpoint: name,
                read,
                total: t,
            });
        }
        if read > t {
            warnings.push(format!(
                "{name}: {read} records read but the server counts {t} (X-Total-Count)"
            ));
        }
    }
    Ok(summary)
}

/// A cursor: the time in ISO 8601 UTC with milliseconds, as OneRoster servers write `dateLastModified`.
pub fn cursor_at(since_epoch: std::time::Duration) -> String {
    let seconds = iso_time(since_epoch.as_secs());
    let stem = seconds.strip_suffix('Z').unwrap_or(&seconds);
    format!("{stem}.{:03}Z", since_epoch.subsec_millis())
}

/// The delta filter for records changed after `cursor`.
pub fn delta_filter(cursor: &str) -> String {
    format!("dateLastModified>'{cursor}'")
}

/// Pulls a tenant's roster into a bundle folder `out` (created; it must not hold a bundle already): bulk when
/// [`ApiSource::full_due`] says so, otherwise a delta from the cursor.
pub fn pull(
    source: &ApiSource,
    client: &Client,
    out: &Path,
    options: &PullOptions,
) -> Result<Pulled, PullError> {
    // Taken before the first request, so nothing changed while the pull ran is missed by the next delta.
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let started = clock.as_secs();
    let cursor = cursor_at(clock);
    let full = source.full_due(started, options.full);
    let mode = if full { Mode::Bulk } else { Mode::Delta };
    let since = (!full).then(|| source.cursor.clone()).flatten();
    let filter = since.as_deref().map(delta_filter);
    fs::create_dir_all(out).map_err(io(out))?;
    let mut warnings = Vec::new();
    let mut endpoints = Vec::new();
    let mut present = Vec::new();
    for endpoint in &ENDPOINTS {
        let spill_path = out.join(format!(".{}.pulling", endpoint.path));
        let mut spill = Spill::new(spill_path.clone())?;
        let how = Reading {
            page_size: source.page_size,
            filter: filter.as_deref(),
            mode,
            options,
        };
        let summary = read_endpoint(client, endpoint, &how, &mut spill, &mut warnings);
        let summary = match summary {
            Ok(s) => s,
            Err(e) => {
                drop(spill);
                let _ = fs::remove_file(&spill_path);
                return Err(e);
            }
        };
        if summary.skipped {
            drop(spill);
            fs::remove_file(&spill_path).map_err(io(&spill_path))?;
        } else {
            spill.finish(endpoint.kind, &out.join(endpoint.kind.file_name()))?;
            present.push(endpoint.kind);
        }
        endpoints.push(summary);
    }
    let host = url::Url::parse(&source.api_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let mut manifest = String::new();
    push_row(&mut manifest, ["propertyName", "value"]);
    push_row(&mut manifest, ["manifest.version", "1.0"]);
    push_row(&mut manifest, ["oneroster.version", "1.1"]);
    for kind in FileKind::DEPENDENCY_ORDER {
        let value = if present.contains(&kind) {
            mode.as_str()
        } else {
            "absent"
        };
        push_row(
            &mut manifest,
            [format!("file.{}", kind.name()).as_str(), value],
        );
    }
    push_row(
        &mut manifest,
        ["source.systemName", &format!("OneRoster API at {host}")],
    );
    push_row(&mut manifest, ["source.systemCode", &cursor]);
    let path = out.join("manifest.csv");
    fs::write(&path, manifest).map_err(io(&path))?;
    Ok(Pulled {
        bundle: out.to_path_buf(),
        mode: mode.as_str(),
        cursor,
        started,
        since,
        endpoints,
        warnings,
    })
}

/// The tenant's source after a pulled batch was applied: the cursor moves to the pull's, and a full pull
/// restarts the cadence.
pub fn applied(source: &mut ApiSource, pulled_cursor: &str, started: u64, full: bool) {
    source.cursor = Some(pulled_cursor.to_string());
    if full {
        source.last_full = Some(started);
    }
    source.pending = None;
}

/// Whether `pending` is the pull `batch` came from: the batch it ran (locally), or the object it wrote (on AWS).
fn is_pull_of(pending: &source::PendingPull, batch: &crate::model::Batch) -> bool {
    (!pending.batch.is_empty() && pending.batch == batch.id)
        || pending.key.as_deref().is_some_and(|k| k == batch.source)
}

/// After a batch was applied (by a sync, an approval of a held one, or the pipeline's finish): if it is the
/// tenant's pending pull, the tenant's cursor moves to it. Any other batch leaves the cursor alone.
pub fn note_applied(
    store: &dyn crate::store::TenantStore,
    batch: &crate::model::Batch,
) -> crate::store::StoreResult<bool> {
    let Some(mut t) = store.get_tenant(&batch.tenant)? else {
        return Ok(false);
    };
    let Some(api) = t.api.as_mut() else {
        return Ok(false);
    };
    let Some(pending) = api.pending.clone().filter(|p| is_pull_of(p, batch)) else {
        return Ok(false);
    };
    applied(api, &pending.cursor, pending.started, pending.full);
    store.put_tenant(&t)?;
    Ok(true)
}

/// After a held batch was rejected: if it was the tenant's pending pull, it is forgotten and the cursor stays
/// where it was (the next delta asks again from there).
pub fn note_rejected(
    store: &dyn crate::store::TenantStore,
    batch: &crate::model::Batch,
) -> crate::store::StoreResult<()> {
    let Some(mut t) = store.get_tenant(&batch.tenant)? else {
        return Ok(());
    };
    if let Some(api) = t.api.as_mut()
        && api.pending.as_ref().is_some_and(|p| is_pull_of(p, batch))
    {
        api.pending = None;
        store.put_tenant(&t)?;
    }
    Ok(())
}

/// What `source check` found: each endpoint's verdict, and whether a pull would work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Check {
    pub api_url: String,
    pub auth: String,
    pub endpoints: Vec<EndpointCheck>,
    /// Every required endpoint answered as a pull needs.
    pub works: bool,
}

/// One endpoint's verdict in a [`Check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EndpointCheck {
    pub endpoint: String,
    pub ok: bool,
    pub words: String,
}

/// Asks each endpoint for one record (see [`probe`]).
pub fn check(source: &ApiSource, client: &Client) -> Check {
    let mut works = true;
    let endpoints = ENDPOINTS
        .iter()
        .map(|endpoint| {
            let verdict = probe(client, endpoint);
            works &= verdict.ok || !endpoint.required;
            EndpointCheck {
                endpoint: endpoint.path.to_string(),
                ok: verdict.ok,
                words: verdict.words,
            }
        })
        .collect();
    Check {
        api_url: source.api_url.clone(),
        auth: source.auth.name().to_string(),
        endpoints,
        works,
    }
}

/// What `source check` says of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// A pull would get past this endpoint (an optional one the server lacks is fine).
    pub ok: bool,
    pub words: String,
}

/// Asks an endpoint for one record and says, in plain words, what came back.
pub fn probe(client: &Client, endpoint: &Endpoint) -> Verdict {
    let bad = |words: String| Verdict { ok: false, words };
    let url = match client.endpoint_url(endpoint.path) {
        Ok(u) => u,
        Err(e) => return bad(e.to_string()),
    };
    let answer = match client.get(&url, &[("limit".to_string(), "1".to_string())]) {
        Ok(a) => a,
        Err(e @ (HttpError::TokenRefused { .. } | HttpError::NoToken { .. })) => {
            return bad(format!("auth rejected: {e}"));
        }
        Err(e) => return bad(format!("unreachable: {e}")),
    };
    let said = description(&answer.body)
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    match answer.status {
        200..=299 => {}
        401 => {
            return bad(format!(
                "reachable, auth rejected (HTTP 401{said}): check the key and secret, the signing method, and \
                 this machine's clock"
            ));
        }
        403 => {
            return bad(format!(
                "reachable, auth accepted but not allowed to read it (HTTP 403{said}): ask the district to \
                 grant rollcall the roster scopes"
            ));
        }
        404 if !endpoint.required => {
            return Verdict {
                ok: true,
                words: format!(
                    "not offered (HTTP 404): pulls leave {} out",
                    endpoint.kind.file_name()
                ),
            };
        }
        404 => {
            return bad(format!(
                "not found (HTTP 404{said}): check that the API URL ends in /ims/oneroster/v1p1"
            ));
        }
        status => {
            return bad(format!(
                "reachable, but the server answered HTTP {status}{said}"
            ));
        }
    }
    let json: Value = match serde_json::from_slice(&answer.body) {
        Ok(j) => j,
        Err(e) => {
            return bad(format!(
                "reachable, auth accepted, but the answer is not JSON ({e}): check the API URL"
            ));
        }
    };
    match records(endpoint, &json) {
        Err(e) => bad(format!("reachable, auth accepted, but {e}")),
        Ok(_) => {
            let key = endpoint
                .keys
                .iter()
                .find(|k| json.get(**k).is_some_and(Value::is_array))
                .copied()
                .unwrap_or(endpoint.keys[0]);
            let total = answer
                .total
                .map(|t| format!(", {t} records (X-Total-Count)"))
                .unwrap_or_else(|| ", no total given".to_string());
            Verdict {
                ok: true,
                words: format!("reachable, auth accepted, {key} list found{total}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_has_milliseconds_and_the_delta_filter_quotes_it() {
        let at = std::time::Duration::from_millis(1_764_658_508_042);
        assert_eq!(cursor_at(at), "2025-12-02T06:55:08.042Z");
        assert_eq!(
            delta_filter("2025-12-02T06:55:08.042Z"),
            "dateLastModified>'2025-12-02T06:55:08.042Z'"
        );
    }
}
