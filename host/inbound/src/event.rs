//! Parsing of SES, SNS and SQS events into [`Arrival`]s: the SES door (Lambda invoke, SNS,
//! SQS). A notice is SES's word on a message it already accepted, so refusals become DSNs
//! ([`RefuseBy::Dsn`]).

pub use crate::door::{Arrival, MessageContent, RefuseBy};

// ---------------------------------------------------------------------------------------------
// Parsing. Each document is deserialized into typed structs through `serde_path_to_error`, so a
// missing or malformed field is reported by its path in the JSON
// ("Records[0].ses.mail.messageId: invalid type: integer `42`, expected a string"); fields SES
// adds later, or that we do not need (headers, commonHeaders), are skipped unread.
//
// Which types come from where:
// - SQS records: `aws_lambda_events::sqs::SqsMessage` (every field optional, as we need).
// - SNS records and envelopes, SES notifications: our own structs below, because the crate's
//   (features "sns", "ses") are too strict where Sluice needs nothing and too loose or
//   incomplete where it needs something:
//   - `sns::SnsRecord` / `SnsMessage` require `EventVersion`, `EventSubscriptionArn`,
//     `TopicArn`, `Timestamp`, `SignatureVersion`, `Signature`, `SigningCertUrl` and
//     `UnsubscribeUrl`. Sluice reads only `Type` and `Message` and checks no signature, and
//     minimal envelopes (the daemon's and the Lambda's tests send some) would be refused.
//   - `ses::SimpleEmailService` requires `mail.commonHeaders` (with `from`), `mail.headers`,
//     `headersTruncated`, `destination`, `receipt.timestamp`, `processingTimeMillis` and all
//     five verdicts, none of which Sluice needs (a missing verdict is `Unknown`); it makes
//     `mail.messageId` optional, which Sluice does need; it reads the timestamps as `chrono`
//     `DateTime`s, so an odd timestamp would fail the whole event where it only makes
//     `received_at` 0; and its receipt action has no `encoding`, which tells Base64 from UTF-8
//     content for the SNS action.
// What is left on `serde_json::Value` is telling the kinds of document apart (by a top-level
// key) so that an unrecognised one is described by what it does have.
// ---------------------------------------------------------------------------------------------

use base64::Engine as _;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_engine::{Verdict, Verdicts};

/// Why an event or a notification could not be read. Each message names the field (by its path
/// in the JSON) and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The text is not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A field is absent, or there with the wrong type or shape: serde's message (e.g.
    /// ``missing field `recipients` ``, ``invalid type: integer `7`, expected a string``) at
    /// the path of the field, or of the object missing it.
    #[error("{}{message}", path_prefix(path))]
    Field {
        /// Where in the document, e.g. `receipt.recipients[1]`; empty for its top level.
        path: String,
        /// What was wrong there.
        message: String,
    },
    /// A notification other than a receipt (e.g. a bounce or complaint notification).
    #[error(
        "notificationType is {0:?}, not \"Received\": only SES receipt notifications carry mail"
    )]
    NotReceived(String),
    /// An SNS message other than a notification (e.g. a subscription confirmation).
    #[error("SNS message Type is {0:?}, not \"Notification\"")]
    NotSnsNotification(String),
    /// JSON that is neither an SES notification nor an SNS envelope.
    #[error("neither an SES receipt notification (no notificationType) nor an SNS envelope (no Type); top-level keys: {0}")]
    UnknownNotification(String),
    /// `receipt.action.type` is not one that can deliver a message to Sluice.
    #[error("receipt.action.type {0:?} is not \"S3\", \"SNS\" or \"Lambda\"")]
    UnknownAction(String),
    /// `receipt.action.encoding` is neither `BASE64` nor `UTF8`.
    #[error("receipt.action.encoding {0:?} is not \"BASE64\" or \"UTF8\"")]
    UnknownEncoding(String),
    /// `content` could not be decoded.
    #[error("content is not valid Base64: {0}")]
    BadBase64(String),
    /// A Lambda event whose source could not be recognised.
    #[error("unrecognised Lambda event: {0}")]
    UnknownEvent(String),
    /// An error inside one part of a larger event: a JSON document carried as a string
    /// (`Records[2].Sns.Message: ...`, `body: ...`), or a check made after deserializing.
    #[error("{at}: {source}")]
    In {
        /// Where, e.g. `Records[2].body`.
        at: String,
        /// What went wrong there.
        source: Box<EventError>,
    },
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl EventError {
    /// The error as seen from `at`, the path of the value it was found in (same document): a
    /// field error's path is extended (`Records[0]` + `ses.mail` = `Records[0].ses.mail`).
    fn at(self, at: &str) -> EventError {
        match self {
            EventError::Field { path, message } => EventError::Field {
                path: if path.is_empty() {
                    at.to_string()
                } else if path.starts_with('[') {
                    format!("{at}{path}")
                } else {
                    format!("{at}.{path}")
                },
                message,
            },
            other => other.inside(at),
        }
    }

    /// The error of a document carried as the string `at` of an outer one.
    fn inside(self, at: impl Into<String>) -> EventError {
        EventError::In {
            at: at.into(),
            source: Box::new(self),
        }
    }

    /// `field` is absent from the object at `path` (worded as serde words it).
    fn missing(path: &str, field: &str) -> EventError {
        EventError::Field {
            path: path.to_string(),
            message: format!("missing field `{field}`"),
        }
    }
}

