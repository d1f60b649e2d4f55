//! A directory in a DynamoDB table (`kind = "dynamodb"`, feature `dynamodb`).
//!
//! One item per alias: partition key `domain` (S), sort key `alias` (S: the local part, or
//! `*` for the catch-all); `status` (S), `to` (L of S; absent or empty: the alias is a
//! mailbox itself), `created`, `modified`, `uses`, `last_used` (N, seconds since the Unix
//! epoch). The settings are the reserved item `domain = "#directory"`, `alias = "settings"`
//! with `domains` and `destinations` (L of S). Sender lists live in the reserved partition
//! `domain = "#senders"`, one item per entry (`alias` = the entry, `list` = `allow` or
//! `block`), so one table and one grant serve both.

use std::collections::HashMap;
use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use crate::{
    split_address, AliasRecord, AliasStore, DirectoryError, DirectorySettings, SenderList,
};

/// The reserved partition of the settings item (no domain starts with `#`).
const SETTINGS_DOMAIN: &str = "#directory";
/// The settings item's sort key.
const SETTINGS_ALIAS: &str = "settings";
/// The reserved partition of the sender lists.
const SENDERS_DOMAIN: &str = "#senders";

/// How long a call without a deadline of its own may take (admin commands, use counts),
/// SDK retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An alias directory in a DynamoDB table.
///
/// [`AliasStore`] is synchronous (rules run on blocking threads, inside a tokio runtime or
/// not), so the store keeps a small runtime of its own: each request is spawned there and
/// waited for on a channel with a timeout, which works from any thread (a `block_on` would
/// panic inside another runtime) and lets a lookup give up at its step's deadline.
pub struct DynamoStore {
    client: Client,
    table: String,
    timeout: Duration,
    handle: tokio::runtime::Handle,
    /// Owned so that dropping the store stops it; `None` only inside `drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Drop for DynamoStore {
    fn drop(&mut self) {
        // A plain drop blocks until the runtime's tasks end, which panics when the store is
        // dropped inside async code (a config reload in the daemon).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, DirectoryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-dynamodb")
        .enable_all()
        .build()
        .map_err(|e| DirectoryError::Unavailable(format!("cannot start the DynamoDB client: {e}")))
}

/// A one-line message naming the table, the operation and the SDK's whole error chain.
fn sdk_error<E, R>(table: &str, op: &str, err: &SdkError<E, R>) -> DirectoryError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err)
        .to_string()
        .replace(['\n', '\r'], " ");
    let hint = if err.code() == Some("ResourceNotFoundException") {
        " (does the table exist? `sluice alias init` creates it)"
    } else {
        ""
    };
    DirectoryError::Unavailable(format!(
        "DynamoDB table {table}: {op} failed: {detail}{hint}"
    ))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v)).collect())
}

type Item = HashMap<String, AttributeValue>;

fn key(domain: &str, alias: &str) -> Item {
    HashMap::from([
        ("domain".to_string(), s(domain)),
        ("alias".to_string(), s(alias)),
    ])
}

/// The item key of an address; `None` for one that cannot be an alias (no `@`, or the
/// reserved partition).
fn address_key(address: &str) -> Option<Item> {
    let (local, domain) = split_address(address);
    (!local.is_empty() && !domain.is_empty() && !domain.starts_with('#'))
        .then(|| key(domain, local))
}

fn item_of(record: &AliasRecord) -> Option<Item> {
    let mut item = address_key(&record.address)?;
    item.insert("status".into(), s(record.status.as_str()));
    if !record.to.is_empty() {
        item.insert("to".into(), list(&record.to));
    }
    item.insert("created".into(), n(record.created));
    item.insert("modified".into(), n(record.modified));
    item.insert("uses".into(), n(record.uses));
    if let Some(t) = record.last_used {
        item.insert("last_used".into(), n(t));
    }
    Some(item)
}

/// Strings of an `L` (or `SS`, or a single `S`: items written by hand in the console).
fn strings(value: &AttributeValue) -> Option<Vec<String>> {
    match value {
        AttributeValue::L(items) => items
            .iter()
            .map(|v| v.as_s().ok().cloned())
            .collect::<Option<Vec<String>>>(),
        AttributeValue::Ss(items) => Some(items.clone()),
        AttributeValue::S(item) => Some(vec![item.clone()]),
        _ => None,
    }
}

