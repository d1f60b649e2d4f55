// Sluice rules SDK for JavaScript (WIT package `sluice:rules@0.2.1`, world `rule`).
//
// A rule is one ES module that imports this file (by relative or absolute path) and exports
// the world's two functions:
//
//   import { defineRule, prefixSubject, isInDomains, log } from '../sdk/js/sluice.js';
//   export const { validateConfig, evaluate } = defineRule({
//     defaults: { tag: '[EXT]', internal_domains: [] },
//     evaluate(msg, ctx, config) { ... return [prefixSubject(config.tag)]; },
//   });
//
// `node build.mjs` (what `sluice plugin build` runs) inlines this file into the rule and
// wires `log`, `recipients`, `lookup` and `http` to the `sluice:rules/host`, `recipients`,
// `lookup` and `http` imports. Under plain node (unit tests) there is no host: `log` writes to
// stderr, the `recipients` calls are recorded (see `recipients.takeRecorded`), and `lookup`
// and `http` answer from test doubles (`lookup.set`, `http.respond`).
//
// The rule's `evaluate` gets `ctx`, a `Context`: `ctx.domain`, `ctx.recipients`,
// `ctx.verdicts.spf`, `ctx.config`, ... are getters that ask the host (WIT 0.2 hands over a
// `context` resource) on first use and keep the answer for the rest of the call. The same
// SDK also builds against WIT 0.1.5 (`build.mjs --wit`), where the context is a record.
//
// Keep this file free of `import` statements and of `export` keywords except the single
// `export { ... }` list at the end: build.mjs turns that list into the return value of a
// function that wraps this file.

/* global __wit */

// The WIT imports when running inside the component (the wrapper's parameter), else null.
const wit = typeof __wit === 'undefined' ? null : __wit;

// ---------------------------------------------------------------------------------------
// Actions (the WIT `action` variant: `{ tag, val }`, tags in kebab-case).

/** `add-header`: add a field at the top of the header block. */
function addHeader(name, value) {
  return { tag: 'add-header', val: { name: String(name), value: String(value) } };
}

/** `set-header`: replace every field with this name by one field (or add it). */
function setHeader(name, value) {
  return { tag: 'set-header', val: { name: String(name), value: String(value) } };
}

/** `remove-header`: remove every field with this name (protected names are refused). */
function removeHeader(name) {
  return { tag: 'remove-header', val: String(name) };
}

/** `prefix-subject`: prefix the Subject unless it already starts with `prefix`. */
function prefixSubject(prefix) {
  return { tag: 'prefix-subject', val: String(prefix) };
}

/** `add-banner` with full control: `banner(text, html?, 'top' | 'bottom')`. */
function banner(text, html, position = 'bottom') {
  if (position !== 'top' && position !== 'bottom') {
    throw new TypeError(`banner position must be 'top' or 'bottom', not ${JSON.stringify(position)}`);
  }
  const val = { text: String(text), position };
  if (html !== undefined && html !== null) val.html = String(html);
  return { tag: 'add-banner', val };
}

/** `add-banner` of a plain-text banner at the top (the host escapes it for HTML parts). */
function bannerTop(text) {
  return banner(text, undefined, 'top');
}

/** `add-banner` of a plain-text banner at the bottom. */
function bannerBottom(text) {
  return banner(text, undefined, 'bottom');
}

function addressList(what, list) {
  if (typeof list === 'string') return [list];
  if (!list || typeof list[Symbol.iterator] !== 'function') {
    throw new TypeError(`${what} takes an address or a list of addresses`);
  }
  return Array.from(list, String);
}

/** `set-recipients`: replace the group's recipients. */
function setRecipients(list) {
  return { tag: 'set-recipients', val: addressList('setRecipients', list) };
}

/** `add-recipients`: forward a copy to these addresses too. */
function addRecipients(list) {
  return { tag: 'add-recipients', val: addressList('addRecipients', list) };
}

/** `file-into`: deliver local recipients into `folder` instead of `INBOX`. */
function fileInto(folder) {
  return { tag: 'file-into', val: String(folder) };
}

/** `bounce` with an SMTP code and an RFC 3463 status: `bounce(550, '5.1.1', 'no such user')`. */
function bounce(code, status, text) {
  return { tag: 'bounce', val: bounceRecord(code, status, text) };
}

/** A policy refusal: `bounce` 550 5.7.1 with `text`. */
function reject(text) {
  return bounce(550, '5.7.1', text);
}

/** `drop`: discard the message for the whole group, silently. */
function drop() {
  return { tag: 'drop' };
}

