// `node --test plugins/subject-tag/js`: the decision under plain node (see ../README.md).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { flow, mockContext, mockMessage } from '../../../sdk/js/sluice.js';
import { evaluate, foundKeywords, isInternal, validateConfig } from './rule.js';

const config = {
  internal_domains: ['Example.com'],
  keywords: ['Invoice', 'password', 'invoice'],
};

test('internal senders are left alone (exact domain, ASCII case-insensitive)', () => {
  assert.ok(isInternal('a@EXAMPLE.COM', config.internal_domains));
  assert.ok(!isInternal('a@mail.example.com', config.internal_domains));
  assert.ok(!isInternal(undefined, config.internal_domains));
  assert.ok(!isInternal('no-at-sign', config.internal_domains));
  const msg = mockMessage({ from: 'a@example.com', text: 'invoice' });
  assert.deepEqual(evaluate(msg, mockContext({ config, verdicts: { spf: 'fail', dkim: 'fail' } })), []);
});

test('external mail gets every action in order', () => {
  const msg = mockMessage({ from: 'eve@evil.example', text: 'Your INVOICE and PassWord' });
  const ctx = mockContext({ config, verdicts: { spf: 'fail', dkim: 'fail' } });
  assert.deepEqual(evaluate(msg, ctx), [
    { tag: 'prefix-subject', val: '[EXTERNAL] ' },
    { tag: 'add-header', val: { name: 'X-Sluice-Auth', value: 'spf=fail dkim=fail dmarc=unknown' } },
    { tag: 'set-header', val: { name: 'X-Sluice-Keywords', value: 'Invoice, password, invoice' } },
    { tag: 'file-into', val: 'Review' },
    { tag: 'add-banner', val: { text: 'Warning: this message failed sender authentication.', position: 'top' } },
  ]);
  const plain = evaluate(mockMessage({}), mockContext({ config: { tag: '[X]' }, verdicts: { spf: 'pass' } }));
  assert.deepEqual(plain, [
    { tag: 'prefix-subject', val: '[X] ' },
    { tag: 'add-header', val: { name: 'X-Sluice-Auth', value: 'spf=pass dkim=unknown dmarc=unknown' } },
  ]);
  assert.deepEqual(foundKeywords('ÄINVOICE', ['invoice', 'invoice']), ['invoice']);
});

test('config errors', () => {
  validateConfig('{}');
  assert.throws(() => validateConfig('{"tags": "x"}'), /unknown field `tags`/);
  assert.throws(() => validateConfig('{"tag": ""}'), /`tag` must not be empty/);
  assert.throws(() => validateConfig('{"keyword_folder": ""}'), /`keyword_folder` must not be empty/);
  assert.throws(() => validateConfig('{"keywords": ["a", ""]}'), /empty keyword/);
  assert.throws(() => validateConfig('{"keywords": "a"}'), /expected a list of strings/);
});

test('outbound mail is tagged only when some recipient is external', () => {
  flow.set('outbound', 'a@example.com');
  try {
    const msg = mockMessage({ from: 'a@example.com', text: 'invoice' });
    const inside = mockContext({ config, recipients: ['b@example.com', 'c@EXAMPLE.com'] });
    assert.deepEqual(evaluate(msg, inside), []);
    const mixed = mockContext({ config, recipients: ['b@example.com', 'x@partner.test'] });
    assert.deepEqual(evaluate(msg, mixed), [{ tag: 'prefix-subject', val: '[EXTERNAL] ' }]);
  } finally {
    flow.set('inbound');
  }
});
