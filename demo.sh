#!/usr/bin/env bash
# The README's demo: build the sluice binary and the reference rules, then run a real message
# through the banner + junk chain of plugins/demo.toml and show the result.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build -q -p sluice
./target/debug/sluice plugin build plugins/banner plugins/junk --out target/plugins
rm -rf demo-out
./target/debug/sluice run --config plugins/demo.toml --out demo-out \
  --verdict spf=pass --verdict dkim=pass --verdict spam=pass --verdict virus=pass \
  "${1:-plugins/demo/external.eml}"
echo
echo "== delivered files"
find demo-out -type f | sort
