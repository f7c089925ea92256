//! The contract every [`Engine`] backend keeps, as one suite each backend's tests run: the
//! same calls, the same answers (the idea of tikv's `engine_traits` tests).

use std::ops::Bound;

use super::engine::{Batch, Engine};

fn keys(entries: super::engine::Entries<'_>) -> Vec<Vec<u8>> {
    entries.map(|e| e.expect("entry").0).collect()
}

/// Runs the whole suite; `fresh` makes a new, empty engine each time it is called.
pub fn run<E: Engine>(fresh: &dyn Fn() -> E) {
    single_writes(&fresh());
    compare_and_swap(&fresh());
    batches(&fresh());
    ranges(&fresh());
    long_walks(&fresh());
    keyspaces(&fresh());
    ids(&fresh());
}

fn single_writes(engine: &impl Engine) {
    let t = engine.open("t").unwrap();
    assert!(t.is_empty());
    assert_eq!(t.get(b"a").unwrap(), None);
    assert_eq!(t.insert(b"a", b"1").unwrap(), None);
    assert_eq!(t.insert(b"a", b"2").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert!(t.contains_key(b"a").unwrap());
    assert_eq!(t.insert(b"", b"empty key").unwrap(), None);
    assert_eq!(t.insert(b"b", b"").unwrap(), None);
    assert_eq!(
        t.get(b"b").unwrap(),
        Some(Vec::new()),
        "an empty value is a value"
    );
    assert_eq!(t.len(), 3);
    assert_eq!(t.remove(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(t.remove(b"a").unwrap(), None);
    assert!(!t.contains_key(b"a").unwrap());
    t.clear().unwrap();
    assert!(t.is_empty());
    assert_eq!(keys(t.iter()), Vec::<Vec<u8>>::new());
    t.flush().unwrap();
}

fn compare_and_swap(engine: &impl Engine) {
    let t = engine.open("cas").unwrap();
    assert!(
        t.compare_and_swap(b"k", None, Some(b"1")).unwrap(),
        "absent -> set"
    );
    assert!(
        !t.compare_and_swap(b"k", None, Some(b"2")).unwrap(),
        "present now"
    );
    assert!(!t.compare_and_swap(b"k", Some(b"0"), Some(b"2")).unwrap());
    assert_eq!(
        t.get(b"k").unwrap(),
        Some(b"1".to_vec()),
        "a failed swap writes nothing"
    );
    assert!(t.compare_and_swap(b"k", Some(b"1"), Some(b"2")).unwrap());
    assert!(
        t.compare_and_swap(b"k", Some(b"2"), None).unwrap(),
        "swap to removal"
    );
    assert_eq!(t.get(b"k").unwrap(), None);
}

fn batches(engine: &impl Engine) {
    let t = engine.open("batch").unwrap();
    t.insert(b"gone", b"x").unwrap();
    let mut batch = Batch::default();
    assert!(batch.is_empty());
    batch.insert(b"a", b"1");
    batch.insert(b"b", b"1");
    batch.insert(b"a", b"2");
    batch.remove(b"gone");
    batch.remove(b"never-there");
    t.apply(batch).unwrap();
    assert_eq!(
        t.get(b"a").unwrap(),
        Some(b"2".to_vec()),
        "the later write wins"
    );
    assert_eq!(t.get(b"b").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"gone").unwrap(), None);
    assert_eq!(t.len(), 2);
    t.apply(Batch::default()).unwrap();
    assert_eq!(t.len(), 2);
}

fn ranges(engine: &impl Engine) {
    let t = engine.open("ranges").unwrap();
    for k in [
        &b"a"[..],
        b"ab",
        b"abc",
        b"ac",
        b"b",
        b"a\xff",
        b"a\xff\xff",
        b"\xff",
    ] {
        t.insert(k, k).unwrap();
    }
    let all = keys(t.iter());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "iteration is in key order");
    assert_eq!(all.len(), 8);
    assert_eq!(
        keys(t.scan_prefix(b"ab")),
        [b"ab".to_vec(), b"abc".to_vec()]
    );
    assert_eq!(
        keys(t.scan_prefix(b"a\xff")),
        [b"a\xff".to_vec(), b"a\xff\xff".to_vec()],
        "a prefix ending in 0xff"
    );
    assert_eq!(keys(t.scan_prefix(b"\xff")), [b"\xff".to_vec()]);
    assert_eq!(keys(t.scan_prefix(b"")).len(), 8);
    assert_eq!(keys(t.scan_prefix(b"zz")), Vec::<Vec<u8>>::new());
    assert_eq!(
        keys(t.range(Bound::Excluded(b"ab"), Bound::Included(b"ac"), false)),
        [b"abc".to_vec(), b"ac".to_vec()]
    );
    assert_eq!(
        keys(t.range(Bound::Included(b"ab"), Bound::Excluded(b"ac"), true)),
        [b"abc".to_vec(), b"ab".to_vec()],
        "reverse order"
    );
    assert_eq!(keys(t.range_from(b"b")), [b"b".to_vec(), b"\xff".to_vec()]);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(
        keys(t.range(Bound::Unbounded, Bound::Unbounded, true)),
        reversed
    );
    // Ranges with no room in them are empty, never a panic.
    assert_eq!(
        keys(t.range(Bound::Included(b"b"), Bound::Included(b"a"), false)),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        keys(t.range(Bound::Excluded(b"b"), Bound::Excluded(b"b"), true)),
        Vec::<Vec<u8>>::new()
    );
    let values: Vec<Vec<u8>> = t.scan_prefix(b"ac").map(|e| e.unwrap().1).collect();
    assert_eq!(values, [b"ac".to_vec()], "entries carry their values");
}

fn long_walks(engine: &impl Engine) {
    let t = engine.open("long").unwrap();
    let n = 1_000u32;
    for i in 0..n {
        t.insert(&i.to_be_bytes(), &i.to_le_bytes()).unwrap();
    }
    let forward = keys(t.iter());
    assert_eq!(forward.len(), n as usize);
    assert!(forward.windows(2).all(|w| w[0] < w[1]));
    let backward = keys(t.range(Bound::Unbounded, Bound::Unbounded, true));
    assert_eq!(backward.len(), n as usize);
    assert!(backward.windows(2).all(|w| w[0] > w[1]));
    // Writing while walking neither deadlocks nor fails the walk.
    let mut walked = 0;
    for (i, entry) in t.iter().enumerate() {
        let (key, _) = entry.unwrap();
        if i % 100 == 0 {
            t.remove(&key).unwrap();
            t.insert(&[key.as_slice(), b"+"].concat(), b"new").unwrap();
        }
        walked += 1;
        if walked > 3 * n {
            panic!("a walk that writes never ends");
        }
    }
    assert!(walked >= n - 10, "walked {walked}");
    // A walk taken in part stops where it was told to.
    assert_eq!(t.range_from(&500u32.to_be_bytes()).take(3).count(), 3);
}

fn keyspaces(engine: &impl Engine) {
    let a = engine.open("space-a").unwrap();
    let b = engine.open("space-b").unwrap();
    a.insert(b"k", b"a").unwrap();
    b.insert(b"k", b"b").unwrap();
    assert_eq!(
        a.get(b"k").unwrap(),
        Some(b"a".to_vec()),
        "keyspaces are apart"
    );
    let again = engine.open("space-a").unwrap();
    assert_eq!(
        again.get(b"k").unwrap(),
        Some(b"a".to_vec()),
        "one name, one keyspace"
    );
    let names = engine.keyspace_names().unwrap();
    assert!(names.contains(&"space-a".to_string()), "{names:?}");
    assert!(names.contains(&"space-b".to_string()), "{names:?}");
    assert!(engine.drop_keyspace("space-b").unwrap());
    assert!(!engine.drop_keyspace("space-b").unwrap());
    assert!(
        !engine
            .keyspace_names()
            .unwrap()
            .contains(&"space-b".to_string())
    );
    assert!(
        engine.open("space-b").unwrap().is_empty(),
        "dropped means empty"
    );
    engine.flush().unwrap();
}

fn ids(engine: &impl Engine) {
    let mut last = engine.generate_id().unwrap();
    for _ in 0..100 {
        let next = engine.generate_id().unwrap();
        assert!(next > last, "ids increase: {last} then {next}");
        last = next;
    }
}

/// What was flushed is there when `open` is called again on the same place (for a backend
/// in memory: the same engine), and ids go on increasing.
pub fn durability<E: Engine>(open: &dyn Fn() -> E) {
    let id = {
        let engine = open();
        let t = engine.open("durable").unwrap();
        t.insert(b"k", b"v").unwrap();
        let mut batch = Batch::default();
        batch.insert(b"b1", b"1");
        batch.insert(b"b2", b"2");
        t.apply(batch).unwrap();
        let id = engine.generate_id().unwrap();
        engine.flush().unwrap();
        id
    };
    let engine = open();
    let t = engine.open("durable").unwrap();
    assert_eq!(t.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(t.len(), 3);
    assert!(
        engine.generate_id().unwrap() > id,
        "ids go on after a reopen"
    );
}
