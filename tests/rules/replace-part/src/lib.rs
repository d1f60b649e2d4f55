//! `rule-replace-part`: returns `add-header X-Parts: <what message.parts said>` and one
//! `replace-part` per id in its config (`{ "ids": [2], "note": "..." }`), whatever the
//! message has, so a test can see both the edit and the host refusing a bad id.

use sluice_sdk::prelude::*;

/// The config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The part ids to replace.
    pub ids: Vec<u32>,
    /// The note.
    pub note: String,
}

/// The rule.
pub struct ReplacePart;

impl Rule for ReplacePart {
    type Config = Config;

    fn evaluate(msg: &Message, _ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let parts: Vec<String> = msg
            .parts()
            .into_iter()
            .map(|p| {
                format!(
                    "{}:{}:{}:{}",
                    p.id,
                    p.content_type,
                    p.sniffed.as_deref().unwrap_or("-"),
                    p.archive.map_or(0, |a| a.names.len())
                )
            })
            .collect();
        let mut actions = vec![Action::add_header("X-Parts", parts.join(" "))];
        actions.extend(
            config
                .ids
                .iter()
                .map(|&id| Action::replace_part(id, config.note.clone())),
        );
        Ok(actions)
    }
}

sluice_sdk::export_rule!(ReplacePart);
