//! The connection to the Redis a fleet shares: one per process and URL, with the timeout, the
//! circuit breaker and the health every caller relies on.
//!
//! Redis work runs on a small runtime of its own ("redis" thread), so it never competes with
//! request handling and a caller in any context — a request task, the blocking pool, a plain
//! thread — can hand it a command. Every command is bounded by `[state] timeout`; a command that
//! fails or times out opens the breaker: for the next [`BREAKER_OPEN`] calls fail at once
//! without touching the network, while a probe (PING) looks for Redis coming back. So when
//! Redis is down, requests pay nothing for it after the first timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

use super::StateError;
use crate::config::{redacted_url, RedisSettings};

/// How long the breaker stays open after a failure before commands may try again.
pub const BREAKER_OPEN: Duration = Duration::from_millis(500);
/// How often the probe pings.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// One Redis, shared by every user in this process.
pub struct RedisState {
    settings: RedisSettings,
    client: Client,
    runner: Runner,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What a command needs, cheap to clone onto the Redis runtime.
#[derive(Clone)]
struct Runner {
    manager: ConnectionManager,
    handle: tokio::runtime::Handle,
    health: Arc<Health>,
}

#[derive(Debug, Default)]
struct Health {
    up: AtomicBool,
    /// Monotonic nanoseconds until which the breaker is open (0: closed).
    open_until: AtomicU64,
}

impl Health {
    fn failed(&self) {
        let until = crate::clock::monotonic_ns() + BREAKER_OPEN.as_nanos() as u64;
        self.open_until.store(until, Ordering::Release);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!("the shared state backend stopped answering");
        }
        crate::metrics::state_backend_up(false);
    }

    fn answered(&self) {
        self.open_until.store(0, Ordering::Release);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("the shared state backend answers");
        }
        crate::metrics::state_backend_up(true);
    }

    fn open(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0 && crate::clock::monotonic_ns() < until
    }
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("url", &redacted_url(&self.settings.url))
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisState {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Connections by URL: every user of one Redis in this process shares one.
static SHARED: Mutex<Option<HashMap<String, Weak<RedisState>>>> = Mutex::new(None);

impl RedisState {
    /// The process's connection to the Redis of `settings`, opened on first use. Opening does
    /// not wait for Redis: a gateway starts while it is down and connects when it is back.
    pub fn shared(settings: &RedisSettings) -> Result<Arc<RedisState>, StateError> {
        let mut shared = SHARED
            .lock()
            .map_err(|_| StateError("the Redis registry is poisoned".into()))?;
        let shared = shared.get_or_insert_with(HashMap::new);
        if let Some(state) = shared.get(&settings.url).and_then(Weak::upgrade) {
            return Ok(state);
        }
        let state = Arc::new(RedisState::open(settings)?);
        shared.retain(|_, state| state.strong_count() > 0);
        shared.insert(settings.url.clone(), Arc::downgrade(&state));
        Ok(state)
    }

    fn open(settings: &RedisSettings) -> Result<RedisState, StateError> {
        let shown = redacted_url(&settings.url);
        let client = Client::open(settings.url.as_str())
            .map_err(|e| StateError(format!("{shown}: {}", describe(&e))))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis")
            .enable_all()
            .build()
            .map_err(StateError::from_display)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout(settings)))
            .set_response_timeout(Some(settings.timeout.max(Duration::from_millis(1))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = {
            let _entered = runtime.enter();
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| StateError(format!("{shown}: {}", describe(&e))))?
        };
        let health = Arc::new(Health::default());
        crate::metrics::state_backend_up(false);
        runtime.spawn(probe(manager.clone(), Arc::downgrade(&health)));
        Ok(RedisState {
            settings: settings.clone(),
            client,
            runner: Runner {
                manager,
                handle: runtime.handle().clone(),
                health,
            },
            runtime: Some(runtime),
        })
    }

    /// The bound for work off the request path (the token service's store, the revocation
    /// stream): a little longer than `timeout`, never more than a second.
    pub fn off_path_bound(&self) -> Duration {
        connect_timeout(&self.settings)
    }

    /// `[state]` as configured.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Whether the last command (or probe) got an answer.
    pub fn is_up(&self) -> bool {
        self.runner.health.up.load(Ordering::Acquire)
    }

    /// Whether commands currently fail at once (Redis failed within [`BREAKER_OPEN`]).
    pub fn breaker_open(&self) -> bool {
        self.runner.health.open()
    }

    /// Runs one command within `bound` (`settings().timeout` on the request path), from any
    /// async context.
    pub async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        bound: Duration,
        command: F,
    ) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        self.runner.run(operation, bound, command).await
    }

    /// Runs a Lua script with these keys and arguments within `bound`.
    pub async fn script<T: redis::FromRedisValue + Send + 'static>(
        &self,
        operation: &'static str,
        bound: Duration,
        call: ScriptCall,
    ) -> Result<T, StateError> {
        self.run(operation, bound, move |mut connection| async move {
            call.invoke(&mut connection).await
        })
        .await
    }

    /// [`RedisState::script`] from blocking code.
    pub fn script_blocking<T: redis::FromRedisValue + Send + 'static>(
        &self,
        operation: &'static str,
        bound: Duration,
        call: ScriptCall,
    ) -> Result<T, StateError> {
        self.run_blocking(operation, bound, move |mut connection| async move {
            call.invoke(&mut connection).await
        })
    }

    /// Runs a command from blocking code (a store write on the blocking pool, a test): the
    /// calling thread waits, bounded by `bound`.
    pub fn run_blocking<T, F, Fut>(
        &self,
        operation: &'static str,
        bound: Duration,
        command: F,
    ) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let runner = self.runner.clone();
        self.runner.handle.spawn(async move {
            let _ = sender.send(runner.run(operation, bound, command).await);
        });
        receiver
            .recv_timeout(bound + Duration::from_millis(50))
            .unwrap_or_else(|_| {
                Err(StateError(format!(
                    "{operation}: no answer within {bound:?}"
                )))
            })
    }

    /// A connection of its own (for blocking reads such as `XREAD BLOCK`, which would hold up
    /// every other command on a shared one). `read_for` bounds each reply.
    pub async fn dedicated(&self, read_for: Duration) -> Result<MultiplexedConnection, StateError> {
        let client = self.client.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout(&self.settings)))
            .set_response_timeout(Some(read_for));
        let connecting = self.runner.handle.spawn(async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        });
        match connecting.await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(StateError(format!("connect: {}", describe(&error)))),
            Err(error) => Err(StateError(format!("connect: {error}"))),
        }
    }

    /// Spawns `work` on the Redis runtime (background followers live there).
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.runner.handle.spawn(work);
    }
}