/// Deserializes `value` as a `T`; an error names the field by its path from `value`.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, EventError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        EventError::Field {
            // `serde_path_to_error` writes the top level as ".".
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// A Lambda invocation's event, by source.
#[derive(Debug, Clone)]
pub enum LambdaEvent {
    /// SES invoked the function directly (a receipt rule's Lambda action). Every record must
    /// parse: SES retries the whole invocation, so one unreadable record fails it.
    SesInvoke(Vec<Arrival>),
    /// SNS delivered notifications (one per record in practice), each parsed on its own; an
    /// error is relative to its record (`Sns.Message: ...`).
    Sns(Vec<Result<Arrival, EventError>>),
    /// An SQS batch; each record is reported as a success or failure on its own.
    Sqs(Vec<SqsRecord>),
}

/// One record of an SQS batch.
#[derive(Debug, Clone)]
pub struct SqsRecord {
    /// The SQS message id: the `itemIdentifier` of a partial batch failure.
    pub message_id: String,
    /// `attributes.ApproximateReceiveCount` (0 if absent or unreadable).
    pub receive_count: u32,
    /// The body, read as an SES notification (raw, or inside an SNS envelope).
    pub notice: Result<Arrival, EventError>,
}

// --- The documents, as far as Sluice reads them ----------------------------------------------

/// `notificationType` alone, read first: a bounce or complaint notification has no `receipt`,
/// and should be refused as such rather than for the missing field.
#[derive(Deserialize)]
struct NotificationType {
    #[serde(rename = "notificationType")]
    kind: String,
}

/// An SES receipt notification (SNS or S3 action), or the `ses` of an SES invoke record.
#[derive(Deserialize)]
struct SesParts {
    mail: SesMail,
    receipt: SesReceipt,
    /// The SNS action's message, in `receipt.action.encoding`.
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesMail {
    message_id: String,
    /// A null sender (bounces) may come as an empty string, `null`, or be left out.
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    timestamp: Lenient<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesReceipt {
    recipients: Vec<String>,
    #[serde(default)]
    spf_verdict: Lenient<SesVerdict>,
    #[serde(default)]
    dkim_verdict: Lenient<SesVerdict>,
    #[serde(default)]
    dmarc_verdict: Lenient<SesVerdict>,
    #[serde(default)]
    spam_verdict: Lenient<SesVerdict>,
    #[serde(default)]
    virus_verdict: Lenient<SesVerdict>,
    /// Only when the DMARC verdict is FAIL: the sender domain's policy (`none`, `quarantine`,
    /// `reject`; SES has sent them capitalised).
    #[serde(default)]
    dmarc_policy: Lenient<String>,
    action: SesAction,
}

#[derive(Deserialize)]
struct SesVerdict {
    #[serde(default)]
    status: Option<String>,
}

/// The receipt rule action that produced the notification. One flat struct rather than an enum
/// tagged by `type`: serde reads a tagged enum's fields from a buffered copy, which loses their
/// paths in errors (`receipt.action.bucketName` would be reported as `receipt.action`), and the
/// fields each type needs are checked in [`SesParts::into_notice`] instead.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesAction {
    #[serde(rename = "type")]
    kind: String,
    /// S3.
    #[serde(default)]
    bucket_name: Option<String>,
    /// S3.
    #[serde(default)]
    object_key: Option<String>,
    /// SNS: `BASE64` or `UTF8` (the default).
    #[serde(default)]
    encoding: Option<String>,
}

/// A field read when it has the expected shape and ignored otherwise (absent, `null`, another
/// type): verdicts, the DMARC policy and the timestamp are advice, not a reason to refuse mail.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient<T> {
    Read(T),
    Ignored(IgnoredAny),
}

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient::Ignored(IgnoredAny)
    }
}

impl<T> Lenient<T> {
    fn get(self) -> Option<T> {
        match self {
            Lenient::Read(v) => Some(v),
            Lenient::Ignored(_) => None,
        }
    }
}

/// An SNS message as SNS delivers it to SQS (without raw message delivery) or HTTP endpoints.
#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    /// Optional here so that a message of another `Type` is refused for its type.
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// One record of an SNS Lambda event.
#[derive(Deserialize)]
struct SnsRecord {
    #[serde(rename = "Sns")]
    sns: SnsRecordMessage,
}

