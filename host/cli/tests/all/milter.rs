//! `sluice milter` driven over loopback by a small MTA side of the milter protocol written
//! here (the packets as Postfix sends them): the reference rules' edits come back as milter
//! modifications, refusals as SMTP replies, and a malformed packet ends only its connection.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_tests::rule;

/// `sluice milter` on a free loopback port (or the Unix socket `--listen` names), stopped
/// (SIGKILL) when dropped.
pub(crate) struct Milter {
    pub(crate) child: Child,
    /// The TCP port (0 on a Unix socket).
    pub(crate) port: u16,
    /// What it printed it listens on.
    listening: String,
}

/// A milter connection's socket, TCP or Unix.
trait Socket: std::io::Read + std::io::Write {}
impl<S: std::io::Read + std::io::Write> Socket for S {}

impl Milter {
    pub(crate) fn start(config: &Path, cache: &Path, extra: &[&str]) -> Milter {
        let in_section = std::fs::read_to_string(config)
            .unwrap()
            .contains("\nlisten = ");
        let listen = if extra.contains(&"--listen") || in_section {
            &[][..]
        } else {
            &["--listen", "inet:127.0.0.1:0"][..]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("milter")
            .args(listen)
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("SLUICE_CACHE_DIR", cache)
            // No AWS here: no region lookups against instance metadata at start-up.
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening = line
            .trim()
            .strip_prefix("sluice milter: listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_string();
        let port = listening
            .strip_prefix("inet:")
            .and_then(|a| a.rsplit(':').next()?.parse().ok())
            .unwrap_or(0);
        Milter {
            child,
            port,
            listening,
        }
    }

    pub(crate) fn connect(&self) -> Mta {
        let timeout = Some(Duration::from_secs(30));
        let stream: Box<dyn Socket> = match self.listening.strip_prefix("unix:") {
            Some(path) => {
                let s = std::os::unix::net::UnixStream::connect(path).unwrap();
                s.set_read_timeout(timeout).unwrap();
                Box::new(s)
            }
            None => {
                let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
                s.set_read_timeout(timeout).unwrap();
                // A macro packet (no answer) then a command: no Nagle wait between them.
                s.set_nodelay(true).unwrap();
                Box::new(s)
            }
        };
        Mta { stream }
    }
}

impl Drop for Milter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The MTA side of one milter connection.
pub(crate) struct Mta {
    stream: Box<dyn Socket>,
}

/// What the milter answered to one command: `(command byte, data)` packets.
pub(crate) type Packets = Vec<(u8, Vec<u8>)>;

impl Mta {
    pub(crate) fn send(&mut self, code: u8, data: &[u8]) {
        let mut packet = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        packet.push(code);
        packet.extend_from_slice(data);
        self.stream.write_all(&packet).unwrap();
    }

    /// One packet, or `None` when the milter closed the connection.
    pub(crate) fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut packet = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut packet).ok()?;
        let data = packet.split_off(1);
        Some((packet[0], data))
    }

    /// Sends a command and reads up to its final answer (modifications first).
    pub(crate) fn ask(&mut self, code: u8, data: &[u8]) -> Packets {
        self.send(code, data);
        let mut got = Vec::new();
        while let Some((c, d)) = self.recv() {
            let last = b"cadrty".contains(&c) || c == b'O';
            got.push((c, d));
            if last {
                break;
            }
        }
        got
    }

    /// Negotiation and connect, as Postfix opens a connection.
    pub(crate) fn open(&mut self) {
        let mut neg = Vec::new();
        for w in [6u32, 0x1ff, 0x1f_ffff] {
            neg.extend_from_slice(&w.to_be_bytes());
        }
        let answer = self.ask(b'O', &neg);
        assert_eq!(answer[0].0, b'O', "{answer:?}");
        self.send(b'D', b"Cj\0mx.example.com\0");
        assert_eq!(
            self.ask(b'C', b"mail.sender.example\x004\x00\x19192.0.2.1\0"),
            [(b'c', vec![])]
        );
    }

    /// One transaction: the final answer's packets for MAIL, each RCPT, and end of message.
    pub(crate) fn transaction(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &[u8],
    ) -> Transaction {
        self.send(b'D', b"Mi\x004F2AB3C\0");
        let mail = self.ask(b'M', format!("<{from}>\0").as_bytes());
        let rcpt = rcpts
            .iter()
            .map(|r| self.ask(b'R', format!("<{r}>\0").as_bytes()))
            .collect();
        let text = String::from_utf8_lossy(message).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        for field in head
            .split("\r\n")
            .collect::<Vec<_>>()
            .join("\n")
            .split("\n")
        {
            let (name, value) = field.split_once(':').unwrap();
            let answer = self.ask(b'L', format!("{name}\0{}\0", value.trim_start()).as_bytes());
            assert_eq!(answer, [(b'c', vec![])]);
        }
        self.ask(b'N', b"");
        for chunk in body.as_bytes().chunks(65535) {
            let answer = self.ask(b'B', chunk);
            if answer != [(b'c', vec![])] {
                return Transaction {
                    mail,
                    rcpt,
                    end: answer,
                };
            }
        }
        let end = self.ask(b'E', b"");
        Transaction { mail, rcpt, end }
    }
}

pub(crate) struct Transaction {
    pub(crate) mail: Packets,
    pub(crate) rcpt: Vec<Packets>,
    pub(crate) end: Packets,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The REPLYCODE text in an answer, if any.
pub(crate) fn reply(answer: &Packets) -> Option<String> {
    answer
        .iter()
        .find(|(c, _)| *c == b'y')
        .map(|(_, d)| text(d.strip_suffix(b"\0").unwrap_or(d)))
}

/// The `name\0value\0` of the packets with this command byte (after `skip` bytes: the index
/// of CHGHEADER/INSHEADER).
pub(crate) fn fields(answer: &Packets, code: u8, skip: usize) -> Vec<(String, String)> {
    answer
        .iter()
        .filter(|(c, _)| *c == code)
        .map(|(_, d)| {
            let parts: Vec<String> = d[skip..].split(|&b| b == 0).map(text).collect();
            (parts[0].clone(), parts.get(1).cloned().unwrap_or_default())
        })
        .collect()
}

fn message(subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "{extra_headers}From: Sender <someone@sender.example>\r\nTo: alice@example.com\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@sender.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\r\nHello {subject}.\r\n"
    )
    .into_bytes()
}

