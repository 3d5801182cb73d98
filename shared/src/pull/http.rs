//! The HTTP side of a pull: one blocking client (rustls, no OpenSSL) with bounded timeouts, each request
//! signed (OAuth 1.0a) or carrying a bearer token (OAuth 2, fetched and cached until shortly before it expires,
//! fetched again once on a 401), and retried on 429 and 5xx after `Retry-After` or an exponential backoff with
//! jitter, bounded in attempts and in total time. Nothing here logs or returns a secret.

use super::oauth::{self, SignatureMethod, Signing};
use super::source::{ApiSource, Auth, Credentials};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Read as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long the client waits, and how often it tries again.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// For one whole response, body included.
    pub response_timeout: Duration,
    /// Attempts of one request, the first included.
    pub attempts: u32,
    /// Time one request may take over all its attempts.
    pub total: Duration,
    /// The first backoff; each retry doubles it, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The largest response body read.
    pub max_body: u64,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
            attempts: 6,
            total: Duration::from_secs(300),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_body: 512 << 20,
        }
    }
}

impl ClientOptions {
    /// For `source check`: one record an endpoint, so short bounds (seven endpoints stay well within a
    /// Lambda's 15 minutes, and an operator waits seconds, not half an hour, for an unreachable host).
    pub fn probe() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(20),
            attempts: 2,
            total: Duration::from_secs(30),
            ..ClientOptions::default()
        }
    }
}

/// A request that got no usable answer.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("{url}: the API URL is not a usable http(s) URL")]
    BadUrl { url: String },
    #[error(
        "{url}: no answer ({reason}) after {attempts} attempts; check the API URL and that the server is up"
    )]
    Unreachable {
        url: String,
        reason: String,
        attempts: u32,
    },
    #[error(
        "{url}: the server kept answering {status} ({attempts} attempts over {seconds} s); try again later"
    )]
    GaveUp {
        url: String,
        status: u16,
        attempts: u32,
        seconds: u64,
    },
    #[error(
        "{url}: the response is larger than {limit} bytes; ask for smaller pages (--page-size)"
    )]
    TooLarge { url: String, limit: u64 },
    #[error(
        "the token URL {url} refused the client credentials (HTTP {status}{}); check the key, the secret and the scope",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    TokenRefused {
        url: String,
        status: u16,
        description: Option<String>,
    },
    #[error("the token URL {url} answered without an access_token; check the token URL")]
    NoToken { url: String },
    #[error("oauth2 needs a token URL: give --token-url")]
    NoTokenUrl,
}

/// An answer: its status, the headers paging reads, and its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `Link` header's `rel="next"` target, when there is one.
    pub next: Option<String>,
    /// `X-Total-Count`, when sent.
    pub total: Option<u64>,
    pub body: Vec<u8>,
}

/// A cached OAuth 2 token and when to stop using it.
struct Token {
    value: String,
    until: Instant,
}

/// A client for one provider.
pub struct Client {
    http: reqwest::blocking::Client,
    base: url::Url,
    auth: Auth,
    credentials: Credentials,
    token_url: Option<String>,
    scope: Option<String>,
    token: Mutex<Option<Token>>,
    options: ClientOptions,
    random: SystemRandom,
}

