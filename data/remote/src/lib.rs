//! # trackflow-remote
//!
//! The sync server as the client reaches it: the domain's [`RemoteDataSource`] over reqwest
//! (rustls; no system OpenSSL), with timeouts, one connection pool per remote, and every failure
//! classified for the retry logic:
//!
//! - unreachable: no connection could be made (refused, no route, name lookup failed), so the
//!   request was certainly not delivered;
//! - busy: 429 and 503, the server declined to process the request (with its `Retry-After`, in
//!   seconds or as an HTTP date);
//! - transient: connection cut, timeouts, other 5xx and 408: the request may have been applied;
//! - re-authenticate: 401, or no token stored;
//! - permanent: every other 4xx, with the server's `{code, message}`.

use async_trait::async_trait;
use reqwest::{header::RETRY_AFTER, Client, StatusCode};
use serde::de::DeserializeOwned;
use shaku::Component;
use std::{sync::Arc, time::Duration};
use trackflow_domain::{
    entities::Registry,
    ports::{
        BlobRemote, EventSource, EventStream, HealthProbe, RemoteDataSource, RemoteError, ServerClock,
        ServerEvent, SessionStorage,
    },
    protocol::{
        AccountSummary, ApiError, AuthResponse, HealthResponse, LogInRequest, PullRequest, PullResponse,
        PushRequest, PushResponse, ScopesResponse, SignUpRequest, SCHEMA_VERSION_HEADER, SERVER_TIME_HEADER,
    },
    BlobHash, EntityRef, Timestamp,
};

/// Timeouts of the HTTP client.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Giving up on establishing a connection.
    pub connect_timeout: Duration,
    /// Giving up on a whole request, response included.
    pub request_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(5), request_timeout: Duration::from_secs(30) }
    }
}

/// The reqwest remote. Server URL and token come from [`SessionStorage`] on every request, so a
/// new log-in takes effect at once.
#[derive(Component)]
#[shaku(interface = RemoteDataSource)]
pub struct HttpRemote {
    /// Where the server URL and the token are kept.
    #[shaku(inject)]
    session: Arc<dyn SessionStorage>,
    /// The HTTP client and its connection pool.
    client: Client,
    /// The client for downloads and the event stream: no limit on a whole request, one
    /// between reads.
    blob_client: Client,
    /// The limit on an ordinary request, which uploads extend with their size.
    request_timeout: Duration,
    /// Told the server's clock from every answer, if the program keeps one.
    server_clock: Option<Arc<ServerClock>>,
}

impl HttpRemote {
    /// A remote with its own connection pool.
    pub fn new(session: Arc<dyn SessionStorage>, options: &RemoteOptions) -> Result<Self, RemoteError> {
        Ok(Self {
            session,
            client: http_client(options)?,
            blob_client: blob_client(options)?,
            request_timeout: options.request_timeout,
            server_clock: None,
        })
    }

    /// The parameters shaku needs to build an [`HttpRemote`] component.
    pub fn parameters(options: &RemoteOptions) -> Result<HttpRemoteParameters, RemoteError> {
        Ok(HttpRemoteParameters {
            client: http_client(options)?,
            blob_client: blob_client(options)?,
            request_timeout: options.request_timeout,
            server_clock: None,
        })
    }

    /// Tells `clock` the server's clock from every answer
    /// ([`SERVER_TIME_HEADER`]).
    pub fn with_server_clock(mut self, clock: Arc<ServerClock>) -> Self {
        self.server_clock = Some(clock);
        self
    }

    /// The account `email` belongs to, `None` if no account uses it (to invite its owner).
    #[tracing::instrument(skip_all, err)]
    pub async fn account(&self, email: &str) -> Result<Option<AccountSummary>, RemoteError> {
        let (url, token) = self.target("/v1/accounts").await?;
        let response = self.send(self.client.get(url).bearer_auth(token).query(&[("email", email)])).await;
        match read(response).await {
            Err(RemoteError::Permanent { code, .. }) if code == "no_account" => Ok(None),
            other => other.map(Some),
        }
    }

