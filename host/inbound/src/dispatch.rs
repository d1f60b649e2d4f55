//! The disposition dispatcher: makes the deliveries a chain decided (mailbox copies, relayed
//! copies, DSNs) through the targets one config names. The pipeline builds one per config
//! version (so a store keeps its connections across messages); `sluice run` builds a local
//! one ([`Dispatcher::local`]) that stores into a directory and writes sends to an outbox, so
//! both apply the same rules: the allow list, the loop guard, DSN suppression, one DSN per
//! refused copy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice_aws::AwsError;
use sluice_chain::{
    ConfigFile, Disposition, Envelope, GroupOutcome, GroupResult, OutputMessage, ProcessResult,
};
use sluice_deliver::{
    DeliveredLog, DirMailboxes, DirStore, MailboxCopy, MailboxStore, Outbound, Outbox, StoreRequest,
};
use sluice_mail::Message;

use crate::deliver::{
    ArcStamp, BounceJob, BounceReport, Bouncer, Markers, Refusal, RefusalKind, Relay, RelayJob,
    Replier, ReplyOutcome, ReplyStatus, Sealed, SendError, Suppression, TargetError, TraceMeta,
};
use sluice_telemetry::{Address, Addresses};

/// What happened to one message.
#[derive(Debug, Clone)]
pub struct Handled {
    /// SES message id.
    pub message_id: String,
    /// Every recipient was dropped or bounced: an SES receipt rule set can stop here
    /// (`STOP_RULE_SET`).
    pub all_refused: bool,
    /// One line for the log: counts per delivery kind.
    pub summary: String,
    /// Copies kept in `[quarantine]` instead of the mailbox: (recipient, entry id).
    pub quarantined: Vec<(String, String)>,
    /// Every mailbox copy stored (now or by an earlier attempt).
    pub stored: Vec<Stored>,
    /// Every recipient a copy was to be relayed to, and what happened (sent, sent before,
    /// unconfirmed, refused and why).
    pub relayed: Vec<Relayed>,
    /// Every bounce decision: a DSN sent, sent before, unconfirmed, or suppressed and why
    /// (including Sluice's own relay refusals, which are never bounced).
    pub bounces: Vec<BounceOutcome>,
    /// `[arc]`: how many copies (a group's mailbox copies count once, a relay chunk once)
    /// were sealed, and why the others that should have been were not.
    pub arc: ArcReport,
    /// Copies that reach nobody because the config refuses their recipients (a relay to a
    /// domain outside `allow_domains`, or no `[relay]`), kept where the operator can find
    /// them. Never empty silently: each is logged as `UNDELIVERABLE`, counted
    /// (`Undeliverable` metric) and makes `sluice run` exit non-zero.
    pub kept: Vec<Kept>,
    /// Why some recipient must be retried (a chain tempfailed, a mailbox deferred a copy);
    /// everything else listed here is done. The pipeline turns it into
    /// [`HandleFailure::Tempfail`], so the notification is retried.
    pub retry: Option<String>,
    /// Time spent parsing and running the chains, in µs.
    pub chain_micros: u64,
    /// Time for the whole message (fetch, chains, deliveries), in µs.
    pub total_micros: u64,
    /// Every automatic reply the rules asked for (`reply.send`): sent, sent before, or not
    /// sent and why (the never-answer list, answered recently, not delivered, failed).
    pub replies: Vec<ReplyOutcome>,
    /// The rules refused every recipient and the door answers refusals itself
    /// ([`crate::door::RefuseBy::Reply`]): nothing was delivered and no DSN sent; this is
    /// the reply to give (the first recipient's bounce).
    pub refused: Option<crate::door::Reply>,
}

/// A copy kept because the config refused all of its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The recipients it was meant for, each with why it was refused.
    pub refused: Vec<(String, String)>,
    /// Where the copy is (`s3://…/_undeliverable/…` or a path).
    pub at: String,
}

/// What `[arc]` did for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArcReport {
    /// Sealed messages: one per group whose edited mailbox copies were sealed, one per
    /// relayed message.
    pub sealed: usize,
    /// Why a message that should have been sealed was not (it went out unsealed).
    pub unsealed: Vec<Arc<sluice_arc::SealError>>,
}

/// One mailbox copy that is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The recipient.
    pub recipient: String,
    /// The folder.
    pub folder: String,
    /// Where it went (`s3://…`, a path, the server's reply).
    pub at: String,
    /// An earlier attempt stored it (recorded as delivered): not stored again.
    pub earlier: bool,
}

/// One relayed recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The recipient.
    pub recipient: String,
    /// What happened.
    pub status: RelayStatus,
    /// For a copy sent now, what the way out called the send (SES message id, the
    /// smarthost's reply, the outbox file).
    pub id: Option<String>,
}

