//! The queue-scaler Lambda's handler.
//!
//! EventBridge invokes the function every minute; one invocation ticks every `POLL_INTERVAL`
//! (2 s by default) until shortly before the next one starts, so the scaler reacts in seconds.
//! A DynamoDB lease makes sure only one invocation acts at a time: an overlapping one observes
//! and logs its plan, and acts on nothing.
//!
//! What survives between invocations of a warm process lives in [`Deps`]: the Jenkins
//! credentials (read once per cold start), the fleet configuration (reloaded when its SSM
//! version changes) and the scaler's memory of idle times and fresh launches. Launches are
//! also kept in the lease's table (the launch journal), which every invocation that takes the
//! lease reads before it acts: what a cut-off or dead process launched still counts.

pub mod tick;

use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{info, warn};

pub use tick::{MasterEndpoint, Observed, Scaler, TickReport};

use crate::adapters::aws::ec2::{Ec2Fleet, LaunchTemplateRef};
use crate::adapters::aws::ecs::{EcsMasters, MasterAddress};
use crate::adapters::aws::launches::DynamoLaunchJournal;
use crate::adapters::aws::lease::Lease;
use crate::adapters::aws::secrets::{JenkinsCredentials, jenkins_credentials};
use crate::adapters::aws::ssm::{SsmParams, SsmSecrets};
use crate::adapters::jenkins::JenkinsClient;
use crate::config::{CommonConfig, Settings, Source};
use crate::domain::fleet::FleetConfig;
use crate::error::{AwsError, ConfigError};
use crate::telemetry::{MetricRecord, Unit};

/// The invocation stops ticking this long before its deadline, to answer in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);
/// Metrics namespace.
const NAMESPACE: &str = "longshore";

/// Where the masters are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSource {
    /// A fixed list (`LONGSHORE_MASTERS=name=url,name=url`), for local runs.
    Static(Vec<MasterAddress>),
    /// The ECS services named in the fleet configuration, on this cluster and container port.
    Ecs { cluster: String, port: u16 },
}

/// The queue-scaler's settings, parsed once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueScalerConfig {
    pub common: CommonConfig,
    /// SSM parameter holding the fleet configuration (written by config-resolver).
    pub fleet_parameter: String,
    /// DynamoDB table of the lease.
    pub lease_table: String,
    pub poll_interval: Duration,
    /// How long one invocation keeps ticking (a little under the schedule's minute).
    pub invocation_budget: Duration,
    pub masters: MasterSource,
    /// Secrets Manager secret with the scaler's Jenkins user and API token.
    pub jenkins_secret: String,
    pub jenkins_user: String,
}

impl QueueScalerConfig {
    pub fn from_settings<S: Source>(settings: &Settings<S>) -> Result<Self, ConfigError> {
        let masters = match settings.optional("LONGSHORE_MASTERS") {
            Some(list) => MasterSource::Static(parse_masters(&list)?),
            None => MasterSource::Ecs {
                cluster: settings.required("ECS_CLUSTER")?,
                port: match settings.optional("MASTER_PORT") {
                    None => 8080,
                    Some(port) => port.parse().map_err(|_| ConfigError::Invalid {
                        name: "MASTER_PORT",
                        value: port,
                        reason: "expected a TCP port number".to_string(),
                    })?,
                },
            },
        };
        Ok(QueueScalerConfig {
            common: CommonConfig::from_settings(settings)?,
            fleet_parameter: settings.required("FLEET_CONFIG_PARAMETER")?,
            lease_table: settings.required("LEASE_TABLE")?,
            poll_interval: settings.duration("POLL_INTERVAL", Duration::from_secs(2))?,
            invocation_budget: settings.duration("INVOCATION_BUDGET", Duration::from_secs(55))?,
            masters,
            jenkins_secret: settings.required("JENKINS_SECRET")?,
            jenkins_user: settings
                .optional("JENKINS_USER")
                .unwrap_or_else(|| "longshore".to_string()),
        })
    }
}