    /// Sends `request`, telling the server clock what the answer says of the server's.
    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        let started = std::time::Instant::now();
        let response = request.send().await;
        if let (Ok(answer), Some(clock)) = (&response, &self.server_clock) {
            if let Some(server) = server_time(answer.headers()) {
                clock.observe(server, started.elapsed());
            }
        }
        response
    }

    /// Where to send, and with which token.
    async fn target(&self, path: &str) -> Result<(String, String), RemoteError> {
        let session = self.stored_session().await?;
        let base = server_url(session.server_url.as_deref())?;
        let token = session.access_token.ok_or_else(|| RemoteError::Unauthorized("not signed in".into()))?;
        Ok((format!("{base}{path}"), token.expose().to_owned()))
    }

    async fn stored_session(&self) -> Result<trackflow_domain::ports::Session, RemoteError> {
        self.session
            .load()
            .await
            .map_err(|e| RemoteError::Transient {
                message: format!("reading the session: {e}"),
                retry_after_ms: None,
            })?
            .ok_or_else(|| RemoteError::Unauthorized("not signed in".into()))
    }
}

/// The server's clock when it answered, from its answer's headers.
fn server_time(headers: &reqwest::header::HeaderMap) -> Option<Timestamp> {
    let text = headers.get(SERVER_TIME_HEADER)?.to_str().ok()?;
    text.parse().ok().map(Timestamp)
}

/// The configured server URL without a trailing slash.
fn server_url(url: Option<&str>) -> Result<&str, RemoteError> {
    url.map(|u| u.trim_end_matches('/')).ok_or_else(|| RemoteError::Permanent {
        code: "no_server".into(),
        message: "no sync server is configured".into(),
        mutation_id: None,
    })
}

#[async_trait]
impl HealthProbe for HttpRemote {
    /// Asks the configured server's health endpoint; needs no token.
    #[tracing::instrument(skip_all, err)]
    async fn probe(&self) -> Result<(), RemoteError> {
        let session = self.stored_session().await?;
        let url = format!("{}/v1/health", server_url(session.server_url.as_deref())?);
        let health: HealthResponse = read(self.send(self.client.get(url)).await).await?;
        match health.status.as_str() {
            "ok" => Ok(()),
            other => Err(RemoteError::Busy {
                message: format!("the server reports {other}"),
                retry_after_ms: None,
            }),
        }
    }
}

/// Account calls: sign up and log in, against a server URL given outright (no session yet).
#[derive(Clone)]
pub struct AuthClient {
    client: Client,
}

impl AuthClient {
    /// A client with its own connection pool.
    pub fn new(options: &RemoteOptions) -> Result<Self, RemoteError> {
        Ok(Self { client: http_client(options)? })
    }

    /// Creates an account on the server at `server`.
    #[tracing::instrument(skip_all, fields(server), err)]
    pub async fn sign_up(&self, server: &str, request: &SignUpRequest) -> Result<AuthResponse, RemoteError> {
        let url = format!("{}/v1/auth/signup", server.trim_end_matches('/'));
        read(self.client.post(url).json(request).send().await).await
    }

    /// Revokes `token` on the server at `server`.
    #[tracing::instrument(skip_all, fields(server), err)]
    pub async fn log_out(&self, server: &str, token: &str) -> Result<(), RemoteError> {
        let url = format!("{}/v1/auth/logout", server.trim_end_matches('/'));
        let response = self.client.post(url).bearer_auth(token).send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(failure(response, status).await)
    }

    /// Logs in to an account on the server at `server`.
    #[tracing::instrument(skip_all, fields(server), err)]
    pub async fn log_in(&self, server: &str, request: &LogInRequest) -> Result<AuthResponse, RemoteError> {
        let url = format!("{}/v1/auth/login", server.trim_end_matches('/'));
        read(self.client.post(url).json(request).send().await).await
    }
}

fn http_client(options: &RemoteOptions) -> Result<Client, RemoteError> {
    build_client(Client::builder().timeout(options.request_timeout), options)
}

/// A client whose requests may take as long as they keep moving.
fn blob_client(options: &RemoteOptions) -> Result<Client, RemoteError> {
    build_client(Client::builder().read_timeout(options.request_timeout), options)
}

/// Every request announces the installed registry's schema version
/// ([`SCHEMA_VERSION_HEADER`]), read when the client is built (the registry is installed first).
fn build_client(builder: reqwest::ClientBuilder, options: &RemoteOptions) -> Result<Client, RemoteError> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(SCHEMA_VERSION_HEADER, reqwest::header::HeaderValue::from(Registry::global().version()));
    builder
        .default_headers(headers)
        .connect_timeout(options.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| RemoteError::Permanent {
            code: "client".into(),
            message: e.to_string(),
            mutation_id: None,
        })
}

