//! The milter's verdicts as the rules see them: SPF, DKIM and DMARC computed by Sluice
//! (`verdicts = "compute"`) against a real DNS server on loopback serving the sender
//! domains' records, with DKIM signatures made here by a key generated here; spam and virus
//! from the headers of scanners the operator named; and the overall connection time limit.
//!
//! The chain is `rule-reader` (which reports every verdict as an `X-Seen-*` header) then
//! `junk` (DMARC fail + quarantine files into Junk, + reject bounces, a virus bounces).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use sluice_tests::rule;

use crate::milter::{fields, reply, Milter, Mta, Packets, Transaction};

/// A signing key of `d=sender.test; s=s1`, generated for this test run, and its DNS record.
struct Signer {
    pkcs8: Vec<u8>,
    record: String,
}

impl Signer {
    fn new() -> Signer {
        let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
        let public = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap().public_key();
        let record = format!(
            "v=DKIM1; k=ed25519; p={}",
            base64::engine::general_purpose::STANDARD.encode(public)
        );
        Signer { pkcs8, record }
    }

    /// `raw` with a DKIM-Signature of sender.test on top.
    fn sign(&self, raw: &[u8]) -> Vec<u8> {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap();
        let signature = DkimSigner::from_key(key)
            .domain("sender.test")
            .selector("s1")
            .headers(["From", "To", "Subject"])
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(raw)
            .unwrap();
        [signature.to_header().as_bytes(), raw].concat()
    }
}

/// sender.test: SPF allows 192.0.2.1, DKIM key s1, DMARC p=quarantine. strict.test: SPF
/// allows 192.0.2.1, DMARC p=reject. Nothing for plain.test.
fn dns(signer: &Signer) -> Option<sluice_mailservers::DnsServer> {
    sluice_mailservers::DnsServer::start(&[
        ("sender.test", "v=spf1 ip4:192.0.2.1 -all"),
        ("s1._domainkey.sender.test", &signer.record),
        ("_dmarc.sender.test", "v=DMARC1; p=quarantine"),
        ("strict.test", "v=spf1 ip4:192.0.2.1 -all"),
        ("_dmarc.strict.test", "v=DMARC1; p=reject"),
    ])
}

/// example.com runs `rule-reader` then `junk` (viruses bounced); `milter_section` is the
/// `[milter]` section.
fn start(milter_section: &str, flags: &[&str]) -> (tempfile::TempDir, Milter) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), milter_section);
    let milter = Milter::start(&config, &dir.path().join("cache"), flags);
    (dir, milter)
}

fn write_config(dir: &Path, milter_section: &str) -> PathBuf {
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{milter_section}
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{reader}"
config = {{}}
[[domain.step]]
plugin = "{junk}"
config = {{ virus = "bounce" }}
"#,
            reader = rule("rule-reader").display(),
            junk = rule("junk").display(),
        ),
    )
    .unwrap();
    config
}

fn message(from: &str, subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "{extra_headers}From: <{from}>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.test>\r\n\r\nHello {subject}.\r\n"
    )
    .into_bytes()
}

/// Negotiation, CONNECT from `ip` and HELO, as Postfix opens a connection.
fn open_from(milter: &Milter, ip: &str, helo: &str) -> Mta {
    let mut mta = milter.connect();
    let mut neg = Vec::new();
    for w in [6u32, 0x1ff, 0x1f_ffff] {
        neg.extend_from_slice(&w.to_be_bytes());
    }
    let answer = mta.ask(b'O', &neg);
    assert_eq!(answer[0].0, b'O', "{answer:?}");
    let steps = u32::from_be_bytes(answer[0].1[8..12].try_into().unwrap());
    assert_eq!(steps & 0x2, 0, "Sluice asks for HELO (no SMFIP_NOHELO)");
    mta.send(b'D', b"Cj\0mx.example.com\0");
    let connect = format!("{helo}\x004\x00\x19{ip}\0");
    assert_eq!(mta.ask(b'C', connect.as_bytes()), [(b'c', vec![])]);
    assert_eq!(
        mta.ask(b'H', format!("{helo}\0").as_bytes()),
        [(b'c', vec![])]
    );
    mta
}

