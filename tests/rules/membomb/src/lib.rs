//! `rule-membomb`: allocates and touches 1 MiB chunks until allocation fails (a trap). The
//! host's per-step memory cap must stop it without affecting the host.

use sluice_sdk::prelude::*;

/// The rule.
pub struct MemBomb;

const CHUNK: usize = 1 << 20;

impl Rule for MemBomb {
    type Config = NoConfig;

    fn evaluate(_: &Message, _: &Context, _: &NoConfig) -> Result<Vec<Action>, RuleError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            // Touch every page so the memory is really committed.
            chunk.resize(CHUNK, 0xA5u8);
            for page in chunk.chunks_mut(4096) {
                page[0] = hoard.len() as u8;
            }
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

sluice_sdk::export_rule!(MemBomb);
