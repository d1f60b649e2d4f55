//! `attachments`: acts on mail that carries a dangerous file: by its name's extension, by its
//! declared or sniffed content type, by size, by the names inside a zip, or because a zip is
//! encrypted or cannot be listed. The message is refused, quarantined, or the file is
//! stripped and a short note put in its place (what Exchange and WorkMail do).
//!
//! Meant for outbound chains (a local user sending an executable is told at once: the milter
//! answers the 5xx at end of DATA, so their mail client shows it and nothing bounces later),
//! and for inbound chains (the sender's server gets the refusal; with `strip` the recipient
//! gets the message without the file).
//!
//! The rule never reads a file's bytes: `msg.parts()` (WIT 0.2.1) gives each part's name,
//! declared type, size, what the host sniffed from its first bytes (`executable/pe`,
//! `archive/rar`, ...), and for zips the names inside (nested zips to a bounded depth,
//! encrypted entries flagged, a listing cut short by the host's bounds marked incomplete). The
//! last extension counts, so `invoice.pdf.exe` is an `exe`.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `refuse_extensions` | list of extensions (`"exe"` or `".exe"`, any case) | [`DEFAULT_EXTENSIONS`] | file names that match, attached or inside a zip |
//! | `refuse_types` | list of types | `["executable"]` | sniffed kinds (`executable` matches every `executable/…`; `archive/rar` one kind) or declared types (`application/x-msdownload`) that match |
//! | `max_part_mb` | number | none | a part larger than this (decoded, in MB of 1,000,000 bytes) matches |
//! | `action` | `"refuse"`, `"strip"`, `"quarantine"` | `"refuse"` | what happens: refused with `550 5.7.1` for every recipient; the file replaced by a note; the message filed into `quarantine_folder` |
//! | `encrypted_zip` | `"refuse"`, `"strip"`, `"quarantine"`, `"allow"` | `"allow"` | for a zip with an encrypted entry (its names cannot be trusted to say what it holds) |
//! | `incomplete_zip` | `"refuse"`, `"strip"`, `"quarantine"`, `"allow"` | `"allow"` | for a zip the host could not list completely (a zip bomb, 100,000 entries, nesting deeper than 3, damage) |
//! | `text` | string, one line | see [`DEFAULT_TEXT`] | the refusal's text; `{name}` is the file's name |
//! | `note` | string | see [`DEFAULT_NOTE`] | the note left in place of a stripped file; `{name}` the file's name, `{reason}` why |
//! | `quarantine_folder` | string | `"Quarantine"` | the host's `[quarantine] folder` |
//!
//! When several parts match, the strongest outcome wins: refuse, then quarantine, then strip
//! (every matching part is stripped). A message that is itself the file (not multipart) cannot
//! be stripped and is refused instead.
//!
//! ```toml
//! [[domain.step]]
//! plugin = "attachments.wasm"
//! config = { action = "strip", refuse_types = ["executable", "archive/rar"], encrypted_zip = "quarantine" }
//! ```

use sluice_sdk::prelude::*;

/// Executable and script types mail clients run with a double click.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "exe", "com", "scr", "pif", "bat", "cmd", "msi", "msp", "dll", "cpl", "hta", "jar", "js",
    "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "lnk", "reg",
];

/// The refusal's default text.
pub const DEFAULT_TEXT: &str =
    "message refused: the attachment {name} is an executable file type; share it another way";

/// The default note left where a file was stripped.
pub const DEFAULT_NOTE: &str = "The attachment {name} was removed by policy: {reason}.";

/// The rule's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Extensions that match, without the dot (any case, a leading dot ignored).
    pub refuse_extensions: Vec<String>,
    /// Sniffed kinds (a family like `executable`, or `archive/rar`) and declared types.
    pub refuse_types: Vec<String>,
    /// Parts larger than this many MB match.
    pub max_part_mb: Option<f64>,
    /// What happens to a matching message.
    pub action: AttachmentAction,
    /// What happens to a zip with an encrypted entry.
    pub encrypted_zip: ZipPolicy,
    /// What happens to a zip the host could not list completely.
    pub incomplete_zip: ZipPolicy,
    /// The refusal's text (`{name}`: the file name).
    pub text: String,
    /// The note in place of a stripped file (`{name}`, `{reason}`).
    pub note: String,
    /// The folder the host quarantines.
    pub quarantine_folder: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refuse_extensions: DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            refuse_types: vec!["executable".into()],
            max_part_mb: None,
            action: AttachmentAction::Refuse,
            encrypted_zip: ZipPolicy::Allow,
            incomplete_zip: ZipPolicy::Allow,
            text: DEFAULT_TEXT.into(),
            note: DEFAULT_NOTE.into(),
            quarantine_folder: "Quarantine".into(),
        }
    }
}

