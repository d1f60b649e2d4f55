//! What `sluice run` and `sluice check` print.

use std::fmt::Write;

use serde::Serialize;
use sluice_chain::{
    ConfigFile, Disposition, Envelope, GroupOutcome, OutputMessage, ProcessResult, RuleChains,
    StepMode,
};
use sluice_engine::{Action, LoadSource, Position, RuleEngine, RuleRuntime};
use sluice_inbound::deliver::{BounceReport, ReplyStatus};
use sluice_inbound::{Handled, RelayStatus};

/// What was done for one recipient, as `sluice run` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    /// The recipient.
    pub recipient: String,
    /// `deliver`, `relay`, `bounce`, `drop`, `tempfail` or `reply` (an automatic reply to
    /// the sender, `recipient` being the sender).
    pub kind: &'static str,
    /// The folder, for `deliver`.
    pub folder: Option<String>,
    /// The file written (a mailbox copy, an outbox file), if any.
    pub path: Option<String>,
    /// What happened: `stored`, `sent`, `refused (…)`, `suppressed: …`, `dropped`, ….
    pub status: String,
}

/// One record per disposition of every group, with what the dispatcher did about it.
pub fn deliveries(result: &ProcessResult, handled: &Handled) -> Vec<DeliveryRecord> {
    let bounce_of = |recipient: &str| {
        handled
            .bounces
            .iter()
            .find(|b| b.recipients.iter().any(|r| r == recipient))
            .map(|b| &b.report)
    };
    let bounce_path = |report: Option<&BounceReport>| match report {
        Some(BounceReport::Sent { id, .. } | BounceReport::Resent { id, .. }) => Some(id.clone()),
        _ => None,
    };
    let mut records = Vec::new();
    for group in &result.groups {
        if let GroupOutcome::Tempfail { reason } = &group.outcome {
            records.extend(group.recipients.iter().map(|r| DeliveryRecord {
                recipient: r.clone(),
                kind: "tempfail",
                folder: None,
                path: None,
                status: format!("tempfail: {reason}"),
            }));
            continue;
        }
        for d in &group.dispositions {
            let recipient = d.recipient().to_string();
            let record = match d {
                Disposition::Deliver { folder, .. } => {
                    let stored = handled
                        .stored
                        .iter()
                        .find(|s| s.recipient == recipient && s.folder == *folder);
                    let (path, status) = match (stored, bounce_of(&recipient)) {
                        (Some(s), _) => (Some(s.at.clone()), "stored".to_string()),
                        (None, Some(b)) => (bounce_path(Some(b)), format!("refused, bounce {b}")),
                        (None, None) => (None, "not stored, retry".to_string()),
                    };
                    DeliveryRecord {
                        kind: "deliver",
                        folder: Some(folder.clone()),
                        path,
                        status,
                        recipient,
                    }
                }
                Disposition::Relay { .. } => {
                    let relayed = handled.relayed.iter().find(|r| r.recipient == recipient);
                    let status = match relayed.map(|r| &r.status) {
                        Some(RelayStatus::Sent) => "sent".to_string(),
                        Some(RelayStatus::Resent) => "sent again (unconfirmed before)".to_string(),
                        Some(RelayStatus::AlreadySent) => "sent before".to_string(),
                        Some(RelayStatus::Unconfirmed) => "unconfirmed".to_string(),
                        // A policy refusal is never bounced; any other is, or suppressed.
                        Some(RelayStatus::Refused(kind)) if kind.is_policy() => {
                            let kept = handled
                                .kept
                                .iter()
                                .find(|k| k.refused.iter().any(|(r, _)| *r == recipient));
                            match kept {
                                Some(k) => format!(
                                    "refused ({}), UNDELIVERABLE, kept at {}",
                                    kind.as_str(),
                                    k.at
                                ),
                                None => format!("refused ({})", kind.as_str()),
                            }
                        }
                        Some(RelayStatus::Refused(kind)) => match bounce_of(&recipient) {
                            Some(b) => format!("refused ({}), bounce {b}", kind.as_str()),
                            None => format!("refused ({})", kind.as_str()),
                        },
                        None => "not relayed, retry".to_string(),
                    };
                    DeliveryRecord {
                        kind: "relay",
                        folder: None,
                        path: relayed.and_then(|r| r.id.clone()),
                        status,
                        recipient,
                    }
                }
                Disposition::Bounce { .. } => {
                    let report = bounce_of(&recipient);
                    DeliveryRecord {
                        kind: "bounce",
                        folder: None,
                        path: bounce_path(report),
                        status: report.map_or("not bounced, retry".into(), |b| b.to_string()),
                        recipient,
                    }
                }
                Disposition::Drop { .. } => DeliveryRecord {
                    kind: "drop",
                    folder: None,
                    path: None,
                    status: "dropped".into(),
                    recipient,
                },
            };
            records.push(record);
        }
    }
    for r in &handled.replies {
        records.push(DeliveryRecord {
            recipient: r.to.clone(),
            kind: "reply",
            folder: None,
            path: match &r.status {
                ReplyStatus::Sent { id } | ReplyStatus::Resent { id } => Some(id.clone()),
                _ => None,
            },
            status: format!("auto-reply from {}: {}", r.from, r.status),
        });
    }
    records
}

