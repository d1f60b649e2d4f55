//! The directories a process serves to rules, cached, and the use counts it writes back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_engine::{LookupError, LookupTables};

use crate::{now_epoch, AliasStore, DirectoryError, DirectorySection};

/// How long an answer (a record, or its absence) is trusted when the config does not say
/// (`cache_ttl_s`): an edit reaches rules within a minute, and a busy alias costs one
/// backend read a minute per process.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Answers cached per table, at most: a flood of mail to random addresses must not grow the
/// process without bound.
pub const MAX_CACHED: usize = 100_000;

/// The directories a process serves to rules (`[directory.NAME]` sections), each behind a
/// per-process cache.
///
/// Lookups are keyed by address (`local@domain`, or `*@domain` for the catch-all; compared
/// in lower case) and answer JSON `{"status": "active", "to": ["a@example.net"]}` (`to`
/// empty: deliver to the alias itself); keys `sender:ENTRY` ask the directory's sender lists
/// and answer `{"list": "block"}` ([`crate::SenderList`]). Records and misses are cached for the table's TTL;
/// failures are not. Safe to share between threads: no lock is held while a backend is
/// asked.
///
/// Use counts: the host calls [`count_use`](Tables::count_use) for each alias a delivered
/// message went through, and [`flush_uses`](Tables::flush_uses) after a batch of deliveries
/// and periodically (and at shutdown), which writes them in one batch per table.
#[derive(Default)]
pub struct Tables {
    tables: BTreeMap<String, Table>,
}

struct Table {
    store: Arc<dyn AliasStore>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    /// Uses counted but not written yet, by address.
    uses: Mutex<HashMap<String, u64>>,
}