/// `LONGSHORE_MASTERS`: `name=url,name=url`, URLs normalised to end with a slash (recovery
/// reads the same setting).
pub(crate) fn parse_masters(list: &str) -> Result<Vec<MasterAddress>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((name, url)) if !name.trim().is_empty() && url.trim().starts_with("http") => {
                Ok(MasterAddress {
                    name: name.trim().to_string(),
                    url: format!("{}/", url.trim().trim_end_matches('/')),
                })
            }
            _ => Err(ConfigError::Invalid {
                name: "LONGSHORE_MASTERS",
                value: list.to_string(),
                reason: format!("entry {entry:?} is not name=http(s)://address"),
            }),
        })
        .collect()
}

/// Why an invocation could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    #[error("the fleet configuration parameter {0} does not exist (has config-resolver run?)")]
    FleetConfigMissing(String),
    #[error("the fleet configuration in {parameter} is unusable: {problem}")]
    FleetConfigInvalid { parameter: String, problem: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl From<ScalerError> for lambda_runtime::Diagnostic {
    fn from(err: ScalerError) -> Self {
        let error_type = match &err {
            ScalerError::FleetConfigMissing(_) => "FleetConfigMissing",
            ScalerError::FleetConfigInvalid { .. } => "FleetConfigInvalid",
            ScalerError::Aws(_) => "AwsError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: err.to_string(),
        }
    }
}

/// Clients built once per cold start, and the warm state.
pub struct Deps {
    config: QueueScalerConfig,
    sdk: aws_config::SdkConfig,
    params: SsmParams,
    lease: Lease,
    http: reqwest::Client,
    warm: Mutex<Option<Warm>>,
}

/// What a warm process keeps between invocations.
struct Warm {
    credentials: JenkinsCredentials,
    fleet_version: i64,
    scaler: Scaler<JenkinsClient, Ec2Fleet, SsmSecrets, DynamoLaunchJournal>,
}

impl Deps {
    pub fn new(sdk: &aws_config::SdkConfig, config: QueueScalerConfig) -> Deps {
        Deps {
            params: SsmParams::new(aws_sdk_ssm::Client::new(sdk)),
            lease: Lease::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.lease_table,
                &config.common.stack,
            ),
            http: JenkinsClient::http_client(),
            sdk: sdk.clone(),
            config,
            warm: Mutex::new(None),
        }
    }
}

/// Handles one scheduled invocation: tick until the budget is spent.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Value, ScalerError> {
    let owner = event.context.request_id.clone();
    let started_ms = now_ms();
    let deadline_ms = (event.context.deadline as i64)
        .min(started_ms + deps.config.invocation_budget.as_millis() as i64);
    let stop_at_ms = deadline_ms - DEADLINE_MARGIN.as_millis() as i64;

    let lease_until = |now: i64| {
        now + (stop_at_ms - now).max(0) + deps.config.poll_interval.as_millis() as i64 * 2
    };
    // The lease is asked for while the configuration is read: both are round trips, and
    // neither needs the other. If preparing fails, a lease already taken is given back.
    let mut guard = deps.warm.lock().await;
    let (prepared, acquired) = tokio::join!(
        prepare(deps, &mut guard),
        deps.lease
            .acquire(&owner, started_ms, lease_until(started_ms)),
    );
    let ready = async {
        let warm = prepared?;
        let masters = find_masters(deps, warm).await?;
        Ok::<_, ScalerError>((warm, masters))
    };
    let (warm, masters) = match ready.await {
        Ok(ready) => ready,
        Err(err) => {
            if matches!(acquired, Ok(true)) {
                give_back(deps, &owner).await;
            }
            return Err(err);
        }
    };
    warm.scaler.set_masters(masters);
    if !acquired? {
        info!("another invocation holds the lease; observing only");
        let report = warm.scaler.observe_only(now_ms()).await;
        return Ok(json!({"acted": false, "plannedLaunches": report.plan.launches.len()}));
    }
    if !deps.config.common.dry_run
        && let Err(err) = warm.scaler.recall_launches(now_ms()).await
    {
        // Without the journal an unsettled launch could be repeated past a cap: no acting.
        // The lease goes back so the next invocation need not wait for it to expire.
        warn!(error = %err, "cannot read the launch journal; not acting");
        give_back(deps, &owner).await;
        return Err(err.into());
    }
    let mut totals = Totals::default();
    loop {
        let tick_started = now_ms();
        let report = warm.scaler.tick(tick_started).await;
        emit_metrics(&deps.config.common.stack, &report, now_ms() - tick_started);
        totals.add(&report);
        let next = now_ms() + deps.config.poll_interval.as_millis() as i64;
        if next >= stop_at_ms {
            break;
        }
        tokio::time::sleep(deps.config.poll_interval).await;
        // Keep the lease while ticking; losing it (it expired and another took it) stops us.
        if !deps
            .lease
            .acquire(&owner, now_ms(), lease_until(now_ms()))
            .await?
        {
            warn!("lease lost to another invocation; stopping");
            break;
        }
    }
    deps.lease.release(&owner).await?;
    Ok(json!({
        "acted": !deps.config.common.dry_run,
        "ticks": totals.ticks,
        "launched": totals.launched,
        "retired": totals.retired,
        "orphansRemoved": totals.orphans,
        "errors": totals.errors,
    }))
}

