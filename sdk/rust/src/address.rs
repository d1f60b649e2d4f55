//! Helpers for bare mail addresses (`local@domain`), as `Message::from` and
//! `Context::recipients` give them.
//!
//! They are deliberately simple: they split at the **last** `@`, tolerate surrounding
//! whitespace and angle brackets, and do not try to parse RFC 5322 display names or quoted
//! local parts containing `@` beyond that.

/// Checks a bare address exactly as the host checks the recipients a rule names (one `@`,
/// both sides non-empty, at most 254 bytes, no spaces or angle brackets, no empty domain
/// label), so a rule can refuse a bad destination in `validate-config` instead of failing on
/// every message. The error reads like the host's: "it must contain exactly one '@'".
pub fn check_address(addr: &str) -> Result<(), sluice_facts::AddressError> {
    sluice_facts::check_address(addr)
}

/// Trims whitespace and one pair of surrounding angle brackets.
fn bare(addr: &str) -> &str {
    let addr = addr.trim();
    addr.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr)
        .trim()
}

/// The domain of an address: `domain_of("Ann@Example.COM") == Some("Example.COM")` (case kept).
/// `None` when there is no `@` or nothing after it. A trailing root dot is dropped.
pub fn domain_of(addr: &str) -> Option<&str> {
    let (_, domain) = bare(addr).rsplit_once('@')?;
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    (!domain.is_empty()).then_some(domain)
}

/// The local part of an address: `local_part("ann+x@example.com") == Some("ann+x")`.
/// `None` when there is no `@` or nothing before it.
pub fn local_part(addr: &str) -> Option<&str> {
    let (local, _) = bare(addr).rsplit_once('@')?;
    (!local.is_empty()).then_some(local)
}

/// Whether `domain` is one of `domains` **or a subdomain of one**, ignoring ASCII case:
/// `mail.example.com` is in `["example.com"]`, `badexample.com` is not. Entries may be
/// written `example.com`, `@example.com`, `.example.com` or `*.example.com`; empty entries
/// match nothing.
pub fn is_domain_in<S: AsRef<str>>(domain: &str, domains: &[S]) -> bool {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return false;
    }
    domains.iter().any(|entry| {
        let entry = entry.as_ref().trim().trim_end_matches('.');
        let entry = entry
            .strip_prefix("*.")
            .or_else(|| entry.strip_prefix('@'))
            .or_else(|| entry.strip_prefix('.'))
            .unwrap_or(entry);
        if entry.is_empty() {
            return false;
        }
        if domain.eq_ignore_ascii_case(entry) {
            return true;
        }
        // Subdomain: `domain` ends with `.entry` (compare bytes: the suffix is ASCII-cased).
        domain.len() > entry.len()
            && domain.as_bytes()[domain.len() - entry.len() - 1] == b'.'
            && domain.as_bytes()[domain.len() - entry.len()..]
                .eq_ignore_ascii_case(entry.as_bytes())
    })
}

/// Whether the address's domain is one of `domains` or a subdomain of one (see
/// [`is_domain_in`]); `false` for an address without a domain.
///
/// ```
/// use sluice_sdk::is_in_domains;
/// let internal = vec!["example.com".to_string()];
/// assert!(is_in_domains("Ann@Mail.Example.com", &internal));
/// assert!(!is_in_domains("eve@notexample.com", &internal));
/// ```
pub fn is_in_domains<S: AsRef<str>>(addr: &str, domains: &[S]) -> bool {
    domain_of(addr).is_some_and(|d| is_domain_in(d, domains))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_at() {
        assert_eq!(domain_of("ann@example.com"), Some("example.com"));
        assert_eq!(domain_of(" <ann@Example.com.> "), Some("Example.com"));
        assert_eq!(domain_of("\"a@b\"@example.com"), Some("example.com"));
        assert_eq!(local_part("\"a@b\"@example.com"), Some("\"a@b\""));
        assert_eq!(local_part("ann+tag@example.com"), Some("ann+tag"));
        assert_eq!(domain_of("ann"), None);
        assert_eq!(domain_of("ann@"), None);
        assert_eq!(local_part("@example.com"), None);
        assert_eq!(domain_of(""), None);
    }

    #[test]
    fn domain_lists_match_case_insensitively_with_subdomains() {
        let list = ["Example.COM", "@partner.test", "*.wild.test", ""];
        assert!(is_in_domains("a@example.com", &list));
        assert!(is_in_domains("a@EXAMPLE.com", &list));
        assert!(is_in_domains("a@eu.mail.example.com", &list));
        assert!(is_in_domains("a@partner.test", &list));
        assert!(is_in_domains("a@x.wild.test", &list));
        assert!(!is_in_domains("a@badexample.com", &list));
        assert!(!is_in_domains("a@example.com.evil", &list));
        assert!(!is_in_domains("a@com", &list));
        assert!(!is_in_domains("nodomain", &list));
        assert!(!is_in_domains("a@x", &Vec::<String>::new()));
        assert!(is_domain_in("example.com.", &["example.com"]));
    }
}