/// `action` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentAction {
    /// Replace each matching part by a note (`replace-part`).
    Strip,
    /// `file-into` the quarantine folder: the whole message is held for review.
    Quarantine,
    /// `bounce` 550 5.7.1 for the whole message.
    #[default]
    Refuse,
}

/// `encrypted_zip` and `incomplete_zip` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZipPolicy {
    /// Let it through (its names are still checked as far as they were listed).
    #[default]
    Allow,
    /// As `action = "strip"`.
    Strip,
    /// As `action = "quarantine"`.
    Quarantine,
    /// As `action = "refuse"`.
    Refuse,
}

impl ZipPolicy {
    fn action(self) -> Option<AttachmentAction> {
        match self {
            ZipPolicy::Allow => None,
            ZipPolicy::Strip => Some(AttachmentAction::Strip),
            ZipPolicy::Quarantine => Some(AttachmentAction::Quarantine),
            ZipPolicy::Refuse => Some(AttachmentAction::Refuse),
        }
    }
}

/// The rule.
pub struct Attachments;

impl Rule for Attachments {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        if let Some(bad) = config
            .refuse_extensions
            .iter()
            .find(|e| e.trim_start_matches('.').is_empty() || e.contains(['/', '\\', ' ']))
        {
            return Err(format!(
                "`refuse_extensions`: {bad:?} is not a file extension"
            ));
        }
        if let Some(bad) = config.refuse_types.iter().find(|t| {
            t.is_empty()
                || t.contains(char::is_whitespace)
                || t.starts_with('/')
                || t.ends_with('/')
        }) {
            return Err(format!(
                "`refuse_types`: {bad:?} is not a type; use a family (\"executable\", \"archive\"), a kind (\"archive/rar\") or a declared type (\"application/x-msdownload\")"
            ));
        }
        if config
            .max_part_mb
            .is_some_and(|mb| mb.is_nan() || mb <= 0.0)
        {
            return Err("`max_part_mb` must be a positive number".into());
        }
        if config.text.trim().is_empty() || config.text.contains(['\r', '\n']) {
            return Err("`text` must be one non-empty line".into());
        }
        // The note's file name and reason fit in what is left of the host's limit.
        if config.note.trim().is_empty()
            || config.note.len() > sluice_sdk::facts::MAX_NOTE_BYTES / 2
        {
            return Err(format!(
                "`note` must be non-empty and at most {} bytes",
                sluice_sdk::facts::MAX_NOTE_BYTES / 2
            ));
        }
        let folder = config.quarantine_folder.trim();
        if folder.is_empty() || folder.contains(['/', '\\']) {
            return Err("`quarantine_folder` must be one folder name".into());
        }
        Ok(())
    }

    fn evaluate(msg: &Message, _ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let parts = msg.parts();
        let found: Vec<Finding> = parts.iter().filter_map(|p| judge(p, config)).collect();
        let Some(strongest) = found.iter().map(|f| f.action).max() else {
            return Ok(vec![]);
        };
        let first = found
            .iter()
            .find(|f| f.action == strongest)
            .unwrap_or(&found[0]);
        log::info!(
            "{}: attachment {} ({})",
            match strongest {
                AttachmentAction::Refuse => "refused",
                AttachmentAction::Quarantine => "quarantined",
                AttachmentAction::Strip => "stripped",
            },
            first.name,
            first.reason
        );
        Ok(match strongest {
            AttachmentAction::Refuse => vec![refusal(&first.name, config)],
            AttachmentAction::Quarantine => vec![Action::file_into(&config.quarantine_folder)],
            AttachmentAction::Strip => found
                .iter()
                .map(|f| Action::replace_part(f.id, note(&f.name, &f.reason, config)))
                .collect(),
        })
    }
}

sluice_sdk::export_rule!(Attachments);

/// A part that matched: what to do and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The part's id.
    pub id: u32,
    /// Its file name (or `part N` when it has none).
    pub name: String,
    /// Why it matched, for the note and the log.
    pub reason: String,
    /// What to do.
    pub action: AttachmentAction,
}

/// Whether one part matches, and what to do with it. A message that is itself the file (part
/// 0) cannot be stripped: it is refused instead.
pub fn judge(part: &PartInfo, config: &Config) -> Option<Finding> {
    let (reason, action) = reason(part, config)?;
    let action = if part.id == 0 && action == AttachmentAction::Strip {
        AttachmentAction::Refuse
    } else {
        action
    };
    Some(Finding {
        id: part.id,
        name: part
            .name
            .clone()
            .unwrap_or_else(|| format!("part {}", part.id)),
        reason,
        action,
    })
}

