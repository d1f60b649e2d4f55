// probe-js: calls the host's two granted capabilities, `lookup.get` and `http.send`, for
// tests/all/languages.rs (the same rule as ../probe-python; see ../README.md). With
// `strip = true` it instead lists `msg.parts()` and strips every executable part
// (`replace-part`, WIT 0.2.1); with `reply = "TEXT"` it asks for an automatic reply.

import { addHeader, defineRule, http, lookup, replacePart, reply } from '../../../sdk/js/sluice.js';

export const { validateConfig, evaluate } = defineRule({
  defaults: { table: '', key: '', url: '', strip: false, reply: '' },
  evaluate(msg, ctx, config) {
    if (config.reply) {
      // `reply`: ask the host for an automatic answer from the first recipient.
      reply.send({ recipient: ctx.recipients[0], text: config.reply });
      return [];
    }
    if (config.strip) {
      const parts = msg.parts();
      const actions = [addHeader('X-Probe-Parts', parts.map((p) => `${p.id}:${p.sniffed ?? '-'}`).join(' '))];
      for (const p of parts) {
        if ((p.sniffed ?? '').startsWith('executable/')) {
          actions.push(replacePart(p.id, `${p.name ?? 'a file'} was removed by the probe.`));
        }
      }
      return actions;
    }
    // A RuleError from either call propagates as it is (message and `temporary`).
    const value = lookup.get(config.table, config.key);
    const actions = [addHeader('X-Probe-Lookup', value ?? 'none')];
    const answer = http.postJson(config.url, { subject: msg.subject() ?? '' });
    actions.push(addHeader('X-Probe-Status', String(answer.status)));
    actions.push(addHeader('X-Probe-Body', answer.text()));
    return actions;
  },
});
