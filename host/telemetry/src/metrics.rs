//! Metrics in CloudWatch Embedded Metric Format (EMF): one JSON object per line on stdout,
//! which CloudWatch Logs turns into metrics (in the Lambda by itself; for the daemon through
//! the CloudWatch agent's EMF listener or a log subscription).
//!
//! EMF rather than `PutMetricData`: no API call per message (no throttling, no cost per call,
//! no credentials beyond the log stream), nothing to batch or retry, and the numbers stay
//! next to the log lines of the same message. Dimensions are kept small: the domain, and the
//! step for step metrics; never recipients.

use std::time::{SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Sluice";

/// What one message did in one configured domain (counts are recipients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMetrics {
    /// The configured domain (`*` for the catch-all chain).
    pub domain: String,
    /// Recipients the domain's chain was run for.
    pub received: u64,
    /// Mailbox copies the chain decided (one per recipient and folder).
    pub delivered: u64,
    /// Recipients relayed (forwards, external destinations).
    pub relayed: u64,
    /// Recipients refused with a bounce.
    pub bounced: u64,
    /// Recipients discarded.
    pub dropped: u64,
    /// Recipients left for a retry (the chain tempfailed, or a delivery was deferred).
    pub tempfailed: u64,
    /// The message's size in bytes.
    pub bytes: u64,
    /// From SES's receipt to the end of handling, in milliseconds (none when unknown).
    pub age_ms: Option<u64>,
    /// Time in the chains, in microseconds.
    pub chain_us: u64,
}

/// What needs an operator's eye in one message's deliveries (counts are recipients). Emitted
/// only when one is not zero; the template alarms on each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryMetrics {
    /// Sends claimed by an attempt that never confirmed them (a crash), sent again
    /// (`[relay] sends = "at-least-once"`): the recipient may have two copies.
    pub resent: u64,
    /// Such sends not sent again (`"at-most-once"`): each may be missing.
    pub unconfirmed: u64,
    /// Copies the config refused for every recipient (kept under `_undeliverable/`).
    pub undeliverable: u64,
}

impl DeliveryMetrics {
    /// Nothing to report.
    pub fn is_zero(&self) -> bool {
        *self == DeliveryMetrics::default()
    }
}

/// One EMF object for `d`, no dimensions: `Resent`, `Unconfirmed`, `Undeliverable` (Count).
pub fn delivery_line(d: &DeliveryMetrics) -> String {
    line(
        &[],
        &[
            ("Resent", "Count", d.resent),
            ("Unconfirmed", "Count", d.unconfirmed),
            ("Undeliverable", "Count", d.undeliverable),
        ],
    )
}

/// One EMF object, no dimensions: `ArchiveFailed` (Count): messages delivered without
/// their archive copy (`[archive] required = false` and the write failed).
pub fn archive_failed_line(failed: u64) -> String {
    line(&[], &[("ArchiveFailed", "Count", failed)])
}

/// One EMF object, no dimensions: `Quarantined` and `Released` (Count): copies kept in
/// `[quarantine]` by the pipeline, and copies `sluice quarantine release` delivered.
pub fn quarantine_line(quarantined: u64, released: u64) -> String {
    line(
        &[],
        &[
            ("Quarantined", "Count", quarantined),
            ("Released", "Count", released),
        ],
    )
}

/// One EMF object, no dimensions: `AutoReplySent`, `AutoReplySuppressed` (Count): automatic
/// replies sent for a message, and those the host would not send (the never-answer list,
/// answered within the interval, not delivered). A sudden rise of either is worth a look.
pub fn reply_line(sent: u64, suppressed: u64) -> String {
    line(
        &[],
        &[
            ("AutoReplySent", "Count", sent),
            ("AutoReplySuppressed", "Count", suppressed),
        ],
    )
}

/// How a step ended, as counted: one metric each (the chain's `StepStatus`, mapped by the
/// pipeline with an exhaustive match, so a new status cannot be miscounted silently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StepEnd {
    /// It answered (`StepOk`).
    #[default]
    Ok,
    /// It returned its own error (`StepRuleError`).
    RuleError,
    /// The sandbox stopped it or refused its answer (`StepFailed`).
    Failed,
    /// Not run: an open circuit breaker (`StepSkipped`).
    Skipped,
}

impl StepEnd {
    /// The count's metric name.
    pub fn metric(self) -> &'static str {
        match self {
            StepEnd::Ok => "StepOk",
            StepEnd::RuleError => "StepRuleError",
            StepEnd::Failed => "StepFailed",
            StepEnd::Skipped => "StepSkipped",
        }
    }
}

/// How one step went for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepMetrics {
    /// The configured domain.
    pub domain: String,
    /// The step's name.
    pub step: String,
    /// How it ended.
    pub outcome: StepEnd,
    /// The step's wall time, in microseconds.
    pub micros: u64,
}

