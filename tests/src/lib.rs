//! `TestHost`: the real Tessera host on `127.0.0.1:0` with real plugins, spoken to over HTTP.
//!
//! Plugins and test guests are built once for wasm32-wasip2 by `scripts/build-plugins.sh`
//! (into `target/plugins/` and `target/test-guests/`); tests load those files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::server::{Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod process;

/// `X-Tessera-Signature` of `body` for the generic webhook connector: `sha256=<hex HMAC>`.
pub fn tessera_signature(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A loopback HTTP listener that answers `200 ok` and counts the connections it accepts;
/// returns its `127.0.0.1:PORT`.
pub async fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // Read the request head first, as a real server does: answering before the
                // client has written it races the client's write against the close.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
                    match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await
                    {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// The `p` quantile of sorted durations (nearest rank below).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// The admin key every test host uses.
pub const ADMIN_KEY: &str = "test-admin-key";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of a built plugin or test guest component, `NAME.wasm`.
pub fn artifact(name: &str) -> PathBuf {
    for dir in ["target/plugins", "target/test-guests"] {
        let path = workspace().join(dir).join(format!("{name}.wasm"));
        if path.exists() {
            return path;
        }
    }
    panic!("{name}.wasm is not built: run scripts/build-plugins.sh first");
}

/// The manifest shipped beside a built component.
pub fn manifest(name: &str) -> String {
    std::fs::read_to_string(artifact(name).with_extension("toml"))
        .expect("manifest beside the component")
}

/// A running host, in this process.
pub struct TestHost {
    /// The host's API, spoken to over HTTP.
    pub api: Api,
    /// The data directory (kept across restarts of the same host).
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestHost {
    /// A host on a fresh data directory with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A host on a fresh data directory, with `configure` applied to its config.
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::start_in(tmp.path(), configure).await;
        host._tmp = Some(tmp);
        host
    }

    /// A host on `data_dir` (which may hold a previous host's state).
    pub async fn start_in(data_dir: &Path, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::new(data_dir);
        config.admin_key = Some(ADMIN_KEY.into());
        config.engine.max_instances = 64;
        configure(&mut config);
        let server = Server::start(config).await.expect("host starts");
        let listener = tessera::server::bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let api = Api::new(format!("http://{}", listener.local_addr().expect("addr")));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("host serves");
        });
        Self {
            api,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
            _tmp: None,
        }
    }

    /// Stops the host gracefully; returns its temp dir so a restart can reuse it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("host task");
        }
        self._tmp.take()
    }
}

impl std::ops::Deref for TestHost {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A host's HTTP API with the admin key: what every test speaks to, whether the host runs in
/// this process ([`TestHost`]) or in its own ([`process::HostProcess`]).
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    /// An API client for the host at `base`.
    pub fn new(base: String) -> Self {
        Self {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// A request builder with the admin key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = rb.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text}"));
        (status, value)
    }

    /// GET with the admin key.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// POST JSON with the admin key.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// PUT JSON with the admin key.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }

    /// Uploads raw component bytes with a manifest text.
    pub async fn upload_bytes(&self, component: Vec<u8>, manifest: &str) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest.to_string())
            .part(
                "component",
                reqwest::multipart::Part::bytes(component).file_name("plugin.wasm"),
            );
        self.send(
            self.request(reqwest::Method::POST, "/v1/plugins")
                .multipart(form),
        )
        .await
    }

    /// Uploads a built component with a manifest text; panics unless it is accepted.
    pub async fn upload_with(&self, name: &str, manifest: &str) -> String {
        let (status, body) = self
            .upload_bytes(std::fs::read(artifact(name)).expect("component"), manifest)
            .await;
        assert_eq!(status, StatusCode::CREATED, "upload of {name}: {body}");
        body["sha256"].as_str().expect("sha256").to_string()
    }

    /// Uploads a built component with its own manifest; returns its sha256.
    pub async fn upload(&self, name: &str) -> String {
        self.upload_with(name, &manifest(name)).await
    }

    /// Activates a version as an operator who has read its capability review (`"approve":
    /// true`: anything beyond the defaults needs approval, on a first upload too); panics
    /// unless it goes live. Tests of the review itself post to the route without approval.
    pub async fn activate(&self, id: &str, sha: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/v1/plugins/{id}/activate"),
                &json!({ "sha256": sha, "approve": true }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "activate {id}: {body}");
        body
    }

    /// Uploads and activates a built component with its own manifest; returns its sha256.
    pub async fn install(&self, name: &str, id: &str) -> String {
        let sha = self.upload(name).await;
        self.activate(id, &sha).await;
        sha
    }

    /// Runs a plugin's live version through the console route.
    pub async fn call(&self, id: &str, body: &Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/plugins/{id}/call"), body).await
    }

    /// Calls a connector with a request to `path` carrying `body`.
    pub async fn webhook(&self, id: &str, path: &str, body: &str) -> (StatusCode, Value) {
        self.call(id, &json!({ "request": { "path": path, "body": body } }))
            .await
    }
}

