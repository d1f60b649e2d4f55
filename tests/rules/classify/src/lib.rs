//! `rule-classify`: asks an HTTP classifier about the message, for the `http` capability's
//! tests (WIT 0.1.4).
//!
//! Config: `{ "url": "http://...", "method": "POST" }` (method defaults to `POST`). The rule
//! sends `{"subject": "<the Subject>"}` as JSON and, when the service answers, adds
//! `X-Classifier-Status: <status>` and `X-Classifier: <the body, at most 200 bytes>`; a body
//! that contains `"spam"` also files the message into `Junk`. A failed call is returned as
//! it is, so the step's `on_error` applies.

use serde::Deserialize;
use sluice_sdk::prelude::*;

/// The rule.
pub struct Classify;

/// The rule's config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the classifier is.
    pub url: String,
    /// The method (default `POST`).
    pub method: Option<String>,
}

impl Rule for Classify {
    type Config = Config;

    fn evaluate(msg: &Message, _: &Context, config: &Config) -> Result<Vec<Action>, RuleError> {
        classify(&msg.subject().unwrap_or_default(), config)
    }
}

/// Asks the classifier about `subject` and turns its answer into actions.
pub fn classify(subject: &str, config: &Config) -> Result<Vec<Action>, RuleError> {
    let body = sluice_sdk::serde_json::json!({ "subject": subject }).to_string();
    let answer = http::send(http::Request {
        method: config.method.clone().unwrap_or_else(|| "POST".into()),
        url: config.url.clone(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some(body.into_bytes()),
    })?;
    let text: String = answer
        .text()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let mut actions = vec![
        Action::AddHeader(Header {
            name: "X-Classifier-Status".into(),
            value: answer.status.to_string(),
        }),
        Action::AddHeader(Header {
            name: "X-Classifier".into(),
            value: text.clone(),
        }),
    ];
    if text.contains("\"spam\"") {
        actions.push(Action::FileInto("Junk".into()));
    }
    Ok(actions)
}

sluice_sdk::export_rule!(Classify);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_becomes_headers_and_a_failure_is_returned() {
        http::clear();
        http::respond("http://c.test/", 200, r#"{"verdict":"spam"}"#);
        let config = Config {
            url: "http://c.test/v1".into(),
            method: None,
        };
        let actions = classify("hi", &config).unwrap();
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert!(actions.contains(&Action::FileInto("Junk".into())));
        let sent = http::take_sent();
        assert_eq!(sent[0].body.as_deref(), Some(&br#"{"subject":"hi"}"#[..]));
        http::fail("http://c.test/", RuleError::temporary("timed out"));
        assert!(classify("hi", &config).unwrap_err().temporary);
    }
}