fn record_of(table: &str, item: &Item) -> Result<AliasRecord, DirectoryError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let (Some(domain), Some(alias)) = (text("domain"), text("alias")) else {
        return Err(DirectoryError::Invalid(format!(
            "DynamoDB table {table}: an item without string keys `domain` and `alias`: is this the alias table?"
        )));
    };
    let address = format!("{alias}@{domain}");
    let bad = |what: String| {
        DirectoryError::Invalid(format!(
            "DynamoDB table {table}: item {address}: {what}: fix the item"
        ))
    };
    let number = |name: &str| -> Result<Option<u64>, DirectoryError> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("`{name}` = {v} is not a whole number"))),
            Some(_) => Err(bad(format!("`{name}` must be a number (N)"))),
        }
    };
    let status = match item.get("status") {
        None => Default::default(),
        Some(AttributeValue::S(v)) => v.parse().map_err(|e: DirectoryError| bad(e.to_string()))?,
        Some(_) => return Err(bad("`status` must be a string (S)".into())),
    };
    let to = match item.get("to") {
        None | Some(AttributeValue::Null(_)) => Vec::new(),
        Some(v) => {
            strings(v).ok_or_else(|| bad("`to` must be a list of strings (L of S)".into()))?
        }
    };
    let created = number("created")?.unwrap_or(0);
    let modified = number("modified")?.unwrap_or(created);
    let uses = number("uses")?.unwrap_or(0);
    let last_used = number("last_used")?;
    Ok(AliasRecord {
        address,
        status,
        to,
        created,
        modified,
        uses,
        last_used,
    })
}

