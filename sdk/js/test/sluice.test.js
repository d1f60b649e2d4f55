// Unit tests of the SDK under node: `npm test --prefix sdk/js` (or `node --test sdk/js/test`).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as S from '../sluice.js';
import { bundle, witVersion } from '../build.mjs';

test('action constructors build the WIT variants', () => {
  assert.deepEqual(S.addHeader('X-A', 1), { tag: 'add-header', val: { name: 'X-A', value: '1' } });
  assert.deepEqual(S.setHeader('X-A', 'b'), { tag: 'set-header', val: { name: 'X-A', value: 'b' } });
  assert.deepEqual(S.removeHeader('X-A'), { tag: 'remove-header', val: 'X-A' });
  assert.deepEqual(S.prefixSubject('[x]'), { tag: 'prefix-subject', val: '[x]' });
  assert.deepEqual(S.bannerTop('t'), { tag: 'add-banner', val: { text: 't', position: 'top' } });
  assert.deepEqual(S.banner('t', '<b>t</b>'), {
    tag: 'add-banner',
    val: { text: 't', html: '<b>t</b>', position: 'bottom' },
  });
  assert.throws(() => S.banner('t', null, 'middle'), /top' or 'bottom/);
  assert.deepEqual(S.setRecipients(['a@x.test']), { tag: 'set-recipients', val: ['a@x.test'] });
  assert.deepEqual(S.addRecipients('a@x.test'), { tag: 'add-recipients', val: ['a@x.test'] });
  assert.deepEqual(S.fileInto('Junk'), { tag: 'file-into', val: 'Junk' });
  assert.deepEqual(S.reject('no'), { tag: 'bounce', val: { code: 550, status: '5.7.1', text: 'no' } });
  assert.throws(() => S.bounce('550', '5.1.1', 'x'), /integer/);
  assert.deepEqual(S.drop(), { tag: 'drop' });
  assert.deepEqual(S.Action.stop(), { tag: 'stop' });
});

test('verdicts', () => {
  assert.ok(S.passed('pass') && !S.passed('fail'));
  assert.ok(S.failed('fail') && !S.failed('gray') && !S.failed('unknown'));
  assert.equal(S.VERDICTS.length, 6);
});

test('addresses split at the last @ and domains match with subdomains', () => {
  assert.equal(S.domainOf('ann@example.com'), 'example.com');
  assert.equal(S.domainOf(' <ann@Example.com.> '), 'Example.com');
  assert.equal(S.domainOf('"a@b"@example.com'), 'example.com');
  assert.equal(S.localPart('"a@b"@example.com'), '"a@b"');
  assert.equal(S.domainOf('ann'), undefined);
  assert.equal(S.domainOf('ann@'), undefined);
  assert.equal(S.localPart('@example.com'), undefined);
  assert.equal(S.domainOf(undefined), undefined);
  const list = ['Example.COM', '@partner.test', '*.wild.test', ''];
  for (const a of ['a@example.com', 'a@EXAMPLE.com', 'a@eu.mail.example.com', 'a@partner.test', 'a@x.wild.test']) {
    assert.ok(S.isInDomains(a, list), a);
  }
  for (const a of ['a@badexample.com', 'a@example.com.evil', 'a@com', 'nodomain']) {
    assert.ok(!S.isInDomains(a, list), a);
  }
  assert.ok(S.isDomainIn('example.com.', ['example.com']));
  assert.equal(S.asciiLower('ÄBC'), 'Äbc');
});

