//! Chains that follow their config (the daemon's and the Lambda's hot reload): a changed
//! config is loaded fully before it replaces the old one; a bad one is refused and the old
//! chains keep serving. Against a config in S3 (moto server) and a local file.

use std::time::Duration;

use sluice_aws::{BlockingS3, S3Url};
use sluice_chain::{
    ConfigSource, FileConfigSource, LiveChains, OutputMessage, PluginSources, ReloadOutcome,
    S3ConfigSource, S3Plugins,
};
use sluice_engine::RulePlugin;
use sluice_tests::{engine, envelope, fixture, message, rule, Moto};

/// The banner text the serving chains put into `plain-lf.eml`.
fn banner_now(live: &LiveChains) -> String {
    let current = live.current();
    let result = current.chains.process(
        engine(),
        message(&fixture("plain-lf.eml")),
        &envelope(&["bob@example.com"]),
    );
    match &result.groups[0].output {
        Some(OutputMessage::Edited(edited)) => String::from_utf8_lossy(edited.raw())
            .split("\n\n")
            .nth(1)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        other => panic!("no banner: {other:?}"),
    }
}

fn banner_config(plugin: &str, sha: &str, text: &str) -> String {
    format!(
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"{plugin}\"\nsha256 = \"{sha}\"\nconfig = {{ text = \"{text}\" }}\n"
    )
}

#[test]
fn s3_config_hot_swap_keeps_the_old_chain_on_a_bad_config() {
    let moto = Moto::start();
    let s3 = BlockingS3::for_endpoint(&moto.endpoint, "us-east-1").unwrap();
    s3.create_bucket("acme-rules").unwrap();
    let bytes = std::fs::read(rule("banner")).unwrap();
    let sha = RulePlugin::load_bytes(engine(), "banner", &bytes)
        .unwrap()
        .sha256()
        .to_string();
    let put = |key: &str, body: Vec<u8>| {
        s3.put(
            &S3Url::parse(key).unwrap(),
            body,
            "application/octet-stream",
        )
        .unwrap();
    };
    put("s3://acme-rules/prod/banner.wasm", bytes);
    let config_url = "s3://acme-rules/prod/sluice.toml";
    put(
        config_url,
        banner_config("banner.wasm", &sha, "BANNER ONE").into_bytes(),
    );

    let source = S3ConfigSource::new(&s3, config_url).unwrap();
    let sources = PluginSources {
        fetcher: Some(&S3Plugins(&s3)),
        ..Default::default()
    };
    let live = LiveChains::load(engine(), &source, sources, Duration::from_secs(3600)).unwrap();
    assert_eq!(banner_now(&live), "BANNER ONE");
    assert_eq!(live.reload_if_changed(), ReloadOutcome::Unchanged);
    assert_eq!(
        live.reload_if_due(),
        ReloadOutcome::NotDue,
        "the interval has not passed"
    );

    // A config with a typo in the rule's config: refused, the old chains keep serving.
    put(
        config_url,
        banner_config("banner.wasm", &sha, "x")
            .replace("text =", "txt =")
            .into_bytes(),
    );
    match live.reload_if_changed() {
        ReloadOutcome::Refused { error } => {
            assert!(
                error.starts_with("s3://acme-rules/prod/sluice.toml:4:"),
                "{error}"
            );
            assert!(error.contains("txt"), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(banner_now(&live), "BANNER ONE");

    // A config whose plugin hash does not match: refused too.
    put(
        config_url,
        banner_config("banner.wasm", &"0".repeat(64), "BANNER TWO").into_bytes(),
    );
    assert!(
        matches!(live.reload_if_changed(), ReloadOutcome::Refused { ref error } if error.contains("sha256 mismatch"))
    );
    assert_eq!(banner_now(&live), "BANNER ONE");

    // A good one: swapped in whole.
    let held = live.current();
    put(
        config_url,
        banner_config("banner.wasm", &sha, "BANNER THREE").into_bytes(),
    );
    assert!(matches!(
        live.reload_if_changed(),
        ReloadOutcome::Reloaded { version: Some(_) }
    ));
    assert_eq!(banner_now(&live), "BANNER THREE");
    // A message that took the old chains before the swap finishes with them.
    assert!(held.chains.chains()[0].steps[0]
        .config_json
        .contains("BANNER ONE"));
    assert_eq!(live.reload_if_changed(), ReloadOutcome::Unchanged);
}

#[test]
fn local_config_file_is_followed_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let plugin = rule("banner").display().to_string();
    let write = |text: &str| {
        // A new size guarantees a new version even within the file system's mtime grain.
        std::fs::write(
            &path,
            banner_config(&plugin, "", text).replace("sha256 = \"\"\n", ""),
        )
        .unwrap();
    };
    write("LOCAL ONE");
    let source = FileConfigSource::new(&path);
    assert!(source.version().unwrap().is_some());
    let live =
        LiveChains::load(engine(), &source, PluginSources::default(), Duration::ZERO).unwrap();
    assert_eq!(banner_now(&live), "LOCAL ONE");
    write("LOCAL TWO, LONGER");
    assert!(matches!(
        live.reload_if_due(),
        ReloadOutcome::Reloaded { .. }
    ));
    assert_eq!(banner_now(&live), "LOCAL TWO, LONGER");
    std::fs::write(&path, "[[domain]]\nname = 5\n").unwrap();
    assert!(
        matches!(live.reload_if_due(), ReloadOutcome::Refused { ref error } if error.contains(":2:"))
    );
    assert_eq!(banner_now(&live), "LOCAL TWO, LONGER");
}
