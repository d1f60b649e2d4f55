//! The SES v2 client: raw sends for relayed copies and bounces.

use aws_sdk_sesv2::error::{DisplayErrorContext, SdkError};
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};

use crate::AwsError;

/// The largest raw message SES v2 `SendEmail` accepts (40 MB, after any encoding).
pub const SES_MAX_RAW_BYTES: usize = 40 * 1024 * 1024;

/// The SES v2 client.
#[derive(Debug, Clone)]
pub struct Ses {
    client: aws_sdk_sesv2::Client,
}

fn describe<E: std::error::Error + 'static>(err: &SdkError<E>) -> String {
    DisplayErrorContext(err).to_string()
}

/// Whether SES may have accepted a request that failed. An error answer from SES, a request
/// that could not be built, or a connection that failed with an I/O error (refused, reset)
/// counts as not sent; a timeout or an unreadable response might hide an accepted send.
fn maybe_sent<E, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) | SdkError::ServiceError(_) => false,
        SdkError::DispatchFailure(d) => d.is_timeout() || d.is_other(),
        _ => true,
    }
}

/// Every send is made once per call: the SDK's own retries would repeat a send that timed
/// out after SES accepted it, behind the back of the claim that guards it (see
/// `sluice_inbound::deliver::Markers`). A failed send is retried with the whole message,
/// where the claim decides. The operation timeout bounds how long a claim can stay
/// unconfirmed by a live consumer (well under the claim lease).
fn send_config(builder: aws_sdk_sesv2::config::Builder) -> aws_sdk_sesv2::config::Builder {
    builder
        .retry_config(aws_sdk_sesv2::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
                .operation_timeout(SEND_TIMEOUT)
                .build(),
        )
}

/// The longest a send may take before it counts as failed (and possibly sent).
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Ses {
    /// A client from the standard AWS configuration chain (`AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Ses {
        let shared = aws_config::load_from_env().await;
        let conf = send_config(aws_sdk_sesv2::config::Builder::from(&shared)).build();
        Ses {
            client: aws_sdk_sesv2::Client::from_conf(conf),
        }
    }

    /// A client for an explicit endpoint with static credentials (tests, emulators).
    pub fn for_endpoint(endpoint: &str, region: &str) -> Ses {
        let creds =
            aws_sdk_sesv2::config::Credentials::new("testing", "testing", None, None, "static");
        let conf = send_config(
            aws_sdk_sesv2::config::Builder::new()
                .behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_sdk_sesv2::config::Region::new(region.to_string()))
                .credentials_provider(creds),
        )
        .build();
        Ses {
            client: aws_sdk_sesv2::Client::from_conf(conf),
        }
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_sesv2::Client {
        &self.client
    }

    /// Sends `raw` (a complete RFC 5322 message) from `from` to `to` (the envelope
    /// recipients; the message's own To/Cc are not read) and returns the SES message id.
    ///
    /// `send_tag` becomes the SES message tag `sluice-send` (letters, digits, `_` and `-`;
    /// others are dropped): SES's event publishing carries it, so an operator can match a
    /// send event to the claim that made it.
    pub async fn send_raw(
        &self,
        from: &str,
        to: &[String],
        raw: Vec<u8>,
        send_tag: &str,
    ) -> Result<String, AwsError> {
        let err = |message: String, permanent: bool, maybe_sent: bool| AwsError::Ses {
            op: "SendEmail",
            message,
            permanent,
            maybe_sent,
        };
        let raw = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(|e| err(e.to_string(), true, false))?;
        let out = self
            .client
            .send_email()
            .from_email_address(from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(to.to_vec()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .email_tags(
                MessageTag::builder()
                    .name("sluice-send")
                    .value(
                        send_tag
                            .chars()
                            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                            .take(256)
                            .collect::<String>(),
                    )
                    .build()
                    .map_err(|e| err(e.to_string(), true, false))?,
            )
            .send()
            .await
            .map_err(|e| {
                // What SES refuses on the request itself will be refused again; throttling,
                // a paused account and transport errors may pass later.
                let permanent = e.as_service_error().is_some_and(|s| {
                    s.is_message_rejected()
                        || s.is_bad_request_exception()
                        || s.is_mail_from_domain_not_verified_exception()
                        || s.is_not_found_exception()
                });
                err(
                    format!("from {from} to {} recipient(s): {}", to.len(), describe(&e)),
                    permanent,
                    maybe_sent(&e),
                )
            })?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    /// Creates an email identity (an address or a domain); no error when it exists already.
    /// For tests and set-up: verifying a real domain also needs its DNS records.
    pub async fn create_email_identity(&self, identity: &str) -> Result<(), AwsError> {
        match self
            .client
            .create_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsError::Ses {
                op: "CreateEmailIdentity",
                message: format!("{identity}: {}", describe(&e)),
                permanent: false,
                maybe_sent: false,
            }),
        }
    }
}
