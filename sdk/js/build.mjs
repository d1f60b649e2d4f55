#!/usr/bin/env node
// Builds a JavaScript Sluice rule into a WebAssembly component.
//
//   node sdk/js/build.mjs --rule DIR --out FILE.wasm [--wit WIT] [--keep-source FILE.js]
//
// 1. Reads DIR/package.json: `name` and the entry module `main` (default `rule.js`).
// 2. Parses the entry (oxc-parser): a syntax error is reported as `file:line:column`. The
//    entry must export `validateConfig` and `evaluate`, and may import only this SDK
//    (`sluice.js` of this directory, by a relative or absolute path).
// 3. Writes ONE ES module: the WIT imports (`sluice:rules/host`, `recipients`, `lookup`, `http`, `flow`,
//    at the version the WIT declares), the SDK wrapped in a function that receives them, then
//    the rule with its SDK imports replaced by `const { ... } = <sdk>`.
// 4. componentize-js turns that module into a component of world `rule` with every WASI
//    feature disabled, so the component imports only `sluice:rules/*`.
//
// The WIT (a `.wit` file, or a directory holding `rules.wit`) defaults to the frozen
// `wit/released/sluice-rules-0.2.1.wit` of this checkout. The SDK also builds against 0.1.5
// (`--wit wit/released/sluice-rules-0.1.5.wit`): the host loads both tracks, and `Context`
// reads a 0.1 record as it reads a 0.2 resource.
//
// Errors are one line on stderr, starting with `error: `, then exit status 1.

import { readFile, writeFile, mkdtemp, rm, rename, realpath, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve, isAbsolute, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SDK_DIR = dirname(fileURLToPath(import.meta.url));
const SDK_FILE = join(SDK_DIR, 'sluice.js');
const DEFAULT_WIT = join(SDK_DIR, '..', '..', 'wit', 'released', 'sluice-rules-0.2.1.wit');
const DEFAULT_WIT_VERSION = '0.2.1';
const DISABLED_FEATURES = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];

class BuildError extends Error {}

function fail(message) {
  throw new BuildError(message);
}

function parseArgs(argv) {
  const opts = { wit: DEFAULT_WIT };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--rule') opts.rule = value();
    else if (arg === '--out') opts.out = value();
    else if (arg === '--wit') opts.wit = value();
    else if (arg === '--keep-source') opts.keepSource = value();
    else if (arg === '-h' || arg === '--help') {
      process.stdout.write('usage: node build.mjs --rule DIR --out FILE.wasm [--wit WIT] [--keep-source FILE.js]\n');
      process.exit(0);
    } else fail(`unknown argument ${JSON.stringify(arg)} (usage: --rule DIR --out FILE.wasm [--wit WIT])`);
  }
  if (!opts.rule) fail('--rule DIR is required');
  if (!opts.out) fail('--out FILE.wasm is required');
  return opts;
}

/**
 * The `sluice:rules` version a WIT declares (`package sluice:rules@X.Y.Z;`): the imports
 * carry it. `wit` is a `.wit` file or a directory holding `rules.wit`. Only the versions this
 * SDK knows are accepted: 0.1.5 and later 0.1.x (the context as a record, with `flow`) and
 * 0.2.x (the context as a resource).
 */
export async function witVersion(wit) {
  const info = await stat(wit).catch(() => null);
  if (info === null) fail(`no WIT at ${wit} (pass --wit with a .wit file or the wit/ directory of a Sluice checkout)`);
  const file = info.isDirectory() ? join(wit, 'rules.wit') : wit;
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    fail(`${file}: cannot read the WIT: ${e.message}`);
  }
  const m = /^\s*package\s+sluice:rules@(\d+)\.(\d+)\.(\d+)\s*;/m.exec(text);
  if (!m) fail(`${file}: no \`package sluice:rules@X.Y.Z;\` line (not the Sluice rule world)`);
  const [major, minor, patch] = m.slice(1).map(Number);
  const version = `${major}.${minor}.${patch}`;
  const known = major === 0 && ((minor === 1 && patch >= 5) || minor === 2);
  if (!known) {
    fail(`${file}: sluice:rules@${version}: this SDK builds against 0.1.5 or later 0.1.x and 0.2.x`);
  }
  return version;
}