/// Cuts a string for display.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// One action, the way a person reads it.
pub fn describe(action: &Action) -> String {
    match action {
        Action::AddHeader(h) => format!("add-header {}: {}", h.name, short(&h.value, 60)),
        Action::SetHeader(h) => format!("set-header {}: {}", h.name, short(&h.value, 60)),
        Action::RemoveHeader(n) => format!("remove-header {n}"),
        Action::PrefixSubject(p) => format!("prefix-subject {p:?}"),
        Action::AddBanner(b) => format!(
            "add-banner ({}{}) {:?}",
            match b.position {
                Position::Top => "top",
                Position::Bottom => "bottom",
            },
            if b.html.is_some() { ", html" } else { "" },
            short(&b.text, 50)
        ),
        Action::SetRecipients(r) => format!("set-recipients {}", r.join(", ")),
        Action::AddRecipients(r) => format!("add-recipients {}", r.join(", ")),
        Action::FileInto(f) => format!("file-into {f}"),
        Action::Bounce(b) => format!("bounce {} {} {}", b.code, b.status, b.text),
        Action::Drop => "drop".into(),
        Action::Stop => "stop".into(),
    }
}

/// One `replace-part`, the way a person reads it (listed after the step's other actions).
pub fn describe_replacement(r: &sluice_mail::PartReplacement) -> String {
    format!("replace-part {} {:?}", r.id, short(&r.text, 60))
}

/// Every action of a step as [`describe`] and [`describe_replacement`] write them.
pub fn step_actions(step: &sluice_chain::StepTrace) -> impl Iterator<Item = String> + '_ {
    step.actions
        .iter()
        .map(describe)
        .chain(step.replacements.iter().map(describe_replacement))
}

