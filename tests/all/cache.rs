//! The compiled-component cache: reused when sound, rebuilt when not.

use sluice_engine::{EngineOptions, LoadSource, RuleEngine, RulePlugin};
use sluice_tests::rule;

#[test]
fn second_load_comes_from_the_cache_and_a_corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let path = rule("banner");
    let engine = || {
        RuleEngine::new(EngineOptions {
            cache_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap()
    };

    let first = RulePlugin::load_file(&engine(), "banner", &path).unwrap();
    assert!(
        matches!(first.source(), LoadSource::Compiled { .. }),
        "{:?}",
        first.source()
    );

    // A new engine (as after a restart) reads the entry back instead of compiling.
    let e2 = engine();
    let second = RulePlugin::load_file(&e2, "banner", &path).unwrap();
    assert!(
        matches!(second.source(), LoadSource::Cache { .. }),
        "{:?}",
        second.source()
    );
    assert_eq!(first.sha256(), second.sha256());
    second
        .validate_config(&e2, r#"{"text":"x"}"#, &Default::default())
        .expect("a cached component runs");

    // Flip a byte in the middle of the entry: detected, removed, recompiled.
    let entry = e2.cache().unwrap().entry_path(second.sha256());
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let third = RulePlugin::load_file(&engine(), "banner", &path).unwrap();
    assert!(
        matches!(third.source(), LoadSource::Compiled { .. }),
        "{:?}",
        third.source()
    );

    // Garbage in place of the entry: same.
    std::fs::write(&entry, b"not a cache entry").unwrap();
    let fourth = RulePlugin::load_file(&engine(), "banner", &path).unwrap();
    assert!(matches!(fourth.source(), LoadSource::Compiled { .. }));
    let fifth = RulePlugin::load_file(&engine(), "banner", &path).unwrap();
    assert!(matches!(fifth.source(), LoadSource::Cache { .. }));
}

#[test]
fn a_non_component_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm\x01\0\0\0").unwrap();
    let engine = RuleEngine::new(EngineOptions::default()).unwrap();
    let err = RulePlugin::load_file(&engine, "bogus", &bogus).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin bogus: not a valid rule component"),
        "{err}"
    );
    let missing =
        RulePlugin::load_file(&engine, "missing", &dir.path().join("nope.wasm")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
}