/** `name` and entry file of the rule directory. */
export async function readRulePackage(dir) {
  const path = join(dir, 'package.json');
  let text;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    fail(`${path}: not found (a JavaScript rule directory has a package.json with "name" and "main")`);
  }
  let pkg;
  try {
    pkg = JSON.parse(text);
  } catch (e) {
    fail(`${path}: not JSON: ${e.message}`);
  }
  if (typeof pkg.name !== 'string' || pkg.name === '') fail(`${path}: no "name"`);
  const main = pkg.main ?? 'rule.js';
  if (typeof main !== 'string' || main === '') fail(`${path}: "main" must be a file name`);
  const entry = resolve(dir, main);
  if (!existsSync(entry)) fail(`${path}: "main" is ${JSON.stringify(main)} but ${entry} does not exist`);
  return { name: pkg.name, entry };
}

function lineCol(text, offset) {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const col = offset - before.lastIndexOf('\n');
  return `${line}:${col}`;
}

async function loadParser() {
  try {
    return (await import('oxc-parser')).default;
  } catch {
    fail(`the JavaScript SDK's dependencies are not installed: run \`npm install --prefix ${SDK_DIR}\``);
  }
}

async function loadComponentize() {
  try {
    return (await import('@bytecodealliance/componentize-js')).componentize;
  } catch {
    fail(`componentize-js is not installed: run \`npm install --prefix ${SDK_DIR}\``);
  }
}

/** The SDK source as a function declaration taking the WIT imports and returning its exports. */
async function sdkFunction() {
  const text = await readFile(SDK_FILE, 'utf8');
  const m = /\nexport\s*\{([^}]*)\};?\s*$/.exec(text);
  if (!m) fail(`${SDK_FILE}: expected one \`export { ... }\` list at the end`);
  const body = text.slice(0, m.index);
  if (/^\s*(import|export)\b/m.test(body)) fail(`${SDK_FILE}: only the final \`export { ... }\` may use import/export`);
  return `function __sluice_sdk_factory(__wit) {\n${body}\nreturn {${m[1]}};\n}\n`;
}

/**
 * Turns the rule's entry module into one ES module with the SDK inlined, importing the
 * `sluice:rules` interfaces at `version` (see `witVersion`). Returns the source.
 */
