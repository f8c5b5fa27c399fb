//! The fleet configuration: what config-resolver writes to SSM at deploy time and the
//! queue-scaler reads every tick. It holds only resolved physical IDs and checked numbers, so
//! the scaler never has to look anything up or second-guess a value.
//!
//! The JSON form is the contract between the two functions: `serde` derives it, and
//! [`FleetConfig::validate`] is run by both sides (the resolver before storing, the scaler
//! after loading), so a hand-edited parameter cannot slip past either.

use serde::{Deserialize, Serialize};

/// Current version of the JSON layout; bumped on incompatible changes.
pub const FLEET_CONFIG_SCHEMA: u32 = 1;

/// Everything the scaler needs to know about the stack's agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetConfig {
    pub schema: u32,
    /// The stack name: the value of the `longshore:stack` tag and the SSM path prefix.
    pub stack: String,
    /// The agents' launch template (RunInstances overrides only type, subnet and market).
    pub launch_template: LaunchTemplate,
    /// At most this many agent instances in the whole stack, all labels and masters together.
    pub max_agents: u32,
    /// An instance whose node has not connected after this long is an orphan.
    pub boot_timeout_secs: u32,
    /// The masters, by name (the `longshore:master` tag value).
    pub masters: Vec<String>,
    /// Agent templates, matched against queued label expressions in this order.
    pub labels: Vec<LabelTemplate>,
}

/// A launch template reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LaunchTemplate {
    pub id: String,
    /// A version number, `$Latest` or `$Default`.
    pub version: String,
}

/// How agents for one label are launched and retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelTemplate {
    /// The name the template is known by (also the `longshore:label` tag value).
    pub name: String,
    /// The labels the agent's node carries (space separated in Jenkins' `labelString`).
    pub node_labels: Vec<String>,
    /// Executors per agent.
    pub executors: u32,
    /// Where agents may run, in order of preference: each instance type with the subnets
    /// whose availability zone offers it (unusable pairs were dropped by the resolver).
    pub placements: Vec<Placement>,
    /// At most this many agents of this label per master.
    pub max_per_master: u32,
    /// Agents kept running even when idle, per master.
    pub warm_minimum: u32,
    /// An agent idle this long (beyond the warm minimum) is retired.
    pub idle_secs: u32,
    pub spot: SpotPolicy,
}

/// One instance type and the subnets it may launch in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placement {
    pub instance_type: String,
    pub subnets: Vec<Subnet>,
}

/// A subnet and its availability zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub availability_zone: String,
}

/// Whether agents run on spot capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotPolicy {
    /// On-demand only.
    Never,
    /// Spot first, on-demand when spot has no capacity.
    Prefer,
    /// Spot only; no capacity means no agent.
    Only,
}

/// A fleet configuration that cannot be used, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet configuration field {field}: {problem}")]
pub struct FleetConfigError {
    pub field: String,
    pub problem: String,
}

impl FleetConfig {
    /// Parses and validates the JSON stored in SSM.
    pub fn from_json(text: &str) -> Result<FleetConfig, FleetConfigError> {
        let config: FleetConfig = serde_json::from_str(text).map_err(|err| FleetConfigError {
            field: "(document)".to_string(),
            problem: err.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: schema, non-empty lists, sane numbers, unique names.
    pub fn validate(&self) -> Result<(), FleetConfigError> {
        let fail = |field: &str, problem: &str| {
            Err(FleetConfigError {
                field: field.to_string(),
                problem: problem.to_string(),
            })
        };
        if self.schema != FLEET_CONFIG_SCHEMA {
            return fail(
                "schema",
                &format!("expected {FLEET_CONFIG_SCHEMA}, found {}", self.schema),
            );
        }
        if self.stack.trim().is_empty() {
            return fail("stack", "must not be empty");
        }
        if self.launch_template.id.trim().is_empty() {
            return fail("launchTemplate.id", "must not be empty");
        }
        if self.max_agents == 0 {
            return fail("maxAgents", "must be at least 1");
        }
        if self.boot_timeout_secs == 0 {
            return fail("bootTimeoutSecs", "must be at least 1");
        }
        if self.masters.is_empty() {
            return fail("masters", "must name at least one master");
        }
        if self.labels.is_empty() {
            return fail("labels", "must define at least one label");
        }
        for (index, label) in self.labels.iter().enumerate() {
            let at = |field: &str| format!("labels[{index}].{field}");
            if self.labels[..index]
                .iter()
                .any(|other| other.name == label.name)
            {
                return fail(&at("name"), &format!("{:?} is defined twice", label.name));
            }
            if label.node_labels.is_empty() || label.node_labels.iter().any(|l| l.trim().is_empty())
            {
                return fail(&at("nodeLabels"), "must list at least one non-empty label");
            }
            if label.executors == 0 {
                return fail(&at("executors"), "must be at least 1");
            }
            if label.placements.is_empty() || label.placements.iter().any(|p| p.subnets.is_empty())
            {
                return fail(
                    &at("placements"),
                    "needs at least one instance type with a subnet",
                );
            }
            if label.max_per_master == 0 {
                return fail(&at("maxPerMaster"), "must be at least 1");
            }
            if label.warm_minimum > label.max_per_master {
                return fail(&at("warmMinimum"), "must not exceed maxPerMaster");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example() -> FleetConfig {
        FleetConfig {
            schema: FLEET_CONFIG_SCHEMA,
            stack: "ci".to_string(),
            launch_template: LaunchTemplate {
                id: "lt-0abc".to_string(),
                version: "3".to_string(),
            },
            max_agents: 20,
            boot_timeout_secs: 300,
            masters: vec!["master-a".to_string(), "master-b".to_string()],
            labels: vec![LabelTemplate {
                name: "docker".to_string(),
                node_labels: vec!["docker".to_string(), "linux".to_string()],
                executors: 2,
                placements: vec![Placement {
                    instance_type: "c6i.large".to_string(),
                    subnets: vec![Subnet {
                        id: "subnet-1".to_string(),
                        availability_zone: "us-east-1a".to_string(),
                    }],
                }],
                max_per_master: 5,
                warm_minimum: 1,
                idle_secs: 600,
                spot: SpotPolicy::Prefer,
            }],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let config = example();
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(FleetConfig::from_json(&text).unwrap(), config);
        assert!(text.contains("\"maxPerMaster\":5"));
        assert!(text.contains("\"spot\":\"prefer\""));
    }

    #[test]
    fn unknown_fields_and_bad_numbers_are_refused_by_name() {
        let mut value = serde_json::to_value(example()).unwrap();
        value["surprise"] = serde_json::json!(1);
        assert!(FleetConfig::from_json(&value.to_string()).is_err());

        let mut config = example();
        config.labels[0].warm_minimum = 9;
        assert_eq!(
            config.validate().unwrap_err().field,
            "labels[0].warmMinimum"
        );
        let mut config = example();
        config.labels.push(config.labels[0].clone());
        assert_eq!(config.validate().unwrap_err().field, "labels[1].name");
    }
}