/// What happened to one relayed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayStatus {
    /// SES accepted the copy in this attempt.
    Sent,
    /// An earlier attempt claimed it and never confirmed the send (a crash in between); it
    /// was sent again in this attempt (`[relay] sends = "at-least-once"`), so the recipient
    /// may have two copies with the same Message-ID.
    Resent,
    /// An earlier attempt sent it.
    AlreadySent,
    /// Claimed by an attempt that never confirmed it (a crash in between): it may or may not
    /// have gone out, and is not sent again (`[relay] sends = "at-most-once"`). Logged as an
    /// error; check SES's sending logs.
    Unconfirmed,
    /// Not relayed.
    Refused(RefusalKind),
}

/// One bounce decision for a set of refused recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceOutcome {
    /// The refused recipients it covers.
    pub recipients: Vec<String>,
    /// What was done.
    pub report: BounceReport,
}

impl Handled {
    /// The record of a message nothing was done for yet.
    pub fn nothing_yet(message_id: &str) -> Handled {
        Handled {
            quarantined: Vec::new(),
            message_id: message_id.to_string(),
            all_refused: true,
            summary: String::new(),
            stored: Vec::new(),
            relayed: Vec::new(),
            bounces: Vec::new(),
            arc: ArcReport::default(),
            kept: Vec::new(),
            retry: None,
            chain_micros: 0,
            total_micros: 0,
            refused: None,
            replies: Vec::new(),
        }
    }

    /// Automatic replies sent now (or again), and those not sent by the host's choice
    /// (suppressed): the `AutoReplySent` and `AutoReplySuppressed` metrics and the summary.
    pub fn reply_counts(&self) -> (u64, u64) {
        let sent = self
            .replies
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    ReplyStatus::Sent { .. } | ReplyStatus::Resent { .. }
                )
            })
            .count();
        let suppressed = self
            .replies
            .iter()
            .filter(|r| matches!(r.status, ReplyStatus::Suppressed { .. }))
            .count();
        (sent as u64, suppressed as u64)
    }

    /// Recipients whose bounce was suppressed, counted by reason.
    pub fn bounces_suppressed(&self) -> BTreeMap<Suppression, usize> {
        let mut counts = BTreeMap::new();
        for b in &self.bounces {
            if let BounceReport::Suppressed { reason } = b.report {
                *counts.entry(reason).or_default() += b.recipients.len();
            }
        }
        counts
    }

    /// Recipients of sends (relayed copies and bounces) that were claimed earlier and never
    /// confirmed, so were not sent again: each may be missing its copy.
    pub fn unconfirmed(&self) -> Vec<String> {
        self.send_recipients(RelayStatus::Unconfirmed, |b| {
            *b == BounceReport::Unconfirmed
        })
    }

    /// Recipients of sends that an earlier attempt claimed and never confirmed, sent again in
    /// this one (at least once): each may have two copies.
    pub fn resent(&self) -> Vec<String> {
        self.send_recipients(RelayStatus::Resent, |b| {
            matches!(b, BounceReport::Resent { .. })
        })
    }

    /// The recipients of relayed copies with this status and of bounces whose report matches.
    fn send_recipients(
        &self,
        relay: RelayStatus,
        bounce: impl Fn(&BounceReport) -> bool,
    ) -> Vec<String> {
        let relays = self
            .relayed
            .iter()
            .filter(|r| r.status == relay)
            .map(|r| r.recipient.clone());
        let bounces = self
            .bounces
            .iter()
            .filter(|b| bounce(&b.report))
            .flat_map(|b| b.recipients.iter().cloned());
        relays.chain(bounces).collect()
    }
}

/// Why a message could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {message_id}: {failure}")]
pub struct HandleError {
    /// SES message id (or the SQS record id when the notice itself was unreadable).
    pub message_id: String,
    /// What went wrong and what to fix.
    pub failure: HandleFailure,
}

impl HandleError {
    pub(crate) fn new(message_id: &str, failure: HandleFailure) -> HandleError {
        HandleError {
            message_id: message_id.to_string(),
            failure,
        }
    }

    /// A retry cannot help (e.g. the S3 object is gone). The event is still reported as
    /// failed, so SQS moves it to the DLQ rather than deleting it.
    pub fn is_permanent(&self) -> bool {
        self.failure.is_permanent()
    }
}

