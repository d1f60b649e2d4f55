//! One rule, three languages: `plugins/subject-tag` in Rust, JavaScript (componentize-js) and
//! Python (componentize-py), run over every corpus message with the same config, must return
//! identical actions and produce identical output bytes.

use sluice_chain::StepStatus;
use std::path::PathBuf;

use sluice_chain::{ProcessResult, RuleChains};
use sluice_engine::{RuleRuntime, Verdict};
use sluice_tests::{
    corpus_dir, engine, envelope, fixtures, foreign_rules as foreign_builds, message, output_of,
    rule,
};

fn chains_for(plugin: &std::path::Path) -> RuleChains {
    sluice_tests::chains(&format!(
        r#"
[[domain]]
name = "example.com"
[[domain.step]]
plugin = {plugin:?}
on_error = "tempfail"
timeout_ms = 10000
memory_mb = 256
config = {{ tag = "[EXT]", internal_domains = ["example.com", "Sender.example"], keywords = ["invoice", "Password", "meeting", "unsubscribe"], keyword_folder = "Review" }}
"#,
        plugin = plugin.display().to_string()
    ))
}

/// The messages: the shared corpus (when it is there) and this repo's fixtures, which include
/// one with the rule's keywords.
fn messages() -> Vec<(String, Vec<u8>)> {
    let mut dirs = vec![fixtures()];
    match corpus_dir() {
        Some(corpus) => dirs.push(corpus.join("eml")),
        None => println!("corpus not found (set SLUICE_CORPUS): comparing on tests/fixtures only"),
    }
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
        })
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn run(chains: &RuleChains, raw: &[u8], i: usize) -> ProcessResult {
    let mut env = envelope(&["bob@example.com"]);
    // Vary the verdicts so the banner branch runs on some messages and not on others.
    if i % 2 == 1 {
        env.verdicts.spf = Verdict::Fail;
        env.verdicts.dkim = Verdict::Fail;
    } else {
        env.verdicts.spf = Verdict::Pass;
        env.verdicts.dmarc = Verdict::Gray;
    }
    chains.process(engine(), message(raw), &env)
}

#[test]
fn subject_tag_is_the_same_rule_in_rust_javascript_and_python() {
    let mut langs: Vec<(String, RuleChains)> =
        vec![("rust".to_string(), chains_for(&rule("subject-tag")))];
    for (name, path) in foreign_builds() {
        langs.push((name.clone(), chains_for(path)));
    }
    assert_eq!(
        langs.len(),
        3,
        "expected three builds: {:?}",
        foreign_builds()
    );
    // The host tells the runtimes apart (their default limits differ).
    let runtimes: Vec<RuleRuntime> = langs
        .iter()
        .map(|(_, c)| c.chains()[0].steps[0].plugin.runtime())
        .collect();
    assert_eq!(
        runtimes,
        [
            RuleRuntime::Native,
            RuleRuntime::JavaScript,
            RuleRuntime::Python
        ]
    );
    let messages = messages();
    assert!(!messages.is_empty());
    let (mut tagged, mut filed, mut bannered) = (0, 0, 0);
    for (i, (name, raw)) in messages.iter().enumerate() {
        let mut reference: Option<(String, Vec<u8>)> = None;
        for (lang, chains) in &langs {
            let result = run(chains, raw, i);
            let step = &result.groups[0].steps[0];
            assert_eq!(
                step.outcome,
                StepStatus::Ok,
                "{lang} on {name}: {:?} {:?}",
                step.error,
                step.logs
            );
            let actions = serde_json::to_string(&step.actions).unwrap();
            let output = output_of(&result, 0, raw);
            match &reference {
                None => {
                    tagged += usize::from(!step.actions.is_empty());
                    filed += usize::from(actions.contains("FileInto"));
                    bannered += usize::from(actions.contains("AddBanner"));
                    reference = Some((actions, output));
                }
                Some((want_actions, want_output)) => {
                    assert_eq!(
                        &actions, want_actions,
                        "{lang} disagrees with rust on {name}"
                    );
                    assert!(
                        &output == want_output,
                        "{lang} output bytes differ from rust's on {name}"
                    );
                }
            }
        }
    }
    // The comparison is only worth something if every branch of the rule ran.
    assert!(
        tagged > 0 && filed > 0 && bannered > 0,
        "{tagged} {filed} {bannered}"
    );
    println!(
        "{} messages: {tagged} tagged, {filed} filed by keyword, {bannered} bannered; rust, javascript and python agree",
        messages.len()
    );
}
