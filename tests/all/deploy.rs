//! The AWS template (`deploy/template.yaml`) passes cfn-lint, with the SAM transform applied
//! (so the function's event source, runtime and architecture are checked as the
//! `AWS::Lambda::*` resources SAM turns them into).

use std::path::PathBuf;
use std::process::Command;

use sluice_tests::workspace_root;

/// The cfn-lint version `.ci/run` pins: the last release that lints SAM templates by running
/// the real SAM transform (aws-sam-translator). Later releases check SAM resources against a
/// schema only and miss, e.g., a bad event-source property or an unknown runtime.
const PINNED: &str = "1.53.3";

/// Regions where SES receives mail, to run cfn-lint's region-specific checks against.
const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1"];

fn cfn_lint() -> PathBuf {
    let path = std::env::var_os("SLUICE_CFN_LINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv").join("bin").join("cfn-lint"));
    assert!(
        path.is_file(),
        "cfn-lint not found at {}: run `python3 -m venv .venv && .venv/bin/pip install 'cfn-lint=={PINNED}'` in the workspace (or set SLUICE_CFN_LINT)",
        path.display()
    );
    path
}

#[test]
fn template_passes_cfn_lint_with_the_sam_transform() {
    let lint = cfn_lint();

    // The SAM transform needs aws-sam-translator in cfn-lint's Python environment.
    let python = lint.with_file_name("python");
    if python.is_file() {
        let probe = Command::new(&python)
            .args(["-c", "import samtranslator"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            probe.status.success(),
            "{} cannot import samtranslator, so cfn-lint would not apply the SAM transform: \
             install the pinned version with `{} -m pip install 'cfn-lint=={PINNED}'`\n{}",
            lint.display(),
            python.display(),
            String::from_utf8_lossy(&probe.stderr)
        );
    }

    let template = "deploy/template.yaml";
    assert!(
        workspace_root().join(template).is_file(),
        "{template} is missing"
    );
    let output = Command::new(&lint)
        .current_dir(workspace_root())
        .arg("--regions")
        .args(REGIONS)
        .arg("--")
        .arg(template)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", lint.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim().is_empty(),
        "cfn-lint reported problems in {template} ({}):\n{stdout}{stderr}",
        output.status
    );
}

/// Every example config in `deploy/` (the SES setup, the Dovecot box, the SMTP hand-off)
/// parses and checks: the docs cannot drift from what the code accepts.
#[test]
fn example_configs_parse() {
    let root = workspace_root().join("deploy");
    let mut files: Vec<PathBuf> = ["", "self-hosted"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(root.join(sub)).unwrap())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        // The placeholder a user must replace, standing in for the hash it will be.
        let text = std::fs::read_to_string(f)
            .unwrap()
            .replace("<paste from sluice plugin push>", &"0".repeat(64));
        let base = f.parent().unwrap().to_path_buf();
        let config = sluice_chain::ConfigFile::parse(&f.display().to_string(), base, text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", f.display()));
        assert!(config.store.is_some(), "{} has no [store]", f.display());
    }
}
