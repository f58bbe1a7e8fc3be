//! The proxy as a long-running service: watches, the sync loop, metrics,
//! health. `paddock proxy`, `paddock server` and `paddock agent` all run
//! this.
//!
//! Changes wake the sync loop, which waits until `min_sync_period` has
//! passed since the previous sync (so a burst of changes makes one sync),
//! then applies everything changed so far. Every `sync_period` it also
//! syncs unasked and checks that nobody flushed its rules.

use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::Notify;
use tokio::time::sleep_until;

use crate::announce::{self, Announcer};
use crate::backend::Backend;
use crate::config::{Config, backend};
use crate::conntrack;
use crate::healthz::{ProxyHealth, serve_healthz, serve_metrics};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::service_health::ServiceHealthServers;
use crate::source::watch::follow;
use crate::source::{IpFamily, Tracker};

/// Runs the proxy until `shutdown` completes. The rules stay in place when
/// it returns, so that traffic flows while the proxy restarts.
pub async fn run(
    config: Config,
    client: kube::Client,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let family = IpFamily::of(&config.node_ip);
    let backend = backend(&config)?;
    let tracker = Arc::new(Mutex::new(Tracker::new(&config.node_name, family)));
    let changed = Arc::new(Notify::new());
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(ProxyHealth::new(2 * config.sync_period));

    let (lb_ips, wanted) = tokio::sync::watch::channel(Default::default());
    let mut tasks = tokio::task::JoinSet::new();
    if config.announce_load_balancers {
        let announcer = Announcer::new(client.clone(), &config.node_name, config.node_ip);
        tasks.spawn(announcer.run(wanted));
    }
    tasks.spawn(follow::<Service>(
        client.clone(),
        tracker.clone(),
        changed.clone(),
    ));
    tasks.spawn(follow::<EndpointSlice>(
        client,
        tracker.clone(),
        changed.clone(),
    ));
    let mut servers = tokio::task::JoinSet::new();
    if let Some(addr) = config.healthz_bind_address {
        servers.spawn(serve_healthz(addr, health.clone()));
    }
    if let Some(addr) = config.metrics_bind_address {
        servers.spawn(serve_metrics(addr, metrics.clone()));
    }

    let sync_loop = SyncLoop {
        config,
        backend: Arc::new(Mutex::new(backend)),
        tracker,
        changed,
        metrics,
        health,
        health_servers: ServiceHealthServers::new(),
        lb_ips,
        synced: None,
    };
    let mut shutdown = pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => Ok(()),
        result = sync_loop.run() => result,
        Some(result) = servers.join_next() => match result {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => bail!("a server stopped"),
            Err(e) => Err(e).context("a server panicked"),
        },
    }
}

struct SyncLoop {
    config: Config,
    backend: Arc<Mutex<Box<dyn Backend>>>,
    tracker: Arc<Mutex<Tracker>>,
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    health: Arc<ProxyHealth>,
    health_servers: ServiceHealthServers,
    /// The load-balancer IPs the synced rules serve, for the announcer.
    lb_ips: tokio::sync::watch::Sender<std::collections::BTreeSet<std::net::Ipv4Addr>>,
    /// The model the rules were last synced to (none before the first sync).
    synced: Option<Model>,
}

impl SyncLoop {
    async fn run(mut self) -> Result<()> {
        let mut last_sync: Option<Instant> = None;
        let mut next_periodic = Instant::now() + self.config.sync_period;
        loop {
            let periodic = tokio::select! {
                () = self.changed.notified() => false,
                () = sleep_until(next_periodic.into()) => true,
            };
            if !periodic {
                self.metrics.queued();
                self.health.queued();
            }
            if let Some(last) = last_sync {
                sleep_until((last + self.config.min_sync_period).into()).await;
            }
            let ready = self.lock_tracker().is_ready();
            if !ready {
                next_periodic = Instant::now() + self.config.sync_period;
                continue;
            }
            let started = Instant::now();
            last_sync = Some(started);
            next_periodic = started + self.config.sync_period;
            if let Err(e) = self.sync(periodic).await {
                tracing::error!("sync failed: {e:#}");
                self.metrics.sync_failed();
                // Try again soon rather than a whole sync period later.
                next_periodic =
                    Instant::now() + self.config.min_sync_period.max(Duration::from_secs(1));
            }
        }
    }

    fn lock_tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn sync(&mut self, periodic: bool) -> Result<()> {
        let (model, changes) = {
            let mut tracker = self.lock_tracker();
            let model = tracker.model().clone();
            (model, tracker.take_change_times())
        };
        let started = Instant::now();
        let backend = self.backend.clone();
        let shared = Arc::new(model);
        let for_backend = shared.clone();
        let report = tokio::task::spawn_blocking(move || {
            let mut backend = backend.lock().unwrap_or_else(PoisonError::into_inner);
            if periodic {
                backend.check()?;
            }
            backend.sync(&for_backend)
        })
        .await
        .context("the sync thread panicked")??;
        let elapsed = started.elapsed();
        self.metrics.synced(&report, elapsed, &changes);
        self.health.updated();
        if report.operations > 0 {
            tracing::info!(
                full = report.full,
                services = report.services_changed,
                operations = report.operations,
                ?elapsed,
                "synced"
            );
        }
        let model = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
        self.health_servers.sync(&model);
        // Before this node may announce a new load-balancer IP, so that its
        // un-NATed flows are gone when the address becomes local.
        let stale = match &self.synced {
            Some(synced) => {
                let mut stale = conntrack::stale_flows(synced, &model);
                stale.extend(conntrack::not_nated_flows(synced, &model));
                stale
            }
            None => conntrack::stale_flows(&Model::new(), &model),
        };
        if !stale.is_empty() {
            let deleted = tokio::task::spawn_blocking(move || conntrack::delete(&stale)).await;
            match deleted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("deleting stale conntrack entries: {e:#}"),
                Err(e) => tracing::warn!("deleting stale conntrack entries: {e}"),
            }
        }
        let lb_ips = announce::load_balancer_ips(&model);
        self.lb_ips.send_if_modified(|current| {
            let changed = *current != lb_ips;
            *current = lb_ips;
            changed
        });
        self.synced = Some(model);
        Ok(())
    }
}
