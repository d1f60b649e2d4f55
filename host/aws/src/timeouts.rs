//! How long one S3 or SQS call may take, and how often the SDK tries it.
//!
//! Without these a stalled answer hangs a message for good: the daemon keeps extending its
//! SQS visibility, so nobody else retries it either. With them a stalled attempt is cut
//! off and tried again (standard retry mode: exponential backoff with jitter, throttling and
//! server errors and timeouts retried), and a call that cannot succeed fails in bounded time,
//! so the message goes back to the queue.
//!
//! SES sends are different: they are never retried by the SDK (see `ses.rs`).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// The longest one attempt of an S3 or SQS call may take (for `GetObject`, until the headers
/// of the answer; the body then streams under the SDK's stalled-stream protection).
///
/// 20 s lets a 40 MB object (the most SES accepts) go up at 2 MB/s, several times slower
/// than a Lambda function or an EC2 host reaches S3 in its region; the small claim and
/// mailbox-record writes take milliseconds, so a stalled one is cut off long before the
/// claim lease (`sluice_inbound::deliver::DEFAULT_LEASE`, 90 s) could run out.
/// `SLUICE_AWS_ATTEMPT_TIMEOUT_MS` overrides it (tests shorten it to see stalls retried).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest one S3 or SQS call may take with all its attempts and backoff: under the
/// Lambda function's 60 s timeout (deploy/template.yaml), so a call that cannot succeed
/// fails inside the invocation and the message is reported failed instead of the function
/// being killed.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(50);

/// Attempts per S3 or SQS call (the SDK's default is 3): S3 answers `503 SlowDown` while it
/// scales a prefix up, and a burst of mail writes to one mailbox prefix; two more attempts
/// (backoff up to 1, 2, 4, 8 s, with jitter) ride that out without failing the message.
pub const MAX_ATTEMPTS: u32 = 5;

/// The environment variable that overrides [`ATTEMPT_TIMEOUT`], in milliseconds.
pub const ATTEMPT_TIMEOUT_ENV: &str = "SLUICE_AWS_ATTEMPT_TIMEOUT_MS";

/// [`ATTEMPT_TIMEOUT`], or `SLUICE_AWS_ATTEMPT_TIMEOUT_MS` when that is set to a positive
/// number (anything else is ignored, with a warning).
pub fn attempt_timeout() -> Duration {
    match std::env::var(ATTEMPT_TIMEOUT_ENV) {
        Ok(value) => match parse_millis(&value) {
            Some(d) => d,
            None => {
                tracing::warn!(
                    "{ATTEMPT_TIMEOUT_ENV}={value:?} is not a positive number of milliseconds; using {} ms",
                    ATTEMPT_TIMEOUT.as_millis()
                );
                ATTEMPT_TIMEOUT
            }
        },
        Err(_) => ATTEMPT_TIMEOUT,
    }
}

fn parse_millis(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// The timeouts of an S3 or SQS call whose answer may wait `extra` on purpose (an SQS long
/// poll): both limits grow by it.
pub(crate) fn timeout_config(extra: Duration) -> TimeoutConfig {
    let attempt = attempt_timeout();
    TimeoutConfig::builder()
        .operation_attempt_timeout(attempt + extra)
        .operation_timeout(OPERATION_TIMEOUT.max(attempt) + extra)
        .build()
}

/// Standard retries, [`MAX_ATTEMPTS`] attempts.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_positive_milliseconds() {
        assert_eq!(parse_millis(" 1500 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_millis("0"), None);
        assert_eq!(parse_millis("-5"), None);
        assert_eq!(parse_millis("2s"), None);
    }

    #[test]
    fn a_long_poll_adds_its_wait() {
        let t = timeout_config(Duration::from_secs(20));
        let attempt = t.operation_attempt_timeout().unwrap();
        assert_eq!(attempt, attempt_timeout() + Duration::from_secs(20));
        assert!(t.operation_timeout().unwrap() >= attempt);
    }
}