/// One transaction whose header fields may be folded (a DKIM-Signature is): each field is
/// sent whole, continuation lines joined with LF as Postfix sends them.
fn send(mta: &mut Mta, from: &str, raw: &[u8]) -> Transaction {
    mta.send(b'D', b"Mi\x004F2AB3C\0");
    let mail = mta.ask(b'M', format!("<{from}>\0").as_bytes());
    let rcpt = vec![mta.ask(b'R', b"<alice@example.com>\0")];
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match fields.last_mut() {
            Some(field) if line.starts_with([' ', '\t']) => {
                field.push('\n');
                field.push_str(line);
            }
            _ => fields.push(line.to_string()),
        }
    }
    for field in fields {
        let (name, value) = field.split_once(':').unwrap();
        let answer = mta.ask(b'L', format!("{name}\0{}\0", value.trim_start()).as_bytes());
        assert_eq!(answer, [(b'c', vec![])]);
    }
    mta.ask(b'N', b"");
    assert_eq!(mta.ask(b'B', body.as_bytes()), [(b'c', vec![])]);
    let end = mta.ask(b'E', b"");
    Transaction { mail, rcpt, end }
}

/// The verdicts `rule-reader` saw: (spf, dkim, dmarc, dmarc policy, spam, virus).
fn seen(end: &Packets) -> [String; 6] {
    // Added below the message's own fields: inserted at their index, or at the end.
    let mut added = fields(end, b'i', 4);
    added.extend(fields(end, b'h', 0));
    let get = |name: &str| {
        added
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {end:?}"))
    };
    [
        get("X-Seen-Spf"),
        get("X-Seen-Dkim"),
        get("X-Seen-Dmarc"),
        get("X-Seen-Dmarc-Policy"),
        get("X-Seen-Spam"),
        get("X-Seen-Virus"),
    ]
}

/// Whether `junk` filed the message into Junk (a folder header inserted on top).
fn junked(end: &Packets) -> bool {
    fields(end, b'i', 4).contains(&("X-Sluice-Folder".into(), "Junk".into()))
}

#[test]
fn milter_computes_spf_dkim_and_dmarc_against_dns_and_the_junk_rule_acts_on_them() {
    let _turn = crate::turn(module_path!());
    let signer = Signer::new();
    let Some(dns) = dns(&signer) else {
        return;
    };
    let section = format!(
        "[milter]\nverdicts = \"compute\"\ndns = \"{}\"\n",
        dns.address()
    );
    let (_dir, milter) = start(&section, &[]);

    // From the sender's allowed address, signed: everything passes, nothing is junked.
    let mut allowed = open_from(&milter, "192.0.2.1", "mail.sender.test");
    let signed = signer.sign(&message("a@sender.test", "signed", ""));
    let t = send(&mut allowed, "a@sender.test", &signed);
    assert_eq!(t.end.last().unwrap().0, b'c', "{:?}", t.end);
    assert_eq!(
        seen(&t.end),
        ["pass", "pass", "pass", "quarantine", "unknown", "unknown"]
    );
    assert!(!junked(&t.end));
    // The null sender: SPF checks postmaster@ the HELO name (no record there: none -> gray).
    let t = send(&mut allowed, "", &signed);
    assert_eq!(seen(&t.end)[0], "gray");

    let mut elsewhere = open_from(&milter, "203.0.113.9", "relay.elsewhere.test");
    // From another address, still signed: SPF fails, the DKIM signature carries DMARC.
    let t = send(&mut elsewhere, "a@sender.test", &signed);
    assert_eq!(
        seen(&t.end)[..4],
        ["fail", "pass", "pass", "quarantine"],
        "{:?}",
        t.end
    );
    assert!(!junked(&t.end));
    // The body changed after signing: DKIM fails too, DMARC fails, p=quarantine: Junk.
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Hello signed.", "Hello tampered.");
    let t = send(&mut elsewhere, "a@sender.test", tampered.as_bytes());
    assert_eq!(seen(&t.end)[..4], ["fail", "fail", "fail", "quarantine"]);
    assert!(junked(&t.end), "{:?}", t.end);
    // Unsigned from a p=reject domain's unlisted address: the junk rule bounces it.
    let t = send(
        &mut elsewhere,
        "b@strict.test",
        &message("b@strict.test", "strict", ""),
    );
    let refusal = reply(&t.end).unwrap();
    assert!(
        refusal.starts_with("550 5.7.1") && refusal.contains("DMARC"),
        "{refusal}"
    );
    // A domain with no records at all: no SPF, no signature, no DMARC policy.
    let t = send(
        &mut elsewhere,
        "c@plain.test",
        &message("c@plain.test", "plain", ""),
    );
    assert_eq!(seen(&t.end)[..4], ["gray", "gray", "gray", "<none>"]);
}

