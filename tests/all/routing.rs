//! Recipients a rule adds in another configured domain go through that domain's chain:
//! no chain can deliver into another domain's mailboxes past that domain's rules.

use sluice_chain::{Disposition, RuleChains, MAX_HANDOFFS};
use sluice_tests::{chains, fixture, output_of, process};

/// `a.example` adds (or redirects to) recipients; `b.example` tags what it sees with
/// `X-Chain-B` and `a.example` tags with `X-Chain-A`.
fn two_domains(a_actions: &str, b_actions: &str) -> RuleChains {
    chains(&format!(
        r#"
[[domain]]
name = "a.example"
[[domain.step]]
plugin = "{{rule:rule-headers}}"
config = {{ actions = [ {{ add_header = ["X-Chain-A", "ran"] }}, {a_actions} ] }}

[[domain]]
name = "b.example"
[[domain.step]]
plugin = "{{rule:rule-headers}}"
config = {{ actions = [ {{ add_header = ["X-Chain-B", "ran"] }}, {b_actions} ] }}
"#
    ))
}

fn deliveries(result: &sluice_chain::ProcessResult) -> Vec<(String, String)> {
    result
        .groups
        .iter()
        .flat_map(|g| g.dispositions.iter().map(|d| (g.domain.clone(), d.clone())))
        .filter_map(|(domain, d)| match d {
            Disposition::Deliver { recipient, .. } => Some((domain, recipient)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_recipient_added_in_another_domain_goes_through_that_domains_chain() {
    let original = fixture("plain-lf.eml");
    for (a, b, expect) in [
        // a.example adds b.example: B's chain must run for bob@b.example.
        (
            r#"{ add_recipients = ["bob@b.example"] }"#,
            r#""stop""#,
            vec![
                ("a.example", "alice@a.example"),
                ("b.example", "bob@b.example"),
            ],
        ),
        // Redirect: only bob, still through B's chain.
        (
            r#"{ set_recipients = ["bob@b.example"] }"#,
            r#""stop""#,
            vec![("b.example", "bob@b.example")],
        ),
    ] {
        let result = process(&two_domains(a, b), "plain-lf.eml", &["alice@a.example"]);
        let got = deliveries(&result);
        let want: Vec<(String, String)> = expect
            .iter()
            .map(|(d, r)| (d.to_string(), r.to_string()))
            .collect();
        assert_eq!(got, want, "{result:#?}");
        let b_index = result
            .groups
            .iter()
            .position(|g| g.domain == "b.example")
            .expect("b.example's chain ran");
        let b = &result.groups[b_index];
        assert_eq!(b.handed_from.as_deref(), Some("a.example"));
        assert_eq!(b.steps.len(), 1, "B's chain ran its step");
        let out = String::from_utf8(output_of(&result, b_index, &original)).unwrap();
        assert!(out.contains("X-Chain-B: ran"), "{out}");
        // B's copy is the message as received plus B's edits, not A's.
        assert!(!out.contains("X-Chain-A"), "{out}");
        assert_eq!(
            result.groups[0].handed_off,
            vec!["bob@b.example".to_string()]
        );
    }
}

#[test]
fn the_other_direction_and_the_other_domains_verdict_hold() {
    // b.example adds a.example; a.example's chain refuses it: nothing is delivered to alice.
    let chains = two_domains(
        r#"{ bounce = { code = 550, status = "5.1.1", text = "no such user" } }"#,
        r#"{ add_recipients = ["alice@a.example"] }"#,
    );
    let result = process(&chains, "plain-lf.eml", &["bob@b.example"]);
    assert_eq!(
        deliveries(&result),
        vec![("b.example".to_string(), "bob@b.example".to_string())]
    );
    let a = result
        .groups
        .iter()
        .find(|g| g.domain == "a.example")
        .unwrap();
    assert!(
        matches!(&a.dispositions[..], [Disposition::Bounce { recipient, code: 550, .. }] if recipient == "alice@a.example"),
        "{:#?}",
        a.dispositions
    );
}

#[test]
fn a_recipient_already_handled_is_not_delivered_twice() {
    // Both are envelope recipients; A also adds bob. B's chain runs once, bob gets one copy.
    let chains = two_domains(r#"{ add_recipients = ["bob@b.example"] }"#, r#""stop""#);
    let result = process(
        &chains,
        "plain-lf.eml",
        &["alice@a.example", "bob@b.example"],
    );
    assert_eq!(
        deliveries(&result),
        vec![
            ("a.example".to_string(), "alice@a.example".to_string()),
            ("b.example".to_string(), "bob@b.example".to_string())
        ]
    );
    assert_eq!(result.groups.len(), 2);
}

#[test]
fn chains_that_hand_recipients_back_and_forth_end() {
    // Each chain adds the other's address: A -> B -> A is cut by "already handled".
    let chains = two_domains(
        r#"{ add_recipients = ["bob@b.example"] }"#,
        r#"{ add_recipients = ["alice@a.example"] }"#,
    );
    let result = process(&chains, "plain-lf.eml", &["alice@a.example"]);
    assert_eq!(result.groups.len(), 2, "{result:#?}");
    assert_eq!(
        deliveries(&result),
        vec![
            ("a.example".to_string(), "alice@a.example".to_string()),
            ("b.example".to_string(), "bob@b.example".to_string())
        ]
    );
}

#[test]
fn endless_new_hand_offs_bounce_as_a_routing_loop() {
    // A sends to b1, B sends to a1, A (for a1) sends to b1 again ... with set_recipients every
    // round names one new address, until the hand-off limit.
    let chains = chains(
        r#"
[[domain]]
name = "a.example"
[[domain.step]]
plugin = "{rule:alias}"
config = { aliases = { "a0" = "b1@b.example", "a1" = "b2@b.example", "a2" = "b3@b.example", "a3" = "b4@b.example", "a4" = "b5@b.example" } }

[[domain]]
name = "b.example"
[[domain.step]]
plugin = "{rule:alias}"
config = { aliases = { "b1" = "a1@a.example", "b2" = "a2@a.example", "b3" = "a3@a.example", "b4" = "a4@a.example", "b5" = "a5@a.example" } }
"#,
    );
    let result = process(&chains, "plain-lf.eml", &["a0@a.example"]);
    let last = result.groups.last().unwrap();
    assert!(
        matches!(&last.dispositions[..], [Disposition::Bounce { code: 554, status, .. }] if status == "5.4.6"),
        "{result:#?}"
    );
    assert!(
        result.groups.len() <= MAX_HANDOFFS + 2,
        "{}",
        result.groups.len()
    );
    assert!(deliveries(&result).is_empty());
}
