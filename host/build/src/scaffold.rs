//! `sluice plugin new`: scaffolds a standalone rule project from a built-in template.
//!
//! A [`Template`] is a language (`rust`, ...) and a list of files whose text may hold
//! placeholders, filled in by [`new_rule`]:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `{{name}}` | the rule's name as given (`tag-external`) |
//! | `{{crate_name}}` | the name as an identifier (`tag_external`) |
//! | `{{sdk_path}}` | the absolute path of the language's Sluice SDK |
//! | `{{sdk_path_toml}}` | the same path as a quoted TOML string |
//!
//! The files are embedded with `include_str!` from `host/build/templates/<lang>/`, so the
//! `sluice` binary needs nothing on disk but the SDK the new project depends on. Another
//! language is another entry in [`TEMPLATES`].
//!
//! ```no_run
//! let opts = sluice_build::scaffold::NewOptions::new("rust", "tag-external", "rules");
//! let created = sluice_build::scaffold::new_rule(&opts)?;
//! println!("{} ({} files)", created.dir.display(), created.files.len());
//! # Ok::<(), sluice_build::scaffold::NewError>(())
//! ```

use std::path::{Path, PathBuf};

/// One file of a template: where it goes in the new project and its text.
#[derive(Debug, Clone, Copy)]
pub struct TemplateFile {
    /// Path relative to the new project's directory, `/`-separated.
    pub path: &'static str,
    /// The text, with `{{...}}` placeholders.
    pub text: &'static str,
}

/// A project template for one language.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// The `--lang` value.
    pub lang: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    /// The SDK's directory relative to the root of the Sluice checkout (`sdk/rust`): the
    /// default SDK location is this directory of the checkout `sluice` was built from.
    pub sdk_dir: &'static str,
    /// The environment variable that overrides the default SDK location.
    pub sdk_env: &'static str,
    /// Checks that a directory holds this language's SDK (an error says what is missing).
    pub check_sdk: fn(&Path) -> Result<(), String>,
    /// Checks the project name against the language's rules.
    pub check_name: fn(&str) -> Result<(), String>,
    /// The files to write.
    pub files: &'static [TemplateFile],
    /// Commands to run next, from inside the new directory (placeholders allowed).
    pub next_steps: &'static [&'static str],
}

#[macro_export]
#[doc(hidden)]
macro_rules! template_file {
    ($lang:literal, $path:literal, $source:literal) => {
        $crate::scaffold::TemplateFile {
            path: $path,
            text: include_str!(concat!("../templates/", $lang, "/", $source)),
        }
    };
}

/// The built-in templates.
pub const TEMPLATES: &[Template] = &[RUST, crate::js::TEMPLATE, crate::python::TEMPLATE];

/// The Rust template.
const RUST: Template = Template {
    lang: "rust",
    summary: "a Rust crate using sluice-sdk (prefixes the Subject of external mail)",
    sdk_dir: "sdk/rust",
    sdk_env: "SLUICE_SDK",
    check_sdk: check_rust_sdk,
    check_name: check_crate_name,
    files: &[
        template_file!("rust", "Cargo.toml", "Cargo.toml.tmpl"),
        template_file!("rust", "src/lib.rs", "src/lib.rs.tmpl"),
        template_file!("rust", "README.md", "README.md.tmpl"),
        template_file!("rust", "sluice.toml", "sluice.toml.tmpl"),
        template_file!("rust", ".gitignore", "gitignore.tmpl"),
        template_file!("rust", "fixtures/external.eml", "fixtures/external.eml"),
        template_file!("rust", "fixtures/internal.eml", "fixtures/internal.eml"),
    ],
    next_steps: &[
        "cargo test",
        "sluice plugin build . --out target/plugins",
        "sluice run --config sluice.toml fixtures/external.eml",
    ],
};

/// The template for `lang`, if there is one.
pub fn template(lang: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.lang == lang)
}

/// The `--lang` values there are templates for.
pub fn languages() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.lang).collect()
}

