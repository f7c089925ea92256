//! Builds one email from a channel message: the header block (Message-ID from the
//! idempotency key, Date, From, To, Subject, the message's own headers) and a body that is
//! text, HTML, or both as multipart/alternative.

use tessera_sdk::hash;

use crate::encoding::{TransferEncoding, header_text};

/// Headers the channel writes itself; a message may not set them.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Everything one email is made of, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The message's idempotency key; the Message-ID derives from it.
    pub id: String,
    /// `From`: `addr@example.com` or `Name <addr@example.com>`.
    pub from: Mailbox,
    /// The one recipient.
    pub to: Mailbox,
    /// The subject, any text.
    pub subject: Option<String>,
    /// The plain-text part.
    pub text: Option<String>,
    /// The HTML part.
    pub html: Option<String>,
    /// Further headers (`List-Unsubscribe`, `Reply-To`, ...), in order.
    pub headers: Vec<(String, String)>,
}

/// Why a message cannot be made into an email; it will not heal on retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEmail(pub String);

/// A mailbox: an address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, if any.
    pub name: Option<String>,
    /// `local@domain`.
    pub address: String,
}

impl Mailbox {
    /// Parses `addr@example.com`, `<addr@example.com>` or `Name <addr@example.com>`;
    /// `what` names the field in the error.
    pub fn parse(text: &str, what: &str) -> Result<Self, InvalidEmail> {
        let text = text.trim();
        let (name, address) = match (text.rfind('<'), text.ends_with('>')) {
            (Some(open), true) => {
                let name = text[..open].trim().trim_matches('"').trim();
                (
                    (!name.is_empty()).then(|| name.to_string()),
                    &text[open + 1..text.len() - 1],
                )
            }
            _ => (None, text),
        };
        let address = address.trim();
        let valid = address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && address
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>()[],;:\\\"".contains(&b))
        });
        if !valid {
            return Err(InvalidEmail(format!(
                "{what} `{text}` is not an email address"
            )));
        }
        if name.as_deref().is_some_and(|n| n.contains(['\r', '\n'])) {
            return Err(InvalidEmail(format!(
                "{what}: a display name may not contain line breaks"
            )));
        }
        Ok(Self {
            name,
            address: address.to_string(),
        })
    }

    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The mailbox as a header value, the name quoted or encoded as needed.
    pub fn header_value(&self) -> String {
        match &self.name {
            None => self.address.clone(),
            Some(name) if name.is_ascii() => {
                let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{escaped}\" <{}>", self.address)
            }
            Some(name) => format!("{} <{}>", header_text(name), self.address),
        }
    }
}

impl Email {
    /// The Message-ID: a digest of the idempotency key at the sender's domain, so a retry
    /// of the same message carries the same id and receivers can drop the duplicate.
    pub fn message_id(&self) -> String {
        let digest = hash::sha256_hex(self.id.as_bytes());
        format!("<{}@{}>", &digest[..32], self.from.domain())
    }

    /// The whole message (headers and body, CRLF line endings, not dot-stuffed); `date` is
    /// the `Date` header's value.
    pub fn render(&self, date: &str) -> Result<String, InvalidEmail> {
        let mut out = String::new();
        let mut header = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        };
        header("Message-ID", &self.message_id());
        header("Date", date);
        header("From", &self.from.header_value());
        header("To", &self.to.header_value());
        if let Some(subject) = &self.subject {
            check_value("Subject", subject)?;
            header("Subject", &header_text(subject));
        }
        for (name, value) in &self.headers {
            check_name(name)?;
            check_value(name, value)?;
            header(name, &header_text(value));
        }
        header("MIME-Version", "1.0");
        let body = match (&self.text, &self.html) {
            (Some(text), Some(html)) => {
                let boundary = format!("=_tessera_{}", &hash::sha256_hex(self.id.as_bytes())[32..]);
                let mut body =
                    format!("Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n");
                body.push_str("This is a multi-part message in MIME format.\r\n");
                for (subtype, content) in [("plain", text), ("html", html)] {
                    body.push_str(&format!("\r\n--{boundary}\r\n"));
                    body.push_str(&part(subtype, content));
                }
                body.push_str(&format!("\r\n--{boundary}--\r\n"));
                body
            }
            (None, Some(html)) => part("html", html),
            (Some(text), None) => part("plain", text),
            (None, None) => part("plain", ""),
        };
        out.push_str(&body);
        Ok(out)
    }
}

/// One text part: its content headers, a blank line, the encoded content.
fn part(subtype: &str, content: &str) -> String {
    let encoding = TransferEncoding::for_text(content);
    format!(
        "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {}\r\n\r\n{}",
        encoding.header_value(),
        encoding.encode(content)
    )
}

/// A header name is printable ASCII without `:` (RFC 5322 2.2), and not one the channel
/// writes itself.
fn check_name(name: &str) -> Result<(), InvalidEmail> {
    if name.is_empty() || !name.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b':') {
        return Err(InvalidEmail(format!("`{name}` is not a header name")));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(InvalidEmail(format!(
            "header `{name}` is written by the channel and cannot be set by a message"
        )));
    }
    Ok(())
}