impl Api {
    /// Installs the bundled generic webhook connector (`generic-webhook`) with `secret`;
    /// returns its public webhook URL.
    pub async fn generic_webhook(&self, secret: &str) -> String {
        let sha = self.upload("webhook-connector").await;
        let (status, body) = self
            .put(
                "/v1/plugins/generic-webhook/config",
                &json!({ "secret": secret }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.activate("generic-webhook", &sha).await;
        format!("{}/v1/connectors/generic-webhook/webhook", self.base)
    }

    /// Posts `body` to a generic webhook URL, signed with `secret`; returns the status.
    pub async fn post_signed(&self, url: &str, secret: &str, body: &Value) -> StatusCode {
        let body = body.to_string();
        self.client
            .post(url)
            .header("x-tessera-signature", tessera_signature(secret, &body))
            .body(body)
            .send()
            .await
            .expect("request sent")
            .status()
    }

    /// Creates a tracking source; returns its write key.
    pub async fn create_source(&self, name: &str) -> String {
        let (status, body) = self.post("/v1/sources", &json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["write_key"].as_str().expect("write_key").to_string()
    }

    /// A Segment-style tracking call: HTTP Basic with the write key as user name.
    pub async fn segment(&self, path: &str, write_key: &str, body: &Value) -> (StatusCode, Value) {
        let rb = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(write_key, Some(""))
            .json(body);
        self.send(rb).await
    }

    /// `/v1/identify` for `user` with `traits`, which must be acknowledged.
    pub async fn identify(&self, write_key: &str, user: &str, traits: Value) {
        let body = json!({ "userId": user, "traits": traits });
        let (status, answer) = self.segment("/v1/identify", write_key, &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    /// `/v1/track` of `event` by `user` with `properties`, which must be acknowledged.
    pub async fn track(&self, write_key: &str, user: &str, event: &str, properties: Value) {
        let body = json!({ "userId": user, "event": event, "properties": properties });
        let (status, answer) = self.segment("/v1/track", write_key, &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    /// The id of the contact with `user_id` `user`, once it exists.
    pub async fn contact_id(&self, user: &str) -> String {
        self.wait_contact(&format!("user_id:{user}"), |_| true)
            .await["id"]
            .as_str()
            .expect("contact id")
            .to_string()
    }

    /// Polls `path` (up to a minute) until it answers 200 and `check` accepts the answer.
    pub async fn wait_for(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get(path).await;
            if status == StatusCode::OK && check(&body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} never got there: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until a contact with this identity exists and `check` accepts it.
    pub async fn wait_contact(&self, identity: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, found) = self.get(&format!("/v1/contacts?identity={identity}")).await;
            if let Some(c) = found["contacts"].get(0)
                && check(c)
            {
                return c.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no contact {identity} as expected; last answer {found}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/v1/status` until the profile stage has applied every logged event; returns
    /// the last logged sequence.
    pub async fn wait_profiles_applied(&self, timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (_, status) = self.get("/v1/status").await;
            if status["profiles"]["behind"] == 0 {
                return status["event_log"]["last_seq"].as_u64().expect("last_seq");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "profiles did not catch up: {status}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Api {
    /// Polls `/v1/status` until the segment stage has evaluated every logged event (so
    /// memberships reflect everything acknowledged before the call); returns the last logged
    /// sequence.
    pub async fn wait_segments_caught_up(&self, timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (_, status) = self.get("/v1/status").await;
            if status["segments"]["behind"] == 0 {
                return status["event_log"]["last_seq"].as_u64().expect("last_seq");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "segments did not catch up: {status}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A rule-input batch of `n` contacts whose trait `plan` alternates "pro" / "free".
pub fn rule_batch(n: usize) -> Value {
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            let plan = if i % 2 == 0 { "pro" } else { "free" };
            json!({
                "contact": { "id": format!("c{i}"), "identities": [], "traits": json!({ "plan": plan }).to_string() },
                "event": null,
                "counts": [],
                "member": false,
            })
        })
        .collect();
    Value::Array(batch)
}

/// Resident memory of this process, in bytes (Linux); panics when it cannot be read, so a
/// test that measures never passes without measuring.
pub fn resident_bytes() -> u64 {
    process::own_resident_bytes()
}
