//! The two tracks of the rule world side by side: rules built against `sluice:rules@0.1.x`
//! (the context lowered as a record) and `@0.2` (a `context` resource read through getters)
//! in one chain, in fresh and warm instances; and what a 0.2 rule makes the host lower.

use std::sync::Arc;

use sluice_chain::StepStatus;
use sluice_engine::{
    Action, Context, ContextReads, Flow, MessageSession, RulePlugin, StepGrants, StepLimits,
    StepOutcome, Verdict, WarmPool, WarmSettings, WitTrack,
};
use sluice_tests::{chains, engine, envelope, fixture, message, unknown_verdicts};

fn plugin(name: &str) -> RulePlugin {
    RulePlugin::load_file(engine(), name, &sluice_tests::rule(name)).expect("the rule loads")
}

/// The value of the header the step added.
fn added(actions: &[Action], name: &str) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::AddHeader(h) if h.name == name => Some(h.value.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} in {actions:?}"))
}

#[test]
fn each_rule_is_loaded_on_the_track_it_was_built_for() {
    assert_eq!(plugin("rule-legacy").wit_track(), WitTrack::V0_1);
    assert_eq!(plugin("rule-legacy-015").wit_track(), WitTrack::V0_1);
    assert_eq!(plugin("rule-context-02").wit_track(), WitTrack::V0_2);
    assert_eq!(plugin("rule-empty").wit_track(), WitTrack::V0_2);
    // 0.2.0 (no `replace-part` in its `action`, no `reply` import) and 0.2.1 are one track.
    assert_eq!(plugin("rule-legacy-020").wit_track(), WitTrack::V0_2);
    assert_eq!(plugin("rule-replace-part").wit_track(), WitTrack::V0_2);
}

/// A rule built against 0.2.0 and one built against 0.2.1 that strips the PDF, in one chain:
/// both answers land (the 0.2.0 rule's header and subject prefix, the 0.2.1 rule's note in
/// place of the attachment).
#[test]
fn a_0_2_0_rule_and_a_0_2_1_strip_run_in_one_chain() {
    let chains = chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-legacy-020}"
[[domain.step]]
plugin = "{rule:rule-replace-part}"
config = { ids = [4], note = "menu.pdf was removed by policy." }
"#,
    );
    let result = chains.process(
        engine(),
        message(&fixture("alternative-attachment.eml")),
        &envelope(&["bob@example.com"]),
    );
    let group = &result.groups[0];
    for s in &group.steps {
        assert_eq!(s.outcome, StepStatus::Ok, "{:?}", s.error);
    }
    assert_eq!(
        added(&group.steps[0].actions, "X-Legacy-020"),
        "0.2.0 saw example.com bob@example.com attachments=1"
    );
    let parts = added(&group.steps[1].actions, "X-Parts");
    assert!(
        parts.contains("4:application/pdf:document/pdf:0"),
        "{parts}"
    );
    assert_eq!(group.steps[1].replacements.len(), 1);
    assert_eq!(group.edit_error, None);
    let Some(sluice_chain::OutputMessage::Edited(out)) = &group.output else {
        panic!("not edited: {:?}", group.output)
    };
    let text = String::from_utf8_lossy(out.raw()).replace("\r\n", "\n");
    assert!(
        text.contains("\nmenu.pdf was removed by policy.\n"),
        "{text}"
    );
    assert!(!text.contains("filename=\"menu.pdf\""), "{text}");
    assert_eq!(out.header("X-Legacy-020").len(), 1);
    assert!(out.subject().is_some_and(|s| s.starts_with("[020] ")));
    assert_eq!(
        out.parts().len(),
        message(&fixture("alternative-attachment.eml"))
            .parts()
            .len()
    );
}

/// A `replace-part` of the whole message, of a multipart or of a part the message lacks
/// fails the step that made it, naming the action by its index in the rule's list.
#[test]
fn a_replace_part_of_no_leaf_fails_its_step() {
    for (id, says) in [
        (0, "part 0 is the whole message"),
        (1, "no leaf part 1"),
        (99, "no leaf part 99"),
    ] {
        let chains = chains(&format!(
            r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:rule-replace-part}}"
config = {{ ids = [{id}], note = "gone" }}
"#
        ));
        let result = chains.process(
            engine(),
            message(&fixture("alternative-attachment.eml")),
            &envelope(&["bob@example.com"]),
        );
        let step = &result.groups[0].steps[0];
        assert_eq!(step.outcome, StepStatus::Failed, "{id}");
        let error = step.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("#1") && error.contains(says),
            "{id}: {error}"
        );
    }
}