/// What went wrong with one message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandleFailure {
    /// The notice names no message Sluice can handle (no usable id, no recipients).
    #[error("{0}")]
    BadNotice(String),
    /// SES invoked the Lambda directly (no message in the event) and the config does not say
    /// where the receipt rule stores messages.
    #[error(
        "SES invoked Sluice directly (Lambda action), which carries no message; set [inbound] \
         bucket and prefix in {config} to where the receipt rule's S3 action stores it"
    )]
    NoInbound {
        /// The config's name.
        config: String,
    },
    /// An envelope address the door accepted is not one Sluice will write to (NUL, CR/LF,
    /// spaces, no single `@`, an empty label): checked the same at every door.
    #[error("{role} {address:?} refused: {reason}")]
    BadAddress {
        /// `recipient` or `sender`.
        role: &'static str,
        /// The address as it came.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The message could not be read; permanent when it is gone.
    #[error("cannot read the message: {0}")]
    Fetch(AwsError),
    /// The message is not one Sluice can parse.
    #[error("cannot parse the message: {0}")]
    Parse(#[source] sluice_mail::ParseError),
    /// A rule run panicked the host thread (a bug in Sluice, not in the rule).
    #[error("the chain panicked: {0}")]
    ChainPanicked(#[source] Arc<tokio::task::JoinError>),
    /// A relay or bounce failed.
    #[error(transparent)]
    Deliver(SendError),
    /// Recipients the config refuses (see [`Handled::kept`]) and no place to keep the copy:
    /// the notice fails for good, so it is kept in the DLQ.
    #[error(
        "{recipients} recipient(s) refused by the config ({reason}) and no place to keep the \
         copy (an S3 or dir [store], or [relay] markers): left for the dead-letter queue"
    )]
    Undeliverable {
        /// How many recipients.
        recipients: usize,
        /// Why the first was refused.
        reason: String,
    },
    /// `[archive] required = true` and the message could not be archived: nothing was
    /// delivered, and a retry archives it first.
    #[error("not archived, so not delivered ({0}); will be retried")]
    Archive(#[source] sluice_deliver::ArchiveError),
    /// A chain tempfailed or a delivery must be retried; what was done stays done.
    #[error("tempfail, will be retried ({reason}); what the rules decided: {done}")]
    Tempfail {
        /// The first reason.
        reason: String,
        /// The attempt's summary: the rules' dispositions by kind (`deliver=1` is a copy the
        /// rules asked for, not one that was made) and what the sends came to.
        done: String,
    },
}

impl HandleFailure {
    /// A retry cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            HandleFailure::BadNotice(_)
            | HandleFailure::BadAddress { .. }
            | HandleFailure::NoInbound { .. }
            | HandleFailure::Parse(_)
            | HandleFailure::Undeliverable { .. } => true,
            HandleFailure::Fetch(e) => matches!(e, AwsError::S3NotFound { .. }),
            HandleFailure::Deliver(e) => e.is_permanent(),
            HandleFailure::ChainPanicked(_)
            | HandleFailure::Archive(_)
            | HandleFailure::Tempfail { .. } => false,
        }
    }
}

/// The targets of one config: where mailbox copies go, the record of delivered copies, the
/// way out for relays and DSNs, and the send claims.
pub struct Dispatcher {
    /// `Err`: there is no `[store]`, or it could not be built (what to fix).
    pub(crate) store: Result<Arc<dyn MailboxStore>, Arc<TargetError>>,
    /// For stores that do not overwrite a copy (LMTP, SMTP).
    pub(crate) delivered: Option<Arc<dyn DeliveredLog>>,
    /// How relayed copies and DSNs leave; `Err` when `[relay]` names a smarthost that
    /// cannot be set up (what to fix). `None` without `[relay]`.
    pub(crate) outbound: Option<Result<Outbound, Arc<TargetError>>>,
    /// Where sends are claimed; `None` without `[relay]`.
    pub(crate) markers: Option<Markers>,
    /// Where copies refused by the config are kept (see [`Handled::kept`]): beside the send
    /// claims, else beside the S3 or directory mailboxes. `None` when there is no such place
    /// (an LMTP or SMTP store and no `[relay]`): such a message fails, for the DLQ.
    pub(crate) kept: Option<Markers>,
    /// `[quarantine]` and its folder: copies filed there are kept in it, not stored.
    pub(crate) quarantine: Option<(sluice_deliver::Quarantine, String)>,
}

impl Dispatcher {
    /// What `sluice run` uses: copies into `out` (the directory store's layout), relayed
    /// copies and DSNs as files in `out/outbox` (split and limited like the transport
    /// `[relay]` names, see [`Outbox`]), claims under `claims` (give a fresh directory per
    /// run, or a second run of the same message finds its sends done).
    pub fn local(config: &ConfigFile, out: &Path, claims: &Path) -> Dispatcher {
        let outbox =
            |limits| Arc::new(Outbox::standing_in_for(out.join("outbox"), limits)) as Outbound;
        Dispatcher {
            store: Ok(Arc::new(DirMailboxes::new(DirStore::new(
                out.to_path_buf(),
            )))),
            delivered: None,
            outbound: config
                .relay
                .as_ref()
                .map(|r| Ok(outbox(r.transport.limits()))),
            markers: config
                .relay
                .as_ref()
                .map(|_| Markers::in_dir(claims.to_path_buf(), Markers::new_owner_id())),
            kept: Some(Markers::in_dir(out.to_path_buf(), Markers::new_owner_id())),
            // The preview writes copies filed into the quarantine folder like any other
            // folder, under `out`.
            quarantine: None,
        }
    }

    /// This dispatcher, sending relayed copies, DSNs and replies through `via` instead (a
    /// local dispatcher that talks to a real smarthost, as the tests do).
    pub fn with_outbound(mut self, via: Outbound) -> Dispatcher {
        self.outbound = Some(Ok(via));
        self
    }

