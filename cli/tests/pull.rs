//! `rollcall source` and `rollcall pull` against a OneRoster 1.1 provider: a real HTTP server on loopback that
//! serves the base fixture district as REST JSON (GUIDRefs, arrays, string booleans, relative hrefs), checks
//! every request's OAuth 1.0a signature or bearer token, caps its pages, answers 429 and 503 now and then,
//! pages one endpoint by `Link` headers, and filters on `dateLastModified` for deltas.

use rollcall::pull::oauth::{SignatureMethod, Signing, base_uri};
use rollcall::spec::{ColumnType, FileKind};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

const KEY: &str = "maple-key";
const SECRET: &str = "pl4in-s3cret-value";
const FIXTURE_TIME: &str = "2026-11-01T00:00:00.000Z";

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/base")
}

/// The seven files a pull reads, from the fixture, with a manifest that declares only them.
fn fixture_bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("fixture");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    let mut manifest =
        String::from("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n");
    for kind in FileKind::DEPENDENCY_ORDER {
        let core = ENTITIES.iter().any(|(_, k)| *k == kind);
        if core {
            std::fs::copy(base().join(kind.file_name()), bundle.join(kind.file_name()))
                .expect("copy");
        }
        manifest.push_str(&format!(
            "file.{},{}\n",
            kind.name(),
            if core { "bulk" } else { "absent" }
        ));
    }
    std::fs::write(bundle.join("manifest.csv"), manifest).expect("manifest");
    bundle
}

const ENTITIES: [(&str, FileKind); 7] = [
    ("orgs", FileKind::Orgs),
    ("academicSessions", FileKind::AcademicSessions),
    ("courses", FileKind::Courses),
    ("classes", FileKind::Classes),
    ("users", FileKind::Users),
    ("enrollments", FileKind::Enrollments),
    ("demographics", FileKind::Demographics),
];

/// A GUIDRef as providers send it.
fn guid_ref(target: FileKind, id: &str) -> Value {
    json!({"href": format!("/ims/oneroster/v1p1/{}/{id}", target.name()), "sourcedId": id, "type": target.name()})
}

/// One CSV row of the fixture as the REST binding has it.
fn rest_object(kind: FileKind, header: &[String], row: &[String]) -> Value {
    let mut o = Map::new();
    o.insert("status".into(), json!("active"));
    o.insert("dateLastModified".into(), json!(FIXTURE_TIME));
    for (name, value) in header.iter().zip(row) {
        let Some(column) = kind.columns().iter().find(|c| c.name == name) else {
            continue;
        };
        if matches!(name.as_str(), "status" | "dateLastModified") {
            continue;
        }
        let list = |v: &str| -> Vec<String> {
            if v.is_empty() {
                Vec::new()
            } else {
                v.split(',').map(str::to_string).collect()
            }
        };
        let (key, json_value) = match column.ty {
            ColumnType::Ref(t) => (
                name.trim_end_matches("SourcedId").to_string(),
                if value.is_empty() {
                    Value::Null
                } else {
                    guid_ref(t, value)
                },
            ),
            ColumnType::SchoolRef => (
                name.trim_end_matches("SourcedId").to_string(),
                guid_ref(FileKind::Orgs, value),
            ),
            ColumnType::RefList(t) => (
                format!("{}s", name.trim_end_matches("SourcedIds")),
                Value::Array(list(value).iter().map(|id| guid_ref(t, id)).collect()),
            ),
            ColumnType::UserIds => (
                name.clone(),
                Value::Array(
                    list(value)
                        .iter()
                        .map(|item| {
                            let inner = item.trim_start_matches('{').trim_end_matches('}');
                            let (t, id) = inner.split_once(':').unwrap_or((inner, ""));
                            json!({"type": t, "identifier": id})
                        })
                        .collect(),
                ),
            ),
            ColumnType::TextList | ColumnType::Grades | ColumnType::EnumList(_) => (
                name.clone(),
                Value::Array(list(value).into_iter().map(Value::String).collect()),
            ),
            // ClassLink sends enabledUser as a string; the others as JSON booleans.
            ColumnType::Bool if name == "enabledUser" => (name.clone(), json!(value)),
            ColumnType::Bool => (name.clone(), json!(value == "true")),
            _ if value.is_empty() => (name.clone(), Value::Null),
            _ => (name.clone(), json!(value)),
        };
        o.insert(key, json_value);
    }
    Value::Object(o)
}