/// example.com: subject tag, banner, junk (on the trusted Authentication-Results), aliases
/// with unknown addresses bounced; drop.example: every address dropped.
fn write_config(dir: &Path, milter_section: &str) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
{milter_section}
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
config = {{ mailboxes = ["alice"], aliases = {{ info = "alice" }}, unknown = "bounce" }}
[[domain.step]]
plugin = "{junk}"
config = {{}}
[[domain.step]]
plugin = "{tag}"
config = {{ tag = "[EXT]", internal_domains = ["example.com"] }}
[[domain.step]]
plugin = "{banner}"
config = {{ text = "External sender: be careful.", internal_domains = ["example.com"] }}

[[domain]]
name = "drop.example"
[[domain.step]]
plugin = "{alias}"
config = {{ unknown = "drop" }}
"#,
            alias = rule("alias").display(),
            junk = rule("junk").display(),
            tag = rule("subject-tag").display(),
            banner = rule("banner").display(),
        ),
    )
    .unwrap();
    path
}

pub(crate) fn started(extra: &[&str]) -> (tempfile::TempDir, Milter) {
    started_with(
        "",
        &[&["--trusted-authserv-id", "mx.example.com"], extra].concat(),
    )
}

/// `sluice milter` with this `[milter]` section (TOML lines) in its config and these flags.
fn started_with(milter_section: &str, flags: &[&str]) -> (tempfile::TempDir, Milter) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), milter_section);
    let milter = Milter::start(&config, &dir.path().join("cache"), flags);
    (dir, milter)
}

#[test]
fn milter_answers_with_the_rules_edits_as_modifications() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = started(&[]);
    let mut mta = milter.connect();
    mta.open();
    // To an alias: the subject is tagged, the body gets the banner, info@ becomes alice@.
    let t = mta.transaction(
        "someone@sender.example",
        &["info@example.com"],
        &message("tagged", "X-Sluice-Folder: Forged\r\n"),
    );
    assert_eq!(t.mail, [(b'c', vec![])]);
    assert_eq!(t.rcpt, [vec![(b'c', vec![])]]);
    let end = &t.end;
    assert_eq!(end.last().unwrap().0, b'c', "{end:?}");
    let changed = fields(end, b'm', 4);
    assert!(
        changed.contains(&("Subject".into(), "[EXT] tagged".into())),
        "{changed:?}"
    );
    // The sender's own folder header is deleted (an empty CHGHEADER value).
    assert!(changed.contains(&("X-Sluice-Folder".into(), String::new())));
    let body: Vec<u8> = end
        .iter()
        .filter(|(c, _)| *c == b'b')
        .flat_map(|(_, d)| d.clone())
        .collect();
    let body = text(&body);
    assert!(body.contains("External sender: be careful."), "{body}");
    assert!(body.contains("Hello tagged."), "{body}");
    assert_eq!(fields(end, b'-', 0)[0].0, "<info@example.com>");
    assert_eq!(fields(end, b'+', 0)[0].0, "<alice@example.com>");

    // Quarantined by DMARC, said by our own MTA: a folder header on top, for Sieve.
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message(
            "quarantined",
            "Authentication-Results: mx.example.com; dmarc=fail (p=quarantine) header.from=sender.example\r\n",
        ),
    );
    let inserted = fields(&t.end, b'i', 4);
    assert!(
        inserted.contains(&("X-Sluice-Folder".into(), "Junk".into())),
        "{:?}",
        t.end
    );
    assert!(
        fields(&t.end, b'-', 0).is_empty(),
        "alice keeps the message"
    );

    // A recipient whose domain runs another chain: 452, to be retried on its own.
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com", "x@drop.example"],
        &message("two-domains", ""),
    );
    assert_eq!(t.rcpt[0], [(b'c', vec![])]);
    let second = reply(&t.rcpt[1]).unwrap();
    assert!(second.starts_with("452 4.5.3 "), "{second}");
    assert_eq!(t.end.last().unwrap().0, b'c');
}

#[test]
fn milter_refuses_what_the_rules_refuse_in_the_smtp_reply() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = started(&["--max-message-bytes", "100000"]);
    let mut mta = milter.connect();
    mta.open();
    // DMARC failed with p=reject: the junk rule's bounce is the SMTP reply, code and text.
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message(
            "rejected",
            "Authentication-Results: mx.example.com; dmarc=fail (p=reject) header.from=sender.example\r\n",
        ),
    );
    let refused = reply(&t.end).unwrap_or_else(|| panic!("{:?}", t.end));
    assert!(refused.starts_with("550 5.7.1 "), "{refused}");
    assert!(refused.contains("DMARC"), "{refused}");
    // A forged header with another authserv-id changes nothing.
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message(
            "forged",
            "Authentication-Results: evil.example; dmarc=fail (p=reject)\r\n",
        ),
    );
    assert!(reply(&t.end).is_none(), "{:?}", t.end);
    // No such user: the alias rule's 550 5.1.1.
    let t = mta.transaction(
        "someone@sender.example",
        &["nobody@example.com"],
        &message("unknown", ""),
    );
    let refused = reply(&t.end).unwrap_or_else(|| panic!("{:?}", t.end));
    assert!(refused.starts_with("550 5.1.1 "), "{refused}");
    // An address Sluice will not write to: refused as at every door.
    let t = mta.transaction(
        "someone@sender.example",
        &["al ice@example.com"],
        &message("bad-address", ""),
    );
    let refused = reply(&t.end).unwrap_or_else(|| panic!("{:?}", t.end));
    assert!(refused.starts_with("550 5.1.3 "), "{refused}");
    // Every recipient dropped: discarded.
    let t = mta.transaction(
        "someone@sender.example",
        &["x@drop.example"],
        &message("dropped", ""),
    );
    assert_eq!(t.end, [(b'd', vec![])]);
    // Over the size limit: 552 5.3.4 during the body, and the connection goes on.
    let big = message("big", "")
        .into_iter()
        .chain(vec![b'x'; 200_000])
        .collect::<Vec<_>>();
    let t = mta.transaction("someone@sender.example", &["alice@example.com"], &big);
    let refused = reply(&t.end).unwrap_or_else(|| panic!("{:?}", t.end));
    assert!(refused.starts_with("552 5.3.4 "), "{refused}");
    mta.send(b'A', b"");
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("after", ""),
    );
    assert_eq!(t.end.last().unwrap().0, b'c');
}

