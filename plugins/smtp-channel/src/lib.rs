//! A channel that delivers each message as an email by speaking SMTP to one server, over
//! the TCP connection the host grants it (the server in config `server`, nothing else).
//!
//! # Layout
//! - `settings.rs`: the operator's config, checked into typed settings.
//! - `mime.rs`: the email itself: headers (Message-ID from the idempotency key, Date, From,
//!   To, Subject, the message's own headers) and a text, HTML or multipart/alternative body.
//! - `encoding.rs`: quoted-printable, base64, RFC 2047 header words, CRLF and dot-stuffing.
//! - `smtp.rs`: the SMTP dialogue over any stream.
//!
//! The message's `html` (contract 0.2) is the HTML part beside `body` as the text part;
//! its `headers` (`List-Unsubscribe`, `List-Unsubscribe-Post`, `Reply-To`, ...) are
//! written after the channel's own, which they cannot replace.
//!
//! Outcomes: the server's 250 after DATA is a delivery whose provider id is the
//! Message-ID; a 4xx reply, a timeout or a failed connection is retried; a 5xx reply, an
//! address the host did not grant and a message that cannot be an email fail for good.

pub mod encoding;
pub mod mime;
pub mod settings;
pub mod smtp;

use std::io;
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_sdk::types::{Delivery, Message, SendError};
use tessera_sdk::{Channel, log};

use crate::mime::{Email, InvalidEmail, Mailbox, rfc5322_date};
use crate::settings::{ConfigError, Settings};
use crate::smtp::{Envelope, SmtpError};

/// The SMTP channel.
pub struct SmtpChannel;

