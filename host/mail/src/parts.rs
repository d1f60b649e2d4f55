//! The leaf parts of a message as rules see them (`message.parts`, WIT 0.2.1): identity,
//! declared type, the type the host sniffs from the first decoded bytes, and, for zip
//! archives, the names inside.
//!
//! Sniffing is done here rather than by handing rules the bytes: a small magic table costs the
//! host microseconds, while copying a 25 MB attachment into a rule's memory to read eight bytes
//! would cost the rule its memory cap. Zip listings read only the central directory, with hard
//! caps on entries, name bytes, nesting and inflated bytes, so a zip bomb or a zip with 100,000
//! entries costs bounded time and memory and comes back marked incomplete, for the rule's
//! policy to decide.

use mail_parser::{MimeHeaders, PartType};

use crate::message::Message;

/// Most entry names one listing returns (all nesting levels together); more make it
/// incomplete.
pub const MAX_ZIP_ENTRIES: usize = 1000;
/// Most bytes of entry names the listings of one message return.
pub const MAX_ZIP_NAME_BYTES: usize = 64 * 1024;
/// Zips inside zips are listed to this depth (1: the attached zip only).
pub const MAX_ZIP_DEPTH: usize = 3;
/// Most bytes inflated to list nested zips, per message: a deflated nested zip beyond it is
/// not opened and the listing is incomplete (a zip bomb stops here, and so do a hundred).
pub const MAX_ZIP_INFLATE: usize = 8 * 1024 * 1024;

/// One leaf part of the message (not a multipart container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// The part's index in a depth-first walk of the MIME tree (mail-parser's part index):
    /// stable for the message as received, and what `replace-part` names.
    pub id: u32,
    /// The file name from Content-Disposition or Content-Type, if any.
    pub name: Option<String>,
    /// `type/subtype`, lower case, as declared (the RFC 2045 default when absent).
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// `attachment` or `inline` (lower case), when the part has a Content-Disposition.
    pub disposition: Option<String>,
    /// What the first decoded bytes say the part is, whatever its name and declared type:
    /// `executable/pe`, `executable/elf`, `executable/mach-o`, `archive/zip`, `archive/rar`,
    /// `archive/7z`, `archive/gzip`, `archive/cab`, `archive/iso`, `document/ole` (MSI,
    /// legacy Office), `document/pdf`; `None` when none of those.
    pub sniffed: Option<&'static str>,
    /// For a zip archive: the names inside.
    pub archive: Option<ArchiveInfo>,
}

/// What a zip archive holds, from its central directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Entry names, nested zips' entries as `inner.zip/name`, at most [`MAX_ZIP_ENTRIES`].
    pub names: Vec<String>,
    /// An entry is encrypted (general purpose flag bit 0), at any listed depth.
    pub encrypted: bool,
    /// Every entry was listed. False when a cap stopped the listing (entries, name bytes,
    /// nesting, inflated bytes) or the archive could not be read (no central directory, a
    /// Zip64 archive, an entry out of range).
    pub complete: bool,
}

impl Message {
    /// The leaf parts, in depth-first order. An attached message (`message/rfc822`) is one
    /// part: its own parts are not listed.
    pub fn parts(&self) -> Vec<PartInfo> {
        let m = self.parsed();
        // One budget for the whole message: a hundred zip bombs cost what one does.
        let mut budget = Budget::new();
        m.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p.body, PartType::Multipart(_)))
            .map(|(id, part)| {
                let bytes = part.contents();
                let content_type = crate::message::content_type_of(part);
                let disposition = part
                    .content_disposition()
                    .map(|d| d.ctype().to_ascii_lowercase());
                // Text a reader displays is not a file it runs: a letter that starts with "MZ"
                // is not sniffed as a program.
                let displayed = content_type.starts_with("text/")
                    && disposition.as_deref() != Some("attachment");
                let sniffed = if displayed { None } else { sniff(bytes) };
                PartInfo {
                    id: id as u32,
                    name: part.attachment_name().map(str::to_owned),
                    content_type,
                    size: part.len() as u64,
                    disposition,
                    sniffed,
                    archive: (sniffed == Some("archive/zip"))
                        .then(|| list_zip_within(bytes, &mut budget)),
                }
            })
            .collect()
    }
}

impl Message {
    /// Whether `id` is a leaf part (as [`Message::parts`] lists them), without sniffing.
    pub fn is_leaf_part(&self, id: u32) -> bool {
        self.parsed()
            .parts
            .get(id as usize)
            .is_some_and(|p| !matches!(p.body, PartType::Multipart(_)))
    }
}

