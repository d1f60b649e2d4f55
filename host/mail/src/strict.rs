//! A second, strict reading of a message's MIME structure, written from RFC 5322, 2045 and
//! 2046 and independent of mail-parser.
//!
//! Sluice edits bytes at mail-parser's offsets, but the recipient's client reads the result
//! with its own parser. On well-formed input every reader sees the same parts; on malformed
//! input (a bare CR in a header block, `--boundary` in the middle of a line, a close delimiter
//! given twice) mail-parser recovers one way and other readers another, and an edit placed by
//! one reading lands in the wrong part of the other (a banner written into a PDF). So before
//! editing, the host reads the message a second time with this splitter, which does only what
//! the RFCs define and names everything they leave open ([`Ambiguity`]); the edit goes ahead
//! only when both readings agree and nothing is left open (see `crate::reading`).
//!
//! The reading, line by line (a line ends with LF, optionally preceded by CR; a CR anywhere
//! else is a bare CR and not a line break):
//! - a header block ends at the first empty line; each line in it is a field (`name:`) or
//!   the continuation of one (starts with space or tab);
//! - a multipart's body is split at delimiter lines only: `--boundary` at the start of a line,
//!   then `--` for the close delimiter, then nothing but spaces and tabs. The line break
//!   before a delimiter belongs to the delimiter. A delimiter of an enclosing multipart ends
//!   the inner one (as a parser keeping a stack of boundaries does);
//! - a part without Content-Type is text/plain, or message/rfc822 in a multipart/digest;
//!   message/rfc822 parts are leaves (an attached message is copied, never edited).

use std::fmt;
use std::ops::Range;

/// Deeper nesting than this is not read (and is reported as [`Ambiguity::TooDeep`]).
const MAX_DEPTH: usize = 64;

/// One part of the strict reading, in pre-order (index 0 is the message itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictPart {
    /// `type/subtype`, lower case, with the RFC 2045/2046 defaults applied.
    pub content_type: String,
    /// The header block: its fields, without the empty line that ends it.
    pub header: Range<usize>,
    /// The body: after the empty line, up to the line break before the next delimiter (or the
    /// end of the enclosing body).
    pub body: Range<usize>,
    /// The indexes of the sub-parts; `None` for a leaf.
    pub children: Option<Vec<usize>>,
    /// The first Content-Transfer-Encoding, lower case, without whitespace (`None`: absent,
    /// i.e. 7bit).
    pub transfer_encoding: Option<String>,
    /// Whether the first Content-Disposition says `attachment`.
    pub attachment: bool,
}

impl StrictPart {
    /// An inline text/plain or text/html leaf with a known transfer encoding: a part a mail
    /// client shows as the message text, and the only kind an edit may rewrite.
    pub fn is_displayed_text(&self) -> bool {
        self.children.is_none()
            && (self.content_type == "text/plain" || self.content_type == "text/html")
            && !self.attachment
            && self
                .transfer_encoding
                .as_deref()
                .is_none_or(|t| known_transfer_encoding(t.as_bytes()))
    }
}

/// Something in the message the RFCs do not define, or define in a way common parsers do not
/// follow, so two readers may see different parts. `part` is the pre-order index of the part
/// whose header block or body holds it (0 is the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ambiguity {
    /// A CR not followed by LF: a line break to some readers, an ordinary byte to others.
    BareCr {
        /// The part the CR is in.
        part: usize,
        /// Whether it is in that part's header block (else its body).
        in_header: bool,
        /// Byte offset.
        at: usize,
    },
    /// A line in a header block that is neither a field nor a continuation: some readers
    /// start the body there, others skip the line.
    NotAField {
        /// The part whose header block it is in.
        part: usize,
        /// Byte offset of the line.
        at: usize,
    },
    /// A header block that starts with a continuation line (space or tab first): readers skip
    /// it, but a field written before it would take it as its own continuation.
    LeadingContinuation {
        /// The part whose header block it starts.
        part: usize,
        /// Byte offset of the line.
        at: usize,
    },
    /// `--boundary` of an enclosing multipart in the middle of a line: some readers end the
    /// part there, RFC 2046 does not.
    DelimiterMidLine {
        /// The multipart whose boundary it is.
        part: usize,
        /// Byte offset of the `--`.
        at: usize,
    },
    /// A line that starts with `--boundary` but goes on with more than `--` and whitespace
    /// (`--ab` for boundary `a`): a delimiter to some readers, text to others.
    DelimiterWithSuffix {
        /// The multipart whose boundary it is.
        part: usize,
        /// Byte offset of the line.
        at: usize,
    },
    /// A delimiter line after the close delimiter: epilogue to RFC 2046, more parts to some
    /// readers.
    DelimiterAfterClose {
        /// The multipart whose boundary it is.
        part: usize,
        /// Byte offset of the line.
        at: usize,
    },
    /// A multipart inside a multipart with the same boundary: its delimiters end the outer one.
    NestedSameBoundary {
        /// The inner multipart.
        part: usize,
    },
    /// Content-Type given more than once, with different values: readers take the first or
    /// the last.
    ConflictingContentType {
        /// The part.
        part: usize,
    },
    /// A multipart whose body has no delimiter line at all: no parts to RFC 2046, one text
    /// body to other readers.
    NoDelimiter {
        /// The multipart.
        part: usize,
    },
    /// A multipart Content-Type without a usable boundary parameter.
    NoBoundary {
        /// The part.
        part: usize,
    },
    /// An inline text/plain or text/html part with a transfer encoding no reader knows
    /// (`6bit`): opaque data to RFC 2045 (section 6.4), displayed as it is by other readers.
    UnknownTransferEncoding {
        /// The part.
        part: usize,
    },
    /// Nesting deeper than the reader follows.
    TooDeep {
        /// The part at the limit.
        part: usize,
    },
}

