//! Memory of the limiter's state for a million distinct consumers: each makes one request under
//! a rate plan (and, with `quota`, under a plan with a quota too); prints the resident memory
//! the state added.
//!
//! `cargo run --release --example limiter_memory [quota]`
#![allow(clippy::unwrap_used)]

use authgate::config::Config;
use authgate::limits::{Consumer, Limits, Now};

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let with_quota = std::env::args().any(|a| a == "quota");
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n[state]\ndata_dir = \"{}\"\n[plans.free]\nrate = \"10/s\"\n{}\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n",
        dir.path().display(),
        if with_quota { "quota = \"1000/day\"" } else { "" }
    );
    let config = Config::parse(&toml, &dir.path().join("gateway.toml")).unwrap();
    let limits = Limits::new(&config, None).unwrap();
    let plan = limits.plan("free").unwrap().clone();
    // Ids built up front, so only the limiter's state is measured.
    let ids: Vec<String> = (0..1_000_000).map(|i| format!("consumer-{i:07}")).collect();
    let before = resident_kib();
    let now = Now::current();
    for id in &ids {
        let consumer = Consumer::ApiKey(id);
        limits.check(&consumer, Some(&plan), None, 1, now).unwrap();
    }
    let after = resident_kib();
    let (rates, quotas) = limits.held();
    println!(
        "1,000,000 consumers{}: {rates} rate cells, {quotas} quota counters, {:.1} MiB resident ({:.0} bytes per consumer)",
        if with_quota { " with a quota" } else { "" },
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / 1e6
    );
}