struct Cached {
    value: Option<String>,
    expires: Instant,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tables {
    /// No tables: every lookup fails as "no directory named ...".
    pub fn new() -> Tables {
        Tables::default()
    }

    /// Opens every `[directory.NAME]` section ([`crate::open`]); files are relative to
    /// `base_dir`.
    pub fn open(
        sections: &BTreeMap<String, DirectorySection>,
        base_dir: &Path,
    ) -> Result<Tables, DirectoryError> {
        let mut tables = Tables::new();
        for (name, section) in sections {
            tables.insert(
                name.clone(),
                crate::open(name, section, base_dir)?,
                section.ttl(),
            );
        }
        Ok(tables)
    }

    /// Adds (or replaces) the table `name`, its answers cached for `ttl`.
    pub fn insert(&mut self, name: impl Into<String>, store: Arc<dyn AliasStore>, ttl: Duration) {
        self.tables.insert(
            name.into(),
            Table {
                store,
                ttl,
                cache: Mutex::new(HashMap::new()),
                uses: Mutex::new(HashMap::new()),
            },
        );
    }

    /// [`insert`](Tables::insert), for building in one expression.
    pub fn with(
        mut self,
        name: impl Into<String>,
        store: Arc<dyn AliasStore>,
        ttl: Duration,
    ) -> Tables {
        self.insert(name, store, ttl);
        self
    }

    /// The table names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// The store behind table `name`.
    pub fn store(&self, name: &str) -> Option<&Arc<dyn AliasStore>> {
        self.tables.get(name).map(|t| &t.store)
    }

    /// Forgets every cached answer (after an edit this process made itself, say).
    pub fn clear_cache(&self) {
        for table in self.tables.values() {
            lock(&table.cache).clear();
        }
    }

    /// Counts one delivery through `address` (as looked up) of `table`; false for an unknown
    /// table. Kept in memory until [`flush_uses`](Tables::flush_uses).
    pub fn count_use(&self, table: &str, address: &str) -> bool {
        let Some(table) = self.tables.get(table) else {
            return false;
        };
        *lock(&table.uses)
            .entry(address.trim().to_lowercase())
            .or_insert(0) += 1;
        true
    }

    /// Uses counted and not written yet, over all tables.
    pub fn pending_uses(&self) -> u64 {
        self.tables
            .values()
            .map(|t| lock(&t.uses).values().sum::<u64>())
            .sum()
    }

    /// Writes the counted uses, one `record_uses` batch per table, and returns how many were
    /// written. A table whose write fails keeps its counts for the next flush (a failure
    /// part way through a batch may then count some uses twice: the counts are for
    /// housekeeping, such as finding aliases nobody uses, not for billing).
    pub fn flush_uses(&self) -> Result<u64, DirectoryError> {
        let at = now_epoch();
        let mut written = 0;
        let mut failures: Vec<DirectoryError> = Vec::new();
        for (name, table) in &self.tables {
            let pending = std::mem::take(&mut *lock(&table.uses));
            if pending.is_empty() {
                continue;
            }
            let mut batch: Vec<(String, u64)> = pending.into_iter().collect();
            batch.sort();
            match table.store.record_uses(&batch, at) {
                Ok(()) => written += batch.iter().map(|(_, n)| n).sum::<u64>(),
                Err(e) => {
                    let mut uses = lock(&table.uses);
                    for (address, n) in batch {
                        *uses.entry(address).or_insert(0) += n;
                    }
                    failures.push(e.within(format_args!("directory \"{name}\": recording uses")));
                }
            }
        }
        match failures.len() {
            0 => Ok(written),
            1 => Err(failures.remove(0)),
            _ => Err(DirectoryError::Unavailable(
                failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    /// [`LookupTables::get`] with the time given, so tests need not sleep.
    fn lookup(
        &self,
        table_name: &str,
        key: &str,
        deadline: Instant,
        now: Instant,
    ) -> Result<Option<String>, LookupError> {
        let Some(table) = self.tables.get(table_name) else {
            return Err(LookupError::permanent(format!(
                "no directory named \"{table_name}\""
            )));
        };
        let sender = key.strip_prefix(crate::SENDER_KEY_PREFIX);
        let key = match sender {
            Some(entry) => crate::normalize_sender_entry(entry)
                .map(|entry| format!("{}{entry}", crate::SENDER_KEY_PREFIX)),
            None => crate::normalize_address(key),
        }
        .map_err(|e| {
            LookupError::permanent(format!(
                "directory \"{table_name}\": {e} (look up local@domain, *@domain for the catch-all, or sender:ENTRY for the sender lists)"
            ))
        })?;
        if let Some(hit) = lock(&table.cache).get(&key) {
            if hit.expires > now {
                return Ok(hit.value.clone());
            }
        }
        if now >= deadline {
            return Err(LookupError::temporary(format!(
                "directory \"{table_name}\": the step's deadline passed before the lookup of {key}"
            )));
        }
        let answer = match key.strip_prefix(crate::SENDER_KEY_PREFIX) {
            Some(entry) => table
                .store
                .sender_before(entry, deadline)
                .map(|list| list.map(|l| l.lookup_value())),
            None => table
                .store
                .get_before(&key, deadline)
                .map(|record| record.map(|r| r.lookup_value())),
        };
        match answer {
            Ok(value) => {
                table.remember(key, value.clone(), now);
                Ok(value)
            }
            Err(DirectoryError::Unavailable(e)) => Err(LookupError::temporary(format!(
                "directory \"{table_name}\": {e}"
            ))),
            Err(e) => Err(LookupError::permanent(format!(
                "directory \"{table_name}\": {e}"
            ))),
        }
    }
}

impl Table {
    fn remember(&self, key: String, value: Option<String>, now: Instant) {
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= MAX_CACHED {
                // Still full of live answers: drop a tenth, whichever the map yields first.
                let drop: Vec<String> = cache.keys().take(MAX_CACHED / 10).cloned().collect();
                for k in drop {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            key,
            Cached {
                value,
                expires: now + self.ttl,
            },
        );
    }
}

impl LookupTables for Tables {
    fn get(
        &self,
        table: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<String>, LookupError> {
        self.lookup(table, key, deadline, Instant::now())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AliasRecord, DirectorySettings, Status};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An in-memory store that counts reads and can be made to fail.
    #[derive(Default)]
    struct Fake {
        records: Mutex<BTreeMap<String, AliasRecord>>,
        reads: AtomicUsize,
        down: AtomicBool,
        invalid: AtomicBool,
        recorded: Mutex<Vec<(String, u64)>>,
    }

    impl Fake {
        fn with(records: &[AliasRecord]) -> Arc<Fake> {
            let fake = Fake::default();
            for r in records {
                lock(&fake.records).insert(r.address.clone(), r.clone());
            }
            Arc::new(fake)
        }

        fn check(&self) -> Result<(), DirectoryError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(DirectoryError::Unavailable("throttled".into()));
            }
            if self.invalid.load(Ordering::SeqCst) {
                return Err(DirectoryError::Invalid("item has no status".into()));
            }
            Ok(())
        }
    }

    impl AliasStore for Fake {
        fn get(&self, address: &str) -> Result<Option<AliasRecord>, DirectoryError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.check()?;
            Ok(lock(&self.records).get(address).cloned())
        }
        fn list(&self, _: &str) -> Result<Vec<AliasRecord>, DirectoryError> {
            Ok(lock(&self.records).values().cloned().collect())
        }
        fn put(&self, record: &AliasRecord) -> Result<(), DirectoryError> {
            lock(&self.records).insert(record.address.clone(), record.clone());
            Ok(())
        }
        fn remove(&self, address: &str) -> Result<bool, DirectoryError> {
            Ok(lock(&self.records).remove(address).is_some())
        }
        fn settings(&self) -> Result<DirectorySettings, DirectoryError> {
            Ok(DirectorySettings::default())
        }
        fn put_settings(&self, _: &DirectorySettings) -> Result<(), DirectoryError> {
            Ok(())
        }
        fn record_uses(&self, uses: &[(String, u64)], _at: u64) -> Result<(), DirectoryError> {
            self.check()?;
            lock(&self.recorded).extend(uses.iter().cloned());
            Ok(())
        }
    }

    fn info() -> AliasRecord {
        AliasRecord::new("info@example.com", vec!["alice@example.net".into()], 1)
    }

    fn tables(fake: &Arc<Fake>) -> Tables {
        Tables::new().with("aliases", fake.clone(), Duration::from_secs(60))
    }

    #[test]
    fn answers_json_and_caches_hits_and_misses_for_the_ttl() {
        let fake = Fake::with(&[info()]);
        let tables = tables(&fake);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(3600);
        let hit = tables
            .lookup("aliases", "Info@Example.COM", deadline, t0)
            .unwrap();
        assert_eq!(
            hit.as_deref(),
            Some(r#"{"status":"active","to":["alice@example.net"]}"#)
        );
        assert_eq!(
            tables
                .lookup("aliases", "nobody@example.com", deadline, t0)
                .unwrap(),
            None
        );
        assert_eq!(fake.reads.load(Ordering::SeqCst), 2);

        // Changed behind the cache: still the cached answers within the TTL...
        let mut paused = info();
        paused.status = Status::Paused;
        paused.to.clear();
        fake.put(&paused).unwrap();
        fake.put(&AliasRecord::new("nobody@example.com", vec![], 2))
            .unwrap();
        let later = t0 + Duration::from_secs(59);
        assert_eq!(
            tables
                .lookup("aliases", "info@example.com", deadline, later)
                .unwrap(),
            hit
        );
        assert_eq!(
            tables
                .lookup("aliases", "nobody@example.com", deadline, later)
                .unwrap(),
            None
        );
        assert_eq!(fake.reads.load(Ordering::SeqCst), 2);

        // ...and the new ones after it.
        let after = t0 + Duration::from_secs(61);
        assert_eq!(
            tables
                .lookup("aliases", "info@example.com", deadline, after)
                .unwrap()
                .as_deref(),
            Some(r#"{"status":"paused","to":[]}"#)
        );
        assert!(tables
            .lookup("aliases", "nobody@example.com", deadline, after)
            .unwrap()
            .is_some());
        assert_eq!(fake.reads.load(Ordering::SeqCst), 4);
        tables.clear_cache();
        tables
            .lookup("aliases", "info@example.com", deadline, after)
            .unwrap();
        assert_eq!(fake.reads.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn sender_keys_ask_the_sender_lists_of_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.toml");
        std::fs::write(
            &path,
            "[aliases]\n\"info@example.com\" = {}\n[senders]\nblock = [\"spam.example\", \".spam.example\"]\nallow = [\"ceo@spam.example\"]\n",
        )
        .unwrap();
        let store = Arc::new(crate::FileStore::open(&path).unwrap());
        let tables = Tables::new().with("aliases", store, Duration::from_secs(60));
        let now = Instant::now();
        let deadline = now + Duration::from_secs(5);
        let ask = |key: &str| tables.lookup("aliases", key, deadline, now);
        assert_eq!(
            ask("sender:Spam.Example").unwrap().as_deref(),
            Some(r#"{"list":"block"}"#)
        );
        assert_eq!(
            ask("sender:.spam.example").unwrap().as_deref(),
            Some(r#"{"list":"block"}"#)
        );
        assert_eq!(
            ask("sender:ceo@spam.example").unwrap().as_deref(),
            Some(r#"{"list":"allow"}"#)
        );
        assert_eq!(ask("sender:other.example").unwrap(), None);
        // The namespaces stay apart: an alias is not a sender entry and back.
        assert_eq!(ask("sender:info@example.com").unwrap(), None);
        assert!(ask("info@example.com").unwrap().unwrap().contains("active"));
        let err = ask("sender:*@spam.example").unwrap_err();
        assert!(!err.temporary && err.message.contains("pattern"), "{err}");
    }

    #[test]
    fn failures_are_temporary_or_permanent_and_never_cached() {
        let fake = Fake::with(&[info()]);
        let tables = tables(&fake);
        let now = Instant::now();
        let deadline = now + Duration::from_secs(5);
        fake.down.store(true, Ordering::SeqCst);
        let err = tables
            .lookup("aliases", "info@example.com", deadline, now)
            .unwrap_err();
        assert!(err.temporary);
        assert_eq!(err.message, "directory \"aliases\": throttled");
        fake.down.store(false, Ordering::SeqCst);
        fake.invalid.store(true, Ordering::SeqCst);
        let err = tables
            .lookup("aliases", "info@example.com", deadline, now)
            .unwrap_err();
        assert!(!err.temporary, "{err}");
        fake.invalid.store(false, Ordering::SeqCst);
        assert!(tables
            .lookup("aliases", "info@example.com", deadline, now)
            .unwrap()
            .is_some());
        assert_eq!(fake.reads.load(Ordering::SeqCst), 3);

        let err = tables
            .lookup("people", "info@example.com", deadline, now)
            .unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.temporary),
            ("no directory named \"people\"", false)
        );
        let err = tables.lookup("aliases", "info", deadline, now).unwrap_err();
        assert!(!err.temporary);
        assert!(err.message.contains("`info` is not an address"), "{err}");
        let err = tables
            .lookup("aliases", "other@example.com", now, now)
            .unwrap_err();
        assert!(err.temporary, "{err}");
        // A cached answer is still given once the deadline has passed.
        assert!(tables
            .lookup("aliases", "info@example.com", now, now)
            .unwrap()
            .is_some());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let fake = Fake::with(&[]);
        let tables = tables(&fake);
        let now = Instant::now();
        let table = &tables.tables["aliases"];
        for i in 0..MAX_CACHED + 5 {
            table.remember(format!("a{i}@example.com"), None, now);
        }
        let len = lock(&table.cache).len();
        assert!(len <= MAX_CACHED && len > MAX_CACHED / 2, "{len}");
        // Expired answers go first.
        let mut i = 0;
        while lock(&table.cache).len() < MAX_CACHED {
            table.remember(format!("b{i}@example.com"), None, now);
            i += 1;
        }
        table.remember(
            "fresh@example.com".into(),
            None,
            now + Duration::from_secs(120),
        );
        assert_eq!(lock(&table.cache).len(), 1);
    }

    #[test]
    fn use_counts_survive_a_failed_flush() {
        let fake = Fake::with(&[info()]);
        let tables = tables(&fake);
        assert!(tables.count_use("aliases", "info@example.com"));
        assert!(tables.count_use("aliases", "INFO@example.com"));
        assert!(tables.count_use("aliases", "*@example.com"));
        assert!(!tables.count_use("people", "info@example.com"));
        fake.down.store(true, Ordering::SeqCst);
        let err = tables.flush_uses().unwrap_err();
        assert!(matches!(err, DirectoryError::Unavailable(_)));
        assert_eq!(
            err.to_string(),
            "directory \"aliases\": recording uses: throttled"
        );
        assert!(tables.count_use("aliases", "info@example.com"));
        assert_eq!(tables.pending_uses(), 4);
        fake.down.store(false, Ordering::SeqCst);
        assert_eq!(tables.flush_uses().unwrap(), 4);
        assert_eq!(
            *lock(&fake.recorded),
            [
                ("*@example.com".to_string(), 1),
                ("info@example.com".to_string(), 3)
            ]
        );
        assert_eq!(tables.pending_uses(), 0);
        assert_eq!(tables.flush_uses().unwrap(), 0);
        assert_eq!(lock(&fake.recorded).len(), 2);
    }

    #[test]
    fn lookups_run_in_parallel() {
        let fake = Fake::with(&[info()]);
        let tables = Arc::new(tables(&fake));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let tables = tables.clone();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    for j in 0..200 {
                        let key = format!("u{}@example.com", (i * j) % 50);
                        tables.get("aliases", &key, deadline).unwrap();
                        tables.count_use("aliases", &key);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(tables.pending_uses(), 1600);
        assert!(fake.reads.load(Ordering::SeqCst) < 1600);
    }
}
