//! SQS for the daemon: long-poll receive, delete after success, visibility extension.

use std::time::Duration;

use crate::AwsError;

/// One received SQS message.
#[derive(Debug, Clone)]
pub struct SqsMessage {
    /// SQS message id.
    pub message_id: String,
    /// Needed to delete it or change its visibility.
    pub receipt_handle: String,
    /// The body (an SNS envelope or a raw SES notification).
    pub body: String,
    /// How many times SQS has handed it out (1 on the first delivery).
    pub receive_count: u32,
}

/// The SQS client.
#[derive(Debug, Clone)]
pub struct Sqs {
    client: aws_sdk_sqs::Client,
}

fn sqs_error<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
    queue: &str,
    err: aws_sdk_sqs::error::SdkError<E>,
) -> AwsError {
    AwsError::Sqs {
        op,
        queue: queue.to_string(),
        source: crate::SdkFailure::of(err),
    }
}

impl Sqs {
    /// A client from the standard AWS configuration chain, with Sluice's timeouts and
    /// retries (see [`crate::ATTEMPT_TIMEOUT`]; a long poll's attempt may take its wait on
    /// top).
    pub async fn from_env() -> Sqs {
        let shared = aws_config::load_from_env().await;
        let conf = aws_sdk_sqs::config::Builder::from(&shared)
            .retry_config(crate::timeouts::retry_config())
            .timeout_config(crate::timeouts::timeout_config(Duration::ZERO))
            .build();
        Sqs {
            client: aws_sdk_sqs::Client::from_conf(conf),
        }
    }

    /// A client for an explicit endpoint with static credentials (tests, emulators).
    pub fn for_endpoint(endpoint: &str, region: &str) -> Sqs {
        let creds =
            aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "static");
        let conf = aws_sdk_sqs::config::Builder::new()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_sqs::config::Region::new(region.to_string()))
            .credentials_provider(creds)
            .retry_config(crate::timeouts::retry_config())
            .timeout_config(crate::timeouts::timeout_config(Duration::ZERO))
            .build();
        Sqs {
            client: aws_sdk_sqs::Client::from_conf(conf),
        }
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// Long-polls for up to `max` (1-10) messages, waiting up to `wait_seconds` (0-20);
    /// received messages stay invisible to other consumers for `visibility_seconds`.
    pub async fn receive(
        &self,
        queue_url: &str,
        max: i32,
        wait_seconds: i32,
        visibility_seconds: i32,
    ) -> Result<Vec<SqsMessage>, AwsError> {
        let wait_seconds = wait_seconds.clamp(0, 20);
        // SQS holds a long poll open for up to its wait: that is no stall.
        let long_poll = aws_sdk_sqs::config::Builder::default().timeout_config(
            crate::timeouts::timeout_config(Duration::from_secs(wait_seconds as u64)),
        );
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_seconds)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .customize()
            .config_override(long_poll)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", queue_url, e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| SqsMessage {
                receive_count: m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    /// Deletes a handled message.
    pub async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), AwsError> {
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sqs_error("DeleteMessage", queue_url, e))
    }

    /// Keeps a message invisible for `seconds` more (a slow message is not handed to another
    /// consumer meanwhile), or makes it visible again at once with 0.
    pub async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<(), AwsError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sqs_error("ChangeMessageVisibility", queue_url, e))
    }
}