/// One EMF object for `m`: metrics `Received`, `Delivered`, `Relayed`, `Bounced`, `Dropped`,
/// `Tempfailed` (Count), `Bytes` (Bytes), `AgeMs` (Milliseconds), `ChainMicros`
/// (Microseconds), dimension `Domain`.
pub fn message_line(m: &MessageMetrics) -> String {
    let mut metrics: Vec<(&str, &str, u64)> = vec![
        ("Received", "Count", m.received),
        ("Delivered", "Count", m.delivered),
        ("Relayed", "Count", m.relayed),
        ("Bounced", "Count", m.bounced),
        ("Dropped", "Count", m.dropped),
        ("Tempfailed", "Count", m.tempfailed),
        ("Bytes", "Bytes", m.bytes),
        ("ChainMicros", "Microseconds", m.chain_us),
    ];
    if let Some(age) = m.age_ms {
        metrics.push(("AgeMs", "Milliseconds", age));
    }
    line(&[("Domain", &m.domain)], &metrics)
}

/// One EMF object for `s`: `StepMicros` (Microseconds) and a count named after the outcome
/// (`StepOk`, `StepRuleError`, `StepFailed`, `StepSkipped`: a skipped step is an open
/// circuit breaker), dimensions `Domain` and `Step`.
pub fn step_line(s: &StepMetrics) -> String {
    let outcome = s.outcome.metric();
    line(
        &[("Domain", &s.domain), ("Step", &s.step)],
        &[
            ("StepMicros", "Microseconds", s.micros),
            (outcome, "Count", 1),
        ],
    )
}

/// Writes the lines to stdout, one per line, in one write so that lines of two messages
/// handled at once do not interleave.
pub fn emit(lines: &[String]) {
    use std::io::Write as _;
    if lines.is_empty() {
        return;
    }
    let mut text = lines.join("\n");
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// An EMF object: the `_aws` directive first (naming the metrics and the one dimension set),
/// then the dimension values and metric values at the top level.
#[derive(serde::Serialize)]
struct Emf {
    #[serde(rename = "_aws")]
    aws: serde_json::Value,
    #[serde(flatten)]
    values: serde_json::Map<String, serde_json::Value>,
}

fn line(dimensions: &[(&str, &str)], metrics: &[(&str, &str, u64)]) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit, _)| serde_json::json!({ "Name": name, "Unit": unit }))
        .collect();
    let mut values = serde_json::Map::new();
    for (k, v) in dimensions {
        values.insert((*k).into(), (*v).into());
    }
    for (name, _, value) in metrics {
        values.insert((*name).into(), (*value).into());
    }
    let emf = Emf {
        aws: serde_json::json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": definitions,
            }],
        }),
        values,
    };
    serde_json::to_string(&emf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_failures_are_one_count() {
        let v: serde_json::Value = serde_json::from_str(&archive_failed_line(2)).unwrap();
        assert_eq!(v["ArchiveFailed"], 2);
        let r: serde_json::Value = serde_json::from_str(&reply_line(1, 2)).unwrap();
        assert_eq!(
            (
                r["AutoReplySent"].as_u64(),
                r["AutoReplySuppressed"].as_u64()
            ),
            (Some(1), Some(2))
        );
        let q: serde_json::Value = serde_json::from_str(&quarantine_line(3, 1)).unwrap();
        assert_eq!(
            (q["Quarantined"].as_u64(), q["Released"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "ArchiveFailed"
        );
    }

    #[test]
    fn a_message_line_is_emf_with_the_domain_dimension() {
        let line = message_line(&MessageMetrics {
            domain: "exa\"mple.com".into(),
            received: 3,
            delivered: 1,
            relayed: 1,
            dropped: 1,
            bytes: 2048,
            age_ms: Some(1500),
            chain_us: 120,
            ..MessageMetrics::default()
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Sluice");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Domain"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        // Every metric the directive names has a value at the top level.
        for name in &names {
            assert!(v[name].is_u64(), "{name} in {line}");
        }
        assert!(names.contains(&"AgeMs") && names.contains(&"Tempfailed"));
        assert_eq!(v["Domain"], "exa\"mple.com");
        assert_eq!(
            (v["Received"].as_u64(), v["Bytes"].as_u64()),
            (Some(3), Some(2048))
        );
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn a_delivery_line_has_no_dimension_and_every_count() {
        let d = DeliveryMetrics {
            resent: 2,
            unconfirmed: 0,
            undeliverable: 1,
        };
        assert!(!d.is_zero() && DeliveryMetrics::default().is_zero());
        let v: serde_json::Value = serde_json::from_str(&delivery_line(&d)).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], serde_json::json!([[]]));
        assert_eq!(
            (
                v["Resent"].as_u64(),
                v["Unconfirmed"].as_u64(),
                v["Undeliverable"].as_u64()
            ),
            (Some(2), Some(0), Some(1))
        );
    }

    #[test]
    fn a_step_line_counts_its_outcome_under_domain_and_step() {
        for (outcome, metric) in [
            (StepEnd::Ok, "StepOk"),
            (StepEnd::RuleError, "StepRuleError"),
            (StepEnd::Failed, "StepFailed"),
            (StepEnd::Skipped, "StepSkipped"),
        ] {
            let line = step_line(&StepMetrics {
                domain: "example.com".into(),
                step: "alias".into(),
                outcome,
                micros: 42,
            });
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                serde_json::json!([["Domain", "Step"]])
            );
            assert_eq!(v[metric], 1, "{line}");
            assert_eq!(v["StepMicros"], 42);
            assert_eq!(v["Step"], "alias");
        }
    }
}
