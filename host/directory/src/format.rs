//! The directory's file formats: TOML, JSON and CSV, chosen by the file's extension.
//!
//! TOML and JSON hold the settings and the aliases:
//!
//! ```toml
//! [settings]
//! domains = ["example.com"]
//! destinations = ["alice@example.net", "@gmail.example"]
//!
//! [aliases]
//! "info@example.com" = { to = ["alice@example.net"], status = "active" }
//! "shop-x7k2@example.com" = { status = "paused" }
//! "*@example.com" = { to = "catchall@example.net" }
//! ```
//!
//! ```toml
//! [senders]
//! block = ["spam.example", ".spam.example", "someone@bulk.example"]
//! allow = ["partner.example"]
//! ```
//!
//! `[senders]` (optional) holds the sender lists the `sender-lists` rule reads with
//! `table = "NAME"` (addresses, domains, `.domain` for subdomains; no `*` patterns).
//! `status` defaults to `active`; `to` is an address or a list (absent: the alias is a mailbox
//! itself); `created`, `modified`, `uses` and `last_used` (seconds since the Unix epoch) are
//! optional. JSON has the same shape (`{"settings": {...}, "aliases": {"info@example.com":
//! {...}}}`).
//!
//! CSV holds aliases only, one per line under a header naming the columns
//! (`address,status,to,created,modified,uses,last_used`; only `address` is required; `to`
//! separates addresses by spaces or `;`). Used for imports from spreadsheets and exports.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    normalize_address, normalize_destination, normalize_domain, normalize_sender_entry,
    AliasRecord, DirectoryError, DirectorySettings, SenderList, Status,
};

/// A directory file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `.toml`: settings and aliases.
    Toml,
    /// `.json`: settings and aliases.
    Json,
    /// `.csv`: aliases only.
    Csv,
}

impl FileFormat {
    /// The format a path's extension names.
    pub fn from_path(path: &Path) -> Result<FileFormat, DirectoryError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        ext.parse().map_err(|_| {
            DirectoryError::Invalid(format!(
                "{}: unknown file type: name it .toml, .json or .csv",
                path.display()
            ))
        })
    }

    /// Whether the format holds [`DirectorySettings`] (CSV does not).
    pub fn keeps_settings(self) -> bool {
        !matches!(self, FileFormat::Csv)
    }

    /// The extension, which is also the `--format` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Toml => "toml",
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
        }
    }
}

impl std::str::FromStr for FileFormat {
    type Err = DirectoryError;

    fn from_str(s: &str) -> Result<FileFormat, DirectoryError> {
        match s.to_ascii_lowercase().as_str() {
            "toml" => Ok(FileFormat::Toml),
            "json" => Ok(FileFormat::Json),
            "csv" => Ok(FileFormat::Csv),
            other => Err(DirectoryError::Invalid(format!(
                "unknown format `{other}`: use toml, json or csv"
            ))),
        }
    }
}

/// A whole directory as a file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryFile {
    /// Its settings (always empty for CSV).
    pub settings: DirectorySettings,
    /// Its aliases, by address.
    pub aliases: Vec<AliasRecord>,
    /// Its sender lists, by entry (always empty for CSV).
    pub senders: BTreeMap<String, SenderList>,
}

impl DirectoryFile {
    /// Reads a file, in the format its extension names. Errors start with the file's name.
    pub fn read(path: &Path) -> Result<DirectoryFile, DirectoryError> {
        let format = FileFormat::from_path(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DirectoryError::Invalid(format!("{}: no such file", path.display()))
            } else {
                DirectoryError::Unavailable(format!("{}: cannot read it: {e}", path.display()))
            }
        })?;
        DirectoryFile::parse(&text, format).map_err(|e| e.within(path.display()))
    }

    /// Parses file text. Errors name the line (TOML, CSV) or the alias (JSON) and say what
    /// to fix; addresses come out lower case and checked.
    pub fn parse(text: &str, format: FileFormat) -> Result<DirectoryFile, DirectoryError> {
        match format {
            FileFormat::Toml => parse_toml(text),
            FileFormat::Json => parse_json(text),
            FileFormat::Csv => parse_csv(text),
        }
    }

    /// The file text; [`parse`](DirectoryFile::parse) gives back the same directory.
    pub fn render(&self, format: FileFormat) -> String {
        match format {
            FileFormat::Toml => render_toml(self),
            FileFormat::Json => render_json(self),
            FileFormat::Csv => render_csv(&self.aliases),
        }
    }
}

