//! The function's settings, from its environment.

use std::path::PathBuf;
use std::time::Duration;

use sluice_inbound::PipelineOptions;

/// How often the config's version is checked when `SLUICE_RELOAD_SECONDS` is not set.
pub const DEFAULT_RELOAD_SECONDS: u64 = 60;

/// Reads `SLUICE_CONFIG` (required: a path or `s3://bucket/key.toml`), `SLUICE_RELOAD_SECONDS`
/// (default 60) and `SLUICE_CACHE_DIR` (optional; the pipeline picks `/tmp/sluice` otherwise).
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<PipelineOptions, String> {
    let config = var("SLUICE_CONFIG")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            "SLUICE_CONFIG is not set: set it to the config's path or s3://bucket/key.toml"
                .to_string()
        })?;
    let reload_seconds = match var("SLUICE_RELOAD_SECONDS") {
        None => DEFAULT_RELOAD_SECONDS,
        Some(s) => s.trim().parse::<u64>().map_err(|e| {
            format!("SLUICE_RELOAD_SECONDS={s:?} is not a whole number of seconds: {e}")
        })?,
    };
    Ok(PipelineOptions {
        config,
        reload_interval: Duration::from_secs(reload_seconds),
        cache_dir: var("SLUICE_CACHE_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let o = from_env(env(&[("SLUICE_CONFIG", "s3://b/sluice.toml")])).unwrap();
        assert_eq!(o.config, "s3://b/sluice.toml");
        assert_eq!(o.reload_interval, Duration::from_secs(60));
        assert_eq!(o.cache_dir, None);
        let o = from_env(env(&[
            ("SLUICE_CONFIG", "/etc/sluice.toml"),
            ("SLUICE_RELOAD_SECONDS", "5"),
            ("SLUICE_CACHE_DIR", "/tmp/c"),
        ]))
        .unwrap();
        assert_eq!(o.reload_interval, Duration::from_secs(5));
        assert_eq!(o.cache_dir, Some(PathBuf::from("/tmp/c")));
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(from_env(env(&[]))
            .unwrap_err()
            .starts_with("SLUICE_CONFIG is not set"));
        let e = from_env(env(&[
            ("SLUICE_CONFIG", "x"),
            ("SLUICE_RELOAD_SECONDS", "soon"),
        ]))
        .unwrap_err();
        assert!(e.starts_with("SLUICE_RELOAD_SECONDS=\"soon\""), "{e}");
    }
}