export async function bundle(entry, version = DEFAULT_WIT_VERSION) {
  const oxc = await loadParser();
  const source = await readFile(entry, 'utf8');
  const result = await oxc.parseAsync(entry, source, { sourceType: 'module' });
  if (result.errors.length > 0) {
    const e = result.errors[0];
    const at = e.labels?.[0]?.start ?? 0;
    fail(`${entry}:${lineCol(source, at)}: syntax error: ${e.message}`);
  }
  const mod = result.module;
  const sdkReal = await realpath(SDK_FILE);
  const edits = [];
  for (const imp of mod.staticImports) {
    const spec = imp.moduleRequest.value;
    const at = `${entry}:${lineCol(source, imp.start)}`;
    let target = null;
    if (spec.startsWith('.') || isAbsolute(spec) || spec.startsWith('file:')) {
      const path = spec.startsWith('file:') ? fileURLToPath(spec) : resolve(dirname(entry), spec);
      try {
        target = await realpath(path);
      } catch {
        fail(`${at}: cannot find ${JSON.stringify(spec)} (${path})`);
      }
    }
    // This SDK, or another copy of it (a rule scaffolded against another checkout): either
    // way the SDK that builds is the one inlined.
    const isSdk =
      target !== null &&
      (target === sdkReal || (basename(target) === 'sluice.js' && existsSync(join(dirname(target), 'build.mjs'))));
    if (!isSdk) {
      fail(
        `${at}: imports ${JSON.stringify(spec)}; a JavaScript rule is one module and may import only the Sluice SDK ` +
          `(${SDK_FILE}): move that code into ${relative(process.cwd(), entry) || entry}`,
      );
    }
    const parts = [];
    for (const e of imp.entries) {
      if (e.isType) continue;
      const local = e.localName.value;
      if (e.importName.kind === 'NamespaceObject') parts.push(`const ${local} = __sluice_sdk;`);
      else if (e.importName.kind === 'Default') parts.push(`const ${local} = __sluice_sdk;`);
      else parts.push(`const ${local} = __sluice_sdk[${JSON.stringify(e.importName.name)}];`);
    }
    edits.push({ start: imp.start, end: imp.end, text: parts.join(' ') });
  }
  if (mod.dynamicImports.length > 0) {
    fail(`${entry}:${lineCol(source, mod.dynamicImports[0].start)}: dynamic import() is not supported in a rule`);
  }
  const exported = new Set(mod.staticExports.flatMap((s) => s.entries.map((e) => e.exportName.name)));
  const missing = ['validateConfig', 'evaluate'].filter((n) => !exported.has(n));
  if (missing.length > 0) {
    fail(
      `${entry}: does not export ${missing.join(' and ')}: write ` +
        '`export const { validateConfig, evaluate } = defineRule({ defaults, check, evaluate })`',
    );
  }
  // Replace the import statements by the same number of lines, so line numbers in traps and
  // logs stay those of the rule file.
  let rule = source;
  for (const e of edits.sort((a, b) => b.start - a.start)) {
    const removed = rule.slice(e.start, e.end);
    const newlines = '\n'.repeat((removed.match(/\n/g) || []).length);
    rule = rule.slice(0, e.start) + e.text + newlines + rule.slice(e.end);
  }
  // The prelude goes on the rule's first line and the SDK (a hoisted function declaration)
  // after the rule, so line numbers in errors and traces are those of the rule file.
  const v = version;
  // `reply` exists from 0.2.1 on.
  const [, minor, patch] = v.split('.').map(Number);
  const hasReply = minor > 2 || (minor === 2 && patch >= 1);
  const prelude =
    `import * as __sluice_host from 'sluice:rules/host@${v}'; ` +
    `import * as __sluice_recipients from 'sluice:rules/recipients@${v}'; ` +
    `import * as __sluice_lookup from 'sluice:rules/lookup@${v}'; ` +
    `import * as __sluice_http from 'sluice:rules/http@${v}'; ` +
    `import * as __sluice_flow from 'sluice:rules/flow@${v}'; ` +
    (hasReply ? `import * as __sluice_reply from 'sluice:rules/reply@${v}'; ` : '') +
    'const __sluice_sdk = __sluice_sdk_factory({ host: __sluice_host, recipients: __sluice_recipients, lookup: __sluice_lookup, http: __sluice_http, flow: __sluice_flow' +
    (hasReply ? ', reply: __sluice_reply' : '') +
    ' }); ';
  return `${prelude}${rule}\n\n// ---- the Sluice SDK (${SDK_FILE}) ----\n${await sdkFunction()}`;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const ruleDir = resolve(opts.rule);
  const { entry } = await readRulePackage(ruleDir);
  const witPath = resolve(opts.wit);
  const version = await witVersion(witPath);
  const componentize = await loadComponentize();
  const source = await bundle(entry, version);
  const work = await mkdtemp(join(tmpdir(), 'sluice-js-'));
  try {
    const sourcePath = join(work, 'rule.js');
    await writeFile(sourcePath, source);
    if (opts.keepSource) await writeFile(opts.keepSource, source);
    let component;
    try {
      ({ component } = await componentize({
        sourcePath,
        witPath,
        worldName: 'rule',
        disableFeatures: DISABLED_FEATURES,
      }));
    } catch (e) {
      const text = String(e?.message ?? e).replaceAll(sourcePath, entry);
      fail(`componentize-js failed for ${entry}: ${text.trim()}`);
    }
    const out = resolve(opts.out);
    const tmp = `${out}.${process.pid}.tmp`;
    await writeFile(tmp, component);
    await rename(tmp, out);
    process.stdout.write(`${out} ${component.length}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    const msg = e instanceof BuildError ? e.message : e?.stack ?? String(e);
    process.stderr.write(`error: ${msg}\n`);
    process.exit(1);
  });
}
