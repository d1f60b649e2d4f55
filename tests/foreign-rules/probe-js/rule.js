// probe-js: calls the host's two granted capabilities, `lookup.get` and `http.send`, for
// tests/all/languages.rs (the same rule as ../probe-python; see ../README.md).

import { addHeader, defineRule, http, lookup } from '../../../sdk/js/sluice.js';

export const { validateConfig, evaluate } = defineRule({
  defaults: { table: '', key: '', url: '' },
  evaluate(msg, ctx, config) {
    // A RuleError from either call propagates as it is (message and `temporary`).
    const value = lookup.get(config.table, config.key);
    const actions = [addHeader('X-Probe-Lookup', value ?? 'none')];
    const answer = http.postJson(config.url, { subject: msg.subject() ?? '' });
    actions.push(addHeader('X-Probe-Status', String(answer.status)));
    actions.push(addHeader('X-Probe-Body', answer.text()));
    return actions;
  },
});