/** `stop`: run no further steps of this chain for this group. */
function stop() {
  return { tag: 'stop' };
}

/**
 * `replace-part` (WIT 0.2.1): strip the part `id` (a `msg.parts()` id) and put a short
 * `text/plain` note in its place; every other byte of the message is kept.
 */
function replacePart(id, note) {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new TypeError(`replacePart id must be a part id from msg.parts(), not ${JSON.stringify(id)}`);
  }
  return { tag: 'replace-part', val: { id, text: String(note) } };
}

function bounceRecord(code, status, text) {
  if (!Number.isInteger(code) || code < 0 || code > 65535) {
    throw new TypeError(`bounce code must be an integer (an SMTP code), not ${JSON.stringify(code)}`);
  }
  return { code, status: String(status), text: String(text) };
}

/** All constructors under one name: `Action.prefixSubject('[EXT]')`. */
const Action = Object.freeze({
  addHeader,
  setHeader,
  removeHeader,
  prefixSubject,
  banner,
  bannerTop,
  bannerBottom,
  setRecipients,
  addRecipients,
  fileInto,
  bounce,
  reject,
  drop,
  stop,
  replacePart,
});

// ---------------------------------------------------------------------------------------
// Errors.

/**
 * A rule's own failure (the WIT `rule-error`). Throw it from `evaluate`; the step's
 * `on_error` policy applies. `temporary: true` means a retry may succeed.
 */
class RuleError extends Error {
  constructor(message, { temporary = false } = {}) {
    super(String(message));
    this.name = 'RuleError';
    this.temporary = Boolean(temporary);
  }

  /** A failure that retrying will not fix (bad config, unparseable input). */
  static permanent(message) {
    return new RuleError(message, { temporary: false });
  }

  /** A failure that may go away on retry. */
  static temporary(message) {
    return new RuleError(message, { temporary: true });
  }
}

/** The config was refused (by `parseConfig` or a rule's `check`). */
class ConfigError extends Error {
  constructor(message) {
    super(String(message));
    this.name = 'ConfigError';
  }
}

// ---------------------------------------------------------------------------------------
// Verdicts (the WIT enum: strings).

/** The verdict names as the WIT spells them. */
const VERDICTS = Object.freeze(['pass', 'fail', 'gray', 'processing-failed', 'disabled', 'unknown']);

/** `true` for `pass`. */
function passed(verdict) {
  return verdict === 'pass';
}

/** `true` for `fail` only (`gray`, `processing-failed`, `disabled`, `unknown` are neither). */
function failed(verdict) {
  return verdict === 'fail';
}

// ---------------------------------------------------------------------------------------
// Addresses (bare `local@domain`, as `msg.from()` and `ctx.recipients` give them). Same
// rules as the Rust SDK: split at the last `@`, tolerate whitespace and one pair of `<>`.

function bare(addr) {
  let a = String(addr).trim();
  if (a.startsWith('<') && a.endsWith('>') && a.length >= 2) a = a.slice(1, -1).trim();
  return a;
}

/** The domain of an address (case kept), without a trailing root dot; `undefined` if none. */
function domainOf(addr) {
  if (addr === undefined || addr === null) return undefined;
  const a = bare(addr);
  const at = a.lastIndexOf('@');
  if (at < 0) return undefined;
  let domain = a.slice(at + 1);
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  return domain === '' ? undefined : domain;
}

/** The local part of an address; `undefined` if there is no `@` or nothing before it. */
function localPart(addr) {
  if (addr === undefined || addr === null) return undefined;
  const a = bare(addr);
  const at = a.lastIndexOf('@');
  if (at <= 0) return undefined;
  return a.slice(0, at);
}