#[test]
fn milter_ends_only_the_connection_that_sent_a_malformed_packet() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = started(&[]);
    let mut good = milter.connect();
    good.open();
    for garbage in [
        &b"\0\0\0\0"[..],     // length 0
        b"\x7f\xff\xff\xffO", // 2 GB claimed
        b"\0\0\0\x02C\x01",   // CONNECT without a host name's NUL
        b"\0\0\0\x01z",       // no such command
    ] {
        let mut bad = milter.connect();
        bad.open();
        bad.stream.write_all(garbage).unwrap();
        assert!(
            bad.recv().is_none(),
            "{garbage:?}: the connection stays open"
        );
    }
    let t = good.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("still-served", ""),
    );
    assert_eq!(t.end.last().unwrap().0, b'c', "{:?}", t.end);
    // SIGTERM: the milter stops cleanly.
    let mut milter = milter;
    let pid = milter.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    drop(good);
    let status = milter.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// An SMTP client's transaction: the last reply line to MAIL, each RCPT and the end of DATA
/// (DATA is skipped when no recipient was accepted). Also the `sluice deliver` tests' client.
pub(crate) fn smtp_send(port: u16, from: &str, rcpts: &[&str], data: &[u8]) -> Vec<String> {
    smtp_submit(port, None, from, rcpts, data)
}

/// [`smtp_send`] after `AUTH PLAIN` with `(login, password)` when given; the AUTH reply is
/// not among the replies returned (an AUTH that is refused fails the test).
pub(crate) fn smtp_submit(
    port: u16,
    auth: Option<(&str, &str)>,
    from: &str,
    rcpts: &[&str],
    data: &[u8],
) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut read_reply = || {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line.trim_end().to_string();
            }
        }
    };
    let say = |w: &mut TcpStream, cmd: &str| w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    read_reply();
    say(&mut writer, "EHLO client.sender.example");
    read_reply();
    if let Some((login, password)) = auth {
        use base64::Engine as _;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"));
        say(&mut writer, &format!("AUTH PLAIN {token}"));
        let answer = read_reply();
        assert!(answer.starts_with("235 "), "AUTH PLAIN: {answer}");
    }
    let mut replies = Vec::new();
    say(&mut writer, &format!("MAIL FROM:<{from}>"));
    replies.push(read_reply());
    for r in rcpts {
        say(&mut writer, &format!("RCPT TO:<{r}>"));
        replies.push(read_reply());
    }
    if replies[1..].iter().any(|r| r.starts_with('2')) {
        say(&mut writer, "DATA");
        read_reply();
        writer.write_all(data).unwrap();
        writer.write_all(b".\r\n").unwrap();
        replies.push(read_reply());
    }
    say(&mut writer, "QUIT");
    replies
}

/// `f`'s first `Some`, polled every 100 ms for up to 30 s.
pub(crate) fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn milter_inside_a_real_postfix_edits_relayed_mail_and_refuses_at_end_of_data() {
    let _turn = crate::turn(module_path!());
    let Some(sink) = sluice_mailservers::SmtpSink::start() else {
        return;
    };
    let (_dir, mut milter) = started(&[]);
    // The deploy snippet, pointed at this milter.
    let snippet =
        std::fs::read_to_string(sluice_tests::workspace_root().join("deploy/milter/main.cf"))
            .unwrap()
            .replace(
                "inet:127.0.0.1:8891",
                &format!("inet:127.0.0.1:{}", milter.port),
            );
    let Some(postfix) = sluice_mailservers::Postfix::start(&format!(
        "relay_domains = example.com drop.example\nrelayhost = [127.0.0.1]:{}\n{snippet}",
        sink.port
    )) else {
        return;
    };
    let from = "someone@sender.example";
    // To an alias: relayed to the sink for alice, tagged, with the banner.
    let replies = smtp_send(
        postfix.port,
        from,
        &["info@example.com"],
        &message("through-postfix", ""),
    );
    assert!(
        replies.last().unwrap().starts_with("250 "),
        "{replies:?}\n{}",
        postfix.log()
    );
    let got = wait_for("the relayed message", || sink.received().pop());
    assert_eq!(got.recipients, ["alice@example.com"], "{got:?}");
    let data = text(&got.data);
    assert!(
        data.contains("Subject: [EXT] through-postfix\r\n"),
        "{data}"
    );
    assert!(data.contains("External sender: be careful."), "{data}");
    assert!(data.contains("Hello through-postfix."), "{data}");
    assert!(data.contains("by mx.example.com (Postfix)"), "{data}");

    // A rule's bounce: the SMTP client hears the rule's 5xx at end of DATA, nothing is sent.
    let replies = smtp_send(
        postfix.port,
        from,
        &["nobody@example.com"],
        &message("bounced", ""),
    );
    let last = replies.last().unwrap();
    assert!(last.starts_with("550 5.1.1 "), "{replies:?}");
    assert!(last.contains("no such user"), "{last}");
    // A second domain's recipient in the same transaction: 452 at RCPT, the first goes on.
    let replies = smtp_send(
        postfix.port,
        from,
        &["alice@example.com", "x@drop.example"],
        &message("two-domains", ""),
    );
    assert!(replies[2].starts_with("452 4.5.3 "), "{replies:?}");
    assert!(replies[3].starts_with("250 "), "{replies:?}");
    wait_for("the second relayed message", || {
        (sink.received().len() == 2).then_some(())
    });

    // Sluice gone: Postfix applies milter_default_action (tempfail), nothing is lost.
    let _ = milter.child.kill();
    let _ = milter.child.wait();
    let replies = smtp_send(
        postfix.port,
        from,
        &["alice@example.com"],
        &message("no-milter", ""),
    );
    assert!(replies.iter().any(|r| r.starts_with("451 ")), "{replies:?}");
    assert_eq!(sink.received().len(), 2);
}