/// What to scaffold, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOptions {
    /// The template's language.
    pub lang: String,
    /// The project name; also the directory name.
    pub name: String,
    /// The directory the project directory is created in (created if missing).
    pub parent: PathBuf,
    /// The SDK to depend on. `None`: the template's environment variable, else the SDK of the
    /// checkout `sluice` was built from.
    pub sdk: Option<PathBuf>,
}

impl NewOptions {
    /// `lang` project `name` in `parent`, default SDK.
    pub fn new(
        lang: impl Into<String>,
        name: impl Into<String>,
        parent: impl Into<PathBuf>,
    ) -> Self {
        NewOptions {
            lang: lang.into(),
            name: name.into(),
            parent: parent.into(),
            sdk: None,
        }
    }
}

/// Where the SDK path came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// `--sdk`.
    Flag,
    /// The template's environment variable (named).
    Env(&'static str),
    /// The checkout `sluice` was built from.
    BuiltIn,
}

impl std::fmt::Display for SdkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdkSource::Flag => f.write_str("--sdk"),
            SdkSource::Env(var) => write!(f, "${var}"),
            SdkSource::BuiltIn => f.write_str("the checkout sluice was built from"),
        }
    }
}

/// What [`new_rule`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffolded {
    /// The language.
    pub lang: &'static str,
    /// The new project's directory (absolute).
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// The SDK the project depends on (absolute).
    pub sdk: PathBuf,
    /// Where that SDK path came from.
    pub sdk_source: SdkSource,
    /// Commands to run next, from inside `dir`.
    pub next_steps: Vec<String>,
}

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// No template for the language.
    #[error("no template for language `{lang}` (available: {})", available.join(", "))]
    UnknownLang {
        /// The language asked for.
        lang: String,
        /// The languages there are templates for.
        available: Vec<&'static str>,
    },
    /// The name is not valid for the language.
    #[error("`{name}` is not a valid {lang} rule name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// The language.
        lang: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The target directory exists and holds something.
    #[error("{} already exists and is not empty: choose another name or --dir", dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The target path exists and is not a directory.
    #[error("{} already exists and is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The SDK was not found where it should be.
    #[error(
        "no {lang} Sluice SDK at {} (from {source_}): {reason}; pass --sdk PATH (the sdk/{lang} \
         directory of a Sluice checkout) or set ${env}",
        path.display()
    )]
    SdkNotFound {
        /// The language.
        lang: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Where that path came from.
        source_: SdkSource,
        /// The template's environment variable.
        env: &'static str,
        /// What is missing.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The root of the checkout this crate was compiled from (`host/build/../..`).
const CHECKOUT_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Where `template`'s SDK is: `explicit` (from `--sdk`), else the template's environment
/// variable, else the checkout `sluice` was built from. The result is absolute (canonical
/// when it exists) and checked with [`Template::check_sdk`].
pub fn find_sdk(
    template: &Template,
    explicit: Option<&Path>,
) -> Result<(PathBuf, SdkSource), NewError> {
    let (path, source) = match explicit {
        Some(path) => (path.to_path_buf(), SdkSource::Flag),
        None => match std::env::var_os(template.sdk_env).filter(|v| !v.is_empty()) {
            Some(path) => (PathBuf::from(path), SdkSource::Env(template.sdk_env)),
            None => (
                Path::new(CHECKOUT_ROOT).join(template.sdk_dir),
                SdkSource::BuiltIn,
            ),
        },
    };
    let absolute = std::fs::canonicalize(&path)
        .or_else(|_| std::path::absolute(&path))
        .unwrap_or(path);
    let not_found = |reason: String| NewError::SdkNotFound {
        lang: template.lang,
        path: absolute.clone(),
        source_: source.clone(),
        env: template.sdk_env,
        reason,
    };
    if !absolute.is_dir() {
        return Err(not_found("no such directory".into()));
    }
    if absolute.to_str().is_none() {
        return Err(not_found("the path is not UTF-8".into()));
    }
    (template.check_sdk)(&absolute).map_err(not_found)?;
    Ok((absolute, source))
}

/// Creates `parent/name/` from the template for `lang`.
///
/// Refuses an unknown language (listing the known ones), a name the language does not allow,
/// a target that exists and is not an empty directory, and an SDK path that does not hold the
/// SDK. Nothing is written before these checks pass.
pub fn new_rule(opts: &NewOptions) -> Result<Scaffolded, NewError> {
    let template = template(&opts.lang).ok_or_else(|| NewError::UnknownLang {
        lang: opts.lang.clone(),
        available: languages(),
    })?;
    (template.check_name)(&opts.name).map_err(|reason| NewError::InvalidName {
        name: opts.name.clone(),
        lang: template.lang,
        reason,
    })?;
    let parent = std::path::absolute(&opts.parent).map_err(|source| NewError::Io {
        path: opts.parent.clone(),
        source,
    })?;
    let dir = parent.join(&opts.name);
    check_target(&dir)?;
    let (sdk, sdk_source) = find_sdk(template, opts.sdk.as_deref())?;

    let sdk_str = sdk.to_str().unwrap_or_default();
    let vars: [(&str, String); 4] = [
        ("name", opts.name.clone()),
        ("crate_name", opts.name.replace('-', "_")),
        ("sdk_path", sdk_str.to_string()),
        ("sdk_path_toml", toml_string(sdk_str)),
    ];
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut files = Vec::with_capacity(template.files.len());
    for file in template.files {
        let relative: PathBuf = file.path.split('/').collect();
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, render(file.text, &vars)).map_err(io(&path))?;
        files.push(relative);
    }
    Ok(Scaffolded {
        lang: template.lang,
        dir,
        files,
        sdk,
        sdk_source,
        next_steps: template
            .next_steps
            .iter()
            .map(|s| render(s, &vars))
            .collect(),
    })
}

