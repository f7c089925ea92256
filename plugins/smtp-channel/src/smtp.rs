//! The SMTP dialogue (RFC 5321) over any byte stream: greeting, EHLO (HELO when the server
//! does not know it), MAIL, RCPT, DATA, QUIT; each reply read whole and judged, 4xx as
//! worth retrying and 5xx as final.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

/// Longest reply line accepted (RFC 5321 allows 512 octets; some servers say more).
const MAX_REPLY_LINE: usize = 4096;
/// Most lines one reply may have (an EHLO reply lists extensions, one per line).
const MAX_REPLY_LINES: usize = 100;

/// One server reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without the code.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of all lines, joined by spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// How an SMTP exchange failed.
#[derive(Debug)]
pub enum SmtpError {
    /// The server answered 4xx at `stage`: a transient failure.
    Transient {
        /// The command the server refused (`MAIL FROM`, `RCPT TO`, ...).
        stage: &'static str,
        /// Its reply.
        reply: Reply,
    },
    /// The server answered 5xx at `stage`: it will not accept this message.
    Permanent {
        /// The command the server refused.
        stage: &'static str,
        /// Its reply.
        reply: Reply,
    },
    /// The stream failed (reset, timeout, closed) or the server spoke something that is not
    /// SMTP.
    Io {
        /// What was going on.
        stage: &'static str,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for SmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient { stage, reply } | Self::Permanent { stage, reply } => {
                write!(f, "the server answered {stage} with {reply}")
            }
            Self::Io { stage, error } => write!(f, "{stage}: {error}"),
        }
    }
}

/// What a delivered message got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The reply to the end of DATA (often naming the server's queue id).
    pub reply: Reply,
}

/// The envelope and content of one message.
pub struct Envelope<'a> {
    /// The name the client greets with (EHLO).
    pub client_name: &'a str,
    /// The reverse path (`MAIL FROM`).
    pub mail_from: &'a str,
    /// The one recipient (`RCPT TO`).
    pub rcpt_to: &'a str,
    /// The message, dot-stuffed and ending with the `.` line.
    pub data: &'a [u8],
}

/// Runs one SMTP transaction on `stream` and says QUIT.
pub fn deliver<S: Read + Write>(stream: S, envelope: &Envelope<'_>) -> Result<Accepted, SmtpError> {
    let mut session = Session {
        stream: BufReader::new(stream),
    };
    session.expect("greeting", 220)?;
    // The body is 7-bit (quoted-printable where needed) and addresses are ASCII, so no
    // extension is needed; EHLO is still the greeting servers expect.
    let ehlo = session.command("EHLO", &format!("EHLO {}", envelope.client_name))?;
    if matches!(ehlo.code, 500 | 502) {
        // A server that does not know EHLO (RFC 5321 3.2) gets HELO.
        let helo = session.command("HELO", &format!("HELO {}", envelope.client_name))?;
        session.judge("HELO", helo, 250)?;
    } else {
        session.judge("EHLO", ehlo, 250)?;
    }
    let reply = session.command("MAIL FROM", &format!("MAIL FROM:<{}>", envelope.mail_from))?;
    session.judge("MAIL FROM", reply, 250)?;
    let reply = session.command("RCPT TO", &format!("RCPT TO:<{}>", envelope.rcpt_to))?;
    session.judge("RCPT TO", reply, 250)?;
    let reply = session.command("DATA", "DATA")?;
    session.judge("DATA", reply, 354)?;
    session.write("message content", envelope.data)?;
    let accepted = session.expect("message content", 250)?;
    // The message is accepted; a failed QUIT changes nothing about that.
    if session.write("QUIT", b"QUIT\r\n").is_ok() {
        let _ = session.read_reply("QUIT");
    }
    Ok(Accepted { reply: accepted })
}

struct Session<S> {
    stream: BufReader<S>,
}

impl<S: Read + Write> Session<S> {
    fn write(&mut self, stage: &'static str, bytes: &[u8]) -> Result<(), SmtpError> {
        let stream = self.stream.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|error| SmtpError::Io { stage, error })
    }

    fn command(&mut self, stage: &'static str, line: &str) -> Result<Reply, SmtpError> {
        self.write(stage, format!("{line}\r\n").as_bytes())?;
        self.read_reply(stage)
    }

    fn expect(&mut self, stage: &'static str, code: u16) -> Result<Reply, SmtpError> {
        let reply = self.read_reply(stage)?;
        self.judge(stage, reply, code)
    }

    fn judge(&self, stage: &'static str, reply: Reply, code: u16) -> Result<Reply, SmtpError> {
        match reply.code {
            c if c == code => Ok(reply),
            400..=499 => Err(SmtpError::Transient { stage, reply }),
            500..=599 => Err(SmtpError::Permanent { stage, reply }),
            _ => Err(SmtpError::Io {
                stage,
                error: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected reply {reply} (wanted {code})"),
                ),
            }),
        }
    }

    fn read_reply(&mut self, stage: &'static str) -> Result<Reply, SmtpError> {
        read_reply(&mut self.stream).map_err(|error| SmtpError::Io { stage, error })
    }
}

/// Reads one reply: lines `ddd-text` continued until a line `ddd text` (or just `ddd`),
/// every line with the same code.
pub fn read_reply(stream: &mut impl BufRead) -> io::Result<Reply> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = stream
            .by_ref()
            .take(MAX_REPLY_LINE as u64 + 2)
            .read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if raw.last() != Some(&b'\n') {
            return Err(bad(format!(
                "a reply line longer than {MAX_REPLY_LINE} bytes"
            )));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let digits = line
            .get(..3)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let Some(this) = digits.and_then(|d| d.parse::<u16>().ok()) else {
            return Err(bad(format!("`{line}` is not an SMTP reply")));
        };
        if code.is_some_and(|c| c != this) {
            return Err(bad(format!(
                "reply codes {} and {this} mixed",
                code.unwrap_or(0)
            )));
        }
        code = Some(this);
        let (more, text) = match line.as_bytes().get(3) {
            Some(b'-') => (true, &line[4..]),
            Some(b' ') => (false, &line[4..]),
            None => (false, ""),
            Some(_) => return Err(bad(format!("`{line}` is not an SMTP reply"))),
        };
        lines.push(text.to_string());
        if !more {
            return Ok(Reply { code: this, lines });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(bad(format!("a reply of more than {MAX_REPLY_LINES} lines")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> io::Result<Reply> {
        read_reply(&mut text.as_bytes())
    }

    #[test]
    fn single_and_multi_line_replies_are_read_whole() {
        let r = reply("250 OK\r\n").unwrap();
        assert_eq!((r.code, r.text()), (250, "OK".to_string()));
        let r = reply("250-mail.example.com\r\n250-8BITMIME\r\n250 SMTPUTF8\r\nnext").unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["mail.example.com", "8BITMIME", "SMTPUTF8"]);
        assert_eq!(reply("354\r\n").unwrap().code, 354);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for text in [
            "",
            "hello\r\n",
            "25 short\r\n",
            "250-a\r\n251 b\r\n",
            "250xOK\r\n",
            "250-a\r\n",
        ] {
            assert!(reply(text).is_err(), "{text:?}");
        }
        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE + 10));
        assert!(reply(&long).is_err());
    }
}
