//! API keys at scale: loading a keys file of 1,000,000 entries, and checking a key against
//! that table (present and absent), which must not depend on the number of keys.
//!
//! ```sh
//! cargo bench --bench api_keys
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use authgate::auth::api_keys;
use criterion::{criterion_group, criterion_main, Criterion};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    let mut file = String::with_capacity(200 * 1_000_000);
    let mut present = String::new();
    for i in 0..1_000_000 {
        let (key, entry) = api_keys::new_entry(
            Some(&format!("key-{i}")),
            &format!("svc-{}", i % 1000),
            &["orders:read".into()],
            &[],
            None,
        )
        .unwrap();
        file.push_str(&entry);
        if i == 777_777 {
            present = key;
        }
    }
    std::fs::write(&path, &file).unwrap();
    drop(file);

    // Loading is measured a few times by hand: one load takes about a second.
    let mut loads = Vec::new();
    let mut table = None;
    for _ in 0..3 {
        // Dropping the previous million entries is not part of a load.
        drop(table.take());
        let started = Instant::now();
        table = Some(api_keys::load_file(&path, &[]).unwrap());
        loads.push(started.elapsed());
    }
    println!("load 1,000,000 keys: {loads:?}");
    let table = table.unwrap();
    assert_eq!(table.len(), 1_000_000);

    let absent = api_keys::generate().unwrap();
    let now = authgate::auth::unix_now();
    c.bench_function("api key check, 1M keys, present", |b| {
        b.iter(|| table.check(black_box(&present), now).unwrap())
    });
    c.bench_function("api key check, 1M keys, absent", |b| {
        b.iter(|| table.check(black_box(&absent), now).unwrap_err())
    });
    let small = api_keys::load_file(
        &{
            let small_path = dir.path().join("small.toml");
            let (key, entry) = api_keys::new_entry(Some("only"), "svc", &[], &[], None).unwrap();
            std::fs::write(&small_path, entry).unwrap();
            present = key;
            small_path
        },
        &[],
    )
    .unwrap();
    c.bench_function("api key check, 1 key, present", |b| {
        b.iter(|| small.check(black_box(&present), now).unwrap())
    });
}

criterion_group!(api_key_benches, benches);
criterion_main!(api_key_benches);
