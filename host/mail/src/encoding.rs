//! Content-transfer encoders for rewritten text parts.

use base64::Engine as _;

/// Upper-case hex digits, as RFC 2045 requires for quoted-printable.
pub(crate) const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The longest encoded line, without its line ending (RFC 2045 section 6.7 rule 5).
const QP_LINE: usize = 76;
/// Base64 line length (RFC 2045 section 6.8).
const B64_LINE: usize = 76;

/// Quoted-printable (RFC 2045 section 6.7): line breaks in `text` ("\n" or "\r\n") become hard
/// breaks written as `le`; `=`, control and non-ASCII bytes and whitespace before a line break
/// are encoded; soft breaks keep every line within 76 characters.
pub(crate) fn quoted_printable(text: &[u8], le: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let is_last = lines.peek().is_none();
        let line = if is_last {
            line
        } else {
            line.strip_suffix(b"\r").unwrap_or(line)
        };
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let at_end = i + 1 == line.len();
            let literal = match b {
                b' ' | b'\t' => !at_end,
                b'=' => false,
                33..=126 => true,
                _ => false,
            };
            let len = if literal { 1 } else { 3 };
            // A soft break needs one column for its '='; the line's last token may use it.
            let limit = if at_end { QP_LINE } else { QP_LINE - 1 };
            if width + len > limit {
                out.push(b'=');
                out.extend_from_slice(le.as_bytes());
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            width += len;
        }
        if !is_last {
            out.extend_from_slice(le.as_bytes());
        }
    }
    out
}

/// Base64 in lines of 76 characters separated by `le`, without a final line ending.
pub(crate) fn base64_lines(data: &[u8], le: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / B64_LINE * le.len());
    for (i, chunk) in encoded.as_bytes().chunks(B64_LINE).enumerate() {
        if i > 0 {
            out.extend_from_slice(le.as_bytes());
        }
        out.extend_from_slice(chunk);
    }
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
            base64::engine::general_purpose::STANDARD
                .decode(joined)
                .unwrap(),
            data
        );
    }

    #[test]
    fn line_endings() {
        assert_eq!(normalize_line_endings("a\r\nb\nc", "\r\n"), "a\r\nb\r\nc");
        assert_eq!(normalize_line_endings("a\r\nb\n", "\n"), "a\nb\n");
        assert_eq!(longest_line(b"ab\r\nabcd\nx"), 4);
    }
}
