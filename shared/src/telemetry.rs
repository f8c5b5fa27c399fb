//! Logs and metrics. Logs are JSON lines through `tracing` (CloudWatch Logs indexes the
//! fields); metrics are CloudWatch Embedded Metric Format lines printed to stdout, so a tick
//! costs no metrics API call.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Installs the JSON log subscriber once per process; `RUST_LOG` filters (default `info`).
/// A second call is harmless (tests and the farm may call it more than once).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}

/// Installs a compact human-readable subscriber (the farm's CLI and tests).
pub fn init_text() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .compact()
        .try_init();
}

/// The unit of a metric, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One EMF record: a set of dimension values and the metrics measured for them.
#[derive(Debug, Clone)]
pub struct MetricRecord {
    namespace: String,
    dimensions: BTreeMap<String, String>,
    metrics: Vec<(String, f64, Unit)>,
}

impl MetricRecord {
    pub fn new(namespace: impl Into<String>) -> Self {
        MetricRecord {
            namespace: namespace.into(),
            dimensions: BTreeMap::new(),
            metrics: Vec::new(),
        }
    }

    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.insert(name.into(), value.into());
        self
    }

    pub fn metric(mut self, name: impl Into<String>, value: f64, unit: Unit) -> Self {
        self.metrics.push((name.into(), value, unit));
        self
    }

    /// Renders the record as one EMF JSON line, stamped with `timestamp_ms`.
    pub fn to_line(&self, timestamp_ms: u64) -> String {
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .map(|(name, _, unit)| json!({ "Name": name, "Unit": unit.as_str() }))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".to_string(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [self.dimensions.keys().collect::<Vec<_>>()],
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert(name.clone(), Value::String(value.clone()));
        }
        for (name, value, _) in &self.metrics {
            root.insert(name.clone(), json!(value));
        }
        Value::Object(root).to_string()
    }

    /// Prints the record to stdout, where the Lambda runtime ships it to CloudWatch Logs.
    pub fn emit(&self) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(0);
        println!("{}", self.to_line(now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_and_dimension() {
        let line = MetricRecord::new("longshore")
            .dimension("Stack", "ci")
            .dimension("Label", "docker")
            .metric("QueueLength", 3.0, Unit::Count)
            .metric("TickDuration", 41.0, Unit::Milliseconds)
            .to_line(1_700_000_000_000);
        let value: Value = serde_json::from_str(&line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(value["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], "longshore");
        assert_eq!(directive["Dimensions"], json!([["Label", "Stack"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "QueueLength", "Unit": "Count"}, {"Name": "TickDuration", "Unit": "Milliseconds"}])
        );
        assert_eq!(value["Label"], "docker");
        assert_eq!(value["QueueLength"], 3.0);
        assert_eq!(value["TickDuration"], 41.0);
    }
}