fn reason(part: &PartInfo, config: &Config) -> Option<(String, AttachmentAction)> {
    let matched = |why: String| Some((why, config.action));
    if let Some(ext) = part.name.as_deref().and_then(extension) {
        if is_refused_extension(&ext, &config.refuse_extensions) {
            return matched(format!("{ext} file type"));
        }
    }
    if let Some(kind) = part.sniffed.as_deref() {
        if matches_type(kind, &config.refuse_types) {
            return matched(format!("its content is {kind}"));
        }
    }
    if matches_type(&part.content_type, &config.refuse_types) {
        return matched(format!("declared {}", part.content_type));
    }
    if let Some(max) = config.max_part_mb {
        if part.size as f64 > max * 1_000_000.0 {
            return matched(format!("larger than {max} MB"));
        }
    }
    let archive = part.archive.as_ref()?;
    if let Some(inner) = first_refused(&archive.names, &config.refuse_extensions) {
        return matched(format!("the archive holds {}", clean(inner)));
    }
    if archive.encrypted {
        if let Some(action) = config.encrypted_zip.action() {
            return Some(("an encrypted archive".into(), action));
        }
    }
    if !archive.complete {
        if let Some(action) = config.incomplete_zip.action() {
            return Some(("an archive that could not be checked".into(), action));
        }
    }
    None
}

/// Whether a sniffed kind or declared type matches a `refuse_types` entry: the same, or the
/// entry is its family (`executable` for `executable/pe`). Case-insensitive.
pub fn matches_type(kind: &str, types: &[String]) -> bool {
    types.iter().any(|t| {
        kind.eq_ignore_ascii_case(t)
            || (kind.len() > t.len()
                && kind.as_bytes()[t.len()] == b'/'
                && kind[..t.len()].eq_ignore_ascii_case(t))
    })
}

/// The extension of `name` that counts: after the last dot, lower case (none without one).
pub fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.trim_end_matches(['.', ' ']).rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn is_refused_extension(ext: &str, refused: &[String]) -> bool {
    refused
        .iter()
        .any(|r| r.trim_start_matches('.').eq_ignore_ascii_case(ext))
}

/// The first name whose extension is refused.
pub fn first_refused<'a>(names: &'a [String], refused: &[String]) -> Option<&'a str> {
    names
        .iter()
        .map(String::as_str)
        .find(|name| extension(name).is_some_and(|ext| is_refused_extension(&ext, refused)))
}

