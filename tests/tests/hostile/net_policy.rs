//! One address policy on every door: raw TCP grants, IPv6 spellings of internal addresses
//! and HTTPS all meet the operator's internal-address check, with real guests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use tessera_tests::process::{HostOptions, HostProcess};
use tessera_tests::{ADMIN_KEY, artifact, counting_listener, workspace};

/// A runtime for one test; the test holds its turn outside of it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A manifest for one of the probing guests with the given grants.
fn probe_manifest(id: &str, http: &[String], tcp: &[String]) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "id = \"{id}\"\nkind = \"connector\"\nversion = \"0.1.0\"\ncontract = \"0.2\"\n\
         [capabilities]\nhttp = [{}]\ntcp = [{}]\n[limits]\nmemory_mb = 32\ntimeout_ms = 4000\n",
        list(http),
        list(tcp)
    )
}

/// The `outcome` property of a probe's event, or what went wrong with the call.
fn outcome(out: &Value) -> String {
    match out["ok"]["events"][0]["properties"]["outcome"].as_str() {
        Some(o) => o.to_string(),
        None => format!("call failed: {out}"),
    }
}

/// `127.0.0.1:PORT` of the host's own API.
fn admin_address(host: &HostProcess) -> String {
    host.api.base.trim_start_matches("http://").to_string()
}

fn raw_http() -> Vec<u8> {
    std::fs::read(artifact("net-raw-http")).expect("net-raw-http is built")
}

/// Uploads `net-raw-http` with a TCP grant to `target`. When the host accepts it (it must
/// not), the guest is activated and sent to the admin API with the key, so the failure
/// says what the grant reached.
async fn tcp_grant_is_refused(host: &HostProcess, target: &str, accepted: &AtomicUsize) {
    let manifest = probe_manifest("net-raw-http", &[], &[target.to_string()]);
    let (status, body) = host.upload_bytes(raw_http(), &manifest).await;
    if status == StatusCode::CREATED {
        let sha = body["sha256"].as_str().unwrap_or_default();
        let (_, view) = host
            .post(
                "/v1/plugins/net-raw-http/activate",
                &serde_json::json!({ "sha256": sha, "approve": true }),
            )
            .await;
        let (_, out) = host
            .webhook(
                "net-raw-http",
                "/",
                &format!("{target} /v1/plugins {ADMIN_KEY}"),
            )
            .await;
        panic!(
            "the TCP grant `{target}` was accepted without the operator's grant; activation: {}; \
             the guest then got `{}`; the counting listener accepted {}",
            view["error"]["code"].as_str().unwrap_or("ok"),
            outcome(&out),
            accepted.load(Ordering::SeqCst)
        );
    }
    assert_eq!(status, StatusCode::BAD_REQUEST, "{target}: {body}");
    assert_eq!(body["error"]["code"], "address_not_allowed", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(target) && message.contains("--allow-address"),
        "the error names the address and the operator's flag: {message}"
    );
}