test('config: defaults, types and unknown keys', () => {
  const defaults = { tag: '[x]', list: [], n: 1, on: false, any: null };
  assert.deepEqual(S.parseConfig('', defaults), { tag: '[x]', list: [], n: 1, on: false, any: null });
  assert.deepEqual(S.parseConfig('{"list": ["a"], "any": {"k": 1}}', defaults).list, ['a']);
  assert.throws(() => S.parseConfig('{"tga": 1}', defaults), /unknown field `tga`, expected one of `tag`, `list`/);
  assert.throws(() => S.parseConfig('{"a": 1}', {}), /unknown field `a`, this rule takes no config/);
  assert.throws(() => S.parseConfig('{"tag": 1}', defaults), /invalid type for `tag`: expected a string, found a number 1/);
  assert.throws(() => S.parseConfig('{"list": "a"}', defaults), /expected a list of strings/);
  assert.throws(() => S.parseConfig('{"list": [1]}', defaults), /`list\[0\]`: expected a string/);
  assert.throws(() => S.parseConfig('[]', defaults), /must be a table/);
  assert.throws(() => S.parseConfig('{', defaults), /not JSON/);
  // Defaults are not shared between parses.
  const a = S.parseConfig('{}', defaults);
  a.list.push('x');
  assert.deepEqual(S.parseConfig('{}', defaults).list, []);
});

test('defineRule maps errors to the WIT results', () => {
  const rule = S.defineRule({
    defaults: { word: 'x' },
    check: (c) => (c.word === '' ? '`word` must not be empty' : undefined),
    evaluate(msg, ctx, config) {
      if (msg.subject() === 'temp') throw S.RuleError.temporary('later');
      if (msg.subject() === 'bug') return null.x;
      return [S.prefixSubject(config.word)];
    },
  });
  rule.validateConfig('{}');
  assert.throws(() => rule.validateConfig('{"word": ""}'), (e) => e === '`word` must not be empty');
  assert.throws(() => rule.validateConfig('{"wrd": 1}'), (e) => typeof e === 'string' && e.includes('unknown field'));
  const ctx = S.mockContext({ config: { word: 'W' } });
  assert.deepEqual(rule.evaluate(S.mockMessage({ subject: 'hi' }), ctx), [S.prefixSubject('W')]);
  assert.throws(() => rule.evaluate(S.mockMessage({ subject: 'temp' }), ctx), { message: 'later', temporary: true });
  assert.throws(() => rule.evaluate(S.mockMessage({ subject: 'bug' }), ctx), (e) => e.temporary === false && /^TypeError/.test(e.message));
  assert.throws(() => rule.evaluate(S.mockMessage({}), S.mockContext({ config: '{"word": 3}' })), (e) =>
    e.message.startsWith('invalid config: invalid type for `word`'),
  );
});

test('defineRule parses a config once per instance and freezes it', () => {
  let checks = 0;
  const seen = [];
  const rule = S.defineRule({
    defaults: { words: ['x'] },
    check: () => {
      checks += 1;
    },
    evaluate(msg, ctx, config) {
      seen.push(config);
      assert.throws(() => config.words.push('y'), TypeError);
      return [];
    },
  });
  const ctx = S.mockContext({ config: { words: ['a', 'b'] } });
  rule.evaluate(S.mockMessage({}), ctx);
  rule.evaluate(S.mockMessage({}), ctx);
  assert.equal(checks, 1, 'the same config text is parsed and checked once');
  assert.equal(seen[0], seen[1]);
  assert.deepEqual(seen[1].words, ['a', 'b']);
  rule.evaluate(S.mockMessage({}), S.mockContext({ config: { words: ['c'] } }));
  assert.equal(checks, 2, 'another config text is parsed again');
  assert.deepEqual(seen[2].words, ['c']);
});

