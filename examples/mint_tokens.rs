//! Prints N distinct tokens, one per line, minted with a configured issuer's signing key (the
//! same code as `authgate token`), for load tests that need many different valid tokens:
//! starting `authgate token` once per token costs a process start each.
//!
//! ```sh
//! cargo run --release --example mint_tokens -- gateway.toml ISSUER COUNT [TTL]
//! ```
//!
//! Token `i` has the subject `user-i`; all share the issuer's first audience and the TTL
//! (default "1h"). Signing is spread over the available cores.

use std::io::Write;
use std::process::ExitCode;

use authgate::config::Config;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(issuer), Some(count)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: mint_tokens CONFIG ISSUER COUNT [TTL]");
        return ExitCode::FAILURE;
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("mint_tokens: COUNT must be a whole number");
        return ExitCode::FAILURE;
    };
    let ttl = args.get(3).map_or("1h", String::as_str);
    let config = match Config::load(path.as_ref()) {
        Ok(config) => config,
        Err(errors) => {
            for diagnostic in &errors.diagnostics {
                eprintln!("{diagnostic}");
            }
            return ExitCode::FAILURE;
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // Each thread mints the indices i ≡ t (mod threads); the lines are written in index order.
    let minted: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let config = &config;
                scope.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| {
                            let subject = format!("user-{i}");
                            authgate::auth::mint::mint(
                                config,
                                issuer,
                                &subject,
                                None,
                                None,
                                ttl,
                                &[],
                            )
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let mut lists = Vec::with_capacity(threads);
    for list in minted {
        match list {
            Ok(list) => lists.push(list.into_iter()),
            Err(message) => {
                eprintln!("mint_tokens: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count {
        if let Some(token) = lists[i % threads].next() {
            if writeln!(out, "{token}").is_err() {
                return ExitCode::FAILURE;
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
