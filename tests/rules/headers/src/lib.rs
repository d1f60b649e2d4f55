//! `rule-headers`: returns whatever actions its config lists, for the host's action tests.
//!
//! It first logs one info line, `headers rule saw subject=<subject>` (empty when the message
//! has no Subject), then returns the configured actions in order.
//!
//! # Config
//! `{ "actions": [ ... ] }` (default: no actions). Each entry is one of:
//!
//! ```json
//! {"add_header": ["X-A", "1"]}
//! {"set_header": ["X-A", "2"]}
//! {"remove_header": "X-A"}
//! {"prefix_subject": "[ext] "}
//! {"banner": {"text": "External", "html": "<p>External</p>", "position": "top"}}
//! {"set_recipients": ["a@example.com"]}
//! {"add_recipients": ["b@example.net"]}
//! {"file_into": "Junk"}
//! {"bounce": {"code": 550, "status": "5.1.1", "text": "no such user"}}
//! "drop"
//! "stop"
//! {"fail": {"message": "boom", "temporary": false}}
//! ```
//!
//! `banner.html` is optional, `banner.position` defaults to `"top"`, `fail.temporary` to
//! `false`. If the list contains a `fail`, the rule returns that rule-error (the first one)
//! instead of any action. Unknown keys are refused by `validate-config`.
//!
//! In TOML: `config = { actions = [ { add_header = ["X-A", "1"] }, "stop" ] }`.

use sluice_sdk::prelude::*;

/// The rule's config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The actions to return, in order.
    #[serde(default)]
    pub actions: Vec<Step>,
}

/// One configured entry (see the crate docs for the JSON shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `{"add_header": [name, value]}`
    AddHeader(String, String),
    /// `{"set_header": [name, value]}`
    SetHeader(String, String),
    /// `{"remove_header": name}`
    RemoveHeader(String),
    /// `{"prefix_subject": prefix}`
    PrefixSubject(String),
    /// `{"banner": {"text", "html"?, "position"?}}`
    Banner {
        /// Plain-text banner.
        text: String,
        /// HTML banner.
        #[serde(default)]
        html: Option<String>,
        /// `"top"` (default) or `"bottom"`.
        #[serde(default)]
        position: Where,
    },
    /// `{"set_recipients": [addr, ...]}`
    SetRecipients(Vec<String>),
    /// `{"add_recipients": [addr, ...]}`
    AddRecipients(Vec<String>),
    /// `{"file_into": folder}`
    FileInto(String),
    /// `{"bounce": {"code", "status", "text"}}`
    Bounce {
        /// SMTP code.
        code: u16,
        /// Enhanced status.
        status: String,
        /// Reason.
        text: String,
    },
    /// `"drop"`
    Drop,
    /// `"stop"`
    Stop,
    /// `{"fail": {"message", "temporary"?}}`: return a rule-error.
    Fail {
        /// The error message.
        message: String,
        /// Whether the error is temporary.
        #[serde(default)]
        temporary: bool,
    },
}

/// Banner position in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Where {
    /// Top.
    #[default]
    Top,
    /// Bottom.
    Bottom,
}

/// The rule.
pub struct Headers;

impl Rule for Headers {
    type Config = Config;

    fn evaluate(msg: &Message, _: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        log::info!(
            "headers rule saw subject={}",
            msg.subject().unwrap_or_default()
        );
        to_actions(config.actions.clone())
    }
}

sluice_sdk::export_rule!(Headers);

/// Turns the configured steps into WIT actions (or the first `fail` into a rule-error).
pub fn to_actions(steps: Vec<Step>) -> Result<Vec<Action>, RuleError> {
    steps
        .into_iter()
        .map(|step| {
            Ok(match step {
                Step::AddHeader(name, value) => Action::add_header(name, value),
                Step::SetHeader(name, value) => Action::set_header(name, value),
                Step::RemoveHeader(name) => Action::remove_header(name),
                Step::PrefixSubject(prefix) => Action::prefix_subject(prefix),
                Step::Banner {
                    text,
                    html,
                    position,
                } => Action::banner(
                    text,
                    html,
                    match position {
                        Where::Top => Position::Top,
                        Where::Bottom => Position::Bottom,
                    },
                ),
                Step::SetRecipients(r) => Action::set_recipients(r),
                Step::AddRecipients(r) => Action::add_recipients(r),
                Step::FileInto(folder) => Action::file_into(folder),
                Step::Bounce { code, status, text } => Action::bounce(code, status, text),
                Step::Drop => Action::Drop,
                Step::Stop => Action::Stop,
                Step::Fail { message, temporary } => return Err(RuleError { message, temporary }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        let json = r#"{"actions": [
            {"add_header": ["X-A", "1"]}, {"set_header": ["X-B", "2"]}, {"remove_header": "X-C"},
            {"prefix_subject": "[x] "}, {"banner": {"text": "T", "position": "bottom"}},
            {"set_recipients": ["a@example.com"]}, {"add_recipients": ["b@example.net"]},
            {"file_into": "Junk"}, {"bounce": {"code": 550, "status": "5.1.1", "text": "gone"}},
            "drop", "stop"
        ]}"#;
        let config: Config = sluice_sdk::parse_config(json).unwrap();
        let actions = to_actions(config.actions.clone()).unwrap();
        assert_eq!(actions.len(), 11);
        assert_eq!(actions[0], Action::add_header("X-A", "1"));
        assert_eq!(actions[4], Action::banner("T", None, Position::Bottom));
        assert_eq!(actions[8], Action::bounce(550, "5.1.1", "gone"));
        assert_eq!(actions[9..], [Action::Drop, Action::Stop]);
    }

    #[test]
    fn fail_returns_a_rule_error() {
        let json = r#"{"actions": ["stop", {"fail": {"message": "boom", "temporary": true}}]}"#;
        let config: Config = sluice_sdk::parse_config(json).unwrap();
        let err = to_actions(config.actions.clone()).unwrap_err();
        assert_eq!((err.message.as_str(), err.temporary), ("boom", true));
    }

    #[test]
    fn refuses_unknown_shapes() {
        for bad in [
            r#"{"actions": ["explode"]}"#,
            r#"{"actions": [{"add_header": ["only-name"]}]}"#,
            r#"{"actions": [{"banner": {"text": "t", "colour": "red"}}]}"#,
            r#"{"action": []}"#,
        ] {
            assert!(sluice_sdk::parse_config::<Config>(bad).is_err(), "{bad}");
        }
        assert!(sluice_sdk::parse_config::<Config>("{}")
            .unwrap()
            .actions
            .is_empty());
    }
}