    /// The way out for relays and DSNs.
    fn outbound(&self) -> Result<Outbound, SendError> {
        match &self.outbound {
            Some(Ok(via)) => Ok(via.clone()),
            Some(Err(e)) => Err(SendError::Setup(e.clone())),
            None => Err(SendError::Setup(Arc::new(TargetError::NoRelay))),
        }
    }

    /// Makes every delivery `result` decided for the message (`original` as received):
    /// stores copies, relays, bounces. `Ok` when each is done (or was done by an earlier
    /// attempt) or left for a retry ([`Handled::retry`]); `Err` when a relay or bounce failed
    /// (it says whether a retry can help).
    pub async fn deliver(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        original: &Arc<Message>,
        result: &ProcessResult,
    ) -> Result<Handled, HandleError> {
        let id = &envelope.message_id;
        let hops_received = sluice_mail::hop_count(original);
        let mut progress = Progress::new(id);
        let stamp = config
            .arc
            .as_ref()
            .map(|sealer| ArcStamp::new(sealer.clone(), envelope, original));
        for group in &result.groups {
            if let GroupOutcome::Tempfail { reason } = &group.outcome {
                progress.handled.all_refused = false;
                progress.tempfail(group, reason);
                continue;
            }
            // The message every delivery of this group carries: the edited copy comes parsed
            // from the chain (the parse that checked the edit), so nothing here parses it.
            let output: &Message = match &group.output {
                Some(OutputMessage::Edited(edited)) => edited,
                _ => original,
            };
            let plan = progress.plan(group, hops_received);
            let out = GroupOutput {
                group,
                message: output,
                original,
                stamp: stamp.as_ref(),
            };
            self.store_group(envelope, &out, &plan.copies, &mut progress)
                .await;
            self.relay_group(config, envelope, &out, &plan.relays, &mut progress)
                .await?;
            self.send_replies(config, envelope, original, group, &mut progress)
                .await;
        }
        self.send_bounces(config, envelope, original, &mut progress)
            .await?;
        Ok(progress.finish())
    }

    /// Stores the group's mailbox copies; an edited copy gets an ARC set first (one passed
    /// on untouched keeps the sender's own signatures and needs none).
    async fn store_group(
        &self,
        envelope: &Envelope,
        out: &GroupOutput<'_>,
        copies: &[MailboxCopy],
        progress: &mut Progress,
    ) {
        if copies.is_empty() {
            return;
        }
        let id = &envelope.message_id;
        let output_raw = out.message.raw();
        let sealed;
        let bytes: &[u8] = match (out.stamp, &out.group.output) {
            (Some(stamp), Some(OutputMessage::Edited(_))) => {
                match stamp.seal(output_raw, id, "mailbox") {
                    Sealed::Yes(seal) => {
                        progress.handled.arc.sealed += 1;
                        sealed = seal;
                        &sealed
                    }
                    Sealed::No(why) => {
                        progress.handled.arc.unsealed.push(why);
                        output_raw
                    }
                }
            }
            _ => output_raw,
        };
        let trace = TraceMeta {
            steps: out
                .group
                .steps
                .iter()
                .map(|s| (s.step.to_string(), s.outcome.to_string()))
                .collect(),
        };
        let rest: Vec<MailboxCopy>;
        let copies = match &self.quarantine {
            Some((quarantine, folder)) if copies.iter().any(|c| c.folder == *folder) => {
                let (held, others): (Vec<MailboxCopy>, Vec<MailboxCopy>) =
                    copies.iter().cloned().partition(|c| c.folder == *folder);
                let record = quarantine_record(envelope, out, &held, folder, &trace);
                match quarantine.put(&record, bytes, out.original.raw()).await {
                    Ok(at) => {
                        tracing::info!(message_id = %id, entry = %record.id, %at, step = %record.step, "quarantined");
                        for copy in held {
                            progress
                                .handled
                                .quarantined
                                .push((copy.recipient, record.id.clone()));
                        }
                    }
                    Err(e) => {
                        progress.tempfail(out.group, &format!("quarantine: {e}"));
                        return;
                    }
                }
                rest = others;
                if rest.is_empty() {
                    return;
                }
                &rest[..]
            }
            _ => copies,
        };
        let request = StoreRequest {
            message_id: id,
            mail_from: &envelope.mail_from,
            bytes,
            copies,
            trace: &trace,
        };
        let Progress {
            handled,
            refused_copies,
            ..
        } = progress;
        if let Err(reason) = self.store_copies(request, handled, refused_copies).await {
            progress.tempfail(out.group, &reason);
        }
    }

