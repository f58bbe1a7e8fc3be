//! The proxy's Prometheus metrics, with upstream kube-proxy's names, served
//! on `--metrics-bind-address` (`/metrics`).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::backend::SyncReport;

pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    full_sync_duration: Histogram,
    partial_sync_duration: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    last_queued: Gauge<f64, AtomicU64>,
    network_programming: Histogram,
    sync_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let sync_buckets = || Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let metrics = Metrics {
            registry: Registry::default(),
            sync_duration: sync_buckets(),
            full_sync_duration: sync_buckets(),
            partial_sync_duration: sync_buckets(),
            last_sync: Gauge::default(),
            last_queued: Gauge::default(),
            network_programming: Histogram::new(network_programming_buckets()),
            sync_failures: Counter::default(),
        };
        let mut registry = Registry::default();
        for (name, help, histogram) in [
            (
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
                &metrics.sync_duration,
            ),
            (
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for full resyncs",
                &metrics.full_sync_duration,
            ),
            (
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for partial resyncs",
                &metrics.partial_sync_duration,
            ),
            (
                "kubeproxy_network_programming_duration_seconds",
                "In Cluster Network Programming Latency in seconds",
                &metrics.network_programming,
            ),
        ] {
            registry.register(name, help, histogram.clone());
        }
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            metrics.last_sync.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            metrics.last_queued.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_failures",
            "Syncs of proxy rules that failed",
            metrics.sync_failures.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// A change arrived that the next sync will apply.
    pub fn queued(&self) {
        self.last_queued.set(unix_seconds(SystemTime::now()));
    }

    /// A sync finished after `elapsed`; `changes` are when the changes it
    /// applied happened.
    pub fn synced(&self, report: &SyncReport, elapsed: Duration, changes: &[SystemTime]) {
        let seconds = elapsed.as_secs_f64();
        self.sync_duration.observe(seconds);
        if report.full {
            self.full_sync_duration.observe(seconds);
        } else {
            self.partial_sync_duration.observe(seconds);
        }
        let now = SystemTime::now();
        self.last_sync.set(unix_seconds(now));
        for change in changes {
            if let Ok(latency) = now.duration_since(*change) {
                self.network_programming.observe(latency.as_secs_f64());
            }
        }
    }

    pub fn sync_failed(&self) {
        self.sync_failures.inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// upstream's buckets: 0.25 s steps to 0.5 s, 1 s steps to a minute, then
/// coarser up to five minutes.
fn network_programming_buckets() -> Vec<f64> {
    let mut buckets = vec![0.25, 0.5];
    buckets.extend((1..60).map(f64::from));
    buckets.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    buckets.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_upstream_names() {
        let metrics = Metrics::new();
        metrics.queued();
        let report = SyncReport {
            full: false,
            services_changed: 1,
            operations: 3,
        };
        let change = SystemTime::now() - Duration::from_millis(300);
        metrics.synced(&report, Duration::from_millis(12), &[change]);
        let text = metrics.render();
        for name in [
            "kubeproxy_sync_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 0",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds ",
            "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.5\"} 1",
            "kubeproxy_sync_proxy_rules_failures_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
