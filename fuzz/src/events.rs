//! `events`: the SES/SNS/SQS decoders of sluice-inbound on arbitrary bytes.
//!
//! Input: one mode byte, then the document. Mode `% 4`:
//! 0. the bytes as a Lambda event (`parse_lambda_event`) and as an SQS body or SNS/SES
//!    notification (`parse_notification`);
//! 1. the bytes as the `Message` string of an SNS envelope (`parse_notification`), so the
//!    fuzzer mutates the inner notification rather than its JSON escaping;
//! 2. the bytes as the body of an SQS record (`parse_lambda_event`);
//! 3. the bytes as the `Sns.Message` of an SNS Lambda record (`parse_lambda_event`).
//!
//! Invariant: no panic; every error and notice can be displayed; inline message content, when
//! there is some, goes through `Message::parse` without a panic.

use serde_json::{json, Value};
use sluice_inbound::{
    parse_lambda_event, parse_notification, EventError, LambdaEvent, MessageContent, Arrival,
};
use sluice_mail::Message;

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&mode, doc)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(doc);
    match mode % 4 {
        0 => {
            if let Ok(v) = serde_json::from_slice::<Value>(doc) {
                lambda(&v);
            }
            notice(parse_notification(&text));
        }
        1 => {
            let envelope = json!({"Type": "Notification", "MessageId": "m", "Message": text});
            notice(parse_notification(&envelope.to_string()));
        }
        2 => lambda(&json!({"Records": [
            {"messageId": "sqs-1", "eventSource": "aws:sqs", "body": text,
             "attributes": {"ApproximateReceiveCount": "1"}},
        ]})),
        _ => lambda(&json!({"Records": [
            {"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": text}},
        ]})),
    }
}

fn lambda(v: &Value) {
    match parse_lambda_event(v) {
        Ok(LambdaEvent::SesInvoke(notices)) => notices.into_iter().for_each(|n| notice(Ok(n))),
        Ok(LambdaEvent::Sns(results)) => results.into_iter().for_each(notice),
        Ok(LambdaEvent::Sqs(records)) => {
            for r in records {
                let _ = format!("{} {}", r.message_id, r.receive_count);
                notice(r.notice);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn notice(n: Result<Arrival, EventError>) {
    match n {
        Ok(n) => {
            let _ = format!("{n:?}");
            if let MessageContent::Inline(bytes) = n.content {
                if let Ok(m) = Message::parse(bytes) {
                    let _ = (m.subject(), m.from_address(), m.headers());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
