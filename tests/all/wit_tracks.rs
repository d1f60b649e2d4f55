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
    assert_eq!(plugin("rule-legacy-020").wit_track(), WitTrack::V0_2);
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
        "0.2.0 saw example.com bob@example.com"
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