/// The outbound chain of the outbound role's config: disclaimer, subject tag, internal
/// `Received` removed, executables refused, a bcc to compliance.
fn write_outbound_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[outbound]]
name = "example.com"
[[outbound.step]]
plugin = "{attachments}"
config = {{ refuse_extensions = ["exe", "js", "vbs"], action = "refuse" }}
[[outbound.step]]
plugin = "{headers}"
config = {{ remove = ["Received"] }}
[[outbound.step]]
plugin = "{tag}"
config = {{ tag = "[EXT]", internal_domains = ["example.com"] }}
[[outbound.step]]
plugin = "{banner}"
config = {{ disclaimer = {{ text = "Confidential: meant for its addressees only.", html = "<p>Confidential: meant for its addressees only.</p>" }} }}
[[outbound.step]]
plugin = "{bcc}"
config = {{ to = ["compliance@example.com"] }}
"#,
            attachments = rule("attachments").display(),
            headers = rule("headers").display(),
            tag = rule("subject-tag").display(),
            banner = rule("banner").display(),
            bcc = rule("bcc").display(),
        ),
    )
    .unwrap();
    path
}

/// What a user's mail client submits: text and HTML, with the client's own `Received`.
fn submitted(subject: &str, attachment: Option<&str>) -> Vec<u8> {
    let alternative = "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee you on Friday.\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>See you on Friday.</p></body></html>\r\n--alt--\r\n";
    let body = match attachment {
        None => alternative.to_string(),
        Some(name) => format!(
            "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n{alternative}\
             --mix\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--mix--\r\n"
        ),
    };
    format!(
        "Received: from [192.168.1.23] by laptop.office.example.com; Tue, 2 Jan 2024 11:00:00 +0000\r\n\
         From: Alice <alice@example.com>\r\nTo: partner@partner.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\nMIME-Version: 1.0\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn milter_runs_the_outbound_chain_for_mail_submitted_with_auth_in_a_real_postfix() {
    let _turn = crate::turn(module_path!());
    let Some(sink) = sluice_mailservers::SmtpSink::start() else {
        return;
    };
    // Dovecot's auth service answers Postfix's SASL, on a socket Postfix's smtpd (user
    // postfix) can reach.
    let auth_dir = tempfile::Builder::new()
        .prefix("sluice-auth")
        .tempdir_in("/tmp")
        .unwrap();
    let chmod = Command::new("chmod")
        .arg("755")
        .arg(auth_dir.path())
        .status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let socket = auth_dir.path().join("auth");
    let Some(dovecot) = sluice_mailservers::Dovecot::start_with(
        &["alice@example.com"],
        &format!(
            "service auth {{\n  unix_listener {} {{\n    mode = 0666\n  }}\n}}\n",
            socket.display()
        ),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_outbound_config(dir.path());
    let milter = Milter::start(&config, &dir.path().join("cache"), &[]);
    // The deploy snippet of the outbound role, pointed at this milter, this auth socket and
    // the loopback sink instead of SES. The replaced keys are taken out of the snippet rather
    // than repeated: every Postfix process warns about a repeated key at start, and a flood
    // of such warnings can fill postlogd's socket while postlogd itself is writing one to
    // it (seen here: `postfix stop` hung on that full socket).
    let overrides = [
        ("smtpd_sasl_path", socket.display().to_string()),
        ("relayhost", format!("[127.0.0.1]:{}", sink.port)),
        ("smtp_sasl_auth_enable", "no".to_string()),
        ("smtp_tls_security_level", "none".to_string()),
    ];
    let snippet = std::fs::read_to_string(
        sluice_tests::workspace_root().join("deploy/self-hosted/postfix-outbound.cf"),
    )
    .unwrap()
    .replace(
        "inet:127.0.0.1:8891",
        &format!("inet:127.0.0.1:{}", milter.port),
    );
    let mut main_cf: String = snippet
        .lines()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            !overrides.iter().any(|(k, _)| *k == key)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    for (key, value) in &overrides {
        main_cf.push_str(&format!("{key} = {value}\n"));
    }
    let Some(postfix) = sluice_mailservers::Postfix::start(&main_cf) else {
        return;
    };
    let alice = Some(("alice@example.com", "pass"));
    let started = std::time::Instant::now();
    let replies = smtp_submit(
        postfix.port,
        alice,
        "alice@example.com",
        &["partner@partner.test"],
        &submitted("offer", None),
    );
    let submit_ms = started.elapsed().as_millis();
    assert!(
        replies.last().unwrap().starts_with("250 "),
        "{replies:?}\n{}\n{}",
        postfix.log(),
        dovecot.log()
    );
    let got = wait_for("the relayed outbound message", || {
        let all = sink.received();
        let mut rcpts: Vec<String> = all.iter().flat_map(|r| r.recipients.clone()).collect();
        rcpts.sort();
        (rcpts.len() == 2).then_some((all, rcpts))
    });
    let (messages, rcpts) = got;
    // The bcc: the compliance address got the same message, added to the envelope.
    assert_eq!(rcpts, ["compliance@example.com", "partner@partner.test"]);
    for m in &messages {
        let data = text(&m.data);
        // The disclaimer at the bottom of the text and of the HTML part.
        let plain_at = data.find("See you on Friday.\r\n").unwrap();
        let disclaimer_at = data[plain_at..]
            .find("Confidential: meant for its addressees only.")
            .map(|i| i + plain_at);
        assert!(disclaimer_at.is_some(), "{data}");
        assert!(
            data.contains("<p>Confidential: meant for its addressees only.</p>\r\n</body>")
                || data.contains("<p>Confidential: meant for its addressees only.</p></body>"),
            "{data}"
        );
        // An external recipient: the subject is tagged.
        assert!(data.contains("Subject: [EXT] offer\r\n"), "{data}");
        // The client's internal hop is gone. Postfix keeps the field it writes for this hop
        // (`with ESMTPA`) whatever a milter asks: the only `Received` left (see the snippet's
        // header_checks note for hiding it).
        assert!(!data.contains("laptop.office.example.com"), "{data}");
        assert_eq!(data.matches("Received:").count(), 1, "{data}");
        assert!(
            data.contains("by mx.example.com (Postfix) with ESMTPA"),
            "{data}"
        );
        assert!(!data.contains("Bcc"), "{data}");
    }

    // An executable attachment: the user's client hears 550 5.7.1 at the end of DATA, and
    // nothing is relayed.
    let replies = smtp_submit(
        postfix.port,
        alice,
        "alice@example.com",
        &["partner@partner.test"],
        &submitted("tool", Some("invoice.pdf.exe")),
    );
    let last = replies.last().unwrap();
    assert!(last.starts_with("550 5.7.1 "), "{replies:?}");
    assert!(last.contains("invoice.pdf.exe"), "{last}");

    // Without AUTH (a loopback client Postfix lets relay) the message is received mail: no
    // outbound chain, so no disclaimer, no tag, no bcc.
    let replies = smtp_send(
        postfix.port,
        "alice@example.com",
        &["partner@partner.test"],
        &submitted("unauthenticated", None),
    );
    assert!(replies.last().unwrap().starts_with("250 "), "{replies:?}");
    let plain = wait_for("the unauthenticated message", || {
        sink.received()
            .into_iter()
            .find(|r| text(&r.data).contains("Subject: unauthenticated"))
    });
    assert_eq!(plain.recipients, ["partner@partner.test"]);
    assert!(
        !text(&plain.data).contains("Confidential"),
        "{}",
        text(&plain.data)
    );
    let total: usize = sink.received().iter().map(|r| r.recipients.len()).sum();
    assert_eq!(total, 3, "the refused message reached nobody");
    eprintln!("outbound: submit with AUTH through Postfix and the milter took {submit_ms} ms");
}

/// The `SMFIR_REPLBODY` chunks of an answer.
fn body_chunks(answer: &Packets) -> Vec<&Vec<u8>> {
    answer
        .iter()
        .filter(|(c, _)| *c == b'b')
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn milter_handles_large_bodies_many_headers_aborts_and_the_connection_limit() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let listen = format!("unix:{}", socket.display());
    // Set in the config's [milter] section, not by flags.
    let (_config_dir, milter) = started_with(
        &format!(
            "[milter]\nlisten = {listen:?}\nmax_connections = 1\ntrusted_authserv_id = \"mx.example.com\"\n"
        ),
        &[],
    );
    assert_eq!(milter.listening, listen);
    let mut mta = milter.connect();
    mta.open();

    // Over the limit: negotiation, then 421 to every command.
    let mut second = milter.connect();
    let mut neg = Vec::new();
    for w in [6u32, 0x1ff, 0] {
        neg.extend_from_slice(&w.to_be_bytes());
    }
    assert_eq!(second.ask(b'O', &neg)[0].0, b'O');
    let refused = second.ask(b'C', b"host\0U");
    assert!(
        reply(&refused).unwrap().starts_with("421 4.3.2 "),
        "{refused:?}"
    );
    drop(second);

    // 300 headers and a 300 KB body in 5 chunks: the banner comes back as a new body in
    // chunks of at most 65535 bytes, the original body whole inside it.
    let many: String = (0..300).map(|i| format!("X-Many-{i}: v{i}\r\n")).collect();
    let lines: String = (0..6000)
        .map(|i| format!("line {i:05} of a long body......\r\n"))
        .collect();
    let mut big = message("large", &many);
    big.extend_from_slice(lines.as_bytes());
    let t = mta.transaction("someone@sender.example", &["alice@example.com"], &big);
    let chunks = body_chunks(&t.end);
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.len() <= 65535));
    let body = text(&chunks.into_iter().flatten().copied().collect::<Vec<u8>>());
    assert!(
        body.starts_with("External sender: be careful."),
        "{}",
        &body[..200]
    );
    assert!(body.contains(&lines), "the original body is kept whole");
    assert_eq!(t.end.last().unwrap().0, b'c');

    // An abort mid-message: the next transaction starts clean.
    mta.ask(b'M', b"<someone@sender.example>\0");
    mta.ask(b'R', b"<nobody@example.com>\0");
    mta.ask(b'L', b"Subject\0aborted\0");
    mta.send(b'A', b"");
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("after-abort", ""),
    );
    assert!(fields(&t.end, b'm', 4).contains(&("Subject".into(), "[EXT] after-abort".into())));

    // No end-of-headers step (an MTA that negotiated it away): the body still follows the
    // headers.
    mta.ask(b'M', b"<someone@sender.example>\0");
    mta.ask(b'R', b"<alice@example.com>\0");
    mta.ask(b'L', b"Subject\0no-eoh\0");
    mta.ask(b'B', b"Hello.\r\n");
    let end = mta.ask(b'E', b"");
    let body = text(
        &body_chunks(&end)
            .into_iter()
            .flatten()
            .copied()
            .collect::<Vec<u8>>(),
    );
    assert!(body.ends_with("\r\nHello.\r\n"), "{body:?}");

    // Gone without QUIT: its slot is free again.
    drop(mta);
    wait_for("a free slot", || {
        let mut next = milter.connect();
        let answer = next.ask(b'O', &neg);
        (answer[0].0 == b'O' && next.ask(b'C', b"host\0U") == [(b'c', vec![])]).then_some(())
    });
}

