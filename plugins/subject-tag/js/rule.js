// subject-tag, in JavaScript: the specification is ../README.md (the Rust and Python versions
// follow it too, and tests/all/languages.rs compares all three on the corpus).

import {
  addHeader,
  asciiLower,
  bannerTop,
  defineRule,
  fileInto,
  flow,
  log,
  prefixSubject,
  setHeader,
} from '../../../sdk/js/sluice.js';

export const defaults = {
  tag: '[EXTERNAL]',
  internal_domains: [],
  keywords: [],
  keyword_folder: 'Review',
};

/** Refuses what the types of `defaults` cannot express. */
export function check(config) {
  if (config.tag === '') return '`tag` must not be empty';
  if (config.keyword_folder === '') return '`keyword_folder` must not be empty';
  if (config.keywords.some((k) => k === '')) return '`keywords` must not contain an empty keyword';
  return undefined;
}

/** Step 1: a sender whose domain is (exactly, ASCII case-insensitively) an internal one. */
export function isInternal(from, internalDomains) {
  if (from === undefined) return false;
  const at = from.lastIndexOf('@');
  if (at < 0) return false;
  const domain = asciiLower(from.slice(at + 1));
  return internalDomains.some((d) => asciiLower(d) === domain);
}

/** Step 2.3: the keywords, in config order, whose lower-cased form occurs in `text`. */
export function foundKeywords(text, keywords) {
  const haystack = asciiLower(text ?? '');
  const found = [];
  for (const k of keywords) {
    if (!found.includes(k) && haystack.includes(asciiLower(k))) found.push(k);
  }
  return found;
}

/**
 * Steps 2.1-2.4 for a sender that is not internal: the actions, in order, and the keywords
 * found. `text` is the (possibly truncated) plain-text body, `''` if none.
 */
export function tag(verdicts, text, config) {
  const actions = [
    prefixSubject(`${config.tag} `),
    addHeader('X-Sluice-Auth', `spf=${verdicts.spf} dkim=${verdicts.dkim} dmarc=${verdicts.dmarc}`),
  ];
  const found = foundKeywords(text, config.keywords);
  if (found.length > 0) {
    actions.push(setHeader('X-Sluice-Keywords', found.join(', ')), fileInto(config.keyword_folder));
  }
  if (verdicts.spf === 'fail' && verdicts.dkim === 'fail') {
    actions.push(bannerTop('Warning: this message failed sender authentication.'));
  }
  return { actions, found };
}

/** Step 0: outbound mail is tagged when some recipient is not in an internal domain. */
export function tagOutbound(recipients, config) {
  if (recipients.every((r) => isInternal(r, config.internal_domains))) return [];
  return [prefixSubject(`${config.tag} `)];
}

export const { validateConfig, evaluate } = defineRule({
  defaults,
  check,
  evaluate(msg, ctx, config) {
    if (flow.isOutbound()) return tagOutbound(ctx.recipients, config);
    const from = msg.from();
    if (isInternal(from, config.internal_domains)) return [];
    const { actions, found } = tag(ctx.verdicts, msg.textBody(4096) ?? '', config);
    log.info(`tagged ${from ?? '(no from)'}: ${found.length} keyword(s)`);
    return actions;
  },
});
