//! Delivery throughput over one reused connection: a 4 KB message into Dovecot over LMTP
//! (1 and 10 recipients, folders included) and to an SMTP server (aiosmtpd).
//! `cargo bench -p sluice-deliver --bench delivery`; figures go in the README's table.
//! Needs what `./test.sh setup` installs; skipped (one line) when Dovecot or aiosmtpd is absent.
#![allow(missing_docs)] // criterion_group! defines an undocumented function

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_deliver::{LmtpStore, MailboxCopy, MailboxStore, SmtpStore, StoreRequest, TraceMeta};
use sluice_deliver::{LmtpStoreConfig, LmtpUser, ServerConfig, SmtpStoreConfig};
use sluice_mailservers::{Dovecot, SmtpSink};

fn message() -> Vec<u8> {
    let mut m = b"From: Sender <sender@outside.example>\r\nTo: team@example.com\r\nSubject: bench\r\nMessage-ID: <bench@outside.example>\r\n\r\n".to_vec();
    while m.len() < 4096 {
        m.extend_from_slice(b"The quarterly numbers are attached; nothing else to report.\r\n");
    }
    m
}

fn copies(n: usize) -> Vec<MailboxCopy> {
    (0..n)
        .map(|i| MailboxCopy {
            recipient: format!("user{i}@example.com"),
            folder: if i % 3 == 2 { "Junk" } else { "INBOX" }.into(),
        })
        .collect()
}

fn deliver(
    rt: &tokio::runtime::Runtime,
    store: &dyn MailboxStore,
    bytes: &[u8],
    copies: &[MailboxCopy],
) {
    let outcomes = rt.block_on(store.store(StoreRequest {
        message_id: "bench",
        mail_from: "sender@outside.example",
        bytes,
        copies,
        trace: &TraceMeta::default(),
    }));
    for o in outcomes {
        if let Err(e) = o.result {
            panic!("{}: {e}", o.copy.recipient);
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bytes = message();
    let users: Vec<String> = copies(10).into_iter().map(|c| c.recipient).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("delivery");
    g.measurement_time(Duration::from_secs(5));
    if let Some(dovecot) = Dovecot::start(&users) {
        let lmtp = LmtpStore::new(&LmtpStoreConfig {
            server: ServerConfig::loopback(dovecot.lmtp_port),
            user: LmtpUser::Address,
            folder_delimiter: "+".into(),
            markers: None,
        })
        .unwrap();
        for n in [1, 10] {
            let copies = copies(n);
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("lmtp 4 KB, {n} recipient(s)"), |b| {
                b.iter(|| deliver(&rt, &lmtp, &bytes, &copies))
            });
        }
    }
    if let Some(sink) = SmtpSink::start() {
        let smtp = SmtpStore::new(&SmtpStoreConfig {
            server: ServerConfig::loopback(sink.port),
            markers: None,
        })
        .unwrap();
        let copies = copies(1);
        g.throughput(Throughput::Elements(1));
        g.bench_function("smtp 4 KB, 1 recipient", |b| {
            b.iter(|| deliver(&rt, &smtp, &bytes, &copies))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