/// An alias as files spell it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modified: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    destinations: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSenders {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    block: Vec<String>,
}

impl RawSenders {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.block.is_empty()
    }

    fn of(senders: &BTreeMap<String, SenderList>) -> RawSenders {
        let on = |list| {
            senders
                .iter()
                .filter(|(_, l)| **l == list)
                .map(|(entry, _)| entry.clone())
                .collect()
        };
        RawSenders {
            allow: on(SenderList::Allow),
            block: on(SenderList::Block),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFile<A> {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default = "BTreeMap::new")]
    aliases: BTreeMap<String, A>,
    #[serde(default, skip_serializing_if = "RawSenders::is_empty")]
    senders: RawSenders,
}

/// The `[senders]` lists, checked: each entry normalized and on one list only.
fn senders_from(raw: RawSenders) -> Result<BTreeMap<String, SenderList>, DirectoryError> {
    let mut senders = BTreeMap::new();
    for (list, entries) in [
        (SenderList::Allow, raw.allow),
        (SenderList::Block, raw.block),
    ] {
        for entry in entries {
            let entry = normalize_sender_entry(&entry)
                .map_err(|e| e.within(format_args!("[senders] {list}")))?;
            if let Some(other) = senders.insert(entry.clone(), list) {
                return Err(DirectoryError::Invalid(format!(
                    "[senders]: {entry} is listed twice ({other} and {list}): keep one"
                )));
            }
        }
    }
    Ok(senders)
}

/// `to = "a@x"` or `to = ["a@x", "b@y"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an address or a list of addresses")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    de.deserialize_any(Visitor)
}

fn settings_from(raw: RawSettings) -> Result<DirectorySettings, DirectoryError> {
    let mut settings = DirectorySettings::default();
    for domain in &raw.domains {
        let domain = normalize_domain(domain).map_err(|e| e.within("[settings] domains"))?;
        settings.domains.push(domain);
    }
    for dest in &raw.destinations {
        let dest = normalize_destination(dest).map_err(|e| {
            e.within("[settings] destinations (full addresses, or @domain for a whole domain)")
        })?;
        settings.destinations.push(dest);
    }
    Ok(settings.normalized())
}

fn record_from(address: &str, raw: RawAlias) -> Result<AliasRecord, DirectoryError> {
    let address = normalize_address(address)?;
    let mut to = Vec::with_capacity(raw.to.len());
    for dest in &raw.to {
        let dest = normalize_address(dest).map_err(|e| e.within("`to`"))?;
        if dest.starts_with("*@") {
            return Err(DirectoryError::Invalid(format!(
                "`to`: {dest} is a catch-all, not a destination: name a full address"
            )));
        }
        if !to.contains(&dest) {
            to.push(dest);
        }
    }
    Ok(AliasRecord {
        address,
        status: raw.status.unwrap_or_default(),
        to,
        created: raw.created.unwrap_or(0),
        modified: raw.modified.or(raw.created).unwrap_or(0),
        uses: raw.uses.unwrap_or(0),
        last_used: raw.last_used,
    })
}

fn raw_from(record: &AliasRecord) -> RawAlias {
    RawAlias {
        status: Some(record.status),
        to: record.to.clone(),
        created: (record.created != 0).then_some(record.created),
        modified: (record.modified != 0).then_some(record.modified),
        uses: (record.uses != 0).then_some(record.uses),
        last_used: record.last_used,
    }
}