impl Ambiguity {
    /// Whether this is a bare CR (the one kind Sluice can remove by normalising line breaks).
    pub fn is_bare_cr(&self) -> bool {
        matches!(self, Ambiguity::BareCr { .. })
    }
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ambiguity::BareCr {
                part,
                in_header,
                at,
            } => {
                let block = if *in_header { "header block" } else { "body" };
                write!(
                    f,
                    "bare CR (a CR without LF) in the {block} of part {part}, byte {at}"
                )
            }
            Ambiguity::NotAField { part, at } => write!(
                f,
                "a line in the header block of part {part} is not a header field, byte {at}"
            ),
            Ambiguity::LeadingContinuation { part, at } => write!(
                f,
                "the header block of part {part} starts with a continuation line, byte {at}"
            ),
            Ambiguity::DelimiterMidLine { part, at } => write!(
                f,
                "the boundary of multipart part {part} in the middle of a line, byte {at}"
            ),
            Ambiguity::DelimiterWithSuffix { part, at } => write!(
                f,
                "a line starts with the boundary of multipart part {part} but goes on with other text, byte {at}"
            ),
            Ambiguity::DelimiterAfterClose { part, at } => write!(
                f,
                "a boundary delimiter of multipart part {part} after its close delimiter, byte {at}"
            ),
            Ambiguity::NestedSameBoundary { part } => write!(
                f,
                "multipart part {part} has the same boundary as the multipart around it"
            ),
            Ambiguity::ConflictingContentType { part } => {
                write!(f, "part {part} has two different Content-Type fields")
            }
            Ambiguity::NoDelimiter { part } => {
                write!(f, "multipart part {part} has no boundary delimiter line")
            }
            Ambiguity::NoBoundary { part } => {
                write!(f, "multipart part {part} has no usable boundary parameter")
            }
            Ambiguity::UnknownTransferEncoding { part } => write!(
                f,
                "text part {part} has an unknown Content-Transfer-Encoding: displayed by some readers, opaque data to others"
            ),
            Ambiguity::TooDeep { part } => write!(
                f,
                "part {part} is nested deeper than {MAX_DEPTH} multiparts"
            ),
        }
    }
}

/// The strict reading of a message: its parts in pre-order and what it leaves open.
#[derive(Debug, Clone, Default)]
pub struct StrictTree {
    /// Every part, pre-order; index 0 is the message.
    pub parts: Vec<StrictPart>,
    /// Everything two readers may read differently, in the order found.
    pub ambiguities: Vec<Ambiguity>,
}

impl StrictTree {
    /// The leaves (parts that are not multiparts), by index.
    pub fn leaves(&self) -> impl Iterator<Item = (usize, &StrictPart)> {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.children.is_none())
    }
}

/// Reads `raw` strictly (see the module documentation). Never fails: whatever the bytes, the
/// result is a tree and a list of what is ambiguous in it.
pub fn split(raw: &[u8]) -> StrictTree {
    split_with(raw, |reader, id, boundary, body| {
        reader.split_multipart(id, boundary, body)
    })
}

/// How a multipart's body is cut into parts (the scan is swapped for its reference in tests).
type MultipartScan =
    for<'r, 't> fn(&mut Reader<'r, 't>, usize, &[u8], Range<usize>) -> Vec<Range<usize>>;

