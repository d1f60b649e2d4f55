//! Configs and plugins that live in S3: `--config s3://bucket/key.toml`, `plugin = "s3://…"`,
//! and `sluice plugin push`. The AWS client (and its async runtime) is only created when
//! something remote is actually named.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context as _, Result};
use sluice_aws::{BlockingS3, S3Url};
use sluice_chain::{
    ConfigFile, ConfigSource, PluginFetcher, PluginSources, RuleChains, S3ConfigSource, S3Plugins,
    SourceError,
};
use sluice_engine::{RuleEngine, RulePlugin};

/// S3 access, set up on first use.
#[derive(Default)]
pub struct Remote {
    inner: OnceLock<BlockingS3>,
}

impl Remote {
    fn get(&self) -> Result<&BlockingS3> {
        if self.inner.get().is_none() {
            let _ = self.inner.set(BlockingS3::from_env()?);
        }
        Ok(self.inner.get().expect("just set"))
    }

    /// Writes an S3 object.
    pub fn write(&self, url: &S3Url, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        self.get()?.put(url, bytes, content_type)?;
        Ok(())
    }
}

impl PluginFetcher for Remote {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, SourceError> {
        // `{:#}`: the whole chain in one line, as the operator sees it.
        S3Plugins(self.get().map_err(|e| format!("{e:#}"))?).fetch(url)
    }
}

/// Reads a config from a path or an `s3://` URL.
pub fn load_config(arg: &str, remote: &Remote) -> Result<ConfigFile> {
    if arg.starts_with("s3://") {
        Ok(S3ConfigSource::new(remote.get()?, arg)?.read()?.0)
    } else {
        Ok(ConfigFile::read(Path::new(arg))?)
    }
}

/// Loads the chains, fetching remote plugins (verified against their sha256, kept under
/// `<cache_dir>/plugins/`).
pub fn load_chains(
    engine: &RuleEngine,
    config: &ConfigFile,
    remote: &Remote,
    cache_dir: Option<&Path>,
) -> Result<RuleChains> {
    let sources = PluginSources {
        fetcher: Some(remote),
        cache_dir: cache_dir.map(|d| d.join("plugins")),
        max_bytes: config.engine.cache_max_bytes(),
    };
    Ok(RuleChains::load_with(engine, config, &sources)?)
}

/// `sluice plugin push`: type-checks the component against the world, uploads it, and
/// prints the lines to paste into a step.
pub fn push(engine: &RuleEngine, file: &Path, url: &str, remote: &Remote) -> Result<String> {
    let url = S3Url::parse(url)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let plugin = RulePlugin::load_bytes(engine, &name, &bytes)?;
    plugin
        .validate_config(engine, "{}", &Default::default())
        .or_else(|e| match e {
            // A rule that needs config keys refuses `{}`: that still proves it runs.
            sluice_engine::EngineError::ConfigRefused { .. } => Ok(()),
            other => Err(other),
        })?;
    remote.write(&url, bytes, "application/wasm")?;
    Ok(format!(
        "plugin = \"{url}\"\nsha256 = \"{}\"\n",
        plugin.sha256()
    ))
}