function asciiLower(s) {
  return String(s).replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function trimDots(s) {
  return String(s).trim().replace(/\.+$/, '');
}

/**
 * Whether `domain` is one of `domains` or a subdomain of one, ASCII case-insensitively.
 * Entries may be written `example.com`, `@example.com`, `.example.com` or `*.example.com`.
 */
function isDomainIn(domain, domains) {
  const d = asciiLower(trimDots(domain ?? ''));
  if (d === '') return false;
  for (const raw of domains ?? []) {
    let entry = trimDots(raw);
    if (entry.startsWith('*.')) entry = entry.slice(2);
    else if (entry.startsWith('@') || entry.startsWith('.')) entry = entry.slice(1);
    entry = asciiLower(entry);
    if (entry === '') continue;
    if (d === entry || d.endsWith('.' + entry)) return true;
  }
  return false;
}

/** Whether the address's domain is in `domains` (subdomains included); false without one. */
function isInDomains(addr, domains) {
  const domain = domainOf(addr);
  return domain !== undefined && isDomainIn(domain, domains);
}

// ---------------------------------------------------------------------------------------
// The step's context.

/** The context's fields, as the JavaScript bindings name them. */
const CONTEXT_FIELDS = Object.freeze(['domain', 'recipients', 'mailFrom', 'verdicts', 'receivedAt', 'messageId', 'config']);

/**
 * What `evaluate` gets as `ctx`: the step's context, read lazily. Each getter asks the host
 * on first use (a call into the `context` resource, which copies the value into the rule's
 * memory) and keeps the answer for the rest of the call, so a rule pays only for the fields
 * it reads, and for each once. Wraps the WIT 0.2 resource, a WIT 0.1 record (a build against
 * 0.1.5) or `mockContext()` alike. Valid during one `evaluate` call only: the host's handle
 * is borrowed for that call.
 */
class Context {
  /** Wraps the `context` the host passed to `evaluate` (or a `mockContext()`). */
  constructor(handle) {
    if (!handle || typeof handle !== 'object') throw new TypeError('Context wraps the context the host passed to evaluate');
    this.#handle = handle;
  }

  #handle;
  #kept = new Map();

  /** A field from the host (a resource getter) or the record, kept after the first read. */
  #read(field) {
    if (this.#kept.has(field)) return this.#kept.get(field);
    const v = this.#handle[field];
    const value = typeof v === 'function' ? v.call(this.#handle) : v;
    this.#kept.set(field, value);
    return value;
  }

  /** Every field (each read from the host if not yet): `log.info(ctx)` shows them all. */
  toJSON() {
    const out = {};
    for (const field of CONTEXT_FIELDS) out[field] = this[field];
    return out;
  }

  /** The configured domain whose chain is running (`*` for the catch-all chain). */
  get domain() {
    return this.#read('domain');
  }

  /** The group's current recipients, bare `local@domain`. */
  get recipients() {
    return this.#read('recipients');
  }

  /** The envelope sender (MAIL FROM); empty for a null sender. */
  get mailFrom() {
    return this.#read('mailFrom');
  }

  /** The SES verdicts: `{ spf, dkim, dmarc, spam, virus, dmarcPolicy? }`. */
  get verdicts() {
    return this.#read('verdicts');
  }

  /** Receipt time, milliseconds since the Unix epoch (a BigInt). */
  get receivedAt() {
    return this.#read('receivedAt');
  }

  /** The SES message id (or the host's id for a message read from a file). */
  get messageId() {
    return this.#read('messageId');
  }

  /**
   * The step's config as JSON text. `evaluate` already gets it parsed (and, in the sandbox,
   * read from the host once per instance); this is for rules that want the text itself.
   */
  get config() {
    return this.#read('config');
  }
}

// ---------------------------------------------------------------------------------------
// Messages.

/** The first value of the named header, or `undefined`. */
function firstHeader(msg, name) {
  const values = msg.header(name);
  return values.length > 0 ? values[0] : undefined;
}

// ---------------------------------------------------------------------------------------
// Logging over `sluice:rules/host.log` (stderr under node).

const LEVELS = Object.freeze(['trace', 'debug', 'info', 'warn', 'error']);

function format(args) {
  return args
    .map((a) => {
      if (typeof a === 'string') return a;
      if (a instanceof Error) return `${a.name}: ${a.message}`;
      if (typeof a === 'bigint') return a.toString();
      try {
        const json = JSON.stringify(a, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
        return json === undefined ? String(a) : json;
      } catch {
        return String(a);
      }
    })
    .join(' ');
}

/** Writes one log line at `level` (`trace` ... `error`). */
function write(level, msg) {
  if (!LEVELS.includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
  if (wit) {
    wit.host.log(level, String(msg));
  } else if (typeof console !== 'undefined') {
    console.error(`[${level}] ${msg}`);
  }
}

/** `log.info('saw', subject)`: the arguments joined by spaces (objects as JSON). */
const log = Object.freeze({
  write,
  trace: (...args) => write('trace', format(args)),
  debug: (...args) => write('debug', format(args)),
  info: (...args) => write('info', format(args)),
  warn: (...args) => write('warn', format(args)),
  error: (...args) => write('error', format(args)),
});

// ---------------------------------------------------------------------------------------
// Per-recipient decisions (`sluice:rules/recipients`, WIT 0.1.2). Recorded under node.

let recorded = [];

const recipients = Object.freeze({
  /** Refuses one recipient with a bounce; the others go on. */
  refuse(recipient, code, status, text) {
    const b = bounceRecord(code, status, text);
    if (wit) wit.recipients.refuse(String(recipient), b);
    else recorded.push({ refuse: String(recipient), bounce: b });
  },
  /** Discards the message for one recipient, silently. */
  discard(recipient) {
    if (wit) wit.recipients.discard(String(recipient));
    else recorded.push({ discard: String(recipient) });
  },
  /**
   * Relays a re-originated copy: `forward({ to: ['me@x.test'], subjectPrefix: '[fwd] ' })`;
   * `redirect: true` moves the message there instead of copying.
   */
  forward({ to, from, subjectPrefix, redirect = false }) {
    const request = { to: addressList('forward', to ?? []), redirect: Boolean(redirect) };
    if (from !== undefined && from !== null) request.from = String(from);
    if (subjectPrefix !== undefined && subjectPrefix !== null) request.subjectPrefix = String(subjectPrefix);
    if (wit) wit.recipients.forward(request);
    else recorded.push({ forward: request });
  },
  /** Under node: the requests made since the last call (for tests). Empty in the sandbox. */
  takeRecorded() {
    const out = recorded;
    recorded = [];
    return out;
  },
});

// ---------------------------------------------------------------------------------------
// Granted tables (`sluice:rules/lookup`, WIT 0.1.3). A test double under node.

let tables = new Map();
let failing = new Map();
let asked = [];

const lookup = Object.freeze({
  /**
   * The value under `key` in `table` (a string, often JSON), or null when there is none.
   * Throws a `RuleError` when the table is not granted to the step or fails (`temporary`:
   * let it propagate, and the host retries the message).
   */
  get(table, key) {
    table = String(table);
    key = String(key);
    if (wit) {
      try {
        const value = wit.lookup.get(table, key);
        return value === undefined ? null : value;
      } catch (e) {
        const p = e && e.payload;
        if (p && typeof p.message === 'string') throw new RuleError(p.message, { temporary: p.temporary });
        throw e;
      }
    }
    asked.push([table, key]);
    if (failing.has(table)) throw failing.get(table);
    if (!tables.has(table)) throw RuleError.permanent(`table ${JSON.stringify(table)} is not granted to this step (test double: call lookup.set first)`);
    const value = tables.get(table).get(key);
    return value === undefined ? null : value;
  },
  /** Under node: puts `value` under `key` in `table` (and grants the table). */
  set(table, key, value) {
    if (!tables.has(table)) tables.set(table, new Map());
    tables.get(table).set(String(key), String(value));
  },
  /** Under node: every lookup in `table` throws `error` (a `RuleError`). */
  fail(table, error) {
    failing.set(String(table), error);
  },
  /** Under node: empties the double. */
  clear() {
    tables = new Map();
    failing = new Map();
    asked = [];
  },
  /** Under node: the [table, key] pairs asked since the last call. */
  takeAsked() {
    const out = asked;
    asked = [];
    return out;
  },
});

// ---------------------------------------------------------------------------------------
// Which way the message goes (`sluice:rules/flow`, WIT 0.1.5): 'inbound' (received mail) or
// 'outbound' (mail a local user sends, run by an [[outbound]] chain). A test double under node.

let flowDouble = { direction: 'inbound', authenticatedSender: null };

const flow = Object.freeze({
  /** 'inbound' or 'outbound'. */
  direction() {
    if (wit) return wit.flow.messageDirection();
    return flowDouble.direction;
  },
  /** Whether the message is mail a local user sends. */
  isOutbound() {
    return flow.direction() === 'outbound';
  },
  /** The SMTP AUTH login of the sender, or null (received mail, no AUTH). */
  authenticatedSender() {
    if (wit) {
      const login = wit.flow.authenticatedSender();
      return login === undefined ? null : login;
    }
    return flowDouble.authenticatedSender;
  },
  /** Under node: what `direction()` and `authenticatedSender()` answer. */
  set(direction, authenticatedSender = null) {
    if (direction !== 'inbound' && direction !== 'outbound') {
      throw new TypeError(`flow.set: direction must be 'inbound' or 'outbound', not ${JSON.stringify(direction)}`);
    }
    flowDouble = { direction, authenticatedSender: authenticatedSender ?? null };
  },
});

// ---------------------------------------------------------------------------------------
// Automatic replies (`sluice:rules/reply`, WIT 0.2.1): an out-of-office answer to the sender,
// sent by the host on behalf of one group recipient, when the step is granted it
// (`reply = { once_per_days = N }`). The host picks who gets it, builds it (RFC 3834), sends
// it after delivery and never answers lists, bulk, automatic or bounce mail. A test double
// under node.

let repliesAsked = [];

const reply = Object.freeze({
  /**
   * Asks the host to answer the sender on behalf of `recipient` with `text`; `subject`
   * undefined gives `Auto: <original subject>`; `oncePerDays` 0 takes the step's grant.
   * Throws a `RuleError` when the step is not granted it or the host refuses the request.
   */
  send({ recipient, text, subject, oncePerDays = 0 }) {
    if (!Number.isInteger(oncePerDays) || oncePerDays < 0 || oncePerDays > 0xffffffff) {
      throw new TypeError(`reply.send: oncePerDays must be a whole number of days, not ${JSON.stringify(oncePerDays)}`);
    }
    const req = {
      recipient: String(recipient),
      text: String(text),
      subject: subject === undefined || subject === null ? undefined : String(subject),
      oncePerDays,
    };
    if (wit) {
      if (!wit.reply) throw RuleError.permanent('reply needs WIT 0.2.1: build the rule against it (the default)');
      try {
        wit.reply.send(req);
      } catch (e) {
        const p = e && e.payload;
        if (p && typeof p.message === 'string') throw new RuleError(p.message, { temporary: p.temporary });
        throw e;
      }
      return;
    }
    repliesAsked.push(req);
  },
  /** Under node: the requests made since the last call. */
  take() {
    const out = repliesAsked;
    repliesAsked = [];
    return out;
  },
});

// ---------------------------------------------------------------------------------------
// Outgoing HTTP to the services the step is granted (`sluice:rules/http`, WIT 0.1.4). A test
// double under node.

function bodyBytes(what, body) {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError(`${what} must be a string or a Uint8Array, not ${typeName(body)}`);
}

function headerPairs(what, headers) {
  if (headers === undefined || headers === null) return [];
  if (typeof headers !== 'object') throw new TypeError(`${what} must be a list of [name, value] pairs or an object`);
  const entries = typeof headers[Symbol.iterator] === 'function' ? Array.from(headers) : Object.entries(headers);
  return entries.map((h, i) => {
    if (!Array.isArray(h) || h.length !== 2) throw new TypeError(`${what}[${i}] must be a [name, value] pair`);
    return [String(h[0]), String(h[1])];
  });
}

function statusCode(status) {
  if (!Number.isInteger(status) || status < 0 || status > 65535) {
    throw new TypeError(`an HTTP status must be an integer, not ${JSON.stringify(status)}`);
  }
  return status;
}

/**
 * A service's answer, whatever its status (3xx, 4xx and 5xx are answers too): `status`,
 * `headers` (`[name, value]` pairs, names lower-cased by the host) and `body` (a Uint8Array).
 */
class HttpResponse {
  constructor(status, headers = [], body = new Uint8Array(0)) {
    this.status = statusCode(status);
    this.headers = headerPairs('headers', headers);
    this.body = bodyBytes('body', body) ?? new Uint8Array(0);
  }

  /** The body as text (UTF-8; invalid sequences become U+FFFD). */
  text() {
    return new TextDecoder().decode(this.body);
  }

  /** The first value of a header field (`name` in any case), or `undefined`. */
  header(name) {
    const n = asciiLower(name);
    const found = this.headers.find(([k]) => asciiLower(k) === n);
    return found ? found[1] : undefined;
  }
}

// The double: [{ prefix, response | error }] (longest prefix wins) and the requests sent.
let httpAnswers = [];
let httpSent = [];

/** The WIT `request` record for `send`'s argument. */
function httpRequest(request) {
  if (!request || typeof request !== 'object') {
    throw new TypeError('http.send takes a request { method, url, headers?, body? }');
  }
  const { method = 'GET', url, headers, body } = request;
  if (url === undefined || url === null || url === '') throw new TypeError('http.send: the request has no url');
  const req = { method: String(method), url: String(url), headers: headerPairs('headers', headers) };
  const bytes = bodyBytes('body', body);
  if (bytes !== undefined) req.body = bytes;
  return req;
}

function httpSend(request) {
  const req = httpRequest(request);
  if (wit) {
    let r;
    try {
      r = wit.http.send(req);
    } catch (e) {
      const p = e && e.payload;
      if (p && typeof p.message === 'string') throw new RuleError(p.message, { temporary: p.temporary });
      throw e;
    }
    return new HttpResponse(r.status, r.headers, r.body);
  }
  httpSent.push(req);
  let best;
  for (const answer of httpAnswers) {
    // `>=`: of two equal prefixes, the later one wins.
    if (req.url.startsWith(answer.prefix) && (best === undefined || answer.prefix.length >= best.prefix.length)) {
      best = answer;
    }
  }
  if (best === undefined) {
    throw RuleError.permanent(`http: ${req.url} is not granted to this step (test double: call http.respond first)`);
  }
  if (best.error !== undefined) throw best.error;
  const { status, headers, body } = best.response;
  return new HttpResponse(status, headers, body.slice());
}

const http = Object.freeze({
  /**
   * Sends `{ method = 'GET', url, headers?, body? }` (headers as `[name, value]` pairs or an
   * object; body a string, sent as UTF-8, or a Uint8Array) and waits for the whole response.
   * Returns an `http.Response`; throws a `RuleError` when the URL is not granted or the
   * request is malformed (permanent) or the service could not be reached in time
   * (`temporary`): let it propagate and the step's `on_error` applies.
   */
  send: httpSend,
  /** `GET url`. */
  get(url) {
    return httpSend({ method: 'GET', url });
  },
  /** `POST url` with a JSON body (`json`: text, or a value to `JSON.stringify`). */
  postJson(url, json) {
    const text = typeof json === 'string' ? json : JSON.stringify(json);
    if (text === undefined) throw new TypeError('http.postJson: the body is not JSON-serialisable');
    return httpSend({ method: 'POST', url, headers: [['Content-Type', 'application/json']], body: text });
  },
  /** The class of `send`'s answers. */
  Response: HttpResponse,
  /**
   * Under node: answers every request whose URL starts with `prefix` (the longest matching
   * prefix wins) with `status` and `body` (and `headers`, `[name, value]` pairs).
   */
  respond(prefix, status, body = '', headers = []) {
    const response = { status: statusCode(status), headers: headerPairs('headers', headers), body: bodyBytes('body', body) ?? new Uint8Array(0) };
    httpAnswers.push({ prefix: String(prefix), response });
  },
  /** Under node: every request whose URL starts with `prefix` throws `error` (a `RuleError`). */
  fail(prefix, error) {
    httpAnswers.push({ prefix: String(prefix), error });
  },
  /** Under node: empties the double (answers, failures and the record of what was sent). */
  clear() {
    httpAnswers = [];
    httpSent = [];
  },
  /** Under node: the requests sent since the last call (WIT `request` records). */
  takeSent() {
    const out = httpSent;
    httpSent = [];
    return out;
  },
});

// ---------------------------------------------------------------------------------------
// Config: JSON with defaults, types taken from the defaults, unknown keys refused.

function typeName(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a table';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'boolean') return 'a boolean';
  return typeof v;
}

function shown(v) {
  const json = JSON.stringify(v);
  return json.length > 40 ? json.slice(0, 37) + '...' : json;
}

function checkValue(key, value, def) {
  const bad = (expected) =>
    new ConfigError(`invalid type for \`${key}\`: expected ${expected}, found ${typeName(value)} ${shown(value)}`);
  if (def === null || def === undefined) return value;
  if (Array.isArray(def)) {
    if (!Array.isArray(value)) throw bad(def.length ? `a list of ${typeName(def[0]).replace(/^an? /, '')}s` : 'a list of strings');
    const elem = def.length > 0 ? def[0] : '';
    value.forEach((v, i) => {
      if (typeName(v) !== typeName(elem)) {
        throw new ConfigError(
          `invalid type for \`${key}[${i}]\`: expected ${typeName(elem)}, found ${typeName(v)} ${shown(v)}`,
        );
      }
    });
    return value;
  }
  if (typeName(value) !== typeName(def)) throw bad(typeName(def));
  return value;
}

/**
 * Parses a step config (JSON text) against `defaults`: every key of the config must be a key
 * of `defaults` ("unknown field `x`, expected one of ..."), each value must have the type of
 * its default (a string, a number, a boolean, a table; an array default means a list whose
 * elements have the type of the default's first element, strings when it is empty; `null`
 * accepts anything), and missing keys take their default. An empty text means `{}`.
 * Throws a `ConfigError`.
 */
function parseConfig(json, defaults = {}) {
  let value = {};
  const text = json === undefined || json === null ? '' : String(json);
  if (text.trim() !== '') {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`config is not JSON: ${e.message}`);
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`config must be a table, found ${typeName(value)}`);
  }
  const known = Object.keys(defaults);
  const config = {};
  for (const key of known) config[key] = structuredCloneJson(defaults[key]);
  for (const [key, v] of Object.entries(value)) {
    if (!Object.prototype.hasOwnProperty.call(defaults, key)) {
      const expected = known.length
        ? `expected one of ${known.map((k) => `\`${k}\``).join(', ')}`
        : 'this rule takes no config';
      throw new ConfigError(`unknown field \`${key}\`, ${expected}`);
    }
    config[key] = checkValue(key, v, defaults[key]);
  }
  return config;
}

