//! libFuzzer entry point; the target and its invariants are in `src/mail_edit.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::mail_edit::run(data));
