//! What the edited copy costs after the chain: until issue 31 the pipeline applied the edits
//! (whose check parses the output), then parsed the edited bytes again for a relay, the
//! relay's subject prefix and the milter; now the check's parse is handed on
//! ([`sluice_mail::edit_message`]). Both ways, on every corpus message, with a banner and a
//! subject prefix (the two edits the reference rules make).
//! `cargo bench -p sluice-mail --bench edited`; figures go in the README.

#![allow(missing_docs)] // criterion_group! defines an undocumented function

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_mail::{
    apply_edits, edit_message, Banner, BannerFallback, Edit, Edited, Message, Position,
};

fn edited(c: &mut Criterion) {
    // The shared corpus when there is one, else this repo's fixtures.
    let files = match sluice_corpus::corpus_dir("the edited-copy bench") {
        Some(corpus) => sluice_corpus::corpus_files(&corpus, "eml", "eml"),
        None => sluice_corpus::corpus_files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests"),
            "fixtures",
            "eml",
        ),
    };
    let messages: Vec<Message> = files
        .iter()
        .filter_map(|p| Message::parse(std::fs::read(p).expect("a message")).ok())
        .collect();
    let edits = [
        Edit::PrefixSubject("[ext]".into()),
        Edit::AddBanner(Banner {
            text: "This message came from outside the organisation.".into(),
            html: None,
            position: Position::Top,
        }),
    ];
    let mut g = c.benchmark_group("edited copy");
    g.throughput(Throughput::Elements(messages.len() as u64));
    g.bench_function("parse the original", |b| {
        b.iter(|| {
            for m in &messages {
                std::hint::black_box(Message::parse(m.raw().to_vec()).ok());
            }
        })
    });
    g.bench_function("apply, then parse the output again (before)", |b| {
        b.iter(|| {
            for m in &messages {
                let Ok(bytes) = apply_edits(m, &edits, BannerFallback::Wrap) else {
                    continue;
                };
                std::hint::black_box(Message::parse(bytes).ok());
            }
        })
    });
    g.bench_function("edit_message, the check's parse handed on (now)", |b| {
        b.iter(|| {
            for m in &messages {
                if let Ok(Edited::Changed(out)) = edit_message(m, &edits, BannerFallback::Wrap) {
                    std::hint::black_box(out);
                }
            }
        })
    });
    // A header-only edit (what a Sieve script can do): the body is copied, so only the top
    // header block is read strictly, in the input and in the output.
    let prefix = [Edit::PrefixSubject("[ext]".into())];
    g.bench_function("edit_message, subject prefix only", |b| {
        b.iter(|| {
            for m in &messages {
                if let Ok(Edited::Changed(out)) = edit_message(m, &prefix, BannerFallback::Wrap) {
                    std::hint::black_box(out);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, edited);
criterion_main!(benches);