    /// Relays the group's copies. What a relay refuses becomes a DSN (too large, refused by
    /// the smarthost), a logged policy refusal (no open relay, a loop: a DSN would be
    /// backscatter), or, when the config itself sends it nowhere, a kept copy.
    async fn relay_group(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        out: &GroupOutput<'_>,
        relays: &[RelayJob],
        progress: &mut Progress,
    ) -> Result<(), HandleError> {
        let id = &envelope.message_id;
        let mut config_refused: Vec<(String, String)> = Vec::new();
        for job in relays {
            let refused = self
                .relay(
                    config,
                    out.group,
                    job,
                    out.message,
                    id,
                    out.stamp,
                    &mut progress.handled,
                )
                .await?;
            let mut policy = Vec::new();
            for refusal in refused {
                if refusal.kind.is_config() {
                    config_refused.push((refusal.recipient.clone(), refusal.reason.clone()));
                }
                match bounce_for_refusal(id, refusal) {
                    Ok(job) => progress.bounces.push(job),
                    Err(recipient) => policy.push(recipient),
                }
            }
            if !policy.is_empty() {
                progress.handled.bounces.push(BounceOutcome {
                    recipients: policy,
                    report: BounceReport::Suppressed {
                        reason: Suppression::Policy,
                    },
                });
            }
        }
        if !config_refused.is_empty() {
            let at = self
                .keep_undeliverable(envelope, &config_refused, out.message.raw())
                .await?;
            progress.handled.kept.push(Kept {
                refused: config_refused,
                at,
            });
        }
        Ok(())
    }

    /// Sends the group's automatic replies for the recipients whose copy is stored (now or by
    /// an earlier attempt; a quarantined or refused copy gets none). A reply that fails is
    /// reported, never a reason to retry the message: the copy itself is delivered.
    async fn send_replies(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        original: &Message,
        group: &GroupResult,
        progress: &mut Progress,
    ) {
        let id = &envelope.message_id;
        for planned in &group.replies {
            let stored = progress
                .handled
                .stored
                .iter()
                .any(|s| s.recipient.eq_ignore_ascii_case(&planned.from));
            let status = if let Some(s) = &planned.suppressed {
                ReplyStatus::Suppressed {
                    kind: s.kind,
                    reason: s.reason.clone(),
                }
            } else if !stored {
                ReplyStatus::Suppressed {
                    kind: "not-delivered",
                    reason: format!("{}'s copy is not stored (yet)", planned.from),
                }
            } else if config.relay.as_ref().is_some_and(|r| {
                [&r.from, &r.bounce_from]
                    .iter()
                    .any(|own| own.eq_ignore_ascii_case(&planned.to))
            }) {
                // Sluice's own forwards and bounces come from these: never answer itself.
                ReplyStatus::Suppressed {
                    kind: "own-address",
                    reason: format!("{} is Sluice's own sending address", planned.to),
                }
            } else {
                match (self.outbound(), &self.markers) {
                    (Ok(via), Some(markers)) => {
                        match (Replier { via })
                            .reply(id, original, planned, markers)
                            .await
                        {
                            Ok(status) => status,
                            Err(e) => {
                                tracing::warn!(message_id = %id, from = %Address(&planned.from), error = %e, "auto-reply failed");
                                ReplyStatus::Failed {
                                    error: e.to_string(),
                                }
                            }
                        }
                    }
                    _ => ReplyStatus::Suppressed {
                        kind: "no-relay",
                        reason: "the config has no usable [relay] to send replies through".into(),
                    },
                }
            };
            if let ReplyStatus::Suppressed { kind, reason } = &status {
                tracing::info!(message_id = %id, from = %Address(&planned.from), kind, "auto-reply not sent: {reason}");
            }
            progress.handled.replies.push(ReplyOutcome {
                from: planned.from.clone(),
                to: planned.to.clone(),
                status,
            });
        }
    }

    /// Sends the DSNs: one for the rules' bounces and the relays' refusals, and one per copy
    /// a mailbox refused (a recipient deferred in one attempt may be refused in the next,
    /// and a DSN per recipient is claimed per recipient, so none is sent twice however the
    /// refusals spread over attempts).
    async fn send_bounces(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        original: &Arc<Message>,
        progress: &mut Progress,
    ) -> Result<(), HandleError> {
        let fail = |e: SendError| HandleError::new(&envelope.message_id, HandleFailure::Deliver(e));
        let bounces = std::mem::take(&mut progress.bounces);
        let refused_copies = std::mem::take(&mut progress.refused_copies);
        let batches = (!bounces.is_empty())
            .then_some(bounces.as_slice())
            .into_iter()
            .chain(refused_copies.iter().map(std::slice::from_ref));
        for jobs in batches {
            let report = self
                .bounce(config, envelope, original, jobs)
                .await
                .map_err(fail)?;
            progress.handled.bounces.push(BounceOutcome {
                recipients: jobs.iter().map(|j| j.recipient.clone()).collect(),
                report,
            });
        }
        Ok(())
    }

