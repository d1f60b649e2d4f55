use super::*;

const KEY: &str = include_str!("../../../tests/fixtures/arc/test-key.pem");
const KEY_PKCS1: &str = include_str!("../../../tests/fixtures/arc/test-key-pkcs1.pem");
const SMALL_KEY: &str = include_str!("../../../tests/fixtures/arc/small-key.pem");

const MESSAGE: &str = "From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: hi\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n\r\nHello.\r\n";

fn sealer() -> Sealer {
    Sealer::new(KEY, "Example.com", "arc2026", Some("mx.example.com")).unwrap()
}

fn passing() -> Authentication<'static> {
    Authentication {
        spf: Some(AuthResult::Pass),
        dkim: Some(AuthResult::Pass),
        dmarc: Some(AuthResult::Pass),
        dmarc_policy: Some("reject"),
        mail_from: "bounce@sender.example",
        header_from: Some("sender.example"),
    }
}

/// The header field `name` of the sealed message, unfolded.
fn header(sealed: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(sealed);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .replace("\r\n\t", " ");
    let head = head.replace("\r\n ", " ");
    head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    })
}

#[test]
fn a_set_is_three_headers_on_top_with_instance_one_and_no_prior_chain() {
    let sealed = sealer().seal(MESSAGE.as_bytes(), &passing()).unwrap();
    let text = String::from_utf8(sealed.clone()).unwrap();
    assert!(text.starts_with("ARC-Seal: "), "{text}");
    assert!(
        text.ends_with(MESSAGE),
        "the message follows the set unchanged"
    );
    let seal = header(&sealed, "ARC-Seal").unwrap();
    assert!(seal.contains("i=1;") && seal.contains("cv=none"), "{seal}");
    assert!(
        seal.contains("d=example.com") && seal.contains("s=arc2026"),
        "{seal}"
    );
    let ams = header(&sealed, "ARC-Message-Signature").unwrap();
    assert!(ams.contains("i=1;") && ams.contains("bh="), "{ams}");
    let h = ams.split("h=").nth(1).unwrap().split(';').next().unwrap();
    for name in ["From", "To", "Subject", "Date", "Message-ID"] {
        assert!(
            h.to_ascii_lowercase().contains(&name.to_ascii_lowercase()),
            "{h}"
        );
    }
    assert_eq!(
        header(&sealed, "ARC-Authentication-Results").unwrap(),
        "i=1; mx.example.com; spf=pass smtp.mailfrom=bounce@sender.example; dkim=pass; dmarc=pass header.from=sender.example policy.dmarc=reject"
    );
}

#[test]
fn ses_verdicts_become_results_and_unknown_ones_are_left_out() {
    let s = sealer();
    let auth = Authentication {
        spf: Some(AuthResult::Fail),
        dkim: None,
        dmarc: Some(AuthResult::TempError),
        dmarc_policy: Some("bogus"),
        mail_from: "",
        header_from: Some("sender.example"),
    };
    assert_eq!(
        s.results_text(&auth),
        "mx.example.com; spf=fail smtp.mailfrom=<>; dmarc=temperror header.from=sender.example"
    );
    assert_eq!(
        s.results_text(&Authentication::default()),
        "mx.example.com; none"
    );
}

#[test]
fn a_hostile_envelope_sender_cannot_add_a_method() {
    let auth = Authentication {
        spf: Some(AuthResult::Fail),
        dmarc: Some(AuthResult::Fail),
        mail_from: "x@evil.example; dkim=pass",
        header_from: Some("a (b) c"),
        ..Authentication::default()
    };
    let text = sealer().results_text(&auth);
    assert_eq!(text, "mx.example.com; spf=fail; dmarc=fail");
}

#[test]
fn a_message_with_an_arc_chain_is_not_sealed_again() {
    let first = sealer().seal(MESSAGE.as_bytes(), &passing()).unwrap();
    assert_eq!(
        sealer().seal(&first, &passing()),
        Err(SealError::ExistingChain(1))
    );
}

#[test]
fn bare_lf_messages_are_sealed_as_crlf() {
    let lf = MESSAGE.replace("\r\n", "\n");
    let sealed = sealer().seal(lf.as_bytes(), &passing()).unwrap();
    let text = String::from_utf8(sealed).unwrap();
    assert!(text.ends_with(MESSAGE), "{text}");
    assert!(!text.replace("\r\n", "").contains('\n'));
}

#[test]
fn pkcs1_and_pkcs8_keys_are_the_same_key() {
    let a = sealer();
    let b = Sealer::new(KEY_PKCS1, "example.com", "arc2026", None).unwrap();
    assert_eq!(a.dns_record(), b.dns_record());
    let (name, record) = a.dns_record();
    assert_eq!(name, "arc2026._domainkey.example.com");
    assert!(record.starts_with("v=DKIM1; k=rsa; p=MIIB"), "{record}");
}

#[test]
fn bad_keys_and_names_are_refused_with_what_to_do() {
    let e = Sealer::new(SMALL_KEY, "example.com", "s", None).unwrap_err();
    assert!(matches!(e, KeyError::TooSmall { bits: 512 }), "{e}");
    let e = Sealer::new("not a key", "example.com", "s", None).unwrap_err();
    assert!(e.to_string().contains("openssl genrsa"), "{e}");
    let e = Sealer::new(KEY, "example.com", "a;b", None).unwrap_err();
    assert!(e.to_string().contains("selector"), "{e}");
    let e = Sealer::new(KEY, "", "s", None).unwrap_err();
    assert!(e.to_string().contains("domain"), "{e}");
}

#[test]
fn a_message_without_a_header_section_is_an_error_not_a_panic() {
    assert!(sealer().seal(b"", &passing()).is_err());
}
