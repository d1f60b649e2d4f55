//! What `sluice run` and `sluice check` print.

use std::fmt::Write;

use sluice_chain::{
    ConfigFile, DeliveryRecord, Envelope, GroupOutcome, OutputMessage, ProcessResult, RuleChains,
    StepMode,
};
use sluice_engine::{Action, LoadSource, Position, RuleEngine};

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
            for action in &step.actions {
                let _ = writeln!(out, "        -> {}", describe(action));
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
                    format!("{:?}", line.level).to_lowercase(),
                    short(&line.text, 200)
                );
            }
        }
        if let Some(e) = &group.edit_error {
            let _ = writeln!(out, "  !! edits not applied, original delivered: {e}");
        } else if matches!(group.output, Some(OutputMessage::Edited(_))) {
            let _ = writeln!(out, "  {} edit(s) applied", group.edits.len());
        }
        if let GroupOutcome::Tempfail { reason } = &group.outcome {
            let _ = writeln!(out, "  TEMPFAIL: {reason} — nothing delivered, retry later");
        }
    }
    let _ = writeln!(out, "\ndeliveries:");
    for d in deliveries {
        let _ = writeln!(
            out,
            "  {:<32} {:<8} {:<8} {}",
            d.recipient,
            d.kind,
            d.folder.as_deref().unwrap_or("-"),
            d.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into())
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
        "{}: ok ({} domain(s), pooling allocator {})",
        config.source.name,
        chains.chains().len(),
        if engine.pooling() { "on" } else { "off" }
    );
    for chain in chains.chains() {
        let _ = writeln!(out, "domain {}", chain.domain);
        for (i, step) in chain.steps.iter().enumerate() {
            let loaded = match step.plugin.source() {
                LoadSource::Compiled { micros } => format!("compiled in {} ms", micros / 1000),
                LoadSource::Cache { micros } => format!("from cache in {micros} µs"),
            };
            let _ = writeln!(
                out,
                "  {:>2}. {:<14} sha256={} {} KiB, {loaded}{} timeout={}ms memory={}MiB on_error={}{}",
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
        }
    }
    out
}
