//! The scaler's fleet configuration, rendered from the resolved configuration: exactly the
//! [`FleetConfig`] the queue-scaler loads with [`FleetConfig::from_json`], checked with the
//! same [`FleetConfig::validate`] before it is stored.

use crate::domain::custom_resource::Resolved;
use crate::domain::fleet::{FLEET_CONFIG_SCHEMA, FleetConfig, FleetConfigError};

/// The fleet configuration of a resolved `Custom::JenkinsConfig`.
pub fn fleet_config(resolved: &Resolved) -> Result<FleetConfig, FleetConfigError> {
    let config = FleetConfig {
        schema: FLEET_CONFIG_SCHEMA,
        stack: resolved.stack.clone(),
        launch_template: resolved.launch_template.clone(),
        max_agents: resolved.max_agents,
        boot_timeout_secs: resolved.boot_timeout_secs,
        masters: resolved.masters.iter().map(|m| m.name.clone()).collect(),
        labels: resolved.labels.clone(),
    };
    config.validate()?;
    Ok(config)
}

/// The JSON text stored in SSM: pretty-printed, so a human reading the parameter (and a
/// golden file) sees one field per line.
pub fn fleet_json(config: &FleetConfig) -> String {
    // A struct of strings, numbers and lists always serializes.
    serde_json::to_string_pretty(config).unwrap_or_default()
}