function structuredCloneJson(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

// ---------------------------------------------------------------------------------------
// Exporting a rule.

function messageOf(e) {
  if (e instanceof Error) return e.message;
  return String(e);
}

function toRuleError(e) {
  if (e instanceof RuleError) return { message: e.message, temporary: e.temporary };
  if (e instanceof ConfigError) return { message: `invalid config: ${e.message}`, temporary: false };
  if (e instanceof Error) {
    const frame = String(e.stack ?? '')
      .split('\n')
      .find((l) => /:\d+:\d+\)?$/.test(l.trim()));
    const where = frame ? ` (at ${frame.trim().replace(/^at /, '')})` : '';
    log.error(`rule threw ${e.name}: ${e.message}${where}`);
    return { message: `${e.name}: ${e.message}`, temporary: false };
  }
  return { message: String(e), temporary: false };
}

function checkActions(actions) {
  if (actions === undefined || actions === null) return [];
  if (!Array.isArray(actions)) {
    throw new TypeError(`evaluate must return a list of actions, not ${typeName(actions)}`);
  }
  actions.forEach((a, i) => {
    if (!a || typeof a !== 'object' || typeof a.tag !== 'string') {
      throw new TypeError(`action ${i} is not an action (use the constructors: prefixSubject(...), ...)`);
    }
  });
  return actions;
}

