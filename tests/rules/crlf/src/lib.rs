//! `rule-crlf`: tries header injection: `add-header X-Crlf: "ok\r\nBcc: victim@example.net"`.
//! The host must refuse the action (CR/LF in a header value).

use sluice_sdk::prelude::*;

/// The rule.
pub struct Crlf;

/// The value the rule sends.
pub const VALUE: &str = "ok\r\nBcc: victim@example.net";

impl Rule for Crlf {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        Ok(vec![Action::add_header("X-Crlf", VALUE)])
    }
}

sluice_sdk::export_rule!(Crlf);