/// Adds a record, refusing a second one for the same address (two spellings of one
/// address, once lower-cased).
fn push_unique(
    aliases: &mut BTreeMap<String, AliasRecord>,
    record: AliasRecord,
) -> Result<(), DirectoryError> {
    if aliases.contains_key(&record.address) {
        return Err(DirectoryError::Invalid(format!(
            "{} is listed twice (addresses are compared in lower case): keep one",
            record.address
        )));
    }
    aliases.insert(record.address.clone(), record);
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

fn parse_toml(text: &str) -> Result<DirectoryFile, DirectoryError> {
    let raw: RawFile<toml::Spanned<RawAlias>> = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!("line {}: ", line_of(text, s.start)));
        DirectoryError::Invalid(format!(
            "{}{}",
            line.unwrap_or_default(),
            e.message().trim_end()
        ))
    })?;
    let settings = settings_from(raw.settings)?;
    let senders = senders_from(raw.senders)?;
    let mut aliases = BTreeMap::new();
    for (address, spanned) in raw.aliases {
        let line = line_of(text, spanned.span().start);
        record_from(&address, spanned.into_inner())
            .and_then(|r| push_unique(&mut aliases, r))
            .map_err(|e| e.within(format_args!("line {line}: alias \"{address}\"")))?;
    }
    Ok(DirectoryFile {
        settings,
        aliases: aliases.into_values().collect(),
        senders,
    })
}

fn parse_json(text: &str) -> Result<DirectoryFile, DirectoryError> {
    let raw: RawFile<RawAlias> = serde_json::from_str(text)
        .map_err(|e| DirectoryError::Invalid(format!("line {}: {e}", e.line())))?;
    let settings = settings_from(raw.settings)?;
    let senders = senders_from(raw.senders)?;
    let mut aliases = BTreeMap::new();
    for (address, alias) in raw.aliases {
        record_from(&address, alias)
            .and_then(|r| push_unique(&mut aliases, r))
            .map_err(|e| e.within(format_args!("alias \"{address}\"")))?;
    }
    Ok(DirectoryFile {
        settings,
        aliases: aliases.into_values().collect(),
        senders,
    })
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", items.join(", "))
}

fn render_toml(file: &DirectoryFile) -> String {
    let mut out = String::from("[settings]\n");
    out += &format!("domains = {}\n", toml_list(&file.settings.domains));
    out += &format!(
        "destinations = {}\n\n[aliases]\n",
        toml_list(&file.settings.destinations)
    );
    for record in &file.aliases {
        let raw = raw_from(record);
        let mut fields = Vec::new();
        if let Some(status) = raw.status {
            fields.push(format!("status = {}", toml_string(status.as_str())));
        }
        if !raw.to.is_empty() {
            fields.push(format!("to = {}", toml_list(&raw.to)));
        }
        for (key, value) in [
            ("created", raw.created),
            ("modified", raw.modified),
            ("uses", raw.uses),
            ("last_used", raw.last_used),
        ] {
            if let Some(value) = value {
                fields.push(format!("{key} = {value}"));
            }
        }
        out += &format!(
            "{} = {{ {} }}\n",
            toml_string(&record.address),
            fields.join(", ")
        );
    }
    let senders = RawSenders::of(&file.senders);
    if !senders.is_empty() {
        out += "\n[senders]\n";
        for (key, entries) in [("allow", &senders.allow), ("block", &senders.block)] {
            if !entries.is_empty() {
                out += &format!("{key} = {}\n", toml_list(entries));
            }
        }
    }
    out
}

fn render_json(file: &DirectoryFile) -> String {
    let raw = RawFile {
        settings: RawSettings {
            domains: file.settings.domains.clone(),
            destinations: file.settings.destinations.clone(),
        },
        aliases: file
            .aliases
            .iter()
            .map(|r| (r.address.clone(), raw_from(r)))
            .collect(),
        senders: RawSenders::of(&file.senders),
    };
    // Plain data (strings, numbers, maps with string keys): serialising cannot fail.
    let mut text = serde_json::to_string_pretty(&raw).unwrap_or_default();
    text.push('\n');
    text
}