/// 0.2.1 added the `reply` import: a component built against 0.2.0 (which imports
/// `sluice:rules/*@0.2.0` and no `reply`) still loads and runs beside one built against
/// 0.2.1 (the reference `auto-reply`, which imports `reply@0.2.1`).
#[test]
fn a_rule_built_against_0_2_0_still_loads_beside_0_2_1() {
    let bytes = std::fs::read(sluice_tests::rule("rule-legacy-020")).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("sluice:rules/types@0.2.0"), "built against 0.2.0");
    assert!(!has("sluice:rules/reply@"), "0.2.0 has no reply import");
    let newer = std::fs::read(sluice_tests::rule("auto-reply")).unwrap();
    let has_newer = |needle: &str| newer.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has_newer("sluice:rules/reply@0.2.1"),
        "auto-reply imports reply@0.2.1"
    );
    let chains = chains(
        r#"
[relay]
kind = "ses"
from = "forwarder@example.com"
markers = "unused-claims"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:rule-legacy-020}"
[[domain.step]]
plugin = "{rule:auto-reply}"
reply = { once_per_days = 1 }
config = { recipients = { "bob@example.com" = { text = "Away" } } }
"#,
    );
    let env = envelope(&["bob@example.com"]);
    let result = chains.process(engine(), message(&fixture("plain-lf.eml")), &env);
    let steps = &result.groups[0].steps;
    for s in steps {
        assert_eq!(s.outcome, StepStatus::Ok, "{:?}", s.error);
    }
    assert_eq!(
        added(&steps[0].actions, "X-Legacy-020"),
        "0.2.0 saw example.com bob@example.com attachments=0"
    );
    assert_eq!(result.groups[0].replies.len(), 1, "the 0.2.1 rule asked");
}

#[test]
fn rules_of_0_1_0_0_1_5_and_0_2_run_in_one_chain_and_see_the_same_facts() {
    for instances in ["fresh", "warm"] {
        let chains = chains(&format!(
            r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:rule-legacy}}"
instances = "{instances}"
[[domain.step]]
plugin = "{{rule:rule-legacy-015}}"
instances = "{instances}"
config = {{ note = "same", n = 2 }}
[[domain.step]]
plugin = "{{rule:rule-context-02}}"
instances = "{instances}"
config = {{ note = "same", n = 2 }}
"#
        ));
        let mut env = envelope(&["bob@example.com", "carol@example.com"]);
        env.verdicts.spf = Verdict::Pass;
        env.verdicts.dmarc_policy = Some("reject".into());
        // Twice: a warm instance's second message must see its own facts too.
        for (round, rcpts) in [["bob@example.com"], ["carol@example.com"]]
            .iter()
            .enumerate()
        {
            env.recipients = rcpts.iter().map(|s| s.to_string()).collect();
            env.message_id = format!("m-{round}");
            let result = chains.process(engine(), message(&fixture("plain-lf.eml")), &env);
            let steps = &result.groups[0].steps;
            for s in steps {
                assert_eq!(s.outcome, StepStatus::Ok, "{instances}: {:?}", s.error);
            }
            assert_eq!(
                added(&steps[0].actions, "X-Legacy-Rule"),
                "0.1.0 saw Quick question"
            );
            let v015 = added(&steps[1].actions, "X-Context-015");
            let v02 = added(&steps[2].actions, "X-Context-02");
            assert_eq!(v015, v02, "{instances}: both tracks get the same context");
            assert!(
                v02.starts_with(&format!("domain=example.com recipients={} ", rcpts[0])),
                "{v02}"
            );
            assert!(v02.contains(" spf=pass dmarc-policy=reject "), "{v02}");
            assert!(v02.contains(&format!(" message-id=m-{round} ")), "{v02}");
            assert!(v02.contains(r#""note":"same""#), "{v02}");
            assert!(v02.ends_with(" direction=inbound"), "{v02}");
        }
    }
}

fn context() -> Arc<Context> {
    let mut verdicts = unknown_verdicts();
    verdicts.spf = Verdict::Fail;
    Arc::new(Context {
        domain: "example.com".into(),
        recipients: vec!["bob@example.com".into()],
        mail_from: "a@outside.example".into(),
        verdicts,
        received_at: 0,
        message_id: "m".into(),
        // Large, like an alias table: a rule that does not read it must not pay for it.
        config: format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000)),
    })
}

