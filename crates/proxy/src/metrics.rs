//! The proxy's Prometheus metrics, with kube-proxy's names where it has them.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    sync: Histogram,
    full: Histogram,
    partial: Histogram,
    programming: Histogram,
    last: Gauge<f64, AtomicU64>,
    failures: Counter,
    services: Gauge,
    endpoints: Gauge,
    /// When rules were last programmed successfully (for /healthz).
    pub last_success: Mutex<Option<SystemTime>>,
    /// The last sync failed.
    failing: std::sync::atomic::AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let buckets = || exponential_buckets(0.001, 2.0, 15);
        let m = Metrics {
            registry: Registry::default(),
            sync: Histogram::new(buckets()),
            full: Histogram::new(buckets()),
            partial: Histogram::new(buckets()),
            programming: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            last: Gauge::default(),
            failures: Counter::default(),
            services: Gauge::default(),
            endpoints: Gauge::default(),
            last_success: Mutex::new(None),
            failing: std::sync::atomic::AtomicBool::new(false),
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", m.sync.clone());
        r.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            m.full.clone(),
        );
        r.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.partial.clone(),
        );
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.programming.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last.clone(),
        );
        // The text encoder appends `_total` to counters.
        r.register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Cumulative proxy nftables sync failures",
            m.failures.clone(),
        );
        r.register("kubesvc_proxy_services", "Service objects the proxy programs", m.services.clone());
        r.register(
            "kubesvc_proxy_endpoints",
            "Endpoints (address and port) across the proxy's EndpointSlices",
            m.endpoints.clone(),
        );
        m
    }

    pub fn synced(&self, took: Duration, ok: bool, full: bool) {
        self.failing.store(!ok, std::sync::atomic::Ordering::Relaxed);
        if !ok {
            self.failures.inc();
            return;
        }
        let secs = took.as_secs_f64();
        self.sync.observe(secs);
        if full { &self.full } else { &self.partial }.observe(secs);
        let now = SystemTime::now();
        self.last.set(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        *self.last_success.lock() = Some(now);
    }

    /// Rules have been programmed and the last sync succeeded.
    pub fn healthy(&self) -> bool {
        self.last_success.lock().is_some() && !self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn programmed(&self, latency: Duration) {
        self.programming.observe(latency.as_secs_f64());
    }

    pub fn counts(&self, services: usize, endpoints: usize) {
        self.services.set(i64::try_from(services).unwrap_or(i64::MAX));
        self.endpoints.set(i64::try_from(endpoints).unwrap_or(i64::MAX));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
