#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
#
#   ./test.sh            set up (idempotent, seconds when nothing changed) + cargo test
#   ./test.sh setup      only set up
#   ./test.sh -- ARGS    extra arguments for cargo test (e.g. -- -p sluice-mail)
#
# Needs Rust (rustup) and, on a machine without Node.js, apt-get. Installs: the wasm32 rule
# targets, a Python venv .venv with moto / cfn-lint / aiosmtpd / componentize-py
# (requirements-test.txt), Dovecot (apt),
# Node.js 20 + npm if missing, sdk/js's node packages (componentize-js), and mdbook (cargo
# install, for the docs book). Each step is
# skipped when what it installs is already there and its inputs did not change (stamps in
# .venv/ and sdk/js/node_modules/).
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '== %s\n' "$*"; }

# sha256 of the given files, to notice a changed requirements or lock file.
digest() { cat "$@" | sha256sum | cut -d' ' -f1; }

setup() {
  step "rust targets (wasm32-unknown-unknown for Rust rules, wasm32-wasip2 for one test rule)"
  local installed
  installed="$(rustup target list --installed)"
  for target in wasm32-unknown-unknown wasm32-wasip2; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
  done

  step "python tools in .venv (moto server, cfn-lint, componentize-py)"
  local want
  want="$(digest requirements-test.txt sdk/python/requirements.txt)"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ "$(cat .venv/.sluice-stamp 2>/dev/null)" != "$want" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
    echo "$want" > .venv/.sluice-stamp
  fi
  .venv/bin/moto_server --help >/dev/null
  .venv/bin/cfn-lint --version
  .venv/bin/componentize-py --version

  step "mail servers for the delivery tests (Dovecot LMTP + IMAP)"
  if [ ! -x /usr/sbin/dovecot ] || [ ! -e /usr/lib/dovecot/lmtp ] || [ ! -e /usr/lib/dovecot/imap ]; then
    if ! command -v apt-get >/dev/null; then
      echo "Dovecot (dovecot-core, dovecot-lmtpd, dovecot-imapd) is needed for the LMTP tests: install it and run again" >&2
      exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-core dovecot-lmtpd dovecot-imapd
  fi
  # Debian starts the packaged service; the tests run their own instances.
  if [ -e /run/dovecot/master.pid ]; then /usr/sbin/dovecot stop 2>/dev/null || true; fi
  /usr/sbin/dovecot --version

  step "Postfix and Dovecot's Sieve for the milter tests (run by the tests from their own config directories)"
  if [ ! -x /usr/sbin/postfix ] || [ ! -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so ]; then
    if ! command -v apt-get >/dev/null; then
      echo "Postfix and dovecot-sieve are needed for the milter tests: install them and run again" >&2
      exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix dovecot-sieve
  fi
  /usr/sbin/postconf -d mail_version

  step "mdbook (the book in docs/, built by tests/all/docs.rs)"
  if [ "$(mdbook --version 2>/dev/null || "${CARGO_HOME:-$HOME/.cargo}/bin/mdbook" --version 2>/dev/null)" \
    != "mdbook v$MDBOOK_VERSION" ]; then
    cargo install mdbook --version "$MDBOOK_VERSION" --locked
  fi

  ship_setup

  step "node.js and sdk/js packages (componentize-js)"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      echo "Node.js 20 and npm are needed for JavaScript rules: install them and run again" >&2
      exit 1
    fi
    apt-get update -qq && apt-get install -y -qq nodejs npm
  fi
  node --version
  want="$(digest sdk/js/package.json sdk/js/package-lock.json)"
  if [ "$(cat sdk/js/node_modules/.sluice-stamp 2>/dev/null)" != "$want" ]; then
    # `npm install`, not `npm ci`: the lockfile lacks platform-specific optional packages
    # that the registry mirror here does not serve, which `npm ci` insists on.
    npm install --prefix sdk/js --no-audit --no-fund --loglevel=error
    # After the install: npm may rewrite the lockfile, which must not count as a change.
    digest sdk/js/package.json sdk/js/package-lock.json > sdk/js/node_modules/.sluice-stamp
  fi
}

# --- ship: what the `sam build` and Debian package stages need (issue 35) -------------------
# The SAM CLI and cargo-lambda in their own venv (.venv-deploy, deploy/requirements.txt); the
# arm64 Rust target for the Lambda's default architecture; qemu-user-static and the arm64 C
# library to run that bootstrap here; systemd for `systemd-analyze verify`; cargo-deb.
ship_setup() {
  step "ship: SAM CLI + cargo-lambda (.venv-deploy), aarch64 target, qemu, systemd, cargo-deb"
  local want
  want="$(digest deploy/requirements.txt)"
  if [ ! -x .venv-deploy/bin/python ]; then
    python3 -m venv .venv-deploy
  fi
  if [ "$(cat .venv-deploy/.sluice-stamp 2>/dev/null)" != "$want" ]; then
    .venv-deploy/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
    echo "$want" > .venv-deploy/.sluice-stamp
  fi
  .venv-deploy/bin/sam --version
  grep -qx aarch64-unknown-linux-gnu <<<"$(rustup target list --installed)" \
    || rustup target add aarch64-unknown-linux-gnu
  if [ ! -x /usr/bin/qemu-aarch64-static ] || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] \
    || ! command -v systemd-analyze >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      echo "qemu-user-static, libc6-arm64-cross and systemd are needed for the ship stage: install them and run again" >&2
      exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      qemu-user-static libc6-arm64-cross systemd
  fi
  step "ship: the container stage (musl target and musl-gcc, podman with runc)"
  grep -qx x86_64-unknown-linux-musl <<<"$(rustup target list --installed)" \
    || rustup target add x86_64-unknown-linux-musl
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v musl-gcc >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      echo "podman, runc and musl-tools are needed for the container stage: install them and run again" >&2
      exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc musl-tools
  fi
  podman --version
  if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
  fi
  cargo deb --version
}
CARGO_DEB_VERSION=3.8.0
# About 6 min to build on 2 cores, once.
MDBOOK_VERSION=0.5.4
# --- end ship ---------------------------------------------------------------------------------

case "${1:-}" in
  setup) setup ;;
  --) shift; setup; step "tests"; cargo test "$@" ;;
  "") setup; step "tests (cargo test --workspace --all-targets)"; cargo test --workspace --all-targets ;;
  *) echo "usage: ./test.sh [setup | -- CARGO_TEST_ARGS]" >&2; exit 2 ;;
esac
