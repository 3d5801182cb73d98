//! A OneRoster 1.1 provider for tests: a real HTTP server on loopback (tiny_http) that serves the base fixture
//! district as REST JSON (GUIDRefs, arrays, string booleans, a relative href, metadata), checks every
//! request's OAuth 1.0a signature or bearer token, caps its pages, answers 429 and 503 when told to, pages an
//! endpoint by `Link` headers, and filters on `dateLastModified` for deltas.

use rollcall::pull::oauth::{SignatureMethod, Signing, base_uri};
use rollcall::spec::{ColumnType, FileKind};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

pub const KEY: &str = "maple-key";
pub const SECRET: &str = "pl4in-s3cret-value";
pub const FIXTURE_TIME: &str = "2026-11-01T00:00:00.000Z";

pub fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures/base")
}

pub const ENTITIES: [(&str, FileKind); 7] = [
    ("orgs", FileKind::Orgs),
    ("academicSessions", FileKind::AcademicSessions),
    ("courses", FileKind::Courses),
    ("classes", FileKind::Classes),
    ("users", FileKind::Users),
    ("enrollments", FileKind::Enrollments),
    ("demographics", FileKind::Demographics),
];

/// A GUIDRef as providers send it.
pub fn guid_ref(target: FileKind, id: &str) -> Value {
    json!({"href": format!("/ims/oneroster/v1p1/{}/{id}", target.name()), "sourcedId": id, "type": target.name()})
}

