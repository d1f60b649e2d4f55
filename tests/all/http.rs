//! Rules that call a service: the `http` capability (WIT 0.1.4), granted per step by URL
//! prefix, against a real HTTP service on loopback.

use std::time::{Duration, Instant};

use sluice_chain::{Disposition, GroupOutcome, OnError, StepStatus};
use sluice_engine::{Action, HttpResult};
use sluice_tests::classifier::Classifier;
use sluice_tests::{chains, process, try_chains};

/// One domain whose only step is `rule-classify` calling `url`, with `grant` as its `http`
/// line (or none) and `on_error`.
fn classify_chain(url: &str, grant: &str, on_error: &str) -> String {
    format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:rule-classify}}"
name = "classify"
timeout_ms = 5000
on_error = "{on_error}"
{grant}
config = {{ url = "{url}" }}
"#
    )
}

fn header<'a>(actions: &'a [Action], name: &str) -> Option<&'a str> {
    actions.iter().find_map(|a| match a {
        Action::AddHeader(h) if h.name == name => Some(h.value.as_str()),
        _ => None,
    })
}

#[test]
fn an_allowed_call_reaches_the_service_and_its_answer_routes_the_message() {
    let service = Classifier::start();
    let grant = format!(
        r#"http = {{ allow = ["{}"], timeout_ms = 4000 }}"#,
        service.url("/v1/")
    );
    let chains = chains(&classify_chain(
        &service.url("/v1/score?id=7"),
        &grant,
        "continue",
    ));
    let result = process(&chains, "plain-lf.eml", &["bob@example.com"]);
    let group = &result.groups[0];
    let step = &group.steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{step:#?}");
    assert_eq!(header(&step.actions, "X-Classifier-Status"), Some("200"));
    assert_eq!(
        header(&step.actions, "X-Classifier"),
        Some(r#"{"verdict":"spam"}"#)
    );
    assert_eq!(
        group.dispositions,
        [Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "Junk".into()
        }]
    );
    // The service got the rule's request as sent.
    assert_eq!(
        service.seen(),
        [(
            "POST".to_string(),
            "/v1/score?id=7".to_string(),
            r#"{"subject":"Quick question"}"#.to_string()
        )]
    );
    // The trace shows the call, without its query.
    assert_eq!(step.http.len(), 1, "{step:#?}");
    let call = &step.http[0];
    assert_eq!(
        (call.method.as_str(), call.url.as_str()),
        ("POST", service.url("/v1/score").as_str())
    );
    assert_eq!(
        call.result,
        HttpResult::Answered {
            status: 200,
            bytes: r#"{"verdict":"spam"}"#.len()
        }
    );
}

#[test]
fn a_url_outside_the_allow_list_fails_inside_the_rule_and_nothing_is_sent() {
    let service = Classifier::start();
    for grant in [
        format!(r#"http = {{ allow = ["{}"] }}"#, service.url("/v1/")),
        String::new(),
    ] {
        let chains = chains(&classify_chain(
            &service.url("/admin/reset"),
            &grant,
            "continue",
        ));
        let result = process(&chains, "plain-lf.eml", &["bob@example.com"]);
        let group = &result.groups[0];
        let step = &group.steps[0];
        assert_eq!(step.outcome, StepStatus::RuleError, "{step:#?}");
        assert_eq!(step.policy, Some(OnError::Continue));
        let error = step.error.as_deref().unwrap_or_default();
        if grant.is_empty() {
            assert!(error.contains("is not granted HTTP"), "{error}");
        } else {
            assert!(
                error.contains("is not granted to step \"classify\""),
                "{error}"
            );
            assert!(
                error.contains(&service.url("/v1/")),
                "names what it may call: {error}"
            );
        }
        assert_eq!(step.http.len(), 1);
        assert_eq!(step.http[0].result, HttpResult::Denied);
        // on_error = continue: the message goes on, untouched.
        assert_eq!(
            group.dispositions,
            [Disposition::Deliver {
                recipient: "bob@example.com".into(),
                folder: "INBOX".into()
            }]
        );
    }
    assert_eq!(service.seen(), [], "no request left the host");
}

#[test]
fn a_slow_service_hits_the_grants_timeout_and_the_steps_on_error_applies() {
    let service = Classifier::start();
    let grant = format!(
        r#"http = {{ allow = ["{}"], timeout_ms = 150 }}"#,
        service.url("/slow")
    );
    // continue: delivered without the verdict.
    let started = Instant::now();
    let chains_continue = chains(&classify_chain(&service.url("/slow"), &grant, "continue"));
    let result = process(&chains_continue, "plain-lf.eml", &["bob@example.com"]);
    let took = started.elapsed();
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::RuleError, "{step:#?}");
    assert!(
        step.error
            .as_deref()
            .unwrap_or_default()
            .contains("no answer within"),
        "{step:#?}"
    );
    assert!(matches!(
        step.http[0].result,
        HttpResult::Failed {
            temporary: true,
            ..
        }
    ));
    assert!(step.http[0].micros < 3_000_000, "{:?}", step.http[0]);
    assert!(
        took < Duration::from_millis(1500),
        "waited {took:?} for a 2 s service"
    );
    assert_eq!(
        result.groups[0].dispositions,
        [Disposition::Deliver {
            recipient: "bob@example.com".into(),
            folder: "INBOX".into()
        }]
    );
    // bounce: a temporary error is never a bounce; the message is retried.
    let chains_bounce = chains(&classify_chain(&service.url("/slow"), &grant, "bounce"));
    let result = process(&chains_bounce, "plain-lf.eml", &["bob@example.com"]);
    assert!(
        matches!(result.groups[0].outcome, GroupOutcome::Tempfail { .. }),
        "{:#?}",
        result.groups[0]
    );
    assert!(result.groups[0].dispositions.is_empty());
}

#[test]
fn redirects_come_back_to_the_rule_and_are_not_followed() {
    let service = Classifier::start();
    let grant = format!(r#"http = {{ allow = ["{}"] }}"#, service.url("/moved"));
    let chains = chains(&classify_chain(&service.url("/moved"), &grant, "continue"));
    let result = process(&chains, "plain-lf.eml", &["bob@example.com"]);
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::Ok, "{step:#?}");
    assert_eq!(header(&step.actions, "X-Classifier-Status"), Some("302"));
    assert_eq!(service.seen().len(), 1, "one request, to the service only");
}

#[test]
fn bad_http_grants_fail_the_config_at_their_step() {
    let err = try_chains(&classify_chain(
        "http://127.0.0.1:1/",
        r#"http = { allow = ["http://127.0.0.1:1/"], timeout_ms = 9000 }"#,
        "continue",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("test.toml:4") && err.contains("longer than the step's deadline"),
        "{err}"
    );
}
