// Types of the Sluice JavaScript SDK (sluice.js) and of the WIT world `sluice:rules/rule@0.2.0`
// as componentize-js maps it. The WIT part follows `jco types wit -n rule` (jco 1.35.0).
//
// Mapping: kebab-case names -> camelCase (`text-body` -> `textBody`, `mail-from` -> `mailFrom`);
// enum -> string union; variant -> `{ tag, val }` (no `val` for cases without payload);
// option<T> -> `T | undefined` (record fields become optional); result<T, E> -> return T /
// throw E; list<u8> -> Uint8Array; u64 -> bigint; u16/u32 -> number; resource -> class;
// tuple -> array.

// ---- sluice:rules/types@0.2.0 ------------------------------------------------------------
export type Verdict = 'pass' | 'fail' | 'gray' | 'processing-failed' | 'disabled' | 'unknown';
/**
 * The five SES verdicts for this message.
 */
export interface Verdicts {
  spf: Verdict,
  dkim: Verdict,
  dmarc: Verdict,
  spam: Verdict,
  virus: Verdict,
  /**
   * The sending domain's published DMARC policy when SES reported one:
   * `none`, `quarantine` or `reject`.
   */
  dmarcPolicy?: string,
}
/**
 * The host's `context` resource (WIT 0.2; a record in 0.1.x): one getter per field, each
 * call copying the value into the rule. The handle is borrowed for one `evaluate` call.
 * Rules do not see it: `defineRule` wraps it in a `Context`.
 */
export interface ContextHandle {
  domain(): string;
  recipients(): Array<string>;
  mailFrom(): string;
  verdicts(): Verdicts;
  receivedAt(): bigint;
  messageId(): string;
  config(): string;
}
/**
 * What a rule's `evaluate(msg, ctx, config)` gets as `ctx`: the step's context, read lazily
 * (each field is asked of the host on first use and kept for the rest of the call). Valid
 * during that call only.
 */
export class Context {
  /** Wraps the host's handle (or a `mockContext()`, or a 0.1 record). */
  constructor(handle: ContextHandle | ContextRecord);
  /** The configured domain whose chain is running (`*` for the catch-all chain). */
  readonly domain: string;
  /**
   * The group's current recipients (after earlier steps' `set-recipients` /
   * `add-recipients`), as bare addresses `local@domain`.
   */
  readonly recipients: Array<string>;
  /** The envelope sender (MAIL FROM); empty for a null sender (bounces). */
  readonly mailFrom: string;
  /** SES verdicts. */
  readonly verdicts: Verdicts;
  /** Receipt time, milliseconds since the Unix epoch. */
  readonly receivedAt: bigint;
  /** The SES message id (or the host's id for a message read from a file). */
  readonly messageId: string;
  /**
   * This step's `config` table from the host's configuration, as JSON (`{}` if none).
   * `evaluate` already gets it parsed, read from the host once per instance.
   */
  readonly config: string;
  /** Every field (read from the host if not yet). */
  toJSON(): ContextRecord;
}
/** The context as a WIT 0.1.x record (a rule built with `--wit sluice-rules-0.1.5.wit`). */
export interface ContextRecord {
  domain: string;
  recipients: Array<string>;
  mailFrom: string;
  verdicts: Verdicts;
  receivedAt: bigint;
  messageId: string;
  config: string;
}
/**
 * One attachment (a part that is not displayed text, or is marked as an attachment).
 */
export interface AttachmentInfo {
  /**
   * The file name from Content-Disposition or Content-Type, if any.
   */
  name?: string,
  /**
   * `type/subtype`, lower case.
   */
  contentType: string,
  /**
   * Decoded size in bytes.
   */
  size: bigint,
}
/**
 * A header field. Names are case-insensitive. Values are unstructured text: the host
 * refuses CR and LF and RFC 2047-encodes non-ASCII text itself.
 */
export interface Header {
  name: string,
  value: string,
}
/**
 * Where a banner goes in each displayed text part.
 * # Variants
 * 
 * ## `"top"`
 * 
 * ## `"bottom"`
 */
export type Position = 'top' | 'bottom';
/**
 * A banner inserted into every displayed text part (both sides of multipart/alternative).
 */
