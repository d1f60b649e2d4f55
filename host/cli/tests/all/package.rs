//! The Debian package of the self-hosted box, installed as an admin would: `dpkg -i`, the files
//! where the docs say, the `sluice` system user, `systemd-analyze verify` on the unit, then the
//! installed `/usr/bin/sluice daemon` with the installed example config (only its
//! machine-specific values changed: buckets, queue, LMTP address, rule path) delivering into
//! Dovecot.
//!
//! Runs when `SLUICE_DEB` names the package (`.ci/ship` builds it with `cargo deb` and sets it)
//! and the test runs as root; otherwise it says why it did nothing.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use sluice_mailservers::Dovecot;
use sluice_tests::{rule, Moto};

const ALICE: &str = "alice@example.com";

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The installed example config with this machine's values: every other line as shipped.
fn adapt_example(example: &str, lmtp: &str, markers: &Path) -> String {
    let junk = rule("junk");
    let mut out = String::new();
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match key {
            "bucket" => "bucket = \"inbound\"".to_string(),
            "address" => format!("address = \"{lmtp}\""),
            "markers" if line.contains("/var/lib/sluice") => {
                format!("markers = \"{}\"", markers.display())
            }
            "markers" => "markers = \"s3://mail/_sent\"".to_string(),
            "plugin" => format!("plugin = \"{}\"", junk.display()),
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

#[test]
fn the_debian_package_installs_and_its_daemon_delivers_into_dovecot() {
    let _turn = crate::turn(module_path!());
    let Some(deb) = std::env::var_os("SLUICE_DEB") else {
        println!("skipped: SLUICE_DEB is not set (.ci/ship builds the package and sets it)");
        return;
    };
    let (_, uid) = run("id", &["-u"]);
    if uid.trim() != "0" {
        println!("skipped: installing a package needs root");
        return;
    }
    let deb = deb.to_string_lossy().into_owned();

    let (ok, log) = run("dpkg", &["-i", &deb]);
    assert!(ok, "dpkg -i {deb}:\n{log}");
    let (ok, info) = run("dpkg-deb", &["--info", &deb]);
    assert!(ok && info.contains("Package: sluice"), "{info}");

    // The files, where deploy/README.md and the unit say.
    for file in [
        "/usr/bin/sluice",
        "/lib/systemd/system/sluice.service",
        "/etc/default/sluice",
        "/usr/share/doc/sluice/examples/sluice.toml",
        "/usr/share/doc/sluice/examples/smtp.toml",
        "/usr/share/doc/sluice/dovecot/99-sluice.conf",
        "/usr/share/doc/sluice/milter/main.cf",
        "/usr/share/doc/sluice/postfix-pipe/master.cf",
        "/usr/share/doc/sluice/README.md",
        "/usr/share/doc/sluice/copyright",
    ] {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    let (ok, conffiles) = run(
        "dpkg-query",
        &["--showformat=${Conffiles}", "--show", "sluice"],
    );
    assert!(
        ok && conffiles.contains("/etc/default/sluice"),
        "{conffiles}"
    );
    let (ok, version) = run("/usr/bin/sluice", &["--version"]);
    assert!(
        ok && version.starts_with("sluice "),
        "sluice --version: {version}"
    );

    // postinst's system user: no login, no home of its own, a system uid.
    let (ok, passwd) = run("getent", &["passwd", "sluice"]);
    assert!(ok, "no sluice user: {passwd}");
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system uid: {passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");

    // The unit as systemd reads it (no running init needed); disabled until configured.
    let (ok, verify) = run(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/sluice.service"],
    );
    assert!(
        ok && verify.trim().is_empty(),
        "systemd-analyze verify:\n{verify}"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/sluice.service").exists(),
        "installed enabled before it has a config"
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/sluice.service").unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/sluice daemon --config /etc/sluice/sluice.toml"),
        "{unit}"
    );

    // The installed binary with the installed example config, as the unit would run it
    // (SLUICE_QUEUE from /etc/default/sluice), against moto and Dovecot.
    let Some(dovecot) = Dovecot::start(&[ALICE]) else {
        return;
    };
    let rt = rt();
    let moto = Moto::start();
    let world = World::new(&rt, &moto, &moto);
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string("/usr/share/doc/sluice/examples/sluice.toml").unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        adapt_example(
            &example,
            &dovecot.lmtp_address(),
            &dir.path().join("delivered"),
        ),
    )
    .unwrap();
    let (ok, check) = run(
        "/usr/bin/sluice",
        &["check", "--config", config.to_str().unwrap()],
    );
    assert!(ok, "sluice check on the example config:\n{check}");

    for (id, spam) in [("deb-clean", "PASS"), ("deb-spam", "FAIL")] {
        world.put_message(&rt, id, ALICE);
        world.enqueue(
            &rt,
            &notification_with(id, &[ALICE], "PASS", spam, "inbound"),
        );
    }
    let mut child = Command::new("/usr/bin/sluice")
        .args([
            "daemon",
            "--config",
            config.to_str().unwrap(),
            "--wait",
            "1",
        ])
        .envs(moto.env())
        .env("SLUICE_QUEUE", &world.queue)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut inbox, mut junk) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        inbox = dovecot.fetch(ALICE, "INBOX");
        junk = dovecot.fetch(ALICE, "Junk");
        if !inbox.is_empty() && !junk.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM, as systemd stops it.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(inbox.len(), 1, "INBOX: {inbox:?}\n{log}");
    assert_eq!(
        junk.len(),
        1,
        "Junk (the junk rule filed the spam): {junk:?}\n{log}"
    );
    assert!(
        String::from_utf8_lossy(&inbox[0]).contains("Subject: Quarterly numbers deb-clean"),
        "{log}"
    );
    assert!(status.success(), "exit on SIGTERM: {status}\n{log}");
}
