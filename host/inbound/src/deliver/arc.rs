//! ARC sets on the copies that leave changed (`[arc]`, sealed by `sluice-arc`): what SES found
//! when the message arrived, signed as the copy leaves, so the next server can trust the
//! original authentication although the chain's edits or the relay rewrite broke the
//! sender's DKIM signature.

use std::sync::Arc;

use sluice_arc::{AuthResult, Authentication, Sealer};
use sluice_chain::Envelope;
use sluice_engine::Verdict;
use sluice_mail::Message;

/// The config's sealer and one message's SES verdicts: seals each copy of that message.
#[derive(Debug, Clone)]
pub struct ArcStamp {
    sealer: Arc<Sealer>,
    spf: Option<AuthResult>,
    dkim: Option<AuthResult>,
    dmarc: Option<AuthResult>,
    dmarc_policy: Option<String>,
    mail_from: String,
    header_from: Option<String>,
}

/// SES's verdict as an Authentication-Results result; `None` when SES did not check.
fn result_of(verdict: Verdict) -> Option<AuthResult> {
    match verdict {
        Verdict::Pass => Some(AuthResult::Pass),
        Verdict::Fail => Some(AuthResult::Fail),
        Verdict::Gray => Some(AuthResult::None),
        Verdict::ProcessingFailed => Some(AuthResult::TempError),
        Verdict::Disabled | Verdict::Unknown => None,
    }
}

impl ArcStamp {
    /// The stamp for the message `envelope` describes; `received` is that message as it
    /// arrived (its From domain is what the DMARC verdict is about).
    pub fn new(sealer: Arc<Sealer>, envelope: &Envelope, received: &Message) -> ArcStamp {
        let v = &envelope.verdicts;
        ArcStamp {
            sealer,
            spf: result_of(v.spf),
            dkim: result_of(v.dkim),
            dmarc: result_of(v.dmarc),
            dmarc_policy: v.dmarc_policy.clone(),
            mail_from: envelope.mail_from.clone(),
            header_from: received
                .from_address()
                .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())),
        }
    }

    /// `raw` with an ARC set on top, or `raw` unchanged when it cannot be sealed (it already
    /// carries a chain Sluice does not verify, or its header section cannot be read): the
    /// copy is delivered either way, and the reason is logged as a warning.
    pub fn seal(&self, raw: &[u8], message_id: &str, copy: &str) -> Sealed {
        let auth = Authentication {
            spf: self.spf,
            dkim: self.dkim,
            dmarc: self.dmarc,
            dmarc_policy: self.dmarc_policy.as_deref(),
            mail_from: &self.mail_from,
            header_from: self.header_from.as_deref(),
        };
        match self.sealer.seal(raw, &auth) {
            Ok(sealed) => Sealed::Yes(sealed),
            Err(e) => {
                tracing::warn!(message_id, copy, error = %e, "ARC: copy not sealed");
                Sealed::No(std::sync::Arc::new(e))
            }
        }
    }
}

/// What [`ArcStamp::seal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// The sealed message.
    Yes(Vec<u8>),
    /// Not sealed, and why; the copy goes out as it was.
    No(std::sync::Arc<sluice_arc::SealError>),
}