fn spf_header(outcome: &StepOutcome) -> String {
    match outcome {
        StepOutcome::Actions { actions, .. } => added(actions, "X-Spf"),
        other => panic!("{other:?}"),
    }
}

/// `rule-spf-only` has `NoConfig`: a config with a key fails it. Its steps get `{}`.
fn empty_config(ctx: &Arc<Context>) -> Arc<Context> {
    let mut c = (**ctx).clone();
    c.config = "{}".into();
    Arc::new(c)
}

#[test]
fn a_0_2_rule_reads_only_what_it_asks_and_its_config_once_per_instance() {
    let spf_only = plugin("rule-spf-only");
    let ctx = empty_config(&context());
    let limits = StepLimits::default();
    let grants = StepGrants::default();
    let msg = message(&fixture("plain-lf.eml"));
    let one_verdict_and_the_config = ContextReads {
        verdicts: 1,
        config: 1,
        ..ContextReads::default()
    };

    // Fresh: every message is a new instance, which reads the config for itself.
    for _ in 0..3 {
        let mut session = MessageSession::new(engine(), msg.clone()).with_flow(Flow::inbound());
        let report = session.run_step("spf", &spf_only, &limits, &grants, &ctx);
        assert_eq!(spf_header(&report.outcome), "fail");
        assert_eq!(report.context_reads, one_verdict_and_the_config);
    }

    // Warm: one instance serves every message and reads the config on the first only.
    let pool = WarmPool::new(WarmSettings::default());
    let mut reads = Vec::new();
    for _ in 0..5 {
        let mut session = MessageSession::new(engine(), msg.clone());
        let report = session.run_step_warm("spf", &spf_only, &limits, &grants, &ctx, &pool);
        assert_eq!(spf_header(&report.outcome), "fail");
        reads.push(report.context_reads);
    }
    assert_eq!(pool.stats().created, 1, "one warm instance");
    assert_eq!(reads[0], one_verdict_and_the_config);
    for later in &reads[1..] {
        assert_eq!(
            *later,
            ContextReads {
                verdicts: 1,
                ..ContextReads::default()
            },
            "a warm instance keeps its parsed config"
        );
    }
}

#[test]
fn a_0_1_rule_gets_the_whole_record_and_no_getter_calls() {
    let legacy = plugin("rule-legacy-015");
    let mut ctx = (*context()).clone();
    ctx.config = r#"{"k":"v"}"#.into();
    let ctx = Arc::new(ctx);
    let mut session = MessageSession::new(engine(), message(&fixture("plain-lf.eml")));
    let report = session.run_step(
        "legacy",
        &legacy,
        &StepLimits::default(),
        &StepGrants::default(),
        &ctx,
    );
    let StepOutcome::Actions { actions, .. } = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(added(actions, "X-Context-015").contains(&ctx.config));
    assert!(report.context_reads.is_empty());
}

/// The subject-tag context and config of `languages.rs`, failed SPF and DKIM (so the banner
/// branch runs too).
fn subject_tag_context() -> Arc<Context> {
    let mut verdicts = unknown_verdicts();
    verdicts.spf = Verdict::Fail;
    verdicts.dkim = Verdict::Fail;
    Arc::new(Context {
        domain: "example.com".into(),
        recipients: vec!["bob@example.com".into()],
        mail_from: "a@outside.example".into(),
        verdicts,
        received_at: 0,
        message_id: "m".into(),
        config: r#"{"tag": "[EXT]", "internal_domains": ["example.com", "Sender.example"], "keywords": ["invoice", "Password", "meeting", "unsubscribe"], "keyword_folder": "Review"}"#.into(),
    })
}

