//! The SMTP channel plugin against a real SMTP server: `aiosmtpd` (installed by
//! `scripts/install-test-clients.sh`) on 127.0.0.1, started and stopped by each test, which
//! writes every message it accepts to a directory the test reads (`tests/clients/smtp_server.py`,
//! parsed there by Python's own `email` package). The host grants the plugin TCP only to the
//! server in its config; a second listener stays out of reach.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{TestHost, counting_listener, workspace};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// An aiosmtpd server on a free loopback port; killed when dropped.
struct SmtpServer {
    addr: String,
    dir: tempfile::TempDir,
    _child: Child,
}

impl SmtpServer {
    /// Starts a server that answers RCPT TO `defer` with 450 and `reject` with 550.
    async fn start(defer: &[&str], reject: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("python3");
        command
            .arg(workspace().join("tests/clients/smtp_server.py"))
            .arg(dir.path());
        for addr in defer {
            command.args(["--defer", addr]);
        }
        for addr in reject {
            command.args(["--reject", addr]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs tests/clients/smtp_server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("the server prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| {
                panic!("aiosmtpd did not start (run scripts/install-test-clients.sh): `{line}`")
            })
            .to_string();
        Self {
            addr,
            dir,
            _child: child,
        }
    }

    /// Every message accepted so far, in order.
    fn received(&self) -> Vec<Value> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.path())
            .expect("read the server's directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json"))
            .collect()
    }
}