/// The sender's text made safe for one short line: control characters go, at most 100
/// characters.
fn clean(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The bounce for a message carrying `name`.
pub fn refusal(name: &str, config: &Config) -> Action {
    let text: String = config
        .text
        .replace("{name}", &format!("\"{}\"", clean(name)));
    let text: String = text.chars().take(400).collect();
    Action::bounce(550, "5.7.1", text)
}

/// The note left in place of a stripped `name`, cut to the host's limit on a character
/// boundary (a template naming `{reason}` many times must not fail the step).
pub fn note(name: &str, reason: &str, config: &Config) -> String {
    let mut note = config
        .note
        .replace("{name}", &clean(name))
        .replace("{reason}", reason);
    let mut cut = note.len().min(sluice_sdk::facts::MAX_NOTE_BYTES);
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    note.truncate(cut);
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn part(id: u32, name: Option<&str>, ct: &str, sniffed: Option<&str>) -> PartInfo {
        PartInfo {
            id,
            name: name.map(Into::into),
            content_type: ct.into(),
            size: 10,
            disposition: Some("attachment".into()),
            sniffed: sniffed.map(Into::into),
            archive: None,
        }
    }

    #[test]
    fn the_last_extension_counts_in_any_case() {
        assert_eq!(extension("invoice.pdf.EXE").as_deref(), Some("exe"));
        assert_eq!(extension("C:\\Users\\a\\run.bat").as_deref(), Some("bat"));
        assert_eq!(extension("setup.exe. ").as_deref(), Some("exe"));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("README"), None);
        let refused = Config::default().refuse_extensions;
        assert_eq!(
            first_refused(&names(&["a.pdf", "b.pdf.exe", "c.js"]), &refused),
            Some("b.pdf.exe")
        );
        assert_eq!(first_refused(&names(&["a.pdf", "exe"]), &refused), None);
        assert_eq!(
            first_refused(&names(&["x.PS1"]), &[".ps1".to_string()]),
            Some("x.PS1")
        );
    }

    #[test]
    fn the_refusal_is_a_550_naming_the_file_on_one_line() {
        let a = refusal("bad\r\nname.exe", &Config::default());
        assert_eq!(
            a,
            Action::bounce(
                550,
                "5.7.1",
                "message refused: the attachment \"badname.exe\" is an executable file type; share it another way"
            )
        );
    }

    #[test]
    fn types_match_by_family_kind_or_declared_type() {
        let types = names(&["executable", "archive/rar", "application/x-msdownload"]);
        assert!(matches_type("executable/pe", &types));
        assert!(matches_type("EXECUTABLE/elf", &types));
        assert!(matches_type("archive/rar", &types));
        assert!(!matches_type("archive/zip", &types));
        assert!(!matches_type("executables", &types));
        assert!(matches_type("application/x-msdownload", &types));
    }

    #[test]
    fn a_renamed_executable_is_caught_by_what_it_is() {
        let c = Config {
            action: AttachmentAction::Strip,
            ..Config::default()
        };
        let f = judge(
            &part(2, Some("photo.jpg"), "image/jpeg", Some("executable/pe")),
            &c,
        )
        .unwrap();
        assert_eq!(f.reason, "its content is executable/pe");
        assert_eq!(f.action, AttachmentAction::Strip);
        assert_eq!(
            note(&f.name, &f.reason, &c),
            "The attachment photo.jpg was removed by policy: its content is executable/pe."
        );
        assert!(judge(
            &part(2, Some("a.pdf"), "application/pdf", Some("document/pdf")),
            &c
        )
        .is_none());
        // The message itself cannot be stripped: refused.
        let whole = judge(
            &part(0, Some("x.exe"), "application/octet-stream", None),
            &c,
        )
        .unwrap();
        assert_eq!(whole.action, AttachmentAction::Refuse);
    }

    #[test]
    fn zips_by_names_inside_encryption_and_completeness() {
        let mut c = Config {
            action: AttachmentAction::Strip,
            ..Config::default()
        };
        let mut zip = part(3, Some("a.zip"), "application/zip", Some("archive/zip"));
        zip.archive = Some(ArchiveInfo {
            names: names(&["docs/readme.txt", "inner.zip", "inner.zip/tool.exe"]),
            encrypted: false,
            complete: true,
        });
        assert_eq!(
            judge(&zip, &c).unwrap().reason,
            "the archive holds inner.zip/tool.exe"
        );
        let archive = zip.archive.as_mut().unwrap();
        archive.names.truncate(1);
        archive.encrypted = true;
        assert!(judge(&zip, &c).is_none());
        c.encrypted_zip = ZipPolicy::Quarantine;
        assert_eq!(
            judge(&zip, &c).unwrap().action,
            AttachmentAction::Quarantine
        );
        let archive = zip.archive.as_mut().unwrap();
        archive.encrypted = false;
        archive.complete = false;
        assert!(judge(&zip, &c).is_none());
        c.incomplete_zip = ZipPolicy::Refuse;
        assert_eq!(judge(&zip, &c).unwrap().action, AttachmentAction::Refuse);
    }

    #[test]
    fn a_long_note_is_cut_to_the_host_limit() {
        let c = Config {
            note: "{reason} ".repeat(200) + "é",
            ..Config::default()
        };
        let n = note("a.exe", "an executable file type, as its name says", &c);
        assert!(n.len() <= sluice_sdk::facts::MAX_NOTE_BYTES && !n.is_empty());
    }

    #[test]
    fn size_limit() {
        let c = Config {
            max_part_mb: Some(0.000_005),
            ..Config::default()
        };
        assert_eq!(
            judge(&part(1, Some("a.pdf"), "application/pdf", None), &c)
                .unwrap()
                .reason,
            "larger than 0.000005 MB"
        );
    }

    #[test]
    fn config_is_checked() {
        let c: Config =
            sluice_sdk::parse_config(r#"{"refuse_extensions":["exe"],"action":"refuse"}"#).unwrap();
        assert_eq!(c.action, AttachmentAction::Refuse);
        assert!(Attachments::check_config(&c).is_ok());
        let s: Config =
            sluice_sdk::parse_config(r#"{"action":"strip","encrypted_zip":"refuse"}"#).unwrap();
        assert_eq!(
            (s.action, s.encrypted_zip),
            (AttachmentAction::Strip, ZipPolicy::Refuse)
        );
        let err = sluice_sdk::parse_config::<Config>(r#"{"action":"delete"}"#).unwrap_err();
        assert!(err.contains("unknown variant `delete`"), "{err}");
        let bad: Config = sluice_sdk::parse_config(r#"{"refuse_extensions":["."]}"#).unwrap();
        assert!(Attachments::check_config(&bad).is_err());
        let bad: Config = sluice_sdk::parse_config(r#"{"refuse_types":["a b"]}"#).unwrap();
        assert!(Attachments::check_config(&bad).is_err());
        let bad: Config = sluice_sdk::parse_config(r#"{"max_part_mb":0}"#).unwrap();
        assert!(Attachments::check_config(&bad).is_err());
    }

    #[test]
    fn the_strongest_action_orders() {
        assert!(AttachmentAction::Refuse > AttachmentAction::Quarantine);
        assert!(AttachmentAction::Quarantine > AttachmentAction::Strip);
    }
}
