//! `rollcall source` and `rollcall pull` against a OneRoster 1.1 provider: a real HTTP server on loopback that
//! serves the base fixture district as REST JSON (GUIDRefs, arrays, string booleans, relative hrefs), checks
//! every request's OAuth 1.0a signature or bearer token, caps its pages, answers 429 and 503 now and then,
//! pages one endpoint by `Link` headers, and filters on `dateLastModified` for deltas.

mod common;

use common::provider::{
    ENTITIES, KEY, Provider, ProviderAuth, SECRET, base, serve, with_secret_on_stdin,
};
use rollcall::spec::FileKind;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

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
    with_secret_on_stdin(
        Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(&args)
            .env("ROLLCALL_DB", db)
            .env_remove("ROLLCALL_API_SECRET"),
    )
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
        let ana = p.record("users", "tch-1");
        ana["givenName"] = json!("Anna");
        ana["dateLastModified"] = json!(later);
        let enrollment = p.record("enrollments", "enr-2");
        enrollment["status"] = json!("tobedeleted");
        enrollment["dateLastModified"] = json!(later);
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
    let third_cursor = third["pull"]["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();

    // A held delta that ops reject leaves the cursor where it was, and nothing waits any more.
    {
        let mut p = provider.lock().expect("provider");
        let enrollment = p.record("enrollments", "enr-3");
        enrollment["status"] = json!("tobedeleted");
        enrollment["dateLastModified"] = json!("2099-01-02T00:00:00.000Z");
    }
    let fourth = rollcall(&db, &["pull", "--tenant", "maple", "--format", "json"]);
    assert_eq!(fourth.status.code(), Some(3), "{}", text(&fourth));
    let fourth: Value = serde_json::from_slice(&fourth.stdout).expect("json");
    let held = fourth["batch"].as_str().expect("batch");
    assert!(text(&rollcall(&db, &["tenant", "list"])).contains("waits for approval"));
    let rejected = rollcall(&db, &["reject", held]);
    assert_eq!(rejected.status.code(), Some(0), "{}", text(&rejected));
    let listed = text(&rollcall(&db, &["tenant", "list"]));
    assert!(
        listed.contains(&format!("delta cursor {third_cursor}")),
        "{listed}"
    );
    assert!(!listed.contains("waits for approval"), "{listed}");
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
    // A token URL that refuses HTTP Basic gets the credentials in the form body instead.
    provider.lock().expect("provider").body_credentials_only = true;
    let body = rollcall(&db, &["pull", "--tenant", "maple", "--full"]);
    assert_eq!(body.status.code(), Some(0), "{}", text(&body));
    assert_eq!(
        provider.lock().expect("provider").token_requests,
        5,
        "Basic refused, then the form body taken"
    );
}

#[test]
fn alternate_envelope_keys_and_an_unsupported_optional_endpoint_are_taken_as_servers_send_them() {
    let dir = tempfile::tempdir().expect("temp");
    let mut provider = Provider::new(ProviderAuth::OAuth1);
    for (endpoint, key) in [
        ("users", "students"),
        ("orgs", "schools"),
        ("academicSessions", "terms"),
    ] {
        provider.envelope.insert(endpoint.into(), key.into());
    }
    provider.unsupported.push("demographics".into());
    let provider = Arc::new(Mutex::new(provider));
    let origin = serve(Arc::clone(&provider));
    let (db, _) = api_tenant(dir.path(), &origin, &[]);
    let pulled = rollcall(&db, &["pull", "--tenant", "maple", "--format", "json"]);
    assert_eq!(pulled.status.code(), Some(0), "{}", text(&pulled));
    assert!(
        String::from_utf8_lossy(&pulled.stderr).contains(
            "warning: demographics: the server does not offer it (HTTP 400); the bundle has no demographics.csv\n"
        ),
        "{}",
        text(&pulled)
    );
    let outcome: Value = serde_json::from_slice(&pulled.stdout).expect("json");
    assert_eq!(outcome["status"], "applied");
    let roster = roster(&db);
    assert_eq!(roster["users"].len(), 5);
    assert_eq!(roster["orgs"].len(), 3);
    assert_eq!(roster["academicSessions"].len(), 3);
    assert_eq!(roster["demographics"].len(), 0);
}

#[test]
fn fewer_records_than_the_total_count_says_fails_the_pull() {
    let dir = tempfile::tempdir().expect("temp");
    let provider = Arc::new(Mutex::new(Provider::new(ProviderAuth::OAuth1)));
    provider
        .lock()
        .expect("provider")
        .overcount
        .insert("enrollments".into(), 1);
    let origin = serve(Arc::clone(&provider));
    let (db, _) = api_tenant(dir.path(), &origin, &[]);
    let failed = rollcall(&db, &["pull", "--tenant", "maple"]);
    assert_eq!(failed.status.code(), Some(2), "{}", text(&failed));
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr),
        "error: the pull of tenant maple failed: enrollments: 4 records read but the server counts 5 \
         (X-Total-Count); records are missing, pull again\n"
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
