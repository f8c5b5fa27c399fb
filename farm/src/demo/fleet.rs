//! The demo's fleet configuration: what config-resolver would store for a stack with two
//! agent templates, spread over the network's subnets.

use std::time::Duration;

use crate::moto::TestSubnet;

use longshore::domain::fleet::{
    FLEET_CONFIG_SCHEMA, FleetConfig, LabelTemplate, LaunchTemplate, Placement, SpotPolicy, Subnet,
};

/// The demo's two agent templates: most images build on a small agent with two executors,
/// some need a large one.
pub fn demo_fleet(
    stack: &str,
    template_id: &str,
    subnets: &[TestSubnet],
    masters: &[&str],
    idle: Duration,
) -> FleetConfig {
    let subnets: Vec<Subnet> = subnets
        .iter()
        .map(|s| Subnet {
            id: s.subnet_id.clone(),
            availability_zone: s.availability_zone.clone(),
        })
        .collect();
    let template =
        |name: &str, label: &str, types: &[&str], executors: u32, max: u32| LabelTemplate {
            name: name.to_string(),
            node_labels: vec![label.to_string(), "linux".to_string()],
            executors,
            placements: types
                .iter()
                .map(|t| Placement {
                    instance_type: t.to_string(),
                    subnets: subnets.clone(),
                })
                .collect(),
            max_per_master: max,
            warm_minimum: 0,
            idle_secs: idle.as_secs() as u32,
            spot: SpotPolicy::Prefer,
        };
    FleetConfig {
        schema: FLEET_CONFIG_SCHEMA,
        stack: stack.to_string(),
        launch_template: LaunchTemplate {
            id: template_id.to_string(),
            version: "$Latest".to_string(),
        },
        max_agents: 16,
        boot_timeout_secs: 60,
        masters: masters.iter().map(|m| m.to_string()).collect(),
        labels: vec![
            template("docker", "docker", &["c6i.large", "m6i.large"], 2, 6),
            template(
                "docker-large",
                "docker-large",
                &["c6i.2xlarge", "m6i.2xlarge"],
                1,
                4,
            ),
        ],
    }
}