/// The fixture's records of one file as REST objects.
fn rest_records(kind: FileKind) -> Vec<Value> {
    let mut reader = csv::Reader::from_path(base().join(kind.file_name())).expect("fixture");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            let row: Vec<String> = r.expect("row").iter().map(str::to_string).collect();
            rest_object(kind, &header, &row)
        })
        .collect()
}

/// How the provider signs clients in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ProviderAuth {
    OAuth1,
    OAuth2,
}

/// What the provider serves and how it misbehaves; what it saw.
struct Provider {
    auth: ProviderAuth,
    records: BTreeMap<String, Vec<Value>>,
    /// The most records it returns on a page, whatever was asked.
    cap: usize,
    /// Endpoint → statuses to answer first, one request each (e.g. 429, 503).
    failures: BTreeMap<String, Vec<u16>>,
    /// Endpoints it pages by `Link: rel="next"`.
    linked: Vec<String>,
    /// Endpoints it does not have.
    missing: Vec<String>,
    /// Endpoint → an answer without its envelope key.
    no_envelope: Vec<String>,
    /// Endpoints whose records shift by one after the first page (a record inserted before the offset).
    shifting: Vec<String>,
    /// Every data request: (path, decoded query pairs).
    seen: Vec<(String, Vec<(String, String)>)>,
    token_requests: usize,
    /// Answer a 401 to the next data request once (a revoked token).
    revoke_once: bool,
}

impl Provider {
    fn new(auth: ProviderAuth) -> Provider {
        let mut records = BTreeMap::new();
        for (path, kind) in ENTITIES {
            records.insert(path.to_string(), rest_records(kind));
        }
        // One org carries metadata; one user's org comes as a relative href only (no sourcedId).
        if let Some(Value::Object(org)) = records.get_mut("orgs").and_then(|r| r.get_mut(1)) {
            org.insert("metadata".into(), json!({"ncesId": "060000200001"}));
        }
        if let Some(Value::Object(user)) = records.get_mut("users").and_then(|r| r.get_mut(0)) {
            user.insert(
                "orgs".into(),
                json!([{"href": "~/ims/oneroster/v1p1/orgs/sch-1", "type": "org"}]),
            );
        }
        Provider {
            auth,
            records,
            cap: 2,
            failures: BTreeMap::new(),
            linked: Vec::new(),
            missing: Vec::new(),
            no_envelope: Vec::new(),
            shifting: Vec::new(),
            seen: Vec::new(),
            token_requests: 0,
            revoke_once: false,
        }
    }
}

type Shared = Arc<Mutex<Provider>>;