#[async_trait]
impl RemoteDataSource for HttpRemote {
    #[tracing::instrument(skip_all, fields(mutations = request.mutations.len()), err)]
    async fn push(&self, request: &PushRequest) -> Result<PushResponse, RemoteError> {
        let (url, token) = self.target("/v1/sync/push").await?;
        let response = self.send(self.client.post(url).bearer_auth(token).json(request)).await;
        read(response).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn pull(&self, request: PullRequest) -> Result<PullResponse, RemoteError> {
        let (url, token) = self.target("/v1/sync/pull").await?;
        let mut query = vec![("limit", request.limit.to_string())];
        if let Some(cursor) = request.cursor {
            query.push(("cursor", cursor));
        }
        if let Some(scope) = request.scope {
            query.push(("scope", scope));
        }
        let response = self.send(self.client.get(url).bearer_auth(token).query(&query)).await;
        read(response).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn scopes(&self) -> Result<ScopesResponse, RemoteError> {
        let (url, token) = self.target("/v1/sync/scopes").await?;
        read(self.send(self.client.get(url).bearer_auth(token)).await).await
    }
}

/// Turns a response (or a transport failure) into the answer or a classified error.
/// Blob transfers stream: their bodies never sit in memory whole, and their time limit is
/// between reads, not on the whole transfer (a 50 MB file on a slow link takes minutes).
#[async_trait]
impl BlobRemote for HttpRemote {
    #[tracing::instrument(skip_all, fields(%hash), err)]
    async fn upload_offset(&self, hash: &BlobHash) -> Result<Option<u64>, RemoteError> {
        let (url, token) = self.target(&format!("/v1/blobs/{hash}")).await?;
        let response = self.send(self.client.head(url).bearer_auth(token)).await.map_err(transport)?;
        match response.status() {
            // A server that keeps nothing of cut uploads sends no offset: start over.
            StatusCode::NOT_FOUND => Ok(Some(
                response
                    .headers()
                    .get(UPLOAD_OFFSET)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            status if status.is_success() => Ok(None),
            status => Err(failure(response, status).await),
        }
    }

    #[tracing::instrument(skip_all, fields(%hash, offset), err)]
    async fn upload_blob(
        &self,
        hash: &BlobHash,
        file: std::path::PathBuf,
        offset: u64,
    ) -> Result<(), RemoteError> {
        use tokio::io::AsyncSeekExt;
        let (url, token) = self.target(&format!("/v1/blobs/{hash}")).await?;
        let local = |e: std::io::Error| local_file("reading", &file, &e);
        let mut opened = tokio::fs::File::open(&file).await.map_err(local)?;
        let size = opened.metadata().await.map_err(local)?.len();
        // Kept bytes beyond the file's end are not this file's: start over.
        let offset = if offset > size { 0 } else { offset };
        opened.seek(std::io::SeekFrom::Start(offset)).await.map_err(local)?;
        let sending = size - offset;
        // The server answers once the whole body is stored, so a limit between reads would
        // time the whole upload: the limit grows with the file instead, at a floor rate.
        let limit = self.request_timeout + Duration::from_secs(sending / UPLOAD_FLOOR_BYTES_PER_S);
        let response = self
            .client
            .put(url)
            .timeout(limit)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, sending)
            .header(UPLOAD_OFFSET, offset)
            .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                opened,
                UPLOAD_CHUNK,
            )))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The kept bytes changed meanwhile (another attempt, or they expired): ask again.
        if status == StatusCode::CONFLICT {
            return Err(RemoteError::Transient {
                message: "the server keeps a different part of this upload now".into(),
                retry_after_ms: Some(0),
            });
        }
        Err(failure(response, status).await)
    }

    #[tracing::instrument(skip_all, fields(%entity), err)]
    async fn download_file(&self, entity: EntityRef, into: std::path::PathBuf) -> Result<u64, RemoteError> {
        use tokio::io::AsyncWriteExt;
        let path = format!("/v1/files/{}/{}", entity.entity_type, entity.id);
        let (url, token) = self.target(&path).await?;
        let mut response = self.blob_client.get(url).bearer_auth(token).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(response, status).await);
        }
        let local = |e: std::io::Error| local_file("writing", &into, &e);
        if let Some(dir) = into.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(local)?;
        }
        let mut output = tokio::fs::File::create(&into).await.map_err(local)?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            output.write_all(&chunk).await.map_err(local)?;
            written += chunk.len() as u64;
        }
        output.sync_all().await.map_err(local)?;
        Ok(written)
    }
}

