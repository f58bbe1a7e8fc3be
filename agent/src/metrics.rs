//! The agent's metrics, with upstream kubelet's names, served on the
//! kubelet API's `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upstream's buckets for pod start durations, in seconds.
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// From the agent first seeing a pod to it running.
    pub pod_start: Histogram,
    pub relist_duration: Histogram,
    pub running_pods: Gauge,
    pub running_containers: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let pod_start = Histogram::new(POD_START_BUCKETS);
        let relist_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let running_pods = Gauge::default();
        let running_containers = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            pod_start.clone(),
        );
        registry.register(
            "kubelet_pleg_relist_duration_seconds",
            "Duration in seconds for relisting pods in PLEG.",
            relist_duration.clone(),
        );
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            pod_start,
            relist_duration,
            running_pods,
            running_containers,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names() {
        let metrics = Metrics::default();
        metrics.pod_start.observe(0.7);
        metrics.running_pods.set(3);
        let text = metrics.render();
        assert!(
            text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"1.0\"} 1"),
            "{text}"
        );
        assert!(text.contains("kubelet_running_pods 3"), "{text}");
    }
}