/// The CSV columns, in the order exports write them.
pub const CSV_COLUMNS: [&str; 7] = [
    "address",
    "status",
    "to",
    "created",
    "modified",
    "uses",
    "last_used",
];

/// CSV records with the line each starts on (RFC 4180: `"` quotes a field, `""` is a quote
/// inside one; a quoted field may span lines). Blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, DirectoryError> {
    let mut records = Vec::new();
    let mut line = 1;
    let mut start_line = 1;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let end_record = |fields: &mut Vec<String>,
                      field: &mut String,
                      records: &mut Vec<(usize, Vec<String>)>,
                      start_line: usize| {
        fields.push(std::mem::take(field));
        let record = std::mem::take(fields);
        if !(record.len() == 1 && record[0].trim().is_empty()) {
            records.push((start_line, record));
        }
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            '"' => {
                return Err(DirectoryError::Invalid(format!(
                    "line {line}: a stray `\"` inside a field: quote the whole field (\"...\") and double quotes inside it (\"\")"
                )))
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(&mut fields, &mut field, &mut records, start_line);
                was_quoted = false;
                line += 1;
                start_line = line;
            }
            c if was_quoted && !c.is_whitespace() => {
                return Err(DirectoryError::Invalid(format!(
                    "line {line}: text after a quoted field: put a `,` after the closing quote"
                )))
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(DirectoryError::Invalid(format!(
            "line {start_line}: a quoted field is not closed: add the closing `\"`"
        )));
    }
    end_record(&mut fields, &mut field, &mut records, start_line);
    Ok(records)
}

