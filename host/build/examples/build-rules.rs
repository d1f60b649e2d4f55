//! Builds rule crates into components, like `sluice plugin build`:
//!
//! ```text
//! cargo run -p sluice-build --example build-rules -- --out target/plugins \
//!     [--target-dir DIR] [--debug] plugins/banner plugins/junk tests/rules/*
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut opts = sluice_build::BuildOptions::default();
    let mut dirs = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--out") => opts.out_dir = args.next().map(PathBuf::from).unwrap_or_default(),
            Some("--target-dir") => opts.target_dir = args.next().map(PathBuf::from),
            Some("--debug") => opts.release = false,
            _ => dirs.push(PathBuf::from(arg)),
        }
    }
    let started = std::time::Instant::now();
    match sluice_build::build_rules(&dirs, &opts) {
        Ok(built) => {
            for rule in built {
                println!(
                    "{:<16} {:>8} bytes  {:<24} {}",
                    rule.name,
                    rule.size,
                    rule.target,
                    rule.path.display()
                );
            }
            eprintln!("built in {:.1?}", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
