//! Real mail servers for tests, on 127.0.0.1 with everything in a temp dir, stopped on drop:
//! [`Dovecot`] (LMTP in, IMAP out, Debian's `dovecot-lmtpd` + `dovecot-imapd`) and an SMTP
//! sink ([`SmtpSink`], Python's aiosmtpd from the test venv).
//!
//! Both need what `./test.sh setup` installs. When a server binary is missing, `start`
//! returns `None` after printing one line, and under `CI` it panics: CI must run them.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on 127.0.0.1:{port} within 20 s; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn missing(what: &str) -> bool {
    let line = format!("{what} is not installed (./test.sh setup installs it): skipping");
    assert!(
        std::env::var_os("CI").is_none(),
        "{line}; CI must run this test"
    );
    eprintln!("{line}");
    true
}

/// The workspace's Python (the test venv when `./test.sh setup` made one).
pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A Dovecot with LMTP and IMAP on loopback ports, users in a passwd file (password
/// `pass`), maildirs under its temp dir, and the settings Sluice's LMTP store expects
/// (`lmtp_save_to_detail_mailbox`, `recipient_delimiter = +`, `lda_mailbox_autocreate`).
pub struct Dovecot {
    dir: tempfile::TempDir,
    /// Settings appended to the config ([`Dovecot::start_with`]).
    extra: String,
    /// LMTP port.
    pub lmtp_port: u16,
    /// IMAP port.
    pub imap_port: u16,
    running: bool,
}

impl Dovecot {
    /// Starts Dovecot for these users (full addresses); `None` when it is not installed
    /// (outside CI).
    pub fn start(users: &[&str]) -> Option<Dovecot> {
        Dovecot::start_with(users, "")
    }

    /// [`Dovecot::start`] with these settings appended to its config; `{root}` in them is
    /// replaced by its temp dir (where a Sieve script can be put: [`Dovecot::root_dir`]).
    pub fn start_with(users: &[&str], extra: &str) -> Option<Dovecot> {
        if !Path::new("/usr/sbin/dovecot").exists() && missing("dovecot") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("sluice-dovecot")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let extra = extra.replace("{root}", &dir.path().display().to_string());
        let d = Dovecot {
            extra,
            lmtp_port: free_port(),
            imap_port: free_port(),
            dir,
            running: false,
        };
        let mut d = d;
        // The ports were free when picked; another process may take one before Dovecot
        // binds it: pick again.
        for attempt in 1.. {
            d.write_config(users);
            match d.try_start() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    d.lmtp_port = free_port();
                    d.imap_port = free_port();
                }
                Err(log) => panic!("dovecot did not start:\n{log}"),
            }
        }
        Some(d)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Its temp dir (config, logs, mail).
    pub fn root_dir(&self) -> &Path {
        self.root()
    }

    /// The Dovecot settings used, for documentation and debugging.
    pub fn config_path(&self) -> PathBuf {
        self.root().join("dovecot.conf")
    }

    /// Dovecot's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("dovecot.log")).unwrap_or_default()
    }

    fn write_config(&self, users: &[&str]) {
        let root = self.root().display().to_string();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(self.root().join(sub)).unwrap();
        }
        let mut passwd = String::new();
        for u in users {
            passwd.push_str(&format!("{u}:{{plain}}pass::::::\n"));
            // Homes made now, so the chown below gives them to Dovecot.
            if let Some((local, domain)) = u.split_once('@') {
                std::fs::create_dir_all(self.root().join("mail").join(domain).join(local)).unwrap();
            }
        }
        std::fs::write(self.root().join("users"), passwd).unwrap();
        let config = format!(
            r#"protocols = lmtp imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = dovecot
mail_gid = dovecot
mail_location = maildir:{root}/mail/%d/%n/Maildir
# What Sluice's LMTP store expects: alice+Junk@example.com files into Junk, created if new.
lmtp_save_to_detail_mailbox = yes
recipient_delimiter = +
lda_mailbox_autocreate = yes
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
  default_fields = home={root}/mail/%d/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{extra}
"#,
            lmtp = self.lmtp_port,
            imap = self.imap_port,
            extra = self.extra,
        );
        std::fs::write(self.config_path(), config).unwrap();
        // Dovecot delivers as its own user.
        let status = Command::new("chown")
            .args(["-R", "dovecot:dovecot"])
            .arg(self.root().join("mail"))
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chown the mail dir to dovecot"
        );
    }

    /// Starts it (again, after [`Dovecot::stop`]) and waits for both ports.
    pub fn start_again(&mut self) {
        if let Err(log) = self.try_start() {
            panic!("dovecot did not start:\n{log}");
        }
    }

    /// Starts it and waits for both ports; `Err(its log)` when the master did not start.
    fn try_start(&mut self) -> Result<(), String> {
        // `status`, not `output`: the daemonized master keeps inherited pipes open.
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run dovecot");
        if !status.success() {
            return Err(self.log());
        }
        self.running = true;
        let log = self.root().join("dovecot.log");
        wait_for_port(self.lmtp_port, "Dovecot LMTP", &log);
        wait_for_port(self.imap_port, "Dovecot IMAP", &log);
        Ok(())
    }

    /// Stops it and waits until LMTP no longer answers.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(self.config_path())
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && std::net::TcpStream::connect(("127.0.0.1", self.lmtp_port)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.running = false;
    }

    /// `127.0.0.1:PORT` of LMTP.
    pub fn lmtp_address(&self) -> String {
        format!("127.0.0.1:{}", self.lmtp_port)
    }

    /// Makes deliveries to `user` fail temporarily (Dovecot answers 451 4.2.0 after DATA:
    /// its home cannot be entered), or work again.
    pub fn tempfail(&self, user: &str, failing: bool) {
        let (local, domain) = user.split_once('@').expect("a full address");
        let home = self.root().join("mail").join(domain).join(local);
        assert!(home.is_dir(), "{user} is not a user of this Dovecot");
        let mode = if failing { "000" } else { "700" };
        let status = Command::new("chmod").arg(mode).arg(&home).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chmod {mode} {}",
            home.display()
        );
    }

    /// Every message in `user`'s `folder`, read over IMAP (Python's imaplib), in UID order.
    /// An absent folder is empty.
    pub fn fetch(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let script = r#"
import base64, imaplib, json, sys
port, user, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
imap = imaplib.IMAP4("127.0.0.1", port)
imap.login(user, "pass")
status, _ = imap.select('"' + folder + '"', readonly=True)
out = []
if status == "OK":
    _, data = imap.uid("search", None, "ALL")
    for uid in data[0].split():
        _, parts = imap.uid("fetch", uid, "(BODY.PEEK[])")
        out.append(base64.b64encode(parts[0][1]).decode())
imap.logout()
json.dump(out, sys.stdout)
"#;
        let out = Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(self.imap_port.to_string())
            .arg(user)
            .arg(folder)
            .output()
            .expect("run python for imaplib");
        assert!(
            out.status.success(),
            "IMAP fetch of {user} {folder} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<String> = serde_json::from_slice(&out.stdout).expect("JSON list");
        list.iter()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An SMTP server (aiosmtpd) on loopback that keeps each message it accepts, with its
/// envelope, as a JSON file. Recipients whose local part starts with `reject` are refused
/// with 550 5.1.1, `defer` with 451 4.3.0.
pub struct SmtpSink {
    dir: tempfile::TempDir,
    child: Child,
    /// Its port.
    pub port: u16,
}

/// What a secured sink asks of its clients.
#[derive(Debug, Clone)]
pub struct Secure {
    /// The only user AUTH accepts.
    pub user: String,
    /// Its password.
    pub password: String,
    /// TLS from the first byte (SMTPS, port 465 style) instead of STARTTLS.
    pub implicit: bool,
}

/// One message the sink received.
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    /// MAIL FROM (aiosmtpd writes a null sender as `<>`).
    pub mail_from: String,
    /// RCPT TOs it accepted.
    pub recipients: Vec<String>,
    /// The message bytes as received (after DATA's dot-unstuffing).
    pub data: Vec<u8>,
    /// The transaction ran over TLS.
    pub tls: bool,
    /// The client authenticated.
    pub authenticated: bool,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("mail_from", &self.mail_from)
            .field("recipients", &self.recipients)
            .field("data", &String::from_utf8_lossy(&self.data))
            .field("tls", &self.tls)
            .field("authenticated", &self.authenticated)
            .finish()
    }
}