#[test]
fn milter_computed_verdicts_are_processing_failed_when_dns_does_not_answer_in_time() {
    let _turn = crate::turn(module_path!());
    // A UDP port nobody serves.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let section = format!(
        "[milter]\nverdicts = \"compute\"\ndns = \"{}\"\nverdicts_timeout_s = 2\n",
        silent.local_addr().unwrap()
    );
    let (_dir, milter) = start(&section, &[]);
    let mut mta = open_from(&milter, "192.0.2.1", "mail.sender.test");
    // Signed, so DKIM has a key to look up too.
    let signed = Signer::new().sign(&message("a@sender.test", "no-dns", ""));
    let started = Instant::now();
    let t = send(&mut mta, "a@sender.test", &signed);
    let took = started.elapsed();
    // Decided, not held: the rules see processing-failed, which junk leaves alone.
    assert_eq!(t.end.last().unwrap().0, b'c', "{:?}", t.end);
    assert_eq!(
        seen(&t.end)[..3],
        [
            "processing-failed",
            "processing-failed",
            "processing-failed"
        ]
    );
    assert!(!junked(&t.end));
    assert!(
        took < Duration::from_secs(8),
        "the time limit held: {took:?}"
    );
    drop(silent);
}

#[test]
fn milter_takes_spam_and_virus_verdicts_only_from_the_scanners_it_is_told_to_trust() {
    let _turn = crate::turn(module_path!());
    let section = r#"
[milter]
trusted_authserv_id = "mx.example.com"
[[milter.scanner]]
name = "spamassassin"
verdict = "spam"
header = "X-Spam-Flag"
fail = ["YES"]
pass = ["NO"]
[[milter.scanner]]
name = "clamav-milter"
verdict = "virus"
header = "X-Virus-Status"
fail = ["Infected"]
pass = ["Clean"]
"#;
    let (_dir, milter) = start(section, &[]);
    let mut mta = open_from(&milter, "192.0.2.1", "mail.sender.test");
    // SpamAssassin says spam: junk files it; the trusted Authentication-Results still
    // gives SPF/DKIM/DMARC beside the scanners' verdicts.
    let raw = message(
        "a@sender.test",
        "spam",
        "Authentication-Results: mx.example.com; spf=pass; dkim=pass; dmarc=pass\r\n\
         X-Spam-Flag: YES\r\nX-Virus-Status: Clean\r\n",
    );
    let t = send(&mut mta, "a@sender.test", &raw);
    assert_eq!(
        seen(&t.end),
        ["pass", "pass", "pass", "<none>", "fail", "pass"]
    );
    assert!(junked(&t.end), "{:?}", t.end);
    // clamav-milter says infected: junk bounces it (virus = "bounce"), even beside a
    // sender's forged "Clean" copy.
    let raw = message(
        "a@sender.test",
        "virus",
        "X-Virus-Status: Clean\r\nX-Virus-Status: Infected (Eicar-Signature)\r\n",
    );
    let t = send(&mut mta, "a@sender.test", &raw);
    let refusal = reply(&t.end).unwrap();
    assert!(refusal.contains("virus"), "{refusal}");
    // Headers of scanners nobody named mean nothing.
    let raw = message(
        "a@sender.test",
        "unnamed",
        "X-Spam-Status: Yes, score=20.0\r\nX-Virus-Scan: Infected\r\n",
    );
    let t = send(&mut mta, "a@sender.test", &raw);
    assert_eq!(seen(&t.end)[4..], ["unknown", "unknown"]);
    assert!(!junked(&t.end));
}