/// The event stream over a long-lived GET, parsed by eventsource-stream. No time limit on the
/// whole request (it lasts as long as the connection); the server's keep-alive comments every
/// 15 s keep the between-reads limit from firing on a healthy stream.
#[async_trait]
impl EventSource for HttpRemote {
    #[tracing::instrument(skip_all, err)]
    async fn connect(&self) -> Result<Box<dyn EventStream>, RemoteError> {
        use eventsource_stream::Eventsource;
        let (url, token) = self.target("/v1/events").await?;
        let request =
            self.blob_client.get(url).bearer_auth(token).header(reqwest::header::ACCEPT, "text/event-stream");
        let response = self.send(request).await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(response, status).await);
        }
        Ok(Box::new(SseStream { events: Box::pin(response.bytes_stream().eventsource()) }))
    }
}

type RawEvents = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// An open event stream.
struct SseStream {
    events: RawEvents,
}

#[async_trait]
impl EventStream for SseStream {
    async fn next(&mut self) -> Option<Result<ServerEvent, RemoteError>> {
        use futures_util::StreamExt;
        loop {
            let event = match self.events.next().await? {
                Ok(event) => event,
                Err(error) => {
                    return Some(Err(RemoteError::Transient {
                        message: format!("event stream: {error}"),
                        retry_after_ms: None,
                    }))
                }
            };
            match event.event.as_str() {
                "ready" => return Some(Ok(ServerEvent::Ready)),
                "poke" => {
                    return Some(serde_json::from_str(&event.data).map(ServerEvent::Poke).map_err(|e| {
                        RemoteError::Transient {
                            message: format!("unreadable poke: {e}"),
                            retry_after_ms: None,
                        }
                    }))
                }
                // Events a newer server sends that this client does not know.
                _ => continue,
            }
        }
    }
}

/// How much of a file an upload reads at once: large enough that the per-chunk costs (a read,
/// a body frame) vanish, small enough that memory stays flat.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// The header naming where an upload resumes (the server's `Upload-Offset`).
const UPLOAD_OFFSET: &str = "upload-offset";

/// The slowest upload allowed to finish: 64 KiB/s (a 50 MB file may take 13 minutes).
const UPLOAD_FLOOR_BYTES_PER_S: u64 = 64 * 1024;

/// A local file of a transfer could not be read or written: retrying will not help.
fn local_file(action: &str, path: &std::path::Path, error: &std::io::Error) -> RemoteError {
    RemoteError::Permanent {
        code: "local_file".into(),
        message: format!("{action} {}: {error}", path.display()),
        mutation_id: None,
    }
}

/// The error an unsuccessful answer stands for.
async fn failure(response: reqwest::Response, status: StatusCode) -> RemoteError {
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match response.bytes().await {
        Ok(body) => classify(status, retry_after.as_deref(), &body, std::time::SystemTime::now()),
        Err(error) => transport(error),
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Result<reqwest::Response>) -> Result<T, RemoteError> {
    let response = response.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(failure(response, status).await);
    }
    let body = response.bytes().await.map_err(transport)?;
    // A success we cannot read is the server's fault, or a response cut short: retry later.
    serde_json::from_slice(&body).map_err(|e| RemoteError::Transient {
        message: format!("unreadable answer from the server: {e}"),
        retry_after_ms: None,
    })
}

fn transport(e: reqwest::Error) -> RemoteError {
    // reqwest's own message leaves out the cause ("Connection refused", ...): add the chain.
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(inner) = cause {
        message = format!("{message}: {inner}");
        cause = inner.source();
    }
    if e.is_connect() {
        return RemoteError::Unreachable { message: format!("cannot connect: {message}") };
    }
    let what = if e.is_timeout() { "timed out" } else { "connection failed" };
    RemoteError::Transient { message: format!("{what}: {message}"), retry_after_ms: None }
}

/// Classifies an error status. Pure, so the table of cases is tested without a network.
pub fn classify(
    status: StatusCode,
    retry_after: Option<&str>,
    body: &[u8],
    now: std::time::SystemTime,
) -> RemoteError {
    let error: Option<ApiError> = serde_json::from_slice(body).ok();
    let message = error.as_ref().map_or_else(|| status.to_string(), |e| e.message.clone());
    match status {
        StatusCode::UNAUTHORIZED => RemoteError::Unauthorized(message),
        StatusCode::UPGRADE_REQUIRED => RemoteError::UpgradeRequired {
            min_version: error.and_then(|e| e.min_version).unwrap_or(0),
            version: Registry::global().version(),
            message,
        },
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            RemoteError::Busy { message, retry_after_ms: retry_after.and_then(|v| retry_after_ms(v, now)) }
        }
        s if s == StatusCode::REQUEST_TIMEOUT || s.is_server_error() => RemoteError::Transient {
            message,
            retry_after_ms: retry_after.and_then(|v| retry_after_ms(v, now)),
        },
        s => RemoteError::Permanent {
            code: error.as_ref().map_or_else(|| format!("http_{}", s.as_u16()), |e| e.code.clone()),
            message,
            mutation_id: error.and_then(|e| e.mutation_id),
        },
    }
}

