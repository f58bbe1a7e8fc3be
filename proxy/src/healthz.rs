//! The proxy's own health (`/healthz` on `--healthz-bind-address`, as
//! upstream: unhealthy when a change has waited longer than the timeout for
//! a sync) and the HTTP servers for it and for `/metrics`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::metrics::Metrics;

/// When the proxy last synced, and since when a change has been waiting.
pub struct ProxyHealth {
    timeout: Duration,
    state: Mutex<Times>,
}

#[derive(Clone, Copy, Default)]
struct Times {
    updated: Option<SystemTime>,
    queued: Option<SystemTime>,
}

impl ProxyHealth {
    /// Unhealthy once a queued change has waited `timeout` without a sync.
    pub fn new(timeout: Duration) -> ProxyHealth {
        ProxyHealth {
            timeout,
            state: Mutex::new(Times::default()),
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A change is waiting for a sync (the first one since the last sync
    /// counts).
    pub fn queued(&self) {
        let mut times = self.times();
        if times.queued.is_none() {
            times.queued = Some(SystemTime::now());
        }
    }

    /// A sync succeeded.
    pub fn updated(&self) {
        let mut times = self.times();
        times.updated = Some(SystemTime::now());
        times.queued = None;
    }

    /// Whether healthy, and the JSON body upstream answers with.
    pub fn check(&self, now: SystemTime) -> (bool, String) {
        let times = *self.times();
        let healthy = match times.queued {
            Some(queued) => now
                .duration_since(queued)
                .map(|waited| waited <= self.timeout)
                .unwrap_or(true),
            None => true,
        };
        let format =
            |t: SystemTime| DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true);
        let body = serde_json::json!({
            "lastUpdated": times.updated.map(format).unwrap_or_default(),
            "currentTime": format(now),
            "nodeEligible": true,
        });
        (healthy, body.to_string())
    }
}

async fn healthz(State(health): State<Arc<ProxyHealth>>) -> impl IntoResponse {
    let (healthy, body) = health.check(SystemTime::now());
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Serves `/healthz` (and `/livez`) on `addr` until the task is dropped.
pub async fn serve_healthz(addr: SocketAddr, health: Arc<ProxyHealth>) -> Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .with_state(health);
    serve(addr, app).await
}

/// Serves `/metrics` on `addr` until the task is dropped.
pub async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .with_state(metrics);
    serve(addr, app).await
}

async fn serve(addr: SocketAddr, app: Router) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app)
        .await
        .with_context(|| format!("serving on {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_waiting_too_long_is_unhealthy() {
        let health = ProxyHealth::new(Duration::from_secs(60));
        let now = SystemTime::now();
        assert!(health.check(now).0);
        health.queued();
        assert!(health.check(now + Duration::from_secs(30)).0);
        let (healthy, body) = health.check(now + Duration::from_secs(90));
        assert!(!healthy);
        assert!(body.contains("\"nodeEligible\":true"), "{body}");
        health.updated();
        assert!(health.check(now + Duration::from_secs(90)).0);
    }
}
