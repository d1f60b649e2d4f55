//! Helpers for rule configs.

use serde::de::Error as _;
use serde::Deserializer;
use serde_with::{DeserializeAs, OneOrMany, Same};

/// `deserialize_with` for a field written as one string or a list of strings
/// (`to = "a@x"` or `to = ["a@x", "b@x"]`), always read as a list:
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config {
///     #[serde(deserialize_with = "sluice_sdk::config::one_or_many")]
///     to: Vec<String>,
/// }
/// let c: Config = serde_json::from_str(r#"{"to": "a@x.test"}"#).unwrap();
/// assert_eq!(c.to, ["a@x.test"]);
/// ```
///
/// Anything else is refused with one sentence that names both accepted shapes (serde_with's
/// own message lists each variant's failure on separate lines, which reads badly in a
/// `sluice check` error).
pub fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    OneOrMany::<Same>::deserialize_as(deserializer).map_err(|_: D::Error| {
        D::Error::custom("invalid value: expected a string or a list of strings")
    })
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Config {
        #[serde(deserialize_with = "super::one_or_many")]
        to: Vec<String>,
    }

    #[test]
    fn one_string_or_a_list() {
        let one: Config = serde_json::from_str(r#"{"to": "a"}"#).unwrap();
        assert_eq!(one.to, ["a"]);
        let many: Config = serde_json::from_str(r#"{"to": ["a", "b"]}"#).unwrap();
        assert_eq!(many.to, ["a", "b"]);
        let e = serde_json::from_str::<Config>(r#"{"to": 3}"#).unwrap_err();
        // One sentence naming both shapes the field accepts, with the position.
        let text = e.to_string();
        assert!(text.contains("a string or a list of strings"), "{text}");
        assert!(text.contains("line 1"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        let e = serde_json::from_str::<Config>(r#"{"to": [3]}"#).unwrap_err();
        assert!(
            e.to_string().contains("a string or a list of strings"),
            "{e}"
        );
    }
}
