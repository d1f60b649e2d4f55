//! Parsing of SES, SNS and SQS events into [`SesNotice`]s.
//!
//! CONTRACT (owned by the events helper; the types below are used by the pipeline, the Lambda
//! binary and the daemon: keep their names and fields).

use sluice_engine::Verdicts;

/// What SES said about one received message: everything but its bytes, plus where they are.
#[derive(Debug, Clone)]
pub struct SesNotice {
    /// `mail.messageId`: SES's id, also the S3 object name of the S3 action.
    pub message_id: String,
    /// `mail.source`: the envelope sender (empty for a null sender).
    pub mail_from: String,
    /// `receipt.recipients`: the recipients this receipt rule matched (not `mail.destination`).
    pub recipients: Vec<String>,
    /// `receipt.{spf,dkim,dmarc,spam,virus}Verdict.status` (+ `dmarcPolicy`).
    pub verdicts: Verdicts,
    /// `mail.timestamp`, ms since the Unix epoch (0 if unparseable).
    pub received_at: u64,
    /// Where the raw message is.
    pub content: MessageContent,
}

/// Where a notice's raw message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    /// The S3 action stored it (`receipt.action.bucketName` / `objectKey`).
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The SNS action carried it inline (`content`, decoded from Base64 or UTF-8).
    Inline(Vec<u8>),
    /// A Lambda action: SES passes no content; an earlier S3 action of the same receipt rule
    /// stored it, and the host finds it under its `[inbound]` bucket and prefix + message id.
    Stored,
}

// ---------------------------------------------------------------------------------------------
// Parsing. Everything below works on `serde_json::Value` rather than derived structs so that a
// missing or malformed field is reported by its path ("receipt.recipients is missing") and so
// that fields SES adds later, or that we do not need (headers, commonHeaders), cost nothing.
// ---------------------------------------------------------------------------------------------

use base64::Engine as _;
use serde_json::{Map, Value};
use sluice_engine::Verdict;

/// Why an event or a notification could not be read. Each message names the field (by its path
/// in the JSON) and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The text is not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A required field is absent (or `null`).
    #[error("{0} is missing")]
    Missing(String),
    /// A field is there but has the wrong type or shape.
    #[error("{field} is not {expected}")]
    Malformed {
        /// The field's path, e.g. `receipt.recipients[1]`.
        field: String,
        /// What it should be, e.g. `a string`.
        expected: &'static str,
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
    /// An error inside one part of a larger event (`Records[2].Sns.Message: ...`).
    #[error("{at}: {source}")]
    In {
        /// Where, e.g. `Records[2].body`.
        at: String,
        /// What went wrong there.
        source: Box<EventError>,
    },
}

impl EventError {
    fn within(self, at: impl Into<String>) -> EventError {
        EventError::In {
            at: at.into(),
            source: Box::new(self),
        }
    }
}

/// A Lambda invocation's event, by source.
#[derive(Debug, Clone)]
pub enum LambdaEvent {
    /// SES invoked the function directly (a receipt rule's Lambda action). Every record must
    /// parse: SES retries the whole invocation, so one unreadable record fails it.
    SesInvoke(Vec<SesNotice>),
    /// SNS delivered notifications (one per record in practice), each parsed on its own.
    Sns(Vec<Result<SesNotice, EventError>>),
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
    pub notice: Result<SesNotice, EventError>,
}

/// Parses an SES receipt notification, or an SNS envelope whose `Message` holds one (as SNS
/// delivers it to SQS without raw message delivery, or to HTTP endpoints).
pub fn parse_notification(json: &str) -> Result<SesNotice, EventError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| EventError::NotJson(e.to_string()))?;
    notification_from_value(&value)
}

