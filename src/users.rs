//! The users file of the token service: who may log in, with which password (an argon2id
//! hash, never the password), and what they are granted.
//!
//! ```toml
//! [[users]]
//! username = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # `authgate users add alice`
//! subject = "user-7"          # the `sub` of alice's tokens (default: the username)
//! scopes = ["orders:read"]
//! roles = ["admin"]
//! disabled = false
//! plan = "gold"              # the plan its callers are on (default: [consumers] default_plan)
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{line_and_column, unknown_plan, Diagnostic};

/// One user.
#[derive(Clone, PartialEq)]
pub struct User {
    /// The login name.
    pub username: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// The `sub` of the user's tokens.
    pub subject: String,
    /// Scopes granted at login.
    pub scopes: Vec<String>,
    /// Roles granted at login (the `roles` claim).
    pub roles: Vec<String>,
    /// A disabled user cannot log in, and its refresh tokens stop working.
    pub disabled: bool,
    /// The plan the user's requests count under (`None`: `[consumers] default_plan`).
    pub plan: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("subject", &self.subject)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Users by username.
#[derive(Debug, Default, PartialEq)]
pub struct UserTable {
    by_name: HashMap<String, Arc<User>>,
    by_subject: HashMap<String, Arc<User>>,
}

impl UserTable {
    /// The user with this login name.
    pub fn get(&self, username: &str) -> Option<&Arc<User>> {
        self.by_name.get(username)
    }

    /// The user whose tokens carry this subject.
    pub fn by_subject(&self, subject: &str) -> Option<&Arc<User>> {
        self.by_subject.get(subject)
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsersFile {
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: Spanned<String>,
    password_hash: Spanned<String>,
    subject: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    disabled: bool,
    plan: Option<Spanned<String>>,
}

/// Reads and checks the users file; every problem is reported with its file:line:col. With
/// `plans`, a user's `plan` must be one of them.
pub fn load_file(path: &Path, plans: Option<&[String]>) -> Result<UserTable, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            path,
            format!("cannot read the users file: {e}"),
        )]
    })?;
    parse(&source, path, plans)
}

/// Checks users-file text as if read from `path`.
pub fn parse(
    source: &str,
    path: &Path,
    plans: Option<&[String]>,
) -> Result<UserTable, Vec<Diagnostic>> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_and_column(source, offset);
        Diagnostic {
            file: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let raw: RawUsersFile = toml::from_str(source).map_err(|e| {
        vec![at(
            e.span().map_or(0, |s| s.start),
            e.message().trim().to_string(),
        )]
    })?;
    let mut errors = Vec::new();
    let mut table = UserTable::default();
    for user in raw.users {
        let user = user.into_inner();
        let username = user.username.get_ref().clone();
        if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
            errors.push(at(
                user.username.span().start,
                "a username must be 1 to 256 characters, none of them control characters".into(),
            ));
            continue;
        }
        if let Err(message) = crate::passwords::check_stored(user.password_hash.get_ref()) {
            errors.push(at(user.password_hash.span().start, message));
            continue;
        }
        if let (Some(plan), Some(plans)) = (&user.plan, plans) {
            if !plans.contains(plan.get_ref()) {
                let message = unknown_plan(plan.get_ref(), plans.iter());
                errors.push(at(plan.span().start, message));
                continue;
            }
        }
        let entry = User {
            plan: user.plan.map(Spanned::into_inner),
            subject: user.subject.unwrap_or_else(|| username.clone()),
            username: username.clone(),
            password_hash: user.password_hash.into_inner(),
            scopes: user.scopes,
            roles: user.roles,
            disabled: user.disabled,
        };
        let entry = Arc::new(entry);
        if table
            .by_name
            .insert(username.clone(), entry.clone())
            .is_some()
        {
            errors.push(at(
                user.username.span().start,
                format!("user `{username}` is listed twice"),
            ));
        } else if table
            .by_subject
            .insert(entry.subject.clone(), entry.clone())
            .is_some()
        {
            // Refresh tokens name their holder by subject, so two users cannot share one.
            errors.push(at(
                user.username.span().start,
                format!("the subject `{}` belongs to two users", entry.subject),
            ));
        }
    }
    if errors.is_empty() {
        Ok(table)
    } else {
        Err(errors)
    }
}

/// The entry `authgate users add` appends to a users file.
pub fn entry(username: &str, password_hash: &str, scopes: &[String], roles: &[String]) -> String {
    let list = |items: &[String]| {
        let quoted: Vec<String> = items
            .iter()
            .map(|s| toml::Value::String(s.clone()).to_string())
            .collect();
        format!("[{}]", quoted.join(", "))
    };
    format!(
        "\n[[users]]\nusername = {}\npassword_hash = {}\nscopes = {}\nroles = {}\n",
        toml::Value::String(username.to_string()),
        toml::Value::String(password_hash.to_string()),
        list(scopes),
        list(roles),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObGO8hU+5vk7sY";

    #[test]
    fn an_entry_written_by_users_add_reads_back() {
        let text = entry("alice \"a\"", HASH, &["orders:read".into()], &[]);
        let table = parse(&text, Path::new("users.toml"), None).unwrap();
        let alice = table.get("alice \"a\"").unwrap();
        assert_eq!(alice.subject, "alice \"a\"");
        assert_eq!(alice.scopes, ["orders:read"]);
        assert!(!alice.disabled);
    }

    #[test]
    fn a_plan_must_be_defined_when_the_plans_are_known() {
        let text = format!(
            "[[users]]\nusername = \"a\"\npassword_hash = \"{HASH}\"\nplan = \"gold\"\n[[users]]\nusername = \"b\"\npassword_hash = \"{HASH}\"\nplan = \"silver\"\n"
        );
        let plans = ["gold".to_string()];
        let errors = parse(&text, Path::new("users.toml"), Some(&plans)).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (8, 8), "{errors:?}");
        assert!(errors[0].message.contains("`silver` is not defined"));
        // `users add` reads the file without the config's plans.
        let table = parse(&text, Path::new("users.toml"), None).unwrap();
        assert_eq!(table.get("a").unwrap().plan.as_deref(), Some("gold"));
    }

    #[test]
    fn problems_name_their_line_and_column() {
        let text = format!(
            "[[users]]\nusername = \"a\"\npassword_hash = \"$2b$10$bcrypt\"\n\n[[users]]\nusername = \"b\"\npassword_hash = \"{HASH}\"\n[[users]]\nusername = \"b\"\npassword_hash = \"{HASH}\"\n"
        );
        let errors = parse(&text, Path::new("users.toml"), None).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (3, 17));
        assert!(errors[1].message.contains("twice"));
        assert_eq!(errors[1].line, 9);
        let unknown = parse("[[users]]\nname = \"x\"\n", Path::new("u.toml"), None).unwrap_err();
        assert!(unknown[0].message.contains("unknown field"), "{unknown:?}");
    }
}