fn header_of(rq: &tiny_http::Request, name: &'static str) -> Option<String> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

/// Checks an OAuth 1.0a `Authorization` header against the request as it arrived.
fn signed(url: &url::Url, header: &str) -> bool {
    let Some(rest) = header.strip_prefix("OAuth ") else {
        return false;
    };
    let mut fields = BTreeMap::new();
    for part in rest.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim_matches('"');
            let decoded = percent_decode(v);
            fields.insert(k.to_string(), decoded);
        }
    }
    let params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut bare = url.clone();
    bare.set_query(None);
    let base = base_uri(&bare);
    let signing = Signing {
        method: "GET",
        base_uri: &base,
        params: &params,
        consumer_key: fields.get("oauth_consumer_key").map_or("", String::as_str),
        consumer_secret: SECRET,
        nonce: fields.get("oauth_nonce").map_or("", String::as_str),
        timestamp: fields
            .get("oauth_timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        signature_method: SignatureMethod::HmacSha256,
    };
    fields.get("oauth_consumer_key").map(String::as_str) == Some(KEY)
        && fields.get("oauth_signature_method").map(String::as_str) == Some("HMAC-SHA256")
        && fields.get("oauth_signature") == Some(&signing.signature())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn respond(rq: tiny_http::Request, status: u16, body: &Value, headers: &[(&str, String)]) {
    let mut response = tiny_http::Response::from_string(body.to_string()).with_status_code(status);
    response.add_header(
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"),
    );
    for (k, v) in headers {
        response.add_header(tiny_http::Header::from_bytes(*k, v.as_bytes()).expect("header"));
    }
    let _ = rq.respond(response);
}

fn status_body(description: &str) -> Value {
    json!({"imsx_statusInfo": {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": description}})
}

/// Serves `provider` on loopback; returns its base URL (`http://127.0.0.1:PORT`).
fn serve(provider: Shared) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("server");
    let addr = server.server_addr().to_ip().expect("ip");
    let origin = format!("http://{addr}");
    let me = origin.clone();
    std::thread::spawn(move || {
        for mut rq in server.incoming_requests() {
            let url = url::Url::parse(&format!("{me}{}", rq.url())).expect("url");
            let mut p = provider.lock().expect("provider");
            if url.path() == "/token" {
                p.token_requests += 1;
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(rq.as_reader(), &mut body);
                let basic = header_of(&rq, "Authorization").unwrap_or_default();
                use base64::Engine as _;
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"))
                );
                if basic == expected && body.contains("grant_type=client_credentials") {
                    let n = p.token_requests;
                    respond(
                        rq,
                        200,
                        &json!({"access_token": format!("token-{n}"), "token_type": "bearer", "expires_in": 3600}),
                        &[],
                    );
                } else {
                    respond(rq, 401, &json!({"error": "invalid_client"}), &[]);
                }
                continue;
            }
            let Some(endpoint) = url.path().strip_prefix("/ims/oneroster/v1p1/") else {
                respond(rq, 404, &status_body("no such path"), &[]);
                continue;
            };
            let endpoint = endpoint.to_string();
            let query: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            p.seen.push((endpoint.clone(), query.clone()));
            let authorization = header_of(&rq, "Authorization").unwrap_or_default();
            let authorized = match p.auth {
                ProviderAuth::OAuth1 => signed(&url, &authorization),
                ProviderAuth::OAuth2 => {
                    let current = format!("Bearer token-{}", p.token_requests);
                    p.token_requests > 0 && authorization == current
                }
            };
            if p.revoke_once {
                p.revoke_once = false;
                respond(rq, 401, &status_body("token revoked"), &[]);
                continue;
            }
            if !authorized {
                respond(rq, 401, &status_body("Invalid signature"), &[]);
                continue;
            }
            if let Some(status) = p.failures.get_mut(&endpoint).and_then(|f| {
                if f.is_empty() {
                    None
                } else {
                    Some(f.remove(0))
                }
            }) {
                respond(
                    rq,
                    status,
                    &status_body("busy"),
                    &[("Retry-After", "0".to_string())],
                );
                continue;
            }
            if p.missing.contains(&endpoint) {
                respond(rq, 404, &status_body("unknown object"), &[]);
                continue;
            }
            let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            let offset: usize = get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let mut all = p.records.get(&endpoint).cloned().unwrap_or_default();
            all.sort_by(|a, b| a["sourcedId"].as_str().cmp(&b["sourcedId"].as_str()));
            if let Some(since) = get("filter").and_then(|f| {
                f.strip_prefix("dateLastModified>'")
                    .and_then(|r| r.strip_suffix('\''))
                    .map(str::to_string)
            }) {
                all.retain(|r| r["dateLastModified"].as_str().unwrap_or("") > since.as_str());
            }
            if p.shifting.contains(&endpoint) && offset > 0 {
                // A record added at the front after the first page: everything moves down one place.
                let first = all[0].clone();
                all.insert(0, first);
            }
            let total = all.len();
            let take = limit.min(p.cap);
            let page: Vec<Value> = all.iter().skip(offset).take(take).cloned().collect();
            let key = if p.no_envelope.contains(&endpoint) {
                "data".to_string()
            } else {
                endpoint.clone()
            };
            let mut headers = vec![("X-Total-Count", total.to_string())];
            if p.linked.contains(&endpoint) && offset + page.len() < total {
                headers.push((
                    "Link",
                    format!(
                        "<{me}/ims/oneroster/v1p1/{endpoint}?limit={take}&offset={}&sort=sourcedId>; rel=\"next\"",
                        offset + page.len()
                    ),
                ));
            }
            respond(rq, 200, &json!({ key: page }), &headers);
        }
    });
    origin
}

fn rollcall(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env("ROLLCALL_DB", db)
        .env("NO_COLOR", "1")
        .env_remove("ROLLCALL_API_SECRET")
        .env_remove("ROLLCALL_API_KEY")
        .output()
        .expect("run rollcall")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `source set` with the secret on standard input.
fn set_source(db: &Path, origin: &str, extra: &[&str]) -> Output {
    let api = format!("{origin}/ims/oneroster/v1p1");
    let mut args = vec![
        "source",
        "set",
        "--tenant",
        "maple",
        "--api-url",
        &api,
        "--key",
        KEY,
        "--secret-stdin",
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(&args)
        .env("ROLLCALL_DB", db)
        .env_remove("ROLLCALL_API_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{SECRET}\n").as_bytes())
        .expect("write secret");
    child.wait_with_output().expect("wait")
}

/// A tenant `maple` whose roster is pulled from the provider.
fn api_tenant(dir: &Path, origin: &str, extra: &[&str]) -> (PathBuf, Vec<Output>) {
    let db = dir.join("api.db");
    let added = rollcall(&db, &["tenant", "add", "maple", "--source", "api"]);
    assert_eq!(added.status.code(), Some(0), "{}", text(&added));
    let set = set_source(&db, origin, extra);
    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
    (db, vec![added, set])
}

/// One stored record: its id, whether it is active, and its fields.
type Shown = (String, bool, BTreeMap<String, String>);

/// Each record of each entity.
fn roster(db: &Path) -> BTreeMap<String, Vec<Shown>> {
    let mut out = BTreeMap::new();
    for (entity, _) in ENTITIES {
        let shown = rollcall(
            db,
            &["show", "--tenant", "maple", entity, "--format", "json"],
        );
        assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
        let records: Vec<Value> = serde_json::from_slice(&shown.stdout).expect("json");
        let rows = records
            .iter()
            .map(|r| {
                let fields: BTreeMap<String, String> = r["fields"]
                    .as_object()
                    .expect("fields")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                (
                    r["sourced_id"].as_str().unwrap_or("").to_string(),
                    r["active"].as_bool().unwrap_or(false),
                    fields,
                )
            })
            .collect();
        out.insert(entity.to_string(), rows);
    }
    out
}

#[test]
fn a_full_pull_gives_the_roster_an_upload_of_the_same_district_gives() {
    let dir = tempfile::tempdir().expect("temp");
    let mut provider = Provider::new(ProviderAuth::OAuth1);
    provider.failures.insert("users".into(), vec![429]);
    provider.failures.insert("classes".into(), vec![503, 503]);
    provider.linked.push("enrollments".into());
    let provider = Arc::new(Mutex::new(provider));
    let origin = serve(Arc::clone(&provider));
    let (db, _) = api_tenant(dir.path(), &origin, &[]);
    let out = dir.path().join("pulled");
    let pulled = rollcall(
        &db,
        &[
            "pull",
            "--tenant",
            "maple",
            "--out",
            out.to_str().expect("path"),
            "--format",
            "json",
        ],
    );
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    let outcome: Value = serde_json::from_slice(&pulled.stdout).expect("json");
    assert_eq!(outcome["status"], "applied");
    assert_eq!(outcome["pull"]["mode"], "bulk");
    let records: Vec<(String, u64)> = outcome["pull"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap_or("").to_string(),
                e["records"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            ("orgs".to_string(), 3),
            ("academicSessions".to_string(), 3),
            ("courses".to_string(), 2),
            ("classes".to_string(), 2),
            ("users".to_string(), 5),
            ("enrollments".to_string(), 4),
            ("demographics".to_string(), 2),
        ]
    );

    // The same district uploaded as CSV gives the same roster (the pulled org also keeps its metadata).
    let upload_db = dir.path().join("upload.db");
    rollcall(&upload_db, &["tenant", "add", "maple"]);
    let synced = rollcall(
        &upload_db,
        &[
            "sync",
            fixture_bundle(dir.path()).to_str().expect("path"),
            "--tenant",
            "maple",
        ],
    );
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
    let mut pulled_roster = roster(&db);
    let org = pulled_roster
        .get_mut("orgs")
        .and_then(|o| o.iter_mut().find(|(id, _, _)| id == "sch-1"))
        .expect("sch-1");
    assert_eq!(
        org.2.remove("metadata.ncesId").as_deref(),
        Some("060000200001")
    );
    assert_eq!(pulled_roster, roster(&upload_db));

    // What was asked: a stable sort, the page size asked at first and then the server's cap; the 429 and the
    // two 503s retried; enrollments followed by their next links.
    let p = provider.lock().expect("provider");
    let users: Vec<&Vec<(String, String)>> = p
        .seen
        .iter()
        .filter(|(e, _)| e == "users")
        .map(|(_, q)| q)
        .collect();
    let pick = |q: &Vec<(String, String)>, k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(users.len(), 1 + 3, "a 429, then three pages of two");
    assert_eq!(pick(users[0], "limit"), "1000");
    assert_eq!(pick(users[1], "limit"), "1000");
    assert_eq!(
        pick(users[2], "limit"),
        "2",
        "clamped to what the server gives"
    );
    assert_eq!(
        users.iter().map(|q| pick(q, "offset")).collect::<Vec<_>>(),
        ["0", "0", "2", "4"]
    );
    assert!(
        users
            .iter()
            .all(|q| pick(q, "sort") == "sourcedId" && pick(q, "orderBy") == "asc")
    );
    assert_eq!(p.seen.iter().filter(|(e, _)| e == "classes").count(), 2 + 1);
    let enrollments: Vec<String> = p
        .seen
        .iter()
        .filter(|(e, _)| e == "enrollments")
        .map(|(_, q)| pick(q, "offset"))
        .collect();
    assert_eq!(enrollments, ["0", "2"]);
    drop(p);
    // The bundle is kept where it was written, a OneRoster bulk bundle a district can download.
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).expect("manifest");
    assert!(manifest.contains("file.users,bulk\n"), "{manifest}");
    assert!(manifest.contains("file.lineItems,absent\n"), "{manifest}");
    let orgs = std::fs::read_to_string(out.join("orgs.csv")).expect("orgs");
    assert!(
        orgs.starts_with("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId,metadata.ncesId\n"),
        "{orgs}"
    );
}

#[test]
fn a_delta_pull_asks_for_changes_since_the_cursor_and_the_cursor_moves_only_when_applied() {
    let dir = tempfile::tempdir().expect("temp");
    let provider = Arc::new(Mutex::new(Provider::new(ProviderAuth::OAuth1)));
    let origin = serve(Arc::clone(&provider));
    let (db, _) = api_tenant(dir.path(), &origin, &[]);
    let first = rollcall(&db, &["pull", "--tenant", "maple", "--format", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let first: Value = serde_json::from_slice(&first.stdout).expect("json");
    let cursor = first["pull"]["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();

    // A day of changes: a renamed user, an enrollment to be deleted.
    {
        let mut p = provider.lock().expect("provider");
        let later = "2099-01-01T00:00:00.000Z";
        let users = p.records.get_mut("users").expect("users");
        users[0]["givenName"] = json!("Anna");
        users[0]["dateLastModified"] = json!(later);
        let enrollments = p.records.get_mut("enrollments").expect("enrollments");
        enrollments[1]["status"] = json!("tobedeleted");
        enrollments[1]["dateLastModified"] = json!(later);
        p.seen.clear();
    }
    // Archiving one enrollment in four is more than the tenant's guard lets through unseen: held.
    let second = rollcall(&db, &["pull", "--tenant", "maple", "--format", "json"]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let second: Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(second["pull"]["mode"], "delta");
    assert_eq!(second["pull"]["since"], cursor.as_str());
    assert_eq!(second["status"], "held");
    let listed = text(&rollcall(&db, &["tenant", "list"]));
    assert!(
        listed.contains(&format!("delta cursor {cursor}")),
        "a held pull leaves the cursor where it was: {listed}"
    );
    let batch = second["batch"].as_str().expect("batch");
    let approved = rollcall(&db, &["approve", batch]);
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved));
    let p = provider.lock().expect("provider");
    let filter = format!("dateLastModified>'{cursor}'");
    assert!(
        p.seen
            .iter()
            .all(|(_, q)| q.iter().any(|(k, v)| k == "filter" && *v == filter)),
        "every request of a delta filters on the cursor"
    );
    drop(p);
    let roster = roster(&db);
    let ana = roster["users"]
        .iter()
        .find(|(id, _, _)| id == "tch-1")
        .expect("tch-1");
    assert_eq!(ana.2["givenName"], "Anna");
    let enr2 = roster["enrollments"]
        .iter()
        .find(|(id, _, _)| id == "enr-2")
        .expect("enr-2");
    assert!(!enr2.1, "the delta's tobedeleted archives it");
    assert_eq!(
        roster["users"]
            .iter()
            .filter(|(_, active, _)| *active)
            .count(),
        5,
        "a delta archives nothing it does not list"
    );
    let bundle = PathBuf::from(second["pull"]["bundle"].as_str().expect("bundle"));
    let manifest = std::fs::read_to_string(bundle.join("manifest.csv")).expect("manifest");
    assert!(manifest.contains("file.users,delta\n"), "{manifest}");
    let users_csv = std::fs::read_to_string(bundle.join("users.csv")).expect("users");
    assert!(
        users_csv.contains("\ntch-1,active,2099-01-01T00:00:00.000Z,"),
        "{users_csv}"
    );

    // Approved, the cursor moves to the second pull's start.
    let listed = text(&rollcall(&db, &["tenant", "list"]));
    let moved = second["pull"]["cursor"].as_str().expect("cursor");
    assert_ne!(moved, cursor);
    assert!(
        listed.contains(&format!("delta cursor {moved}")),
        "{listed}"
    );
    // With nothing changed since, the next delta asks from there and finds nothing to do.
    let third = rollcall(&db, &["pull", "--tenant", "maple", "--format", "json"]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    let third: Value = serde_json::from_slice(&third.stdout).expect("json");
    assert_eq!(third["pull"]["since"], moved);
}

#[test]
fn a_failing_pull_names_the_endpoint_status_and_description_and_no_output_shows_the_secret() {
    let dir = tempfile::tempdir().expect("temp");
    let provider = Arc::new(Mutex::new(Provider::new(ProviderAuth::OAuth1)));
    provider
        .lock()
        .expect("provider")
        .missing
        .push("demographics".into());
    let origin = serve(Arc::clone(&provider));
    let (db, mut outputs) = api_tenant(dir.path(), &origin, &[]);
    // The server now refuses the key: a 401 with its status payload.
    {
        let mut p = provider.lock().expect("provider");
        p.auth = ProviderAuth::OAuth2;
    }
    let failed = rollcall(&db, &["pull", "--tenant", "maple"]);
    assert_eq!(failed.status.code(), Some(2), "{}", text(&failed));
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr),
        "error: the pull of tenant maple failed: orgs: the server answered HTTP 401: Invalid signature; check the \
         key and secret (and, for oauth1, that this machine's clock is right)\n"
    );
    let check = rollcall(&db, &["source", "check", "--tenant", "maple"]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    assert!(
        text(&check)
            .contains("  orgs              reachable, auth rejected (HTTP 401: Invalid signature)"),
        "{}",
        text(&check)
    );
    let history = rollcall(&db, &["history", "--tenant", "maple"]);
    assert_eq!(history.status.code(), Some(0));
    // Nothing was synced: no batch.
    assert!(!text(&history).contains("applied"), "{}", text(&history));

    // Back to a signature it accepts: demographics is missing, a warning and the file left out.
    provider.lock().expect("provider").auth = ProviderAuth::OAuth1;
    let check_ok = rollcall(&db, &["source", "check", "--tenant", "maple"]);
    assert_eq!(check_ok.status.code(), Some(0), "{}", text(&check_ok));
    let check_text = String::from_utf8_lossy(&check_ok.stdout).to_string();
    assert!(
        check_text.contains("  users             reachable, auth accepted, users list found, 5 records (X-Total-Count)\n"),
        "{check_text}"
    );
    assert!(
        check_text.contains(
            "  demographics      not offered (HTTP 404): pulls leave demographics.csv out\n"
        ),
        "{check_text}"
    );
    assert!(check_text.ends_with("a pull would work\n"), "{check_text}");
    let pulled = rollcall(&db, &["pull", "--tenant", "maple"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    assert!(
        String::from_utf8_lossy(&pulled.stderr).contains(
            "warning: demographics: the server does not offer it (HTTP 404); the bundle has no demographics.csv\n"
        ),
        "{}",
        text(&pulled)
    );

    outputs.extend([failed, check, history, check_ok, pulled]);
    outputs.push(rollcall(&db, &["tenant", "list"]));
    outputs.push(rollcall(&db, &["source", "set", "--help"]));
    outputs.push(rollcall(&db, &["pull", "--help"]));
    for out in &outputs {
        assert!(
            !text(out).contains(SECRET),
            "the secret shows in: {}",
            text(out)
        );
    }
    // Kept readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(db.with_extension("credentials.json"))
            .expect("credentials")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn oauth2_takes_a_token_once_and_again_after_a_401() {
    let dir = tempfile::tempdir().expect("temp");
    let provider = Arc::new(Mutex::new(Provider::new(ProviderAuth::OAuth2)));
    let origin = serve(Arc::clone(&provider));
    let token_url = format!("{origin}/token");
    let (db, _) = api_tenant(
        dir.path(),
        &origin,
        &[
            "--auth",
            "oauth2",
            "--token-url",
            &token_url,
            "--page-size",
            "100",
        ],
    );
    let pulled = rollcall(&db, &["pull", "--tenant", "maple"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    assert_eq!(
        provider.lock().expect("provider").token_requests,
        1,
        "one token for the whole pull"
    );
    provider.lock().expect("provider").revoke_once = true;
    let again = rollcall(&db, &["pull", "--tenant", "maple", "--full"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        provider.lock().expect("provider").token_requests,
        3,
        "a new process takes a token, and takes another after the 401"
    );
}

#[test]
fn paging_that_shifts_or_a_page_without_its_list_fails_the_pull_and_syncs_nothing() {
    let dir = tempfile::tempdir().expect("temp");
    let provider = Arc::new(Mutex::new(Provider::new(ProviderAuth::OAuth1)));
    provider
        .lock()
        .expect("provider")
        .shifting
        .push("users".into());
    let origin = serve(Arc::clone(&provider));
    let (db, _) = api_tenant(dir.path(), &origin, &[]);
    let shifted = rollcall(&db, &["pull", "--tenant", "maple"]);
    assert_eq!(shifted.status.code(), Some(2), "{}", text(&shifted));
    assert_eq!(
        String::from_utf8_lossy(&shifted.stderr),
        "error: the pull of tenant maple failed: users: sourcedId \"stu-1\" came twice (page 1 and page 2): the \
         server's paging shifted while it was read, so records may be missing too; pull again\n"
    );
    {
        let mut p = provider.lock().expect("provider");
        p.shifting.clear();
        p.no_envelope.push("classes".into());
    }
    let empty = rollcall(&db, &["pull", "--tenant", "maple"]);
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty));
    assert_eq!(
        String::from_utf8_lossy(&empty.stderr),
        "error: the pull of tenant maple failed: classes: the answer has no classes list (it has: data); rollcall \
         will not take a missing list for an empty roster\n"
    );
    let shown = rollcall(&db, &["show", "--tenant", "maple", "users"]);
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout),
        "",
        "nothing was synced"
    );
}
