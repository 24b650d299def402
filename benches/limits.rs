//! The limiter's cost on the request path: one `Limits::check` (a plan's GCRA rate, never
//! refused) for one consumer and spread over 10,000, with a quota beside the rate, and the
//! RateLimit fields the response carries.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

use authgate::config::Config;
use authgate::limits::{Consumer, Limits, Now};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn limits(dir: &Path) -> Limits {
    let toml = format!(
        r#"[server]
http = "127.0.0.1:0"

[state]
data_dir = "{}"

[plans.gold]
rate = "100000000/s"

[plans.metered]
rate = "100000000/s"
quota = "1000000000000/month"

[[routes]]
id = "r"
upstream = "builtin:echo"
public = true
"#,
        dir.display()
    );
    let config = Config::parse(&toml, &dir.join("gateway.toml")).unwrap();
    Limits::new(&config, None).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let limits = limits(dir.path());
    let gold = limits.plan("gold").unwrap().clone();
    let metered = limits.plan("metered").unwrap().clone();
    let ids: Vec<String> = (0..10_000).map(|i| format!("consumer-{i}")).collect();

    let cases = [
        ("limits: rate, one consumer", &gold, 1, false),
        ("limits: rate, 10,000 consumers", &gold, ids.len(), false),
        (
            "limits: rate + quota, 10,000 consumers",
            &metered,
            ids.len(),
            false,
        ),
        (
            "limits: rate + RateLimit fields, one consumer",
            &gold,
            1,
            true,
        ),
    ];
    for (name, plan, consumers, fields) in cases {
        c.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % consumers;
                let consumer = Consumer::ApiKey(&ids[i]);
                let grant = limits
                    .check(black_box(&consumer), Some(plan), None, 1, Now::current())
                    .unwrap();
                if fields {
                    black_box(grant.headers());
                }
                black_box(&grant);
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
