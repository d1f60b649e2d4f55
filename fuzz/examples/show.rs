//! Shows what a saved mail_edit input does, without libFuzzer:
//! `cargo run --no-default-features --example show -- FILE`
//! prints the edits, the message, and apply_edits' result with each banner fallback.

use sluice_mail::{apply_edits, BannerFallback, Message};

fn main() {
    let path = std::env::args().nth(1).expect("usage: show FILE");
    let data = std::fs::read(&path).expect("readable file");
    let Some((edits, payload)) = sluice_fuzz::mail_edit::decode(&data) else {
        return println!("shorter than the 9 parameter bytes");
    };
    println!("edits: {edits:?}\nmessage: {:?}", String::from_utf8_lossy(payload));
    let msg = match Message::parse(payload.to_vec()) {
        Ok(m) => m,
        Err(e) => return println!("Message::parse: {e}"),
    };
    for fallback in [BannerFallback::Wrap, BannerFallback::Ignore] {
        match apply_edits(&msg, &edits, fallback) {
            Ok(out) => {
                println!("{fallback:?}: Ok {:?}", String::from_utf8_lossy(&out));
                println!("  re-parse: {:?}", Message::parse(out).map(|m| m.headers()));
            }
            Err(e) => println!("{fallback:?}: Err {e}"),
        }
    }
}
