//! ARC sealing (RFC 8617) for the copies Sluice changes or relays.
//!
//! A banner, a subject tag or a relay rewrite breaks the sender's DKIM signature, so the next
//! server sees a message that fails DMARC although SES checked it when it arrived. An ARC set
//! records what SES found (`ARC-Authentication-Results`), signs the message as Sluice passes it
//! on (`ARC-Message-Signature`) and seals the chain (`ARC-Seal`), so a receiver that trusts the
//! sealing domain can use the original verdicts. Signing is mail-auth's; this crate decides what
//! the results say and refuses to seal what it cannot seal honestly.

use std::borrow::Cow;

use base64::Engine;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::Done;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// Headers the message signature covers (when present). From, Subject and the MIME headers are
/// what a banner or relay changes and what a receiver shows; DKIM-Signature ties the set to the
/// original signature it vouches for.
pub const SIGNED_HEADERS: [&str; 13] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
];

/// Smallest RSA key accepted (RFC 8301 forbids signing with less than 1024 bits; 2048 is what
/// large receivers expect).
pub const MIN_KEY_BITS: usize = 1024;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not an RSA private key in PEM.
    #[error("not an RSA private key in PEM (`-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA PRIVATE KEY-----`): {0}; make one with `openssl genrsa -out arc.key 2048`")]
    NotRsaPem(String),
    /// Too short to sign with.
    #[error("the RSA key has {bits} bits; ARC and DKIM need at least {MIN_KEY_BITS} (use 2048)")]
    TooSmall {
        /// The key's size.
        bits: usize,
    },
    /// A domain, selector or authserv-id that cannot go into a header.
    #[error("{what} {value:?} is not a DNS name (letters, digits, `-`, `_` and dots)")]
    BadName {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: String,
    },
}

/// Why one message was not sealed. The message is still delivered, unsealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// mail-auth could not find the header section.
    #[error("the message's header section cannot be parsed for signing")]
    Unparseable,
    /// The message already has ARC sets: a new set must state whether that chain validated
    /// (`cv=`), and Sluice does not verify incoming chains (no DNS lookups on this path).
    #[error("the message already carries an ARC chain ({0} set(s)); Sluice does not verify incoming chains, so it adds no set rather than claim a validation it did not make")]
    ExistingChain(usize),
    /// Signing failed.
    #[error("ARC signing failed: {0}")]
    Sign(String),
}

/// One SES verdict as an Authentication-Results result (RFC 8601 section 2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// `pass`.
    Pass,
    /// `fail`.
    Fail,
    /// `none`: nothing to check (SES's GRAY: no record, not signed).
    None,
    /// `temperror`: the check could not be completed (SES's PROCESSING_FAILED).
    TempError,
}

impl AuthResult {
    fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
        }
    }
}

/// What the receiving ADMD (SES) found, as the ARC-Authentication-Results will state it.
/// `None` leaves a method out (SES did not check it, or the verdict is unknown).
#[derive(Debug, Clone, Default)]
pub struct Authentication<'a> {
    /// SPF of the envelope sender.
    pub spf: Option<AuthResult>,
    /// DKIM (SES does not say which signature passed, so no `header.d`).
    pub dkim: Option<AuthResult>,
    /// DMARC of the From domain.
    pub dmarc: Option<AuthResult>,
    /// The From domain's published policy when SES reported one.
    pub dmarc_policy: Option<&'a str>,
    /// The envelope sender (empty for a null sender).
    pub mail_from: &'a str,
    /// The From domain of the message as received: what SES's DMARC verdict is about. Not
    /// read from the message being sealed, whose From a relay rewrite replaced.
    pub header_from: Option<&'a str>,
}

