//! One SMTP transaction through `sluice milter`'s server on loopback, as the MTA sees it:
//! MAIL, RCPT, the header fields, end of headers, the body and end of message, each
//! answered before the next is sent (as Postfix waits), up to the end-of-message answer
//! with the chains' modifications. The four reference rules run (alias, banner, junk,
//! subject-tag, warm instances): a header change and a REPLBODY come back.
//! `cargo bench -p sluice-tests --bench milter`; the p50 goes in the README's table
//! (criterion's estimate is the mean; the median is printed beside it).
//!
//! With `verdicts`, the same transaction with `verdicts = "compute"` against a DNS server
//! that answers nothing for the sender's domain (NXDOMAIN from a loopback server started
//! here): what SPF/DKIM/DMARC checks add when the resolver answers at once.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_inbound::{Pipeline, PipelineOptions};
use sluice_milter::{AuthVerdicts, Authenticator, Listen, Listener, MilterOptions};
use sluice_tests::expand;
use sluice_tests::reference::reference_chain;

const MESSAGE: &str = "From: Sender <someone@sender.example>\r\nTo: info@example.com\r\n\
    Subject: bench\r\nMessage-ID: <bench@sender.example>\r\nMIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=UTF-8\r\n\r\nHello from the bench.\r\n";

/// The MTA side of one milter connection.
struct Mta(TcpStream);

impl Mta {
    fn send(&mut self, code: u8, data: &[u8]) {
        let mut packet = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        packet.push(code);
        packet.extend_from_slice(data);
        self.0.write_all(&packet).expect("write");
    }

    /// Sends a command and reads up to its final answer; returns the final command byte.
    fn ask(&mut self, code: u8, data: &[u8]) -> u8 {
        self.send(code, data);
        loop {
            let mut len = [0u8; 4];
            self.0.read_exact(&mut len).expect("an answer");
            let mut packet = vec![0u8; u32::from_be_bytes(len) as usize];
            self.0.read_exact(&mut packet).expect("an answer");
            if b"cadrtyO".contains(&packet[0]) {
                return packet[0];
            }
        }
    }

    fn open(port: u16) -> Mta {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut mta = Mta(stream);
        let mut neg = Vec::new();
        for w in [6u32, 0x1ff, 0x1f_ffff] {
            neg.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(mta.ask(b'O', &neg), b'O');
        mta.send(b'D', b"Cj\0mx.example.com\0");
        assert_eq!(
            mta.ask(b'C', b"mail.sender.example\x004\x00\x19192.0.2.1\0"),
            b'c'
        );
        assert_eq!(mta.ask(b'H', b"mail.sender.example\0"), b'c');
        mta
    }

    fn transaction(&mut self) {
        self.send(b'D', b"Mi\x004F2AB3C\0");
        assert_eq!(self.ask(b'M', b"<someone@sender.example>\0"), b'c');
        assert_eq!(self.ask(b'R', b"<info@example.com>\0"), b'c');
        let (head, body) = MESSAGE.split_once("\r\n\r\n").expect("a message");
        for field in head.split("\r\n") {
            let (name, value) = field.split_once(": ").expect("a field");
            assert_eq!(
                self.ask(b'L', format!("{name}\0{value}\0").as_bytes()),
                b'c'
            );
        }
        assert_eq!(self.ask(b'N', b""), b'c');
        assert_eq!(self.ask(b'B', body.as_bytes()), b'c');
        assert_eq!(self.ask(b'E', b""), b'c');
    }
}

/// A milter server on a free loopback port over the reference chain; its port.
fn serve(rt: &tokio::runtime::Runtime, dir: &std::path::Path, options: MilterOptions) -> u16 {
    std::fs::create_dir_all(dir).expect("a config dir");
    let config = dir.join("sluice.toml");
    std::fs::write(&config, expand(&reference_chain("warm"))).expect("write the config");
    let pipeline = rt
        .block_on(Pipeline::start(PipelineOptions {
            config: config.display().to_string(),
            reload_interval: Duration::from_secs(3600),
            cache_dir: Some(dir.join("cache")),
            metrics: false,
            precompiled_dirs: Vec::new(),
        }))
        .expect("the pipeline starts");
    let listen: Listen = "inet:127.0.0.1:0".parse().expect("an address");
    let listener = rt.block_on(Listener::bind(&listen)).expect("bind");
    let Listen::Inet(addr) = listener.local() else {
        unreachable!("bound on TCP")
    };
    let options = MilterOptions {
        reload_interval: None,
        ..options
    };
    rt.spawn(sluice_milter::serve(
        Arc::new(pipeline),
        listener,
        options,
        std::future::pending(),
    ));
    addr.port()
}

/// A DNS server on loopback that answers every query NXDOMAIN at once.
fn nxdomain_server() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The header and the question (its name's labels, then type and class).
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += 1 + buf[end] as usize;
            }
            let end = (end + 5).min(n);
            let mut answer = buf[..end].to_vec();
            // QR + AA, RD copied; RA; RCODE 3 (NXDOMAIN); one question, no records.
            answer[2] = 0x80 | 0x04 | (buf[2] & 0x01);
            answer[3] = 0x80 | 0x03;
            answer[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            let _ = socket.send_to(&answer, peer);
        }
    });
    addr
}

/// The median of `n` timed transactions, for the README's p50 (criterion reports means).
fn median(mta: &mut Mta, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let started = std::time::Instant::now();
            mta.transaction();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn milter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("milter");
    g.measurement_time(Duration::from_secs(10));
    let header_verdicts = serve(&rt, &dir.path().join("a"), MilterOptions::default());
    let authenticator =
        Authenticator::new(Some(nxdomain_server()), Duration::from_secs(5)).expect("a resolver");
    let computed = serve(
        &rt,
        &dir.path().join("b"),
        MilterOptions {
            verdicts: AuthVerdicts::Compute(Arc::new(authenticator)),
            ..MilterOptions::default()
        },
    );
    for (name, port) in [("transaction", header_verdicts), ("verdicts", computed)] {
        let mut mta = Mta::open(port);
        for _ in 0..20 {
            mta.transaction();
        }
        println!("milter/{name}: p50 {:?} over 200", median(&mut mta, 200));
        g.bench_function(name, |b| b.iter(|| mta.transaction()));
    }
    g.finish();
}

criterion_group!(benches, milter);
criterion_main!(benches);
