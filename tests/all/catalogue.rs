//! docs/rules.md, the catalogue of reference rules: every rule in `plugins/` has a row and an
//! example, and every example `config` loads through the rule's own `validate-config`.

use sluice_tests::{try_chains, workspace_root};

/// (rule name, the example's `config = …` line) for each `### NAME` section's toml block.
fn examples(doc: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            current = Some(name.trim().to_string());
        } else if line.starts_with("config = ") {
            let name = current.take().expect("a config line under a ### heading");
            found.push((name, line.to_string()));
        }
    }
    found
}

#[test]
fn every_example_in_the_catalogue_is_a_valid_config_of_its_rule() {
    let doc =
        std::fs::read_to_string(workspace_root().join("docs/rules.md")).expect("docs/rules.md");
    let examples = examples(&doc);
    assert!(examples.len() >= 7, "{examples:?}");
    for (name, config) in &examples {
        let toml = format!(
            "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{{rule:{name}}}\"\n{config}\n"
        );
        if let Err(e) = try_chains(&toml) {
            panic!("docs/rules.md's example for {name} does not load: {e}\n{config}");
        }
    }
    // The check can fail: a key the rule does not know is refused.
    let bad = "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{rule:size-limit}\"\nconfig = { max_megabytes = 5 }\n";
    assert!(try_chains(bad).is_err());
}

#[test]
fn every_reference_rule_has_a_row_and_an_example() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/rules.md")).expect("docs/rules.md");
    let with_example: Vec<String> = examples(&doc).into_iter().map(|(n, _)| n).collect();
    let mut rules: Vec<String> = std::fs::read_dir(root.join("plugins"))
        .expect("plugins/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file() && e.path().join("src/lib.rs").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "demo")
        .collect();
    rules.sort();
    for rule in &rules {
        let row = format!("| [`{rule}`](../plugins/{rule}/src/lib.rs) |");
        assert!(
            doc.contains(&row),
            "docs/rules.md has no row for {rule} (`{row}`)"
        );
        assert!(
            with_example.contains(rule),
            "docs/rules.md has no ### {rule} example"
        );
    }
}
