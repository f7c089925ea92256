//! The admin API client: requests as data ([`ApiCall`]), sent with the admin key, and the
//! host's errors turned into messages that name the fix.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::settings::{ADMIN_KEY_ENV, Settings};

/// One admin API request: method, path below the host, optional JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// The HTTP method.
    pub method: Method,
    /// The path and query, like `/v1/plugins/acme/logs?limit=10`.
    pub path: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl ApiCall {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: None,
        }
    }

    /// A POST of `body` (none: an empty body) to `path`.
    pub fn post(path: impl Into<String>, body: Option<Value>) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            body,
        }
    }

    /// A PUT of `body` to `path`.
    pub fn put(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::PUT,
            path: path.into(),
            body: Some(body),
        }
    }
}

/// A connection to one host's admin API.
pub struct Client {
    settings: Settings,
    http: reqwest::Client,
}

impl Client {
    /// A client for the host in `settings`.
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        if settings.host.starts_with("https://") {
            anyhow::bail!(
                "{} uses https, which this build of the CLI does not speak\n\
                 hint: reach the host over http (on the host itself, or through an SSH tunnel)",
                settings.host
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self { settings, http })
    }

    /// A request to `path` with the admin key.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self
            .http
            .request(method, format!("{}{path}", self.settings.host));
        match &self.settings.admin_key {
            Some(key) => rb.bearer_auth(key),
            None => rb,
        }
    }

    /// Sends `call` and returns the JSON answer (`null` for an empty one).
    pub async fn call(&self, call: &ApiCall) -> anyhow::Result<Value> {
        let mut rb = self.request(call.method.clone(), &call.path);
        if let Some(body) = &call.body {
            rb = rb.json(body);
        }
        json_answer(self.send(rb).await?).await
    }

    /// Uploads a component with its manifest (`POST /v1/plugins`, multipart).
    pub async fn upload(&self, manifest: String, component: Vec<u8>) -> anyhow::Result<Value> {
        let component = reqwest::multipart::Part::bytes(component)
            .file_name("plugin.wasm")
            .mime_str("application/wasm")?;
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest)
            .part("component", component);
        let rb = self.request(Method::POST, "/v1/plugins").multipart(form);
        json_answer(self.send(rb).await?).await
    }

    /// Sends a request; a transport failure or a non-2xx answer becomes an error with a hint.
    async fn send(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = rb.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(anyhow!(describe_failure(status, &text, &self.settings)))
    }

    fn transport_error(&self, error: &reqwest::Error) -> anyhow::Error {
        let host = &self.settings.host;
        let hint = if error.is_connect() {
            format!(
                "is `tessera serve` running at {host}? Point the CLI elsewhere with --host or TESSERA_HOST"
            )
        } else if error.is_timeout() {
            format!("the host at {host} did not answer in time; is it overloaded?")
        } else {
            format!("check that {host} is a Tessera host")
        };
        anyhow!("could not talk to {host}: {error}\nhint: {hint}")
    }
}

/// The answer's JSON; an empty body is `null`.
async fn json_answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let text = response.text().await?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| anyhow!("the host answered with invalid JSON ({e})"))
}

/// The host's `{"error": {"code", "message", "review"?}}` as one message plus a hint naming
/// the fix; an answer that is not that shape is shown as it came.
pub fn describe_failure(status: StatusCode, body: &str, settings: &Settings) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let code = error["code"].as_str().unwrap_or("");
    let message = match error["message"].as_str() {
        Some(message) => message.to_string(),
        None if body.trim().is_empty() => status.to_string(),
        None => format!("{status}: {}", body.trim()),
    };
    let mut text = format!("the host refused: {message}");
    if let Some(changes) = error["review"]["changes"].as_array() {
        text.push_str("\ncapability review:");
        for change in changes {
            text.push_str(&format!("\n  - {}", change.as_str().unwrap_or_default()));
        }
    }
    if let Some(hint) = hint(status, code, settings) {
        text.push_str(&format!("\nhint: {hint}"));
    }
    text
}

