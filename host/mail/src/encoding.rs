//! Content-transfer encoders for rewritten text parts.

use encodify::{
    base64::{self, LineEnding},
    qp,
};

/// Base64 in lines of 76 characters (RFC 2045 section 6.8), with either line ending.
const B64_LF: base64::Base64 = base64::STANDARD.wrapped(76, LineEnding::Lf);
const B64_CRLF: base64::Base64 = base64::STANDARD.wrapped(76, LineEnding::CrLf);

/// Quoted-printable (RFC 2045 section 6.7): line breaks in `text` ("\n" or "\r\n") become hard
/// breaks written as `le`; `=`, control and non-ASCII bytes and whitespace before a line break
/// are encoded; soft breaks keep every line within 76 characters.
///
/// encodify's `qp::BODY` (the engine mail-builder 2 encodes bodies with) writes CRLF only; it
/// escapes every CR in the text, so each CRLF it writes is a line break and becomes `le`.
pub(crate) fn quoted_printable(text: &[u8], le: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    qp::BODY.encode_append(text, &mut out);
    crlf_to(out, le)
}

/// Base64 in lines of 76 characters separated by `le`, without a final line ending.
pub(crate) fn base64_lines(data: &[u8], le: &str) -> Vec<u8> {
    let (engine, ending) = if le == "\n" {
        (B64_LF, "\n")
    } else {
        (B64_CRLF, "\r\n")
    };
    let mut out = Vec::with_capacity(engine.encoded_len(data.len()));
    engine.encode_append(data, &mut out);
    if out.ends_with(ending.as_bytes()) {
        out.truncate(out.len() - ending.len());
    }
    crlf_to(out, le)
}

/// Rewrites every CRLF in `bytes` (line breaks written by a CRLF-only encoder) as `le`.
pub(crate) fn crlf_to(bytes: Vec<u8>, le: &str) -> Vec<u8> {
    if le == "\r\n" || !bytes.contains(&b'\r') {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes.as_slice();
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(le.as_bytes());
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

/// Rewrites every line break ("\r\n" or a lone "\n") as `le`.
pub(crate) fn normalize_line_endings(text: &str, le: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut rest = text;
    while let Some(i) = rest.find('\n') {
        out.push_str(rest[..i].strip_suffix('\r').unwrap_or(&rest[..i]));
        out.push_str(le);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

/// [`normalize_line_endings`] without a copy when every line break is `le` already (a large
/// body usually is: it came in with the message's own line ending).
pub(crate) fn with_line_endings<'t>(text: &'t str, le: &str) -> std::borrow::Cow<'t, str> {
    let bytes = text.as_bytes();
    let crlf = le == "\r\n";
    let uniform = bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r') == crlf);
    if uniform {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(normalize_line_endings(text, le))
    }
}

/// The length of the longest line (without its line ending).
pub(crate) fn longest_line(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::base64::Engine as _;

    fn qp_decode(s: &[u8]) -> Vec<u8> {
        mailparse::parse_mail(
            &[
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n".as_slice(),
                s,
            ]
            .concat(),
        )
        .unwrap()
        .get_body_raw()
        .unwrap()
    }

    #[test]
    fn qp_basics() {
        assert_eq!(quoted_printable(b"a=b", "\r\n"), b"a=3Db");
        assert_eq!(
            quoted_printable(b"trailing \nx\t\n", "\r\n"),
            b"trailing=20\r\nx=09\r\n"
        );
        assert_eq!(quoted_printable("é".as_bytes(), "\n"), b"=C3=A9");
        assert_eq!(quoted_printable(b"a\r\nb", "\n"), b"a\nb");
        assert_eq!(quoted_printable(b"lone\rcr", "\n"), b"lone=0Dcr");
    }

    #[test]
    fn qp_soft_breaks_and_round_trip() {
        let text = format!(
            "{}\r\n{}é end \r\nshort\r\n",
            "a".repeat(200),
            "ü".repeat(60)
        );
        for le in ["\r\n", "\n"] {
            let enc = quoted_printable(text.as_bytes(), le);
            for line in enc.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(line.len() <= 76, "{}", String::from_utf8_lossy(line));
                assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"));
            }
            let decoded = qp_decode(&enc);
            assert_eq!(
                String::from_utf8(decoded).unwrap().replace("\r\n", "\n"),
                text.replace("\r\n", "\n")
            );
        }
    }

    #[test]
    fn qp_exact_width_lines() {
        for n in 70..80 {
            let text = "x".repeat(n) + "=";
            let enc = quoted_printable(text.as_bytes(), "\r\n");
            assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 77));
            assert_eq!(qp_decode(&enc), text.as_bytes());
        }
    }

    #[test]
    fn base64_wraps_at_76() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let enc = base64_lines(&data, "\r\n");
        let lines: Vec<&[u8]> = enc.split(|&b| b == b'\n').collect();
        assert!(lines
            .iter()
            .all(|l| l.strip_suffix(b"\r").unwrap_or(l).len() <= 76));
        let joined: Vec<u8> = enc
            .iter()
            .copied()
            .filter(|b| !b"\r\n".contains(b))
            .collect();
        assert_eq!(
            ::base64::engine::general_purpose::STANDARD
                .decode(joined)
                .unwrap(),
            data
        );
    }

    #[test]
    fn base64_keeps_the_line_ending() {
        let data = [7u8; 200];
        for le in ["\r\n", "\n"] {
            let enc = base64_lines(&data, le);
            let lines: Vec<&[u8]> = enc.split(|&b| b == b'\n').collect();
            assert_eq!(lines.len(), 4);
            assert!(lines
                .iter()
                .all(|l| l.len() == 76 + le.len() - 1 || l == lines.last().unwrap()));
            assert_eq!(enc.contains(&b'\r'), le == "\r\n");
            assert!(!enc.ends_with(b"\n"));
        }
    }

    #[test]
    fn line_endings() {
        assert_eq!(normalize_line_endings("a\r\nb\nc", "\r\n"), "a\r\nb\r\nc");
        assert_eq!(normalize_line_endings("a\r\nb\n", "\n"), "a\nb\n");
        for (text, le) in [("a\r\nb\nc", "\r\n"), ("a\r\nb\n", "\n"), ("\nx", "\r\n")] {
            let cow = with_line_endings(text, le);
            assert_eq!(cow, normalize_line_endings(text, le));
            assert!(matches!(cow, std::borrow::Cow::Owned(_)), "{text:?}");
        }
        for (text, le) in [("a\r\nb\r\n", "\r\n"), ("a\nb", "\n"), ("a\rb", "\n")] {
            let cow = with_line_endings(text, le);
            assert_eq!(cow, normalize_line_endings(text, le));
            assert!(matches!(cow, std::borrow::Cow::Borrowed(_)), "{text:?}");
        }
        assert_eq!(longest_line(b"ab\r\nabcd\nx"), 4);
    }
}
