//! README.md, run as written: every shell block marked `<!-- readme-test -->` is executed, in
//! order and in one shell (as a reader would in one terminal), against the real binary serving
//! a copy of the shipped gateway.toml, users.toml and keys.toml. A command followed by
//! `# → TEXT` must print TEXT; every other command must succeed. So the README cannot promise
//! what the gateway does not do.
//!
//! Only what a shared machine forces is changed: the fixed ports 8080 and 9901 become free
//! ones, and `cargo run -q --release --` runs the binary this test was built with.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::GatewayProcess;

/// The marker, on the line before a ```sh fence, of a block this test runs.
const MARKER: &str = "<!-- readme-test -->";
/// What a command's expected output is introduced by, at the end of its line.
const EXPECT: &str = "# →";
/// The whole walkthrough must finish within this.
const LIMIT: Duration = Duration::from_secs(120);

/// The marked blocks' lines, with `\`-continued lines joined into one.
fn marked_blocks(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "{MARKER} must precede a ```sh block"
        );
        let mut pending = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            match line.strip_suffix('\\') {
                Some(start) => {
                    pending.push_str(start);
                    pending.push(' ');
                }
                None => {
                    pending.push_str(line);
                    commands.push(std::mem::take(&mut pending));
                }
            }
        }
    }
    commands
}

/// `text` as one single-quoted shell word.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The shell script that runs `commands` and checks each stated result.
fn script(commands: &[String], http: u16, admin: u16) -> String {
    let mut script = String::from("set -euo pipefail\n");
    for command in commands {
        let command = command
            .replace("cargo run -q --release --", "\"$AUTHGATE\"")
            .replace("cargo run --release --", "\"$AUTHGATE\"")
            .replace("localhost:8080", &format!("localhost:{http}"))
            .replace("localhost:9901", &format!("localhost:{admin}"));
        let Some((run, expected)) = command.rsplit_once(EXPECT) else {
            script.push_str(&command);
            script.push('\n');
            continue;
        };
        let (run, expected) = (run.trim(), expected.trim());
        script.push_str(&format!(
            "echo \"\\$ \"{shown}\nout=$({run} 2>&1) || {{ echo \"FAILED (exit $?): \"{shown}; echo \"$out\"; exit 1; }}\n\
             case \"$out\" in *{wanted}*) ;; *) echo \"FAILED: \"{shown}; echo \"expected: \"{wanted}; echo \"got: $out\"; exit 1;; esac\n",
            shown = quoted(run),
            wanted = quoted(expected),
        ));
    }
    script
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn every_marked_readme_command_does_what_the_readme_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = marked_blocks(&readme);
    assert!(
        commands.iter().filter(|c| c.contains(EXPECT)).count() >= 20,
        "the marked blocks state too few results to be the walkthrough"
    );

    let (http, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    for file in ["gateway.toml", "users.toml", "keys.toml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let text = text
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
            .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"));
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let work = dir.path().to_path_buf();
    let gateway = GatewayProcess::spawn_in(dir, &[("RUST_LOG", "info,authgate::access=off")]);
    assert_eq!(gateway.http.port(), http);

    let mut shell = Command::new("bash")
        .arg("-c")
        .arg(script(&commands, http, admin))
        .current_dir(&work)
        .env("AUTHGATE", env!("CARGO_BIN_EXE_authgate"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs the README's commands");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = shell.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = shell.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    shell
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    shell
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the README's commands did not all do what it says:\n{output}"
    );
    drop(gateway);
}

#[test]
fn results_are_read_from_the_end_of_a_line_and_quotes_survive() {
    let readme = "x\n<!-- readme-test -->\n```sh\nA=1\ncurl -s 'u?x=1' \\\n  -d \"{}\"   # → it's \"ok\"\n```\n";
    let commands = marked_blocks(readme);
    assert_eq!(
        commands,
        ["A=1", "curl -s 'u?x=1'    -d \"{}\"   # → it's \"ok\""]
    );
    let script = script(&commands, 1, 2);
    assert!(script.contains(r#"*'it'\''s "ok"'*"#), "{script}");
}