/// The readable trace of `sluice run`.
pub fn text(result: &ProcessResult, deliveries: &[DeliveryRecord], envelope: &Envelope) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "message {} ({} bytes) from <{}>",
        result.message_id, result.size, envelope.mail_from
    );
    for group in &result.groups {
        let _ = writeln!(
            out,
            "\ndomain {} — {}{}",
            group.domain,
            group.recipients.join(", "),
            group
                .handed_from
                .as_ref()
                .map(|d| format!(" (added by {d}'s chain)"))
                .unwrap_or_default()
        );
        if !group.handed_off.is_empty() {
            let _ = writeln!(
                out,
                "  handed to their own domains' chains: {}",
                group.handed_off.join(", ")
            );
        }
        if group.steps.is_empty() {
            let _ = writeln!(out, "  (no steps)");
        }
        for (i, step) in group.steps.iter().enumerate() {
            let audit = if step.mode == StepMode::Audit {
                " [audit: not applied]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:>2}. {:<14} {:<10} {:>8} µs{audit}",
                i + 1,
                step.step,
                step.outcome,
                step.micros
            );
            for action in step_actions(step) {
                let _ = writeln!(out, "        -> {action}");
            }
            if let Some(error) = &step.error {
                let policy = step
                    .policy
                    .map(|p| format!(" (on_error = {})", format!("{p:?}").to_lowercase()))
                    .unwrap_or_default();
                let _ = writeln!(out, "        !! {error}{policy}");
            }
            for line in &step.logs {
                let _ = writeln!(
                    out,
                    "        {} {}: {}",
                    line.source,
                    line.level_name(),
                    short(&line.text, 200)
                );
            }
        }
        if let Some(e) = &group.edit_error {
            let _ = writeln!(out, "  !! edits not applied, original delivered: {e}");
        } else if matches!(group.output, Some(OutputMessage::Edited(_))) {
            let _ = writeln!(out, "  {} edit(s) applied", group.edits.len());
            if let Some(note) = &group.edit_note {
                let _ = writeln!(out, "  note: {note}");
            }
        }
        if let GroupOutcome::Tempfail { reason } = &group.outcome {
            let _ = writeln!(out, "  TEMPFAIL: {reason} — nothing delivered, retry later");
        }
    }
    let _ = writeln!(out, "\ndeliveries:");
    for d in deliveries {
        let _ = writeln!(
            out,
            "  {:<32} {:<8} {:<8} {:<10} {}",
            d.recipient,
            d.kind,
            d.folder.as_deref().unwrap_or("-"),
            d.status,
            d.path.as_deref().unwrap_or("-")
        );
    }
    out
}

