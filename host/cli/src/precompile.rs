//! `sluice plugin precompile`: compiles rule components ahead of time for the machine that
//! will run them (a Lambda's architecture), into a directory shipped with the host, so its
//! cold start loads native code instead of compiling (see `sluice_engine::Precompiler`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use sluice_chain::{PluginFetcher, PluginLocation};
use sluice_engine::Precompiler;

use crate::remote::{load_config, Remote};

/// `sluice plugin precompile`'s arguments.
#[derive(Args)]
pub struct PrecompileArgs {
    /// Components (`.wasm`) to compile.
    files: Vec<PathBuf>,
    /// Also every plugin the steps of this config name (a file, or `s3://bucket/key.toml`):
    /// local files, and `s3://` plugins fetched and checked against the step's sha256.
    #[arg(long)]
    config: Option<String>,
    /// The target triple: `aarch64-unknown-linux-gnu` for an arm64 Lambda,
    /// `x86_64-unknown-linux-gnu` for x86_64 [default: this machine's].
    #[arg(long)]
    target: Option<String>,
    /// Where to write the artifacts (`<component sha256>.cwasm`); created if missing.
    #[arg(long)]
    out: PathBuf,
}

/// Compiles every component named, once each, and prints one line per artifact.
pub fn run(args: PrecompileArgs) -> Result<ExitCode> {
    let mut components: Vec<(String, Vec<u8>)> = Vec::new();
    for file in &args.files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        components.push((file.display().to_string(), bytes));
    }
    if let Some(config) = &args.config {
        let remote = Remote::default();
        let config = load_config(config, &remote)?;
        for domain in &config.domains {
            for step in &domain.get_ref().step {
                let step = step.get_ref();
                let plugin = step.plugin.get_ref();
                let bytes = match config.plugin_location(plugin) {
                    PluginLocation::Local(path) => std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    PluginLocation::Remote(url) => {
                        let bytes = remote
                            .fetch(&url)
                            .map_err(|e| anyhow::anyhow!("cannot fetch {url}: {e}"))?;
                        let expected = step.sha256.as_ref().map(|h| h.get_ref().to_lowercase());
                        let actual = hex::encode(Sha256::digest(&bytes));
                        if expected.as_deref() != Some(actual.as_str()) {
                            bail!(
                                "{url}: sha256 {actual}, the config says {}",
                                expected.as_deref().unwrap_or("nothing")
                            );
                        }
                        bytes
                    }
                    PluginLocation::Unsupported(scheme) => {
                        bail!("{plugin}: {scheme}:// is not supported")
                    }
                };
                components.push((plugin.clone(), bytes));
            }
        }
    }
    if components.is_empty() {
        bail!("nothing to precompile: name components, or a config with --config");
    }

    let precompiler = Precompiler::new(args.target.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut done = BTreeSet::new();
    for (name, bytes) in &components {
        // A plugin several steps use is compiled once.
        if !done.insert(Sha256::digest(bytes)) {
            continue;
        }
        let started = Instant::now();
        let artifact = precompiler.precompile(name, bytes)?;
        let path = args.out.join(artifact.file_name());
        // Written aside and renamed, so a host never reads half an artifact.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &artifact.bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "precompiled {name} for {} in {} ms ({} bytes) -> {}",
            precompiler.target(),
            started.elapsed().as_millis(),
            artifact.bytes.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