/// The milter process's peak resident memory so far (VmHWM), in bytes.
pub(crate) fn peak_rss(milter: &Milter) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", milter.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A message of about `size` bytes of plain text with these extra headers.
fn large(subject: &str, headers: &str, size: usize) -> Vec<u8> {
    let line = "a line of a large body, long enough to look like text..........\r\n";
    let mut big = message(subject, headers);
    while big.len() < size {
        big.extend_from_slice(line.as_bytes());
    }
    big
}

#[test]
fn milter_memory_for_a_25_mb_message_is_bounded() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = started(&[]);
    let mut mta = milter.connect();
    mta.open();
    // Warm: the engine, the instances and the runtime's threads are in the baseline.
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("warm", ""),
    );
    assert_eq!(t.end.last().unwrap().0, b'c');
    let size = 25 * 1024 * 1024;
    let before = peak_rss(&milter);
    // Refused by a rule before any edit: receiving, parsing and the chain.
    let rejected = large(
        "large-rejected",
        "Authentication-Results: mx.example.com; dmarc=fail (p=reject)\r\n",
        size,
    );
    let started = std::time::Instant::now();
    let t = mta.transaction("someone@sender.example", &["alice@example.com"], &rejected);
    let refused_ms = started.elapsed().as_millis();
    assert!(reply(&t.end).unwrap().starts_with("550 5.7.1"));
    let unedited = peak_rss(&milter).saturating_sub(before) as f64 / size as f64;
    // The banner: the edit engine's copy, and the whole body back to the MTA.
    let started = std::time::Instant::now();
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &large("large", "", size),
    );
    let edited_ms = started.elapsed().as_millis();
    let replaced: usize = body_chunks(&t.end).iter().map(|c| c.len()).sum();
    assert!(replaced > size - 1024, "{replaced}");
    let edited = peak_rss(&milter).saturating_sub(before) as f64 / size as f64;
    println!(
        "25 MB message through the milter (debug build): peak RSS over the warm baseline \
         {unedited:.2}x the message when a rule refuses it ({refused_ms} ms), \
         {edited:.2}x with a banner edit and REPLBODY ({edited_ms} ms)"
    );
    assert!(unedited <= 3.0, "receiving and deciding: {unedited:.2}x");
    // The original, the edit (the banner's text becomes the new body in place, but the edit
    // engine's checks read input and output: 2.89x allocated beside the original, see
    // host/mail/tests/edit_memory.rs) and what the allocator keeps: 4.35x measured, above
    // the 3x goal (README "Not done yet"). A guard against it growing.
    assert!(edited <= 5.0, "with a banner: {edited:.2}x");
}