impl Client {
    pub fn new(
        source: &ApiSource,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Client, HttpError> {
        let bad = || HttpError::BadUrl {
            url: source.api_url.clone(),
        };
        let mut base = url::Url::parse(&format!("{}/", source.api_url.trim_end_matches('/')))
            .map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad());
        }
        base.set_query(None);
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.response_timeout)
            .user_agent(concat!("rollcall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Unreachable {
                url: source.api_url.clone(),
                reason: e.to_string(),
                attempts: 0,
            })?;
        if source.auth == Auth::OAuth2 && source.token_url.is_none() {
            return Err(HttpError::NoTokenUrl);
        }
        Ok(Client {
            http,
            base,
            auth: source.auth,
            credentials,
            token_url: source.token_url.clone(),
            scope: source.scope.clone(),
            token: Mutex::new(None),
            options,
            random: SystemRandom::new(),
        })
    }

    /// The URL of an endpoint (`users`) under the API base.
    pub fn endpoint_url(&self, endpoint: &str) -> Result<url::Url, HttpError> {
        self.base.join(endpoint).map_err(|_| HttpError::BadUrl {
            url: format!("{}{endpoint}", self.base),
        })
    }

    /// A link the server gave (absolute, or relative to the API base).
    pub fn resolve(&self, link: &str) -> Result<url::Url, HttpError> {
        self.base.join(link).map_err(|_| HttpError::BadUrl {
            url: link.to_string(),
        })
    }

    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        // A failing system random source leaves zeros: a weaker nonce, never a stop.
        let _ = self.random.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// GETs `url` with `params` as its query (any query `url` had is taken into `params` first, so a server's
    /// next link is signed as it is sent).
    pub fn get(&self, url: &url::Url, params: &[(String, String)]) -> Result<Answer, HttpError> {
        let mut all: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        all.extend(params.iter().cloned());
        let mut bare = url.clone();
        bare.set_query(None);
        let query = oauth::query(&all);
        let full = if query.is_empty() {
            bare.to_string()
        } else {
            format!("{bare}?{query}")
        };
        let shown = bare.to_string();
        let started = Instant::now();
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.authorization(&bare, &all)?;
            let sent = self
                .http
                .get(&full)
                .header("Accept", "application/json")
                .header("Authorization", authorization)
                .send();
            let retry_after = match sent {
                Err(e) => {
                    let reason = describe(&e);
                    if !self.may_retry(attempt, started, None) {
                        return Err(HttpError::Unreachable {
                            url: shown,
                            reason,
                            attempts: attempt,
                        });
                    }
                    None
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 401 && self.auth == Auth::OAuth2 && !refreshed {
                        // The token may have been revoked or expired early: fetch it again, once.
                        refreshed = true;
                        self.forget_token();
                        continue;
                    }
                    if status == 429 || (500..600).contains(&status) {
                        let after = retry_after(&response);
                        if !self.may_retry(attempt, started, after) {
                            return Err(HttpError::GaveUp {
                                url: shown,
                                status,
                                attempts: attempt,
                                seconds: started.elapsed().as_secs(),
                            });
                        }
                        after
                    } else {
                        return self.answer(response, &shown);
                    }
                }
            };
            std::thread::sleep(self.delay(attempt, retry_after));
        }
    }

    fn may_retry(&self, attempt: u32, started: Instant, after: Option<Duration>) -> bool {
        let next = self.delay(attempt, after);
        attempt < self.options.attempts && started.elapsed() + next <= self.options.total
    }

    /// How long to wait before attempt `attempt + 1`: what the server asked, or a backoff with full jitter.
    fn delay(&self, attempt: u32, after: Option<Duration>) -> Duration {
        if let Some(after) = after {
            return after.min(self.options.max_delay);
        }
        let ceiling = self
            .options
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.options.max_delay);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(self.random_u64() % millis)
    }

    fn answer(
        &self,
        response: reqwest::blocking::Response,
        shown: &str,
    ) -> Result<Answer, HttpError> {
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let next = header("link").and_then(|l| next_link(&l));
        let total = header("x-total-count").and_then(|t| t.trim().parse().ok());
        let limit = self.options.max_body;
        let mut body = Vec::new();
        response
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| HttpError::Unreachable {
                url: shown.to_string(),
                reason: format!("the answer broke off: {e}"),
                attempts: 1,
            })?;
        if body.len() as u64 > limit {
            return Err(HttpError::TooLarge {
                url: shown.to_string(),
                limit,
            });
        }
        Ok(Answer {
            status,
            next,
            total,
            body,
        })
    }

    fn authorization(
        &self,
        bare: &url::Url,
        params: &[(String, String)],
    ) -> Result<String, HttpError> {
        let method = match self.auth {
            Auth::OAuth2 => return Ok(format!("Bearer {}", self.bearer()?)),
            Auth::OAuth1Sha256 => SignatureMethod::HmacSha256,
            Auth::OAuth1Sha1 => SignatureMethod::HmacSha1,
        };
        let nonce = format!("{:016x}{:016x}", self.random_u64(), self.random_u64());
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base_uri = oauth::base_uri(bare);
        let signing = Signing {
            method: "GET",
            base_uri: &base_uri,
            params,
            consumer_key: &self.credentials.key,
            consumer_secret: &self.credentials.secret,
            nonce: &nonce,
            timestamp,
            signature_method: method,
        };
        Ok(signing.header())
    }

    fn forget_token(&self) {
        if let Ok(mut token) = self.token.lock() {
            *token = None;
        }
    }

    /// The cached token, or a new one from the token URL.
    fn bearer(&self) -> Result<String, HttpError> {
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.until) {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token()?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Client credentials: HTTP Basic first (what providers prefer), the credentials in the form body if the
    /// token URL refuses that.
    fn fetch_token(&self) -> Result<Token, HttpError> {
        let url = self.token_url.clone().ok_or(HttpError::NoTokenUrl)?;
        let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
        if let Some(scope) = &self.scope {
            form.push(("scope".into(), scope.clone()));
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.credentials.key, self.credentials.secret
        ));
        let post = |body: String, basic: Option<&str>| {
            let mut request = self
                .http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .body(body);
            if let Some(b) = basic {
                request = request.header("Authorization", format!("Basic {b}"));
            }
            request.send().map_err(|e| HttpError::Unreachable {
                url: url.clone(),
                reason: describe(&e),
                attempts: 1,
            })
        };
        let mut response = post(oauth::query(&form), Some(&basic))?;
        if matches!(response.status().as_u16(), 400 | 401) {
            let mut in_body = form.clone();
            in_body.push(("client_id".into(), self.credentials.key.clone()));
            in_body.push(("client_secret".into(), self.credentials.secret.clone()));
            response = post(oauth::query(&in_body), None)?;
        }
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let _ = response.take(1 << 20).read_to_end(&mut body);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !(200..300).contains(&status) {
            let description = json
                .get("error_description")
                .or_else(|| json.get("error"))
                .and_then(|d| d.as_str())
                .map(|d| scrub(d, &self.credentials));
            return Err(HttpError::TokenRefused {
                url,
                status,
                description,
            });
        }
        let value = json
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HttpError::NoToken { url: url.clone() })?
            .to_string();
        let lifetime = json
            .get("expires_in")
            .and_then(|e| {
                e.as_u64()
                    .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(3600);
        // Used until shortly before it expires: a tenth of its life early, at most a minute.
        let margin = (lifetime / 10).min(60);
        Ok(Token {
            value,
            until: Instant::now() + Duration::from_secs(lifetime.saturating_sub(margin)),
        })
    }
}

/// What went wrong with a request, in words (reqwest's own text names the URL, never a header).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }
}

/// A server's message with the key and secret taken out, should it echo them.
pub fn scrub(text: &str, credentials: &Credentials) -> String {
    let mut out = text.to_string();
    for s in [&credentials.secret, &credentials.key] {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "(hidden)");
        }
    }
    out
}

/// `Retry-After` in seconds (a date is taken as no advice).
fn retry_after(response: &reqwest::blocking::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        assert_eq!(
            next_link(
                "<https://x/users?offset=0>; rel=\"first\", <https://x/users?offset=100&limit=100>; rel=\"next\""
            ),
            Some("https://x/users?offset=100&limit=100".to_string())
        );
        assert_eq!(next_link("<https://x/users?offset=0>; rel=\"last\""), None);
    }

    #[test]
    fn a_secret_echoed_by_a_server_is_hidden() {
        let c = Credentials {
            key: "k1".into(),
            secret: "s3cr3t".into(),
        };
        assert_eq!(
            scrub("bad client k1:s3cr3t", &c),
            "bad client (hidden):(hidden)"
        );
    }
}
