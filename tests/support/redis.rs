//! A real `redis-server` for the fleet tests: its own directory, a free loopback port, no
//! persistence. `.ci/run` installs the Debian package; running locally without it, the tests
//! that need it say so and skip (in CI they fail instead).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

/// A running redis-server.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    /// Set for a TLS-only server: `--tls-*` arguments naming files in `dir`.
    tls: bool,
}

/// Whether redis-server is installed; when it is not, prints why the caller skips (and panics
/// in CI, which must have it).
pub fn available() -> bool {
    super::installed_or_skip(
        super::runs("redis-server"),
        "redis-server",
        "apt-get install redis-server",
    )
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server on a free port and waits (bounded) until it accepts connections.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// Starts a server that speaks only TLS, with this certificate and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> RedisServer {
        RedisServer::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        if let Some((cert, key)) = tls {
            std::fs::write(dir.path().join("redis.crt"), cert).unwrap();
            std::fs::write(dir.path().join("redis.key"), key).unwrap();
        }
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            tls: tls.is_some(),
        };
        // A port found free may be taken before redis binds it: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1"]);
        if self.tls {
            command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .args([
                    "--tls-cert-file",
                    "redis.crt",
                    "--tls-key-file",
                    "redis.key",
                ])
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        let mut child = command
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, signal) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready.send(());
                }
            }
        });
        let started = signal.recv_timeout(Duration::from_secs(10)).is_ok();
        if started {
            self.child = Some(child);
        } else {
            let _ = child.kill();
            let _ = child.wait();
        }
        started
    }

    /// Stops the server (its data is lost: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers — a hung Redis.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.launch(), "redis-server did not start again");
    }

    /// Runs a redis-cli-like command through a plain connection (test assertions).
    pub fn command(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
