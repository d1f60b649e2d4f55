//! Rules that consult data: the `lookup` capability (WIT 0.1.3), granted per step, served from
//! a `[directory.NAME]` table, and the alias rule reading the directory.

use sluice_chain::{Disposition, GroupOutcome, StepStatus};
use sluice_engine::LookupResult;
use sluice_tests::{chains, process, try_chains};

/// A file directory with one alias of each status, and the alias rule granted it (or not).
fn alias_chains(dir: &std::path::Path, grant: bool) -> sluice_chain::RuleChains {
    let file = dir.join("aliases.toml");
    std::fs::write(
        &file,
        r#"
[settings]
domains = ["example.com"]
destinations = ["@gmail.example"]
[aliases]
"shop-k3x9@example.com" = { to = ["alice@example.com", "me@gmail.example"] }
"old-q7@example.com" = { status = "paused", to = ["alice@example.com"] }
"list-z2@example.com" = { status = "ignored" }
"#,
    )
    .unwrap();
    chains(&format!(
        r#"
[directory.aliases]
kind = "file"
path = "{path}"

[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{{rule:alias}}"
{lookups}
config = {{ mailboxes = ["alice"], directory = "aliases" }}
"#,
        path = file.display(),
        lookups = if grant {
            r#"lookups = ["aliases"]"#
        } else {
            ""
        },
    ))
}

#[test]
fn the_alias_rule_routes_by_the_directory_and_the_trace_shows_each_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let chains = alias_chains(dir.path(), true);
    let result = process(
        &chains,
        "plain-lf.eml",
        &[
            "shop-k3x9+promo@example.com",
            "old-q7@example.com",
            "list-z2@example.com",
            "nobody@example.com",
        ],
    );
    let group = &result.groups[0];
    assert_eq!(group.outcome, GroupOutcome::Done, "{group:#?}");
    let mut got: Vec<String> = group
        .dispositions
        .iter()
        .map(|d| match d {
            Disposition::Deliver { recipient, .. } => format!("deliver {recipient}"),
            Disposition::Relay { recipient, .. } => format!("relay {recipient}"),
            Disposition::Bounce {
                recipient, status, ..
            } => format!("bounce {recipient} {status}"),
            Disposition::Drop { recipient } => format!("drop {recipient}"),
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "bounce nobody@example.com 5.1.1",
            "bounce old-q7@example.com 5.1.1",
            "deliver alice@example.com",
            "drop list-z2@example.com",
            "relay me@gmail.example",
        ],
        "{group:#?}"
    );
    let lookups = &group.steps[0].lookups;
    let found: Vec<&str> = lookups
        .iter()
        .filter(|l| l.result == LookupResult::Found)
        .map(|l| l.key.as_str())
        .collect();
    assert_eq!(
        found,
        [
            "shop-k3x9@example.com",
            "old-q7@example.com",
            "list-z2@example.com"
        ],
        "{lookups:#?}"
    );
    // The unknown address was looked up, then the domain's catch-all: both missing.
    let missing: Vec<&str> = lookups
        .iter()
        .filter(|l| l.result == LookupResult::Missing)
        .map(|l| l.key.as_str())
        .collect();
    assert_eq!(missing, ["nobody@example.com", "*@example.com"]);
    assert!(lookups.iter().all(|l| l.table == "aliases"));
}

#[test]
fn a_step_not_granted_the_table_is_refused_inside_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let chains = alias_chains(dir.path(), false);
    let result = process(&chains, "plain-lf.eml", &["shop-k3x9@example.com"]);
    let step = &result.groups[0].steps[0];
    assert_eq!(step.outcome, StepStatus::RuleError, "{step:#?}");
    let error = step.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("not granted") && error.contains(r#"lookups = ["aliases"]"#),
        "{error}"
    );
    assert_eq!(step.lookups[0].result, LookupResult::Denied);
    // on_error = continue: the recipient is delivered as addressed, nothing was routed on a
    // table the rule could not read.
    assert!(matches!(
        &result.groups[0].dispositions[..],
        [Disposition::Deliver { recipient, .. }] if recipient == "shop-k3x9@example.com"
    ));
}

#[test]
fn grants_must_name_a_configured_directory() {
    let err = try_chains(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = "{rule:alias}"
lookups = ["aliases"]
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("test.toml:4") && err.contains("no [directory.aliases] section"),
        "{err}"
    );
    let err = try_chains(
        r#"
[directory.aliases]
kind = "dynamodb"
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs `table = "), "{err}");
}