/// What to do about a failed request.
fn hint(status: StatusCode, code: &str, settings: &Settings) -> Option<String> {
    let hint = match (status.as_u16(), code) {
        (401, _) if settings.admin_key.is_none() => format!(
            "set {ADMIN_KEY_ENV} to the host's admin key (or `admin_key` in ~/.config/tessera/cli.toml)"
        ),
        (401, _) => format!("{ADMIN_KEY_ENV} (or `admin_key` in cli.toml) is not this host's admin key"),
        (409, "approval_required") => {
            "re-run with --approve after reading the review".to_string()
        }
        (409, "world_mismatch") => {
            "`kind` in plugin.toml must match the export macro in src/lib.rs".to_string()
        }
        (409, "kind_conflict") => "a plugin id keeps its kind; pick a new id in plugin.toml".to_string(),
        (409, "no_rollout") => {
            "start one with `tessera plugin activate ID SHA --canary PCT` or `--shadow`".to_string()
        }
        (409, "nothing_to_roll_back") => {
            "activate a specific version with `tessera plugin activate ID SHA`".to_string()
        }
        (400, "invalid_manifest") => "fix plugin.toml and push again".to_string(),
        (400, "invalid_component") => {
            "build with `tessera plugin build`; it checks the component before you push".to_string()
        }
        (404, "unknown_plugin") => "`tessera plugin list` shows the plugins on this host".to_string(),
        (404, "unknown_version") => {
            "push the version first; `tessera plugin show ID` lists the uploaded ones".to_string()
        }
        (404, "unknown_failure") => "`tessera plugin failures ID` lists the kept ones".to_string(),
        (404, _) => format!("is {} a Tessera host of this version?", settings.host),
        (422, "invalid_config") | (422, "self_test_failed") => {
            "set the config it needs with `tessera plugin config ID KEY=VALUE ...`, then activate again"
                .to_string()
        }
        (503, "not_live") => "activate a version first: `tessera plugin activate ID`".to_string(),
        (503, "disabled") => "enable it: `tessera plugin enable ID`".to_string(),
        (413, _) => "the host takes uploads up to 32 MiB".to_string(),
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(key: Option<&str>) -> Settings {
        Settings {
            host: "http://127.0.0.1:8080".into(),
            admin_key: key.map(str::to_string),
        }
    }

    #[test]
    fn unauthorized_names_the_key_variable() {
        let body = r#"{"error":{"code":"unauthorized","message":"a valid admin key is required"}}"#;
        let text = describe_failure(StatusCode::UNAUTHORIZED, body, &settings(None));
        assert!(text.contains("a valid admin key is required"), "{text}");
        assert!(text.contains("hint: set TESSERA_ADMIN_KEY"), "{text}");
        let text = describe_failure(StatusCode::UNAUTHORIZED, body, &settings(Some("k")));
        assert!(text.contains("is not this host's admin key"), "{text}");
    }

    #[test]
    fn approval_required_lists_the_review_and_says_how_to_approve() {
        let body = r#"{"error":{"code":"approval_required","message":"asks for more",
            "review":{"needs_approval":true,"changes":["http: api.example.com"]}}}"#;
        let text = describe_failure(StatusCode::CONFLICT, body, &settings(Some("k")));
        assert!(text.contains("  - http: api.example.com"), "{text}");
        assert!(text.ends_with("hint: re-run with --approve after reading the review"));
    }

    #[test]
    fn answers_that_are_not_api_errors_are_shown_as_they_came() {
        let text = describe_failure(StatusCode::BAD_GATEWAY, "upstream down", &settings(None));
        assert_eq!(text, "the host refused: 502 Bad Gateway: upstream down");
        let text = describe_failure(StatusCode::NOT_FOUND, "", &settings(None));
        assert!(
            text.contains("is http://127.0.0.1:8080 a Tessera host"),
            "{text}"
        );
    }

    #[test]
    fn https_hosts_are_refused_with_a_way_out() {
        let s = Settings {
            host: "https://cx.example.com".into(),
            admin_key: None,
        };
        let error = Client::new(s).err().unwrap().to_string();
        assert!(error.contains("hint: reach the host over http"), "{error}");
    }
}