export interface Banner {
  /**
   * Plain text, for text/plain parts (and, escaped, for HTML parts when `html` is none).
   */
  text: string,
  /**
   * HTML for text/html parts, inserted as-is right after `<body>` or before `</body>`.
   */
  html?: string,
  position: Position,
}
/**
 * A bounce: the host answers the envelope sender with a delivery status notification.
 */
export interface Bounce {
  /**
   * SMTP reply code, 500-599 (or 400-499 for a temporary refusal).
   */
  code: number,
  /**
   * RFC 3463 enhanced status code, e.g. `5.7.1`; its class must match `code`.
   */
  status: string,
  /**
   * Human-readable reason.
   */
  text: string,
}
/**
 * What a rule asks the host to do. The host validates every action when the step returns
 * (one invalid action fails the whole step, see `on_error`), collects the edits of all
 * steps and applies them once, in order, after the chain.
 */
export type Action = ActionAddHeader | ActionSetHeader | ActionRemoveHeader | ActionPrefixSubject | ActionAddBanner | ActionSetRecipients | ActionAddRecipients | ActionFileInto | ActionBounce | ActionDrop | ActionStop | ActionReplacePart;
/**
 * Add a header field at the top of the header block.
 */
export interface ActionAddHeader {
  tag: 'add-header',
  val: Header,
}
/**
 * Replace every field with this name by one field (or add it if there is none).
 */
export interface ActionSetHeader {
  tag: 'set-header',
  val: Header,
}
/**
 * Remove every field with this name. `Received`, `DKIM-Signature`, `ARC-*` and
 * `Authentication-Results` are protected: asking is an invalid action.
 */
export interface ActionRemoveHeader {
  tag: 'remove-header',
  val: string,
}
/**
 * Prefix the Subject (no-op when it already starts with this prefix).
 */
export interface ActionPrefixSubject {
  tag: 'prefix-subject',
  val: string,
}
/**
 * Insert a banner into every displayed text part that does not show it already (the host
 * checks, so a rule need not read the body to avoid a second banner).
 */
export interface ActionAddBanner {
  tag: 'add-banner',
  val: Banner,
}
/**
 * Replace the group's recipients (redirect, alias expansion).
 */
export interface ActionSetRecipients {
  tag: 'set-recipients',
  val: Array<string>,
}
/**
 * Add recipients (forward a copy).
 */
export interface ActionAddRecipients {
  tag: 'add-recipients',
  val: Array<string>,
}
/**
 * Deliver local recipients into this folder (e.g. `Junk`) instead of `INBOX`.
 */
export interface ActionFileInto {
  tag: 'file-into',
  val: string,
}
/**
 * Refuse the message for all of the group's recipients.
 */
export interface ActionBounce {
  tag: 'bounce',
  val: Bounce,
}
/**
 * Discard the message for all of the group's recipients, silently.
 */
export interface ActionDrop {
  tag: 'drop',
}
/**
 * Run no further steps of this chain for this group.
 */
export interface ActionReplacePart {
  tag: 'replace-part',
  val: PartReplacement,
}
/**
 * Strip one part (WIT 0.2.1): the host puts a `text/plain; charset=utf-8` part holding `text`
 * in its place and keeps every other byte of the message.
 */
export interface PartReplacement {
  /** The part's `id` from `msg.parts()`. */
  id: number,
  /** The note, one short paragraph (at most 4,096 bytes). */
  text: string,
}
/** What the host read of a zip archive's central directory (bounded). */
export interface ArchiveInfo {
  /** Entry names, in archive order. */
  names: Array<string>,
  /** Some entry is encrypted. */
  encrypted: boolean,
  /** Every entry was listed (false past the host's bounds, or for an archive it could not read). */
  complete: boolean,
}
/** One MIME part of the message as received (WIT 0.2.1 `part-info`). */
export interface PartInfo {
  /** Its index in a depth-first walk of the MIME tree (0: the message itself). */
  id: number,
  name?: string,
  /** The declared `type/subtype`, lower case. */
  contentType: string,
  /** Decoded size in bytes. */
  size: bigint,
  /** `attachment` or `inline`, when the part says. */
  disposition?: string,
  /** What the host's magic-byte table says the bytes are. */
  sniffed?: string,
  /** For a zip archive: the names inside. */
  archive?: ArchiveInfo,
}
export interface ActionStop {
  tag: 'stop',
}
/**
 * A rule's own failure. The step's `on_error` policy applies (as for a trap or a timeout).
 */
