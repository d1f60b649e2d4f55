//! Plugins and configs in S3, against a real emulator (moto server on loopback) with the real
//! aws-sdk-rust client: push, load by sha256, refuse tampered bytes, reuse the caches.

use std::path::Path;
use std::process::{Command, Output};

use sluice_aws::{BlockingS3, S3Url};
use sluice_tests::{rule, Moto};

fn sluice(moto: &Moto, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .envs(moto.env())
        .env("SLUICE_CACHE_DIR", cache)
        .output()
        .expect("sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Bucket {
    s3: BlockingS3,
}

impl Bucket {
    fn new(moto: &Moto, name: &str) -> Bucket {
        let s3 = BlockingS3::for_endpoint(&moto.endpoint, "us-east-1").unwrap();
        s3.create_bucket(name).unwrap();
        Bucket { s3 }
    }

    fn put(&self, url: &str, bytes: Vec<u8>) {
        let url = S3Url::parse(url).unwrap();
        self.s3
            .put(&url, bytes, "application/octet-stream")
            .unwrap();
    }

    fn delete(&self, url: &str) {
        self.s3.delete(&S3Url::parse(url).unwrap()).unwrap();
    }

    fn exists(&self, url: &str) -> bool {
        self.s3.get(&S3Url::parse(url).unwrap()).is_ok()
    }
}

/// Pushes banner.wasm and returns the two TOML lines `plugin push` printed.
fn push_banner(moto: &Moto, cache: &Path) -> String {
    let o = sluice(
        moto,
        cache,
        &[
            "plugin",
            "push",
            rule("banner").to_str().unwrap(),
            "s3://acme-rules/rules/banner.wasm",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn remote_config_and_plugin_load_by_hash_and_are_cached() {
    let _turn = crate::turn(module_path!());
    let moto = Moto::start();
    let bucket = Bucket::new(&moto, "acme-rules");
    let cache = tempfile::tempdir().unwrap();
    let lines = push_banner(&moto, cache.path());
    assert!(
        lines.starts_with("plugin = \"s3://acme-rules/rules/banner.wasm\"\nsha256 = \""),
        "{lines}"
    );
    let sha = lines.split('"').nth(3).unwrap().to_string();
    assert_eq!(sha.len(), 64);

    // The config lives in S3 too, and names the plugin relative to itself.
    let config = format!(
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"banner.wasm\"\nsha256 = \"{sha}\"\nconfig = {{ text = \"External\" }}\n"
    );
    bucket.put("s3://acme-rules/rules/sluice.toml", config.into_bytes());

    let check = |expect: &str| {
        let o = sluice(
            &moto,
            cache.path(),
            &["check", "--config", "s3://acme-rules/rules/sluice.toml"],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(out.contains("1. banner"), "{out}");
        assert!(out.contains(expect), "expected {expect:?} in {out}");
    };
    check("compiled in");
    // A restart compiles nothing.
    check("from cache in");
    // The verified bytes are cached too: with the object gone from S3 the pinned plugin
    // still loads (the config itself is still read from S3).
    bucket.delete("s3://acme-rules/rules/banner.wasm");
    check("from cache in");
}

#[test]
fn tampered_plugin_is_refused_with_both_hashes() {
    let _turn = crate::turn(module_path!());
    let moto = Moto::start();
    let bucket = Bucket::new(&moto, "acme-rules");
    let cache = tempfile::tempdir().unwrap();
    let lines = push_banner(&moto, cache.path());
    let sha = lines.split('"').nth(3).unwrap().to_string();
    // Someone replaces the object with another (valid) component.
    bucket.put(
        "s3://acme-rules/rules/banner.wasm",
        std::fs::read(rule("junk")).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"s3://acme-rules/rules/banner.wasm\"\nsha256 = \"{sha}\"\nconfig = {{ text = \"x\" }}\n"
        ),
    )
    .unwrap();
    let o = sluice(
        &moto,
        cache.path(),
        &["check", "--config", config.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(":4: domain \"example.com\" step 1 (banner)"),
        "{err}"
    );
    assert!(err.contains(&format!("expected {sha}")), "{err}");
    let junk_sha = sluice_engine::RulePlugin::load_file(
        &sluice_engine::RuleEngine::new(Default::default()).unwrap(),
        "junk",
        &rule("junk"),
    )
    .unwrap()
    .sha256()
    .to_string();
    assert!(err.contains(&junk_sha), "the actual hash is named: {err}");
}

#[test]
fn push_refuses_what_is_not_a_rule() {
    let _turn = crate::turn(module_path!());
    let moto = Moto::start();
    let bucket = Bucket::new(&moto, "acme-rules");
    let cache = tempfile::tempdir().unwrap();
    let bogus = cache.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm\x01\0\0\0").unwrap();
    let o = sluice(
        &moto,
        cache.path(),
        &[
            "plugin",
            "push",
            bogus.to_str().unwrap(),
            "s3://acme-rules/bogus.wasm",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not a valid rule component"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        !bucket.exists("s3://acme-rules/bogus.wasm"),
        "nothing was uploaded"
    );
}

#[test]
fn a_remote_plugin_without_a_hash_is_a_config_error() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[[domain]]\nname = \"example.com\"\n[[domain.step]]\nplugin = \"s3://acme-rules/x.wasm\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(":4:") && err.contains("sha256"), "{err}");
}
