//! The SES v2 client: raw sends for relayed copies and bounces.

use aws_sdk_sesv2::error::SdkError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};
use std::time::Duration;

use crate::{AwsError, SdkFailure};

/// The largest raw message SES v2 `SendEmail` accepts (40 MB, after any encoding).
pub const SES_MAX_RAW_BYTES: usize = 40 * 1024 * 1024;

/// The SES v2 client.
#[derive(Debug, Clone)]
pub struct Ses {
    client: aws_sdk_sesv2::Client,
    retry: SendRetry,
}

/// Whether SES may have accepted a request that failed. An error answer from SES, a request
/// that could not be built, or a connection that could not be made (refused, unreachable)
/// counts as not sent; a timeout, an unreadable or missing response, or a connection that
/// broke once it was open (reset, closed: the request may have gone out whole) might hide
/// an accepted send.
fn maybe_sent<E, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) | SdkError::ServiceError(_) => false,
        SdkError::DispatchFailure(d) if d.is_io() => {
            !d.as_connector_error().is_some_and(|c| never_connected(c))
        }
        _ => true,
    }
}

/// Whether an I/O failure happened before a connection existed: then no byte of the request
/// left this host.
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | NetworkUnreachable | HostUnreachable
            );
        }
        next = e.source();
    }
    false
}

/// How a send that SES surely did not accept is tried again, in the same call: SES
/// answered with throttling (429 `TooManyRequests`, `LimitExceeded`) or a server error
/// (5xx), or the connection could not be made. Everything else returns at once: a refusal
/// (permanent) would be refused again, and a send that may have gone out (a timeout, a lost
/// answer) is left to the claim that guards it (`sluice_inbound::deliver::Markers`), which
/// sends it again later only under `[relay] sends = "at-least-once"`, logged and counted.
///
/// The waits grow exponentially with "equal jitter" (half fixed, half random), so consumers
/// throttled together do not come back together. A retry starts only if it can finish
/// (its [`SEND_TIMEOUT`] included) within [`SendRetry::deadline`] of the first attempt, so
/// a whole call stays well inside the claim lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRetry {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// The wait before the first retry (its upper bound; half of it is fixed).
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// The longest a call may take with all its attempts and waits.
    pub deadline: Duration,
}

impl Default for SendRetry {
    /// 5 attempts, waits of up to 0.25, 0.5, 1, 2 s, all within 45 s: half the
    /// claim lease (`DEFAULT_LEASE`, 90 s), so the claim is confirmed long before another
    /// consumer could take it for abandoned.
    fn default() -> SendRetry {
        SendRetry {
            attempts: 5,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            deadline: Duration::from_secs(45),
        }
    }
}

impl SendRetry {
    /// The wait after failed attempt `attempt` (1-based), for a `jitter` in `[0, 1)`:
    /// `b/2 + jitter * b/2`, where `b = min(first_backoff * 2^(attempt-1), max_backoff)`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let b = exp.min(self.max_backoff);
        b / 2 + b.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// Whether to try again after failed attempt `attempt` (1-based), `elapsed` after the
    /// first began, waiting `wait` first: attempts are left, and one more (up to
    /// `attempt_timeout`) would end within the deadline.
    pub fn again(
        &self,
        attempt: u32,
        elapsed: Duration,
        wait: Duration,
        attempt_timeout: Duration,
    ) -> bool {
        attempt < self.attempts && elapsed + wait + attempt_timeout <= self.deadline
    }
}

/// Whether a failed send is worth trying again at once: SES surely did not accept it, and
/// the cause passes in seconds (throttling, a server error, no connection); a paused or
/// suspended account, or a refusal, does not.
pub fn retry_now(permanent: bool, maybe_sent: bool, status: Option<u16>) -> bool {
    if permanent || maybe_sent {
        return false;
    }
    match status {
        Some(code) => code == 429 || code >= 500,
        // No answer: the connection was never made.
        None => true,
    }
}

/// A number in `[0, 1)` that differs from call to call (std's random hasher keys).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The SDK never retries a send: its retries would repeat a send that timed out after SES
/// accepted it, behind the back of the claim that guards it (see
/// `sluice_inbound::deliver::Markers`). [`Ses::send_raw`] retries itself, only what SES
/// surely did not accept ([`SendRetry`]). The operation timeout bounds one attempt.
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
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

impl Ses {
    /// A client from the standard AWS configuration chain (`AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Ses {
        let shared = aws_config::load_from_env().await;
        let conf = send_config(aws_sdk_sesv2::config::Builder::from(&shared)).build();
        Ses {
            client: aws_sdk_sesv2::Client::from_conf(conf),
            retry: SendRetry::default(),
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
            retry: SendRetry::default(),
        }
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_sesv2::Client {
        &self.client
    }

    /// This client with another retry policy for sends.
    pub fn with_retry(mut self, retry: SendRetry) -> Ses {
        self.retry = retry;
        self
    }