/// A host that allows the loopback `addrs`, with the bundled smtp-channel live and pointed
/// at `server` (sending as `from`).
async fn smtp_host(addrs: &[&str], server: &str) -> TestHost {
    let allowed: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let host = TestHost::start_with(move |c| c.allow_addresses = allowed).await;
    let sha = host.upload("smtp-channel").await;
    let (status, body) = host
        .put(
            "/v1/plugins/smtp-channel/config",
            &json!({ "server": server, "from": "Tessera News <news@example.com>" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    host.activate("smtp-channel", &sha).await;
    host
}

fn message(id: &str, to: &str) -> Value {
    json!({ "message": {
        "id": id, "channel": "email", "to": to, "sender": null,
        "subject": "Grüße from Tessera",
        "body": "Hello Ada,\n.this line starts with a dot\nBye",
        "html": "<p>Hello Ada,</p>\n.<p>Schöne Grüße</p>",
        "headers": [
            { "name": "List-Unsubscribe", "value": "<https://cx.example.com/v1/unsubscribe/tok-1>" },
            { "name": "List-Unsubscribe-Post", "value": "List-Unsubscribe=One-Click" },
            { "name": "Reply-To", "value": "help@example.com" },
        ],
        "content_type": "text/plain", "metadata": "{}",
    } })
}

/// A part's decoded text with its line endings as `\n`.
fn part_text(part: &Value) -> String {
    part["text"]
        .as_str()
        .unwrap_or_default()
        .replace("\r\n", "\n")
}

fn header<'a>(mail: &'a Value, name: &str) -> Option<&'a str> {
    mail["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

async fn send(host: &TestHost, body: &Value) -> Value {
    let (status, out) = host.call("smtp-channel", body).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out
}

#[tokio::test]
async fn smtp_channel_delivers_a_mail_the_server_reads_back() {
    let server = SmtpServer::start(&[], &[]).await;
    let host = smtp_host(&[&server.addr], &server.addr).await;

    let out = send(
        &host,
        &message("run-7.step-2", "Ada Lovelace <ada@example.org>"),
    )
    .await;
    let provider_id = out["ok"]["delivery"]["provider_id"]
        .as_str()
        .unwrap_or_else(|| panic!("delivered: {out}"));
    assert!(
        out["ok"]["delivery"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("250")),
        "{out}"
    );

    let received = server.received();
    assert_eq!(received.len(), 1, "one message arrived");
    let mail = &received[0];
    assert_eq!(mail["mail_from"], "news@example.com");
    assert_eq!(mail["rcpt_tos"], json!(["ada@example.org"]));
    assert_eq!(
        mail["host_name"], "example.com",
        "EHLO names the sender's domain"
    );
    assert_eq!(header(mail, "Message-ID"), Some(provider_id));
    assert!(provider_id.ends_with("@example.com>"), "{provider_id}");
    assert_eq!(
        header(mail, "From"),
        Some("Tessera News <news@example.com>")
    );
    assert_eq!(header(mail, "To"), Some("Ada Lovelace <ada@example.org>"));
    assert_eq!(
        header(mail, "Subject"),
        Some("Grüße from Tessera"),
        "the RFC 2047 subject decodes"
    );
    assert!(
        header(mail, "Date").is_some_and(|d| d.ends_with("+0000")),
        "{mail}"
    );
    assert_eq!(
        header(mail, "List-Unsubscribe"),
        Some("<https://cx.example.com/v1/unsubscribe/tok-1>")
    );
    assert_eq!(
        header(mail, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(header(mail, "Reply-To"), Some("help@example.com"));
    assert_eq!(mail["content_type"], "multipart/alternative");
    let parts = mail["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{mail}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[0]["charset"], "utf-8");
    assert_eq!(
        part_text(&parts[0]),
        "Hello Ada,\n.this line starts with a dot\nBye\n",
        "the text part, its dot line intact after stuffing"
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    assert_eq!(parts[1]["transfer_encoding"], "quoted-printable");
    assert_eq!(
        part_text(&parts[1]),
        "<p>Hello Ada,</p>\n.<p>Schöne Grüße</p>\n",
        "the HTML part, quoted-printable decoded"
    );
    assert!(
        mail["data"].as_str().is_some_and(|d| d.is_ascii()),
        "7-bit clean on the wire"
    );

    // A retry of the same message carries the same Message-ID; another message another one.
    let again = send(&host, &message("run-7.step-2", "ada@example.org")).await;
    assert_eq!(again["ok"]["delivery"]["provider_id"], provider_id);
    let other = send(&host, &message("run-7.step-3", "ada@example.org")).await;
    assert_ne!(other["ok"]["delivery"]["provider_id"], provider_id);
    let received = server.received();
    assert_eq!(header(&received[1], "Message-ID"), Some(provider_id));
    assert_ne!(header(&received[2], "Message-ID"), Some(provider_id));
}

#[tokio::test]
async fn smtp_channel_retries_4xx_and_gives_up_on_5xx() {
    let server = SmtpServer::start(&["busy@example.org"], &["gone@example.org"]).await;
    let host = smtp_host(&[&server.addr], &server.addr).await;

    let out = send(&host, &message("m-1", "busy@example.org")).await;
    assert_eq!(
        out["err"]["code"], "retryable",
        "450 is worth retrying: {out}"
    );
    assert!(
        out["err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("RCPT TO") && m.contains("450")),
        "{out}"
    );
    let out = send(&host, &message("m-2", "gone@example.org")).await;
    assert_eq!(out["err"]["code"], "permanent", "550 will not heal: {out}");
    assert!(
        out["err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("550")),
        "{out}"
    );
    assert!(server.received().is_empty(), "neither message was accepted");

    // A granted server that is down is a connection failure: retried.
    let (closed, _) = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (listener.local_addr().unwrap().to_string(), drop(listener))
    };
    let host = smtp_host(&[&closed], &closed).await;
    let out = send(&host, &message("m-3", "ada@example.org")).await;
    assert_eq!(out["err"]["code"], "retryable", "refused connection: {out}");

    // A server that accepts and never greets: the attempt's own timeout ends it, retryable,
    // before the call's deadline would kill it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let host = smtp_host(&[&silent_addr], &silent_addr).await;
    let (status, body) = host
        .put(
            "/v1/plugins/smtp-channel/config",
            &json!({ "server": silent_addr, "from": "news@example.com", "timeout_ms": 300 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = send(&host, &message("m-4", "ada@example.org")).await;
    assert_eq!(out["err"]["code"], "retryable", "a silent server: {out}");
    assert!(
        out["err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("greeting")),
        "{out}"
    );
}

#[tokio::test]
async fn smtp_channel_reaches_only_its_configured_server() {
    let server = SmtpServer::start(&[], &[]).await;
    let other = SmtpServer::start(&[], &[]).await;
    let host = smtp_host(&[&server.addr], &server.addr).await;

    // Pointing the channel at a loopback server the operator did not allow is refused when
    // the config is set, naming the flag that would allow it; the old config stays.
    let (status, out) = host
        .put(
            "/v1/plugins/smtp-channel/config",
            &json!({ "server": other.addr, "from": "news@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let why = out["error"]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("`server`") && why.contains("--allow-address"),
        "{out}"
    );
    let out = send(&host, &message("m-1", "ada@example.org")).await;
    assert!(out["ok"].is_object(), "{out}");
    assert_eq!(server.received().len(), 1);

    // A server given by name: the host resolves it and grants the address it allows.
    let port = server.addr.rsplit(':').next().unwrap();
    let (status, out) = host
        .put(
            "/v1/plugins/smtp-channel/config",
            &json!({ "server": format!("localhost:{port}"), "from": "news@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let out = send(&host, &message("m-2", "ada@example.org")).await;
    assert!(
        out["ok"].is_object(),
        "localhost resolved to the granted server: {out}"
    );
    assert_eq!(server.received().len(), 2);

    // The operator withdraws the grant and restarts: the live version's connection is
    // refused at the socket, for good, and the server sees nothing.
    let data_dir = host.data_dir.clone();
    let tmp = host.stop().await;
    let host = TestHost::start_in(&data_dir, |_| {}).await;
    let out = send(&host, &message("m-3", "ada@example.org")).await;
    assert_eq!(out["err"]["code"], "permanent", "{out}");
    assert!(
        out["err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not allowed")),
        "{out}"
    );
    assert_eq!(server.received().len(), 2);
    assert!(
        other.received().is_empty(),
        "the other server was never reached"
    );
    drop(tmp);
}

/// A `config:<key>` grant is exactly the server in that key: a guest that tries another
/// address the operator allowed as well is refused, and that listener sees no connection.
#[tokio::test]
async fn a_config_grant_reaches_only_the_configured_address() {
    let (granted, granted_accepts) = counting_listener().await;
    let (elsewhere, elsewhere_accepts) = counting_listener().await;
    let allowed = vec![granted.clone(), elsewhere.clone()];
    let host = TestHost::start_with(move |c| c.allow_addresses = allowed).await;
    let manifest = "id = \"hostile\"\nkind = \"connector\"\nversion = \"0.1.0\"\n\
                    contract = \"0.2\"\n[capabilities]\ntcp = [\"config:server\"]\n\
                    [limits]\nmemory_mb = 32\ntimeout_ms = 5000\n";
    let sha = host.upload_with("hostile", manifest).await;
    let (status, body) = host
        .put("/v1/plugins/hostile/config", &json!({ "server": granted }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    host.activate("hostile", &sha).await;

    let probe = |addr: String| {
        let host = &host;
        async move {
            let (_, out) = host.webhook("hostile", "/tcp", &addr).await;
            out["ok"]["events"][0]["properties"]["outcome"]
                .as_str()
                .unwrap_or_else(|| panic!("a probe event: {out}"))
                .to_string()
        }
    };
    assert_eq!(probe(granted.clone()).await, "ok");
    let refused = probe(elsewhere.clone()).await;
    assert!(refused.starts_with("err"), "{refused}");
    assert_eq!(granted_accepts.load(Ordering::SeqCst), 1);
    assert_eq!(
        elsewhere_accepts.load(Ordering::SeqCst),
        0,
        "nothing reached it"
    );
}
