//! The DynamoDB directory against a real emulator (moto): the table schema, every store
//! operation, and lookups through the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_directory::{
    AliasRecord, AliasStore, DirectoryError, DirectorySettings, DynamoStore, SenderList, Status,
    Tables,
};
use sluice_engine::LookupTables;
use sluice_tests::Moto;

fn store(moto: &Moto, table: &str) -> DynamoStore {
    let store = DynamoStore::for_endpoint(&moto.endpoint, "us-east-1", table).unwrap();
    assert!(store.create_table().unwrap(), "a new table");
    assert!(!store.create_table().unwrap(), "the second time it exists");
    store
}

#[test]
fn a_table_holds_aliases_settings_and_use_counts() {
    let moto = Moto::start();
    let store = store(&moto, "aliases");

    assert_eq!(store.settings().unwrap(), DirectorySettings::default());
    let settings = DirectorySettings {
        domains: vec!["example.com".into(), "Example.ORG".into()],
        destinations: vec!["@example.net".into()],
    };
    store.put_settings(&settings).unwrap();
    assert_eq!(store.settings().unwrap(), settings.clone().normalized());

    let info = AliasRecord::new("info@example.com", vec!["a@example.net".into()], 100);
    let mut shop = AliasRecord::new("shop-k3x9@example.com", vec![], 101);
    shop.status = Status::Paused;
    let catchall = AliasRecord::new("*@example.com", vec!["b@example.net".into()], 102);
    let other = AliasRecord::new("info@example.org", vec![], 103);
    for r in [&info, &shop, &catchall, &other] {
        store.put(r).unwrap();
    }
    assert_eq!(store.get("info@example.com").unwrap(), Some(info.clone()));
    assert_eq!(store.get("nobody@example.com").unwrap(), None);
    assert_eq!(
        store.list("example.com").unwrap(),
        vec![catchall.clone(), info.clone(), shop.clone()]
    );
    // The settings item is not an alias of any domain.
    assert!(store.list("#directory").unwrap().is_empty());

    store
        .record_uses(
            &[
                ("info@example.com".into(), 3),
                ("gone@example.com".into(), 1),
            ],
            500,
        )
        .unwrap();
    store
        .record_uses(&[("info@example.com".into(), 2)], 600)
        .unwrap();
    let used = store.get("info@example.com").unwrap().unwrap();
    assert_eq!((used.uses, used.last_used), (5, Some(600)));
    // A use counted for an alias that does not exist (removed meanwhile) does not create it.
    assert_eq!(store.get("gone@example.com").unwrap(), None);

    assert!(store.remove("shop-k3x9@example.com").unwrap());
    assert!(!store.remove("shop-k3x9@example.com").unwrap());
    store
        .record_uses(&[("shop-k3x9@example.com".into(), 1)], 700)
        .unwrap();
    assert_eq!(store.get("shop-k3x9@example.com").unwrap(), None);
    assert_eq!(store.list("example.com").unwrap().len(), 2);
}