#[test]
fn tcp_grants_to_internal_addresses_need_the_operators_grant() {
    let _turn = crate::serial();
    runtime().block_on(async {
        let (listener, accepted) = counting_listener().await;

        // No operator grant: a TCP grant to a loopback service, to the host's own admin port or
        // to the cloud metadata address is refused at upload, and nothing is connected.
        let host = HostProcess::start(HostOptions::default());
        let admin = admin_address(&host);
        for target in [listener.as_str(), admin.as_str(), "169.254.169.254:80"] {
            tcp_grant_is_refused(&host, target, &accepted).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "no connection was opened"
        );
        drop(host);

        // The operator lists the listener: that grant is accepted and connects, once; the host's
        // own port stays refused because the operator did not list it.
        let host = HostProcess::start(HostOptions {
            args: vec!["--allow-address".into(), listener.clone()],
            ..Default::default()
        });
        let admin = admin_address(&host);
        tcp_grant_is_refused(&host, &admin, &accepted).await;
        let sha = host
            .upload_with(
                "net-raw-http",
                &probe_manifest("net-raw-http", &[], std::slice::from_ref(&listener)),
            )
            .await;
        host.activate("net-raw-http", &sha).await;
        let (_, out) = host
            .webhook("net-raw-http", "/", &format!("{listener} /"))
            .await;
        assert_eq!(outcome(&out), "status:HTTP/1.1 200 OK", "{out}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        drop(host);

        // Listing the loopback address opens it, the host's own API included: the operator's
        // explicit choice, never a plugin's.
        let host = HostProcess::start(HostOptions {
            args: vec!["--allow-address".into(), "127.0.0.1".into()],
            ..Default::default()
        });
        let admin = admin_address(&host);
        let sha = host
            .upload_with(
                "net-raw-http",
                &probe_manifest("net-raw-http", &[], std::slice::from_ref(&admin)),
            )
            .await;
        host.activate("net-raw-http", &sha).await;
        let (_, out) = host
            .webhook(
                "net-raw-http",
                "/",
                &format!("{admin} /v1/plugins {ADMIN_KEY}"),
            )
            .await;
        assert_eq!(outcome(&out), "status:HTTP/1.1 200 OK", "{out}");
    });
}

/// IPv6 spellings that embed, translate to or stand for internal or unroutable addresses.
const IPV6_FORMS: &[&str] = &[
    "::1",
    "::ffff:127.0.0.1",
    // IPv4-compatible (deprecated) spelling of 127.0.0.1.
    "::127.0.0.1",
    // SIIT IPv4-translated 127.0.0.1.
    "::ffff:0:127.0.0.1",
    // 6to4 of 127.0.0.1 and of the metadata address.
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::1",
    // Teredo with the client address 127.0.0.1 (stored inverted).
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    // NAT64 (well-known and local-use prefixes) of the metadata address and of loopback.
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::7f00:1",
    "fec0::1",
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "5f00::1",
];

#[test]
fn ipv6_spellings_of_internal_addresses_are_refused_over_http_and_tcp() {
    let _turn = crate::serial();
    runtime().block_on(async {
        let (listener, accepted) = counting_listener().await;
        let port = listener.rsplit(':').next().expect("port").to_string();
        let host = HostProcess::start(HostOptions::default());

        // HTTP: the manifest allows every spelling by name; the address check refuses each one.
        let http: Vec<String> = IPV6_FORMS.iter().map(|f| format!("[{f}]:{port}")).collect();
        let sha = host
            .upload_with("hostile", &probe_manifest("hostile", &http, &[]))
            .await;
        host.activate("hostile", &sha).await;
        let mut let_through = Vec::new();
        for form in IPV6_FORMS {
            let (_, out) = host
                .webhook("hostile", "/http", &format!("http://[{form}]:{port}/"))
                .await;
            let got = outcome(&out);
            if !got.starts_with("err:denied") {
                let_through.push(format!("http [{form}]: {got}"));
            }
        }

        // TCP: a grant to any of them is refused at upload.
        for form in IPV6_FORMS {
            let target = format!("[{form}]:{port}");
            let manifest = probe_manifest("net-raw-http", &[], std::slice::from_ref(&target));
            let (status, body) = host.upload_bytes(raw_http(), &manifest).await;
            if status != StatusCode::BAD_REQUEST || body["error"]["code"] != "address_not_allowed" {
                let_through.push(format!("tcp {target}: upload answered {status} {body}"));
            }
        }
        assert!(
            let_through.is_empty(),
            "{} of {} probes were not refused by policy:\n{}",
            let_through.len(),
            IPV6_FORMS.len() * 2,
            let_through.join("\n")
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "nothing reached loopback"
        );
    });
}

/// A TLS server on 127.0.0.1 with the test certificate for `localhost`; answers `200` and
/// counts the TLS handshakes that completed.
async fn tls_listener() -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = workspace().join("tests/fixtures/tls");
    let certs = vec![CertificateDer::from_pem_file(dir.join("localhost.pem")).expect("cert")];
    let key = PrivateKeyDer::from_pem_file(dir.join("localhost.key")).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut head = vec![0u8; 4096];
                let _ = tls.read(&mut head).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, handshakes)
}

#[test]
fn https_connects_to_the_checked_address_and_verifies_the_name() {
    let _turn = crate::serial();
    runtime().block_on(async {
        let (port, handshakes) = tls_listener().await;
        let root = workspace().join("tests/fixtures/tls/ca.pem");
        let http = vec![format!("localhost:{port}"), format!("127.0.0.1:{port}")];

        // The operator allows the address and trusts the test root: the request goes to the
        // checked address and the certificate is verified against the name.
        let host = HostProcess::start(HostOptions {
            args: vec![
                "--allow-address".into(),
                format!("127.0.0.1:{port}"),
                "--outbound-root-cert".into(),
                root.display().to_string(),
            ],
            ..Default::default()
        });
        let sha = host
            .upload_with("hostile", &probe_manifest("hostile", &http, &[]))
            .await;
        host.activate("hostile", &sha).await;
        let (_, out) = host
            .webhook("hostile", "/http", &format!("https://localhost:{port}/"))
            .await;
        assert_eq!(outcome(&out), "ok:200", "{out}");
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);

        // The certificate names `localhost`, not the address: asking by address fails the
        // verification (the name, not the connected address, is what is verified).
        let (_, out) = host
            .webhook("hostile", "/http", &format!("https://127.0.0.1:{port}/"))
            .await;
        assert!(outcome(&out).starts_with("err:"), "{out}");
        assert_eq!(
            handshakes.load(Ordering::SeqCst),
            1,
            "no handshake completed"
        );
        drop(host);

        // Without the operator's root, the test certificate is not trusted: roots come from the
        // operator only, and a plugin has no way to add one.
        let host = HostProcess::start(HostOptions {
            args: vec!["--allow-address".into(), format!("127.0.0.1:{port}")],
            ..Default::default()
        });
        let sha = host
            .upload_with("hostile", &probe_manifest("hostile", &http, &[]))
            .await;
        host.activate("hostile", &sha).await;
        let (_, out) = host
            .webhook("hostile", "/http", &format!("https://localhost:{port}/"))
            .await;
        assert!(outcome(&out).starts_with("err:"), "{out}");
        assert_eq!(
            handshakes.load(Ordering::SeqCst),
            1,
            "no handshake completed"
        );
    });
}