/// The target must not exist, or be an empty directory.
fn check_target(dir: &Path) -> Result<(), NewError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NewError::Io {
            path: dir.to_path_buf(),
            source,
        }),
        Ok(meta) if !meta.is_dir() => Err(NewError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(|source| NewError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            if entries.next().is_some() {
                return Err(NewError::NotEmpty {
                    dir: dir.to_path_buf(),
                });
            }
            Ok(())
        }
    }
}

/// Replaces each `{{key}}` of `vars` in `text`.
fn render(text: &str, vars: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// `s` as a TOML basic string, quotes included.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The SDK directory must hold the `sluice-sdk` package.
fn check_rust_sdk(dir: &Path) -> Result<(), String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let name = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string));
    match name.as_deref() {
        Some("sluice-sdk") => Ok(()),
        Some(other) => Err(format!(
            "{} is package `{other}`, not `sluice-sdk`",
            manifest.display()
        )),
        None => Err(format!("{} has no [package] name", manifest.display())),
    }
}

/// Words Rust reserves: a package with such a name cannot be used as a library name.
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names that clash with the standard library or with the template's own dependencies.
const RESERVED_CRATE_NAMES: &[&str] = &[
    "alloc",
    "core",
    "proc_macro",
    "std",
    "test",
    "serde",
    "sluice_sdk",
    "wit_bindgen",
];

/// A rule name in any language (also the component's file stem and a step name): ASCII
/// letters, digits, `-` and `_`, starting with a letter, at most 64 characters.
pub fn check_rule_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 64 {
        return Err("longer than 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{c:?} is not allowed (use ASCII letters, digits, `-` and `_`)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("it must start with a letter".into());
    }
    Ok(())
}