test('mock message and recipients recording', () => {
  const msg = S.mockMessage({ from: 'a@x.test', fromName: 'A', subject: 'S', text: 'héllo', headers: [['X-A', '1'], ['x-a', '2']] });
  assert.deepEqual(msg.header('X-a'), ['1', '2']);
  assert.equal(S.firstHeader(msg, 'from'), 'A <a@x.test>');
  assert.deepEqual(msg.headerNames(), ['x-a', 'Subject', 'From']);
  assert.equal(msg.textBody(2), 'h');
  assert.equal(msg.textBody(3), 'hé');
  assert.equal(msg.textBody(0), 'héllo');
  assert.equal(typeof msg.size(), 'bigint');
  S.recipients.refuse('old@x.test', 550, '5.1.1', 'gone');
  S.recipients.discard('n@x.test');
  S.recipients.forward({ to: ['me@y.test'], subjectPrefix: '[fwd] ' });
  assert.deepEqual(S.recipients.takeRecorded(), [
    { refuse: 'old@x.test', bounce: { code: 550, status: '5.1.1', text: 'gone' } },
    { discard: 'n@x.test' },
    { forward: { to: ['me@y.test'], redirect: false, subjectPrefix: '[fwd] ' } },
  ]);
  assert.deepEqual(S.recipients.takeRecorded(), []);
});

test('lookups: the double answers what was set, refuses other tables, and can fail', () => {
  S.lookup.clear();
  S.lookup.set('aliases', 'info@x.test', '{"to":["a@x.test"]}');
  assert.equal(S.lookup.get('aliases', 'info@x.test'), '{"to":["a@x.test"]}');
  assert.equal(S.lookup.get('aliases', 'nobody@x.test'), null);
  assert.throws(() => S.lookup.get('other', 'k'), (e) => e instanceof S.RuleError && !e.temporary);
  S.lookup.fail('aliases', S.RuleError.temporary('down'));
  assert.throws(() => S.lookup.get('aliases', 'info@x.test'), (e) => e.temporary === true);
  assert.equal(S.lookup.takeAsked().length, 4);
  S.lookup.clear();
});

test('flow: the double is inbound until set, and refuses an unknown direction', () => {
  assert.equal(S.flow.direction(), 'inbound');
  assert.equal(S.flow.isOutbound(), false);
  assert.equal(S.flow.authenticatedSender(), null);
  S.flow.set('outbound', 'alice@example.com');
  assert.equal(S.flow.direction(), 'outbound');
  assert.equal(S.flow.isOutbound(), true);
  assert.equal(S.flow.authenticatedSender(), 'alice@example.com');
  assert.throws(() => S.flow.set('sideways'), TypeError);
  S.flow.set('inbound');
  assert.equal(S.flow.authenticatedSender(), null);
});

test('http: the double answers by longest prefix, fails, and refuses the rest', () => {
  S.http.clear();
  S.http.respond('https://c.internal/', 200, 'generic');
  S.http.respond('https://c.internal/v1/score', 200, '{"spam":true}', [['content-type', 'application/json']]);
  S.http.fail('https://slow.internal/', S.RuleError.temporary('timed out'));
  const r = S.http.postJson('https://c.internal/v1/score', '{}');
  assert.ok(r instanceof S.http.Response);
  assert.equal(r.status, 200);
  assert.equal(r.text(), '{"spam":true}');
  assert.ok(r.body instanceof Uint8Array);
  assert.equal(r.header('Content-Type'), 'application/json');
  assert.equal(r.header('x-missing'), undefined);
  assert.equal(S.http.get('https://c.internal/other').text(), 'generic');
  assert.throws(() => S.http.get('https://slow.internal/x'), (e) => e instanceof S.RuleError && e.temporary === true);
  assert.throws(
    () => S.http.get('https://elsewhere/'),
    (e) => e instanceof S.RuleError && !e.temporary && /not granted/.test(e.message),
  );
  const sent = S.http.takeSent();
  assert.equal(sent.length, 4);
  assert.equal(sent[0].method, 'POST');
  assert.equal(sent[0].url, 'https://c.internal/v1/score');
  assert.deepEqual(sent[0].headers, [['Content-Type', 'application/json']]);
  assert.deepEqual(sent[0].body, new TextEncoder().encode('{}'));
  assert.equal(sent[1].method, 'GET');
  assert.equal(sent[1].body, undefined);
  assert.deepEqual(S.http.takeSent(), []);
  S.http.clear();
  assert.throws(() => S.http.get('https://c.internal/'), /not granted/);
  S.http.clear();
});