/// The JavaScript and Python SDKs build for 0.2 (`plugin build`'s default), and the same
/// twins built against 0.1.5 still load on the 0.1 track and decide the same, fresh and
/// warm. A 0.2 build reads the step's config from the host once per instance and the fields
/// it uses only; a 0.1 build gets the record and makes no getter calls.
#[test]
fn javascript_and_python_rules_are_on_0_2_and_their_0_1_builds_still_load() {
    let limits = StepLimits {
        timeout: std::time::Duration::from_secs(10),
        memory_bytes: 256 << 20,
        ..StepLimits::default()
    };
    let grants = StepGrants::default();
    let ctx = subject_tag_context();
    let mut fixtures: Vec<_> = std::fs::read_dir(sluice_tests::fixtures())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 3, "{fixtures:?}");

    let current = sluice_tests::foreign_rules();
    let legacy = sluice_tests::foreign_rules_0_1();
    assert_eq!(current.len(), 2);
    for ((name, path), (legacy_name, legacy_path)) in current.iter().zip(legacy) {
        assert_eq!(name, legacy_name);
        let v02 = RulePlugin::load_file(engine(), name, path).expect("the 0.2 build loads");
        let v01 =
            RulePlugin::load_file(engine(), name, legacy_path).expect("the 0.1.5 build loads");
        assert_eq!(v02.wit_track(), WitTrack::V0_2, "{name} builds for 0.2");
        assert_eq!(v01.wit_track(), WitTrack::V0_1, "{name} against 0.1.5");

        let pool_02 = WarmPool::new(WarmSettings::default());
        let pool_01 = WarmPool::new(WarmSettings::default());
        let (mut tagged, mut untouched) = (0, 0);
        for (i, file) in fixtures.iter().enumerate() {
            let msg = message(&std::fs::read(file).unwrap());
            let fresh_02 = MessageSession::new(engine(), msg.clone())
                .run_step("tag", &v02, &limits, &grants, &ctx);
            let fresh_01 = MessageSession::new(engine(), msg.clone())
                .run_step("tag", &v01, &limits, &grants, &ctx);
            let warm_02 = MessageSession::new(engine(), msg.clone())
                .run_step_warm("tag", &v02, &limits, &grants, &ctx, &pool_02);
            let warm_01 = MessageSession::new(engine(), msg.clone())
                .run_step_warm("tag", &v01, &limits, &grants, &ctx, &pool_01);
            let actions = |report: &sluice_engine::StepReport| match &report.outcome {
                StepOutcome::Actions { actions, .. } => actions.clone(),
                other => panic!("{name} on {}: {other:?}", file.display()),
            };
            let want = actions(&fresh_02);
            for (what, report) in [
                ("fresh 0.1", &fresh_01),
                ("warm 0.2", &warm_02),
                ("warm 0.1", &warm_01),
            ] {
                assert_eq!(actions(report), want, "{name} {what} on {}", file.display());
            }
            if want.is_empty() {
                untouched += 1;
            } else {
                tagged += 1;
            }

            // 0.2: the config on an instance's first message only; never the recipients
            // (inbound), the domain or the message id, which the rule does not read.
            for (report, first) in [(&fresh_02, true), (&warm_02, i == 0)] {
                let reads = report.context_reads;
                assert_eq!(
                    reads.config,
                    u32::from(first),
                    "{name} on {}: {reads:?}",
                    file.display()
                );
                assert!(reads.verdicts <= 1, "{name}: {reads:?}");
                assert_eq!(
                    (
                        reads.domain,
                        reads.recipients,
                        reads.mail_from,
                        reads.message_id,
                        reads.received_at
                    ),
                    (0, 0, 0, 0, 0),
                    "{name}: {reads:?}"
                );
            }
            assert!(fresh_01.context_reads.is_empty() && warm_01.context_reads.is_empty());
        }
        assert!(
            tagged > 0 && untouched > 0,
            "{name}: {tagged} tagged, {untouched} left alone"
        );
        assert_eq!(pool_02.stats().created, 1, "{name}: one warm 0.2 instance");

        // What 0.2 changes for a warm instance per message, with this small config. Rough
        // figures (this build's host, the fixtures, a shared machine: the best of interleaved
        // rounds); the bench `languages` measures in release. Printed, not asserted.
        let msgs: Vec<_> = fixtures
            .iter()
            .map(|f| message(&std::fs::read(f).unwrap()))
            .collect();
        let pools = [
            WarmPool::new(WarmSettings::default()),
            WarmPool::new(WarmSettings::default()),
        ];
        let mut best = [f64::MAX; 2];
        for round in 0..11 {
            for (i, plugin) in [&v01, &v02].into_iter().enumerate() {
                let started = std::time::Instant::now();
                for msg in &msgs {
                    let report = MessageSession::new(engine(), msg.clone())
                        .run_step_warm("tag", plugin, &limits, &grants, &ctx, &pools[i]);
                    assert!(
                        matches!(report.outcome, StepOutcome::Actions { .. }),
                        "{:?}",
                        report.outcome
                    );
                }
                // Round 0 creates the instances.
                if round > 0 {
                    best[i] =
                        best[i].min(started.elapsed().as_secs_f64() * 1e6 / msgs.len() as f64);
                }
            }
        }
        println!(
            "{name}: warm, per message: 0.1.5 build {:.1} µs, 0.2 build {:.1} µs",
            best[0], best[1]
        );
    }
}