    /// Sends `raw` (a complete RFC 5322 message) from `from` to `to` (the envelope
    /// recipients; the message's own To/Cc are not read) and returns the SES message id.
    /// A send SES surely did not accept (throttled, a server error, no connection) is tried
    /// again after a backoff, within [`SendRetry::deadline`]; each retry is logged.
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
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            let (err, status) = match self.send_attempt(from, to, raw.clone(), send_tag).await {
                Ok(id) => {
                    if attempt > 1 {
                        tracing::info!(attempt, send_tag, "SES send accepted after retrying");
                    }
                    return Ok(id);
                }
                Err(failure) => failure,
            };
            let AwsError::Ses {
                permanent,
                maybe_sent,
                source,
                ..
            } = &err
            else {
                return Err(err);
            };
            let wait = self.retry.backoff(attempt, jitter());
            if !retry_now(*permanent, *maybe_sent, status)
                || !self
                    .retry
                    .again(attempt, started.elapsed(), wait, SEND_TIMEOUT)
            {
                return Err(err);
            }
            tracing::warn!(
                attempt,
                status,
                wait_ms = wait.as_millis() as u64,
                send_tag,
                error = %source.to_string().chars().take(160).collect::<String>(),
                "SES did not accept the send (it surely did not go out); retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One `SendEmail` call; on failure, also the HTTP status SES answered with (none when
    /// there was no answer).
    async fn send_attempt(
        &self,
        from: &str,
        to: &[String],
        raw: Vec<u8>,
        send_tag: &str,
    ) -> Result<String, (AwsError, Option<u16>)> {
        let what = format!("from {from} to {} recipient(s)", to.len());
        let err = |source: SdkFailure, permanent: bool, maybe_sent: bool| AwsError::Ses {
            op: "SendEmail",
            what: what.clone(),
            source,
            permanent,
            maybe_sent,
        };
        let raw = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(|e| (err(SdkFailure::of(e), true, false), None))?;
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
                    .map_err(|e| (err(SdkFailure::of(e), true, false), None))?,
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
                // Only an error answer has a status worth acting on (a paused or suspended
                // account answers 400-something and is not retried at once).
                let status = match &e {
                    SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
                    _ => None,
                };
                let maybe = maybe_sent(&e);
                (err(SdkFailure::of(e), permanent, maybe), status)
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
                what: identity.to_string(),
                source: SdkFailure::of(e),
                permanent: false,
                maybe_sent: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_surely_did_not_go_out_is_retried_at_once() {
        // Throttled, server errors, no connection: retried.
        assert!(retry_now(false, false, Some(429)));
        assert!(retry_now(false, false, Some(500)));
        assert!(retry_now(false, false, Some(503)));
        assert!(retry_now(false, false, None));
        // A timeout or a lost answer: left to the claim.
        assert!(!retry_now(false, true, None));
        assert!(!retry_now(false, true, Some(500)));
        // Refused, or an account-level stop (sending paused: 400-something).
        assert!(!retry_now(true, false, Some(400)));
        assert!(!retry_now(false, false, Some(400)));
        assert!(!retry_now(false, false, Some(403)));
    }

    #[test]
    fn waits_grow_with_equal_jitter_up_to_the_cap() {
        let r = SendRetry::default();
        let ms = |a, j| r.backoff(a, j).as_millis();
        assert_eq!((ms(1, 0.0), ms(1, 0.999_999)), (125, 249));
        assert_eq!((ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)), (250, 500, 1000));
        assert_eq!((ms(5, 0.0), ms(6, 0.0), ms(40, 0.0)), (2000, 2000, 2000));
        assert_eq!(ms(40, 0.999_999), 3999);
        // Jitter outside [0, 1) is clamped.
        assert_eq!(ms(1, 7.0), 250);
    }

    #[test]
    fn retries_stop_at_the_attempt_limit_or_the_deadline() {
        let r = SendRetry::default();
        let s = Duration::from_secs;
        assert!(r.again(1, s(0), s(1), SEND_TIMEOUT));
        assert!(r.again(4, s(0), s(1), SEND_TIMEOUT));
        assert!(!r.again(5, s(0), s(1), SEND_TIMEOUT));
        // 14 s in: a 1 s wait and a 30 s attempt end at 45 s, the deadline; 15 s in: too late.
        assert!(r.again(2, s(14), s(1), SEND_TIMEOUT));
        assert!(!r.again(2, s(15), s(1), SEND_TIMEOUT));
        // The worst whole call ends within the deadline, half the 90 s claim lease.
        assert!(r.deadline <= s(45));
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let all: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(all.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(all.iter().any(|j| (j - all[0]).abs() > 1e-9));
    }

    #[test]
    fn a_refused_connection_never_sent_a_byte() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(never_connected(&refused));
        assert!(!never_connected(&reset));
        // Found down the chain, as the SDK wraps it.
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "dispatch failure")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = Wrap(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "x",
        ));
        assert!(never_connected(&wrapped));
    }
}