export interface RuleError {
  message: string,
  /**
   * The problem may go away on retry. With `on_error = "bounce"` the host then
   * tempfails (the message is retried) rather than bouncing.
   */
  temporary: boolean,
}
/**
 * Log levels for `host.log`.
 * # Variants
 * 
 * ## `"trace"`
 * 
 * ## `"debug"`
 * 
 * ## `"info"`
 * 
 * ## `"warn"`
 * 
 * ## `"error"`
 */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export declare class Message {
  /**
   * This type does not have a public constructor.
   */
  private constructor();
  /**
  * All values of the named header (case-insensitive), unfolded and RFC 2047-decoded,
  * in message order. Empty if absent.
  */
  header(name: string): Array<string>;
  /**
  * Every header field as (name, decoded value), in message order.
  */
  headers(): Array<[string, string]>;
  /**
  * The distinct header field names, as first written, in order of first appearance.
  * Cheaper than `headers` when a rule only needs to know what is there.
  * (Added in 0.1.1.)
  */
  headerNames(): Array<string>;
  /**
  * The decoded Subject.
  */
  subject(): string | undefined;
  /**
  * The first address of From:, bare (`local@domain`).
  */
  from(): string | undefined;
  /**
  * The display name of From:, if any.
  */
  fromName(): string | undefined;
  /**
  * The size of the raw message in bytes.
  */
  size(): bigint;
  /**
  * The displayed plain-text body, decoded to UTF-8, truncated to `max-bytes` on a
  * character boundary (0 means no limit). Text parts of multipart/alternative are
  * joined; an HTML-only message yields its text rendering.
  */
  textBody(maxBytes: number): string | undefined;
  /**
  * The displayed HTML body, decoded to UTF-8, truncated like `text-body`.
  */
  htmlBody(maxBytes: number): string | undefined;
  /**
  * The attachments, without their contents.
  */
  attachments(): Array<AttachmentInfo>;
  /**
  * Every MIME part with its id, sniffed type and, for zips, the names inside (WIT 0.2.1).
  */
  parts(): Array<PartInfo>;
  /**
  * The raw RFC 5322 bytes. Copies the whole message: call only when you must.
  */
  raw(): Uint8Array;
}

// ---- sluice:rules/recipients@0.2.0 (added in 0.1.2) ---------------------------------------
export interface ForwardRequest {
  /**
   * Where the copy goes. Always relayed (through `[relay]`, subject to its
   * `allow_domains`), never delivered to a local mailbox.
   */
  to: Array<string>,
  /**
   * The verified address for the copy's `From:`; the original sender's name is kept
   * as "Name via <domain>", and the original From becomes Reply-To unless one exists.
   * None uses the host's `[relay] from`.
   */
  from?: string,
  /**
   * Prefix for the copy's Subject (the local copies keep theirs).
   */
  subjectPrefix?: string,
  /**
   * true: the group's current recipients no longer get the message (a redirect);
   * false: they keep it and this is a copy.
   */
  redirect: boolean,
}

// ---- sluice:rules/http@0.2.0 (added in 0.1.4) ---------------------------------------------
/**
 * A request. `url` is absolute (`http` or `https`); `method` is an upper-case token such
 * as `GET` or `POST`. The host sets `Host`, `Content-Length` and `Connection` itself.
 * (The WIT `request` record: what `http.send` passes to the host and `http.takeSent` returns.)
 */
export interface HttpRequest {
  method: string,
  url: string,
  headers: Array<[string, string]>,
  body?: Uint8Array,
}

// ---- the SDK ------------------------------------------------------------------------------

