//! libFuzzer entry point; the target and its invariants are in `src/milter.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::milter::run(data));
