//! `sluice alias` as an administrator runs it: against DynamoDB (moto) and a file, with the
//! output, exit codes and refusals a person reads.

use std::path::Path;
use std::process::{Command, Output};

use sluice_tests::Moto;

struct Session {
    config: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Session {
    fn new(dir: &Path, section: &str, env: Vec<(&'static str, String)>) -> Session {
        let config = dir.join("sluice.toml");
        std::fs::write(&config, section).unwrap();
        Session { config, env }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("alias")
            .args(args)
            .env("SLUICE_CONFIG", &self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("sluice runs")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "sluice alias {args:?}: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and expects exit code 1 with one line on stderr; returns it.
    fn refused(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "sluice alias {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr.trim_end().to_string()
    }
}

/// The whole life of a directory, the same for every backend.
fn session(s: &Session, dir: &Path) {
    assert!(s.ok(&["init"]).starts_with("created "));
    assert!(s.ok(&["init"]).contains("already exists"));

    // Nothing is served yet: the refusal says which command fixes it.
    assert_eq!(
        s.refused(&["add", "info@example.com", "--to", "alice@example.net"]),
        "sluice: example.com is not served by directory \"aliases\": add it with `sluice alias serve example.com`"
    );
    s.ok(&["serve", "Example.com"]);
    assert_eq!(
        s.refused(&["add", "info@example.com", "--to", "alice@example.net"]),
        "sluice: alice@example.net is not an allowed destination of directory \"aliases\" (neither in a served domain nor in its destinations): add it with `sluice alias allow alice@example.net` (or `sluice alias allow @example.net` for the whole domain)"
    );
    s.ok(&["allow", "@example.net"]);
    assert_eq!(
        s.ok(&["add", "Info@Example.com", "--to", "alice@example.net"]),
        "added info@example.com -> alice@example.net\n"
    );
    assert_eq!(
        s.refused(&["add", "info@example.com", "--to", "bob@example.net"]),
        "sluice: info@example.com already exists (active, to alice@example.net): add --replace to overwrite it"
    );
    s.ok(&[
        "add",
        "info@example.com",
        "--to",
        "alice@example.net",
        "--to",
        "bob@example.net",
        "--replace",
    ]);
    s.ok(&["add", "box@example.com"]);
    s.ok(&["add", "*@example.com", "--to", "catchall@example.net"]);
    assert!(s
        .refused(&["add", "not-an-address", "--to", "a@example.net"])
        .contains("`not-an-address` is not an address: it must contain exactly one '@'"));

    let random = s.ok(&["add", "--random", "example.com", "--prefix", "shop"]);
    let random = random.trim();
    assert!(
        random.starts_with("shop-") && random.ends_with("@example.com"),
        "{random}"
    );
    let local = &random["shop-".len()..random.len() - "@example.com".len()];
    assert!(local.len() >= 8, "{random}");
    assert!(
        local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{random}"
    );

    assert_eq!(
        s.ok(&["pause", "box@example.com"]),
        "paused box@example.com\n"
    );
    assert_eq!(
        s.ok(&["pause", "box@example.com"]),
        "box@example.com is already paused\n"
    );
    s.ok(&["ignore", random]);

    // The table: a header, one line per alias, columns aligned.
    let list = s.ok(&["list", "example.com"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 5, "{list}");
    assert!(lines[0].starts_with("ADDRESS"), "{list}");
    let status_col = lines[0].find("STATUS").unwrap();
    let to_col = lines[0].find("TO").unwrap();
    for line in &lines[1..] {
        assert!(
            line[status_col..].starts_with("active")
                || line[status_col..].starts_with("paused")
                || line[status_col..].starts_with("ignored"),
            "{list}"
        );
        assert_ne!(line.as_bytes()[to_col - 1], b'x', "{list}");
    }
    assert!(lines[1].starts_with("*@example.com "), "{list}");
    assert!(
        list.contains("alice@example.net, bob@example.net"),
        "{list}"
    );
    assert!(list.contains("box@example.com"), "{list}");
    assert!(list.contains("(itself)"), "{list}");
    let paused = s.ok(&["list", "example.com", "--status", "paused", "--json"]);
    let paused: serde_json::Value = serde_json::from_str(&paused).unwrap();
    assert_eq!(paused.as_array().unwrap().len(), 1);
    assert_eq!(paused[0]["address"], "box@example.com");
    assert_eq!(paused[0]["status"], "paused");

    let show = s.ok(&["show", "info@example.com"]);
    assert!(
        show.contains("to:        alice@example.net, bob@example.net"),
        "{show}"
    );
    assert_eq!(
        s.refused(&["show", "nobody@example.com"]),
        "sluice: no alias nobody@example.com in directory \"aliases\": add it with `sluice alias add nobody@example.com --to DEST`"
    );

    // Import: a second run changes nothing.
    let csv = dir.join("import.csv");
    std::fs::write(
        &csv,
        "address,status,to\nsales@example.com,,alice@example.net;bob@example.net\nbox@example.com,active,\ninfo@example.com,active,bob@example.net alice@example.net\n",
    )
    .unwrap();
    let first = s.ok(&["import", csv.to_str().unwrap()]);
    assert!(
        first.contains("added sales@example.com -> alice@example.net, bob@example.net"),
        "{first}"
    );
    assert!(
        first.contains("changed box@example.com: status paused -> active"),
        "{first}"
    );
    assert!(
        first.ends_with("added 1, changed 1, unchanged 1\n"),
        "{first}"
    );
    assert_eq!(
        s.ok(&["import", csv.to_str().unwrap()]),
        "added 0, changed 0, unchanged 3\n"
    );
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "address,to\nx@example.org,alice@example.net\n").unwrap();
    let refused = s.refused(&["import", bad.to_str().unwrap()]);
    assert!(
        refused.contains("nothing imported: x@example.org: example.org is not served"),
        "{refused}"
    );
    std::fs::write(&bad, "address,to\nok@example.com,\n\nbroken\n").unwrap();
    let refused = s.refused(&["import", bad.to_str().unwrap()]);
    assert!(
        refused.contains("bad.csv: line 4: `broken` is not an address"),
        "{refused}"
    );

    // Export, and the export imports back unchanged.
    let exported = s.ok(&["export", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(json["settings"]["domains"][0], "example.com");
    assert_eq!(json["aliases"].as_object().unwrap().len(), 5);
    let csv_out = s.ok(&["export", "example.com", "--format", "csv"]);
    assert!(csv_out.starts_with("address,status,to,created,modified,uses,last_used\n"));
    let toml_out = s.ok(&["export"]);
    let again = dir.join("again.toml");
    std::fs::write(&again, toml_out).unwrap();
    assert_eq!(
        s.ok(&["import", again.to_str().unwrap()]),
        "added 0, changed 0, unchanged 5\n"
    );

    let settings = s.ok(&["settings"]);
    assert!(
        settings.contains("domains:      example.com\n"),
        "{settings}"
    );
    assert!(
        settings.contains("destinations: @example.net\n"),
        "{settings}"
    );
    assert!(s
        .refused(&["unserve", "example.com"])
        .contains("example.com still has 5 aliases"));

    assert_eq!(
        s.ok(&["rm", "sales@example.com"]),
        "removed sales@example.com\n"
    );
    assert!(s
        .refused(&["rm", "sales@example.com"])
        .contains("no alias sales@example.com"));
    s.ok(&["disallow", "@example.net"]);
    assert!(!s.ok(&["settings"]).contains("@example.net"));

    // Usage errors are clap's: exit code 2.
    assert_eq!(s.run(&["add"]).status.code(), Some(2));
    assert_eq!(
        s.run(&["list", "example.com", "--status", "asleep"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_dynamodb_directory() {
    let _turn = crate::turn(module_path!());
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Session::new(
        dir.path(),
        "[directory.aliases]\nkind = \"dynamodb\"\ntable = \"sluice-aliases\"\n",
        moto.env(),
    );
    session(&s, dir.path());
}

#[test]
fn a_file_directory() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let s = Session::new(
        dir.path(),
        "[directory.aliases]\nkind = \"file\"\npath = \"aliases.toml\"\n",
        Vec::new(),
    );
    let missing = s.refused(&["list", "example.com"]);
    assert!(
        missing.ends_with("does not exist: create it with `sluice alias init` (or fix `path`)"),
        "{missing}"
    );
    session(&s, dir.path());
    let text = std::fs::read_to_string(dir.path().join("aliases.toml")).unwrap();
    assert!(
        text.contains("\"box@example.com\" = { status = \"active\""),
        "{text}"
    );
}

#[test]
fn a_config_without_the_directory_says_what_to_add() {
    let _turn = crate::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let s = Session::new(
        dir.path(),
        "[directory.people]\nkind = \"file\"\npath = \"people.csv\"\n",
        Vec::new(),
    );
    let err = s.refused(&["list", "example.com"]);
    assert!(
        err.contains("has no [directory.aliases] section (it has: people): add one"),
        "{err}"
    );
    // A CSV directory has no settings, so nothing is checked against them.
    s.ok(&["--directory", "people", "init"]);
    s.ok(&[
        "add",
        "a@example.org",
        "--to",
        "x@anywhere.example",
        "--directory",
        "people",
    ]);
    assert!(s
        .refused(&["--directory", "people", "serve", "example.org"])
        .contains("a CSV directory holds aliases only"));
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["alias", "list", "example.com"])
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
