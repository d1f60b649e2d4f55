//! One MTA connection's state: negotiation, then SMTP transactions, one at a time.
//!
//! The session is synchronous and knows nothing of sockets or the pipeline: it takes a
//! [`Command`] and says what to do ([`Step`]). At end of message it hands back the
//! [`Arrival`] to decide; the server runs the chains and gives the outcome to
//! [`Session::decided`], which makes the answer. So the whole protocol logic is testable
//! without a network or a rule engine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use sluice_engine::Flow;
use sluice_engine::Verdicts;
use sluice_inbound::door::{unknown_verdicts, MessageContent, RefuseBy};
use sluice_inbound::{Answer, Arrival, Decided, HandleError};

use crate::answer::{self, reply, Recipient};
use crate::codec::{actions, steps, ClientAddress, Command, Response, PROTOCOL_VERSION};
use crate::verdicts::{Scanned, ScannerHeader, SmtpClient};

/// What to answer when the chain cannot run (a panic, an engine failure): Postfix's
/// `milter_default_action` for Sluice's own failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultAction {
    /// 451 4.3.0: the sending server keeps the message and retries.
    #[default]
    Tempfail,
    /// Let the message through unchanged (logged).
    Accept,
}

/// Which chain a recipient's domain runs (the recipient group's key): recipients of one
/// transaction must share it.
pub type GroupKey = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The message bytes all sessions of a server hold at once, against one limit: with many
/// connections sending large messages, the ones past it are told to retry (452 4.3.1)
/// instead of the process running out of memory.
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> BufferBudget {
        BufferBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `n` more bytes; `false` (nothing taken) when that would pass the limit.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What every session of a server shares.
pub struct SessionSettings {
    /// The largest message (header and body bytes as the MTA sends them) accepted.
    pub max_message_bytes: usize,
    /// The answer when the chain cannot run.
    pub default_action: DefaultAction,
    /// Read SPF/DKIM/DMARC from the `Authentication-Results` header of this authserv-id.
    pub trusted_authserv_id: Option<String>,
    /// The group key of a recipient address.
    pub group_key: GroupKey,
    /// Set on SIGTERM: new transactions are refused with 4xx; one in progress finishes.
    pub stopping: Arc<AtomicBool>,
    /// The bytes all sessions may hold at once.
    pub budget: Arc<BufferBudget>,
    /// `{daemon_name}` values (Postfix's `milter_macro_daemon_name`) whose transactions are
    /// outbound without SMTP AUTH, e.g. `ORIGINATING` (see [`Session::flow`]).
    pub outbound_daemon_names: Vec<String>,
    /// Scanner headers whose spam/virus verdicts are trusted.
    pub scanners: Vec<ScannerHeader>,
}

/// What the server does after a command.
#[derive(Debug)]
pub enum Step {
    /// Send these packets.
    Reply(Vec<Response>),
    /// Nothing to send (macros, abort).
    Silent,
    /// Run the chains for this arrival, then call [`Session::decided`].
    Decide(Box<Arrival>),
    /// Close the connection.
    Close,
}

/// One connection's state.
pub struct Session {
    settings: Arc<SessionSettings>,
    /// Over the connection limit: every command that wants an answer gets a tempfail.
    refuse: bool,
    /// The `SMFIF_*` actions the MTA allowed.
    allowed: u32,
    macros: BTreeMap<String, String>,
    mail_from: Option<String>,
    rcpts: Vec<Recipient>,
    group: Option<String>,
    /// The message as the MTA streams it: header fields, the blank line, the body.
    raw: Vec<u8>,
    in_body: bool,
    /// Bytes of `raw` taken from the shared budget (given back when the transaction ends).
    held: usize,
    /// Set once the message passed the size limit or the budget: the rest is not kept, and
    /// every later command of the transaction gets this answer.
    refused: Option<Response>,
    /// The SMTP client, from CONNECT and HELO (the macros are added when asked for).
    client: SmtpClient,
    /// The transaction's spam/virus verdicts from the configured scanners' headers.
    scanned: Scanned,
}

/// The actions Sluice asks for: header, body and recipient edits.
const WANTED_ACTIONS: u32 = actions::ADD_HEADERS
    | actions::CHANGE_HEADERS
    | actions::CHANGE_BODY
    | actions::ADD_RCPT
    | actions::DELETE_RCPT;

/// The steps Sluice does not need (it answers them anyway if they come). HELO is wanted:
/// SPF checks the HELO name (and a null sender as postmaster@ it).
const UNNEEDED_STEPS: u32 = steps::NO_UNKNOWN | steps::NO_DATA;

impl Session {
    /// A new connection's session; `refuse`: over the connection limit.
    pub fn new(settings: Arc<SessionSettings>, refuse: bool) -> Session {
        Session {
            settings,
            refuse,
            allowed: 0,
            macros: BTreeMap::new(),
            mail_from: None,
            rcpts: Vec::new(),
            group: None,
            raw: Vec::new(),
            in_body: false,
            held: 0,
            refused: None,
            client: SmtpClient::default(),
            scanned: Scanned::default(),
        }
    }

    /// The step for one command.
    pub fn command(&mut self, command: Command) -> Step {
        if self.refuse && command.wants_reply() && !matches!(command, Command::OptNeg { .. }) {
            return Step::Reply(vec![reply(
                421,
                "4.3.2",
                "too many connections, try again later",
            )]);
        }
        match command {
            Command::OptNeg {
                actions, protocol, ..
            } => {
                self.allowed = actions & WANTED_ACTIONS;
                if self.allowed != WANTED_ACTIONS {
                    tracing::warn!(
                        offered = actions,
                        "the MTA does not allow every milter action Sluice may need; answers needing the others get the default action"
                    );
                }
                return Step::Reply(vec![Response::OptNeg {
                    version: PROTOCOL_VERSION,
                    actions: self.allowed,
                    protocol: protocol & UNNEEDED_STEPS,
                }]);
            }
            Command::Macro { macros, .. } => {
                self.macros.extend(macros);
                return Step::Silent;
            }
            Command::Mail(args) => return self.mail(&args[0]),
            Command::Rcpt(args) => return self.rcpt(&args[0]),
            Command::Header { .. } if self.refused.is_some() => return self.check_size(),
            Command::Header { name, value } => {
                self.scanned.header(&self.settings.scanners, &name, &value);
                self.raw.extend_from_slice(name.as_bytes());
                self.raw.extend_from_slice(b": ");
                // Folded lines come with bare LFs: the message has CRLF line ends.
                for (i, line) in value.split(|&b| b == b'\n').enumerate() {
                    if i > 0 {
                        self.raw.extend_from_slice(b"\r\n");
                    }
                    self.raw
                        .extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                }
                self.raw.extend_from_slice(b"\r\n");
                return self.check_size();
            }
            Command::EndOfHeaders => self.start_body(),
            Command::Body(chunk) => {
                self.start_body();
                if self.refused.is_none() {
                    self.raw.extend_from_slice(&chunk);
                }
                return self.check_size();
            }
            Command::EndOfMessage(chunk) => {
                self.start_body();
                if self.refused.is_none() {
                    self.raw.extend_from_slice(&chunk);
                }
                if let Some(refusal) = self.over_limit() {
                    self.reset_transaction();
                    return Step::Reply(vec![refusal]);
                }
                return self.end_of_message();
            }
            Command::Abort => {
                self.reset_transaction();
                return Step::Silent;
            }
            Command::QuitNewConnection => {
                self.reset_transaction();
                self.macros.clear();
                self.client = SmtpClient::default();
                return Step::Silent;
            }
            Command::Quit => return Step::Close,
            Command::Connect { hostname, address } => self.connect(hostname, address),
            Command::Helo(name) => self.client.helo = Some(name),
            Command::Data | Command::Unknown(_) => {}
        }
        Step::Reply(vec![Response::Continue])
    }

    fn connect(&mut self, hostname: String, address: ClientAddress) {
        self.client = SmtpClient {
            hostname: Some(hostname),
            ..SmtpClient::default()
        };
        if let ClientAddress::Known {
            family: '4' | '6',
            port,
            address,
        } = address
        {
            self.client.port = Some(port);
            // Postfix writes an IPv6 client as `ipv6:2001:db8::1` in some versions.
            let bare = address
                .trim_start_matches("ipv6:")
                .trim_start_matches("IPv6:");
            self.client.ip = bare.parse().ok();
        }
    }

    /// The SMTP client as the MTA described it: CONNECT and HELO, completed from the
    /// macros (`{client_addr}`, `j`, `{auth_authen}`, `{daemon_name}`).
    pub fn client(&self) -> SmtpClient {
        let mut client = self.client.clone();
        if client.ip.is_none() {
            client.ip = self
                .macro_value("{client_addr}")
                .and_then(|a| a.parse().ok());
        }
        client.receiver = self.macro_value("j");
        client.auth_authen = self.macro_value("{auth_authen}");
        client.daemon_name = self.macro_value("{daemon_name}");
        client
    }

    fn mail(&mut self, from: &str) -> Step {
        self.reset_transaction();
        if self.settings.stopping.load(Ordering::Relaxed) {
            return Step::Reply(vec![reply(
                451,
                "4.3.2",
                "the mail filter is restarting, try again later",
            )]);
        }
        self.mail_from = Some(unbracket(from));
        Step::Reply(vec![Response::Continue])
    }

    /// A recipient whose domain runs another chain than the transaction's first recipient's
    /// is answered 452 4.5.3: the MTA delivers the accepted ones and retries it in a
    /// transaction of its own, so each message runs one domain's rules and gets one answer.
    fn rcpt(&mut self, raw: &str) -> Step {
        let address = unbracket(raw);
        // Outbound mail runs one chain (the sender's) for every recipient: no split.
        let key = if self.flow().is_outbound() {
            String::new()
        } else {
            (self.settings.group_key)(&address)
        };
        match &self.group {
            Some(group) if *group != key => {
                return Step::Reply(vec![reply(
                    452,
                    "4.5.3",
                    "one domain's rules per transaction, retry this recipient separately",
                )]);
            }
            Some(_) => {}
            None => self.group = Some(key),
        }
        self.rcpts.push(Recipient {
            raw: raw.to_string(),
            address,
        });
        Step::Reply(vec![Response::Continue])
    }

    fn start_body(&mut self) {
        if !self.in_body {
            self.in_body = true;
            self.raw.extend_from_slice(b"\r\n");
        }
    }

    fn check_size(&mut self) -> Step {
        Step::Reply(vec![self.over_limit().unwrap_or(Response::Continue)])
    }

    /// 552 5.3.4 once the message is over the size limit, 452 4.3.1 when the bytes it adds
    /// would pass the budget of all connections; what was kept is freed (the MTA ends the
    /// transaction on this reply, and an MTA that goes on sending is answered the same).
    fn over_limit(&mut self) -> Option<Response> {
        if let Some(refused) = &self.refused {
            return Some(refused.clone());
        }
        let refusal = if self.raw.len() > self.settings.max_message_bytes {
            reply(552, "5.3.4", "message too big for the mail filter")
        } else {
            let more = self.raw.len().saturating_sub(self.held);
            if more == 0 || self.settings.budget.take(more) {
                self.held += more;
                return None;
            }
            tracing::warn!(
                held = self.settings.budget.used(),
                "the mail filter holds as much mail as it may: answering 452 4.3.1"
            );
            reply(452, "4.3.1", "the mail filter is busy, try again later")
        };
        self.raw = Vec::new();
        self.release();
        self.refused = Some(refusal.clone());
        Some(refusal)
    }

    /// Gives the transaction's bytes back to the shared budget.
    fn release(&mut self) {
        self.settings
            .budget
            .give_back(std::mem::take(&mut self.held));
    }

    fn end_of_message(&mut self) -> Step {
        // Deciding makes about one more copy of the message (the edited one: a banner
        // rewrites the whole body), held until the answer is made: counted against the
        // shared budget too, so many large messages edited at once cannot exhaust memory.
        let copy = self.raw.len();
        if !self.settings.budget.take(copy) {
            tracing::warn!(
                held = self.settings.budget.used(),
                "no room in the mail filter's budget to edit this message: answering 452 4.3.1"
            );
            self.reset_transaction();
            return Step::Reply(vec![reply(
                452,
                "4.3.1",
                "the mail filter is busy, try again later",
            )]);
        }
        self.held += copy;
        let mut raw = std::mem::take(&mut self.raw);
        // The message is held until the answer: without the growth slack (a large buffer
        // shrinks in place).
        raw.shrink_to_fit();
        let digest = hex::encode(&Sha256::digest(&raw)[..16]);
        // The queue id makes the log line findable in the MTA's log; the digest keeps ids
        // of different messages apart when the MTA sends no `i` macro.
        let message_id = match self.macros.get("i") {
            Some(q) if q.bytes().all(|b| b.is_ascii_alphanumeric()) && !q.is_empty() => {
                format!("{q}-{digest}")
            }
            _ => digest,
        };
        Step::Decide(Box::new(Arrival {
            message_id,
            mail_from: self.mail_from.clone().unwrap_or_default(),
            recipients: self.rcpts.iter().map(|r| r.address.clone()).collect(),
            verdicts: Verdicts {
                spam: self.scanned.spam,
                virus: self.scanned.virus,
                ..unknown_verdicts()
            },
            received_at: 0,
            content: MessageContent::Inline(raw),
            refuse_by: RefuseBy::Reply,
            trusted_authserv_id: self.settings.trusted_authserv_id.clone(),
            flow: self.flow(),
            skip_step: None,
        }))
    }

    /// The answer at end of message for the chains' outcome; the transaction ends.
    pub fn decided(&mut self, outcome: Result<Decided, HandleError>) -> Vec<Response> {
        let answer = match outcome {
            Ok(decided) => match answer::responses(decided, &self.rcpts, self.allowed) {
                Ok(responses) => responses,
                Err(reason) => self.default_answer(&reason),
            },
            Err(e) if e.is_permanent() => match Answer::of(&Err(e)).reply() {
                Some(r) => vec![reply(r.code, &r.status, &r.text)],
                None => vec![Response::Continue],
            },
            Err(e) => self.default_answer(&e.to_string()),
        };
        self.reset_transaction();
        answer
    }

    fn default_answer(&self, reason: &str) -> Vec<Response> {
        match self.settings.default_action {
            DefaultAction::Tempfail => {
                tracing::error!(reason, "the chain cannot run: answering 451");
                vec![reply(
                    451,
                    "4.3.0",
                    "the mail filter cannot run, try again later",
                )]
            }
            DefaultAction::Accept => {
                tracing::error!(
                    reason,
                    "the chain cannot run: accepting unchanged (default_action = accept)"
                );
                vec![Response::Continue]
            }
        }
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.group = None;
        self.raw = Vec::new();
        self.in_body = false;
        self.release();
        self.refused = None;
        self.scanned = Scanned::default();
    }

    /// Mail a local user sends when the client authenticated (`{auth_authen}`, which
    /// Postfix's default `milter_mail_macros` send with MAIL) or the MTA's `{daemon_name}`
    /// is one of `[milter] outbound_daemon_names` (mail submitted without AUTH, e.g. through
    /// `sendmail` and `non_smtpd_milters`, on a host that sets `milter_macro_daemon_name`);
    /// the sending domain's `[[outbound]]` chain runs it. Anything else is received mail.
    pub fn flow(&self) -> Flow {
        // The same macros `client()` reads, through the same reading (an empty value is none).
        let login = self.macro_value("{auth_authen}");
        let daemon = self
            .macro_value("{daemon_name}")
            .is_some_and(|name| self.settings.outbound_daemon_names.contains(&name));
        if login.is_some() || daemon {
            Flow::outbound(login)
        } else {
            Flow::inbound()
        }
    }

    /// A macro's value, `None` when absent or empty (Postfix sends `{auth_authen}` empty for
    /// a client that did not authenticate).
    fn macro_value(&self, name: &str) -> Option<String> {
        self.macros.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// The MTA's queue id (macro `i`), for log lines.
    pub fn queue_id(&self) -> Option<&str> {
        self.macros.get("i").map(String::as_str)
    }
}

impl Drop for Session {
    /// A connection gone mid-message gives its bytes back.
    fn drop(&mut self) {
        self.release();
    }
}

/// `<a@b>` -> `a@b`; `<>` -> the null sender.
fn unbracket(s: &str) -> String {
    s.trim()
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s.trim())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::Verdict;

    fn settings(max: usize) -> Arc<SessionSettings> {
        Arc::new(SessionSettings {
            max_message_bytes: max,
            default_action: DefaultAction::Tempfail,
            trusted_authserv_id: None,
            group_key: Arc::new(|a: &str| {
                a.rsplit_once('@')
                    .map(|(_, d)| d.to_string())
                    .unwrap_or_default()
            }),
            stopping: Arc::new(AtomicBool::new(false)),
            budget: Arc::new(BufferBudget::new(1000)),
            outbound_daemon_names: vec!["ORIGINATING".into()],
            scanners: vec![crate::verdicts::ScannerHeader {
                name: "clamav".into(),
                verdict: crate::verdicts::ScannerVerdict::Virus,
                header: "X-Virus-Status".into(),
                fail: vec!["Infected".into()],
                pass: vec!["Clean".into()],
            }],
        })
    }

    fn replies(step: Step) -> Vec<Response> {
        match step {
            Step::Reply(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// The recipients and flow of one transaction on a connection with these macros.
    fn outbound_transaction(macros: Vec<(String, String)>) -> (Vec<Vec<Response>>, Arrival) {
        let mut s = Session::new(settings(1000), false);
        s.command(Command::Macro {
            stage: b'C',
            macros,
        });
        s.command(Command::Mail(vec!["<alice@example.com>".into()]));
        let rcpts = ["<bob@partner.test>", "<carol@example.com>"]
            .map(|r| replies(s.command(Command::Rcpt(vec![r.into()]))))
            .to_vec();
        s.command(Command::EndOfHeaders);
        let Step::Decide(arrival) = s.command(Command::EndOfMessage(b"hi\r\n".to_vec())) else {
            panic!("no decision")
        };
        (rcpts, *arrival)
    }

    #[test]
    fn authenticated_or_originating_transactions_are_outbound_and_not_split() {
        let auth = vec![("{auth_authen}".to_string(), "alice@example.com".to_string())];
        let (rcpts, arrival) = outbound_transaction(auth);
        // Both domains in one transaction: one outbound chain decides for all.
        assert_eq!(rcpts, vec![vec![Response::Continue]; 2]);
        assert_eq!(
            arrival.recipients,
            ["bob@partner.test", "carol@example.com"]
        );
        assert_eq!(
            arrival.flow,
            Flow::outbound(Some("alice@example.com".into()))
        );
        let daemon = vec![("{daemon_name}".to_string(), "ORIGINATING".to_string())];
        assert_eq!(outbound_transaction(daemon).1.flow, Flow::outbound(None));
        // An empty login (no AUTH) or another daemon name: received mail, split by domain.
        for macros in [
            vec![("{auth_authen}".to_string(), String::new())],
            vec![("{daemon_name}".to_string(), "mx.example.com".to_string())],
        ] {
            let (rcpts, arrival) = outbound_transaction(macros);
            assert!(matches!(&rcpts[1][0], Response::ReplyCode(r) if r.starts_with("452 4.5.3 ")));
            assert_eq!(arrival.flow, Flow::inbound());
        }
    }

    #[test]
    fn a_transaction_is_collected_into_an_arrival() {
        let mut s = Session::new(settings(1000), false);
        let neg = replies(s.command(Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        }));
        assert_eq!(
            neg,
            vec![Response::OptNeg {
                version: 6,
                actions: WANTED_ACTIONS,
                protocol: UNNEEDED_STEPS
            }]
        );
        assert!(matches!(
            s.command(Command::Macro {
                stage: b'E',
                macros: vec![("i".into(), "4ABC".into())]
            }),
            Step::Silent
        ));
        s.command(Command::Mail(vec!["<a@sender.test>".into()]));
        assert_eq!(
            replies(s.command(Command::Rcpt(vec!["<b@example.com>".into()]))),
            vec![Response::Continue]
        );
        let other = replies(s.command(Command::Rcpt(vec!["<c@other.test>".into()])));
        assert!(matches!(&other[0], Response::ReplyCode(r) if r.starts_with("452 4.5.3 ")));
        s.command(Command::Header {
            name: "Subject".into(),
            value: b"hi\n\tthere".to_vec(),
        });
        s.command(Command::EndOfHeaders);
        s.command(Command::Body(b"body\r\n".to_vec()));
        let Step::Decide(arrival) = s.command(Command::EndOfMessage(Vec::new())) else {
            panic!()
        };
        assert_eq!(arrival.mail_from, "a@sender.test");
        assert_eq!(arrival.recipients, ["b@example.com"]);
        assert!(arrival.message_id.starts_with("4ABC-"));
        assert_eq!(
            arrival.content,
            MessageContent::Inline(b"Subject: hi\r\n\tthere\r\n\r\nbody\r\n".to_vec())
        );
    }

    #[test]
    fn the_client_is_kept_for_spf_and_a_named_scanner_header_gives_the_virus_verdict() {
        let mut s = Session::new(settings(1000), false);
        s.command(Command::Connect {
            hostname: "mail.sender.test".into(),
            address: ClientAddress::Known {
                family: '4',
                port: 4321,
                address: "192.0.2.7".into(),
            },
        });
        s.command(Command::Helo("mail.sender.test".into()));
        s.command(Command::Macro {
            stage: b'M',
            macros: vec![
                ("j".into(), "mx.example.com".into()),
                ("{auth_authen}".into(), String::new()),
            ],
        });
        let client = s.client();
        assert_eq!(client.ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(client.helo.as_deref(), Some("mail.sender.test"));
        assert_eq!(client.receiver.as_deref(), Some("mx.example.com"));
        assert_eq!(client.auth_authen, None, "an empty macro is no login");
        let mut arrival = |virus_status: &str| {
            s.command(Command::Mail(vec!["<a@sender.test>".into()]));
            s.command(Command::Rcpt(vec!["<b@example.com>".into()]));
            s.command(Command::Header {
                name: "X-Virus-Status".into(),
                value: virus_status.as_bytes().to_vec(),
            });
            s.command(Command::Header {
                name: "X-Spam-Flag".into(),
                value: b"YES".to_vec(),
            });
            match s.command(Command::EndOfMessage(b"x\r\n".to_vec())) {
                Step::Decide(arrival) => arrival,
                other => panic!("{other:?}"),
            }
        };
        let infected = arrival("Infected (Eicar-Signature)");
        assert_eq!(infected.verdicts.virus, Verdict::Fail);
        assert_eq!(
            infected.verdicts.spam,
            Verdict::Unknown,
            "no spam scanner named"
        );
        assert_eq!(infected.verdicts.spf, Verdict::Unknown);
        let next = arrival("Clean");
        assert_eq!(
            next.verdicts.virus,
            Verdict::Pass,
            "verdicts are per transaction"
        );
    }

    #[test]
    fn a_message_over_the_limit_is_refused_552_and_not_kept() {
        let mut s = Session::new(settings(20), false);
        s.command(Command::Mail(vec!["<>".into()]));
        s.command(Command::Rcpt(vec!["<b@example.com>".into()]));
        s.command(Command::EndOfHeaders);
        let r = replies(s.command(Command::Body(vec![b'x'; 30])));
        assert!(matches!(&r[0], Response::ReplyCode(t) if t.starts_with("552 5.3.4 ")));
        assert!(s.raw.is_empty());
        assert_eq!(s.settings.budget.used(), 0);
        let r = replies(s.command(Command::EndOfMessage(Vec::new())));
        assert!(matches!(&r[0], Response::ReplyCode(t) if t.starts_with("552 5.3.4 ")));
    }

    #[test]
    fn sessions_past_the_shared_budget_are_told_to_retry_and_bytes_come_back() {
        let set = settings(1000);
        let mut a = Session::new(set.clone(), false);
        let mut b = Session::new(set.clone(), false);
        for s in [&mut a, &mut b] {
            s.command(Command::Mail(vec!["<a@sender.test>".into()]));
            s.command(Command::Rcpt(vec!["<b@example.com>".into()]));
            s.command(Command::EndOfHeaders);
        }
        assert_eq!(
            replies(a.command(Command::Body(vec![b'x'; 700]))),
            [Response::Continue]
        );
        let r = replies(b.command(Command::Body(vec![b'x'; 700])));
        assert!(
            matches!(&r[0], Response::ReplyCode(t) if t.starts_with("452 4.3.1 ")),
            "{r:?}"
        );
        assert_eq!(set.budget.used(), 702, "b took nothing");
        // The end of a's transaction gives its bytes back; so does a dropped session.
        a.command(Command::Abort);
        assert_eq!(set.budget.used(), 0);
        b.command(Command::Mail(vec!["<a@sender.test>".into()]));
        b.command(Command::Rcpt(vec!["<b@example.com>".into()]));
        b.command(Command::EndOfHeaders);
        assert_eq!(
            replies(b.command(Command::Body(vec![b'x'; 700]))),
            [Response::Continue]
        );
        drop(b);
        assert_eq!(set.budget.used(), 0);
    }

    #[test]
    fn the_edited_copy_is_counted_against_the_budget_until_the_answer() {
        let set = settings(1000);
        let mut s = Session::new(set.clone(), false);
        let mut end = |size: usize| {
            s.command(Command::Mail(vec!["<a@sender.test>".into()]));
            s.command(Command::Rcpt(vec!["<b@example.com>".into()]));
            s.command(Command::EndOfHeaders);
            s.command(Command::Body(vec![b'x'; size]));
            s.command(Command::EndOfMessage(Vec::new()))
        };
        // 402 bytes received, 402 more for the edit: within 1000, held until decided.
        assert!(matches!(end(400), Step::Decide(_)));
        assert_eq!(set.budget.used(), 804);
        s.decided(Err(HandleError {
            message_id: "x".into(),
            failure: sluice_inbound::HandleFailure::Tempfail {
                reason: "x".into(),
                done: String::new(),
            },
        }));
        assert_eq!(set.budget.used(), 0, "given back with the answer");
        // 602 received fits, 602 more does not: 452, and nothing stays held.
        let mut s = Session::new(set.clone(), false);
        s.command(Command::Mail(vec!["<a@sender.test>".into()]));
        s.command(Command::Rcpt(vec!["<b@example.com>".into()]));
        s.command(Command::EndOfHeaders);
        s.command(Command::Body(vec![b'x'; 600]));
        let r = replies(s.command(Command::EndOfMessage(Vec::new())));
        assert!(matches!(&r[0], Response::ReplyCode(t) if t.starts_with("452 4.3.1 ")));
        assert_eq!(set.budget.used(), 0);
    }

    #[test]
    fn over_the_connection_limit_every_answer_is_a_tempfail_and_stopping_refuses_new_mail() {
        let mut s = Session::new(settings(20), true);
        let r = replies(s.command(Command::Helo("x".into())));
        assert!(matches!(&r[0], Response::ReplyCode(t) if t.starts_with("421 ")));
        let set = settings(20);
        let mut s = Session::new(set.clone(), false);
        set.stopping.store(true, Ordering::Relaxed);
        let r = replies(s.command(Command::Mail(vec!["<a@b.test>".into()])));
        assert!(matches!(&r[0], Response::ReplyCode(t) if t.starts_with("451 4.3.2 ")));
    }
}