/// `n` messages to alice@ through a Postfix on loopback relaying to a sink, one SMTP
/// connection each, `clients` at a time: messages per second until the sink has all of them.
fn postfix_rate(milter_port: Option<u16>, n: usize, clients: usize) -> f64 {
    let sink = sluice_mailservers::SmtpSink::start().unwrap();
    let milter = milter_port
        .map(|p| format!("smtpd_milters = inet:127.0.0.1:{p}\nmilter_protocol = 6\n"))
        .unwrap_or_default();
    let postfix = sluice_mailservers::Postfix::start(&format!(
        "relay_domains = example.com\nrelayhost = [127.0.0.1]:{}\n{milter}",
        sink.port
    ))
    .unwrap();
    let port = postfix.port;
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            s.spawn(move || {
                for i in (c..n).step_by(clients) {
                    let subject = format!("rate-{i}");
                    let r = smtp_send(
                        port,
                        "someone@sender.example",
                        &["alice@example.com"],
                        &message(&subject, ""),
                    );
                    assert!(r.last().unwrap().starts_with("250"), "{r:?}");
                }
            });
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while sink.received().len() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.received().len(), n, "{}", postfix.log());
    n as f64 / started.elapsed().as_secs_f64()
}

/// Figures for the README, not a check: `cargo test -p sluice --test all milter_figures --
/// --ignored --nocapture`. The milter's own round trip per message (p50/p99, the whole
/// transaction from MAIL to the end-of-message answer on one connection) and messages per
/// second through Postfix with and without it.
#[test]
#[ignore]
fn milter_figures() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = started(&[]);
    let mut mta = milter.connect();
    mta.open();
    let raw = message("timed", "");
    for _ in 0..20 {
        mta.transaction("someone@sender.example", &["alice@example.com"], &raw);
    }
    let mut times: Vec<Duration> = (0..500)
        .map(|_| {
            let started = std::time::Instant::now();
            let t = mta.transaction("someone@sender.example", &["alice@example.com"], &raw);
            assert_eq!(t.end.last().unwrap().0, b'c');
            started.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "milter transaction (subject-tag + banner + junk + alias, {} byte message): p50 {:?}, p99 {:?}",
        raw.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    drop(mta);
    let (n, clients) = (300, 4);
    let with = postfix_rate(Some(milter.port), n, clients);
    let without = postfix_rate(None, n, clients);
    println!(
        "Postfix on loopback, {n} messages, {clients} SMTP clients: {with:.0} msg/s with sluice milter, {without:.0} msg/s without"
    );
}

#[test]
fn milter_file_into_reaches_the_folder_through_postfix_lmtp_and_the_deploy_sieve() {
    let _turn = crate::turn(module_path!());
    let root = sluice_tests::workspace_root().join("deploy/milter");
    let sieve_conf = std::fs::read_to_string(root.join("90-sluice-sieve.conf"))
        .unwrap()
        .replace("/etc/dovecot/sieve/", "{root}/");
    let Some(dovecot) =
        sluice_mailservers::Dovecot::start_with(&["alice@example.com"], &sieve_conf)
    else {
        return;
    };
    if !Path::new("/usr/lib/dovecot/modules/lib90_sieve_plugin.so").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dovecot-sieve is not installed"
        );
        eprintln!("dovecot-sieve is not installed (./test.sh setup installs it): skipping");
        return;
    }
    std::fs::copy(
        root.join("sluice-folder.sieve"),
        dovecot.root_dir().join("sluice-folder.sieve"),
    )
    .unwrap();
    let (_dir, milter) = started(&[]);
    let snippet = std::fs::read_to_string(root.join("main.cf"))
        .unwrap()
        .replace(
            "inet:127.0.0.1:8891",
            &format!("inet:127.0.0.1:{}", milter.port),
        );
    let Some(postfix) = sluice_mailservers::Postfix::start(&format!(
        "relay_domains = example.com\nrelay_transport = lmtp:inet:127.0.0.1:{}\n{snippet}",
        dovecot.lmtp_port
    )) else {
        return;
    };
    let from = "someone@sender.example";
    // DMARC failed with p=quarantine, said by our MTA: the junk rule files it into Junk.
    let quarantined = message(
        "quarantined",
        "Authentication-Results: mx.example.com; dmarc=fail (p=quarantine) header.from=sender.example\r\n",
    );
    let r = smtp_send(postfix.port, from, &["alice@example.com"], &quarantined);
    assert!(r.last().unwrap().starts_with("250"), "{r:?}");
    // A sender's own folder header is removed: INBOX.
    let forged = message("forged-folder", "X-Sluice-Folder: Junk\r\n");
    let r = smtp_send(postfix.port, from, &["alice@example.com"], &forged);
    assert!(r.last().unwrap().starts_with("250"), "{r:?}");
    let holding = |folder: &str, subject: &str| {
        dovecot
            .fetch("alice@example.com", folder)
            .iter()
            .filter(|m| text(m).contains(&format!("Subject: [EXT] {subject}\r\n")))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while holding("Junk", "quarantined") + holding("INBOX", "forged-folder") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not filed as expected; Postfix:\n{}\nDovecot:\n{}",
            postfix.log(),
            dovecot.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(holding("INBOX", "quarantined"), 0, "{}", dovecot.log());
    assert_eq!(holding("Junk", "forged-folder"), 0);
    let junk = text(&dovecot.fetch("alice@example.com", "Junk")[0]);
    assert!(junk.contains("X-Sluice-Folder: Junk\r\n"), "{junk}");
    let inbox = dovecot.fetch("alice@example.com", "INBOX");
    assert!(
        !text(&inbox[0]).contains("X-Sluice-Folder"),
        "the sender's header went"
    );
}