export function addHeader(name: string, value: string): ActionAddHeader;
export function setHeader(name: string, value: string): ActionSetHeader;
export function removeHeader(name: string): ActionRemoveHeader;
export function prefixSubject(prefix: string): ActionPrefixSubject;
export function banner(text: string, html?: string | null, position?: Position): ActionAddBanner;
export function bannerTop(text: string): ActionAddBanner;
export function bannerBottom(text: string): ActionAddBanner;
export function setRecipients(recipients: string | Iterable<string>): ActionSetRecipients;
export function addRecipients(recipients: string | Iterable<string>): ActionAddRecipients;
export function fileInto(folder: string): ActionFileInto;
export function bounce(code: number, status: string, text: string): ActionBounce;
/** `bounce(550, '5.7.1', text)`. */
export function reject(text: string): ActionBounce;
export function drop(): ActionDrop;
export function stop(): ActionStop;
/** An automatic reply to ask the host for (WIT 0.2.1 `reply-request`). */
export interface ReplyRequest {
  /** The group recipient the reply is from. */
  recipient: string;
  /** The plain-text body (at most 8 KiB). */
  text: string;
  /** The Subject; undefined gives `Auto: <original subject>`. */
  subject?: string;
  /** Answer one sender at most once in this many days (0: the step's grant). */
  oncePerDays?: number;
}
/** Automatic replies (`sluice:rules/reply`, WIT 0.2.1), granted per step. */
export const reply: {
  send(req: ReplyRequest): void;
  /** Under node: the requests made since the last call. */
  take(): ReplyRequest[];
};
/** `replace-part` (WIT 0.2.1): strip part `id` of `msg.parts()`, a text note in its place. */
export function replacePart(id: number, note: string): ActionReplacePart;
export const Action: {
  addHeader: typeof addHeader; setHeader: typeof setHeader; removeHeader: typeof removeHeader;
  prefixSubject: typeof prefixSubject; banner: typeof banner; bannerTop: typeof bannerTop;
  bannerBottom: typeof bannerBottom; setRecipients: typeof setRecipients;
  addRecipients: typeof addRecipients; fileInto: typeof fileInto; bounce: typeof bounce;
  reject: typeof reject; drop: typeof drop; stop: typeof stop; replacePart: typeof replacePart;
};

/** Throw from `evaluate` to fail the step (the WIT `rule-error`). */
export class RuleError extends Error {
  constructor(message: string, options?: { temporary?: boolean });
  temporary: boolean;
  static permanent(message: string): RuleError;
  static temporary(message: string): RuleError;
}
/** A refused config (from `parseConfig` or a rule's `check`). */
export class ConfigError extends Error {}

export const VERDICTS: readonly Verdict[];
export function passed(verdict: Verdict): boolean;
/** `fail` only; `gray`, `processing-failed`, `disabled`, `unknown` are neither. */
export function failed(verdict: Verdict): boolean;

export function domainOf(addr: string | undefined | null): string | undefined;
export function localPart(addr: string | undefined | null): string | undefined;
/** Subdomains included; entries `example.com`, `@example.com`, `.example.com`, `*.example.com`. */
export function isDomainIn(domain: string, domains: Iterable<string>): boolean;
export function isInDomains(addr: string | undefined | null, domains: Iterable<string>): boolean;
/** Lower-cases `A`-`Z` only. */
export function asciiLower(s: string): string;
export function firstHeader(msg: Message, name: string): string | undefined;

