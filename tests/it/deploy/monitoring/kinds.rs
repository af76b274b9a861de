//! The Prometheus Operator kinds the monitoring kit ships, minimal and
//! strict: only the fields of `monitoring.coreos.com/v1` the kit may use,
//! and any other field is an error (`deny_unknown_fields`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::super::{go_duration, label, typed};

/// A `monitoring.coreos.com/v1` object; its metadata gets the round trip.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Operator<S> {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: ObjectMeta,
    pub(crate) spec: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ServiceMonitorSpec {
    pub(crate) selector: Selector,
    pub(crate) namespace_selector: Option<NamespaceSelector>,
    pub(crate) job_label: Option<String>,
    pub(crate) endpoints: Vec<ScrapeEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Selector {
    pub(crate) match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NamespaceSelector {
    #[serde(default)]
    pub(crate) match_names: Vec<String>,
    pub(crate) any: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScrapeEndpoint {
    pub(crate) port: String,
    pub(crate) path: Option<String>,
    pub(crate) scheme: Option<Scheme>,
    pub(crate) interval: Option<String>,
    pub(crate) scrape_timeout: Option<String>,
    pub(crate) bearer_token_file: Option<String>,
    pub(crate) tls_config: Option<ScrapeTls>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ScrapeTls {
    pub(crate) server_name: Option<String>,
    pub(crate) ca: Option<SecretOrConfigMap>,
    pub(crate) insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecretOrConfigMap {
    pub(crate) secret: Option<KeyRef>,
    pub(crate) config_map: Option<KeyRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRef {
    pub(crate) name: String,
    pub(crate) key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrometheusRuleSpec {
    pub(crate) groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleGroup {
    pub(crate) name: String,
    pub(crate) interval: Option<String>,
    pub(crate) rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDef {
    pub(crate) alert: Option<String>,
    pub(crate) record: Option<String>,
    pub(crate) expr: String,
    #[serde(rename = "for")]
    pub(crate) for_: Option<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

pub(crate) type ServiceMonitor = Operator<ServiceMonitorSpec>;
pub(crate) type PrometheusRule = Operator<PrometheusRuleSpec>;

pub(crate) fn operator<S: DeserializeOwned>(doc: &Value) -> Result<Operator<S>, String> {
    let obj: Operator<S> =
        serde_json::from_value(doc.clone()).map_err(|e| format!("{}: {e}", label(doc)))?;
    typed::<ObjectMeta>(&doc["metadata"]).map_err(|e| format!("{}: metadata: {e}", label(doc)))?;
    if obj.metadata.name.is_none() || obj.metadata.namespace.is_none() {
        return Err(format!("{}: needs a name and a namespace", label(doc)));
    }
    if obj.api_version != "monitoring.coreos.com/v1" {
        return Err(format!(
            "{}: apiVersion {:?} is not monitoring.coreos.com/v1",
            label(doc),
            obj.api_version
        ));
    }
    Ok(obj)
}

/// A strictly parsed ServiceMonitor: every endpoint names a port and scrapes
/// over verified TLS when it uses https.
pub(crate) fn service_monitor(doc: &Value) -> Result<ServiceMonitor, String> {
    let m: ServiceMonitor = operator(doc)?;
    let name = label(doc);
    if m.kind != "ServiceMonitor" || m.spec.selector.match_labels.is_empty() {
        return Err(format!("{name}: needs a selector"));
    }
    if m.spec.endpoints.is_empty() {
        return Err(format!("{name}: no endpoints"));
    }
    for e in &m.spec.endpoints {
        if let Some(t) = &e.tls_config {
            if t.insecure_skip_verify == Some(true) {
                return Err(format!(
                    "{name}: insecureSkipVerify sends the token to anyone"
                ));
            }
            if t.ca
                .as_ref()
                .is_some_and(|c| c.secret.is_some() == c.config_map.is_some())
            {
                return Err(format!(
                    "{name}: ca needs exactly one of secret and configMap"
                ));
            }
        }
        for d in [&e.interval, &e.scrape_timeout].into_iter().flatten() {
            go_duration(d).map_err(|why| format!("{name}: {why}"))?;
        }
    }
    Ok(m)
}

/// A strictly parsed PrometheusRule: unique alerts, each with a severity, a
/// summary and a description.
pub(crate) fn prometheus_rule(doc: &Value) -> Result<PrometheusRule, String> {
    let r: PrometheusRule = operator(doc)?;
    let name = label(doc);
    let mut seen = BTreeSet::new();
    for g in &r.spec.groups {
        for d in g
            .interval
            .iter()
            .chain(g.rules.iter().filter_map(|r| r.for_.as_ref()))
        {
            go_duration(d).map_err(|why| format!("{name}: group {}: {why}", g.name))?;
        }
        for rule in &g.rules {
            let id = match (&rule.alert, &rule.record) {
                (Some(a), None) => a,
                (None, Some(r)) => r,
                _ => {
                    return Err(format!(
                        "{name}: a rule needs exactly one of alert and record"
                    ));
                }
            };
            if !seen.insert(id.clone()) || rule.expr.trim().is_empty() {
                return Err(format!("{name}: {id}: a duplicate name or an empty expr"));
            }
            if rule.alert.is_some() {
                let severity = rule.labels.get("severity").map(String::as_str);
                if !matches!(severity, Some("warning" | "critical")) {
                    return Err(format!("{name}: {id}: severity {severity:?}"));
                }
                let keys: Vec<&str> = rule.annotations.keys().map(String::as_str).collect();
                if keys != ["description", "summary"] {
                    return Err(format!("{name}: {id}: annotations {keys:?}"));
                }
            }
        }
    }
    Ok(r)
}