#[derive(Deserialize)]
struct SnsRecordMessage {
    #[serde(rename = "Message")]
    message: String,
}

/// One record of an SES invoke event.
#[derive(Deserialize)]
struct SesInvokeRecord {
    ses: SesParts,
}

// --- Parsing ---------------------------------------------------------------------------------

/// Parses an SES receipt notification, or an SNS envelope whose `Message` holds one (as SNS
/// delivers it to SQS without raw message delivery, or to HTTP endpoints).
pub fn parse_notification(json: &str) -> Result<Arrival, EventError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| EventError::NotJson(e.to_string()))?;
    notification_from_value(&value)
}

fn notification_from_value(value: &Value) -> Result<Arrival, EventError> {
    let Some(obj) = value.as_object() else {
        return Err(EventError::Field {
            path: String::new(),
            message: format!(
                "the notification is {}, not a JSON object",
                json_kind(value)
            ),
        });
    };
    if obj.contains_key("notificationType") {
        let NotificationType { kind } = typed(value)?;
        if kind != "Received" {
            return Err(EventError::NotReceived(kind));
        }
        return typed::<SesParts>(value)?.into_notice();
    }
    if obj.contains_key("Type") {
        let SnsEnvelope { kind, message } = typed(value)?;
        if kind != "Notification" {
            return Err(EventError::NotSnsNotification(kind));
        }
        let message = message.ok_or_else(|| EventError::missing("", "Message"))?;
        return parse_notification(&message).map_err(|e| e.inside("Message"));
    }
    Err(EventError::UnknownNotification(keys(obj)))
}

/// Parses a Lambda invocation's event: SES direct invoke, SNS or SQS, told apart by
/// `Records[0].eventSource` (`aws:ses`, `aws:sqs`) or `Records[0].EventSource` (`aws:sns`).
pub fn parse_lambda_event(v: &Value) -> Result<LambdaEvent, EventError> {
    let Some(obj) = v.as_object() else {
        return Err(EventError::UnknownEvent(format!(
            "expected a JSON object with Records, got {}",
            json_kind(v)
        )));
    };
    let Some(records_value) = obj.get("Records") else {
        return Err(EventError::UnknownEvent(format!(
            "no Records array; top-level keys: {}",
            keys(obj)
        )));
    };
    let Some(records) = records_value.as_array() else {
        return Err(EventError::UnknownEvent(format!(
            "Records is {}, not an array",
            json_kind(records_value)
        )));
    };
    let Some(first) = records.first() else {
        return Err(EventError::UnknownEvent("Records is empty".into()));
    };
    let source = first
        .get("eventSource")
        .or_else(|| first.get("EventSource"))
        .and_then(Value::as_str);
    match source {
        Some("aws:ses") => typed::<Vec<SesInvokeRecord>>(records_value)
            .map_err(|e| e.at("Records"))?
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.ses
                    .into_notice()
                    .map_err(|e| e.at(&format!("Records[{i}].ses")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LambdaEvent::SesInvoke),
        Some("aws:sns") => Ok(LambdaEvent::Sns(records.iter().map(sns_record).collect())),
        Some("aws:sqs") => {
            // Only a record without a usable `messageId` fails the event (it could not be
            // reported as failed); a bad body is kept as that record's `notice` error.
            let messages: Vec<aws_lambda_events::sqs::SqsMessage> =
                typed(records_value).map_err(|e| e.at("Records"))?;
            messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| sqs_record(m).map_err(|e| e.at(&format!("Records[{i}]"))))
                .collect::<Result<Vec<_>, _>>()
                .map(LambdaEvent::Sqs)
        }
        Some(other) => Err(EventError::UnknownEvent(format!(
            "Records[0] event source is {other:?}; expected \"aws:ses\", \"aws:sns\" or \"aws:sqs\""
        ))),
        None => Err(EventError::UnknownEvent(format!(
            "Records[0] has no eventSource or EventSource; its keys: {}",
            first
                .as_object()
                .map(keys)
                .unwrap_or_else(|| json_kind(first).into())
        ))),
    }
}

/// Errors are relative to the record (the caller knows its index); the notification's are
/// inside `Sns.Message`.
fn sns_record(record: &Value) -> Result<Arrival, EventError> {
    let SnsRecord { sns } = typed(record)?;
    parse_notification(&sns.message).map_err(|e| e.inside("Sns.Message"))
}

/// Errors are relative to the record; the body's are inside `body`.
fn sqs_record(message: aws_lambda_events::sqs::SqsMessage) -> Result<SqsRecord, EventError> {
    let message_id = message
        .message_id
        .ok_or_else(|| EventError::missing("", "messageId"))?;
    let receive_count = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let notice = match &message.body {
        Some(body) => parse_notification(body).map_err(|e| e.inside("body")),
        None => Err(EventError::missing("", "body")),
    };
    Ok(SqsRecord {
        message_id,
        receive_count,
        notice,
    })
}