/// The kind of file `bytes` start with, by magic number; see [`PartInfo::sniffed`].
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const TABLE: &[(&[u8], &str)] = &[
        (b"MZ", "executable/pe"),
        (b"\x7fELF", "executable/elf"),
        (b"\xfe\xed\xfa\xce", "executable/mach-o"),
        (b"\xfe\xed\xfa\xcf", "executable/mach-o"),
        (b"\xce\xfa\xed\xfe", "executable/mach-o"),
        (b"\xcf\xfa\xed\xfe", "executable/mach-o"),
        (b"PK\x03\x04", "archive/zip"),
        (b"PK\x05\x06", "archive/zip"),
        (b"Rar!\x1a\x07", "archive/rar"),
        (b"7z\xbc\xaf\x27\x1c", "archive/7z"),
        (b"\x1f\x8b", "archive/gzip"),
        (b"MSCF", "archive/cab"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "document/ole"),
        (b"%PDF-", "document/pdf"),
    ];
    if let Some((_, kind)) = TABLE.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(kind);
    }
    // ISO 9660: "CD001" in the first volume descriptor, at 32 KiB + 1.
    if bytes.get(0x8001..0x8006) == Some(b"CD001".as_slice()) {
        return Some("archive/iso");
    }
    None
}

/// Lists a zip archive's entry names (see [`ArchiveInfo`]), within the caps.
pub fn list_zip(bytes: &[u8]) -> ArchiveInfo {
    list_zip_within(bytes, &mut Budget::new())
}

fn list_zip_within(bytes: &[u8], budget: &mut Budget) -> ArchiveInfo {
    let mut out = ArchiveInfo {
        complete: true,
        ..ArchiveInfo::default()
    };
    list_into(bytes, "", 1, budget, &mut out);
    out
}

/// What listing may still spend: name bytes and inflated bytes ([`MAX_ZIP_NAME_BYTES`] and
/// [`MAX_ZIP_INFLATE`] per message).
struct Budget {
    name_bytes: usize,
    inflate: usize,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            name_bytes: MAX_ZIP_NAME_BYTES,
            inflate: MAX_ZIP_INFLATE,
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The end of central directory record: (entries, directory offset), or `None` when there is
/// none (not a zip, truncated) or the archive is Zip64.
fn end_of_directory(b: &[u8]) -> Option<(usize, usize)> {
    // The record is 22 bytes plus a comment of at most 65,535: only the tail is searched.
    let floor = b.len().saturating_sub(22 + 65_535);
    let at = (floor..=b.len().checked_sub(22)?)
        .rev()
        .find(|&i| b[i..].starts_with(b"PK\x05\x06"))?;
    let entries = u16_at(b, at + 10)?;
    let offset = u32_at(b, at + 16)?;
    if entries == 0xffff || offset == 0xffff_ffff {
        return None;
    }
    Some((entries, offset))
}

fn list_into(b: &[u8], prefix: &str, depth: usize, budget: &mut Budget, out: &mut ArchiveInfo) {
    let Some((entries, mut at)) = end_of_directory(b) else {
        out.complete = false;
        return;
    };
    for _ in 0..entries {
        if out.names.len() >= MAX_ZIP_ENTRIES {
            out.complete = false;
            return;
        }
        let header = (|| {
            if b.get(at..at + 4)? != b"PK\x01\x02" {
                return None;
            }
            let flags = u16_at(b, at + 8)?;
            let method = u16_at(b, at + 10)?;
            let packed = u32_at(b, at + 20)?;
            let name_len = u16_at(b, at + 28)?;
            let extra = u16_at(b, at + 30)?;
            let comment = u16_at(b, at + 32)?;
            let local = u32_at(b, at + 42)?;
            let name = b.get(at + 46..at + 46 + name_len)?;
            Some((
                flags,
                method,
                packed,
                name,
                local,
                46 + name_len + extra + comment,
            ))
        })();
        let Some((flags, method, packed, name, local, len)) = header else {
            out.complete = false;
            return;
        };
        at += len;
        let name = String::from_utf8_lossy(name);
        let full = format!("{prefix}{name}");
        if full.len() > budget.name_bytes {
            out.complete = false;
            return;
        }
        budget.name_bytes -= full.len();
        let encrypted = flags & 1 == 1;
        out.encrypted |= encrypted;
        let nested = !encrypted && name.to_ascii_lowercase().ends_with(".zip");
        out.names.push(full.clone());
        if !nested {
            continue;
        }
        if depth >= MAX_ZIP_DEPTH {
            out.complete = false;
            continue;
        }
        match entry_data(b, local, packed, method, budget) {
            Some(inner) => list_into(&inner, &format!("{full}/"), depth + 1, budget, out),
            None => out.complete = false,
        }
    }
}

/// The uncompressed bytes of the entry whose local header is at `local`: stored as is, or
/// deflated within the inflate budget.
fn entry_data(
    b: &[u8],
    local: usize,
    packed: usize,
    method: usize,
    budget: &mut Budget,
) -> Option<Vec<u8>> {
    if b.get(local..local + 4)? != b"PK\x03\x04" {
        return None;
    }
    let start = local + 30 + u16_at(b, local + 26)? + u16_at(b, local + 28)?;
    let data = b.get(start..start.checked_add(packed)?)?;
    let inner = match method {
        0 => data.to_vec(),
        8 => match miniz_oxide::inflate::decompress_to_vec_with_limit(data, budget.inflate) {
            Ok(inner) => inner,
            Err(e) => {
                // What a bomb inflated before the limit stopped it is spent.
                budget.inflate = budget.inflate.saturating_sub(e.output.len());
                return None;
            }
        },
        _ => return None,
    };
    budget.inflate = budget.inflate.checked_sub(inner.len())?;
    Some(inner)
}
