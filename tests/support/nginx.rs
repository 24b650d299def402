//! A real nginx (Debian's package) started by a test on a free loopback port, with its own
//! configuration, pid file, temp paths and error log in a temporary directory, so it touches
//! nothing of the system's. Stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running nginx.
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

/// The nginx binary, if installed (`.ci/run` installs it).
pub fn binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")]);
    candidates
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file())
}

impl Nginx {
    /// Starts nginx with `server` (the body of one `server { … }` block, without `listen`) and
    /// waits (at most 10 s) until it accepts connections. `None` when nginx is not installed.
    pub fn start(server: &str) -> Option<Nginx> {
        let binary = binary()?;
        // nginx cannot report a port it chose, so a free one is found first; another process
        // taking it in between makes the start fail, and it is tried again on a new port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().display().to_string();
            let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
                .iter()
                .map(|t| format!("  {t}_temp_path {root}/{t};\n"))
                .collect();
            let conf = format!(
                "worker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n{temp_paths}  server {{\n    listen {addr};\n{server}\n  }}\n}}\n"
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            let mut child = Command::new(&binary)
                .args(["-p", &root, "-e", &format!("{root}/error.log"), "-c"])
                .arg(dir.path().join("nginx.conf"))
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                    return Some(Nginx { addr, child, dir });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("nginx did not start on {addr}; retrying:\n{log}");
        }
        panic!("nginx did not start in 5 tries");
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// A fast shutdown (TERM) lets the master stop its workers; a kill would leave them behind.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