impl Channel for SmtpChannel {
    fn send(message: Message) -> Result<Delivery, SendError> {
        let settings = Settings::from_config().map_err(|e| match e {
            ConfigError::Unresolved(why) => SendError::retryable(why),
            ConfigError::Invalid(why) => SendError::permanent(why),
        })?;
        let email = email_from(&message, &settings).map_err(|e| SendError::permanent(e.0))?;
        let date = rfc5322_date(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let content = email.render(&date).map_err(|e| SendError::permanent(e.0))?;
        let data = encoding::dot_stuffed(&content);
        let client_name = settings
            .helo_name
            .clone()
            .unwrap_or_else(|| email.from.domain().to_string());
        let envelope = Envelope {
            client_name: &client_name,
            mail_from: &email.from.address,
            rcpt_to: &email.to.address,
            data: &data,
        };
        let stream = connect(&settings)?;
        match smtp::deliver(stream, &envelope) {
            Ok(accepted) => Ok(Delivery::accepted()
                .with_provider_id(email.message_id())
                .with_detail(short(&accepted.reply.to_string()))),
            Err(error) => Err(from_smtp_error(error, &settings)),
        }
    }

    fn self_test() -> Result<(), String> {
        Settings::from_config()
            .map(|_| ())
            .map_err(|e| e.message().to_string())
    }
}

tessera_sdk::export_channel!(SmtpChannel);

/// The email a message describes: `to` is the recipient, `sender` (else config `from`)
/// the From. With `html` set, `body` is the text part and `html` the HTML part; without it,
/// a `text/html` body is the HTML part and anything else the text part. The message's
/// headers follow the channel's own.
pub fn email_from(message: &Message, settings: &Settings) -> Result<Email, InvalidEmail> {
    let from = match message.sender.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(sender) => Mailbox::parse(sender, "sender")?,
        None => settings.from.clone().ok_or_else(|| {
            InvalidEmail("the message has no sender and config key `from` is not set".into())
        })?,
    };
    let to = Mailbox::parse(&message.to, "to")?;
    let body_is_html = message
        .content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"));
    let (text, html) = match (&message.html, body_is_html) {
        (Some(html), _) => (Some(message.body.clone()), Some(html.clone())),
        (None, true) => (None, Some(message.body.clone())),
        (None, false) => (Some(message.body.clone()), None),
    };
    Ok(Email {
        id: message.id.clone(),
        from,
        to,
        subject: message.subject.clone(),
        text,
        html,
        headers: message
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

/// Opens the TCP connection with the attempt's timeouts.
fn connect(settings: &Settings) -> Result<TcpStream, SendError> {
    let server = settings.server;
    let stream = TcpStream::connect_timeout(&server, settings.timeout)
        .map_err(|e| from_connect_error(&e, settings))?;
    stream
        .set_read_timeout(Some(settings.timeout))
        .and_then(|()| stream.set_write_timeout(Some(settings.timeout)))
        .map_err(|e| SendError::retryable(format!("setting timeouts on {server}: {e}")))?;
    Ok(stream)
}

fn from_connect_error(error: &io::Error, settings: &Settings) -> SendError {
    let server = settings.server;
    match error.kind() {
        // The sandbox refuses an address the plugin was not granted; retrying cannot help.
        io::ErrorKind::PermissionDenied => SendError::permanent(format!(
            "connecting to {server} is not allowed: the host grants this plugin TCP only to \
             its configured server ({error})"
        )),
        _ => {
            log::warn(
                "SMTP server unreachable",
                &[("server", &server), ("error", error)],
            );
            SendError::retryable(format!("could not reach the SMTP server {server}: {error}"))
        }
    }
}

fn from_smtp_error(error: SmtpError, settings: &Settings) -> SendError {
    let what = format!("{}: {}", settings.server, short(&error.to_string()));
    match error {
        SmtpError::Permanent { .. } => SendError::permanent(what),
        SmtpError::Transient { .. } | SmtpError::Io { .. } => {
            log::warn("SMTP delivery will be retried", &[("reason", &what)]);
            SendError::retryable(what)
        }
    }
}

/// Server text in errors and details, cut to a readable length.
fn short(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::testing::Harness;

    fn settings(harness: &Harness) -> Settings {
        harness
            .set_config("server", "127.0.0.1:2525")
            .set_config("from", "Tessera <news@example.com>");
        Settings::from_config().unwrap()
    }

    #[test]
    fn sender_overrides_the_configured_from() {
        let harness = Harness::new();
        let settings = settings(&harness);
        let message = Message::new("k1", "email", "ada@example.org", "Hi");
        assert_eq!(
            email_from(&message, &settings).unwrap().from.address,
            "news@example.com"
        );
        let message = Message {
            sender: Some("ops@example.net".into()),
            ..message
        };
        assert_eq!(
            email_from(&message, &settings).unwrap().from.address,
            "ops@example.net"
        );
    }

    #[test]
    fn an_html_body_is_the_html_part() {
        let harness = Harness::new();
        let settings = settings(&harness);
        let message = Message::new("k1", "email", "ada@example.org", "<b>Hi</b>")
            .with_content_type("text/html; charset=utf-8");
        let email = email_from(&message, &settings).unwrap();
        assert_eq!(
            (email.text, email.html.as_deref()),
            (None, Some("<b>Hi</b>"))
        );
    }

    #[test]
    fn html_and_headers_make_a_multipart_email() {
        let harness = Harness::new();
        let settings = settings(&harness);
        let message = Message::new("k1", "email", "ada@example.org", "Hi Ada")
            .with_html("<p>Hi Ada</p>")
            .with_header("List-Unsubscribe", "<https://example.com/u/1>")
            .with_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        let email = email_from(&message, &settings).unwrap();
        assert_eq!(email.text.as_deref(), Some("Hi Ada"));
        assert_eq!(email.html.as_deref(), Some("<p>Hi Ada</p>"));
        let rendered = email.render("d").unwrap();
        assert!(rendered.contains("multipart/alternative"));
        assert!(rendered.contains("\r\nList-Unsubscribe: <https://example.com/u/1>\r\n"));
        assert!(rendered.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
    }

    #[test]
    fn a_header_the_channel_writes_cannot_come_from_the_message() {
        let harness = Harness::new();
        harness.set_config("server", "127.0.0.1:9");
        harness.set_config("from", "a@example.com");
        let message = Message::new("k1", "email", "ada@example.org", "Hi")
            .with_header("Message-ID", "<forged@example.com>");
        let result = SmtpChannel::send(message);
        assert!(
            matches!(result, Err(SendError::Permanent(ref why)) if why.contains("written by the channel")),
            "{result:?}"
        );
    }

    #[test]
    fn config_is_checked() {
        let harness = Harness::new();
        assert!(SmtpChannel::self_test().unwrap_err().contains("`server`"));
        harness.set_config("server", "mail.example.com:25");
        assert!(
            SmtpChannel::self_test()
                .unwrap_err()
                .contains("could not resolve")
        );
        harness.set_config("server", "not a server");
        assert!(
            SmtpChannel::self_test()
                .unwrap_err()
                .contains("ip:port or host:port")
        );
        harness
            .set_config("server", "127.0.0.1:25")
            .set_config("from", "not an address");
        assert!(SmtpChannel::self_test().unwrap_err().contains("`from`"));
        harness.set_config("from", "a@example.com");
        assert_eq!(SmtpChannel::self_test(), Ok(()));
    }

    #[test]
    fn a_name_the_host_could_not_resolve_is_retried() {
        let harness = Harness::new();
        harness
            .set_config("server", "mail.example.com:25")
            .set_config("from", "a@example.com");
        let result = SmtpChannel::send(Message::new("k1", "email", "ada@example.org", "Hi"));
        assert!(matches!(result, Err(SendError::Retryable(_))), "{result:?}");
    }

    #[test]
    fn a_message_without_sender_or_from_fails_for_good() {
        let harness = Harness::new();
        harness.set_config("server", "127.0.0.1:9");
        let result = SmtpChannel::send(Message::new("k1", "email", "ada@example.org", "Hi"));
        assert!(matches!(result, Err(SendError::Permanent(ref why)) if why.contains("no sender")));
    }
}
