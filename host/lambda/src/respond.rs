//! One invocation's event in, its response (or error) out, whatever the event source.

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use sluice_inbound::{
    parse_lambda_event, Arrival, HandleError, Handled, LambdaEvent, Pipeline, SqsRecord,
};
use tracing::{error, info};

/// What handles one notice: the [`Pipeline`], or a stand-in in tests.
pub trait HandleNotice {
    /// See [`Pipeline::handle`].
    async fn handle(&self, notice: Arrival) -> Result<Handled, HandleError>;
}

impl HandleNotice for Pipeline {
    async fn handle(&self, notice: Arrival) -> Result<Handled, HandleError> {
        Pipeline::handle(self, notice).await
    }
}

/// Why an invocation failed as a whole. Lambda retries it (SES, async SNS invoke) and finally
/// sends it to the function's DLQ / failure destination: nothing is dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationError {
    /// `errorType` in the Runtime API's error report.
    pub kind: &'static str,
    /// `errorMessage`.
    pub message: String,
}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.kind.to_string(),
            error_message: e.message,
        }
    }
}

/// Handles one invocation's event and builds its response:
/// - SES invoke: `{"disposition": "STOP_RULE_SET"}` when every message's recipients were all
///   refused, else `{"disposition": "CONTINUE"}`; any failure fails the invocation.
/// - SNS: `{"handled": N}`; any failure (unreadable notification included) fails it.
/// - SQS: `{"batchItemFailures": [...]}` with the id of each record that failed or could not be
///   read (the queue redelivers it, then moves it to its DLQ after `maxReceiveCount`). Up to
///   `concurrency` records are handled at once; the failures are listed in record order.
pub async fn respond(
    pipeline: &impl HandleNotice,
    event: Value,
    concurrency: usize,
) -> Result<Value, InvocationError> {
    let event = parse_lambda_event(&event).map_err(|e| {
        error!(error = %e, "unreadable event");
        InvocationError {
            kind: "Sluice.BadEvent",
            message: e.to_string(),
        }
    })?;
    match event {
        LambdaEvent::SesInvoke(notices) => {
            let mut all_refused = true;
            let mut failures = Vec::new();
            for notice in notices {
                match handle_logged(pipeline, notice, None).await {
                    Ok(handled) => all_refused &= handled.all_refused,
                    Err(e) => failures.push(e.to_string()),
                }
            }
            fail_if_any(failures)?;
            let disposition = if all_refused {
                "STOP_RULE_SET"
            } else {
                "CONTINUE"
            };
            Ok(json!({ "disposition": disposition }))
        }
        LambdaEvent::Sns(notices) => {
            let mut failures = Vec::new();
            let mut handled = 0;
            for (i, notice) in notices.into_iter().enumerate() {
                match notice {
                    Ok(notice) => match handle_logged(pipeline, notice, None).await {
                        Ok(_) => handled += 1,
                        Err(e) => failures.push(e.to_string()),
                    },
                    Err(e) => {
                        error!(record = i, error = %e, "unreadable SNS record");
                        failures.push(format!("Records[{i}]: {e}"));
                    }
                }
            }
            fail_if_any(failures)?;
            Ok(json!({ "handled": handled }))
        }
        LambdaEvent::Sqs(records) => {
            let failed: Vec<Value> = stream::iter(records)
                .map(|record| handle_record(pipeline, record))
                .buffered(concurrency.max(1))
                .filter_map(
                    |failed| async move { failed.map(|id| json!({ "itemIdentifier": id })) },
                )
                .collect()
                .await;
            Ok(json!({ "batchItemFailures": failed }))
        }
    }
}

/// Handles one SQS record; `Some(its message id)` when it must be reported as failed.
async fn handle_record(pipeline: &impl HandleNotice, record: SqsRecord) -> Option<String> {
    let SqsRecord {
        message_id,
        receive_count,
        notice,
    } = record;
    let ok = match notice {
        Ok(notice) => handle_logged(pipeline, notice, Some((&message_id, receive_count)))
            .await
            .is_ok(),
        Err(e) => {
            error!(
                sqs_message_id = %message_id,
                receive_count,
                error = %e,
                "unreadable SQS record: reported as failed, so it reaches the DLQ after maxReceiveCount"
            );
            false
        }
    };
    (!ok).then_some(message_id)
}

