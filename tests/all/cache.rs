//! The compiled-component cache and shipped precompiled artifacts: reused when sound,
//! rebuilt when not.

use sluice_engine::{EngineOptions, LoadSource, Precompiler, RuleEngine, RulePlugin};
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

/// An engine with an empty compiled cache in `dir/cache` that reads artifacts from
/// `dir/rules`.
fn engine_with_precompiled(dir: &std::path::Path) -> RuleEngine {
    RuleEngine::new(EngineOptions {
        cache_dir: Some(dir.join("cache")),
        precompiled_dirs: vec![dir.join("rules")],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_precompiled_artifact_loads_without_compiling_and_a_bad_one_is_compiled_instead() {
    let path = rule("banner");
    let bytes = std::fs::read(&path).unwrap();
    let artifact = Precompiler::new(None)
        .unwrap()
        .precompile("banner", &bytes)
        .unwrap();
    let case = |name: &str, artifact_bytes: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules").join(artifact.file_name()),
            artifact_bytes,
        )
        .unwrap();
        let engine = engine_with_precompiled(dir.path());
        let plugin = RulePlugin::load_file(&engine, "banner", &path).unwrap();
        plugin
            .validate_config(&engine, r#"{"text":"x"}"#, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: the loaded rule runs: {e}"));
        // A compile writes the cache; a precompiled load leaves it alone.
        let cached = engine.cache().unwrap().entry_path(plugin.sha256()).exists();
        (plugin.source().clone(), cached)
    };

    let (source, cached) = case("sound", &artifact.bytes);
    assert!(
        matches!(source, LoadSource::Precompiled { .. }),
        "{source:?}"
    );
    assert!(!cached, "nothing compiled, nothing cached");

    let header_end = artifact
        .bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap();
    let text = String::from_utf8(artifact.bytes[..header_end].to_vec()).unwrap();
    let with_header = |header: String| {
        let mut b = header.into_bytes();
        b.extend_from_slice(&artifact.bytes[header_end..]);
        b
    };
    let engine_line = text.lines().find(|l| l.starts_with("engine: ")).unwrap();
    let target_line = text.lines().find(|l| l.starts_with("target: ")).unwrap();
    let sha_line = text
        .lines()
        .find(|l| l.starts_with("component-sha256: "))
        .unwrap();
    let mut flipped = artifact.bytes.clone();
    let mid = header_end + (flipped.len() - header_end) / 2;
    flipped[mid] ^= 0xff;
    for (name, bad) in [
        ("a flipped payload byte", flipped),
        (
            "truncated",
            artifact.bytes[..artifact.bytes.len() / 2].to_vec(),
        ),
        (
            "another engine's hash",
            with_header(text.replace(engine_line, &format!("engine: {}", "0".repeat(32)))),
        ),
        (
            "another target",
            with_header(text.replace(target_line, "target: riscv64gc-unknown-linux-gnu")),
        ),
        (
            "another component",
            with_header(text.replace(sha_line, &format!("component-sha256: {}", "a".repeat(64)))),
        ),
        ("not an artifact", b"\x7fELF".to_vec()),
    ] {
        let (source, cached) = case(name, &bad);
        assert!(
            matches!(source, LoadSource::Compiled { .. }),
            "{name}: {source:?}"
        );
        assert!(cached, "{name}: compiled and cached as without an artifact");
    }
}

#[test]
fn a_precompiled_directory_inside_the_cache_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = RuleEngine::new(EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        precompiled_dirs: vec![dir.path().join("rules")],
        ..Default::default()
    })
    .err()
    .expect("refused");
    assert!(err.to_string().contains("which this host writes"), "{err}");
}
