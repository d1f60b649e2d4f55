//! The four reference rules (alias, banner, junk, subject-tag) as one chain, with the
//! configs the benches use.

/// The four steps' configs, as TOML (for the Wasm chain) and JSON (for the native rules).
pub const ALIAS: &str = r#"{"mailboxes":["bob"],"aliases":{"info":"bob"}}"#;
pub const BANNER: &str =
    r#"{"text":"External sender: be careful with links.","internal_domains":["example.com"]}"#;
pub const JUNK: &str = r#"{"score_header":"X-Spam-Score","score_threshold":5.0}"#;
pub const SUBJECT_TAG: &str =
    r#"{"tag":"[EXT]","internal_domains":["example.com"],"keywords":["invoice","unsubscribe"]}"#;

/// The four reference rules as a chain of `example.com`, with this `instances` setting.
pub fn reference_chain(instances: &str) -> String {
    let mut toml = String::from("[[domain]]\nname = \"example.com\"\n");
    for (rule, config) in [
        ("alias", ALIAS),
        ("banner", BANNER),
        ("junk", JUNK),
        ("subject-tag", SUBJECT_TAG),
    ] {
        toml.push_str(&format!(
            "[[domain.step]]\nplugin = \"{{rule:{rule}}}\"\ninstances = \"{instances}\"\nconfig = {}\n",
            json_to_inline_toml(config)
        ));
    }
    toml
}

/// `{"a":["b"],"c":{"d":"e"}}` as a TOML inline table (the configs above only use strings,
/// numbers, lists and tables).
pub fn json_to_inline_toml(json: &str) -> String {
    fn value(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Object(m) => format!(
                "{{ {} }}",
                m.iter()
                    .map(|(k, v)| format!("{k} = {}", value(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            serde_json::Value::Array(a) => {
                format!("[{}]", a.iter().map(value).collect::<Vec<_>>().join(", "))
            }
            other => other.to_string(),
        }
    }
    value(&serde_json::from_str(json).unwrap())
}
