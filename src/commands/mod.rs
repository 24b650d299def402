//! The subcommands that manage credentials: `keys new`, `clients add`, `users add`, and what
//! they share (how lists are typed, how a secret is written to a file).

pub mod clients;
pub mod keys;
pub mod users;

/// Scope and role lists as typed on a command line: `a,b`, `"a b"` and `--scopes a --scopes b`
/// all mean the two names `a` and `b` (a scope can never hold a space: RFC 6749 §3.3).
pub fn names(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| value.split(|c: char| c == ',' || c.is_ascii_whitespace()))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// `name = "value"` and a newline, the value quoted as TOML.
pub fn toml_line(name: &str, value: &str) -> String {
    format!("{name} = {}\n", toml::Value::String(value.to_string()))
}

/// Creates `path` (it must not exist) readable by its owner only, holding `secret`.
pub fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{secret}")
}

/// Hands out a new secret and its entry: the entry (which holds only a hash) on stdout, so that
/// `… >> FILE` appends exactly the entry; the secret once, on stderr or into `secret_out`.
/// `command` prefixes errors, `what` names the secret, `destination` the file the entry goes in.
pub fn hand_out(
    command: &str,
    what: &str,
    secret: &str,
    entry: &str,
    secret_out: Option<&std::path::Path>,
    destination: &str,
) -> std::process::ExitCode {
    match secret_out {
        Some(path) => {
            if let Err(error) = write_secret_file(path, secret) {
                eprintln!("authgate {command}: {}: {error}", path.display());
                return std::process::ExitCode::FAILURE;
            }
            eprintln!(
                "{what} is in {} (mode 0600). Add the entry (stdout) to {destination}.",
                path.display()
            );
        }
        None => eprintln!(
            "{what} is shown once; hand it over now. Add the entry (stdout) to {destination}.\n\n{secret}\n"
        ),
    }
    // A leading newline keeps an appended entry apart from whatever the file ends with.
    print!("\n{entry}");
    std::process::ExitCode::SUCCESS
}
