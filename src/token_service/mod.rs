//! The token service: authgate as an issuer, for teams without an identity provider.
//!
//! Endpoints under `[token_service] path` on the gateway listener (see `endpoints.rs`): login
//! with username and password, the OAuth 2.0 token endpoint (client credentials, refresh),
//! refresh, revocation, logout, and the published keys. Access tokens are short-lived JWTs
//! the gateway then verifies like any other issuer's; refresh tokens are opaque, rotated on
//! every use, and stored only as hashes (`grants.rs`, `store.rs`). Revoked access tokens are
//! refused at the edge until they expire ([`Revocations`]).
//!
//! [`ServiceState`] — the store, the revocations, the login limiter — outlives reloads: a new
//! snapshot with the same store location takes it over, so a reload forgets nothing.

pub mod embedded;
pub mod endpoints;
mod errors;
pub mod grants;
pub mod limiter;
pub use crate::passwords;
pub mod redis_store;
pub(crate) mod requests;
pub mod revocation_feed;
pub mod revocations;
pub mod shared_limiter;
pub mod store;
pub use crate::users;

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::auth::keys::KeySet;
use crate::auth::unix_now;
use crate::config::{StoreLocation, TokenServiceSettings};
use crate::state::redis::RedisState;
use limiter::LoginLimiter;
use revocations::Revocations;
use store::{MemoryStore, TokenStore};

/// How often expired refresh tokens, families and revocations are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// State that survives reloads.
#[derive(Debug)]
pub struct ServiceState {
    location: StoreLocation,
    store: Arc<dyn TokenStore>,
    /// Revoked access tokens, checked at the edge.
    pub revocations: Arc<Revocations>,
    limiter: LoginLimiter,
    /// With the store on Redis: the login failure counts the fleet shares (instead of `limiter`).
    shared_limiter: Option<shared_limiter::SharedLoginLimiter>,
    /// Bounds concurrent argon2 runs: each takes tens of MiB and a core for tens of ms.
    hashing: tokio::sync::Semaphore,
    /// Verified against when the username is unknown, so that a wrong username costs what a
    /// wrong password does and timing does not tell which usernames exist.
    dummy_hash: String,
}

impl ServiceState {
    /// Opens the store at `location` and loads its revocations.
    pub fn open(location: &StoreLocation) -> Result<Arc<Self>, String> {
        let store: Arc<dyn TokenStore> = match location {
            StoreLocation::Memory => Arc::new(MemoryStore::default()),
            StoreLocation::Embedded(path) => {
                Arc::new(embedded::EmbeddedStore::open(path).map_err(|e| e.to_string())?)
            }
            StoreLocation::Redis(settings) => {
                let redis = RedisState::shared(settings).map_err(|e| e.to_string())?;
                Arc::new(redis_store::RedisTokenStore::new(redis))
            }
        };
        let revocations = Arc::new(Revocations::default());
        let now = unix_now();
        match location {
            // A fleet's revocations arrive from the shared stream, which loads the set first;
            // a start never waits for Redis.
            StoreLocation::Redis(settings) => {
                let redis = RedisState::shared(settings).map_err(|e| e.to_string())?;
                revocation_feed::follow(redis, Arc::downgrade(&revocations));
            }
            StoreLocation::Embedded(_) | StoreLocation::Memory => {
                for (jti, exp) in store.revoked_access(now).map_err(|e| e.to_string())? {
                    revocations.insert(jti, exp);
                }
            }
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let state = Arc::new(ServiceState {
            location: location.clone(),
            store,
            revocations,
            limiter: LoginLimiter::default(),
            shared_limiter: match location {
                StoreLocation::Redis(settings) => Some(shared_limiter::SharedLoginLimiter::new(
                    RedisState::shared(settings).map_err(|e| e.to_string())?,
                )),
                StoreLocation::Embedded(_) | StoreLocation::Memory => None,
            },
            hashing: tokio::sync::Semaphore::new(cores),
            dummy_hash: passwords::hash("no user has this password")?,
        });
        start_janitor(Arc::downgrade(&state));
        Ok(state)
    }
}

/// Deletes what has expired, every [`PURGE_EVERY`], for as long as the state is in use.
fn start_janitor(state: Weak<ServiceState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(PURGE_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else { return };
            let now = unix_now();
            state.revocations.purge(now);
            let store = state.store.clone();
            match tokio::task::spawn_blocking(move || store.purge(now)).await {
                Ok(Ok(purged)) => tracing::debug!(purged, "token store purged"),
                Ok(Err(error)) => tracing::warn!(%error, "token store purge failed"),
                Err(error) => tracing::warn!(%error, "token store purge failed"),
            }
        }
    });
}

/// The token service of one snapshot: its settings and the long-lived state.
#[derive(Debug)]
pub struct TokenService {
    /// `[token_service]` as validated.
    pub settings: TokenServiceSettings,
    /// The service's own verification keys (to recognise its tokens when revoking them).
    keys: KeySet,
    /// Store, revocations, login limiter.
    pub state: Arc<ServiceState>,
}

impl TokenService {
    /// Builds the service for a snapshot, taking over `previous`'s state when the store
    /// location is unchanged (so a reload keeps refresh tokens, revocations and login counts).
    pub fn new(
        settings: TokenServiceSettings,
        previous: Option<&TokenService>,
    ) -> Result<Self, String> {
        let state = match previous {
            Some(previous) if previous.state.location == settings.store => previous.state.clone(),
            _ => ServiceState::open(&settings.store)?,
        };
        Ok(TokenService {
            keys: settings.key_set(),
            settings,
            state,
        })
    }

    /// The revocations the edge checks this issuer's tokens against.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.state.revocations.clone()
    }
}