test('http: send takes headers as pairs or an object, a string or bytes body', () => {
  S.http.clear();
  S.http.respond('http://svc/', 503, new Uint8Array([0x68, 0xff, 0x69]));
  S.http.respond('http://svc/', 202, 'the later of two equal prefixes wins');
  const r = S.http.send({ method: 'PUT', url: 'http://svc/x', headers: { 'X-A': 1 }, body: 'h\u00e9' });
  assert.equal(r.status, 202);
  const [put] = S.http.takeSent();
  assert.deepEqual(put, { method: 'PUT', url: 'http://svc/x', headers: [['X-A', '1']], body: new TextEncoder().encode('h\u00e9') });
  S.http.clear();
  S.http.respond('http://svc/', 503, new Uint8Array([0x68, 0xff, 0x69]));
  const bad = S.http.send({ url: 'http://svc/' });
  assert.equal(bad.status, 503);
  assert.equal(bad.text(), 'h\ufffdi');
  S.http.postJson('http://svc/j', { a: [1] });
  const [get, post] = S.http.takeSent();
  assert.equal(get.method, 'GET');
  assert.deepEqual(post.body, new TextEncoder().encode('{"a":[1]}'));
  assert.throws(() => S.http.send({ method: 'GET' }), TypeError);
  assert.throws(() => S.http.send({ url: 'http://svc/', headers: [['a']] }), TypeError);
  assert.throws(() => S.http.send({ url: 'http://svc/', body: 3 }), TypeError);
  const own = new S.http.Response(200, [['Set-Cookie', 'a'], ['set-cookie', 'b']], 'x');
  assert.equal(own.header('SET-COOKIE'), 'a');
  assert.equal(own.text(), 'x');
  S.http.clear();
});

