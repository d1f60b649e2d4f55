//! `headers`: removes header fields, e.g. the internal `Received` fields of outbound mail.
//!
//! Mail a local user sends carries `Received` fields that show the inside: the client's
//! address on the office or home network, the submission server's name. In an `[[outbound]]`
//! chain (WIT 0.1.5 `flow`) the host lets a rule remove `Received` (and only there: on
//! received mail those fields are the trace and stay protected), so this rule asks for it
//! only on outbound mail. Other fields in `remove` are removed in both directions; the host
//! refuses the rest of its protected fields (`DKIM-Signature`, `ARC-*`,
//! `Authentication-Results`) and the MIME structure fields, and so does `validate-config`.
//!
//! # Config
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `remove` | list of field names | `["Received"]` | fields to remove (`Received`: outbound mail only) |
//!
//! ```toml
//! [[outbound.step]]
//! plugin = "headers.wasm"
//! config = { remove = ["Received", "X-Originating-IP", "User-Agent"] }
//! ```

use sluice_sdk::prelude::*;

/// The rule's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Field names to remove.
    pub remove: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            remove: vec!["Received".into()],
        }
    }
}

/// Fields no rule may remove (the host refuses them; `Received` is allowed outbound).
const NEVER: &[&str] = &[
    "dkim-signature",
    "authentication-results",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "x-sluice-loop",
];

/// The rule.
pub struct Headers;

impl Rule for Headers {
    type Config = Config;

    fn check_config(config: &Config) -> Result<(), String> {
        for name in &config.remove {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!("`remove`: {name:?} is not a header field name"));
            }
            let lower = name.to_ascii_lowercase();
            if NEVER.contains(&lower.as_str()) || lower.starts_with("arc-") {
                return Err(format!(
                    "`remove`: the host never lets a rule remove {name:?}"
                ));
            }
        }
        Ok(())
    }

    fn evaluate(msg: &Message, _ctx: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        let present = msg.header_names();
        Ok(removals(&present, &config.remove, flow::is_outbound()))
    }
}

sluice_sdk::export_rule!(Headers);

/// The removals for a message with these field names: each configured field that is there,
/// `Received` only when `outbound`.
pub fn removals(present: &[String], remove: &[String], outbound: bool) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    for name in remove {
        if name.eq_ignore_ascii_case("received") && !outbound {
            continue;
        }
        let there = present.iter().any(|p| p.eq_ignore_ascii_case(name));
        let asked = out
            .iter()
            .any(|a| matches!(a, Action::RemoveHeader(n) if n.eq_ignore_ascii_case(name)));
        if there && !asked {
            out.push(Action::remove_header(name.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn received_goes_only_from_outbound_mail() {
        let present = list(&["Received", "From", "X-Originating-IP"]);
        let remove = list(&["Received", "x-originating-ip", "User-Agent", "RECEIVED"]);
        assert_eq!(
            removals(&present, &remove, true),
            vec![
                Action::remove_header("Received"),
                Action::remove_header("x-originating-ip")
            ]
        );
        assert_eq!(
            removals(&present, &remove, false),
            vec![Action::remove_header("x-originating-ip")]
        );
    }

    #[test]
    fn protected_and_structure_fields_are_refused_at_check() {
        for name in ["DKIM-Signature", "ARC-Seal", "Content-Type", "X Y", ""] {
            let c = Config {
                remove: vec![name.into()],
            };
            assert!(Headers::check_config(&c).is_err(), "{name}");
        }
        assert!(Headers::check_config(&Config::default()).is_ok());
    }
}
