//! Shows what a saved input does, without libFuzzer:
//! - `cargo run --no-default-features --example show -- FILE`: a mail_edit input; prints the
//!   edits, the message, and apply_edits' result with each banner fallback;
//! - `... -- --forward FILE`: a dsn_forward input; prints rewrite_for_relay's result with the
//!   default relay parameters (forwarder@relay.example via example.com, hop relay.example)
//!   and the subject prefix "[FWD]" when the fourth byte is 1.

use sluice_mail::{apply_edits, rewrite_for_relay, BannerFallback, Message, RelayRewrite};

fn forward(data: &[u8]) {
    let Some(payload) = data.get(4..) else {
        return println!("shorter than the 4 parameter bytes");
    };
    println!("message: {:?}", String::from_utf8_lossy(payload));
    let msg = match Message::parse(payload.to_vec()) {
        Ok(m) => m,
        Err(e) => return println!("Message::parse: {e}"),
    };
    let rw = RelayRewrite {
        from: "forwarder@relay.example",
        via_domain: "example.com",
        subject_prefix: (data[3] % 6 == 1).then_some("[FWD]"),
        hop_domain: "relay.example",
    };
    match rewrite_for_relay(&msg, &rw) {
        Ok(out) => {
            println!("rewrite: Ok {:?}", String::from_utf8_lossy(&out));
            let copy = Message::parse(out).expect("parses");
            println!("  from_address: {:?}\n  headers: {:?}", copy.from_address(), copy.headers());
        }
        Err(e) => println!("rewrite: Err {e}"),
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--forward") {
        return forward(&std::fs::read(&args[1]).expect("readable file"));
    }
    let path = args.pop().expect("usage: show [--forward] FILE");
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
