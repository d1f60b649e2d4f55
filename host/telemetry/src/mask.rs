//! Addresses masked on their way into the log: every `local@domain` in a formatted event
//! becomes `***@domain`, whatever put it there (a field, the message, an error's `Display`, a
//! rule's own line). [`MaskingWriter`] sits between tracing's formatter and the output, so it
//! sees each event as the bytes that will be written, text or JSON alike.
//!
//! The local part is found by looking back from the `@` over the run of characters that are
//! not delimiters (whitespace, control characters, quotes, brackets, `,;:=/` and the
//! backtick), so odd local parts are masked too: a truncated `aaaa…@store.test`, an
//! `o'brien@…`, a `+tag`. A quoted local part (`"john doe"@example.com`) keeps its quotes:
//! `"***"@example.com`. What is after the `@` must look like a host name whose last label
//! starts with a letter (`example.com`, `gmail.example.`, `localhost`) or a domain literal
//! (`[192.0.2.1]`), so that versions (`wasi:cli/environment@0.2.0`) stay readable.
//!
//! Limits, on purpose: a delimiter inside a local part ends it (`a/b@x` shows as `a/***@x`,
//! `SRS0=…=bob@x` as `SRS0=…=***@x`), which keeps field names (`error=`), paths and URL
//! schemes in front of an address readable; and an address split differently (`alice at
//! example.com`, or `…/example.com/alice/…` as an S3 key) is not recognised.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// What a masked local part is replaced with.
const MASK: &str = "***";

/// `text` with the local part of every address in it replaced by `***` (borrowed when there
/// is none). JSON stays JSON: only characters inside a string are replaced, never a quote or
/// half of an escape, and `***` needs no escaping.
pub fn mask_addresses(text: &str) -> Cow<'_, str> {
    let mut masked = String::new();
    let mut written = 0;
    for (at, _) in text.match_indices('@') {
        if at < written || !is_domain(&text[at + 1..]) {
            continue;
        }
        let Some((start, end)) = local_part(text, written, at) else {
            continue;
        };
        if &text[start..end] == MASK {
            continue;
        }
        masked.push_str(&text[written..start]);
        masked.push_str(MASK);
        written = end;
    }
    if written == 0 {
        return Cow::Borrowed(text);
    }
    masked.push_str(&text[written..]);
    Cow::Owned(masked)
}

/// Characters that end a local part when looking back from the `@`.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || c.is_control() || "\"<>()[]{},;:=/`".contains(c)
}

/// Whether `rest` (what follows an `@`) starts with a domain: a host name whose last label
/// starts with a letter, or a domain literal.
fn is_domain(rest: &str) -> bool {
    if let Some(literal) = rest.strip_prefix('[') {
        return literal.starts_with(|c: char| c.is_ascii_digit() || c == 'I' || c == 'i');
    }
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or(rest.len());
    let host = rest[..end].trim_end_matches('.');
    host.starts_with(char::is_alphanumeric)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|label| label.starts_with(char::is_alphabetic))
}

/// The byte range of the local part that ends at `at` (the `@`), not reaching back before
/// `floor`; `None` when there is none (`@example.com` alone, as in an allow list).
fn local_part(text: &str, floor: usize, at: usize) -> Option<(usize, usize)> {
    let before = &text[floor..at];
    if let Some(quoted) = before.strip_suffix('"') {
        // `"john doe"@x`, or `\"john doe\"@x` inside a JSON string: the content between the
        // quotes, leaving the backslash that escapes the closing quote in place.
        let end = floor + quoted.strip_suffix('\\').unwrap_or(quoted).len();
        let open = text[floor..end].rfind('"')? + floor;
        let inner = &text[open + 1..end];
        return (!inner.is_empty() && !inner.contains(['\n', '\r'])).then_some((open + 1, end));
    }
    let start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| !is_delimiter(c))
        .last()
        .map(|(i, _)| floor + i)?;
    // Escapes (`\n`, `\\`, `\u001b` in JSON) end a local part too: the run starts after the
    // last of them, so no escape is ever cut in half.
    let mut local = start;
    let mut chars = text[start..at].char_indices();
    while let Some((_, c)) = chars.next() {
        if c == '\\' {
            if let Some((_, 'u')) = chars.next() {
                for _ in 0..4 {
                    chars.next();
                }
            }
            local = start + chars.offset();
        }
    }
    // A colour code in front (`ESC[0m` in a terminal's text log) is not part of it either.
    if local == start && text[..start].ends_with("\x1b[") {
        let params = text[start..at]
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .map_or(at, |n| start + n);
        if text[params..at].starts_with(|c: char| c.is_ascii_alphabetic()) {
            local = params + 1;
        }
    }
    (local < at).then_some((local, at))
}

/// A [`MakeWriter`] whose writers mask addresses in what they write (see the module docs),
/// unless [`crate::show_full_addresses`] is on. [`crate::subscriber`] puts it around every
/// log output, so no formatted event reaches the log unmasked.
#[derive(Debug, Clone, Default)]
pub struct MaskingWriter<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for MaskingWriter<M> {
    type Writer = MaskedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedEvent::new(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        MaskedEvent::new(self.0.make_writer_for(meta))
    }
}

/// Above this, complete lines are masked and written before the writer is flushed or
/// dropped, so a writer kept for many lines does not grow without end.
const MAX_PENDING: usize = 64 * 1024;