#[test]
fn milter_on_sigterm_finishes_the_message_in_progress_and_refuses_new_ones() {
    let _turn = crate::turn(module_path!());
    let (_dir, mut milter) = started(&["--grace", "20"]);
    let mut mta = milter.connect();
    mta.open();
    mta.ask(b'M', b"<someone@sender.example>\0");
    mta.ask(b'R', b"<alice@example.com>\0");
    mta.ask(b'L', b"Subject\0in-progress\0");
    mta.ask(b'N', b"");
    let pid = milter.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    // The message in progress gets its real answer.
    mta.ask(b'B', b"Hello.\r\n");
    let end = mta.ask(b'E', b"");
    assert!(
        fields(&end, b'm', 4).contains(&("Subject".into(), "[EXT] in-progress".into())),
        "{end:?}"
    );
    // A new transaction on the same connection: 451, to be retried.
    let refused = mta.ask(b'M', b"<someone@sender.example>\0");
    assert!(
        reply(&refused).unwrap().starts_with("451 4.3.2 "),
        "{refused:?}"
    );
    // New connections are no longer accepted.
    assert!(TcpStream::connect(("127.0.0.1", milter.port)).is_err());
    mta.send(b'Q', b"");
    let status = milter.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn milter_closes_a_connection_whose_mta_stays_silent_past_the_command_timeout() {
    let _turn = crate::turn(module_path!());
    let (_dir, milter) = started(&["--command-timeout", "1"]);
    let mut idle = milter.connect();
    idle.open();
    let started = std::time::Instant::now();
    assert!(idle.recv().is_none(), "still open");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // Others are served as before.
    let mut mta = milter.connect();
    mta.open();
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("after-timeout", ""),
    );
    assert_eq!(t.end.last().unwrap().0, b'c');
}

#[test]
fn milter_50_connections_sending_large_bodies_stay_within_the_buffer_budget() {
    let _turn = crate::turn(module_path!());
    let budget = 20 * 1024 * 1024;
    let (_dir, milter) = started(&["--max-buffered-bytes", &budget.to_string()]);
    let mut warm = milter.connect();
    warm.open();
    warm.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("warm", ""),
    );
    let before = peak_rss(&milter);
    let body = large("concurrent", "", 2 * 1024 * 1024);
    let barrier = std::sync::Barrier::new(50);
    let answers: Vec<u8> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let mut mta = milter.connect();
                    mta.open();
                    barrier.wait();
                    let t =
                        mta.transaction("someone@sender.example", &["alice@example.com"], &body);
                    match reply(&t.end) {
                        Some(r) if r.starts_with("452 4.3.1 ") => b'4',
                        Some(r) => panic!("{r}"),
                        None => t.end.last().unwrap().0,
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let served = answers.iter().filter(|a| **a == b'c').count();
    let deferred = answers.iter().filter(|a| **a == b'4').count();
    let grew = peak_rss(&milter).saturating_sub(before);
    println!(
        "50 connections x 2 MB with a {} MB budget: {served} served, {deferred} told 452 4.3.1; peak RSS +{} MB",
        budget / 1024 / 1024,
        grew / 1024 / 1024
    );
    assert_eq!(served + deferred, 50, "{answers:?}");
    assert!(
        served >= 1 && deferred >= 1,
        "{served} served, {deferred} deferred"
    );
    // Raw bytes within the budget; each served message's edit holds a few copies of its own.
    assert!(
        grew < 8 * budget as u64,
        "peak grew {} MB",
        grew / 1024 / 1024
    );
    // Still serving, with its budget back.
    let t = warm.transaction("someone@sender.example", &["alice@example.com"], &body);
    assert_eq!(t.end.last().unwrap().0, b'c');
}

/// The daemon's config: S3 in and S3 mailboxes for the queue, `[milter]` on a free loopback
/// port, and example.com tagging external subjects with `tag`.
fn write_daemon_config(path: &Path, tag: &str) {
    let config = format!(
        r#"
[inbound]
bucket = "inbound"
prefix = "incoming/"

[store]
kind = "s3"
bucket = "mail"
prefix = "mailboxes"

[milter]
listen = "inet:127.0.0.1:0"
grace_s = 20

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{alias}"
config = {{ mailboxes = ["alice"], aliases = {{ info = "alice" }}, unknown = "bounce" }}
[[domain.step]]
plugin = "{tag_rule}"
config = {{ tag = "{tag}", internal_domains = ["example.com"] }}
"#,
        alias = rule("alias").display(),
        tag_rule = rule("subject-tag").display(),
    );
    std::fs::write(path, config).unwrap();
}

