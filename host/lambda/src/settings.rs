//! The function's settings, from its environment.

use std::path::PathBuf;
use std::time::Duration;

use sluice_inbound::PipelineOptions;

/// How often the config's version is checked when `SLUICE_RELOAD_SECONDS` is not set.
pub const DEFAULT_RELOAD_SECONDS: u64 = 60;

/// How many records of one SQS batch are handled at once when `SLUICE_CONCURRENCY` is not
/// set: SQS batches hold up to 10 records, and each message mostly waits on S3 and SES.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// Where a layer's precompiled rules are (layers are unpacked under `/opt`).
pub const LAYER_PRECOMPILED_DIR: &str = "/opt/sluice/rules";

/// The most `SLUICE_CONCURRENCY` accepts.
pub const MAX_CONCURRENCY: usize = 256;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What the pipeline starts with.
    pub pipeline: PipelineOptions,
    /// Records of one batch in flight at a time (the chains of each run on the blocking pool).
    pub concurrency: usize,
}

/// Reads `SLUICE_CONFIG` (required: a path or `s3://bucket/key.toml`), `SLUICE_RELOAD_SECONDS`
/// (default 60), `SLUICE_CACHE_DIR` (optional; the pipeline picks `/tmp/sluice` otherwise),
/// `SLUICE_CONCURRENCY` (default 10) and `SLUICE_PRECOMPILED_DIR` (see [`precompiled_dirs`]).
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
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
    let concurrency = match var("SLUICE_CONCURRENCY") {
        None => DEFAULT_CONCURRENCY,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n @ 1..=MAX_CONCURRENCY) => n,
            _ => {
                return Err(format!(
                "SLUICE_CONCURRENCY={s:?} is not a number of records from 1 to {MAX_CONCURRENCY}"
            ))
            }
        },
    };
    // EMF on stdout is how a Lambda publishes metrics: on unless SLUICE_METRICS=off.
    let metrics = match var("SLUICE_METRICS").as_deref().map(str::trim) {
        None | Some("") | Some("emf") => true,
        Some("off") => false,
        Some(other) => {
            return Err(format!(
                "SLUICE_METRICS={other:?}: expected \"emf\" (the default) or \"off\""
            ))
        }
    };
    let precompiled_dirs = precompiled_dirs(&var)?;
    Ok(Settings {
        pipeline: PipelineOptions {
            config,
            reload_interval: Duration::from_secs(reload_seconds),
            cache_dir: var("SLUICE_CACHE_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            metrics,
            precompiled_dirs,
        },
        concurrency,
    })
}

/// Where `sluice plugin precompile`'s artifacts are looked for: `SLUICE_PRECOMPILED_DIR`
/// (directories separated by `:`; `off` for none), else `$LAMBDA_TASK_ROOT/rules` (the
/// function's package, beside `bootstrap`) and `/opt/sluice/rules` (a layer). These are the
/// read-only parts of a Lambda, as trusted as the bootstrap itself; precompiled code is never
/// fetched from S3, so a URL is refused.
pub fn precompiled_dirs(var: impl Fn(&str) -> Option<String>) -> Result<Vec<PathBuf>, String> {
    match var("SLUICE_PRECOMPILED_DIR") {
        Some(value) => {
            let value = value.trim();
            if value.is_empty() || value == "off" {
                return Ok(Vec::new());
            }
            if value.contains("://") {
                return Err(format!(
                    "SLUICE_PRECOMPILED_DIR={value:?}: precompiled rules are read only from a \
                     directory shipped with the function (its package or a layer), never fetched"
                ));
            }
            Ok(value
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect())
        }
        None => {
            let mut dirs: Vec<PathBuf> = var("LAMBDA_TASK_ROOT")
                .filter(|r| !r.is_empty())
                .map(|root| PathBuf::from(root).join("rules"))
                .into_iter()
                .collect();
            dirs.push(PathBuf::from(LAYER_PRECOMPILED_DIR));
            Ok(dirs)
        }
    }
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
        let s = from_env(env(&[("SLUICE_CONFIG", "s3://b/sluice.toml")])).unwrap();
        assert_eq!(s.pipeline.config, "s3://b/sluice.toml");
        assert_eq!(s.pipeline.reload_interval, Duration::from_secs(60));
        assert_eq!(s.pipeline.cache_dir, None);
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        assert!(s.pipeline.metrics, "EMF is on by default in the Lambda");
        assert_eq!(
            s.pipeline.precompiled_dirs,
            vec![PathBuf::from(LAYER_PRECOMPILED_DIR)]
        );
        let s = from_env(env(&[
            ("SLUICE_CONFIG", "/etc/sluice.toml"),
            ("SLUICE_RELOAD_SECONDS", "5"),
            ("SLUICE_CACHE_DIR", "/tmp/c"),
            ("SLUICE_CONCURRENCY", "3"),
            ("SLUICE_METRICS", "off"),
        ]))
        .unwrap();
        assert!(!s.pipeline.metrics);
        assert_eq!(s.pipeline.reload_interval, Duration::from_secs(5));
        assert_eq!(s.pipeline.cache_dir, Some(PathBuf::from("/tmp/c")));
        assert_eq!(s.concurrency, 3);
    }

    #[test]
    fn precompiled_dirs_default_to_the_package_and_a_layer() {
        let dirs = precompiled_dirs(env(&[("LAMBDA_TASK_ROOT", "/var/task")])).unwrap();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/var/task/rules"),
                PathBuf::from("/opt/sluice/rules")
            ]
        );
        let dirs = precompiled_dirs(env(&[("SLUICE_PRECOMPILED_DIR", "/a:/b")])).unwrap();
        assert_eq!(dirs, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(precompiled_dirs(env(&[("SLUICE_PRECOMPILED_DIR", "off")]))
            .unwrap()
            .is_empty());
        let e = precompiled_dirs(env(&[("SLUICE_PRECOMPILED_DIR", "s3://b/rules")])).unwrap_err();
        assert!(e.contains("never fetched"), "{e}");
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
        for bad in ["0", "many", "257"] {
            let e =
                from_env(env(&[("SLUICE_CONFIG", "x"), ("SLUICE_CONCURRENCY", bad)])).unwrap_err();
            assert!(e.starts_with("SLUICE_CONCURRENCY="), "{e}");
        }
        let e = from_env(env(&[("SLUICE_CONFIG", "x"), ("SLUICE_METRICS", "yes")])).unwrap_err();
        assert!(e.starts_with("SLUICE_METRICS=\"yes\""), "{e}");
    }
}