test('the bundle inlines the SDK and keeps the rule on its own lines', async () => {
  const entry = new URL('../../../plugins/subject-tag/js/rule.js', import.meta.url).pathname;
  const source = await bundle(entry);
  const lines = source.split('\n');
  assert.match(lines[0], /^import \* as __sluice_host from 'sluice:rules\/host@0\.2\.1';/);
  assert.match(lines[0], /import \* as __sluice_http from 'sluice:rules\/http@0\.2\.1';/);
  assert.match(lines[0], /import \* as __sluice_flow from 'sluice:rules\/flow@0\.2\.1';/);
  // Built against 0.1.5 (`--wit`), the imports name that version.
  const legacy = (await bundle(entry, '0.1.5')).split('\n')[0];
  assert.match(legacy, /^import \* as __sluice_host from 'sluice:rules\/host@0\.1\.5';/);
  assert.ok(!legacy.includes('@0.2.'), legacy);
  assert.ok(!/from '\.\.\/\.\.\/\.\.\/sdk/.test(source));
  assert.match(source, /function __sluice_sdk_factory\(__wit\)/);
  // The rule's `export const { validateConfig, evaluate }` keeps its line number.
  const { readFile } = await import('node:fs/promises');
  const original = (await readFile(entry, 'utf8')).split('\n');
  const n = original.findIndex((l) => l.startsWith('export const { validateConfig'));
  assert.equal(lines[n], original[n]);
});

test('the WIT version the imports carry comes from the WIT, and only known tracks build', async () => {
  const wit = new URL('../../../wit/', import.meta.url).pathname;
  assert.equal(await witVersion(`${wit}released/sluice-rules-0.2.0.wit`), '0.2.0');
  assert.equal(await witVersion(`${wit}released/sluice-rules-0.2.1.wit`), '0.2.1');
  assert.equal(await witVersion(`${wit}released/sluice-rules-0.1.5.wit`), '0.1.5');
  // A directory: its rules.wit (the host hands its embedded WIT over that way).
  assert.equal(await witVersion(wit), '0.2.1');
  // 0.1.4 has no `flow`, which the SDK imports.
  await assert.rejects(witVersion(`${wit}released/sluice-rules-0.1.4.wit`), /0\.1\.4: this SDK builds against 0\.1\.5/);
  await assert.rejects(witVersion(`${wit}nonexistent.wit`), /no WIT at/);
  await assert.rejects(witVersion(new URL('../package.json', import.meta.url).pathname), /no `package sluice:rules@/);
});

test('Context reads each field from the host on first use, once', () => {
  const handle = S.mockContext({ domain: 'x.test', recipients: ['a@x.test'], verdicts: { spf: 'fail' }, config: { k: 1 } });
  const ctx = new S.Context(handle);
  assert.deepEqual(handle.reads, { domain: 0, recipients: 0, mailFrom: 0, verdicts: 0, receivedAt: 0, messageId: 0, config: 0 });
  assert.equal(ctx.domain, 'x.test');
  assert.equal(ctx.domain, 'x.test');
  assert.equal(ctx.verdicts.spf, 'fail');
  assert.equal(ctx.verdicts.dkim, 'unknown');
  assert.equal(ctx.verdicts, ctx.verdicts, 'the kept answer, not a new copy');
  assert.deepEqual(handle.reads, { domain: 1, recipients: 0, mailFrom: 0, verdicts: 1, receivedAt: 0, messageId: 0, config: 0 });
  // Every field, for a log line.
  assert.equal(
    JSON.stringify(ctx, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)),
    '{"domain":"x.test","recipients":["a@x.test"],"mailFrom":"sender@outside.example","verdicts":{"spf":"fail","dkim":"unknown","dmarc":"unknown","spam":"unknown","virus":"unknown"},"receivedAt":"0n","messageId":"test-message","config":"{\\"k\\":1}"}',
  );
  assert.ok(Object.values(handle.reads).every((n) => n === 1), JSON.stringify(handle.reads));
  // A 0.1 record (a rule built against 0.1.5) reads the same.
  const record = new S.Context({ domain: 'r.test', recipients: [], mailFrom: '', verdicts: { spf: 'pass' }, receivedAt: 5n, messageId: 'm', config: '{}' });
  assert.equal(record.domain, 'r.test');
  assert.equal(record.receivedAt, 5n);
  assert.equal(record.verdicts.spf, 'pass');
  assert.throws(() => new S.Context(undefined), TypeError);
  assert.throws(() => S.mockContext({ mail_from: 'x' }), /unknown field "mail_from"/);
});

test('evaluate hands the rule a lazy Context and reads only what the rule reads', () => {
  const rule = S.defineRule({
    defaults: { tag: '[x]' },
    evaluate(msg, ctx, config) {
      assert.ok(ctx instanceof S.Context);
      return S.failed(ctx.verdicts.spf) ? [S.prefixSubject(config.tag)] : [];
    },
  });
  const handle = S.mockContext({ verdicts: { spf: 'fail' }, config: { tag: '[t]' } });
  assert.deepEqual(rule.evaluate(S.mockMessage({}), handle), [S.prefixSubject('[t]')]);
  assert.deepEqual(handle.reads, { domain: 0, recipients: 0, mailFrom: 0, verdicts: 1, receivedAt: 0, messageId: 0, config: 1 });
  // A Context passed in is used as it is; a 0.1 record is wrapped like a handle.
  const ctx = new S.Context(S.mockContext({ verdicts: { spf: 'pass' } }));
  assert.deepEqual(rule.evaluate(S.mockMessage({}), ctx), []);
  const record = { domain: 'd', recipients: [], mailFrom: '', verdicts: { spf: 'fail' }, receivedAt: 0n, messageId: 'm', config: '{}' };
  assert.deepEqual(rule.evaluate(S.mockMessage({}), record), [S.prefixSubject('[x]')]);
});

test('in the sandbox the config is read from the host once per instance', async () => {
  // A second instance of the SDK module that sees `__wit`, as the bundled component does.
  const logs = [];
  globalThis.__wit = { host: { log: (level, msg) => logs.push([level, msg]) } };
  let sandboxed;
  try {
    sandboxed = await import('../sluice.js?sandbox');
  } finally {
    delete globalThis.__wit;
  }
  let checks = 0;
  const rule = sandboxed.defineRule({
    defaults: { tag: '[x]' },
    check: (c) => {
      checks += 1;
      return c.tag === '' ? '`tag` must not be empty' : undefined;
    },
    evaluate: (msg, ctx, config) => [sandboxed.prefixSubject(config.tag)],
  });
  // A config that fails is not kept: the next message asks again.
  const bad = sandboxed.mockContext({ config: { tag: '' } });
  assert.throws(() => rule.evaluate(sandboxed.mockMessage({}), bad), (e) => /must not be empty/.test(e.message));
  const handles = [1, 2, 3].map(() => sandboxed.mockContext({ config: { tag: '[w]' } }));
  for (const h of handles) assert.deepEqual(rule.evaluate(sandboxed.mockMessage({}), h), [sandboxed.prefixSubject('[w]')]);
  assert.deepEqual(handles.map((h) => h.reads.config), [1, 0, 0]);
  assert.equal(checks, 2);
  assert.deepEqual(logs, []);
});

test('replacePart strips a part by its parts() id; mockMessage lists one part per attachment', () => {
  assert.deepEqual(S.replacePart(2, 'removed'), { tag: 'replace-part', val: { id: 2, text: 'removed' } });
  assert.deepEqual(S.Action.replacePart(0, 'x').tag, 'replace-part');
  for (const bad of [-1, 1.5, '2', 2 ** 32, undefined]) {
    assert.throws(() => S.replacePart(bad, 'x'), TypeError);
  }
  const msg = S.mockMessage({ attachments: [{ name: 'a.exe', contentType: 'application/octet-stream', size: 3 }] });
  assert.deepEqual(msg.parts(), [
    { id: 1, disposition: 'attachment', name: 'a.exe', contentType: 'application/octet-stream', size: 3n },
  ]);
  const given = S.mockMessage({ parts: [{ id: 4, contentType: 'application/zip', sniffed: 'archive/zip', archive: { names: ['x.exe'], encrypted: false, complete: true } }] });
  assert.equal(given.parts()[0].archive.names[0], 'x.exe');
  assert.equal(given.parts()[0].size, 0n);
});

test('reply: the double keeps what was asked; the bundle imports reply from 0.2.1 on', async () => {
  S.reply.take();
  S.reply.send({ recipient: 'bob@example.com', text: 'Away', oncePerDays: 7 });
  S.reply.send({ recipient: 'ann@example.com', text: 'Out', subject: 'Away until Monday' });
  assert.deepEqual(S.reply.take(), [
    { recipient: 'bob@example.com', text: 'Away', subject: undefined, oncePerDays: 7 },
    { recipient: 'ann@example.com', text: 'Out', subject: 'Away until Monday', oncePerDays: 0 },
  ]);
  assert.deepEqual(S.reply.take(), []);
  for (const bad of [-1, 1.5, '7']) {
    assert.throws(() => S.reply.send({ recipient: 'b@x.test', text: 't', oncePerDays: bad }), TypeError);
  }
  const entry = new URL('../../../plugins/subject-tag/js/rule.js', import.meta.url).pathname;
  assert.match((await bundle(entry, '0.2.1')).split('\n')[0], /import \* as __sluice_reply from 'sluice:rules\/reply@0\.2\.1';.*reply: __sluice_reply/);
  assert.ok(!(await bundle(entry, '0.2.0')).split('\n')[0].includes('reply'));
});