impl DynamoStore {
    /// A store for `table` from the standard AWS configuration chain (environment, profile,
    /// instance role); `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_DYNAMODB`) points it at an
    /// emulator.
    pub fn from_env(table: &str) -> Result<DynamoStore, DirectoryError> {
        let runtime = runtime()?;
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(aws_config::load_from_env().await);
        });
        let config = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
            DirectoryError::Unavailable(
                "loading the AWS configuration (region, credentials) took over 30 s".into(),
            )
        })?;
        Ok(DynamoStore::with_client(
            Client::new(&config),
            table,
            runtime,
        ))
    }

    /// A store for `table` at `endpoint` (an emulator such as moto) with static test
    /// credentials.
    pub fn for_endpoint(
        endpoint: &str,
        region: &str,
        table: &str,
    ) -> Result<DynamoStore, DirectoryError> {
        let creds =
            aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "static");
        let config = aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_dynamodb::config::Region::new(region.to_string()))
            .credentials_provider(creds)
            .build();
        Ok(DynamoStore::with_client(
            Client::from_conf(config),
            table,
            runtime()?,
        ))
    }

    fn with_client(client: Client, table: &str, runtime: tokio::runtime::Runtime) -> DynamoStore {
        DynamoStore {
            client,
            table: table.to_string(),
            timeout: DEFAULT_TIMEOUT,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        }
    }

    /// The same store with another timeout for calls without a deadline (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> DynamoStore {
        self.timeout = timeout;
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing) and waits until it is active; false when it
    /// existed already.
    pub fn create_table(&self) -> Result<bool, DirectoryError> {
        let client = self.client.clone();
        let table = self.table.clone();
        // Creating a table takes seconds on AWS.
        let deadline = Instant::now() + Duration::from_secs(120).max(self.timeout);
        self.run("CreateTable", deadline, async move {
            let attr = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
            };
            let key = |name: &str, kind: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
            };
            let built = (|| {
                Ok::<_, aws_sdk_dynamodb::error::BuildError>((
                    attr("domain")?,
                    attr("alias")?,
                    key("domain", KeyType::Hash)?,
                    key("alias", KeyType::Range)?,
                ))
            })()
            .map_err(|e| DirectoryError::Invalid(format!("DynamoDB table {table}: {e}")))?;
            let created = client
                .create_table()
                .table_name(&table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(built.0)
                .attribute_definitions(built.1)
                .key_schema(built.2)
                .key_schema(built.3)
                .send()
                .await;
            let created = match created {
                Ok(_) => true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) =>
                {
                    false
                }
                Err(e) => return Err(sdk_error(&table, "CreateTable", &e)),
            };
            loop {
                let described = client
                    .describe_table()
                    .table_name(&table)
                    .send()
                    .await
                    .map_err(|e| sdk_error(&table, "DescribeTable", &e))?;
                let status = described.table().and_then(|t| t.table_status());
                if status == Some(&TableStatus::Active) {
                    return Ok(created);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// Runs `fut` on the store's runtime and waits for it until `deadline`.
    fn run<T, F>(&self, op: &str, deadline: Instant, fut: F) -> Result<T, DirectoryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, DirectoryError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let task = self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(DirectoryError::Unavailable(format!(
                    "DynamoDB table {}: {op} timed out after {} ms",
                    self.table,
                    wait.as_millis()
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(DirectoryError::Unavailable(format!(
                "DynamoDB table {}: {op} was cancelled (the client is shutting down)",
                self.table
            ))),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn get_item(&self, key: Item, deadline: Instant) -> Result<Option<Item>, DirectoryError> {
        let client = self.client.clone();
        let table = self.table.clone();
        self.run("GetItem", deadline, async move {
            let out = client
                .get_item()
                .table_name(&table)
                .set_key(Some(key))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_error(&table, "GetItem", &e))?;
            Ok(out.item)
        })
    }

    /// Every item of one partition (a domain's aliases, or the sender lists).
    fn partition(&self, domain: &str) -> Result<Vec<Item>, DirectoryError> {
        let client = self.client.clone();
        let table = self.table.clone();
        let domain = domain.to_string();
        self.run("Query", self.deadline(), async move {
            let mut items = Vec::new();
            let mut start = None;
            loop {
                let page = client
                    .query()
                    .table_name(&table)
                    .key_condition_expression("#d = :d")
                    .expression_attribute_names("#d", "domain")
                    .expression_attribute_values(":d", s(&domain))
                    .consistent_read(true)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| sdk_error(&table, "Query", &e))?;
                start = page.last_evaluated_key.clone();
                items.extend(page.items.unwrap_or_default());
                if start.is_none() {
                    return Ok(items);
                }
            }
        })
    }

    /// The entry and list of a sender item; an item without a valid `list` is an error that
    /// names it.
    fn sender_list_of(&self, item: &Item) -> Result<(String, SenderList), DirectoryError> {
        let entry = match item.get("alias") {
            Some(AttributeValue::S(entry)) => entry.clone(),
            _ => String::new(),
        };
        let list = match item.get("list") {
            Some(AttributeValue::S(list)) => list.parse().ok(),
            _ => None,
        };
        list.map(|l| (entry.clone(), l)).ok_or_else(|| {
            DirectoryError::Invalid(format!(
                "DynamoDB table {}: sender item `{entry}` needs `list` = \"allow\" or \"block\" (S): fix or remove the item",
                self.table
            ))
        })
    }

    /// Puts or deletes one item, returning the old one.
    fn replace_item(&self, item: Option<Item>, key: Item) -> Result<Option<Item>, DirectoryError> {
        let client = self.client.clone();
        let table = self.table.clone();
        let op = if item.is_some() {
            "PutItem"
        } else {
            "DeleteItem"
        };
        self.run(op, self.deadline(), async move {
            let old = match item {
                Some(item) => {
                    client
                        .put_item()
                        .table_name(&table)
                        .set_item(Some(item))
                        .return_values(ReturnValue::AllOld)
                        .send()
                        .await
                        .map_err(|e| sdk_error(&table, "PutItem", &e))?
                        .attributes
                }
                None => {
                    client
                        .delete_item()
                        .table_name(&table)
                        .set_key(Some(key))
                        .return_values(ReturnValue::AllOld)
                        .send()
                        .await
                        .map_err(|e| sdk_error(&table, "DeleteItem", &e))?
                        .attributes
                }
            };
            Ok(old.filter(|a| !a.is_empty()))
        })
    }

    fn put_item(&self, item: Item) -> Result<(), DirectoryError> {
        let client = self.client.clone();
        let table = self.table.clone();
        self.run("PutItem", self.deadline(), async move {
            client
                .put_item()
                .table_name(&table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| sdk_error(&table, "PutItem", &e))?;
            Ok(())
        })
    }
}

fn refuse_address(address: &str) -> DirectoryError {
    DirectoryError::Invalid(format!(
        "`{address}` cannot be an alias: use local@domain (or *@domain)"
    ))
}

impl AliasStore for DynamoStore {
    fn get(&self, address: &str) -> Result<Option<AliasRecord>, DirectoryError> {
        self.get_before(address, self.deadline())
    }

    fn get_before(
        &self,
        address: &str,
        deadline: Instant,
    ) -> Result<Option<AliasRecord>, DirectoryError> {
        let Some(key) = address_key(address) else {
            return Ok(None);
        };
        match self.get_item(key, deadline)? {
            Some(item) => record_of(&self.table, &item).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self, domain: &str) -> Result<Vec<AliasRecord>, DirectoryError> {
        if domain.starts_with('#') {
            return Ok(Vec::new());
        }
        let items = self.partition(domain)?;
        let mut records = items
            .iter()
            .map(|item| record_of(&self.table, item))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(records)
    }

    fn put(&self, record: &AliasRecord) -> Result<(), DirectoryError> {
        let item = item_of(record).ok_or_else(|| refuse_address(&record.address))?;
        self.put_item(item)
    }

    fn remove(&self, address: &str) -> Result<bool, DirectoryError> {
        let Some(key) = address_key(address) else {
            return Ok(false);
        };
        let client = self.client.clone();
        let table = self.table.clone();
        self.run("DeleteItem", self.deadline(), async move {
            let out = client
                .delete_item()
                .table_name(&table)
                .set_key(Some(key))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| sdk_error(&table, "DeleteItem", &e))?;
            Ok(out.attributes.is_some_and(|a| !a.is_empty()))
        })
    }

    fn settings(&self) -> Result<DirectorySettings, DirectoryError> {
        let Some(item) = self.get_item(key(SETTINGS_DOMAIN, SETTINGS_ALIAS), self.deadline())?
        else {
            return Ok(DirectorySettings::default());
        };
        let field = |name: &str| {
            match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(v) => strings(v).ok_or_else(|| {
                DirectoryError::Invalid(format!(
                    "DynamoDB table {}: the settings item's `{name}` must be a list of strings (L of S): fix the item",
                    self.table
                ))
            }),
        }
        };
        Ok(DirectorySettings {
            domains: field("domains")?,
            destinations: field("destinations")?,
        }
        .normalized())
    }

    fn sender_before(
        &self,
        entry: &str,
        deadline: Instant,
    ) -> Result<Option<SenderList>, DirectoryError> {
        match self.get_item(key(SENDERS_DOMAIN, entry), deadline)? {
            Some(item) => self.sender_list_of(&item).map(|(_, list)| Some(list)),
            None => Ok(None),
        }
    }

    fn senders(&self) -> Result<Vec<(String, SenderList)>, DirectoryError> {
        let mut entries = self
            .partition(SENDERS_DOMAIN)?
            .iter()
            .map(|item| self.sender_list_of(item))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort();
        Ok(entries)
    }

    fn put_sender(
        &self,
        entry: &str,
        list: SenderList,
    ) -> Result<Option<SenderList>, DirectoryError> {
        let mut item = key(SENDERS_DOMAIN, entry);
        item.insert("list".into(), s(list.as_str()));
        match self.replace_item(Some(item), key(SENDERS_DOMAIN, entry))? {
            Some(old) => self.sender_list_of(&old).map(|(_, l)| Some(l)),
            None => Ok(None),
        }
    }

    fn remove_sender(&self, entry: &str) -> Result<Option<SenderList>, DirectoryError> {
        match self.replace_item(None, key(SENDERS_DOMAIN, entry))? {
            Some(old) => self.sender_list_of(&old).map(|(_, l)| Some(l)),
            None => Ok(None),
        }
    }

    fn put_settings(&self, settings: &DirectorySettings) -> Result<(), DirectoryError> {
        let settings = settings.clone().normalized();
        let mut item = key(SETTINGS_DOMAIN, SETTINGS_ALIAS);
        item.insert("domains".into(), list(&settings.domains));
        item.insert("destinations".into(), list(&settings.destinations));
        self.put_item(item)
    }

    fn record_uses(&self, uses: &[(String, u64)], at: u64) -> Result<(), DirectoryError> {
        let updates: Vec<(Item, u64)> = uses
            .iter()
            .filter(|(_, count)| *count > 0)
            .filter_map(|(address, count)| Some((address_key(address)?, *count)))
            .collect();
        if updates.is_empty() {
            return Ok(());
        }
        let client = self.client.clone();
        let table = self.table.clone();
        self.run("UpdateItem", self.deadline(), async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (key, count) in updates {
                let client = client.clone();
                let table = table.clone();
                tasks.spawn(async move {
                    let out = client
                        .update_item()
                        .table_name(&table)
                        .set_key(Some(key))
                        .update_expression("ADD #u :n SET #l = :t")
                        // A removed alias is not brought back as an item holding only counts.
                        .condition_expression("attribute_exists(#a)")
                        .expression_attribute_names("#u", "uses")
                        .expression_attribute_names("#l", "last_used")
                        .expression_attribute_names("#a", "alias")
                        .expression_attribute_values(":n", n(count))
                        .expression_attribute_values(":t", n(at))
                        .send()
                        .await;
                    match out {
                        Ok(_) => Ok(()),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                        {
                            Ok(())
                        }
                        Err(e) => Err(sdk_error(&table, "UpdateItem", &e)),
                    }
                });
            }
            let mut first_error = None;
            while let Some(done) = tasks.join_next().await {
                let result = done.unwrap_or_else(|e| {
                    Err(DirectoryError::Unavailable(format!(
                        "DynamoDB table {table}: UpdateItem stopped: {e}"
                    )))
                });
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn records_and_items_convert_both_ways() {
        let mut record = AliasRecord::new("*@example.com", vec!["a@example.net".into()], 5);
        record.status = Status::Ignored;
        record.uses = 7;
        record.last_used = Some(9);
        let item = item_of(&record).unwrap();
        assert_eq!(item["alias"], s("*"));
        assert_eq!(item["domain"], s("example.com"));
        assert_eq!(record_of("t", &item).unwrap(), record);

        record.to.clear();
        let item = item_of(&record).unwrap();
        assert!(!item.contains_key("to"));
        assert_eq!(record_of("t", &item).unwrap(), record);
        assert!(item_of(&AliasRecord::new("x@#directory", vec![], 1)).is_none());
    }

    #[test]
    fn malformed_items_are_invalid_and_say_which() {
        let mut item = key("example.com", "info");
        item.insert("status".into(), s("on"));
        let err = record_of("aliases", &item).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DynamoDB table aliases: item info@example.com: unknown status `on`: use active, paused or ignored: fix the item"
        );
        let mut item = key("example.com", "info");
        item.insert("uses".into(), s("3"));
        assert!(matches!(
            record_of("aliases", &item),
            Err(DirectoryError::Invalid(_))
        ));
        // The minimal item a person types in the console: active, to itself.
        let item = key("example.com", "info");
        let record = record_of("aliases", &item).unwrap();
        assert_eq!((record.status, record.to.len()), (Status::Active, 0));
    }

    #[test]
    fn an_unreachable_endpoint_is_unavailable_within_the_deadline() {
        // Nothing listens on port 9 (discard) on a test machine.
        let store = DynamoStore::for_endpoint("http://127.0.0.1:9", "us-east-1", "aliases")
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = store.get("info@example.com").unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("DynamoDB table aliases: GetItem"),
            "{err}"
        );
        let err = store
            .get_before("info@example.com", Instant::now())
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[test]
    fn works_inside_another_runtime_and_drops_there() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        outer.block_on(async {
            let store = DynamoStore::for_endpoint("http://127.0.0.1:9", "us-east-1", "aliases")
                .unwrap()
                .with_timeout(Duration::from_millis(200));
            assert!(store.get("info@example.com").is_err());
            drop(store);
        });
    }
}
