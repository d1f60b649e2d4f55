//! `[arc]`: the key, domain and selector ARC sets are sealed with (see `sluice-arc`). The key
//! is read and checked when the config is, so a bad key is a config error at its line, not a
//! message that leaves unsealed.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sluice_arc::Sealer;
use toml::Spanned;

/// `[arc]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcSection {
    /// The signing domain (`d=`): receivers look the key up under it.
    pub domain: String,
    /// The selector (`s=`): the key is the TXT record `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PEM file of the RSA private key (relative to the config file).
    pub key_file: Option<String>,
    /// An environment variable holding the PEM instead (the Lambda, from Secrets Manager).
    pub key_env: Option<String>,
    /// The name the results are stated under (default: `domain`).
    pub authserv_id: Option<String>,
}

impl ArcSection {
    /// Reads the key and builds the sealer; `Err` is (span, what to fix).
    pub(crate) fn load(
        section: &Spanned<ArcSection>,
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> Result<Arc<Sealer>, (Range<usize>, String)> {
        let span = section.span();
        let arc = section.get_ref();
        let fail = |m: String| (span.clone(), m);
        let pem = match (&arc.key_file, &arc.key_env) {
            (Some(_), Some(_)) => return Err(fail("[arc]: set `key_file` or `key_env`, not both".into())),
            (None, None) => {
                return Err(fail(
                    "[arc] needs the signing key: `key_file = \"arc.key\"` (PEM, relative to this file) or `key_env = \"SLUICE_ARC_KEY\"` (PEM in that variable); make one with `openssl genrsa -out arc.key 2048`".into(),
                ))
            }
            (Some(file), None) => {
                let path = resolve(file);
                read_key(&path).map_err(fail)?
            }
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                fail(format!(
                    "[arc] key_env = {var:?}: the environment variable is not set (or not UTF-8)"
                ))
            })?,
        };
        Sealer::new(&pem, &arc.domain, &arc.selector, arc.authserv_id.as_deref())
            .map(Arc::new)
            .map_err(|e| fail(format!("[arc]: {e}")))
    }
}

fn read_key(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("[arc] key_file {}: {e}", path.display()))
}