export const LEVELS: readonly Level[];
export const log: {
  write(level: Level, msg: string): void;
  trace(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};

export type Recorded =
  | { refuse: string; bounce: Bounce }
  | { discard: string }
  | { forward: ForwardRequest };
export const recipients: {
  refuse(recipient: string, code: number, status: string, text: string): void;
  discard(recipient: string): void;
  forward(request: { to: string | Iterable<string>; from?: string; subjectPrefix?: string; redirect?: boolean }): void;
  /** Under node: the requests made since the last call. */
  takeRecorded(): Recorded[];
};

/** Which way the message goes (WIT 0.1.5): received mail, or mail a local user sends (an `[[outbound]]` chain). */
export type Direction = 'inbound' | 'outbound';
export const flow: {
  /** The direction of the message being evaluated. */
  direction(): Direction;
  /** `direction() === 'outbound'`. */
  isOutbound(): boolean;
  /** The SMTP AUTH login the sender used, or null (received mail, or no AUTH). */
  authenticatedSender(): string | null;
  /** Under node: what `direction()` and `authenticatedSender()` answer (inbound, null by default). */
  set(direction: Direction, authenticatedSender?: string | null): void;
};

/** Granted tables (WIT 0.1.3): `lookups = ["aliases"]` in the step's config. */
export const lookup: {
  /** The value under `key` in `table`, or null; throws a `RuleError` (not granted, or the table failed). */
  get(table: string, key: string): string | null;
  /** Under node: puts a value in the test double. */
  set(table: string, key: string, value: string): void;
  /** Under node: every lookup in `table` throws `error`. */
  fail(table: string, error: RuleError): void;
  /** Under node: empties the double. */
  clear(): void;
  /** Under node: the [table, key] pairs asked since the last call. */
  takeAsked(): Array<[string, string]>;
};

/** What `http.send` takes: `method` defaults to `GET`; headers as pairs or an object; a string body is sent as UTF-8. */
export interface HttpRequestInit {
  method?: string;
  url: string;
  headers?: Iterable<[string, string]> | Record<string, string | number | boolean>;
  body?: string | Uint8Array | ArrayBuffer | ArrayBufferView | null;
}
/** A service's answer, whatever its status (3xx, 4xx and 5xx too). */
export class HttpResponse {
  constructor(status: number, headers?: Iterable<[string, string]>, body?: string | Uint8Array);
  status: number;
  /** Header fields as received, names lower-cased (by the host). */
  headers: Array<[string, string]>;
  /** At most the grant's `max_response_kb`. */
  body: Uint8Array;
  /** The body as UTF-8 text (invalid sequences become U+FFFD). */
  text(): string;
  /** The first value of a header field (`name` in any case), or `undefined`. */
  header(name: string): string | undefined;
}
/** Outgoing HTTP (WIT 0.1.4) to the URL prefixes the step is granted: `http = { allow = [...] }` in its config. */
export const http: {
  /** Sends the request and waits for the whole response; throws a `RuleError` (not granted or malformed: permanent; unreachable in time: temporary). */
  send(request: HttpRequestInit): HttpResponse;
  /** `GET url`. */
  get(url: string): HttpResponse;
  /** `POST url` with `Content-Type: application/json`; `json` is text or a value to `JSON.stringify`. */
  postJson(url: string, json: string | unknown): HttpResponse;
  Response: typeof HttpResponse;
  /** Under node: answers requests whose URL starts with `prefix` (longest prefix wins; of equal ones the later). */
  respond(prefix: string, status: number, body?: string | Uint8Array, headers?: Iterable<[string, string]>): void;
  /** Under node: requests whose URL starts with `prefix` throw `error`. */
  fail(prefix: string, error: RuleError): void;
  /** Under node: empties the double (answers, failures, what was sent). */
  clear(): void;
  /** Under node: the requests sent since the last call (an unanswered URL throws a permanent "not granted" `RuleError`). */
  takeSent(): HttpRequest[];
};

/** Parses `json` against `defaults` (types from the defaults, unknown keys refused). */
export function parseConfig<C extends Record<string, unknown>>(json: string | undefined, defaults?: C): C;

export interface RuleSpec<C extends Record<string, unknown>> {
  /** Config keys and their defaults. */
  defaults?: C;
  /** Return (or throw) a message to refuse a parsed config. */
  check?(config: C): string | undefined | null | void;
  evaluate(msg: Message, ctx: Context, config: C): Action[] | undefined | null | void;
}
export interface RuleExports<C> {
  /** The world's `validate-config`: throws the error message. */
  validateConfig(config: string): void;
  /** The world's `evaluate`: throws a `RuleError` record. */
  evaluate(msg: Message, ctx: ContextHandle | ContextRecord | Context): Action[];
  /** The parsed config (for tests); throws a `ConfigError`. */
  config(json: string): C;
}
export function defineRule<C extends Record<string, unknown>>(spec: RuleSpec<C>): RuleExports<C>;

export interface MockMessage {
  from?: string;
  fromName?: string;
  subject?: string;
  headers?: [string, string][];
  text?: string;
  html?: string;
  attachments?: { name?: string; contentType: string; size?: number | bigint }[];
  /** The parts `parts()` answers (default: one per attachment, ids from 1). */
  parts?: (Omit<PartInfo, 'size'> & { size?: number | bigint })[];
  raw?: Uint8Array;
}
export function mockMessage(spec?: MockMessage): Message;
/** A stand-in for the host's `context` resource; `reads` counts the calls per field. */
export interface MockContext extends ContextHandle {
  reads: Record<keyof ContextRecord, number>;
}
export function mockContext(
  overrides?: Partial<Omit<ContextRecord, 'verdicts' | 'config'>> & {
    verdicts?: Partial<Verdicts>;
    config?: string | Record<string, unknown>;
  },
): MockContext;