/// The JSON of `sluice run --json`: `steps[]` (every step of every group, with its domain),
/// `deliveries[]`, and the full `groups[]`.
pub fn json(result: &ProcessResult, deliveries: &[DeliveryRecord]) -> String {
    let steps: Vec<serde_json::Value> = result
        .groups
        .iter()
        .flat_map(|g| {
            g.steps.iter().map(move |s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["domain"] = serde_json::Value::String(g.domain.clone());
                v
            })
        })
        .collect();
    let value = serde_json::json!({
        "message_id": result.message_id,
        "size": result.size,
        "tempfail": result.tempfailed(),
        "steps": steps,
        "deliveries": deliveries,
        "groups": result.groups,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// What `sluice check` prints.
pub fn chains(config: &ConfigFile, chains: &RuleChains, engine: &RuleEngine) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: ok ({} domain(s){}, pooling allocator {})",
        config.source.name,
        chains.chains().len(),
        match chains.outbound_chains().len() {
            0 => String::new(),
            n => format!(", {n} outbound"),
        },
        if engine.pooling() { "on" } else { "off" }
    );
    for u in config.unreachable_addresses() {
        let _ = writeln!(
            out,
            "warning: {}:{}: step {} of domain {} names {}, which is in no configured domain and {}: mail a rule sends there reaches nobody (it is kept under _undeliverable/ and alarmed)",
            config.source.name,
            u.line,
            u.step,
            u.domain,
            u.address,
            if config.relay.is_some() {
                "not in [relay] allow_domains"
            } else {
                "there is no [relay]"
            }
        );
    }
    for (name, section) in &config.directories {
        let place = match section.kind {
            sluice_directory::DirectoryKind::Dynamodb => {
                format!("dynamodb table {}", section.table.as_deref().unwrap_or("?"))
            }
            sluice_directory::DirectoryKind::File => {
                format!("file {}", section.path.as_deref().unwrap_or("?"))
            }
        };
        let _ = writeln!(out, "directory {name}: {place}");
    }
    if let Some(sealer) = &config.arc {
        let (name, record) = sealer.dns_record();
        let _ = writeln!(
            out,
            "arc: sealing changed and relayed copies as d={} s={}; receivers need the TXT record\n  {name}  \"{record}\"",
            sealer.domain(),
            sealer.selector(),
        );
    }
    let all = chains.chains().iter().map(|c| ("domain", c));
    let outbound = chains.outbound_chains().iter().map(|c| ("outbound", c));
    for (table, chain) in all.chain(outbound) {
        let _ = writeln!(out, "{table} {}", chain.domain);
        for (i, step) in chain.steps.iter().enumerate() {
            let loaded = match step.plugin.source() {
                LoadSource::Compiled { micros } => format!("compiled in {} ms", micros / 1000),
                LoadSource::Cache { micros } => format!("from cache in {micros} µs"),
                LoadSource::Precompiled { micros } => format!("precompiled, loaded in {micros} µs"),
            };
            let warm = step
                .warm
                .as_ref()
                .map(|pool| {
                    let w = pool.settings();
                    format!(
                        " instances=warm(max_messages={}, max_age={}s, max_idle={})",
                        w.max_messages,
                        w.max_age.as_secs(),
                        w.max_idle
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>2}. {:<14} sha256={} {} KiB, {loaded}{} timeout={}ms memory={}MiB on_error={}{}{warm}",
                i + 1,
                step.name,
                &step.plugin.sha256()[..16],
                step.plugin.size() / 1024,
                if step.plugin.uses_wasi() {
                    " (wasi)"
                } else {
                    ""
                },
                step.limits.timeout.as_millis(),
                step.limits.memory_bytes >> 20,
                format!("{:?}", step.on_error).to_lowercase(),
                if step.mode == StepMode::Audit {
                    " mode=audit"
                } else {
                    ""
                },
            );
            let mut grants = Vec::new();
            if !step.grants.lookups.is_empty() {
                grants.push(format!("lookups=[{}]", step.grants.lookups.join(", ")));
            }
            if let Some(http) = &step.grants.http {
                let allow: Vec<&str> = http.allow.iter().map(|a| a.text.as_str()).collect();
                grants.push(format!(
                    "http=[{}] timeout={}ms max_response={}KiB",
                    allow.join(", "),
                    http.timeout.as_millis(),
                    http.max_response_bytes >> 10
                ));
            }
            if let Some(reply) = &step.grants.reply {
                grants.push(format!("reply=once-per-{}-days", reply.once_per_days));
            }
            let grants = if grants.is_empty() {
                "none".to_string()
            } else {
                grants.join(" ")
            };
            let _ = writeln!(out, "      grants: {grants}");
            if let Some(hint) = warm_hint(step.plugin.runtime(), step.warm.is_some()) {
                let _ = writeln!(out, "      {hint}");
            }
        }
    }
    out
}

/// For an interpreted rule in fresh instances: what warm instances would save.
fn warm_hint(runtime: RuleRuntime, warm: bool) -> Option<String> {
    let language = match runtime {
        RuleRuntime::Native => return None,
        RuleRuntime::JavaScript => "JavaScript",
        RuleRuntime::Python => "Python",
    };
    (!warm).then(|| {
        format!(
            "note: a {language} rule starts its interpreter in every fresh instance; \
             instances = \"warm\" starts it once (5-30x less per message) if the rule keeps \
             nothing about a message between calls (docs/sandbox.md)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreted_rules_in_fresh_instances_get_a_hint() {
        assert_eq!(warm_hint(RuleRuntime::Native, false), None);
        assert_eq!(warm_hint(RuleRuntime::JavaScript, true), None);
        let hint = warm_hint(RuleRuntime::Python, false).unwrap();
        assert!(
            hint.contains("Python") && hint.contains("instances = \"warm\""),
            "{hint}"
        );
        assert!(!hint.contains("  "), "{hint}");
    }
}
