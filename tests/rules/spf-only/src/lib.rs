//! `rule-spf-only`: reads the SPF verdict (twice: the SDK keeps the first answer) and nothing
//! else of the context, and adds `X-Spf: <verdict>`. With WIT 0.2 the host then counts one
//! `verdicts()` call and, for the config, one `config()` call per instance.

use sluice_sdk::prelude::*;

/// The rule.
pub struct SpfOnly;

impl Rule for SpfOnly {
    type Config = NoConfig;

    fn evaluate(_: &Message, ctx: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        let spf = ctx.verdicts().spf;
        debug_assert!(ctx.verdicts().spf == spf);
        Ok(vec![Action::add_header("X-Spf", spf.as_str())])
    }
}

sluice_sdk::export_rule!(SpfOnly);