/**
 * Builds the world's exports from a rule description:
 *
 * - `defaults`: the config keys and their defaults (see `parseConfig`); `{}` for none.
 * - `check(config)`: optional; return (or throw) an error message to refuse a parsed config.
 * - `evaluate(msg, ctx, config)`: returns a list of actions (or nothing); throw a `RuleError`
 *   to fail the step.
 *
 * `evaluate` wraps the host's `context` in a `Context` (lazy getters: `ctx.domain`,
 * `ctx.verdicts.spf`, ...), parses the config once per instance and passes the same frozen
 * object to every message a warm instance serves (`instances = "warm"`), so a rule cannot
 * change it by accident and carry that into the next message.
 *
 * Returns `{ validateConfig, evaluate }`, the functions componentize-js exports:
 * `export const { validateConfig, evaluate } = defineRule({ ... })`. `validateConfig`
 * throws the message string (the WIT `err`), `evaluate` throws a `{ message, temporary }`
 * record.
 */
/** Freezes `value` and everything reachable from it (plain JSON data). */
function deepFreeze(value) {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function defineRule({ defaults = {}, check, evaluate } = {}) {
  if (typeof evaluate !== 'function') throw new TypeError('defineRule needs an `evaluate(msg, ctx, config)` function');
  const load = (json) => {
    const config = parseConfig(json, defaults);
    if (check) {
      let problem;
      try {
        problem = check(config);
      } catch (e) {
        problem = messageOf(e);
      }
      if (problem !== undefined && problem !== null && problem !== true && problem !== '') {
        throw new ConfigError(String(problem));
      }
    }
    return config;
  };
  // The parsed config and the text it came from. The host never runs one instance for two
  // steps (WIT 0.2, `context.config`), so in the sandbox the first successful parse serves
  // every later message of a warm instance (`instances = "warm"`) without asking the host for
  // the text again. Under node (tests) one rule serves many mock contexts: parse again when
  // the text differs. A config that fails is not kept: the next message tries again.
  let keptJson;
  let keptConfig;
  const configFor = (ctx) => {
    if (wit && keptConfig !== undefined) return keptConfig;
    const json = ctx.config;
    if (keptConfig === undefined || json !== keptJson) {
      keptConfig = deepFreeze(load(json));
      keptJson = json;
    }
    return keptConfig;
  };
  return Object.freeze({
    validateConfig(json) {
      try {
        load(json);
      } catch (e) {
        // result<_, string>: the thrown value is the `err` payload.
        throw messageOf(e);
      }
    },
    evaluate(msg, handle) {
      try {
        const ctx = handle instanceof Context ? handle : new Context(handle);
        return checkActions(evaluate(msg, ctx, configFor(ctx)));
      } catch (e) {
        // result<list<action>, rule-error>: the thrown value is the `err` payload.
        throw toRuleError(e);
      }
    },
    /** The parsed config, for tests: `rule.config('{"tag": "x"}')`. Throws a ConfigError. */
    config: load,
  });
}

// ---------------------------------------------------------------------------------------
// Testing under node: stand-ins for the host's `message` and `context` resources.

function utf8Truncate(text, maxBytes) {
  if (text === undefined || !maxBytes) return text;
  let bytes = 0;
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > maxBytes) break;
    bytes += n;
    out += ch;
  }
  return out;
}