fn parse_csv(text: &str) -> Result<DirectoryFile, DirectoryError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = csv_records(text)?.into_iter();
    let Some((header_line, header)) = records.next() else {
        return Ok(DirectoryFile::default());
    };
    let mut columns = Vec::with_capacity(header.len());
    for name in &header {
        let name = name.trim().to_ascii_lowercase();
        if !CSV_COLUMNS.contains(&name.as_str()) {
            return Err(DirectoryError::Invalid(format!(
                "line {header_line}: unknown column `{name}`: the first line names the columns, from {}",
                CSV_COLUMNS.join(",")
            )));
        }
        if columns.contains(&name) {
            return Err(DirectoryError::Invalid(format!(
                "line {header_line}: column `{name}` is named twice"
            )));
        }
        columns.push(name);
    }
    if !columns.iter().any(|c| c == "address") {
        return Err(DirectoryError::Invalid(format!(
            "line {header_line}: no `address` column: the first line names the columns, e.g. `address,status,to`"
        )));
    }
    let mut aliases = BTreeMap::new();
    for (line, fields) in records {
        if fields.len() > columns.len() {
            return Err(DirectoryError::Invalid(format!(
                "line {line}: {} fields but the header names {} columns: quote a field that contains a comma",
                fields.len(),
                columns.len()
            )));
        }
        let mut address = String::new();
        let mut raw = RawAlias::default();
        for (column, value) in columns.iter().zip(&fields) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let at = |e: DirectoryError| e.within(format_args!("line {line}"));
            let number = |value: &str| {
                value.parse::<u64>().map_err(|_| {
                    DirectoryError::Invalid(format!(
                        "line {line}: `{column}` must be a whole number (seconds since the Unix epoch, or a count), not `{value}`"
                    ))
                })
            };
            match column.as_str() {
                "address" => address = value.to_string(),
                "status" => raw.status = Some(value.parse().map_err(at)?),
                "to" => {
                    raw.to = value
                        .split(|c: char| c == ';' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "created" => raw.created = Some(number(value)?),
                "modified" => raw.modified = Some(number(value)?),
                "uses" => raw.uses = Some(number(value)?),
                _ => raw.last_used = Some(number(value)?),
            }
        }
        if address.is_empty() {
            return Err(DirectoryError::Invalid(format!(
                "line {line}: no address: every line needs one in the `address` column"
            )));
        }
        record_from(&address, raw)
            .and_then(|r| push_unique(&mut aliases, r))
            .map_err(|e| e.within(format_args!("line {line}")))?;
    }
    Ok(DirectoryFile {
        settings: DirectorySettings::default(),
        aliases: aliases.into_values().collect(),
        senders: BTreeMap::new(),
    })
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) || value.trim() != value {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn render_csv(aliases: &[AliasRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    let number = |n: u64| if n == 0 { String::new() } else { n.to_string() };
    for r in aliases {
        let fields = [
            csv_field(&r.address),
            r.status.as_str().to_string(),
            csv_field(&r.to.join(" ")),
            number(r.created),
            number(r.modified),
            r.uses.to_string(),
            r.last_used.map(|t| t.to_string()).unwrap_or_default(),
        ];
        out += &fields.join(",");
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
[settings]
domains = ["Example.com"]
destinations = ["alice@example.net", "@gmail.example"]

[aliases]
"Info@example.com" = { to = ["alice@example.net", "bob@gmail.example"], status = "active" }
"shop-x7k2@example.com" = { status = "paused", created = 100, uses = 3, last_used = 200 }
"*@example.com" = { to = "catchall@example.net" }

[senders]
block = ["Spam.example", ".spam.example", "promo@bulk.example"]
allow = ["partner.example"]
"#;

    fn sample() -> DirectoryFile {
        DirectoryFile::parse(TOML, FileFormat::Toml).unwrap()
    }

    #[test]
    fn toml_reads_the_documented_shape_in_lower_case() {
        let file = sample();
        assert_eq!(file.settings.domains, ["example.com"]);
        assert_eq!(
            file.settings.destinations,
            ["@gmail.example", "alice@example.net"]
        );
        let addresses: Vec<&str> = file.aliases.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(
            addresses,
            ["*@example.com", "info@example.com", "shop-x7k2@example.com"]
        );
        assert_eq!(file.aliases[0].to, ["catchall@example.net"]);
        assert_eq!(file.aliases[0].status, Status::Active);
        let shop = &file.aliases[2];
        assert_eq!(shop.status, Status::Paused);
        assert!(shop.to.is_empty());
        assert_eq!(
            (shop.created, shop.modified, shop.uses, shop.last_used),
            (100, 100, 3, Some(200))
        );
        let senders: Vec<(&str, SenderList)> =
            file.senders.iter().map(|(e, l)| (e.as_str(), *l)).collect();
        assert_eq!(
            senders,
            [
                (".spam.example", SenderList::Block),
                ("partner.example", SenderList::Allow),
                ("promo@bulk.example", SenderList::Block),
                ("spam.example", SenderList::Block),
            ]
        );
    }

    #[test]
    fn sender_lists_refuse_patterns_and_entries_on_both_lists() {
        for (text, want) in [
            (
                "[senders]\nblock = [\"*@x.example\"]\n",
                "[senders] block: `*@x.example`: a `*` pattern",
            ),
            (
                "[senders]\nblock = [\"x.example\"]\nallow = [\"X.example\"]\n",
                "x.example is listed twice (allow and block)",
            ),
            ("[senders]\ndeny = []\n", "unknown field `deny`"),
        ] {
            let err = DirectoryFile::parse(text, FileFormat::Toml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn every_format_round_trips() {
        let file = sample();
        for format in [FileFormat::Toml, FileFormat::Json] {
            let text = file.render(format);
            assert_eq!(
                DirectoryFile::parse(&text, format).unwrap(),
                file,
                "{format:?}:\n{text}"
            );
        }
        let csv = file.render(FileFormat::Csv);
        let back = DirectoryFile::parse(&csv, FileFormat::Csv).unwrap();
        assert_eq!(back.aliases, file.aliases, "{csv}");
        assert_eq!(back.settings, DirectorySettings::default());
    }

    #[test]
    fn csv_reads_any_column_order_quotes_and_separators() {
        let text = "To,Address\n\"a@x.example; b@y.example\",One@Example.com\n\n\"c@x.example\",\"two@example.com\"\r\n";
        let file = DirectoryFile::parse(text, FileFormat::Csv).unwrap();
        assert_eq!(file.aliases.len(), 2);
        assert_eq!(file.aliases[0].address, "one@example.com");
        assert_eq!(file.aliases[0].to, ["a@x.example", "b@y.example"]);
        assert_eq!(file.aliases[1].to, ["c@x.example"]);
        let text = "address,to\n\"odd, \"\"quoted\"\"\"@example.com,\n";
        let err = DirectoryFile::parse(text, FileFormat::Csv).unwrap_err();
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }

    #[test]
    fn csv_errors_name_the_line_and_the_fix() {
        for (text, want) in [
            ("to\na@x.example\n", "line 1: no `address` column"),
            ("address,colour\n", "line 1: unknown column `colour`"),
            (
                "address\nok@example.com\n\nnot-an-address\n",
                "line 4: `not-an-address` is not an address: it must contain exactly one '@'",
            ),
            (
                "address,status\na@example.com,pausd\n",
                "line 2: unknown status `pausd`",
            ),
            (
                "address,uses\na@example.com,many\n",
                "line 2: `uses` must be a whole number",
            ),
            (
                "address\na@example.com\nA@example.com\n",
                "line 3: a@example.com is listed twice",
            ),
            (
                "address,to\na@example.com,x@y.z,extra\n",
                "line 2: 3 fields but the header names 2",
            ),
            (
                "address\n\"a@example.com\n",
                "line 2: a quoted field is not closed",
            ),
            (
                "address,to\na@example.com,*@x.example\n",
                "line 2: `to`: *@x.example is a catch-all",
            ),
        ] {
            let err = DirectoryFile::parse(text, FileFormat::Csv).unwrap_err();
            assert!(err.to_string().starts_with(want), "{text:?}: {err}");
            assert!(matches!(err, DirectoryError::Invalid(_)));
        }
    }

    #[test]
    fn toml_and_json_errors_name_the_line_or_the_alias() {
        let err = DirectoryFile::parse(
            "[aliases]\n\"a@example.com\" = {}\n\"b@example.com\" = { status = \"gone\" }\n",
            FileFormat::Toml,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("line 3: "), "{err}");
        let err = DirectoryFile::parse(
            "[aliases]\n\"a@example.com\" = {}\n\n\"bad\" = { to = \"x@y.z\" }\n",
            FileFormat::Toml,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 4: alias \"bad\": `bad` is not an address: it must contain exactly one '@'"
        );
        let err = DirectoryFile::parse("[aliases]\n\"a@b.c\" = { colour = 1 }\n", FileFormat::Toml)
            .unwrap_err();
        assert!(
            err.to_string().contains("line 2: unknown field `colour`"),
            "{err}"
        );
        let err = DirectoryFile::parse(
            r#"{"aliases": {"a@b.c": {"to": ["x@y.z", "nope"]}}}"#,
            FileFormat::Json,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "alias \"a@b.c\": `to`: `nope` is not an address: it must contain exactly one '@'"
        );
        let err = DirectoryFile::parse("{\n\"aliases\": [}", FileFormat::Json).unwrap_err();
        assert!(err.to_string().starts_with("line 2: "), "{err}");
        let err = DirectoryFile::parse("[settings]\ndestinations = [\"@\"]\n", FileFormat::Toml)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("[settings] destinations"),
            "{err}"
        );
    }

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(
            FileFormat::from_path(Path::new("a/b.CSV")).unwrap(),
            FileFormat::Csv
        );
        let err = FileFormat::from_path(Path::new("aliases.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "aliases.yaml: unknown file type: name it .toml, .json or .csv"
        );
    }
}