fn notification_from_value(value: &Value) -> Result<SesNotice, EventError> {
    let Some(obj) = value.as_object() else {
        return Err(EventError::Malformed {
            field: "the notification".into(),
            expected: "a JSON object",
        });
    };
    if let Some(kind) = obj.get("notificationType") {
        let kind = kind.as_str().ok_or_else(|| EventError::Malformed {
            field: "notificationType".into(),
            expected: "a string",
        })?;
        if kind != "Received" {
            return Err(EventError::NotReceived(kind.to_string()));
        }
        let content = match obj.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                return Err(EventError::Malformed {
                    field: "content".into(),
                    expected: "a string",
                })
            }
        };
        return notice_from_parts(obj, "", content);
    }
    if let Some(kind) = obj.get("Type") {
        let kind = kind.as_str().ok_or_else(|| EventError::Malformed {
            field: "Type".into(),
            expected: "a string",
        })?;
        if kind != "Notification" {
            return Err(EventError::NotSnsNotification(kind.to_string()));
        }
        let message = string(obj, "", "Message")?;
        return parse_notification(message).map_err(|e| e.within("Message"));
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
    let Some(records) = obj.get("Records") else {
        return Err(EventError::UnknownEvent(format!(
            "no Records array; top-level keys: {}",
            keys(obj)
        )));
    };
    let Some(records) = records.as_array() else {
        return Err(EventError::UnknownEvent(format!(
            "Records is {}, not an array",
            json_kind(records)
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
        Some("aws:ses") => records
            .iter()
            .enumerate()
            .map(|(i, r)| ses_invoke_record(r).map_err(|e| e.within(format!("Records[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map(LambdaEvent::SesInvoke),
        Some("aws:sns") => Ok(LambdaEvent::Sns(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| sns_record(r).map_err(|e| e.within(format!("Records[{i}]"))))
                .collect(),
        )),
        Some("aws:sqs") => records
            .iter()
            .enumerate()
            .map(|(i, r)| sqs_record(r).map_err(|e| e.within(format!("Records[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map(LambdaEvent::Sqs),
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

fn ses_invoke_record(record: &Value) -> Result<SesNotice, EventError> {
    let ses = object(record, "", "ses")?;
    notice_from_parts(ses, "ses.", None)
}

fn sns_record(record: &Value) -> Result<SesNotice, EventError> {
    let sns = object(record, "", "Sns")?;
    let message = string(sns, "Sns.", "Message")?;
    parse_notification(message).map_err(|e| e.within("Sns.Message"))
}

/// Only a record without a usable `messageId` is an error here: without it the record cannot be
/// reported as failed. A bad body is kept as the record's `notice` error.
fn sqs_record(record: &Value) -> Result<SqsRecord, EventError> {
    let obj = record.as_object().ok_or_else(|| EventError::Malformed {
        field: "the record".into(),
        expected: "a JSON object",
    })?;
    let message_id = string(obj, "", "messageId")?.to_string();
    let receive_count = obj
        .get("attributes")
        .and_then(|a| a.get("ApproximateReceiveCount"))
        .and_then(|c| match c {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        })
        .unwrap_or(0);
    let notice = string(obj, "", "body")
        .and_then(|body| parse_notification(body).map_err(|e| e.within("body")));
    Ok(SqsRecord {
        message_id,
        receive_count,
        notice,
    })
}

/// Reads `mail` and `receipt` of `parent` (a notification, or an SES invoke record's `ses`).
/// `at` prefixes field paths in errors; `content` is the notification's inline message.
fn notice_from_parts(
    parent: &Map<String, Value>,
    at: &str,
    content: Option<&str>,
) -> Result<SesNotice, EventError> {
    let mail = object_in(parent, at, "mail")?;
    let receipt = object_in(parent, at, "receipt")?;
    let mail_at = format!("{at}mail.");
    let receipt_at = format!("{at}receipt.");

    let message_id = string(mail, &mail_at, "messageId")?.to_string();
    // A null sender (bounces) may come as an empty string or be left out.
    let mail_from = match mail.get("source") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(EventError::Malformed {
                field: format!("{mail_at}source"),
                expected: "a string",
            })
        }
    };
    let received_at = mail
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_iso8601_ms)
        .unwrap_or(0);

    let recipients = match receipt.get("recipients") {
        None | Some(Value::Null) => {
            return Err(EventError::Missing(format!("{receipt_at}recipients")))
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| EventError::Malformed {
                        field: format!("{receipt_at}recipients[{i}]"),
                        expected: "a string",
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(EventError::Malformed {
                field: format!("{receipt_at}recipients"),
                expected: "an array of addresses",
            })
        }
    };

    let verdict = |name: &str| {
        receipt
            .get(name)
            .and_then(|v| v.get("status"))
            .and_then(Value::as_str)
            .map(parse_verdict)
            .unwrap_or(Verdict::Unknown)
    };
    let verdicts = Verdicts {
        spf: verdict("spfVerdict"),
        dkim: verdict("dkimVerdict"),
        dmarc: verdict("dmarcVerdict"),
        spam: verdict("spamVerdict"),
        virus: verdict("virusVerdict"),
        dmarc_policy: receipt
            .get("dmarcPolicy")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_ascii_lowercase),
    };

    let action_at = format!("{receipt_at}action.");
    let action = object_in(receipt, &receipt_at, "action")?;
    let content = match string(action, &action_at, "type")? {
        "S3" => MessageContent::S3 {
            bucket: string(action, &action_at, "bucketName")?.to_string(),
            key: string(action, &action_at, "objectKey")?.to_string(),
        },
        "SNS" => {
            let text = content.ok_or_else(|| EventError::Missing(format!("{at}content")))?;
            let encoding = match action.get("encoding") {
                None | Some(Value::Null) => "UTF8",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => {
                    return Err(EventError::Malformed {
                        field: format!("{action_at}encoding"),
                        expected: "a string",
                    })
                }
            };
            MessageContent::Inline(decode_content(text, encoding)?)
        }
        "Lambda" => MessageContent::Stored,
        other => return Err(EventError::UnknownAction(other.to_string())),
    };

    Ok(SesNotice {
        message_id,
        mail_from,
        recipients,
        verdicts,
        received_at,
        content,
    })
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

/// `YYYY-MM-DDTHH:MM:SS[.fff...](Z|±HH:MM|±HHMM)` to ms since the Unix epoch; `None` for
/// anything else or a time before 1970.
fn parse_iso8601_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Only the first three fraction digits count; pad short fractions ("0.5" = 500 ms).
        let frac: String = s[start..i].chars().chain("000".chars()).take(3).collect();
        millis = frac.parse().ok()?;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            // Bytes, not str slices: a non-ASCII character here must not split a slice.
            let rest = &b[i + 1..];
            let (h, m) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => ([*h1, *h2], [*m1, *m2]),
                [h1, h2] => ([*h1, *h2], [b'0', b'0']),
                _ => return None,
            };
            let two = |d: [u8; 2]| -> Option<i64> {
                d.iter()
                    .all(u8::is_ascii_digit)
                    .then(|| i64::from((d[0] - b'0') * 10 + (d[1] - b'0')))
            };
            let secs = two(h)? * 3600 + two(m)? * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn object_in<'a>(
    parent: &'a Map<String, Value>,
    at: &str,
    name: &str,
) -> Result<&'a Map<String, Value>, EventError> {
    match parent.get(name) {
        None | Some(Value::Null) => Err(EventError::Missing(format!("{at}{name}"))),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(EventError::Malformed {
            field: format!("{at}{name}"),
            expected: "a JSON object",
        }),
    }
}

fn object<'a>(
    value: &'a Value,
    at: &str,
    name: &str,
) -> Result<&'a Map<String, Value>, EventError> {
    let parent = value.as_object().ok_or_else(|| EventError::Malformed {
        field: "the record".into(),
        expected: "a JSON object",
    })?;
    object_in(parent, at, name)
}

fn string<'a>(parent: &'a Map<String, Value>, at: &str, name: &str) -> Result<&'a str, EventError> {
    match parent.get(name) {
        None | Some(Value::Null) => Err(EventError::Missing(format!("{at}{name}"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(EventError::Malformed {
            field: format!("{at}{name}"),
            expected: "a string",
        }),
    }
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

    fn assert_s3_fixture(n: &SesNotice) {
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
        assert_eq!(e, "Records[0]: messageId is missing");
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let mut v = s3_notification();
        v["receipt"].as_object_mut().unwrap().remove("recipients");
        assert_eq!(err(&v.to_string()), "receipt.recipients is missing");

        let mut v = s3_notification();
        v["receipt"]["recipients"] = serde_json::json!(["a@example.com", 7]);
        assert_eq!(err(&v.to_string()), "receipt.recipients[1] is not a string");

        let mut v = s3_notification();
        v.as_object_mut().unwrap().remove("mail");
        assert_eq!(err(&v.to_string()), "mail is missing");

        let mut v = s3_notification();
        v["mail"]["messageId"] = 42.into();
        assert_eq!(err(&v.to_string()), "mail.messageId is not a string");

        let mut v = s3_notification();
        v["receipt"]["action"]
            .as_object_mut()
            .unwrap()
            .remove("bucketName");
        assert_eq!(err(&v.to_string()), "receipt.action.bucketName is missing");

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
        assert_eq!(err(&v.to_string()), "content is missing");
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
            "Message: mail is missing"
        );
        assert_eq!(
            err(r#"{"hello":1}"#),
            "neither an SES receipt notification (no notificationType) nor an SNS envelope (no Type); top-level keys: hello"
        );
        assert_eq!(err("[1]"), "the notification is not a JSON object");
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
            "Records[0]: ses is missing"
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
    }

    /// The shared corpus (real SES shapes): checked when present, skipped with one line if not.
    fn corpus_dir() -> Option<PathBuf> {
        sluice_corpus::corpus_dir("the SES corpus checks").map(|c| c.join("ses"))
    }

    fn corpus(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    const CORPUS_ID: &str = "k1v2c3a4b5example0001";

    fn assert_corpus_notice(n: &SesNotice) {
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