/// One event on its way out: the bytes are kept until the writer is flushed or dropped (the
/// formatter writes each event through a writer of its own), then masked and written in one
/// `write_all`, so an address split across two writes is still seen whole and events of two
/// threads do not interleave.
#[derive(Debug)]
pub struct MaskedEvent<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> MaskedEvent<W> {
    /// A writer that masks what it passes on to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    /// Masks and writes the first `len` pending bytes.
    fn pass_on(&mut self, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let chunk: Vec<u8> = self.pending.drain(..len).collect();
        if crate::full_addresses() {
            return self.inner.write_all(&chunk);
        }
        // The formatter writes UTF-8; anything else is shown as replacement characters
        // rather than passed on unmasked.
        let text = String::from_utf8_lossy(&chunk);
        self.inner.write_all(mask_addresses(&text).as_bytes())
    }
}

impl<W: Write> Write for MaskedEvent<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() > MAX_PENDING {
            if let Some(newline) = self.pending.iter().rposition(|&b| b == b'\n') {
                self.pass_on(newline + 1)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on(self.pending.len())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskedEvent<W> {
    fn drop(&mut self) {
        let _ = self.pass_on(self.pending.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        mask_addresses(text).into_owned()
    }

    /// The lines the issue found in the logs, as they were logged.
    #[test]
    fn the_issues_examples_are_masked() {
        assert_eq!(
            masked(r#"step failed: invalid address "v2@gmail.example.": trailing dot"#),
            r#"step failed: invalid address "***@gmail.example.": trailing dot"#
        );
        assert_eq!(
            masked("copy not stored error=aaaa…@store.test: dispatch failure"),
            "copy not stored error=***@store.test: dispatch failure"
        );
        assert_eq!(
            masked("storing message m-1 for alice@example.com in INBOX: timed out"),
            "storing message m-1 for ***@example.com in INBOX: timed out"
        );
        assert_eq!(
            masked(
                "UNCONFIRMED SEND: forward of m-1 to bob@gmail.example was claimed 31 s ago by \
                 host-1 and never confirmed claim=\"sent/m-1/bob@gmail.example\""
            ),
            "UNCONFIRMED SEND: forward of m-1 to ***@gmail.example was claimed 31 s ago by \
             host-1 and never confirmed claim=\"sent/m-1/***@gmail.example\""
        );
    }

    #[test]
    fn odd_and_quoted_local_parts_are_masked_whole() {
        for (text, want) in [
            ("o'brien+tag@example.com", "***@example.com"),
            ("<alice@example.com>", "<***@example.com>"),
            ("mailto:alice@example.com", "mailto:***@example.com"),
            (
                "recipients=[alice@a.example, bob@b.example]",
                "recipients=[***@a.example, ***@b.example]",
            ),
            ("\"john doe\"@example.com", "\"***\"@example.com"),
            // Inside a JSON string: the escaped quotes stay escaped.
            (r#"\"v2\"@x.example"#, r#"\"***\"@x.example"#),
            ("bob@[192.0.2.1]", "***@[192.0.2.1]"),
            ("root@localhost", "***@localhost"),
            ("Élise@exemple.fr", "***@exemple.fr"),
            ("üser@bücher.example", "***@bücher.example"),
            // A path keeps its folders, a field its name, an escape its backslash.
            (
                "s3://mail/in/alice@example.com.eml",
                "s3://mail/in/***@example.com.eml",
            ),
            (r"line\nalice@example.com", r"line\n***@example.com"),
            (r"C:\\alice@example.com", r"C:\\***@example.com"),
            (r"\u0007alice@example.com", r"\u0007***@example.com"),
            // A terminal's colours around a text field.
            (
                "\x1b[3merror\x1b[0m\x1b[2m=\x1b[0maaaa@store.test",
                "\x1b[3merror\x1b[0m\x1b[2m=\x1b[0m***@store.test",
            ),
        ] {
            assert_eq!(masked(text), want, "{text}");
        }
    }

    #[test]
    fn what_is_not_an_address_is_left_alone() {
        for text in [
            "import `wasi:cli/environment@0.2.0` has the wrong type",
            "crate foo@1.2.3-rc.1",
            "allowed destinations [\"@gmail.example\"]",
            "a @ b, a@ b, a@, @",
            "***@example.com, \"***\"@example.com",
            "no address here",
        ] {
            assert!(
                matches!(mask_addresses(text), Cow::Borrowed(_)),
                "{text} -> {}",
                masked(text)
            );
        }
    }

    #[test]
    fn odd_bytes_around_an_at_do_not_panic() {
        for text in [
            "\\",
            "\\u",
            "\\u12@x.example",
            "é\\@x.example",
            "\\é@x.example",
            "\"@x.example",
            "\"\"@x.example",
            "\\\"@x.example",
            "a\"\n\"@x.example",
            "\x1b[@x.example",
            "\x1b[12;é@x.example",
            "a@[",
            "a@.",
            "…@…",
            "@@@a@b@c.example",
        ] {
            let _ = mask_addresses(text);
        }
    }

    /// Any string serialised as JSON is still JSON once masked, and holds no address.
    #[test]
    fn json_stays_json() {
        let values = [
            r#"invalid address "v2@gmail.example.""#,
            "\"quoted local\"@example.com and \\\"esc\"@example.com",
            "tab\talice@example.com\nnew line bob@example.com\u{7}bell@example.com",
            "back\\slash\\carol@example.com \\\\dave@example.com",
            "aaaa…@store.test: ünïcödé@example.com",
        ];
        for value in values {
            let line = serde_json::json!({ "message": value, value: 1 }).to_string();
            let masked = masked(&line);
            let back: serde_json::Value =
                serde_json::from_str(&masked).unwrap_or_else(|e| panic!("{e}: {line} -> {masked}"));
            let message = back["message"].as_str().unwrap();
            for (at, _) in message.match_indices('@') {
                let before = message[..at].trim_end_matches('"');
                assert!(before.ends_with(MASK), "{line} -> {masked}");
            }
        }
    }
}