#[test]
fn sender_lists_live_in_their_own_partition_of_the_alias_table() {
    let moto = Moto::start();
    let store = Arc::new(store(&moto, "senders"));
    store
        .put(&AliasRecord::new("info@spam.example", vec![], 1))
        .unwrap();
    assert_eq!(
        store.put_sender("spam.example", SenderList::Block).unwrap(),
        None
    );
    assert_eq!(
        store
            .put_sender(".spam.example", SenderList::Block)
            .unwrap(),
        None
    );
    assert_eq!(
        store.put_sender("spam.example", SenderList::Allow).unwrap(),
        Some(SenderList::Block)
    );
    assert_eq!(
        store.senders().unwrap(),
        [
            (".spam.example".to_string(), SenderList::Block),
            ("spam.example".to_string(), SenderList::Allow),
        ]
    );
    // Aliases and lists do not see each other.
    assert_eq!(store.list("spam.example").unwrap().len(), 1);
    assert!(store.list("#senders").unwrap().is_empty());

    // Through the cache with `sender:` keys, as the sender-lists rule asks.
    let tables = Tables::new().with("aliases", store.clone(), Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(5);
    let get = |key: &str| tables.get("aliases", key, deadline).unwrap();
    assert_eq!(
        get("sender:.Spam.example").as_deref(),
        Some(r#"{"list":"block"}"#)
    );
    assert_eq!(
        get("sender:spam.example").as_deref(),
        Some(r#"{"list":"allow"}"#)
    );
    assert_eq!(get("sender:other.example"), None);

    assert_eq!(
        store.remove_sender("spam.example").unwrap(),
        Some(SenderList::Allow)
    );
    assert_eq!(store.remove_sender("spam.example").unwrap(), None);
    assert_eq!(store.senders().unwrap().len(), 1);
}

#[test]
fn list_reads_every_page() {
    let moto = Moto::start();
    let store = store(&moto, "many");
    // Items large enough that a query needs more than one 1 MB page.
    let to: Vec<String> = (0..40)
        .map(|i| format!("{}{i}@example.net", "x".repeat(200)))
        .collect();
    for i in 0..150 {
        store
            .put(&AliasRecord::new(
                format!("a{i:03}@example.com"),
                to.clone(),
                1,
            ))
            .unwrap();
    }
    let all = store.list("example.com").unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(all[149].address, "a149@example.com");
}

#[test]
fn rules_look_aliases_up_through_the_cache() {
    let moto = Moto::start();
    let store: Arc<DynamoStore> = Arc::new(store(&moto, "lookups"));
    store
        .put(&AliasRecord::new(
            "info@example.com",
            vec!["a@example.net".into()],
            1,
        ))
        .unwrap();
    let tables = Tables::new().with("aliases", store.clone(), Duration::from_secs(60));
    let deadline = || Instant::now() + Duration::from_secs(5);
    assert_eq!(
        tables
            .get("aliases", "INFO@example.com", deadline())
            .unwrap()
            .as_deref(),
        Some(r#"{"status":"active","to":["a@example.net"]}"#)
    );
    assert_eq!(
        tables.get("aliases", "*@example.com", deadline()).unwrap(),
        None
    );

    // Cached: an edit (and a miss turned hit) shows only after the TTL or a clear.
    store.remove("info@example.com").unwrap();
    store
        .put(&AliasRecord::new("*@example.com", vec![], 2))
        .unwrap();
    assert!(tables
        .get("aliases", "info@example.com", deadline())
        .unwrap()
        .is_some());
    assert!(tables
        .get("aliases", "*@example.com", deadline())
        .unwrap()
        .is_none());
    tables.clear_cache();
    assert!(tables
        .get("aliases", "info@example.com", deadline())
        .unwrap()
        .is_none());
    assert!(tables
        .get("aliases", "*@example.com", deadline())
        .unwrap()
        .is_some());

    // Use counts go to the table in one flush.
    tables.count_use("aliases", "*@example.com");
    tables.count_use("aliases", "*@example.com");
    assert_eq!(tables.flush_uses().unwrap(), 2);
    assert_eq!(store.get("*@example.com").unwrap().unwrap().uses, 2);
}

#[test]
fn a_missing_table_or_a_stopped_server_is_a_temporary_failure() {
    let mut moto = Moto::start();
    let missing = DynamoStore::for_endpoint(&moto.endpoint, "us-east-1", "nope").unwrap();
    let err = missing.get("info@example.com").unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("DynamoDB table nope: GetItem failed: "),
        "{message}"
    );
    assert!(
        message.ends_with("(does the table exist? `sluice alias init` creates it)"),
        "{message}"
    );
    assert!(!message.contains('\n'));

    let store: Arc<dyn AliasStore> =
        Arc::new(store(&moto, "stopping").with_timeout(Duration::from_secs(2)));
    let tables = Tables::new().with("aliases", store, Duration::from_secs(60));
    moto.stop();
    let started = Instant::now();
    let err = tables
        .get(
            "aliases",
            "info@example.com",
            Instant::now() + Duration::from_millis(500),
        )
        .unwrap_err();
    assert!(err.temporary, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    tables.count_use("aliases", "info@example.com");
    assert!(tables.flush_uses().is_err());
    assert_eq!(tables.pending_uses(), 1);
}