/// One CSV row of the fixture as the REST binding has it.
pub fn rest_object(kind: FileKind, header: &[String], row: &[String]) -> Value {
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
pub fn rest_records(kind: FileKind) -> Vec<Value> {
    rest_records_in(&base(), kind)
}

/// The records of one file of a bundle folder as REST objects.
pub fn rest_records_in(dir: &Path, kind: FileKind) -> Vec<Value> {
    let mut reader = csv::Reader::from_path(dir.join(kind.file_name())).expect("bundle file");
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
pub enum ProviderAuth {
    OAuth1,
    OAuth2,
}

/// What the provider serves and how it misbehaves; what it saw.
pub struct Provider {
    pub auth: ProviderAuth,
    pub records: BTreeMap<String, Vec<Value>>,
    /// The most records it returns on a page, whatever was asked.
    pub cap: usize,
    /// Endpoint → statuses to answer first, one request each (e.g. 429, 503).
    pub failures: BTreeMap<String, Vec<u16>>,
    /// Endpoints it pages by `Link: rel="next"`.
    pub linked: Vec<String>,
    /// Endpoints it does not have.
    pub missing: Vec<String>,
    /// Endpoint → an answer without its envelope key.
    pub no_envelope: Vec<String>,
    /// Endpoints whose records shift by one after the first page (a record inserted before the offset).
    pub shifting: Vec<String>,
    /// Every data request: (path, decoded query pairs).
    pub seen: Vec<(String, Vec<(String, String)>)>,
    pub token_requests: usize,
    /// Answer a 401 to the next data request once (a revoked token).
    pub revoke_once: bool,
    /// Endpoint → the envelope key it answers under instead of its own (`students` for users).
    pub envelope: BTreeMap<String, String>,
    /// Endpoint → how many more records `X-Total-Count` claims than there are.
    pub overcount: BTreeMap<String, usize>,
    /// Endpoints that answer 400 with `imsx_codeMajor` `unsupported`.
    pub unsupported: Vec<String>,
    /// The token URL refuses HTTP Basic and takes the credentials in the form body only.
    pub body_credentials_only: bool,
}

impl Provider {
    /// The fixture district, with a few of the shapes real providers send.
    pub fn new(auth: ProviderAuth) -> Provider {
        let mut provider = Provider::serving(auth, &base());
        let records = &mut provider.records;
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
        provider
    }

    /// The served record of an endpoint with this sourcedId, to change between pulls.
    pub fn record(&mut self, endpoint: &str, id: &str) -> &mut Value {
        self.records
            .get_mut(endpoint)
            .and_then(|all| all.iter_mut().find(|r| r["sourcedId"] == id))
            .unwrap_or_else(|| panic!("the provider serves no {endpoint} {id}"))
    }

    /// The seven files of a bundle folder, as they are; at most two records a page until `cap` is set.
    pub fn serving(auth: ProviderAuth, dir: &Path) -> Provider {
        let mut records = BTreeMap::new();
        for (path, kind) in ENTITIES {
            if dir.join(kind.file_name()).exists() {
                records.insert(path.to_string(), rest_records_in(dir, kind));
            }
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
            envelope: BTreeMap::new(),
            overcount: BTreeMap::new(),
            unsupported: Vec::new(),
            body_credentials_only: false,
        }
    }
}

pub type Shared = Arc<Mutex<Provider>>;

pub fn header_of(rq: &tiny_http::Request, name: &'static str) -> Option<String> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

/// Checks an OAuth 1.0a `Authorization` header against the request as it arrived.
pub fn signed(url: &url::Url, header: &str) -> bool {
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

pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub fn respond(rq: tiny_http::Request, status: u16, body: &Value, headers: &[(&str, String)]) {
    let mut response = tiny_http::Response::from_string(body.to_string()).with_status_code(status);
    response.add_header(
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"),
    );
    for (k, v) in headers {
        response.add_header(tiny_http::Header::from_bytes(*k, v.as_bytes()).expect("header"));
    }
    let _ = rq.respond(response);
}

pub fn status_body(description: &str) -> Value {
    json!({"imsx_statusInfo": {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": description}})
}

/// Serves `provider` on loopback; returns its base URL (`http://127.0.0.1:PORT`).
pub fn serve(provider: Shared) -> String {
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
                let in_body = body.contains(&format!("client_id={KEY}"))
                    && body.contains(&format!("client_secret={SECRET}"));
                let accepted = if p.body_credentials_only {
                    in_body && basic.is_empty()
                } else {
                    basic == expected
                };
                if accepted && body.contains("grant_type=client_credentials") {
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
            if p.unsupported.contains(&endpoint) {
                let body = json!({"imsx_statusInfo": {"imsx_codeMajor": "unsupported", "imsx_severity": "error", "imsx_description": "not offered"}});
                respond(rq, 400, &body, &[]);
                continue;
            }
            if p.missing.contains(&endpoint) {
                respond(rq, 404, &status_body("unknown object"), &[]);
                continue;
            }
            let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            let offset: usize = get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let since = get("filter").and_then(|f| {
                f.strip_prefix("dateLastModified>'")
                    .and_then(|r| r.strip_suffix('\''))
                    .map(str::to_string)
            });
            // Sorted by sourcedId in place when a pull starts an endpoint (tests change records between
            // pulls); pages are served from the stored order, so a page of a large district costs only its
            // own records, not a walk of all of them.
            if offset == 0
                && let Some(records) = p.records.get_mut(&endpoint)
            {
                records.sort_by(|a, b| a["sourcedId"].as_str().cmp(&b["sourcedId"].as_str()));
            }
            let stored = p.records.get(&endpoint).map_or(&[][..], Vec::as_slice);
            let take = limit.min(p.cap);
            let (total, page): (usize, Vec<Value>) = match since.as_deref() {
                None if !p.shifting.contains(&endpoint) => (
                    stored.len(),
                    stored.iter().skip(offset).take(take).cloned().collect(),
                ),
                _ => {
                    let mut all: Vec<&Value> = stored
                        .iter()
                        .filter(|r| {
                            since.as_deref().is_none_or(|since| {
                                r["dateLastModified"].as_str().unwrap_or("") > since
                            })
                        })
                        .collect();
                    if p.shifting.contains(&endpoint) && offset > 0 {
                        // A record added at the front after the first page: everything moves down one.
                        let first = all[0];
                        all.insert(0, first);
                    }
                    let page = all.iter().skip(offset).take(take).map(|r| (*r).clone());
                    (all.len(), page.collect())
                }
            };
            let key = if p.no_envelope.contains(&endpoint) {
                "data".to_string()
            } else {
                p.envelope
                    .get(&endpoint)
                    .cloned()
                    .unwrap_or_else(|| endpoint.clone())
            };
            let claimed = total + p.overcount.get(&endpoint).copied().unwrap_or(0);
            let mut headers = vec![("X-Total-Count", claimed.to_string())];
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

/// Runs `command` (a `source set ... --secret-stdin`) with the test secret on its standard input.
pub fn with_secret_on_stdin(command: &mut Command) -> Output {
    let mut child = command
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
        .expect("write the secret");
    child.wait_with_output().expect("wait")
}