/// A header value may not carry line breaks: they would inject headers.
fn check_value(name: &str, value: &str) -> Result<(), InvalidEmail> {
    if value.contains(['\r', '\n']) {
        return Err(InvalidEmail(format!(
            "header `{name}` may not contain line breaks"
        )));
    }
    Ok(())
}

/// Unix seconds as an RFC 5322 date in UTC: `Wed, 02 Dec 2026 13:43:05 +0000`.
pub fn rfc5322_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            id: "run-1.step-2".into(),
            from: Mailbox::parse("Tessera <news@example.com>", "from").unwrap(),
            to: Mailbox::parse("ada@example.org", "to").unwrap(),
            subject: Some("Hello".into()),
            text: Some("Hi Ada".into()),
            html: Some("<p>Hi Ada</p>".into()),
            headers: vec![(
                "List-Unsubscribe".into(),
                "<https://example.com/u/1>".into(),
            )],
        }
    }

    #[test]
    fn mailboxes_parse_with_and_without_names() {
        let plain = Mailbox::parse(" ada@example.org ", "to").unwrap();
        assert_eq!(
            (plain.name, plain.address.as_str()),
            (None, "ada@example.org")
        );
        let named = Mailbox::parse("\"Ada L.\" <ada@example.org>", "to").unwrap();
        assert_eq!(named.name.as_deref(), Some("Ada L."));
        assert_eq!(named.header_value(), "\"Ada L.\" <ada@example.org>");
        let encoded = Mailbox::parse("Zoë <z@example.org>", "to").unwrap();
        assert_eq!(
            encoded.header_value(),
            "=?UTF-8?B?Wm/Dqw==?= <z@example.org>"
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "a b@example.org",
            "<a@b>\r\nBcc: x@y",
        ] {
            assert!(Mailbox::parse(bad, "to").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_message_id_depends_only_on_the_idempotency_key() {
        let a = email();
        let mut b = email();
        b.subject = Some("Other".into());
        assert_eq!(a.message_id(), b.message_id());
        assert!(a.message_id().ends_with("@example.com>"));
        b.id = "run-1.step-3".into();
        assert_ne!(a.message_id(), b.message_id());
    }

    #[test]
    fn text_and_html_become_multipart_alternative() {
        let rendered = email().render("Wed, 02 Dec 2026 13:43:05 +0000").unwrap();
        let (head, body) = rendered.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("\r\nFrom: \"Tessera\" <news@example.com>"),
            "{head}"
        );
        assert!(head.contains("\r\nTo: ada@example.org"));
        assert!(head.contains("\r\nSubject: Hello"));
        assert!(head.contains("\r\nList-Unsubscribe: <https://example.com/u/1>"));
        assert!(head.contains("\r\nMIME-Version: 1.0"));
        assert!(head.contains("Content-Type: multipart/alternative; boundary=\"=_tessera_"));
        let boundary = head
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        let parts: Vec<&str> = body.split(&format!("--{boundary}")).collect();
        assert_eq!(
            parts.len(),
            4,
            "preamble, two parts, the closing `--`: {body}"
        );
        assert!(parts[1].contains("Content-Type: text/plain; charset=utf-8"));
        assert!(parts[1].contains("\r\n\r\nHi Ada\r\n"));
        assert!(parts[2].contains("Content-Type: text/html; charset=utf-8"));
        assert!(parts[2].contains("\r\n\r\n<p>Hi Ada</p>\r\n"));
        assert!(parts[3].starts_with("--"));
        assert!(
            rendered
                .split("\r\n")
                .all(|l| !l.contains('\n') && !l.contains('\r'))
        );
    }

    #[test]
    fn a_single_part_is_sent_without_multipart() {
        let mut html_only = email();
        html_only.text = None;
        let rendered = html_only.render("d").unwrap();
        assert!(rendered.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(!rendered.contains("multipart"));
    }

    #[test]
    fn non_ascii_subjects_and_bodies_are_encoded() {
        let mut e = email();
        e.subject = Some("Grüße".into());
        e.text = Some("Schöne Grüße".into());
        let rendered = e.render("d").unwrap();
        assert!(rendered.is_ascii(), "{rendered}");
        assert!(rendered.contains("Subject: =?UTF-8?B?R3LDvMOfZQ==?="));
        assert!(
            rendered.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=C3=B6ne")
        );
    }

    #[test]
    fn headers_that_would_inject_or_override_are_refused() {
        let mut e = email();
        e.headers = vec![("X-Note".into(), "a\r\nBcc: victim@example.org".into())];
        assert!(e.render("d").unwrap_err().0.contains("line breaks"));
        e.headers = vec![("Bcc".into(), "x@example.org".into())];
        assert!(
            e.render("d")
                .unwrap_err()
                .0
                .contains("written by the channel")
        );
        e.headers = vec![("Bad Name".into(), "v".into())];
        assert!(e.render("d").unwrap_err().0.contains("not a header name"));
        e.headers = vec![];
        e.subject = Some("Hi\nBcc: x@y".into());
        assert!(e.render("d").is_err());
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_218_985),
            "Wed, 02 Dec 2026 13:43:05 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