/// Gives the lease back early, so the next invocation need not wait for it to expire.
async fn give_back(deps: &Deps, owner: &str) {
    if let Err(err) = deps.lease.release(owner).await {
        warn!(error = %err, "cannot release the lease");
    }
}

/// The warm state, read at a cold start, else with the fleet configuration reloaded when its
/// version changed. A warm state survives a failed reload (its idle times and launches stay).
async fn prepare<'w>(deps: &Deps, warm: &'w mut Option<Warm>) -> Result<&'w mut Warm, ScalerError> {
    let Some(warm) = warm else {
        return Ok(warm.insert(cold_prepare(deps).await?));
    };
    let parameter = &deps.config.fleet_parameter;
    let stored = deps
        .params
        .get(parameter)
        .await?
        .ok_or_else(|| ScalerError::FleetConfigMissing(parameter.clone()))?;
    if warm.fleet_version != stored.version {
        let fleet = parse_fleet(parameter, &stored.value)?;
        info!(
            version = stored.version,
            "fleet configuration changed; reloaded"
        );
        warm.scaler.set_config(fleet);
        warm.fleet_version = stored.version;
    }
    Ok(warm)
}

/// A cold start's preparation: the fleet configuration and the credentials, read at once.
async fn cold_prepare(deps: &Deps) -> Result<Warm, ScalerError> {
    let parameter = &deps.config.fleet_parameter;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&deps.sdk);
    let (stored, credentials) = tokio::join!(
        deps.params.get(parameter),
        jenkins_credentials(
            &secrets_client,
            &deps.config.jenkins_secret,
            &deps.config.jenkins_user,
        )
    );
    let stored = stored?.ok_or_else(|| ScalerError::FleetConfigMissing(parameter.clone()))?;
    let fleet = parse_fleet(parameter, &stored.value)?;
    let credentials = credentials?;
    let template = LaunchTemplateRef {
        id: fleet.launch_template.id.clone(),
        version: fleet.launch_template.version.clone(),
    };
    let ec2 = Ec2Fleet::new(
        aws_sdk_ec2::Client::new(&deps.sdk),
        &deps.config.common.stack,
        template,
    );
    let secrets = SsmSecrets::new(aws_sdk_ssm::Client::new(&deps.sdk));
    let journal = DynamoLaunchJournal::new(
        aws_sdk_dynamodb::Client::new(&deps.sdk),
        &deps.config.lease_table,
        &deps.config.common.stack,
    );
    let scaler = Scaler::new(
        Vec::new(),
        ec2,
        secrets,
        journal,
        fleet,
        deps.config.common.dry_run,
    );
    Ok(Warm {
        credentials,
        fleet_version: stored.version,
        scaler,
    })
}

fn parse_fleet(parameter: &str, text: &str) -> Result<FleetConfig, ScalerError> {
    FleetConfig::from_json(text).map_err(|err| ScalerError::FleetConfigInvalid {
        parameter: parameter.to_string(),
        problem: err.to_string(),
    })
}