#[test]
fn milter_closes_a_connection_past_its_overall_time_limit_however_busy() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = start("", &["--connection-timeout", "2"]);
    let mut mta = open_from(&milter, "192.0.2.1", "mail.sender.test");
    let started = Instant::now();
    // A command every 200 ms: never idle past the command timeout (600 s).
    let closed = loop {
        if mta.ask(b'H', b"mail.sender.test\0").is_empty() {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still open after 15 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        closed >= Duration::from_millis(1500),
        "closed too early: {closed:?}"
    );
    // Other connections are served as before.
    let mut fresh = open_from(&milter, "192.0.2.1", "mail.sender.test");
    let t = send(
        &mut fresh,
        "a@sender.test",
        &message("a@sender.test", "after", ""),
    );
    assert_eq!(t.end.last().unwrap().0, b'c');
}

#[test]
fn milter_refuses_to_start_with_two_sources_of_the_same_verdicts() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[milter]\nverdicts = \"compute\"\ntrusted_authserv_id = \"mx.example.com\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["milter", "--listen", "inet:127.0.0.1:0", "--config"])
        .arg(&config)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keep one"), "{stderr}");
}

/// Postfix runs `smtpd_milters` one after another over the queue file at end of message,
/// applying each one's edits before the next reads it: so a scanner milter placed before
/// Sluice has its added header seen by Sluice. Checked here with two Sluice milters: the
/// first files DMARC-quarantined mail into Junk by inserting `X-Sluice-Folder`, the second
/// trusts that header as a "scanner" and reports the spam verdict it got.
#[test]
fn milter_after_another_milter_in_postfix_sees_the_header_the_first_one_added() {
    let _turn = crate::turn(module_path!());
    let Some(sink) = sluice_mailservers::SmtpSink::start() else {
        return;
    };
    let (_first_dir, first) = crate::milter::started(&[]);
    let (_second_dir, second) = start(
        "[milter]\n[[milter.scanner]]\nname = \"first-milter\"\nverdict = \"spam\"\n\
         header = \"X-Sluice-Folder\"\nfail = [\"Junk\"]\npass = [\"INBOX\"]\n",
        &[],
    );
    let Some(postfix) = sluice_mailservers::Postfix::start(&format!(
        "relay_domains = example.com\nrelayhost = [127.0.0.1]:{}\n\
         smtpd_milters = inet:127.0.0.1:{} inet:127.0.0.1:{}\nmilter_protocol = 6\n\
         milter_default_action = tempfail\n",
        sink.port, first.port, second.port
    )) else {
        return;
    };
    let raw = message(
        "a@sender.test",
        "two-milters",
        "Authentication-Results: mx.example.com; dmarc=fail (p=quarantine) header.from=sender.test\r\n",
    );
    let replies =
        crate::milter::smtp_send(postfix.port, "a@sender.test", &["alice@example.com"], &raw);
    assert!(
        replies.last().unwrap().starts_with("250 "),
        "{replies:?}\n{}",
        postfix.log()
    );
    let got = crate::milter::wait_for("the relayed message", || sink.received().pop());
    let data = String::from_utf8_lossy(&got.data);
    assert!(data.contains("X-Seen-Spam: fail"), "{data}");
    assert!(data.contains("X-Sluice-Folder: Junk"), "{data}");
}