fn split_with(raw: &[u8], scan: MultipartScan) -> StrictTree {
    let mut tree = StrictTree::default();
    let mut reader = Reader {
        raw,
        tree: &mut tree,
        boundaries: Vec::new(),
        scan,
    };
    reader.entity(0..raw.len(), "text/plain", 0);
    // Bare CRs are looked for once over the whole message and filed under the innermost part
    // whose header block or body holds them.
    for at in bare_crs(raw) {
        let (part, in_header) = tree.locate(at);
        tree.ambiguities.push(Ambiguity::BareCr {
            part,
            in_header,
            at,
        });
    }
    tree
}

/// What [`split`] reports for the top header block alone: its fields' ambiguities and the bare
/// CRs in it, in the same order, without reading the body. A header-only edit copies the
/// body byte for byte, so this is all it depends on.
pub fn top_block(raw: &[u8]) -> Vec<Ambiguity> {
    let mut tree = StrictTree::default();
    let mut reader = Reader {
        raw,
        tree: &mut tree,
        boundaries: Vec::new(),
        scan: |reader, id, boundary, body| reader.split_multipart(id, boundary, body),
    };
    let (header, _, _) = reader.header_block(0, 0..raw.len());
    // As `locate` files them: up to and including the position of the empty line.
    let end = (header.end + 1).min(raw.len());
    let crs = bare_crs_before(raw, end).map(|at| Ambiguity::BareCr {
        part: 0,
        in_header: true,
        at,
    });
    let mut found = tree.ambiguities;
    found.extend(crs);
    found
}

impl StrictTree {
    /// The innermost part whose header block or body contains byte `at`, and whether it is in
    /// the header block (or the empty line ending it).
    pub fn locate(&self, at: usize) -> (usize, bool) {
        let mut found = (0, false);
        for (i, p) in self.parts.iter().enumerate() {
            // Header ranges include the empty line's position for this purpose.
            if p.header.start <= at && at <= p.header.end {
                found = (i, true);
            } else if p.body.contains(&at) {
                found = (i, false);
            }
        }
        found
    }
}

/// The offsets of every CR that is not followed by LF.
pub fn bare_crs(raw: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bare_crs_before(raw, raw.len())
}

/// The bare CRs of `raw[..end]`, judged by the byte after each in all of `raw` (a CR at
/// `end - 1` followed by LF is not bare).
fn bare_crs_before(raw: &[u8], end: usize) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\r', &raw[..end]).filter(move |&i| raw.get(i + 1) != Some(&b'\n'))
}

/// One line of `raw`: `start..end` without its line break, `next` after it.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

/// The lines of `raw[range]`, each ending at LF (CR LF counted as the break) or at the range's
/// end.
fn lines(raw: &[u8], range: Range<usize>) -> impl Iterator<Item = Line> + '_ {
    let mut pos = range.start;
    let end = range.end;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let line = line_at(raw, pos, end);
        pos = line.next;
        Some(line)
    })
}