impl SesParts {
    /// The notice, after the checks serde cannot make: the fields the action's type needs, and
    /// the inline content's encoding. Errors are relative to the object holding `mail`.
    fn into_notice(self) -> Result<Arrival, EventError> {
        let SesParts {
            mail,
            receipt,
            content,
        } = self;
        let verdict = |v: Lenient<SesVerdict>| {
            v.get()
                .and_then(|v| v.status)
                .map_or(Verdict::Unknown, |s| parse_verdict(&s))
        };
        let verdicts = Verdicts {
            spf: verdict(receipt.spf_verdict),
            dkim: verdict(receipt.dkim_verdict),
            dmarc: verdict(receipt.dmarc_verdict),
            spam: verdict(receipt.spam_verdict),
            virus: verdict(receipt.virus_verdict),
            dmarc_policy: receipt
                .dmarc_policy
                .get()
                .filter(|p| !p.is_empty())
                .map(|p| p.to_ascii_lowercase()),
        };

        let action = receipt.action;
        let required = |field: Option<String>, name: &str| {
            field.ok_or_else(|| EventError::missing("receipt.action", name))
        };
        let content = match action.kind.as_str() {
            "S3" => MessageContent::S3 {
                bucket: required(action.bucket_name, "bucketName")?,
                key: required(action.object_key, "objectKey")?,
            },
            "SNS" => {
                let text = content.ok_or_else(|| EventError::missing("", "content"))?;
                let encoding = action.encoding.as_deref().unwrap_or("UTF8");
                MessageContent::Inline(decode_content(&text, encoding)?)
            }
            "Lambda" => MessageContent::Stored,
            _ => return Err(EventError::UnknownAction(action.kind)),
        };

        Ok(Arrival {
            message_id: mail.message_id,
            mail_from: mail.source.unwrap_or_default(),
            recipients: receipt.recipients,
            verdicts,
            received_at: mail
                .timestamp
                .get()
                .and_then(|t| parse_iso8601_ms(&t))
                .unwrap_or(0),
            content,
            refuse_by: RefuseBy::Dsn,
            trusted_authserv_id: None,
            flow: sluice_engine::Flow::default(),
            skip_step: None,
        })
    }
}

fn decode_content(text: &str, encoding: &str) -> Result<Vec<u8>, EventError> {
    if encoding.eq_ignore_ascii_case("BASE64") {
        // Tolerate line-wrapped Base64 (as some relays re-encode it); SES itself sends one line.
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| EventError::BadBase64(e.to_string()))
    } else if encoding.eq_ignore_ascii_case("UTF8") || encoding.eq_ignore_ascii_case("UTF-8") {
        Ok(text.as_bytes().to_vec())
    } else {
        Err(EventError::UnknownEncoding(encoding.to_string()))
    }
}

/// An SES verdict status. Anything unexpected is `Unknown` (verdicts are advice to the rules,
/// not a reason to refuse the message).
fn parse_verdict(status: &str) -> Verdict {
    match status.to_ascii_uppercase().as_str() {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        "GRAY" => Verdict::Gray,
        "PROCESSING_FAILED" => Verdict::ProcessingFailed,
        "DISABLED" => Verdict::Disabled,
        _ => Verdict::Unknown,
    }
}

/// An ISO-8601 date and time with a zone to ms since the Unix epoch (fractions past the
/// millisecond are dropped); `None` for anything else or a time before 1970. SES writes RFC
/// 3339 (`2026-03-03T08:30:01.250Z`); other ISO-8601 forms (`-0500`, `+01`, `,25`) are read
/// too.
fn parse_iso8601_ms(s: &str) -> Option<u64> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    use time::OffsetDateTime;
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .ok()?;
    u64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