/// Handles one notice and logs one line for it.
async fn handle_logged(
    pipeline: &impl HandleNotice,
    notice: Arrival,
    sqs: Option<(&str, u32)>,
) -> Result<Handled, HandleError> {
    let message_id = notice.message_id.clone();
    let (sqs_message_id, receive_count) = sqs.unwrap_or(("", 0));
    let result = pipeline.handle(notice).await;
    match &result {
        Ok(handled) => info!(
            message_id = %message_id,
            sqs_message_id,
            summary = %handled.summary,
            all_refused = handled.all_refused,
            "handled"
        ),
        Err(e) => error!(
            message_id = %message_id,
            sqs_message_id,
            receive_count,
            permanent = e.is_permanent(),
            error = %e.failure,
            "failed"
        ),
    }
    result
}

fn fail_if_any(failures: Vec<String>) -> Result<(), InvocationError> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(InvocationError {
        kind: "Sluice.HandleFailed",
        message: format!(
            "{} message(s) failed and will be retried: {}",
            failures.len(),
            failures.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_inbound::HandleFailure;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Refuses everything for `refused`, fails for `failing`, delivers the rest; records ids.
    /// With `delay_ms`, the n-th notice takes `delay_ms[n]` and the most in flight is kept.
    #[derive(Default)]
    struct Fake {
        failing: Vec<&'static str>,
        refused: Vec<&'static str>,
        seen: Mutex<Vec<String>>,
        delay_ms: Vec<u64>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl HandleNotice for Fake {
        async fn handle(&self, notice: Arrival) -> Result<Handled, HandleError> {
            let id = notice.message_id;
            let n = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(id.clone());
                seen.len() - 1
            };
            if let Some(ms) = self.delay_ms.get(n) {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            if self.failing.contains(&id.as_str()) {
                return Err(HandleError {
                    message_id: id,
                    failure: HandleFailure::Tempfail {
                        reason: "S3 GetObject: boom".into(),
                        done: String::new(),
                    },
                });
            }
            Ok(Handled {
                all_refused: self.refused.contains(&id.as_str()),
                message_id: id,
                summary: "1 mailbox".into(),
                quarantined: vec![],
                stored: vec![],
                relayed: vec![],
                bounces: vec![],
                arc: Default::default(),
                kept: vec![],
                retry: None,
                chain_micros: 0,
                total_micros: 0,
                refused: None,
                replies: vec![],
            })
        }
    }

    fn fixture(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/ses")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    const SES_ID: &str = "fx0000sesinvoke000004";

    #[tokio::test]
    async fn ses_invoke_continues_unless_every_message_was_refused() {
        let fake = Fake::default();
        let out = respond(&fake, fixture("ses-invoke.json"), 4).await.unwrap();
        assert_eq!(out, json!({"disposition": "CONTINUE"}));
        assert_eq!(*fake.seen.lock().unwrap(), [SES_ID]);

        let fake = Fake {
            refused: vec![SES_ID],
            ..Fake::default()
        };
        let out = respond(&fake, fixture("ses-invoke.json"), 4).await.unwrap();
        assert_eq!(out, json!({"disposition": "STOP_RULE_SET"}));
    }

    #[tokio::test]
    async fn ses_invoke_failure_fails_the_invocation() {
        let fake = Fake {
            failing: vec![SES_ID],
            ..Fake::default()
        };
        let e = respond(&fake, fixture("ses-invoke.json"), 4)
            .await
            .unwrap_err();
        assert_eq!(e.kind, "Sluice.HandleFailed");
        assert!(
            e.message.contains(SES_ID) && e.message.contains("boom"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn sns_failure_or_unreadable_record_fails_the_invocation() {
        let fake = Fake::default();
        let out = respond(&fake, fixture("sns-event.json"), 4).await.unwrap();
        assert_eq!(out, json!({"handled": 1}));

        let mut event = fixture("sns-event.json");
        event["Records"][0]["Sns"]["Message"] = "{}".into();
        let e = respond(&fake, event, 4).await.unwrap_err();
        assert!(
            e.message.contains("Records[0]: Sns.Message: neither"),
            "{e:?}"
        );

        let fake = Fake {
            failing: vec!["fx0000snsbase64000002"],
            ..Fake::default()
        };
        assert!(respond(&fake, fixture("sns-event.json"), 4).await.is_err());
    }

    #[tokio::test]
    async fn sqs_reports_only_failed_and_unreadable_records() {
        let mut event = fixture("sqs-sns-envelope.json");
        let records = event["Records"].as_array_mut().unwrap();
        let raw = fixture("sqs-raw-delivery.json")["Records"][0].clone();
        let mut bad = raw.clone();
        bad["messageId"] = "bad-record".into();
        bad["body"] = "{not json".into();
        records.push(raw);
        records.push(bad);
        let fake = Fake {
            failing: vec!["fx0000snsutf8000003"],
            ..Fake::default()
        };
        let out = respond(&fake, event, 4).await.unwrap();
        assert_eq!(
            out,
            json!({"batchItemFailures": [
                {"itemIdentifier": "bbbbbbbb-0000-4000-8000-00000000000b"},
                {"itemIdentifier": "bad-record"},
            ]})
        );
        assert_eq!(
            *fake.seen.lock().unwrap(),
            ["fx0000s3action000001", "fx0000snsutf8000003"]
        );
    }

    /// An SQS event of `n` records, each the raw-delivery fixture with its own SQS id.
    fn sqs_batch(n: usize) -> Value {
        let raw = fixture("sqs-raw-delivery.json")["Records"][0].clone();
        let records: Vec<Value> = (0..n)
            .map(|i| {
                let mut record = raw.clone();
                record["messageId"] = format!("record-{i}").into();
                record
            })
            .collect();
        json!({ "Records": records })
    }

    #[tokio::test]
    async fn sqs_records_run_concurrently_up_to_the_limit() {
        for (concurrency, expected) in [(1, 1), (3, 3), (10, 7)] {
            let fake = Fake {
                delay_ms: vec![20; 7],
                ..Fake::default()
            };
            let out = respond(&fake, sqs_batch(7), concurrency).await.unwrap();
            assert_eq!(out, json!({"batchItemFailures": []}));
            assert_eq!(fake.seen.lock().unwrap().len(), 7);
            assert_eq!(
                fake.most_in_flight.load(Ordering::SeqCst),
                expected,
                "concurrency {concurrency}"
            );
        }
    }

    #[tokio::test]
    async fn concurrent_failures_are_listed_in_record_order() {
        let mut event = sqs_batch(4);
        // Records 1 and 3 are unreadable, 0 and 2 fail; record 0 finishes after record 2.
        event["Records"][1]["body"] = "{not json".into();
        event["Records"][3]["body"] = "{not json".into();
        let fake = Fake {
            delay_ms: vec![40, 1],
            failing: vec!["fx0000snsutf8000003"],
            ..Fake::default()
        };
        let out = respond(&fake, event, 4).await.unwrap();
        assert_eq!(
            out,
            json!({"batchItemFailures": [
                {"itemIdentifier": "record-0"},
                {"itemIdentifier": "record-1"},
                {"itemIdentifier": "record-2"},
                {"itemIdentifier": "record-3"},
            ]})
        );
    }

    #[tokio::test]
    async fn unknown_event_is_an_error() {
        let e = respond(&Fake::default(), json!({"hello": "world"}), 4)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            InvocationError {
                kind: "Sluice.BadEvent",
                message: "unrecognised Lambda event: no Records array; top-level keys: hello"
                    .into()
            }
        );
    }
}