/// The line of `raw[..end]` that starts at `start`.
fn line_at(raw: &[u8], start: usize, end: usize) -> Line {
    let (line_end, next) = match memchr::memchr(b'\n', &raw[start..end]) {
        Some(i) => {
            let lf = start + i;
            let text_end = if lf > start && raw[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            (text_end, lf + 1)
        }
        None => (end, end),
    };
    Line {
        start,
        end: line_end,
        next,
    }
}

/// Header fields as (name, raw value with folding).
type Fields<'r> = Vec<(&'r [u8], &'r [u8])>;

struct Reader<'r, 't> {
    raw: &'r [u8],
    tree: &'t mut StrictTree,
    /// The boundaries of the enclosing multiparts, outermost first.
    boundaries: Vec<Vec<u8>>,
    scan: MultipartScan,
}

impl<'r> Reader<'r, '_> {
    /// Reads one entity (header block + body) spanning `range`; returns its index.
    fn entity(&mut self, range: Range<usize>, default_type: &str, depth: usize) -> usize {
        let id = self.tree.parts.len();
        let (header, body_start, fields) = self.header_block(id, range.clone());
        let body = body_start..range.end;
        let content_types: Vec<&[u8]> = fields
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"content-type"))
            .map(|&(_, value)| value)
            .collect();
        let parsed: Vec<Option<ContentType>> = content_types
            .iter()
            .map(|v| ContentType::parse(&unfold(v)))
            .collect();
        if parsed
            .iter()
            .any(|p| p.as_ref().map(|c| &c.mime) != parsed[0].as_ref().map(|c| &c.mime))
        {
            self.tree
                .ambiguities
                .push(Ambiguity::ConflictingContentType { part: id });
        }
        // A Content-Type that does not parse is the default (RFC 2045 section 5.2).
        let ct = parsed.into_iter().next().flatten();
        let content_type = ct
            .as_ref()
            .map_or_else(|| default_type.to_owned(), |c| c.mime.clone());
        let attachment = first(&fields, b"content-disposition").is_some_and(|d| {
            let d = unfold(d);
            trim(&d)
                .split(|&b| b == b';')
                .next()
                .is_some_and(|t| trim(t).eq_ignore_ascii_case(b"attachment"))
        });
        let transfer_encoding = first(&fields, b"content-transfer-encoding").map(|v| {
            let v: Vec<u8> = unfold(v)
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            String::from_utf8_lossy(&v).to_ascii_lowercase()
        });
        let part = StrictPart {
            content_type: content_type.clone(),
            header,
            body: body.clone(),
            children: None,
            transfer_encoding,
            attachment,
        };
        if !content_type.starts_with("multipart/") {
            let text = content_type == "text/plain" || content_type == "text/html";
            if text && !attachment && !part.is_displayed_text() {
                self.tree
                    .ambiguities
                    .push(Ambiguity::UnknownTransferEncoding { part: id });
            }
            self.tree.parts.push(part);
            return id;
        }
        self.tree.parts.push(part);
        let Some(boundary) = ct.and_then(|c| c.boundary).filter(|b| !b.is_empty()) else {
            self.tree
                .ambiguities
                .push(Ambiguity::NoBoundary { part: id });
            return id;
        };
        if depth >= MAX_DEPTH {
            self.tree.ambiguities.push(Ambiguity::TooDeep { part: id });
            return id;
        }
        if self.boundaries.contains(&boundary) {
            self.tree
                .ambiguities
                .push(Ambiguity::NestedSameBoundary { part: id });
        }
        let child_type = if content_type == "multipart/digest" {
            "message/rfc822"
        } else {
            "text/plain"
        };
        let ranges = (self.scan)(self, id, &boundary, body);
        self.tree.parts[id].children = Some(Vec::new());
        self.boundaries.push(boundary);
        for r in ranges {
            let child = self.entity(r, child_type, depth + 1);
            if let Some(c) = self.tree.parts[id].children.as_mut() {
                c.push(child);
            }
        }
        self.boundaries.pop();
        id
    }

    /// The header block at the start of `range`: its range (fields only), where the body
    /// starts, and the fields as (name, value with folding) pairs.
    fn header_block(
        &mut self,
        id: usize,
        range: Range<usize>,
    ) -> (Range<usize>, usize, Fields<'r>) {
        let raw = self.raw;
        let mut fields: Vec<(&[u8], Range<usize>)> = Vec::with_capacity(16);
        for (n, line) in lines(raw, range.clone()).enumerate() {
            let text = &raw[line.start..line.end];
            if text.is_empty() {
                let fields = fields
                    .into_iter()
                    .map(|(name, v)| (name, &raw[v]))
                    .collect();
                return (range.start..line.start, line.next, fields);
            }
            if matches!(text[0], b' ' | b'\t') {
                match fields.last_mut() {
                    Some((_, value)) => value.end = line.end,
                    None => self.tree.ambiguities.push(Ambiguity::LeadingContinuation {
                        part: id,
                        at: line.start,
                    }),
                }
                continue;
            }
            let name_len = text
                .iter()
                .position(|&b| b == b':')
                .filter(|&i| i > 0 && text[..i].iter().all(|&b| (33..=126).contains(&b)));
            match name_len {
                Some(i) => fields.push((
                    &raw[line.start..line.start + i],
                    line.start + i + 1..line.end,
                )),
                // An mbox separator before the first field of the message.
                None if id == 0 && n == 0 && text.starts_with(b"From ") => {}
                None => {
                    // RFC 5322 has no such line; a reader either skips it or starts the body
                    // here. Read as the start of the body.
                    self.tree.ambiguities.push(Ambiguity::NotAField {
                        part: id,
                        at: line.start,
                    });
                    let fields = fields
                        .into_iter()
                        .map(|(name, v)| (name, &raw[v]))
                        .collect();
                    return (range.start..line.start, line.start, fields);
                }
            }
        }
        // No empty line: all header, no body.
        let fields = fields
            .into_iter()
            .map(|(name, v)| (name, &raw[v]))
            .collect();
        (range.clone(), range.end, fields)
    }

    /// The body ranges of multipart `id` (boundary `boundary`, body `body`), noting delimiter
    /// lines that are ambiguous.
    ///
    /// Only lines holding `--boundary` matter, so the body is searched for that string
    /// (memmem) rather than read line by line: each hit at the start of a line is a delimiter
    /// line (or one with a suffix), the first hit inside a line is a delimiter in the middle
    /// of it. A boundary holds no CR or LF (`unfold`), so a hit never spans a line break.
    fn split_multipart(
        &mut self,
        id: usize,
        boundary: &[u8],
        body: Range<usize>,
    ) -> Vec<Range<usize>> {
        let raw = self.raw;
        let mut needle = Vec::with_capacity(boundary.len() + 2);
        needle.extend_from_slice(b"--");
        needle.extend_from_slice(boundary);
        let finder = memchr::memmem::Finder::new(&needle);
        let mut parts = Vec::new();
        // Where the current part's content starts, once the first delimiter was seen.
        let mut open: Option<usize> = None;
        let mut closed = false;
        let mut pos = body.start;
        while let Some(hit) = finder.find(&raw[pos..body.end]).map(|i| pos + i) {
            let line_start = hit == body.start || raw[hit - 1] == b'\n';
            if !line_start {
                // This multipart's scan covers every line of the parts inside it, so each
                // level looks for its own boundary only. One per line is reported.
                self.tree
                    .ambiguities
                    .push(Ambiguity::DelimiterMidLine { part: id, at: hit });
                pos = line_at(raw, hit, body.end).next;
                continue;
            }
            let line = line_at(raw, hit, body.end);
            match delimiter(&raw[line.start..line.end], boundary) {
                Delimiter::Open | Delimiter::Close if closed => {
                    self.tree.ambiguities.push(Ambiguity::DelimiterAfterClose {
                        part: id,
                        at: line.start,
                    });
                }
                kind @ (Delimiter::Open | Delimiter::Close) => {
                    if let Some(start) = open.take() {
                        // The line break before a delimiter belongs to the delimiter; an empty
                        // part directly before it has no line break of its own.
                        let prev_text_end = if hit == body.start {
                            body.start
                        } else if hit - 1 > body.start && raw[hit - 2] == b'\r' {
                            hit - 2
                        } else {
                            hit - 1
                        };
                        parts.push(start..prev_text_end.max(start));
                    }
                    if kind == Delimiter::Open {
                        open = Some(line.next);
                    } else {
                        closed = true;
                    }
                }
                Delimiter::WithSuffix => {
                    self.tree.ambiguities.push(Ambiguity::DelimiterWithSuffix {
                        part: id,
                        at: line.start,
                    })
                }
                // Not reached: the line starts with `--boundary`.
                Delimiter::No => {}
            }
            // A second `--boundary` later on the same line is one in the middle of it.
            pos = hit + 1;
        }
        // Never closed: the last part runs to the end of the body.
        if let Some(start) = open {
            parts.push(start..body.end.max(start));
        }
        if parts.is_empty() && !closed {
            self.tree
                .ambiguities
                .push(Ambiguity::NoDelimiter { part: id });
        }
        parts
    }

    /// [`Reader::split_multipart`] line by line, as first written: the reference the faster
    /// scan is tested against.
    #[cfg(test)]
    fn split_multipart_by_lines(
        &mut self,
        id: usize,
        boundary: &[u8],
        body: Range<usize>,
    ) -> Vec<Range<usize>> {
        let raw = self.raw;
        let mut parts = Vec::new();
        // Where the current part's content starts, once the first delimiter was seen.
        let mut open: Option<usize> = None;
        let mut closed = false;
        // The end of the previous line's text: the line break before a delimiter belongs to
        // the delimiter.
        let mut prev_text_end = body.start;
        for line in lines(raw, body.clone()) {
            let text = &raw[line.start..line.end];
            match delimiter(text, boundary) {
                Delimiter::Open | Delimiter::Close if closed => {
                    self.tree.ambiguities.push(Ambiguity::DelimiterAfterClose {
                        part: id,
                        at: line.start,
                    });
                }
                kind @ (Delimiter::Open | Delimiter::Close) => {
                    if let Some(start) = open.take() {
                        // An empty part directly before the delimiter has no line break of
                        // its own (the one there belongs to the delimiter).
                        parts.push(start..prev_text_end.max(start));
                    }
                    if kind == Delimiter::Open {
                        open = Some(line.next);
                    } else {
                        closed = true;
                    }
                }
                Delimiter::WithSuffix => {
                    self.tree.ambiguities.push(Ambiguity::DelimiterWithSuffix {
                        part: id,
                        at: line.start,
                    })
                }
                Delimiter::No => {}
            }
            // This multipart's scan covers every line of the parts inside it, so each level
            // looks for its own boundary only.
            if let Some(at) = find_mid_line(text, boundary) {
                self.tree.ambiguities.push(Ambiguity::DelimiterMidLine {
                    part: id,
                    at: line.start + at,
                });
            }
            prev_text_end = line.end;
        }
        // Never closed: the last part runs to the end of the body.
        if let Some(start) = open {
            parts.push(start..body.end.max(start));
        }
        if parts.is_empty() && !closed {
            self.tree
                .ambiguities
                .push(Ambiguity::NoDelimiter { part: id });
        }
        parts
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delimiter {
    No,
    Open,
    Close,
    WithSuffix,
}

/// What a line is with respect to `boundary`.
fn delimiter(line: &[u8], boundary: &[u8]) -> Delimiter {
    let Some(rest) = line
        .strip_prefix(b"--")
        .and_then(|r| r.strip_prefix(boundary))
    else {
        return Delimiter::No;
    };
    let blank = |r: &[u8]| r.iter().all(|&b| b == b' ' || b == b'\t');
    if blank(rest) {
        Delimiter::Open
    } else if rest.strip_prefix(b"--").is_some_and(blank) {
        Delimiter::Close
    } else {
        Delimiter::WithSuffix
    }
}

/// The offset of `--boundary` in `line` after its first byte.
#[cfg(test)]
fn find_mid_line(line: &[u8], boundary: &[u8]) -> Option<usize> {
    let needle_len = boundary.len() + 2;
    if line.len() < needle_len + 1 {
        return None;
    }
    (1..=line.len() - needle_len)
        .find(|&i| line[i..].starts_with(b"--") && line[i + 2..].starts_with(boundary))
}

/// The value of the first field called `name`.
fn first<'a>(fields: &[(&[u8], &'a [u8])], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// The five RFC 2045 encodings, and the spellings of the three identity ones mail clients
/// accept (`8 bit`, `7-bit`, `7bits`, empty), which every reader shows as they are.
fn known_transfer_encoding(value: &[u8]) -> bool {
    let v: Vec<u8> = value
        .iter()
        .filter(|&&b| !b.is_ascii_whitespace() && b != b'-')
        .map(u8::to_ascii_lowercase)
        .collect();
    matches!(
        &v[..],
        b"" | b"7bit" | b"7bits" | b"8bit" | b"8bits" | b"binary" | b"quotedprintable" | b"base64"
    )
}