fn keys(obj: &Map<String, Value>) -> String {
    if obj.is_empty() {
        return "(none)".into();
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(10).collect();
    if obj.len() > 10 {
        keys.push("...");
    }
    keys.join(", ")
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/ses")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn event(name: &str) -> LambdaEvent {
        let v: Value = serde_json::from_str(&fixture(name)).unwrap();
        parse_lambda_event(&v).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn err(json: &str) -> String {
        parse_notification(json).unwrap_err().to_string()
    }

    /// The S3-action notification fixture as a mutable value, for error cases.
    fn s3_notification() -> Value {
        serde_json::from_str(&fixture("notification-s3.json")).unwrap()
    }

    const S3_RECEIVED_AT: u64 = 1_772_526_601_250; // 2026-03-03T08:30:01.250Z

    fn assert_s3_fixture(n: &Arrival) {
        assert_eq!(n.message_id, "fx0000s3action000001");
        assert_eq!(n.mail_from, "carol@remote.test");
        assert_eq!(n.recipients, ["dave@example.com"]);
        assert_eq!(n.received_at, S3_RECEIVED_AT);
        assert_eq!(
            n.content,
            MessageContent::S3 {
                bucket: "sluice-fixture-inbound".into(),
                key: "mail/fx0000s3action000001".into()
            }
        );
        assert_eq!(
            n.verdicts,
            Verdicts {
                spf: Verdict::Pass,
                dkim: Verdict::Fail,
                dmarc: Verdict::Gray,
                spam: Verdict::ProcessingFailed,
                virus: Verdict::Disabled,
                dmarc_policy: Some("quarantine".into()),
            }
        );
    }

    #[test]
    fn s3_action_notification() {
        assert_s3_fixture(&parse_notification(&fixture("notification-s3.json")).unwrap());
    }

    #[test]
    fn sns_content_base64_and_utf8_decode_to_the_same_message() {
        let b64 = parse_notification(&fixture("notification-sns-base64.json")).unwrap();
        let utf8 = parse_notification(&fixture("notification-sns-utf8.json")).unwrap();
        let (MessageContent::Inline(a), MessageContent::Inline(b)) = (&b64.content, &utf8.content)
        else {
            panic!(
                "inline content expected: {:?} / {:?}",
                b64.content, utf8.content
            );
        };
        assert_eq!(a, b);
        let text = String::from_utf8(a.clone()).unwrap();
        assert!(
            text.starts_with("Return-Path: <carol@remote.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("Grüße"), "{text}");
        assert_eq!(b64.verdicts.dmarc_policy, None);
        assert_eq!(utf8.verdicts.dmarc_policy.as_deref(), Some("none"));
        // `+01:00` offset: the same instant as 08:30:01Z.
        assert_eq!(utf8.received_at, 1_772_526_601_000);
    }

    #[test]
    fn sns_encoding_defaults_to_utf8() {
        let mut v: Value = serde_json::from_str(&fixture("notification-sns-utf8.json")).unwrap();
        v["receipt"]["action"]
            .as_object_mut()
            .unwrap()
            .remove("encoding");
        let n = parse_notification(&v.to_string()).unwrap();
        assert!(matches!(&n.content, MessageContent::Inline(b) if b.starts_with(b"Return-Path:")));
    }

    #[test]
    fn ses_invoke_event() {
        let LambdaEvent::SesInvoke(notices) = event("ses-invoke.json") else {
            panic!("not an SES invoke")
        };
        assert_eq!(notices.len(), 1);
        let n = &notices[0];
        assert_eq!(n.message_id, "fx0000sesinvoke000004");
        assert_eq!(n.mail_from, "", "null sender");
        assert_eq!(n.recipients, ["dave@example.com", "erin@example.com"]);
        assert_eq!(n.content, MessageContent::Stored);
        assert_eq!(n.verdicts.dmarc_policy.as_deref(), Some("reject"));
        assert_eq!(n.received_at, S3_RECEIVED_AT);
    }

    #[test]
    fn sns_event_unwraps_the_message() {
        let LambdaEvent::Sns(notices) = event("sns-event.json") else {
            panic!("not SNS")
        };
        assert_eq!(notices.len(), 1);
        let n = notices[0].as_ref().unwrap();
        assert_eq!(n.message_id, "fx0000snsbase64000002");
        assert!(matches!(&n.content, MessageContent::Inline(b) if b.starts_with(b"Return-Path:")));
    }

    #[test]
    fn sqs_body_as_sns_envelope() {
        let LambdaEvent::Sqs(records) = event("sqs-sns-envelope.json") else {
            panic!("not SQS")
        };
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].message_id,
            "aaaaaaaa-0000-4000-8000-00000000000a"
        );
        assert_eq!(records[0].receive_count, 1);
        assert_s3_fixture(records[0].notice.as_ref().unwrap());
    }

    #[test]
    fn sqs_body_as_raw_notification() {
        let LambdaEvent::Sqs(records) = event("sqs-raw-delivery.json") else {
            panic!("not SQS")
        };
        assert_eq!(
            records[0].message_id,
            "bbbbbbbb-0000-4000-8000-00000000000b"
        );
        assert_eq!(records[0].receive_count, 2);
        let n = records[0].notice.as_ref().unwrap();
        assert_eq!(n.message_id, "fx0000snsutf8000003");
    }

    #[test]
    fn sqs_bad_body_is_a_record_error_not_an_event_error() {
        let mut v: Value = serde_json::from_str(&fixture("sqs-raw-delivery.json")).unwrap();
        let mut bad = v["Records"][0].clone();
        bad["messageId"] = "bad-1".into();
        bad["body"] = "{not json".into();
        bad["attributes"] = serde_json::json!({});
        v["Records"].as_array_mut().unwrap().push(bad);
        let LambdaEvent::Sqs(records) = parse_lambda_event(&v).unwrap() else {
            panic!("not SQS")
        };
        assert!(records[0].notice.is_ok());
        assert_eq!(records[1].message_id, "bad-1");
        assert_eq!(records[1].receive_count, 0);
        let e = records[1].notice.as_ref().unwrap_err().to_string();
        assert_eq!(e, "body: not JSON: key must be a string at line 1 column 2");
    }

    #[test]
    fn sqs_record_without_message_id_fails_the_event() {
        let mut v: Value = serde_json::from_str(&fixture("sqs-raw-delivery.json")).unwrap();
        v["Records"][0].as_object_mut().unwrap().remove("messageId");
        let e = parse_lambda_event(&v).unwrap_err().to_string();
        assert_eq!(e, "Records[0]: missing field `messageId`");
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let mut v = s3_notification();
        v["receipt"].as_object_mut().unwrap().remove("recipients");
        assert_eq!(err(&v.to_string()), "receipt: missing field `recipients`");

        let mut v = s3_notification();
        v["receipt"]["recipients"] = serde_json::json!(["a@example.com", 7]);
        assert_eq!(
            err(&v.to_string()),
            "receipt.recipients[1]: invalid type: integer `7`, expected a string"
        );

        let mut v = s3_notification();
        v.as_object_mut().unwrap().remove("mail");
        assert_eq!(err(&v.to_string()), "missing field `mail`");

        let mut v = s3_notification();
        v["mail"]["messageId"] = 42.into();
        assert_eq!(
            err(&v.to_string()),
            "mail.messageId: invalid type: integer `42`, expected a string"
        );

        let mut v = s3_notification();
        v["receipt"]["action"]
            .as_object_mut()
            .unwrap()
            .remove("bucketName");
        assert_eq!(
            err(&v.to_string()),
            "receipt.action: missing field `bucketName`"
        );

        let mut v = s3_notification();
        v["receipt"]["action"]["type"] = "WorkMail".into();
        assert_eq!(
            err(&v.to_string()),
            "receipt.action.type \"WorkMail\" is not \"S3\", \"SNS\" or \"Lambda\""
        );
    }

    #[test]
    fn sns_content_errors() {
        let mut v: Value = serde_json::from_str(&fixture("notification-sns-base64.json")).unwrap();
        v["content"] = "not*base64!".into();
        assert!(
            err(&v.to_string()).starts_with("content is not valid Base64: "),
            "{}",
            err(&v.to_string())
        );
        v.as_object_mut().unwrap().remove("content");
        assert_eq!(err(&v.to_string()), "missing field `content`");
        v["content"] = "x".into();
        v["receipt"]["action"]["encoding"] = "UTF16".into();
        assert_eq!(
            err(&v.to_string()),
            "receipt.action.encoding \"UTF16\" is not \"BASE64\" or \"UTF8\""
        );
    }

    #[test]
    fn other_notifications_and_envelopes_are_refused_clearly() {
        let mut v = s3_notification();
        v["notificationType"] = "Bounce".into();
        assert_eq!(
            err(&v.to_string()),
            "notificationType is \"Bounce\", not \"Received\": only SES receipt notifications carry mail"
        );
        assert_eq!(
            err(r#"{"Type":"SubscriptionConfirmation","Message":"hi"}"#),
            "SNS message Type is \"SubscriptionConfirmation\", not \"Notification\""
        );
        assert_eq!(
            err(r#"{"Type":"Notification","Message":"{\"notificationType\":\"Received\"}"}"#),
            "Message: missing field `mail`"
        );
        assert_eq!(
            err(r#"{"hello":1}"#),
            "neither an SES receipt notification (no notificationType) nor an SNS envelope (no Type); top-level keys: hello"
        );
        assert_eq!(
            err("[1]"),
            "the notification is an array, not a JSON object"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            err("{not json"),
            "not JSON: key must be a string at line 1 column 2"
        );
        assert_eq!(
            err(""),
            "not JSON: EOF while parsing a value at line 1 column 0"
        );
        let mut v = s3_notification();
        v["mail"]["timestamp"] = "2026-02-30T10:00:00Z".into();
        assert_eq!(parse_notification(&v.to_string()).unwrap().received_at, 0);
        for garbage in [
            "null",
            "0",
            "\"s\"",
            "{}",
            "{\"Records\":null}",
            "{\"mail\":[]}",
            "{\"notificationType\":\"Received\",\"mail\":{},\"receipt\":[]}",
            "{\"Type\":\"Notification\",\"Message\":\"\\u0000\"}",
        ] {
            assert!(parse_notification(garbage).is_err(), "{garbage}");
            if let Ok(v) = serde_json::from_str::<Value>(garbage) {
                assert!(parse_lambda_event(&v).is_err(), "{garbage}");
            }
        }
    }

    #[test]
    fn unknown_lambda_events_say_what_was_seen() {
        let e = |v: Value| parse_lambda_event(&v).unwrap_err().to_string();
        assert_eq!(
            e(serde_json::json!({"hello": "world"})),
            "unrecognised Lambda event: no Records array; top-level keys: hello"
        );
        assert_eq!(
            e(serde_json::json!({"Records": []})),
            "unrecognised Lambda event: Records is empty"
        );
        assert_eq!(
            e(serde_json::json!({"Records": [{"eventSource": "aws:s3"}]})),
            "unrecognised Lambda event: Records[0] event source is \"aws:s3\"; expected \"aws:ses\", \"aws:sns\" or \"aws:sqs\""
        );
        assert_eq!(
            e(serde_json::json!("text")),
            "unrecognised Lambda event: expected a JSON object with Records, got a string"
        );
        assert_eq!(
            e(serde_json::json!({"Records": [{"eventSource": "aws:ses"}]})),
            "Records[0]: missing field `ses`"
        );
    }

    #[test]
    fn timestamps() {
        let t = parse_iso8601_ms;
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2026-03-03T08:30:01.250Z"), Some(S3_RECEIVED_AT));
        assert_eq!(t("2026-03-03T08:30:01.25Z"), Some(S3_RECEIVED_AT));
        assert_eq!(t("2026-03-03T08:30:01.250999Z"), Some(S3_RECEIVED_AT));
        assert_eq!(t("2026-03-03T03:30:01.250-0500"), Some(S3_RECEIVED_AT));
        assert_eq!(t("2000-02-29T23:59:59.999Z"), Some(951_868_799_999));
        assert_eq!(t("1969-12-31T23:59:59Z"), None);
        assert_eq!(t("2026-03-03T08:30:01"), None, "no zone");
        assert_eq!(t("2026-03-03T08:30:01.Z"), None);
        assert_eq!(t("2026-13-03T08:30:01Z"), None);
        assert_eq!(t("2026-03-03T08:30:01+aé"), None);
        assert_eq!(t("2026-03-03T08:30:01Zjunk"), None);
        assert_eq!(t("garbage"), None);
        assert_eq!(t("é026-03-03T08:30:01Z"), None);
        assert_eq!(t("2026-02-30T10:00:00Z"), None);
        // Other ISO-8601 forms than SES's RFC 3339.
        assert_eq!(t("2026-03-03T09:30:01.25+01"), Some(S3_RECEIVED_AT));
        assert_eq!(t("2026-03-03T08:30:01,25Z"), Some(S3_RECEIVED_AT));
        assert_eq!(t("2026-03-03t08:30:01.250z"), Some(S3_RECEIVED_AT));
    }

    #[test]
    fn broken_events_name_the_field_path() {
        let lambda_err = |v: &Value| parse_lambda_event(v).unwrap_err().to_string();

        // SES invoke: the path runs from the event's top level.
        let invoke: Value = serde_json::from_str(&fixture("ses-invoke.json")).unwrap();
        let mut v = invoke.clone();
        v["Records"][0]["ses"]["mail"]["messageId"] = 42.into();
        assert_eq!(
            lambda_err(&v),
            "Records[0].ses.mail.messageId: invalid type: integer `42`, expected a string"
        );
        let mut v = invoke.clone();
        v["Records"][0]["ses"]["receipt"]["action"] =
            serde_json::json!({"type": "S3", "bucketName": "b"});
        assert_eq!(
            lambda_err(&v),
            "Records[0].ses.receipt.action: missing field `objectKey`"
        );
        let mut v = invoke;
        v["Records"][0]["ses"]["receipt"]["action"]["type"] = "Bounce".into();
        assert_eq!(
            lambda_err(&v),
            "Records[0].ses: receipt.action.type \"Bounce\" is not \"S3\", \"SNS\" or \"Lambda\""
        );

        // SNS: per record (the path starts there), the notification inside `Sns.Message` a
        // JSON document of its own.
        let mut v: Value = serde_json::from_str(&fixture("sns-event.json")).unwrap();
        let mut inner: Value =
            serde_json::from_str(v["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
        inner["receipt"]["recipients"] = serde_json::json!(["a@example.com", {"x": 1}]);
        v["Records"][0]["Sns"]["Message"] = inner.to_string().into();
        let LambdaEvent::Sns(notices) = parse_lambda_event(&v).unwrap() else {
            panic!("not SNS")
        };
        assert_eq!(
            notices[0].as_ref().unwrap_err().to_string(),
            "Sns.Message: receipt.recipients[1]: invalid type: map, expected a string"
        );
        v["Records"][0]["Sns"]["Message"] = 7.into();
        let LambdaEvent::Sns(notices) = parse_lambda_event(&v).unwrap() else {
            panic!("not SNS")
        };
        assert_eq!(
            notices[0].as_ref().unwrap_err().to_string(),
            "Sns.Message: invalid type: integer `7`, expected a string"
        );

        // SQS: a record SQS could not have written fails the event; a bad body is the record's.
        let sqs: Value = serde_json::from_str(&fixture("sqs-sns-envelope.json")).unwrap();
        let mut v = sqs.clone();
        v["Records"][0]["attributes"]["ApproximateReceiveCount"] = 3.into();
        assert_eq!(
            lambda_err(&v),
            "Records[0].attributes.ApproximateReceiveCount: invalid type: integer `3`, expected a string"
        );
        let mut v = sqs;
        let mut envelope: Value =
            serde_json::from_str(v["Records"][0]["body"].as_str().unwrap()).unwrap();
        let mut inner: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        inner["mail"]["source"] = 5.into();
        envelope["Message"] = inner.to_string().into();
        v["Records"][0]["body"] = envelope.to_string().into();
        let LambdaEvent::Sqs(records) = parse_lambda_event(&v).unwrap() else {
            panic!("not SQS")
        };
        assert_eq!(
            records[0].notice.as_ref().unwrap_err().to_string(),
            "body: Message: mail.source: invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn advisory_fields_of_another_shape_are_ignored() {
        let mut v = s3_notification();
        v["receipt"]["spfVerdict"] = "PASS".into();
        v["receipt"]["dkimVerdict"] = serde_json::json!({"status": 1});
        v["receipt"]["spamVerdict"] = Value::Null;
        v["receipt"].as_object_mut().unwrap().remove("virusVerdict");
        v["receipt"]["dmarcPolicy"] = serde_json::json!(["reject"]);
        v["mail"]["timestamp"] = S3_RECEIVED_AT.into();
        let n = parse_notification(&v.to_string()).unwrap();
        assert_eq!(
            n.verdicts,
            Verdicts {
                spf: Verdict::Unknown,
                dkim: Verdict::Unknown,
                dmarc: Verdict::Gray,
                spam: Verdict::Unknown,
                virus: Verdict::Unknown,
                dmarc_policy: None,
            }
        );
        assert_eq!(n.received_at, 0);
        v["mail"].as_object_mut().unwrap().remove("timestamp");
        v["mail"]["source"] = Value::Null;
        let n = parse_notification(&v.to_string()).unwrap();
        assert_eq!((n.received_at, n.mail_from.as_str()), (0, ""));
    }

    /// The shared corpus (real SES shapes): checked when present, skipped with one line if not.
    fn corpus_dir() -> Option<PathBuf> {
        sluice_corpus::corpus_dir("the SES corpus checks").map(|c| c.join("ses"))
    }

    fn corpus(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    const CORPUS_ID: &str = "k1v2c3a4b5example0001";

    fn assert_corpus_notice(n: &Arrival) {
        assert_eq!(n.message_id, CORPUS_ID);
        assert_eq!(n.mail_from, "alice@sender.example");
        assert_eq!(n.recipients, ["info@example.com", "bob@example.com"]);
        assert_eq!(n.received_at, 1_795_169_704_312);
        assert_eq!(n.verdicts.spf, Verdict::Pass);
        assert_eq!(n.verdicts.dkim, Verdict::Gray);
        assert_eq!(n.verdicts.dmarc, Verdict::Pass);
    }

    #[test]
    fn corpus_samples() {
        let Some(dir) = corpus_dir() else { return };

        let v: Value = serde_json::from_str(&corpus(&dir, "lambda-ses-invoke.json")).unwrap();
        let LambdaEvent::SesInvoke(notices) = parse_lambda_event(&v).unwrap() else {
            panic!("lambda-ses-invoke.json: not an SES invoke")
        };
        assert_corpus_notice(&notices[0]);
        assert_eq!(notices[0].content, MessageContent::Stored);

        let n = parse_notification(&corpus(&dir, "notification-s3-action.json")).unwrap();
        assert_corpus_notice(&n);
        assert_eq!(
            n.content,
            MessageContent::S3 {
                bucket: "acme-inbound".into(),
                key: format!("incoming/{CORPUS_ID}")
            }
        );

        let n = parse_notification(&corpus(&dir, "notification-sns-content.json")).unwrap();
        assert_corpus_notice(&n);
        let eml = std::fs::read(dir.join("message-0001.eml")).unwrap();
        assert_eq!(n.content, MessageContent::Inline(eml));

        let v: Value =
            serde_json::from_str(&corpus(&dir, "sqs-batch-with-bad-record.json")).unwrap();
        let LambdaEvent::Sqs(records) = parse_lambda_event(&v).unwrap() else {
            panic!("sqs-batch-with-bad-record.json: not SQS")
        };
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0].message_id,
            "0c1d2e3f-0000-4000-8000-000000000001"
        );
        assert_corpus_notice(records[0].notice.as_ref().unwrap());
        assert_eq!(
            records[1].message_id,
            "0c1d2e3f-0000-4000-8000-000000000002"
        );
        assert_eq!(records[1].receive_count, 3);
        let e = records[1].notice.as_ref().unwrap_err().to_string();
        assert!(e.starts_with("body: not JSON: "), "{e}");
    }
}
