//! The demo's scaling driver: the queue-scaler's own tick ([`Scaler`]) run in-process on a
//! fixed period, until the demo invokes the real Lambda binary on its schedule.
//!
//! It talks to the farm exactly as the Lambda does: Jenkins REST for queue and computers, EC2
//! RunInstances from the launch template, SSM for the agents' secrets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use longshore::adapters::aws::ec2::Ec2Fleet;
use longshore::adapters::aws::ssm::SsmSecrets;
use longshore::adapters::jenkins::JenkinsClient;
use longshore::domain::fleet::{
    FLEET_CONFIG_SCHEMA, FleetConfig, LabelTemplate, LaunchTemplate, Placement, SpotPolicy, Subnet,
};
use longshore::handlers::queue_scaler::{MasterEndpoint, Scaler, TickReport};
use tracing::warn;

/// Counters the demo reports, summed over ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverCounts {
    pub launched: usize,
    pub retired: usize,
    pub retirements_cancelled: usize,
    pub orphans_removed: usize,
    pub errors: usize,
}

impl DriverCounts {
    fn add(&mut self, report: &TickReport) {
        self.launched += report.launched.len();
        self.retired += report.retired.len();
        self.retirements_cancelled += report.retirements_cancelled.len();
        self.orphans_removed += report.orphans_removed.len();
        self.errors += report.errors.len();
    }
}

/// The demo's two agent templates: most images build on a small agent with two executors,
/// some need a large one.
pub fn demo_fleet(
    stack: &str,
    template_id: &str,
    subnets: &[(String, String)],
    masters: &[&str],
    idle: Duration,
) -> FleetConfig {
    let subnets: Vec<Subnet> = subnets
        .iter()
        .map(|(id, az)| Subnet {
            id: id.clone(),
            availability_zone: az.clone(),
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

/// The scaler and its running totals.
pub struct Driver {
    scaler: Scaler<JenkinsClient, Ec2Fleet, SsmSecrets>,
    pub counts: DriverCounts,
}

impl Driver {
    pub fn new(
        masters: Vec<MasterEndpoint<JenkinsClient>>,
        fleet: Ec2Fleet,
        secrets: SsmSecrets,
        config: FleetConfig,
    ) -> Driver {
        Driver {
            scaler: Scaler::new(masters, fleet, secrets, config, false),
            counts: DriverCounts::default(),
        }
    }

    /// One scaler tick at the current wall-clock time.
    pub async fn tick(&mut self) -> TickReport {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let report = self.scaler.tick(now_ms).await;
        for error in &report.errors {
            warn!(error = %error, "scaler tick error");
        }
        self.counts.add(&report);
        report
    }
}
