//! What the Sluice host and the rule SDKs must agree on, kept in one place: the limits the
//! host puts on a rule's actions, and what it accepts as an address. The host checks every
//! action against these; a rule (through `sluice-sdk`) can check its config by the same rules,
//! so a destination `validate-config` accepts is one the host will not refuse later.
//!
//! No dependencies: it is compiled into rules as well as into the host.

use std::fmt;

/// The longest address accepted, in bytes (RFC 5321's path limit less the angle brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// The longest header field name a rule may add or set, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 76;
/// The longest header field value a rule may add or set, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// The longest banner text (and HTML banner), in bytes.
pub const MAX_BANNER_BYTES: usize = 64 * 1024;
/// The longest folder name, in bytes (one directory or key segment).
pub const MAX_FOLDER_BYTES: usize = 255;
/// Longest note that replaces a stripped part (`replace-part`), in bytes: a sentence or two.
pub const MAX_NOTE_BYTES: usize = 4096;
/// The most addresses one `set-recipients`, `add-recipients` or forward may name.
pub const MAX_RECIPIENTS_PER_ACTION: usize = 100;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Nothing at all.
    Empty,
    /// Longer than [`MAX_ADDRESS_BYTES`].
    TooLong,
    /// A space, line break or control character.
    Space,
    /// `<` or `>`: a display-name form instead of the bare address.
    AngleBrackets,
    /// No `@`, or more than one.
    NotOneAt,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// Nothing after the `@`.
    EmptyDomain,
    /// A domain that starts or ends with a dot or has two in a row.
    EmptyLabel,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Empty => "it is empty",
            AddressError::TooLong => "it is longer than 254 bytes",
            AddressError::Space => "it contains a space, line break or control character",
            AddressError::AngleBrackets => {
                "it contains '<' or '>'; give the bare address without a display name"
            }
            AddressError::NotOneAt => "it must contain exactly one '@'",
            AddressError::EmptyLocalPart => "the local part before '@' is empty",
            AddressError::EmptyDomain => "the domain after '@' is empty",
            AddressError::EmptyLabel => "the domain has an empty label",
        })
    }
}

impl std::error::Error for AddressError {}

/// Checks a bare address (`local@domain`) the way the host checks every recipient a rule
/// names: not empty, at most [`MAX_ADDRESS_BYTES`], no spaces or control characters, no
/// angle brackets, exactly one `@` with something on both sides, no empty domain label.
/// Deliberately not a full RFC 5321 parser: quoted local parts with `@` are refused.
pub fn check_address(addr: &str) -> Result<(), AddressError> {
    if addr.is_empty() {
        return Err(AddressError::Empty);
    }
    if addr.len() > MAX_ADDRESS_BYTES {
        return Err(AddressError::TooLong);
    }
    // Brackets first: `Ann <a@example.com>` is a display-name form, and saying so helps more
    // than pointing at its space.
    if addr.contains(['<', '>']) {
        return Err(AddressError::AngleBrackets);
    }
    if addr.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AddressError::Space);
    }
    let mut halves = addr.split('@');
    let (Some(local), Some(domain), None) = (halves.next(), halves.next(), halves.next()) else {
        return Err(AddressError::NotOneAt);
    };
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(AddressError::EmptyLabel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_the_host_accepts_and_why_others_are_refused() {
        for ok in ["a@b", "ann+tag@example.com", "x@sub.example.co.uk"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for (bad, why) in [
            ("", AddressError::Empty),
            (long.as_str(), AddressError::TooLong),
            ("a b@example.com", AddressError::Space),
            ("a@example.com\r\n", AddressError::Space),
            ("Ann <a@example.com>", AddressError::AngleBrackets),
            ("<a@example.com>", AddressError::AngleBrackets),
            ("nobody", AddressError::NotOneAt),
            ("a@b@c", AddressError::NotOneAt),
            ("@example.com", AddressError::EmptyLocalPart),
            ("a@", AddressError::EmptyDomain),
            ("a@x..example", AddressError::EmptyLabel),
            ("a@.example", AddressError::EmptyLabel),
            ("a@example.", AddressError::EmptyLabel),
        ] {
            assert_eq!(check_address(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            AddressError::NotOneAt.to_string(),
            "it must contain exactly one '@'"
        );
    }
}