/// The subject the milter's end-of-message answer sets, if it changes it.
fn changed_subject(end: &Packets) -> Option<String> {
    fields(end, b'm', 4)
        .into_iter()
        .find(|(name, _)| name == "Subject")
        .map(|(_, value)| value)
}

/// `sluice daemon` with these flags and environment, its config's `[milter]` on a free port:
/// the milter it serves (the daemon is killed if the test fails before stopping it) and a
/// thread collecting its log.
fn start_daemon(
    config: &Path,
    flags: &[&str],
    env: Vec<(&'static str, String)>,
) -> (Milter, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["daemon", "--config", config.to_str().unwrap()])
        .args(flags)
        .envs(env)
        .env("SLUICE_CACHE_DIR", config.with_file_name("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(listening) = line
        .trim()
        .strip_prefix("sluice daemon: milter listening on ")
        .map(str::to_string)
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no listening line: {line:?}\n{}", log.join().unwrap());
    };
    let port = listening.rsplit(':').next().unwrap().parse().unwrap();
    let daemon = Milter {
        child,
        port,
        listening,
    };
    (daemon, log)
}

fn sigterm(child: &Child) {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// `sluice daemon` with a queue and `[milter] listen` serves both doors from one pipeline:
/// a milter transaction gets the rules' edits and an SQS message is stored with them; a
/// config edit picked up by the daemon's reload changes what the milter answers; SIGTERM
/// closes the milter listener at once, lets the transaction in progress finish (with the
/// reloaded rules), and ends the daemon with exit 0.
#[test]
fn daemon_serves_the_milter_beside_the_queue_on_one_reloaded_config() {
    use crate::common::{notification, World};
    let _turn = crate::turn(module_path!());
    let rt = crate::common::rt();
    let moto = sluice_tests::Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    write_daemon_config(&config, "[EXT]");
    let (mut daemon, log) = start_daemon(
        &config,
        &[
            "--queue",
            &world.queue,
            "--wait",
            "1",
            "--reload-seconds",
            "1",
        ],
        moto.env(),
    );
    let mut mta = daemon.connect();
    mta.open();
    let t = mta.transaction(
        "someone@sender.example",
        &["info@example.com"],
        &message("first", ""),
    );
    assert_eq!(
        changed_subject(&t.end).as_deref(),
        Some("[EXT] first"),
        "{:?}",
        t.end
    );
    assert_eq!(fields(&t.end, b'+', 0)[0].0, "<alice@example.com>");

    world.put_message(&rt, "m-queue", "alice@example.com");
    world.enqueue(
        &rt,
        &notification("m-queue", &["alice@example.com"], "PASS", "inbound"),
    );
    let stored = wait_for("the queued message in alice's mailbox", || {
        world.get(
            &rt,
            "s3://mail/mailboxes/example.com/alice/INBOX/m-queue.eml",
        )
    });
    assert!(
        text(&stored).contains("Subject: [EXT] Quarterly numbers m-queue"),
        "{}",
        text(&stored)
    );

    write_daemon_config(&config, "[OUTSIDE]");
    let mut n = 0;
    wait_for("the reloaded tag in the milter's answer", || {
        n += 1;
        let subject = format!("again-{n}");
        let t = mta.transaction(
            "someone@sender.example",
            &["alice@example.com"],
            &message(&subject, ""),
        );
        (changed_subject(&t.end)? == format!("[OUTSIDE] {subject}")).then_some(())
    });

    // A transaction in progress at SIGTERM finishes with the rules' edits.
    mta.ask(b'M', b"<someone@sender.example>\0");
    mta.ask(b'R', b"<alice@example.com>\0");
    mta.ask(b'L', b"Subject\0in-progress\0");
    mta.ask(b'N', b"");
    sigterm(&daemon.child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(("127.0.0.1", daemon.port)).is_err(),
        "the milter listener is closed at once"
    );
    mta.ask(b'B', b"Hello.\r\n");
    let end = mta.ask(b'E', b"");
    assert_eq!(
        changed_subject(&end).as_deref(),
        Some("[OUTSIDE] in-progress"),
        "{end:?}"
    );
    let refused = mta.ask(b'M', b"<someone@sender.example>\0");
    assert!(
        reply(&refused).unwrap().starts_with("451 4.3.2 "),
        "{refused:?}"
    );
    mta.send(b'Q', b"");
    let status = daemon.child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    sluice_tests::assert_no_full_address("sluice daemon", &log);
    for expected in ["config reloaded", "milter stopped", "daemon stopped"] {
        assert!(log.contains(expected), "no {expected:?} in:\n{log}");
    }
    assert!(log.contains("handled=1"), "{log}");
}

/// Without `--queue`, `sluice daemon` serves only the milter of its `[milter]` section (no
/// AWS needed) and stops on SIGTERM; with neither a queue nor `[milter] listen` it refuses to
/// start, saying what is missing.
#[test]
fn daemon_without_a_queue_serves_only_the_milter_and_without_either_refuses_to_start() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[milter]\nlisten = \"inet:127.0.0.1:0\"\n");
    let no_aws = vec![
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let (mut daemon, log) = start_daemon(&config, &[], no_aws.clone());
    let mut mta = daemon.connect();
    mta.open();
    let t = mta.transaction(
        "someone@sender.example",
        &["alice@example.com"],
        &message("alone", ""),
    );
    assert_eq!(
        changed_subject(&t.end).as_deref(),
        Some("[EXT] alone"),
        "{:?}",
        t.end
    );
    mta.send(b'Q', b"");
    sigterm(&daemon.child);
    let status = daemon.child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("milter stopped"), "{log}");
    assert!(!log.contains("consuming the queue"), "{log}");

    let bare = write_config(dir.path(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["daemon", "--config", bare.to_str().unwrap()])
        .envs(no_aws)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("nothing to serve") && err.contains("[milter] listen"),
        "{err}"
    );
}