impl SmtpSink {
    /// Starts the sink; `None` when aiosmtpd is not installed (outside CI).
    pub fn start() -> Option<SmtpSink> {
        SmtpSink::start_with(None)
    }

    /// A sink that requires TLS (STARTTLS, or implicit with [`Secure::implicit`]; a
    /// certificate for 127.0.0.1 from a private CA, see [`SmtpSink::ca_file`]) and AUTH with
    /// `secure`'s user and password.
    pub fn start_secure(secure: Secure) -> Option<SmtpSink> {
        SmtpSink::start_with(Some(secure))
    }

    /// The PEM certificate of the private CA that signed a secured sink's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_with(secure: Option<Secure>) -> Option<SmtpSink> {
        let python = python();
        let has = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has && missing("aiosmtpd") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let script = r#"
import asyncio, base64, datetime, json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
port, out, user, password, implicit = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "implicit"
secure = user != ""
class Keep:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 no such user"
        if local.startswith("defer"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"
    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(out, "%d-%d.json" % (time.time_ns(), os.getpid()))
        with open(name + ".tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "recipients": envelope.rcpt_tos,
                       "data": base64.b64encode(envelope.original_content).decode(),
                       "tls": implicit or session.ssl is not None, "auth": bool(session.authenticated)}, f)
        os.rename(name + ".tmp", name)
        return "250 2.0.0 queued as " + os.path.basename(name)
kw = {}
if secure:
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    def make(subject, issuer, public_key, signer, ca):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(signer, hashes.SHA256())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sluice test CA")])
    ca_cert = make(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = make(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key.public_key(), ca_key, False)
    with open(os.path.join(out, "ca.pem"), "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(out, "cert.pem"), "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(out, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(out, "cert.pem"), os.path.join(out, "key.pem"))
    def check(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)
    if implicit:
        # The whole connection is TLS: a plain-text client cannot get as far as AUTH.
        kw = dict(ssl_context=ctx, authenticator=check, auth_require_tls=False, auth_required=True)
    else:
        kw = dict(tls_context=ctx, require_starttls=True, authenticator=check, auth_require_tls=True, auth_required=True)
c = Controller(Keep(), hostname="127.0.0.1", port=port, decode_data=False, **kw)
c.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    c.stop()
"#;
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .arg(secure.as_ref().map(|s| s.user.as_str()).unwrap_or(""))
            .arg(secure.as_ref().map(|s| s.password.as_str()).unwrap_or(""))
            .arg(if secure.as_ref().is_some_and(|s| s.implicit) {
                "implicit"
            } else {
                "starttls"
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        let log = dir.path().join("none.log");
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = stdin.flush();
        }
        wait_for_port(port, "aiosmtpd", &log);
        Some(SmtpSink { dir, child, port })
    }

    /// What it received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
                Received {
                    mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
                    recipients: v["recipients"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|r| r.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: base64::engine::general_purpose::STANDARD
                        .decode(v["data"].as_str().unwrap_or_default())
                        .unwrap(),
                    tls: v["tls"].as_bool().unwrap_or(false),
                    authenticated: v["auth"].as_bool().unwrap_or(false),
                }
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Postfix, started from a config directory of its own (`postfix -c DIR start`,
/// its own queue, data directory and log file, no system service), with smtpd on a loopback
/// port; stopped on drop. Postfix's master must start as root (it switches to `mail_owner`
/// itself): as another user [`Postfix::start`] returns `None` (outside CI).
pub struct Postfix {
    dir: tempfile::TempDir,
    /// The smtpd port on 127.0.0.1.
    pub port: u16,
}

impl Postfix {
    /// Starts Postfix with these `main.cf` lines added to a loopback-only base (no DNS, no
    /// local delivery, `mynetworks = 127.0.0.0/8`).
    pub fn start(main_cf: &str) -> Option<Postfix> {
        Postfix::start_with(main_cf, "")
    }

    /// [`Postfix::start`] with these services (e.g. a `pipe` transport a transport map in
    /// `main_cf` names) added to the base `master.cf`.
    pub fn start_with(main_cf: &str, master_cf_extra: &str) -> Option<Postfix> {
        if !Path::new("/usr/sbin/postfix").exists() && missing("postfix") {
            return None;
        }
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0"
            && missing("root (for Postfix's master)")
        {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("sluice-postfix")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path();
        // The postfix user must reach its queue and data directories.
        let chmod = Command::new("chmod").arg("755").arg(root).status();
        assert!(
            chmod.is_ok_and(|s| s.success()),
            "chmod 755 {}",
            root.display()
        );
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .status();
        assert!(chown.is_ok_and(|s| s.success()), "chown postfix data dir");
        let port = free_port();
        let r = root.display();
        std::fs::write(
            root.join("conf/main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {r}/queue\ndata_directory = {r}/data\n\
                 maillog_file = {r}/maillog\nmaillog_file_prefixes = {r}\nmail_owner = postfix\n\
                 setgid_group = postdrop\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
                 myhostname = mx.example.com\nmydomain = example.com\nmyorigin = example.com\n\
                 mydestination =\nlocal_recipient_maps =\nalias_maps =\nalias_database =\n\
                 mynetworks = 127.0.0.0/8\nsmtp_dns_support_level = disabled\nbiff = no\n{main_cf}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("conf/master.cf"),
            format!("{}{master_cf_extra}\n", master_cf(port)),
        )
        .unwrap();
        let p = Postfix { dir, port };
        let out = p.postfix("start");
        if !out.status.success() {
            panic!(
                "postfix did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                p.log()
            );
        }
        wait_for_port(port, "Postfix smtpd", &p.dir.path().join("maillog"));
        Some(p)
    }

    fn postfix(&self, command: &str) -> std::process::Output {
        Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.dir.path().join("conf"))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run postfix")
    }

    /// `postqueue -p`: the messages still in its queue and why (empty queue: `Mail queue is
    /// empty`).
    pub fn queue(&self) -> String {
        let out = Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(self.dir.path().join("conf"))
            .arg("-p")
            .stdin(Stdio::null())
            .output()
            .expect("run postqueue");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Its log so far (`maillog_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

/// The services a loopback relay needs, none chrooted (the queue is in a temp dir), smtpd on
/// `127.0.0.1:port`.
fn master_cf(port: u16) -> String {
    let mut cf = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    for line in [
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "smtp unix - - n - - smtp",
        "relay unix - - n - - smtp",
        "lmtp unix - - n - - lmtp",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ] {
        cf.push_str(line);
        cf.push('\n');
    }
    cf
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.postfix("status").status.success() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A private CA and a certificate for 127.0.0.1 it signed (EC P-256, valid two days), made
/// with the `openssl` command in `dir`: `ca.pem`, `cert.pem`, `key.pem`. For servers the
/// tests start with TLS, so clients check a real chain (`tls_ca_file`) instead of turning
/// verification off.
pub fn private_ca(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Sluice test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    dir.join("ca.pem")
}

/// An authoritative DNS server on a loopback UDP port (Python's dnspython, from the test
/// venv) answering TXT queries from a fixed table: SPF, DKIM key and DMARC records for
/// computed verdicts. A name not in the table is NXDOMAIN; another type at a known name
/// is an empty answer.
pub struct DnsServer {
    _dir: tempfile::TempDir,
    child: Child,
    /// Its UDP port on 127.0.0.1.
    pub port: u16,
}

impl DnsServer {
    /// Serves `records` (name, TXT value; a name may repeat). `None` when dnspython is not
    /// installed (outside CI).
    pub fn start(records: &[(&str, &str)]) -> Option<DnsServer> {
        let python = python();
        let has = Command::new(&python)
            .args(["-c", "import dns.message"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has && missing("dnspython") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut zone = serde_json::Map::new();
        for (name, value) in records {
            let name = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase());
            zone.entry(name)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()))
                .as_array_mut()
                .expect("an array")
                .push(serde_json::Value::from(*value));
        }
        let zone_file = dir.path().join("zone.json");
        std::fs::write(&zone_file, serde_json::Value::Object(zone).to_string()).unwrap();
        let script = r#"
import json, socket, sys
import dns.flags, dns.message, dns.rcode, dns.rdataclass, dns.rdatatype, dns.rrset
from dns.rdtypes.ANY.TXT import TXT
zone = json.load(open(sys.argv[1]))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    try:
        query = dns.message.from_wire(data)
    except Exception:
        continue
    answer = dns.message.make_response(query)
    answer.flags |= dns.flags.AA
    if query.question:
        q = query.question[0]
        name = q.name.to_text().lower()
        if name not in zone:
            answer.set_rcode(dns.rcode.NXDOMAIN)
        elif q.rdtype == dns.rdatatype.TXT:
            # One TXT record per value, split into the 255-byte strings a record holds.
            records = []
            for value in zone[name]:
                raw = value.encode()
                chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
                records.append(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks))
            answer.answer.append(dns.rrset.from_rdata_list(q.name, 60, records))
    sock.sendto(answer.to_wire(), peer)
"#;
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&zone_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the DNS server");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the DNS server's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the DNS server printed {line:?}, not its port"));
        Some(DnsServer {
            _dir: dir,
            child,
            port,
        })
    }

    /// `127.0.0.1:PORT`, for `[milter] dns`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