impl Runner {
    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        bound: Duration,
        command: F,
    ) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        if self.health.open() {
            crate::metrics::state_backend_error(operation);
            return Err(StateError("Redis is unavailable".into()));
        }
        let work = command(self.manager.clone());
        let task = self.handle.spawn(tokio::time::timeout(bound, work));
        let outcome = match tokio::time::timeout(bound + Duration::from_millis(5), task).await {
            Ok(Ok(Ok(Ok(value)))) => Ok(value),
            Ok(Ok(Ok(Err(error)))) if !is_connection_fault(&error) => {
                // Redis answered, with an error: it is up; the command was wrong.
                self.health.answered();
                crate::metrics::state_backend_error(operation);
                return Err(StateError(format!("{operation}: {}", describe(&error))));
            }
            Ok(Ok(Ok(Err(error)))) => Err(StateError(format!("{operation}: {}", describe(&error)))),
            Ok(Ok(Err(_))) | Err(_) => Err(StateError(format!(
                "{operation}: no answer within {:?}",
                bound
            ))),
            Ok(Err(error)) => Err(StateError(format!("{operation}: {error}"))),
        };
        match &outcome {
            Ok(_) => self.health.answered(),
            Err(_) => {
                self.health.failed();
                crate::metrics::state_backend_error(operation);
            }
        }
        outcome
    }
}

/// One call of a Lua script: the script (sent by its SHA-1, loaded when Redis lacks it), its
/// keys and its arguments, owned so the call can move to the Redis runtime.
#[derive(Debug, Clone)]
pub struct ScriptCall {
    script: redis::Script,
    keys: Vec<String>,
    args: Vec<String>,
}

impl ScriptCall {
    /// A call of `script` with no keys or arguments yet.
    pub fn new(script: &redis::Script) -> ScriptCall {
        ScriptCall {
            script: script.clone(),
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Adds a key (`KEYS[n]`).
    pub fn key(&mut self, key: impl Into<String>) -> &mut Self {
        self.keys.push(key.into());
        self
    }

    /// Adds an argument (`ARGV[n]`).
    pub fn arg(&mut self, arg: impl ToString) -> &mut Self {
        self.args.push(arg.to_string());
        self
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> redis::RedisResult<T> {
        let mut invocation = self.script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        for arg in &self.args {
            invocation.arg(arg);
        }
        invocation.invoke_async(connection).await
    }
}

/// Connecting may take a little longer than a command, but not much: one second at most.
fn connect_timeout(settings: &RedisSettings) -> Duration {
    (settings.timeout * 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// An error's kind, never its text (which may echo a command's arguments).
fn describe(error: &redis::RedisError) -> String {
    format!("{:?}", error.kind())
}

/// Whether an error means Redis could not be reached (rather than that it refused a command).
fn is_connection_fault(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// Pings Redis while `health` lives: so the gauge is right, and the breaker closes as soon as
/// Redis is back rather than when a request next tries.
async fn probe(mut manager: ConnectionManager, health: Weak<Health>) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(health) = health.upgrade() else {
            return;
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(
            Duration::from_secs(1),
            ping.query_async::<String>(&mut manager),
        )
        .await
        {
            Ok(Ok(_)) => health.answered(),
            _ => health.failed(),
        }
    }
}

/// The hash tag that keeps one consumer's keys in one cluster slot without naming it: 16 bytes
/// of the SHA-256 of its id, in hex.
pub fn hash_tag(id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