    /// Keeps a copy whose recipients the config refused (see [`Handled::kept`]); `Err`
    /// (permanent, so the notice goes to the DLQ) when there is no place to keep it or the
    /// write failed for good, transient when the write may pass later.
    async fn keep_undeliverable(
        &self,
        envelope: &Envelope,
        refused: &[(String, String)],
        bytes: &[u8],
    ) -> Result<String, HandleError> {
        let id = &envelope.message_id;
        let recipients: Vec<String> = refused.iter().map(|(r, _)| r.clone()).collect();
        let Some(kept) = &self.kept else {
            return Err(HandleError::new(
                id,
                HandleFailure::Undeliverable {
                    recipients: recipients.len(),
                    reason: refused[0].1.clone(),
                },
            ));
        };
        let at = kept
            .keep_undeliverable(id, &envelope.mail_from, refused, bytes)
            .await
            .map_err(|e| HandleError::new(id, HandleFailure::Deliver(e)))?;
        tracing::error!(
            message_id = %id,
            recipients = %Addresses(&recipients),
            reason = %refused[0].1,
            kept = %at,
            "UNDELIVERABLE: the config refuses these recipients, so this copy reaches nobody; \
             it is kept (fix [relay] allow_domains or the rule's destination, then resend it from there)"
        );
        Ok(at)
    }

