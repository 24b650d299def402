//! `authgate users add`: appends a user, with the argon2id hash of a password read from stdin
//! or a terminal prompt, to the token service's users file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use authgate::token_service::{passwords, users};

/// The shortest password accepted. NIST SP 800-63B asks for at least 8 and recommends
/// longer; a gateway's users guard every route behind it, so 12.
const MIN_PASSWORD_CHARS: usize = 12;

/// The user to add.
pub struct NewUser {
    pub username: String,
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub plan: Option<String>,
}

/// Adds `user` to `file`, or to the users file `config` names.
pub fn add(user: &NewUser, file: Option<PathBuf>, config: &Path) -> ExitCode {
    match try_add(user, file, config) {
        Ok(path) => {
            eprintln!(
                "added `{}` to {} (a running gateway picks it up on its own)",
                user.username,
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("authgate users add: {message}");
            ExitCode::FAILURE
        }
    }
}

fn try_add(user: &NewUser, file: Option<PathBuf>, config: &Path) -> Result<PathBuf, String> {
    let path = match file {
        Some(path) => path,
        None => users_file_of(config)?,
    };
    if path.exists() {
        let table = users::load_file(&path, None).map_err(|diagnostics| {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            lines.join("\n")
        })?;
        if table.get(&user.username).is_some() {
            return Err(format!(
                "`{}` is already in {}",
                user.username,
                path.display()
            ));
        }
    }
    let password = read_password()?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is shorter than {MIN_PASSWORD_CHARS} characters"
        ));
    }
    let hash = passwords::hash(&password)?;
    let mut entry = users::entry(&user.username, &hash, &user.scopes, &user.roles);
    if let Some(subject) = &user.subject {
        entry.push_str(&super::toml_line("subject", subject));
    }
    if let Some(plan) = &user.plan {
        entry.push_str(&super::toml_line("plan", plan));
    }
    // The file is checked as it will be read, before it is changed.
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&entry);
    users::parse(&text, &path, None)
        .map_err(|d| format!("the new entry does not read back: {d:?}"))?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    out.write_all(entry.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// `[token_service] users` of the configuration, read without validating the rest (the users
/// file may not exist yet, which validation would refuse).
fn users_file_of(config: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let value: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let users = value
        .get("token_service")
        .and_then(|t| t.get("users"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| {
            format!(
                "{} has no [token_service] users file; pass --file",
                config.display()
            )
        })?;
    let dir = config.parent().unwrap_or(Path::new(""));
    Ok(dir.join(users))
}

/// The password: asked for twice at a terminal (without echo), else one line of stdin.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
