//! The snapshot a request runs against: routes, upstream pools and identity rules, all built
//! from one [`Config`]. A request loads the current snapshot once and uses it to the end, so a
//! reload (which swaps in a whole new snapshot) never shows it half of one config and half of
//! another.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::identity::IdentityStripper;
use crate::limits::Limits;
use crate::proxy::routes::RouteTable;
use crate::proxy::upstream::Upstream;
use crate::token_service::TokenService;

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// The config this snapshot was built from.
    pub config: Arc<Config>,
    /// Routes, most specific first.
    pub routes: RouteTable,
    /// Upstream pools by name.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Which incoming headers are removed as identity headers.
    pub identity: IdentityStripper,
    /// Issuers, their keys, and the verified-token cache.
    pub auth: Authenticator,
    /// The gateway's own token issuer, when `[token_service]` is configured.
    pub token_service: Option<TokenService>,
    /// Plans and route limits; their state is shared with the snapshots before and after.
    pub limits: Limits,
    /// Usage metering; its counters and store are shared with the snapshots before and after.
    pub meter: crate::metering::Meter,
    /// Browser sign-in, when `[sign_in]` is configured; its sessions outlive reloads.
    pub sign_in: Option<crate::sign_in::SignIn>,
}

impl Snapshot {
    /// Builds the snapshot for a validated config. Upstream pools and remote key sets whose
    /// settings did not change are taken over from `previous`, so a reload neither drops warm
    /// connections nor refetches or empties key sets; the token service keeps its store.
    /// Limits keep their counters. Fails only when a store (the token service's, the quotas')
    /// cannot be opened.
    pub fn new(config: Config, previous: Option<&Snapshot>) -> Result<Self, String> {
        let limits = Limits::new(&config, previous.map(|p| &p.limits))?;
        let meter = crate::metering::Meter::new(&config, previous.map(|p| &p.meter))?;
        let token_service = match &config.token_service {
            Some(settings) => Some(TokenService::new(
                settings.clone(),
                previous.and_then(|p| p.token_service.as_ref()),
            )?),
            None => None,
        };
        let upstreams = config
            .upstreams
            .values()
            .map(|settings| {
                // An unchanged upstream keeps its pool: a reload drops no warm connection.
                let kept = previous
                    .and_then(|p| p.upstreams.get(&settings.name))
                    .filter(|upstream| upstream.settings() == settings)
                    .cloned();
                let upstream = kept.unwrap_or_else(|| Arc::new(Upstream::new(settings.clone())));
                (settings.name.clone(), upstream)
            })
            .collect();
        let revocations = token_service
            .as_ref()
            .map(|service| (service.settings.id.as_str(), service.revocations()));
        let auth = Authenticator::new(
            &config.issuers,
            config.api_keys.as_ref(),
            config.server.token_cache_size,
            previous.map(|p| &p.auth),
            revocations,
        );
        let sign_in = match &config.sign_in {
            Some(settings) => Some(crate::sign_in::SignIn::new(
                settings.clone(),
                &auth,
                previous.and_then(|p| p.sign_in.as_ref()),
            )?),
            None => None,
        };
        Ok(Snapshot {
            sign_in,
            routes: RouteTable::new(config.routes.clone()),
            identity: IdentityStripper::new(&config.identity),
            auth,
            upstreams,
            token_service,
            limits,
            meter,
            config: Arc::new(config),
        })
    }
}

impl Snapshot {
    /// Whether this snapshot can decide requests: every issuer that gates readiness has keys.
    pub fn is_ready(&self) -> bool {
        self.auth.is_ready()
    }
}

/// The current snapshot, swapped atomically on reload.
pub type Runtime = ArcSwap<Snapshot>;