    /// Stores the copies of one group. Done copies go to `handled.stored`, refused ones
    /// (permanent failures) become bounce jobs; `Err` when some copy must be retried (it
    /// says why). Copies a store cannot overwrite are skipped when recorded as delivered by
    /// an earlier attempt, and recorded once the server accepts them.
    async fn store_copies(
        &self,
        request: StoreRequest<'_>,
        handled: &mut Handled,
        bounce_jobs: &mut Vec<BounceJob>,
    ) -> Result<(), String> {
        let id = request.message_id;
        let store = self.store.as_ref().map_err(|e| {
            format!(
                "{} is local, but {e}",
                request
                    .copies
                    .first()
                    .map(|c| c.recipient.as_str())
                    .unwrap_or("a recipient")
            )
        })?;
        let log = self.delivered.as_ref().filter(|_| !store.overwrites());
        let mut todo = Vec::with_capacity(request.copies.len());
        for copy in request.copies {
            if let Some(log) = log {
                match log.was_delivered(id, copy).await {
                    Ok(true) => {
                        handled.stored.push(Stored {
                            recipient: copy.recipient.clone(),
                            folder: copy.folder.clone(),
                            at: store.describe(),
                            earlier: true,
                        });
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            todo.push(copy.clone());
        }
        if todo.is_empty() {
            return Ok(());
        }
        let outcomes = store
            .store(StoreRequest {
                copies: &todo,
                ..request
            })
            .await;
        let mut retry: Option<String> = None;
        for outcome in outcomes {
            match outcome.result {
                Ok(at) => {
                    if let Some(log) = log {
                        if let Err(e) = log.record(id, &outcome.copy, &at).await {
                            // Delivered: not an error of this message. A retry may deliver
                            // this copy again (at least once).
                            tracing::warn!(message_id = id, recipient = %Address(&outcome.copy.recipient), error = %e, "delivered, but the delivery record could not be written");
                        }
                    }
                    handled.stored.push(Stored {
                        recipient: outcome.copy.recipient,
                        folder: outcome.copy.folder,
                        at,
                        earlier: false,
                    });
                }
                Err(e) if e.is_permanent() => {
                    tracing::warn!(message_id = id, recipient = %Address(&outcome.copy.recipient), error = %e, "mailbox refused the copy");
                    let (code, status) = e.bounce_status();
                    bounce_jobs.push(BounceJob {
                        recipient: outcome.copy.recipient.clone(),
                        code,
                        status,
                        text: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::warn!(message_id = id, recipient = %Address(&outcome.copy.recipient), error = %e, "copy not stored, will be retried");
                    retry.get_or_insert(e.to_string());
                }
            }
        }
        retry.map_or(Ok(()), Err)
    }

    /// Relays one job (outcomes into `handled.relayed`); returns the recipients refused.
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        config: &ConfigFile,
        group: &GroupResult,
        job: &RelayJob,
        output: &Message,
        id: &str,
        stamp: Option<&ArcStamp>,
        handled: &mut Handled,
    ) -> Result<Vec<Refusal>, HandleError> {
        let (Some(relay), Some(markers)) = (&config.relay, &self.markers) else {
            tracing::warn!(message_id = id, recipients = %Addresses(&job.recipients), "not relayed: the config has no [relay]");
            handled
                .relayed
                .extend(job.recipients.iter().map(|r| Relayed {
                    recipient: r.clone(),
                    status: RelayStatus::Refused(RefusalKind::NoRelay),
                    id: None,
                }));
            return Ok(job
                .recipients
                .iter()
                .map(|r| Refusal {
                    recipient: r.clone(),
                    kind: RefusalKind::NoRelay,
                    reason: "this server does not relay mail".to_string(),
                })
                .collect());
        };
        let via = self
            .outbound()
            .map_err(|e| HandleError::new(id, HandleFailure::Deliver(e)))?;
        let ses_relay = Relay {
            via,
            from: relay.from.clone(),
            allow_domains: relay.allow_domains.clone(),
            max_hops: relay.max_hops,
            arc: stamp.cloned(),
        };
        let via = if group.domain == "*" {
            relay.domain()
        } else {
            group.domain.clone()
        };
        let report = ses_relay
            .relay(id, &via, job, output, markers)
            .await
            .map_err(|e| HandleError::new(id, HandleFailure::Deliver(e)))?;
        let outcome = |list: &[String], status: RelayStatus| {
            list.iter()
                .map(|r| Relayed {
                    recipient: r.clone(),
                    status: status.clone(),
                    id: report.send_ids.get(r).cloned(),
                })
                .collect::<Vec<_>>()
        };
        if stamp.is_some() && !report.sent.is_empty() {
            match &report.arc {
                Some(Err(why)) => handled.arc.unsealed.push(why.clone()),
                Some(Ok(())) => handled.arc.sealed += 1,
                None => {}
            }
        }
        let first_sends: Vec<String> = report
            .sent
            .iter()
            .filter(|r| !report.resent.contains(r))
            .cloned()
            .collect();
        handled
            .relayed
            .extend(outcome(&first_sends, RelayStatus::Sent));
        handled
            .relayed
            .extend(outcome(&report.resent, RelayStatus::Resent));
        handled
            .relayed
            .extend(outcome(&report.already_sent, RelayStatus::AlreadySent));
        handled
            .relayed
            .extend(outcome(&report.unconfirmed, RelayStatus::Unconfirmed));
        handled
            .relayed
            .extend(report.refused.iter().map(|r| Relayed {
                recipient: r.recipient.clone(),
                status: RelayStatus::Refused(r.kind),
                id: None,
            }));
        Ok(report.refused)
    }

    async fn bounce(
        &self,
        config: &ConfigFile,
        envelope: &Envelope,
        original: &Message,
        jobs: &[BounceJob],
    ) -> Result<BounceReport, SendError> {
        let (Some(relay), Some(markers)) = (&config.relay, &self.markers) else {
            tracing::warn!(
                message_id = %envelope.message_id,
                "bounce not sent: the config has no [relay] to send it through"
            );
            return Ok(BounceReport::Suppressed {
                reason: Suppression::NoRelay,
            });
        };
        let bouncer = Bouncer {
            via: self.outbound()?,
            from: relay.bounce_from.clone(),
            reporting_mta: relay.domain(),
        };
        bouncer
            .bounce(
                &envelope.message_id,
                original,
                &envelope.mail_from,
                &envelope.verdicts,
                jobs,
                markers,
            )
            .await
    }
}

/// One group's message on its way out.
struct GroupOutput<'a> {
    group: &'a GroupResult,
    /// The message the group's deliveries carry (edited or as received).
    message: &'a Message,
    /// The message as received (a quarantine keeps it, so a release can run the chain again).
    original: &'a Message,
    /// The ARC stamp, when `[arc]` is configured.
    stamp: Option<&'a ArcStamp>,
}

/// What one group's dispositions ask for besides bounces (those are sent once per message).
struct GroupPlan {
    copies: Vec<MailboxCopy>,
    relays: Vec<RelayJob>,
}

/// One message's deliveries so far, passed through the steps of [`Dispatcher::deliver`].
struct Progress {
    handled: Handled,
    /// The first reason to retry the message.
    retry: Option<String>,
    /// Dispositions by kind, for the summary.
    counts: BTreeMap<&'static str, usize>,
    /// The rules' bounces and the relays' refusals: one DSN.
    bounces: Vec<BounceJob>,
    /// Copies a mailbox refused: a DSN each.
    refused_copies: Vec<BounceJob>,
}

impl Progress {
    fn new(id: &str) -> Progress {
        Progress {
            handled: Handled::nothing_yet(id),
            retry: None,
            counts: BTreeMap::new(),
            bounces: Vec::new(),
            refused_copies: Vec::new(),
        }
    }

    /// The message must be retried because of `group` (the first reason is kept).
    fn tempfail(&mut self, group: &GroupResult, reason: &str) {
        self.retry
            .get_or_insert(format!("domain {}: {reason}", group.domain));
    }

    /// Sorts the group's dispositions: copies to store, relay jobs (one per sender and
    /// subject prefix), bounces (collected for the message's DSN), drops (logged).
    fn plan(&mut self, group: &GroupResult, hops_received: usize) -> GroupPlan {
        let mut plan = GroupPlan {
            copies: Vec::new(),
            relays: Vec::new(),
        };
        for d in &group.dispositions {
            *self.counts.entry(d.kind()).or_default() += 1;
            match d {
                Disposition::Deliver { recipient, folder } => {
                    self.handled.all_refused = false;
                    plan.copies.push(MailboxCopy {
                        recipient: recipient.clone(),
                        folder: folder.clone(),
                    });
                }
                Disposition::Relay {
                    recipient,
                    from,
                    subject_prefix,
                } => {
                    self.handled.all_refused = false;
                    let same =
                        |j: &&mut RelayJob| j.from == *from && j.subject_prefix == *subject_prefix;
                    match plan.relays.iter_mut().find(same) {
                        Some(job) => job.recipients.push(recipient.clone()),
                        None => plan.relays.push(RelayJob {
                            recipients: vec![recipient.clone()],
                            from: from.clone(),
                            subject_prefix: subject_prefix.clone(),
                            // Counted on the message as received: a rule's edits cannot
                            // remove hops.
                            hops_received,
                        }),
                    }
                }
                Disposition::Bounce {
                    recipient,
                    code,
                    status,
                    text,
                } => self.bounces.push(BounceJob {
                    recipient: recipient.clone(),
                    code: *code,
                    status: status.clone(),
                    text: text.clone(),
                }),
                Disposition::Drop { recipient } => {
                    tracing::info!(message_id = %self.handled.message_id, recipient = %Address(recipient), domain = %group.domain, "dropped by the chain");
                }
            }
        }
        plan
    }

    /// The outcome, with its one-line summary.
    fn finish(self) -> Handled {
        let mut handled = self.handled;
        let mut summary: Vec<String> = self
            .counts
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let suppressed = handled.bounces_suppressed();
        if !suppressed.is_empty() {
            let total: usize = suppressed.values().sum();
            let by: Vec<String> = suppressed
                .iter()
                .map(|(r, n)| format!("{}={n}", r.as_str()))
                .collect();
            summary.push(format!("bounce_suppressed={total}({})", by.join(",")));
        }
        let undeliverable: usize = handled.kept.iter().map(|k| k.refused.len()).sum();
        let (replied, reply_suppressed) = handled.reply_counts();
        for (name, n) in [
            ("arc_sealed", handled.arc.sealed),
            ("arc_unsealed", handled.arc.unsealed.len()),
            ("unconfirmed", handled.unconfirmed().len()),
            ("resent", handled.resent().len()),
            ("undeliverable", undeliverable),
            ("quarantined", handled.quarantined.len()),
            ("replied", replied as usize),
            ("reply_suppressed", reply_suppressed as usize),
        ] {
            if n > 0 {
                summary.push(format!("{name}={n}"));
            }
        }
        handled.summary = summary.join(" ");
        handled.retry = self.retry;
        handled
    }
}

/// The DSN for a relay's refusal, or `Err(recipient)` for Sluice's own policy refusals (no
/// open relay, a loop): the sender of such a message is forged or a looping forwarder, so a
/// DSN would be backscatter; logged and counted instead. Too large for SES, or refused by
/// the smarthost, is a real failure the sender can act on.
fn bounce_for_refusal(id: &str, refusal: Refusal) -> Result<BounceJob, String> {
    let Refusal {
        recipient,
        kind,
        reason,
    } = refusal;
    if kind.is_policy() {
        tracing::warn!(
            message_id = %id,
            recipient = %Address(&recipient),
            refusal = kind.as_str(),
            reason,
            "not relayed and not bounced (policy refusal)"
        );
        return Err(recipient);
    }
    let (code, status) = match kind {
        RefusalKind::TooLarge => (552, "5.3.4"),
        RefusalKind::Rejected
        | RefusalKind::NotAllowed
        | RefusalKind::Loop
        | RefusalKind::NoRelay => (550, "5.0.0"),
    };
    Ok(BounceJob {
        recipient,
        code,
        status: status.into(),
        text: format!("not relayed: {reason}"),
    })
}

/// The record of a group's quarantined copy: the last step that filed it into `folder`, what
/// that step logged (its reason), the verdicts and the trace.
fn quarantine_record(
    envelope: &Envelope,
    out: &GroupOutput<'_>,
    held: &[MailboxCopy],
    folder: &str,
    trace: &TraceMeta,
) -> sluice_deliver::QuarantineRecord {
    use sluice_engine::Action;
    let recipients: Vec<String> = held.iter().map(|c| c.recipient.clone()).collect();
    let step = out.group.steps.iter().rev().find(|s| {
        s.actions
            .iter()
            .any(|a| matches!(a, Action::FileInto(f) if f == folder))
    });
    let reason = match step {
        Some(s) if !s.logs.is_empty() => s
            .logs
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        Some(s) => format!("step {} filed it into {folder}", s.step),
        None => format!("filed into {folder}"),
    };
    let v = &envelope.verdicts;
    let word = |d: String| {
        d.rsplit("::")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let mut verdicts: BTreeMap<String, String> = [
        ("spf", v.spf),
        ("dkim", v.dkim),
        ("dmarc", v.dmarc),
        ("spam", v.spam),
        ("virus", v.virus),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_string(), word(format!("{x:?}"))))
    .collect();
    if let Some(p) = &v.dmarc_policy {
        verdicts.insert("dmarc_policy".into(), p.clone());
    }
    sluice_deliver::QuarantineRecord {
        id: sluice_deliver::QuarantineRecord::entry_id(
            &envelope.message_id,
            &out.group.domain,
            &recipients,
        ),
        message_id: envelope.message_id.clone(),
        domain: out.group.domain.clone(),
        quarantined_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        from: envelope.mail_from.clone(),
        recipients,
        subject: out.message.subject().unwrap_or_default(),
        step: step.map(|s| s.step.to_string()).unwrap_or_default(),
        reason,
        verdicts,
        trace: trace.steps.clone(),
        released: Vec::new(),
        received: None,
    }
}