/// The masters of this invocation, each with its Jenkins client.
async fn find_masters(
    deps: &Deps,
    warm: &Warm,
) -> Result<Vec<MasterEndpoint<JenkinsClient>>, ScalerError> {
    let addresses = match &deps.config.masters {
        MasterSource::Static(list) => list.clone(),
        MasterSource::Ecs { cluster, port } => {
            EcsMasters::new(aws_sdk_ecs::Client::new(&deps.sdk), cluster, *port)
                .find(&warm.scaler.config().masters)
                .await?
        }
    };
    let credentials = &warm.credentials;
    Ok(addresses
        .into_iter()
        .map(|address| MasterEndpoint {
            jenkins: JenkinsClient::new(
                deps.http.clone(),
                &address.url,
                &credentials.user,
                &credentials.token,
            ),
            name: address.name,
            url: address.url,
        })
        .collect())
}

/// Per-invocation totals returned to the caller.
#[derive(Debug, Default)]
struct Totals {
    ticks: usize,
    launched: usize,
    retired: usize,
    orphans: usize,
    errors: usize,
}

impl Totals {
    fn add(&mut self, report: &TickReport) {
        self.ticks += 1;
        self.launched += report.launched.len();
        self.retired += report.retired.len();
        self.orphans += report.orphans_removed.len();
        self.errors += report.errors.len();
    }
}

/// One EMF line per master and label, and one for the tick as a whole.
pub fn emit_metrics(stack: &str, report: &TickReport, tick_ms: i64) {
    for ((master, label), seen) in &report.observed {
        MetricRecord::new(NAMESPACE)
            .dimension("Stack", stack)
            .dimension("Master", master.as_str())
            .dimension("Label", label.as_str())
            .metric("QueueLength", seen.waiting as f64, Unit::Count)
            .metric("OldestWait", seen.oldest_wait_ms as f64, Unit::Milliseconds)
            .metric("PendingAgents", seen.pending as f64, Unit::Count)
            .metric("IdleAgents", seen.idle as f64, Unit::Count)
            .metric("BusyAgents", seen.busy as f64, Unit::Count)
            .emit();
    }
    MetricRecord::new(NAMESPACE)
        .dimension("Stack", stack)
        .metric("Launched", report.launched.len() as f64, Unit::Count)
        .metric("Retired", report.retired.len() as f64, Unit::Count)
        .metric("Orphans", report.orphans_removed.len() as f64, Unit::Count)
        .metric("Errors", report.errors.len() as f64, Unit::Count)
        .metric(
            "UnreadableMasters",
            report.unreadable_masters.len() as f64,
            Unit::Count,
        )
        .metric("TickDuration", tick_ms as f64, Unit::Milliseconds)
        .emit();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("LONGSHORE_STACK", "ci"),
            ("FLEET_CONFIG_PARAMETER", "/longshore/ci/fleet"),
            ("LEASE_TABLE", "ci-lease"),
            ("JENKINS_SECRET", "ci/scaler"),
        ]
    }

    struct Pairs(Vec<(&'static str, &'static str)>);
    impl Source for Pairs {
        fn get(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn static_masters_and_defaults() {
        let mut env = base();
        env.push((
            "LONGSHORE_MASTERS",
            "a=http://127.0.0.1:8080, b=http://127.0.0.1:8081/",
        ));
        let config = QueueScalerConfig::from_settings(&Settings::new(Pairs(env))).unwrap();
        assert_eq!(config.poll_interval, Duration::from_secs(2));
        assert_eq!(
            config.masters,
            MasterSource::Static(vec![
                MasterAddress {
                    name: "a".to_string(),
                    url: "http://127.0.0.1:8080/".to_string()
                },
                MasterAddress {
                    name: "b".to_string(),
                    url: "http://127.0.0.1:8081/".to_string()
                },
            ])
        );
    }

    #[test]
    fn ecs_needs_a_cluster_and_bad_values_name_themselves() {
        let err = QueueScalerConfig::from_settings(&Settings::new(Pairs(base()))).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "ECS_CLUSTER"
            }
        );
        let mut env = base();
        env.push(("LONGSHORE_MASTERS", "a=ftp://x"));
        let err = QueueScalerConfig::from_settings(&Settings::new(Pairs(env))).unwrap_err();
        assert!(err.to_string().contains("LONGSHORE_MASTERS"));
        let mut env = base();
        env.push(("ECS_CLUSTER", "c"));
        env.push(("POLL_INTERVAL", "fast"));
        let err = QueueScalerConfig::from_settings(&Settings::new(Pairs(env))).unwrap_err();
        assert!(err.to_string().contains("POLL_INTERVAL"));
    }
}