/// Seals messages with one key, domain and selector.
pub struct Sealer {
    sealer: ArcSealer<RsaKey<Sha256>, Done>,
    domain: String,
    selector: String,
    authserv_id: String,
    public_key_der: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("authserv_id", &self.authserv_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer signing as `d=domain; s=selector` with the RSA key in `key_pem` (PKCS#1 or
    /// PKCS#8). `authserv_id` names the ADMD in the results (default: `domain`).
    pub fn new(
        key_pem: &str,
        domain: &str,
        selector: &str,
        authserv_id: Option<&str>,
    ) -> Result<Sealer, KeyError> {
        let domain = checked_name("domain", domain)?;
        let selector = checked_name("selector", selector)?;
        let authserv_id = checked_name("authserv_id", authserv_id.unwrap_or(&domain))?;
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(key_pem))
            .map_err(|e| KeyError::NotRsaPem(e.to_string()))?;
        let bits = private.size() * 8;
        if bits < MIN_KEY_BITS {
            return Err(KeyError::TooSmall { bits });
        }
        let public_key_der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::NotRsaPem(e.to_string()))?
            .into_vec();
        let pkcs1 = private
            .to_pkcs1_der()
            .map_err(|e| KeyError::NotRsaPem(e.to_string()))?;
        let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
            pkcs1.as_bytes(),
        )))
        .map_err(|e| KeyError::NotRsaPem(e.to_string()))?;
        let sealer = ArcSealer::from_key(key)
            .domain(domain.clone())
            .selector(selector.clone())
            .headers(SIGNED_HEADERS);
        Ok(Sealer {
            sealer,
            domain,
            selector,
            authserv_id,
            public_key_der,
        })
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Where receivers look the key up, and the TXT record to publish there.
    pub fn dns_record(&self) -> (String, String) {
        (
            format!("{}._domainkey.{}", self.selector, self.domain),
            format!(
                "v=DKIM1; k=rsa; p={}",
                base64::engine::general_purpose::STANDARD.encode(&self.public_key_der)
            ),
        )
    }

    /// The ARC-Authentication-Results payload after `i=N; ` for `auth`: the authserv-id, then
    /// one `method=result` per verdict SES gave. Every value from the message is reduced to
    /// the characters a token may hold, so a hostile envelope sender cannot add a method.
    pub fn results_text(&self, auth: &Authentication<'_>) -> String {
        let mut text = self.authserv_id.clone();
        if let Some(spf) = auth.spf {
            text.push_str("; spf=");
            text.push_str(spf.as_str());
            // A null sender is `<>`; a sender that cannot be a token is left out.
            let from = if auth.mail_from.trim().is_empty() {
                Some("<>".to_string())
            } else {
                token(auth.mail_from)
            };
            if let Some(from) = from {
                text.push_str(" smtp.mailfrom=");
                text.push_str(&from);
            }
        }
        if let Some(dkim) = auth.dkim {
            text.push_str("; dkim=");
            text.push_str(dkim.as_str());
        }
        if let Some(dmarc) = auth.dmarc {
            text.push_str("; dmarc=");
            text.push_str(dmarc.as_str());
            if let Some(domain) = auth.header_from.and_then(token) {
                text.push_str(" header.from=");
                text.push_str(&domain);
            }
            if let Some(policy) = auth
                .dmarc_policy
                .filter(|p| matches!(*p, "none" | "quarantine" | "reject"))
            {
                text.push_str(" policy.dmarc=");
                text.push_str(policy);
            }
        }
        if auth.spf.is_none() && auth.dkim.is_none() && auth.dmarc.is_none() {
            // RFC 8601: a header with no results says `none`.
            text.push_str("; none");
        }
        text
    }

    /// `raw` with an ARC set (i=1) prepended. A message with bare LF line ends is sealed, and
    /// returned, with CRLF: a signature is over the message as it travels, which is CRLF.
    pub fn seal(&self, raw: &[u8], auth: &Authentication<'_>) -> Result<Vec<u8>, SealError> {
        let raw = to_crlf(raw);
        let message = AuthenticatedMessage::parse(&raw).ok_or(SealError::Unparseable)?;
        let sets = message.as_headers.len().max(message.ams_headers.len());
        if sets > 0 {
            return Err(SealError::ExistingChain(sets));
        }
        let text = self.results_text(auth);
        // mail-auth builds the results from its own verifiers' outputs; Sluice's come from
        // SES. Its Display writes the authserv-id text and then the results it collected,
        // none here, so the whole payload goes in as the id. The text is one line with
        // single spaces, so it is the same before and after relaxed canonicalization.
        let results = AuthenticationResults::new(&text);
        let set = self
            .sealer
            .seal(&message, &results, &ArcOutput::default())
            .map_err(|e| SealError::Sign(e.to_string()))?;
        let headers = set.to_header();
        let mut out = Vec::with_capacity(headers.len() + raw.len());
        out.extend_from_slice(headers.as_bytes());
        out.extend_from_slice(&raw);
        Ok(out)
    }
}

/// A name for `d=`, `s=` or the authserv-id: DNS characters only, so nothing needs quoting.
fn checked_name(what: &'static str, value: &str) -> Result<String, KeyError> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 253
        && !value.starts_with('.')
        && !value.ends_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(KeyError::BadName {
            what,
            value: value.to_string(),
        })
    }
}

/// `value` if it can stand as an Authentication-Results value without quoting: printable
/// ASCII without space, `;`, `(`, `)`, `"` or `\`. Anything else is left out, not escaped.
fn token(value: &str) -> Option<String> {
    let value = value.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = !value.is_empty()
        && value.len() <= 254
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'(' | b')' | b'"' | b'\\'));
    ok.then(|| value.to_string())
}

/// `raw` with every bare LF made CRLF (borrowed when there is none).
fn to_crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    let bare = raw
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
    if !bare {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