/// `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP date (RFC 9110, 10.2.3).
fn retry_after_ms(value: &str, now: std::time::SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn statuses_are_classified_for_retry_logic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let body = br#"{"code":"forbidden","message":"viewers cannot change a project"}"#;
        let date = httpdate::fmt_http_date(now + Duration::from_secs(120));
        // (case, status, Retry-After, expected)
        let cases: Vec<(&str, u16, Option<&str>, RemoteError)> = vec![
            (
                "401 re-authenticates",
                401,
                None,
                RemoteError::Unauthorized("viewers cannot change a project".into()),
            ),
            (
                "403 is permanent with the server's code",
                403,
                None,
                RemoteError::Permanent {
                    code: "forbidden".into(),
                    message: "viewers cannot change a project".into(),
                    mutation_id: None,
                },
            ),
            (
                "422 is permanent",
                422,
                None,
                RemoteError::Permanent {
                    code: "forbidden".into(),
                    message: "viewers cannot change a project".into(),
                    mutation_id: None,
                },
            ),
            (
                "408 is transient",
                408,
                None,
                RemoteError::Transient {
                    message: "viewers cannot change a project".into(),
                    retry_after_ms: None,
                },
            ),
            (
                "429 honours Retry-After seconds",
                429,
                Some("7"),
                RemoteError::Busy {
                    message: "viewers cannot change a project".into(),
                    retry_after_ms: Some(7_000),
                },
            ),
            (
                "429 honours an HTTP date",
                429,
                Some(&date),
                RemoteError::Busy {
                    message: "viewers cannot change a project".into(),
                    retry_after_ms: Some(120_000),
                },
            ),
            (
                "500 is transient",
                500,
                None,
                RemoteError::Transient {
                    message: "viewers cannot change a project".into(),
                    retry_after_ms: None,
                },
            ),
            (
                "503 with Retry-After",
                503,
                Some("2"),
                RemoteError::Busy {
                    message: "viewers cannot change a project".into(),
                    retry_after_ms: Some(2_000),
                },
            ),
            (
                "garbage Retry-After is ignored",
                502,
                Some("soon"),
                RemoteError::Transient {
                    message: "viewers cannot change a project".into(),
                    retry_after_ms: None,
                },
            ),
        ];
        for (case, status, retry_after, expected) in cases {
            let got = classify(StatusCode::from_u16(status).expect("status"), retry_after, body, now);
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn a_refused_push_names_its_mutation() {
        let id = trackflow_domain::OperationId::new();
        let body = format!(r#"{{"code":"invalid_field","message":"name: empty","mutation_id":"{id}"}}"#);
        let got = classify(StatusCode::UNPROCESSABLE_ENTITY, None, body.as_bytes(), SystemTime::now());
        assert!(matches!(got, RemoteError::Permanent { mutation_id: Some(m), .. } if m == id), "{got:?}");
    }

    #[test]
    fn a_server_needing_a_newer_schema_asks_for_an_upgrade() {
        let body = br#"{"code":"upgrade_required","message":"upgrade the app","min_version":3}"#;
        let got = classify(StatusCode::UPGRADE_REQUIRED, None, body, SystemTime::now());
        assert!(
            matches!(&got, RemoteError::UpgradeRequired { min_version: 3, message, .. } if message == "upgrade the app"),
            "{got:?}"
        );
    }

    #[test]
    fn a_body_that_is_not_an_api_error_still_classifies() {
        let got = classify(StatusCode::NOT_FOUND, None, b"<html>", SystemTime::now());
        assert_eq!(
            got,
            RemoteError::Permanent {
                code: "http_404".into(),
                message: "404 Not Found".into(),
                mutation_id: None
            }
        );
        assert!(classify(StatusCode::BAD_GATEWAY, None, b"", SystemTime::now()).is_transient());
    }
}
