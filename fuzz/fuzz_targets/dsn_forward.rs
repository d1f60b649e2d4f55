//! libFuzzer entry point; the target and its invariants are in `src/dsn_forward.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::dsn_forward::run(data));