/// A cargo package name that also works as a library and file name: ASCII letters, digits,
/// `-` and `_`, starting with a letter, at most 64 characters, not a keyword.
pub fn check_crate_name(name: &str) -> Result<(), String> {
    check_rule_name(name)?;
    let ident = name.replace('-', "_");
    if RUST_KEYWORDS.contains(&ident.as_str()) {
        return Err("it is a Rust keyword".into());
    }
    if RESERVED_CRATE_NAMES.contains(&ident.as_str()) {
        return Err("it clashes with a standard or dependency crate".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_crate_names() {
        for good in ["tag-external", "rule_2", "A"] {
            assert_eq!(check_crate_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("2fa", "start with a letter"),
            ("-x", "start with a letter"),
            ("my rule", "' ' is not allowed"),
            ("a/b", "'/' is not allowed"),
            ("crème", "not allowed"),
            ("fn", "keyword"),
            ("self", "keyword"),
            ("std", "clashes"),
            ("sluice-sdk", "clashes"),
        ] {
            let err = check_crate_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(check_crate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn renders_placeholders_and_toml_strings() {
        let vars = [
            ("name", "x-y".to_string()),
            ("crate_name", "x_y".to_string()),
        ];
        assert_eq!(
            render("{{name}} {{crate_name}} {name}", &vars),
            "x-y x_y {name}"
        );
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("/a\tb"), r#""/a\u0009b""#);
    }

    #[test]
    fn every_template_renders_completely() {
        let vars = [
            ("name", "n".to_string()),
            ("crate_name", "n".to_string()),
            ("sdk_path", "/sdk".to_string()),
            ("sdk_path_toml", "\"/sdk\"".to_string()),
        ];
        for template in TEMPLATES {
            for file in template.files {
                let text = render(file.text, &vars);
                assert!(
                    !text.contains("{{"),
                    "{}/{}: {text}",
                    template.lang,
                    file.path
                );
            }
        }
    }

    #[test]
    fn the_rust_template_is_a_standalone_rule_crate() {
        let rust = template("rust").unwrap();
        let manifest = rust.files.iter().find(|f| f.path == "Cargo.toml").unwrap();
        let text = render(
            manifest.text,
            &[
                ("name", "tag-external".to_string()),
                ("sdk_path_toml", toml_string("/x/sdk/rust")),
            ],
        );
        let parsed = crate::parse_manifest(&text, Path::new("Cargo.toml")).unwrap();
        assert_eq!(parsed.name, "tag-external");
        assert_eq!(parsed.target, crate::DEFAULT_TARGET);
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert!(table.contains_key("workspace"), "needs its own [workspace]");
        assert_eq!(
            table["dependencies"]["sluice-sdk"]["path"].as_str(),
            Some("/x/sdk/rust")
        );
        assert_eq!(
            table["lib"]["crate-type"],
            toml::Value::Array(vec!["cdylib".into(), "rlib".into()])
        );
    }

    #[test]
    fn the_built_in_sdk_is_found_and_checked() {
        let rust = template("rust").unwrap();
        let sdk = Path::new(CHECKOUT_ROOT).join("sdk/rust");
        let (path, source) = find_sdk(rust, Some(&sdk)).unwrap();
        assert!(
            path.is_absolute() && path.ends_with("sdk/rust"),
            "{}",
            path.display()
        );
        assert_eq!(source, SdkSource::Flag);
        let err = find_sdk(rust, Some(&Path::new(CHECKOUT_ROOT).join("host/build"))).unwrap_err();
        assert!(err.to_string().contains("not `sluice-sdk`"), "{err}");
        let err = find_sdk(rust, Some(Path::new("/nonexistent/sdk"))).unwrap_err();
        assert!(
            err.to_string().contains("no such directory") && err.to_string().contains("--sdk"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unknown_languages_and_bad_names_before_writing() {
        let parent = std::env::temp_dir().join(format!("sluice-new-unit-{}", std::process::id()));
        let err = new_rule(&NewOptions::new("cobol", "x", &parent)).unwrap_err();
        assert!(err.to_string().contains("available: rust"), "{err}");
        let err = new_rule(&NewOptions::new("rust", "1x", &parent)).unwrap_err();
        assert!(matches!(err, NewError::InvalidName { .. }), "{err}");
        assert!(!parent.exists());
    }
}
