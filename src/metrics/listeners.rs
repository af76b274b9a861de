//! `authgate_listener_*{listener}`: the TLS material of each listener,
//! read on each scrape. The unlabelled `authgate_serving_certificate_*`,
//! `authgate_client_ca_*` and `authgate_tls_reload_last_*` gauges keep
//! showing the first listener (their meaning with one listener); the
//! counters (`authgate_tls_reloads_total`, handshakes) count every listener.
//! `listener` takes the configured names only, so it stays bounded.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// What one listener has in service.
#[derive(Clone, Debug, Default)]
pub struct ListenerStatus {
    /// The listener's configured name.
    pub name: String,
    /// notAfter of its serving leaf (Unix seconds).
    pub serving_not_after: i64,
    /// Earliest notAfter of its client CA bundle, if it has one.
    pub client_ca_not_after: Option<i64>,
    /// When its material last loaded (Unix seconds).
    pub last_success: i64,
    /// When a reload of its material last failed (0: never).
    pub last_failure: i64,
}

/// Something that reports a listener's status (its TLS reloader).
pub trait ListenerSource: Send + Sync + 'static {
    /// The status now.
    fn listener_status(&self) -> ListenerStatus;
}

/// `listener`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

/// The collector of every listener's status.
pub struct ListenerCollector(pub Vec<Arc<dyn ListenerSource>>);

impl std::fmt::Debug for ListenerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerCollector")
    }
}

type Field = fn(&ListenerStatus) -> Option<i64>;

const FAMILIES: [(&str, &str, Field); 4] = [
    (
        "listener_serving_certificate_not_after_timestamp",
        "notAfter of the serving certificate a listener uses",
        |s| Some(s.serving_not_after),
    ),
    (
        "listener_client_ca_not_after_timestamp",
        "Earliest notAfter in the client CA bundle a listener uses",
        |s| s.client_ca_not_after,
    ),
    (
        "listener_tls_reload_last_success_timestamp",
        "When a listener's TLS material was last loaded successfully",
        |s| Some(s.last_success),
    ),
    (
        "listener_tls_reload_last_failure_timestamp",
        "When a reload of a listener's TLS material last failed (0: never)",
        |s| Some(s.last_failure),
    ),
];

impl Collector for ListenerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all: Vec<ListenerStatus> = self.0.iter().map(|l| l.listener_status()).collect();
        for (name, help, field) in FAMILIES {
            let kind = ConstGauge::new(0i64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, Some(&Unit::Seconds), kind)?;
            for s in &all {
                if let Some(v) = field(s) {
                    let label = ListenerLabel {
                        listener: s.name.clone(),
                    };
                    ConstGauge::new(v).encode(family.encode_family(&label)?)?;
                }
            }
        }
        Ok(())
    }
}
