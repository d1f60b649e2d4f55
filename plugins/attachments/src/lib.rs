//! `attachments`: refuses mail that carries a file of a dangerous type, by its name's
//! extension.
//!
//! Meant for outbound chains (a local user sending an executable is told at once: the milter
//! answers the 5xx at end of DATA, so their mail client shows it and nothing bounces later),
//! and works in inbound chains too (the sender's server gets the refusal).
//!
//! Only the file name is read (`msg.attachments()`: names, types and sizes, never the
//! contents), and the last extension counts, so `invoice.pdf.exe` is an `exe`. A later
//! version adds content sniffing, archives and stripping instead of refusing: `action` is an
//! enum so those fit without changing what configs mean today.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `refuse_extensions` | list of extensions (`"exe"` or `".exe"`, any case) | [`DEFAULT_EXTENSIONS`] | file types that are refused |
//! | `action` | `"refuse"` | `"refuse"` | what happens to a message with such a file: refused with `550 5.7.1` for every recipient |
//! | `text` | string, one line | see [`DEFAULT_TEXT`] | the refusal's text; `{name}` is replaced by the file's name |
//!
//! ```toml
//! [[outbound.step]]
//! plugin = "attachments.wasm"
//! config = { refuse_extensions = ["exe", "js", "vbs"], action = "refuse" }
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

/// The rule's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Extensions refused, without the dot, lower case after [`Config::normalised`].
    pub refuse_extensions: Vec<String>,
    /// What happens to a matching message.
    pub action: AttachmentAction,
    /// The refusal's text (`{name}`: the file name).
    pub text: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refuse_extensions: DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            action: AttachmentAction::Refuse,
            text: DEFAULT_TEXT.into(),
        }
    }
}

/// `action` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentAction {
    /// `bounce` 550 5.7.1 for the whole message.
    #[default]
    Refuse,
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
        if config.text.trim().is_empty() || config.text.contains(['\r', '\n']) {
            return Err("`text` must be one non-empty line".into());
        }
        Ok(())
    }

    fn evaluate(msg: &Message, _ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let names: Vec<String> = msg
            .attachments()
            .into_iter()
            .filter_map(|a| a.name)
            .collect();
        let Some(name) = first_refused(&names, &config.refuse_extensions) else {
            return Ok(vec![]);
        };
        log::info!("refused: attachment {name}");
        Ok(vec![refusal(name, config)])
    }
}

sluice_sdk::export_rule!(Attachments);

/// The extension of `name` that counts: after the last dot, lower case (none without one).
pub fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.trim_end_matches(['.', ' ']).rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The first name whose extension is refused.
pub fn first_refused<'a>(names: &'a [String], refused: &[String]) -> Option<&'a str> {
    names.iter().map(String::as_str).find(|name| {
        extension(name).is_some_and(|ext| {
            refused
                .iter()
                .any(|r| r.trim_start_matches('.').eq_ignore_ascii_case(&ext))
        })
    })
}

/// The bounce for a message carrying `name`. The name is the sender's text: control
/// characters go, and it is cut so the reply stays one short line.
pub fn refusal(name: &str, config: &Config) -> Action {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    let text: String = config.text.replace("{name}", &format!("\"{clean}\""));
    let text: String = text.chars().take(400).collect();
    match config.action {
        AttachmentAction::Refuse => Action::bounce(550, "5.7.1", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
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
    fn config_is_checked_and_extensible() {
        let c: Config =
            sluice_sdk::parse_config(r#"{"refuse_extensions":["exe"],"action":"refuse"}"#).unwrap();
        assert_eq!(c.action, AttachmentAction::Refuse);
        assert!(Attachments::check_config(&c).is_ok());
        let err = sluice_sdk::parse_config::<Config>(r#"{"action":"strip"}"#).unwrap_err();
        assert!(err.contains("unknown variant `strip`"), "{err}");
        let bad: Config = sluice_sdk::parse_config(r#"{"refuse_extensions":["."]}"#).unwrap();
        assert!(Attachments::check_config(&bad).is_err());
    }
}