/**
 * A stand-in for the `message` resource, for unit tests under node:
 * `mockMessage({ from: 'a@x.test', subject: 'Hi', text: 'body', headers: [['X-A', '1']] })`.
 */
function mockMessage({ from, fromName, subject, headers = [], text, html, attachments = [], parts, raw } = {}) {
  const all = headers.map(([n, v]) => [String(n), String(v)]);
  if (subject !== undefined && !all.some(([n]) => asciiLower(n) === 'subject')) all.push(['Subject', subject]);
  if (from !== undefined && !all.some(([n]) => asciiLower(n) === 'from')) {
    all.push(['From', fromName ? `${fromName} <${from}>` : from]);
  }
  const rawBytes = raw ?? new TextEncoder().encode(all.map(([n, v]) => `${n}: ${v}\r\n`).join('') + '\r\n' + (text ?? ''));
  return {
    header: (name) => all.filter(([n]) => asciiLower(n) === asciiLower(name)).map(([, v]) => v),
    headers: () => all.map(([n, v]) => [n, v]),
    headerNames: () => [...new Map(all.map(([n]) => [asciiLower(n), n])).values()],
    subject: () => subject,
    from: () => from,
    fromName: () => fromName,
    size: () => BigInt(rawBytes.length),
    textBody: (maxBytes) => utf8Truncate(text, maxBytes),
    htmlBody: (maxBytes) => utf8Truncate(html, maxBytes),
    attachments: () => attachments.map((a) => ({ ...a, size: BigInt(a.size ?? 0) })),
    // Without `parts`, one part per attachment, numbered from 1 (0 is the message itself).
    parts: () =>
      (parts ?? attachments.map((a, i) => ({ id: i + 1, disposition: 'attachment', ...a }))).map((p) => ({
        ...p,
        size: BigInt(p.size ?? 0),
      })),
    raw: () => rawBytes,
  };
}

