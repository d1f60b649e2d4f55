//! `sluice plugin precompile`: artifacts for this machine load without compiling; artifacts
//! for the other Lambda architecture are made here and refused here, with the reason.

use std::path::Path;
use std::process::Command;

use sluice_engine::{host_target, EngineOptions, LoadSource, RuleEngine, RulePlugin};
use sluice_tests::rule;

fn precompile(out: &Path, target: Option<&str>, files: &[&Path]) -> String {
    let _turn = crate::turn(module_path!());
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(["plugin", "precompile", "--out"]).arg(out);
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    let o = command.args(files).output().expect("sluice runs");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// The artifact's header lines, as `head` shows them.
fn header(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let end = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
    String::from_utf8(bytes[..end].to_vec()).unwrap()
}

fn load(precompiled: &Path, cache: &Path, path: &Path) -> RulePlugin {
    let engine = RuleEngine::new(EngineOptions {
        cache_dir: Some(cache.to_path_buf()),
        precompiled_dirs: vec![precompiled.to_path_buf()],
        ..Default::default()
    })
    .unwrap();
    let plugin = RulePlugin::load_file(&engine, "banner", path).unwrap();
    plugin
        .validate_config(&engine, r#"{"text":"x"}"#, &Default::default())
        .expect("the loaded rule runs");
    plugin
}

#[test]
fn precompiled_for_this_machine_loads_and_for_the_other_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let banner = rule("banner");
    let here = dir.path().join("here");
    let out = precompile(&here, None, &[&banner, &banner]);
    assert_eq!(out.lines().count(), 1, "one artifact per component: {out}");
    assert!(
        out.starts_with(&format!(
            "precompiled {} for {}",
            banner.display(),
            host_target()
        )),
        "{out}"
    );
    let sha = RulePlugin::load_file(
        &RuleEngine::new(EngineOptions::default()).unwrap(),
        "banner",
        &banner,
    )
    .unwrap()
    .sha256()
    .to_string();
    let artifact = here.join(format!("{sha}.cwasm"));
    assert!(
        header(&artifact).contains(&format!("\ntarget: {}\n", host_target())),
        "{}",
        header(&artifact)
    );
    let plugin = load(&here, &dir.path().join("cache1"), &banner);
    assert!(
        matches!(plugin.source(), LoadSource::Precompiled { .. }),
        "{:?}",
        plugin.source()
    );

    // The other Lambda architecture: made on this machine, refused by it (then compiled).
    let other = if host_target().starts_with("aarch64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let there = dir.path().join("there");
    let out = precompile(&there, Some(other), &[&banner]);
    assert!(out.contains(&format!(" for {other} in ")), "{out}");
    let head = header(&there.join(format!("{sha}.cwasm")));
    assert!(head.contains(&format!("\ntarget: {other}\n")), "{head}");
    assert!(
        head.contains(&format!("\ncomponent-sha256: {sha}\n")),
        "{head}"
    );
    let plugin = load(&there, &dir.path().join("cache2"), &banner);
    assert!(
        matches!(plugin.source(), LoadSource::Compiled { .. }),
        "{:?}",
        plugin.source()
    );
}

#[test]
fn an_unknown_target_or_nothing_to_compile_is_refused() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["plugin", "precompile", "--out"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["--target", "nonsense-cpu", rule("banner").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot compile for nonsense-cpu"), "{err}");
    let o = run(&[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing to precompile"), "{err}");
}
