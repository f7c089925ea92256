//! Byte-level encodings of a mail message: quoted-printable bodies, RFC 2047 encoded words
//! (base64) for header text, line endings and SMTP dot-stuffing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest line RFC 5322 allows, without its CRLF.
pub const MAX_LINE: usize = 998;

/// How a body part travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// ASCII with short lines: sent as written.
    SevenBit,
    /// Anything else: quoted-printable, which stays 7-bit and readable.
    QuotedPrintable,
}

impl TransferEncoding {
    /// The encoding `text` needs: 7bit when every byte is printable ASCII (or tab) and every
    /// line fits, quoted-printable otherwise.
    pub fn for_text(text: &str) -> Self {
        let plain = text.lines().all(|line| {
            line.len() <= MAX_LINE
                && line
                    .bytes()
                    .all(|b| b == b'\t' || b == b'\r' || (0x20..0x7f).contains(&b))
        });
        if plain {
            Self::SevenBit
        } else {
            Self::QuotedPrintable
        }
    }

    /// The `Content-Transfer-Encoding` value.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::SevenBit => "7bit",
            Self::QuotedPrintable => "quoted-printable",
        }
    }

    /// `text` encoded this way, lines ending in CRLF.
    pub fn encode(self, text: &str) -> String {
        match self {
            Self::SevenBit => crlf(text),
            Self::QuotedPrintable => quoted_printable(text),
        }
    }
}

/// `text` with every line break (`\n`, `\r\n`, a lone `\r`) made CRLF, ending in CRLF.
pub fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in split_lines(text) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The lines of `text`, whatever their endings; a final line break ends the last line
/// rather than starting an empty one.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() || lines.is_empty() {
        lines.push(&text[start..]);
    }
    lines
}

/// Quoted-printable (RFC 2045 6.7): line breaks become CRLF, other bytes outside printable
/// ASCII, `=`, and spaces or tabs before a line break are escaped, and lines are kept to 76
/// characters with soft breaks. A line starting with `.` is left to dot-stuffing.
pub fn quoted_printable(text: &str) -> String {
    const WIDTH: usize = 76;
    let mut out = String::with_capacity(text.len() * 11 / 10 + 16);
    for line in split_lines(text) {
        let bytes = line.as_bytes();
        let mut col = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal = match b {
                b'=' => false,
                b' ' | b'\t' => !last,
                0x21..=0x7e => true,
                _ => false,
            };
            let piece_len = if literal { 1 } else { 3 };
            // Keep room for the soft break `=` unless this is the line's last piece.
            let room = if last { WIDTH } else { WIDTH - 1 };
            if col + piece_len > room {
                out.push_str("=\r\n");
                col = 0;
            }
            if literal {
                out.push(b as char);
            } else {
                out.push_str(&format!("={b:02X}"));
            }
            col += piece_len;
        }
        out.push_str("\r\n");
    }
    out
}

/// Header text as it may appear in a header: unchanged when it is printable ASCII,
/// otherwise RFC 2047 encoded words (`=?UTF-8?B?...?=`), each at most 75 characters and
/// never splitting a character, separated by folding whitespace.
pub fn header_text(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) && !text.contains("=?") {
        return text.to_string();
    }
    // `=?UTF-8?B?` + `?=` is 12 characters; 45 bytes of text make 60 of base64.
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > CHUNK {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(encoded_word(&chunk));
    }
    words.join("\r\n ")
}

fn encoded_word(text: &str) -> String {
    format!("=?UTF-8?B?{}?=", STANDARD.encode(text.as_bytes()))
}

/// A message's lines made ready for DATA: CRLF line endings, a `.` doubled at the start
/// of a line (RFC 5321 4.5.2), and the terminating `.` line.
pub fn dot_stuffed(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in split_lines(message) {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_qp(encoded: &str) -> String {
        let joined = encoded.replace("=\r\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap().replace("\r\n", "\n")
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(crlf("a\nb\r\nc\rd"), "a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(crlf("a\n"), "a\r\n");
        assert_eq!(crlf(""), "\r\n");
    }

    #[test]
    fn a_leading_dot_is_doubled_and_the_data_ends_with_a_dot_line() {
        let data = dot_stuffed(".hidden\nnormal\n..two\n.\nend.");
        assert_eq!(
            String::from_utf8(data).unwrap(),
            "..hidden\r\nnormal\r\n...two\r\n..\r\nend.\r\n.\r\n"
        );
    }

    #[test]
    fn ascii_with_short_lines_stays_seven_bit() {
        assert_eq!(
            TransferEncoding::for_text("Hello\nworld"),
            TransferEncoding::SevenBit
        );
        assert_eq!(
            TransferEncoding::for_text("Grüße"),
            TransferEncoding::QuotedPrintable
        );
        assert_eq!(
            TransferEncoding::for_text(&"x".repeat(MAX_LINE + 1)),
            TransferEncoding::QuotedPrintable
        );
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        let text = format!(
            "Grüße, Zoë = café\t \n.dot first\n{}\ntrailing space ",
            "é".repeat(60)
        );
        let encoded = quoted_printable(&text);
        assert!(encoded.lines().all(|l| l.len() <= 76), "{encoded}");
        assert!(encoded.is_ascii());
        assert!(encoded.contains("Gr=C3=BC=C3=9Fe"), "{encoded}");
        assert!(encoded.contains("=3D"), "`=` is escaped: {encoded}");
        assert!(
            encoded.contains("caf=C3=A9\t=20\r\n"),
            "whitespace right before a break is escaped: {encoded}"
        );
        assert!(encoded.ends_with("trailing space=20\r\n"), "{encoded}");
        assert_eq!(decode_qp(&encoded), format!("{text}\n"));
    }

    #[test]
    fn non_ascii_header_text_becomes_encoded_words() {
        assert_eq!(header_text("Hello Ada"), "Hello Ada");
        let encoded = header_text("Grüße aus Köln");
        assert_eq!(encoded, "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=");
        let long = "€".repeat(40);
        let words = header_text(&long);
        let parts: Vec<&str> = words.split("\r\n ").collect();
        assert!(parts.len() > 1);
        let mut decoded = String::new();
        for word in parts {
            assert!(word.len() <= 75, "{word}");
            let b64 = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .unwrap();
            decoded.push_str(&String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap());
        }
        assert_eq!(decoded, long);
    }
}
