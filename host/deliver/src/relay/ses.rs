//! `[relay] kind = "ses"`: relayed copies and DSNs leave through SES v2 `SendEmail` with raw
//! content, up to 50 recipients per call.

use std::sync::Arc;

use sluice_aws::{Ses, SES_MAX_RAW_BYTES};

use super::{SendFailure, SendLimits, Transport};
use crate::config::{read_section, Checked, RelayKind, RelayTarget, Resolve, TargetClients};
use crate::{BoxFuture, SetupError};

/// `[relay] kind = "ses"`.
pub const KIND: RelayKind = RelayKind { name: "ses", read };

/// Recipients per SES `SendEmail` call.
const SES_CHUNK: usize = 50;

/// What SES sends allow.
pub const SES_LIMITS: SendLimits = SendLimits {
    chunk: SES_CHUNK,
    max_bytes: Some(SES_MAX_RAW_BYTES),
    refuses_per_recipient: false,
};

/// The section's own keys: none beyond those every relay takes.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SesSection {}

/// `[relay] kind = "ses"`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SesRelayConfig;

fn read(table: toml::Table, _: Resolve<'_>) -> Checked<Arc<dyn RelayTarget>> {
    let SesSection {} = read_section("relay", table)?;
    Ok(Arc::new(SesRelayConfig))
}

impl RelayTarget for SesRelayConfig {
    fn kind(&self) -> &'static str {
        "ses"
    }

    fn limits(&self) -> SendLimits {
        SES_LIMITS
    }

    fn build(&self, clients: &TargetClients) -> Result<Arc<dyn Transport>, SetupError> {
        Ok(Arc::new(SesTransport(clients.ses.clone())))
    }
}

/// Sends through SES.
#[derive(Clone)]
pub struct SesTransport(pub Ses);

impl std::fmt::Debug for SesTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ses")
    }
}

/// The SES message tag of a send: the first 32 hex digits of the sha256 of its name (the
/// name itself holds `/` and `.`, which tags may not).
fn send_tag(name: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16])
}

impl Transport for SesTransport {
    fn send<'a>(
        &'a self,
        name: &'a str,
        from: &'a str,
        to: &'a [String],
        raw: Vec<u8>,
        _null_sender: bool,
    ) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move { Ok(self.0.send_raw(from, to, raw, &send_tag(name)).await?) })
    }

    fn limits(&self) -> SendLimits {
        SES_LIMITS
    }
}