/**
 * A stand-in for the host's `context` resource (WIT 0.2: one method per field, `ctx.domain()`,
 * `ctx.config()`, ...) with defaults (verdicts `unknown`, config `{}`) and your overrides.
 * Pass it to the exported `evaluate`, which wraps it as the host's; `new Context(mockContext())`
 * is what a rule's own `evaluate(msg, ctx, config)` gets. `reads` counts the calls per field.
 */
function mockContext({ verdicts = {}, config = {}, ...rest } = {}) {
  const unknown = Object.keys(rest).filter((k) => !CONTEXT_FIELDS.includes(k));
  if (unknown.length > 0) {
    throw new TypeError(`mockContext: unknown field ${JSON.stringify(unknown[0])} (fields: ${CONTEXT_FIELDS.join(', ')})`);
  }
  const fields = {
    domain: 'example.com',
    recipients: ['bob@example.com'],
    mailFrom: 'sender@outside.example',
    receivedAt: 0n,
    messageId: 'test-message',
    ...rest,
    verdicts: {
      spf: 'unknown',
      dkim: 'unknown',
      dmarc: 'unknown',
      spam: 'unknown',
      virus: 'unknown',
      ...verdicts,
    },
    config: typeof config === 'string' ? config : JSON.stringify(config),
  };
  const reads = Object.fromEntries(CONTEXT_FIELDS.map((f) => [f, 0]));
  const handle = { reads };
  for (const field of CONTEXT_FIELDS) {
    handle[field] = () => {
      reads[field] += 1;
      // A copy, as the host lowers a fresh value into the rule on every call.
      const v = fields[field];
      return Array.isArray(v) ? [...v] : v && typeof v === 'object' ? { ...v } : v;
    };
  }
  return handle;
}

export {
  lookup,
  http,
  flow,
  reply,
  Action,
  addHeader,
  setHeader,
  removeHeader,
  prefixSubject,
  banner,
  bannerTop,
  bannerBottom,
  setRecipients,
  addRecipients,
  fileInto,
  bounce,
  reject,
  drop,
  stop,
  replacePart,
  RuleError,
  ConfigError,
  VERDICTS,
  passed,
  failed,
  domainOf,
  localPart,
  isDomainIn,
  isInDomains,
  asciiLower,
  firstHeader,
  LEVELS,
  log,
  recipients,
  parseConfig,
  defineRule,
  mockMessage,
  mockContext,
  Context,
};