/// Removes the line breaks of a folded field value.
fn unfold(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr2(b'\r', b'\n', value).is_none() {
        // Most values are one line: nothing to copy.
        return std::borrow::Cow::Borrowed(value);
    }
    value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// The parts of a Content-Type value this reader needs.
#[derive(Debug)]
struct ContentType {
    /// `type/subtype`, lower case.
    mime: String,
    boundary: Option<Vec<u8>>,
}

impl ContentType {
    /// `type "/" subtype *(";" parameter)` (RFC 2045 section 5.1), comments not allowed.
    fn parse(value: &[u8]) -> Option<ContentType> {
        let is_token = |b: u8| b > 32 && b < 127 && !b"()<>@,;:\\\"/[]?=".contains(&b);
        let mut rest = trim(value);
        let type_len = rest.iter().position(|&b| !is_token(b))?;
        let ctype = &rest[..type_len];
        rest = trim(&rest[type_len..]).strip_prefix(b"/")?;
        rest = trim(rest);
        let sub_len = rest
            .iter()
            .position(|&b| !is_token(b))
            .unwrap_or(rest.len());
        let subtype = &rest[..sub_len];
        if ctype.is_empty() || subtype.is_empty() {
            return None;
        }
        rest = &rest[sub_len..];
        let mime = format!(
            "{}/{}",
            String::from_utf8_lossy(ctype),
            String::from_utf8_lossy(subtype)
        )
        .to_ascii_lowercase();
        let mut boundary = None;
        // Parameters: `; name=value` or `; name="quoted value"`.
        // Each round consumes a `;`, so this ends.
        while let Some(r) = trim(rest).strip_prefix(b";") {
            let r = trim(r);
            let name_len = r.iter().position(|&b| !is_token(b)).unwrap_or(r.len());
            let name = &r[..name_len];
            let Some(r) = trim(&r[name_len..]).strip_prefix(b"=") else {
                rest = &r[name_len..];
                continue;
            };
            let r = trim(r);
            let (val, after) = if let Some(q) = r.strip_prefix(b"\"") {
                let mut val = Vec::new();
                let mut i = 0;
                loop {
                    match q.get(i) {
                        None => break,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if i + 1 < q.len() => {
                            val.push(q[i + 1]);
                            i += 2;
                        }
                        Some(&b) => {
                            val.push(b);
                            i += 1;
                        }
                    }
                }
                (val, &q[i..])
            } else {
                let n = r.iter().position(|&b| !is_token(b)).unwrap_or(r.len());
                (r[..n].to_vec(), &r[n..])
            };
            if name.eq_ignore_ascii_case(b"boundary") && boundary.is_none() {
                boundary = Some(val);
            }
            rest = after;
        }
        Some(ContentType { mime, boundary })
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(t: &StrictTree) -> Vec<&str> {
        t.parts.iter().map(|p| p.content_type.as_str()).collect()
    }

    #[test]
    fn reads_a_clean_multipart() {
        let raw = b"Content-Type: multipart/mixed; boundary=\"b 1\"\r\n\r\npre\r\n--b 1\r\n\r\nhello\r\n--b 1 \r\nContent-Type: application/pdf\r\n\r\nJVBE\r\n--b 1--\r\nepi\r\n";
        let t = split(raw);
        assert!(t.ambiguities.is_empty(), "{:?}", t.ambiguities);
        assert_eq!(
            types(&t),
            ["multipart/mixed", "text/plain", "application/pdf"]
        );
        assert_eq!(t.parts[0].children, Some(vec![1, 2]));
        assert_eq!(&raw[t.parts[1].body.clone()], b"hello");
        assert_eq!(&raw[t.parts[2].body.clone()], b"JVBE");
    }

    #[test]
    fn nested_and_digest_defaults() {
        let raw = b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nFrom: x\n\nhi\n--d\nContent-Type: multipart/alternative; boundary=a\n\n--a\n\nt\n--a--\n--d--\n";
        let t = split(raw);
        assert!(t.ambiguities.is_empty(), "{:?}", t.ambiguities);
        assert_eq!(
            types(&t),
            [
                "multipart/digest",
                "message/rfc822",
                "multipart/alternative",
                "text/plain"
            ]
        );
        assert_eq!(t.parts[2].children, Some(vec![3]));
    }

    #[test]
    fn an_outer_delimiter_ends_an_inner_multipart() {
        let raw = b"Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\nx\n--o\nContent-Type: image/png\n\nPNG\n--o--\n";
        let t = split(raw);
        assert_eq!(
            types(&t),
            [
                "multipart/mixed",
                "multipart/mixed",
                "text/plain",
                "image/png"
            ]
        );
        assert_eq!(&raw[t.parts[2].body.clone()], b"x");
    }

    #[test]
    fn names_each_ambiguity() {
        let bare_cr = split(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\rX: y\r\n\r\nx\r\n--b--\r\n");
        assert!(matches!(
            bare_cr.ambiguities[..],
            [Ambiguity::BareCr {
                part: 1,
                in_header: true,
                ..
            }]
        ));
        let mid = split(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx --b--\n--b--\n");
        assert!(matches!(
            mid.ambiguities[..],
            [Ambiguity::DelimiterMidLine { part: 0, .. }]
        ));
        let twice = split(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b--\n");
        assert!(matches!(
            twice.ambiguities[..],
            [Ambiguity::DelimiterAfterClose { .. }]
        ));
        let suffix = split(b"Content-Type: multipart/mixed; boundary=a\n\n--ab\n\nx\n--a--\n");
        assert!(matches!(
            suffix.ambiguities[..],
            [Ambiguity::DelimiterWithSuffix { .. }]
        ));
        let not_field = split(b"From: a\nthis is not a field\n\nbody\n");
        assert!(matches!(
            not_field.ambiguities[..],
            [Ambiguity::NotAField { part: 0, .. }]
        ));
        let leading = split(
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\n message/rfc822\n\nx\n--b--\n",
        );
        assert!(matches!(
            leading.ambiguities[..],
            [Ambiguity::LeadingContinuation { part: 1, .. }]
        ));
        let two_types = split(b"Content-Type: text/plain\nContent-Type: image/png\n\nx\n");
        assert!(matches!(
            two_types.ambiguities[..],
            [Ambiguity::ConflictingContentType { .. }]
        ));
        assert_eq!(
            bare_cr.ambiguities[0].to_string(),
            "bare CR (a CR without LF) in the header block of part 1, byte 74"
        );
    }

    #[test]
    fn empty_parts_and_open_end() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\nContent-Type: text/html\n\n<p>x";
        let t = split(raw);
        assert_eq!(types(&t), ["multipart/mixed", "text/plain", "text/html"]);
        assert!(t.parts[1].body.is_empty());
        assert_eq!(&raw[t.parts[2].body.clone()], b"<p>x");
    }

    /// Messages to read both ways: this crate's fixtures (the ambiguous ones too) and the
    /// shared corpus when it is there.
    fn sample_messages() -> Vec<Vec<u8>> {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let mut paths = sluice_corpus::corpus_files(&fixtures, "fixtures", "eml");
        paths.extend(sluice_corpus::corpus_files(
            &fixtures,
            "fixtures/ambiguous",
            "eml",
        ));
        if let Some(corpus) = sluice_corpus::corpus_dir("the strict reader's scan comparison") {
            paths.extend(sluice_corpus::corpus_files(&corpus, "eml", "eml"));
        }
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Variants that put delimiters where the RFCs leave things open: each line that starts
    /// with `--` copied to the middle of other lines, to their starts, after the end, and the
    /// message cut short at several places (an open multipart).
    fn mutations(raw: &[u8]) -> Vec<Vec<u8>> {
        let dash_lines: Vec<&[u8]> = raw
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"--"))
            .take(4)
            .collect();
        let mut out = Vec::new();
        let step = (raw.len() / 7).max(1);
        for line in &dash_lines {
            for at in (step / 2..raw.len()).step_by(step) {
                let mut m = raw.to_vec();
                m.splice(at..at, line.iter().copied());
                out.push(m);
                let mut m = raw.to_vec();
                let start = raw[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                m.splice(start..start, line.iter().chain(b"\r\n").copied());
                out.push(m);
            }
            let mut m = raw.to_vec();
            m.extend_from_slice(line);
            out.push(m);
        }
        for cut in (1..raw.len()).step_by(step) {
            out.push(raw[..cut].to_vec());
        }
        out
    }

    /// The boundary search reads every message exactly as the line-by-line reader did:
    /// the same parts at the same bytes and the same ambiguities in the same order.
    #[test]
    fn the_boundary_search_reads_as_the_line_reader() {
        let messages = sample_messages();
        assert!(messages.len() >= 14, "found {} messages", messages.len());
        let mut compared = 0;
        for raw in &messages {
            for m in std::iter::once(raw.clone()).chain(mutations(raw)) {
                let (fast, reference) = (
                    split(&m),
                    split_with(&m, |r, id, b, body| r.split_multipart_by_lines(id, b, body)),
                );
                assert_eq!(
                    fast.parts,
                    reference.parts,
                    "{}",
                    String::from_utf8_lossy(&m)
                );
                assert_eq!(
                    fast.ambiguities,
                    reference.ambiguities,
                    "{}",
                    String::from_utf8_lossy(&m)
                );
                compared += 1;
            }
        }
        eprintln!("{compared} messages read both ways");
    }

    /// Variants that make the top header block ambiguous: a bare CR, a line that is not a
    /// field, a continuation before any field, at several places of the first lines.
    fn header_mutations(raw: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', raw).map(|i| i + 1))
            .take(12)
            .collect();
        for &at in &line_starts {
            for insert in [&b"\r"[..], b"not a field\r\n", b" continued\r\n", b"\r\n"] {
                let mut m = raw.to_vec();
                m.splice(at..at, insert.iter().copied());
                out.push(m);
            }
            let mid = (at + 3).min(raw.len());
            let mut m = raw.to_vec();
            m.insert(mid, b'\r');
            out.push(m);
        }
        out
    }

    /// Reading the top header block alone finds what the whole reading finds there.
    #[test]
    fn the_top_block_alone_reads_as_the_whole_reading() {
        let in_top_block = |a: &Ambiguity| {
            matches!(
                a,
                Ambiguity::NotAField { part: 0, .. }
                    | Ambiguity::LeadingContinuation { part: 0, .. }
                    | Ambiguity::BareCr {
                        part: 0,
                        in_header: true,
                        ..
                    }
            )
        };
        let (mut compared, mut ambiguous) = (0, 0);
        for raw in sample_messages() {
            for m in std::iter::once(raw.clone())
                .chain(header_mutations(&raw))
                .chain(mutations(&raw))
            {
                let whole: Vec<Ambiguity> = split(&m)
                    .ambiguities
                    .into_iter()
                    .filter(in_top_block)
                    .collect();
                assert_eq!(top_block(&m), whole, "{}", String::from_utf8_lossy(&m));
                compared += 1;
                ambiguous += usize::from(!whole.is_empty());
            }
        }
        assert!(
            ambiguous > 100,
            "only {ambiguous} of {compared} have an ambiguous top block"
        );
        eprintln!("{compared} messages compared, {ambiguous} with an ambiguous top block");
    }
}
