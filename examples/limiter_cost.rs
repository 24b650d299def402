//! Instructions per limiter check, independent of other load on the machine: runs N checks
//! (and the RateLimit fields of each) under a rate plan, so that
//! `valgrind --tool=callgrind` of N and of 0 differ by N checks.
//!
//! `valgrind --tool=callgrind target/release/examples/limiter_cost MODE N`, MODE = `one`
//! (one consumer), `many` (10,000 in rotation), `quota` (10,000, with a quota too).
#![allow(clippy::unwrap_used)]

use authgate::config::Config;
use authgate::limits::{Consumer, Limits, Now};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("one", String::as_str);
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n[state]\ndata_dir = \"{}\"\n[plans.p]\nrate = \"1000000000/s\"\n{}\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n",
        dir.path().display(),
        if mode == "quota" { "quota = \"1000000000000/month\"" } else { "" }
    );
    let config = Config::parse(&toml, &dir.path().join("gateway.toml")).unwrap();
    let limits = Limits::new(&config, None).unwrap();
    let plan = limits.plan("p").unwrap().clone();
    let ids: Vec<String> = (0..10_000).map(|i| format!("consumer-{i:05}")).collect();
    // Every consumer seen once first, so the measured checks find their cells.
    for id in &ids {
        limits
            .check(&Consumer::ApiKey(id), Some(&plan), None, 1, Now::current())
            .unwrap();
    }
    let mut bytes = 0;
    for i in 0..n {
        let id = if mode == "one" {
            &ids[0]
        } else {
            &ids[i % ids.len()]
        };
        let consumer = Consumer::ApiKey(id);
        let grant = limits
            .check(&consumer, Some(&plan), None, 1, Now::current())
            .unwrap();
        bytes += grant.headers().map_or(0, |(a, b)| a.len() + b.len());
    }
    println!("{n} checks, {bytes} header bytes");
}
