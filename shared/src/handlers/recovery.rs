//! recovery's handler: one EventBridge event in, the pure
//! [`crate::domain::recovery::classify`] decides, this module carries the actions out through
//! the ports. Also the offline half, [`explain`]: `recovery explain EVENT.json` prints what
//! the classifier makes of a saved event, without AWS credentials or side effects.
//!
//! How each action is made idempotent (EventBridge delivers at least once, late and out of
//! order):
//! - Alerts are claimed in the state table before they are published, keyed by the stopped
//!   task (ECS may send more than one STOPPED event for a task) or else by the event's `id` (a
//!   redelivery keeps it) and the action's place; a failed publish gives the claim back so the
//!   retry alerts. Crash-loop alerts are claimed per master for the window.
//! - Unexpected stops are recorded once per task ARN (conditional put), so a redelivered stop
//!   is not counted twice towards a crash loop.
//! - Agent actions read before they write: a node already offline is not toggled (Jenkins only
//!   has a toggle), a node or secret already gone is fine, and EC2 termination goes through
//!   [`Ec2Fleet::terminate`], which acts only on instances EC2 says carry the stack's tag. An
//!   instance not listed with the stack's tag is not ours, and the event is skipped.
//! - Host drains: DRAINING twice is a no-op, a pending drain is written only if absent (its
//!   first deadline stands), and a lifecycle action no longer pending counts as done.
//!
//! Host drains never wait inside an invocation. The lifecycle event sets the host's container
//! instance DRAINING; with no task left there it completes the action at once, otherwise it
//! records a pending drain (instance, hook, group, token, deadline) and sends a heartbeat.
//! Every scheduled event (the template's `rate(1 minute)` rule) looks at each pending drain
//! again: tasks gone → complete; tasks left before the deadline → heartbeat; past the
//! deadline → complete anyway and alert. Completion is always `CONTINUE`: for a *terminating*
//! instance `ABANDON` terminates it just the same (the lifecycle hook only delays the
//! termination, it cannot cancel it), but `ABANDON` also skips any other lifecycle hooks on
//! the group, which may have work of their own; `CONTINUE` lets them run.
//!
//! Unknown and malformed events are logged and answered with success (retrying a poison event
//! helps nobody); AWS and Jenkins failures are returned as errors, so EventBridge retries the
//! whole event, which the idempotency above makes safe. `DRY_RUN=true` classifies, checks the
//! instance's tag, and logs each action as "would …" without taking it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_ecs::primitives::{DateTime, DateTimeFormat};
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::adapters::aws::autoscaling::{AsgLifecycle, LifecycleAction, LifecycleOutcome};
use crate::adapters::aws::ec2::{AgentInstance, AgentState, Ec2Fleet, LaunchTemplateRef, tags};
use crate::adapters::aws::ecs::{EcsHosts, EcsMasters};
use crate::adapters::aws::secrets::{JenkinsCredentials, jenkins_credentials};
use crate::adapters::aws::sns::SnsAlerts;
use crate::adapters::aws::ssm::{SsmSecrets, agent_secret_path};
use crate::adapters::aws::state::{PendingDrain, RecoveryState};
use crate::adapters::jenkins::JenkinsClient;
use crate::config::{CommonConfig, Settings, Source};
use crate::domain::recovery::{
    Action, Classification, Condition, Context, DrainStep, classify, crash_loop, drain_step,
};
use crate::error::{AwsError, ConfigError, JenkinsError};
use crate::handlers::queue_scaler::MasterSource;
use crate::handlers::queue_scaler::parse_masters;
use crate::ports::{Alerts, Fleet, Jenkins, Lifecycles, MasterHosts, RecoveryStore, Secrets};
use crate::telemetry::{MetricRecord, Unit};

/// The settings `explain` reads to know the stack's own resources. Each one left unset skips
/// its check, and the classification lists the skipped check under `unchecked`.
pub const ENV_CLUSTER: &str = "LONGSHORE_ECS_CLUSTER";
/// Comma-separated names of the master ECS services.
pub const ENV_MASTER_SERVICES: &str = "LONGSHORE_MASTER_SERVICES";
/// The masters' Auto Scaling group name.
pub const ENV_MASTER_ASG: &str = "LONGSHORE_MASTER_ASG";

/// Why an event file could not be explained: the operator's input, not a bug, so exit 2.
#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("cannot read event file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event file {path} is not JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Builds the [`Context`] from settings read through `get` (the environment in the binary, a
/// map in tests). Blank values count as unset.
pub fn context_from(get: impl Fn(&str) -> Option<String>) -> Context {
    let set = |key: &str| {
        get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Context {
        cluster: set(ENV_CLUSTER),
        master_services: set(ENV_MASTER_SERVICES)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        master_asg: set(ENV_MASTER_ASG),
    }
}

/// `recovery explain EVENT.json` for the binary: prints the classification as JSON and returns
/// the exit code (0; 2 for bad usage or an unreadable or non-JSON file). Reads the stack's
/// identifiers from the environment and never calls AWS.
pub fn explain_command(args: &[String]) -> i32 {
    let [path] = args else {
        eprintln!("usage: recovery explain EVENT.json");
        return 2;
    };
    let ctx = context_from(|key| std::env::var(key).ok());
    match explain(Path::new(path), &ctx) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(err) => {
            eprintln!("recovery explain: {err}");
            2
        }
    }
}

/// Classifies the event saved in `path` and returns it as pretty JSON. A UTF-8 byte order mark
/// is skipped (some published samples start with one).
pub fn explain(path: &Path, ctx: &Context) -> Result<String, ExplainError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExplainError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let event: Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|source| {
            ExplainError::Json {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let classification = classify(&event, ctx);
    // Serializing a derived Serialize of strings and enums into a String cannot fail.
    Ok(serde_json::to_string_pretty(&classification)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string())))
}

/// Agent node names are the instance IDs; alerts about one event are remembered this long.
const ALERT_MEMORY_SECS: i64 = 24 * 3600;
/// Metrics namespace (the scaler's).
const NAMESPACE: &str = "longshore";
/// The completion result: see the module doc for why never ABANDON.
const COMPLETE_RESULT: &str = "CONTINUE";

/// recovery's settings, parsed once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    pub common: CommonConfig,
    /// The stack's cluster, master services and master group: events about others are ignored.
    pub context: Context,
    /// SNS topic for alerts.
    pub alert_topic: String,
    /// DynamoDB table (partition key `pk`) for recovery's state; may be the scaler's lease table.
    pub state_table: String,
    /// Secrets Manager secret with the Jenkins user and API token (as the scaler reads it).
    pub jenkins_secret: String,
    pub jenkins_user: String,
    pub masters: MasterSource,
    /// A crash loop: this many unexpected stops of one master ...
    pub crash_loop_stops: usize,
    /// ... within this window.
    pub crash_loop_window: Duration,
    /// How long a host drain may wait for its tasks before the termination goes on anyway.
    pub drain_timeout: Duration,
}

impl RecoveryConfig {
    pub fn from_settings<S: Source>(settings: &Settings<S>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_settings(settings)?;
        let context = context_from(|key| settings_get(settings, key));
        let cluster = settings.required(ENV_CLUSTER)?;
        if context.master_services.is_empty() {
            return Err(ConfigError::Missing {
                name: ENV_MASTER_SERVICES,
            });
        }
        settings.required(ENV_MASTER_ASG)?;
        let masters = match settings.optional("LONGSHORE_MASTERS") {
            Some(list) => MasterSource::Static(parse_masters(&list)?),
            None => MasterSource::Ecs {
                cluster,
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
        let crash_loop_stops = match settings.optional("CRASH_LOOP_STOPS") {
            None => 3,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "CRASH_LOOP_STOPS",
                        value: text,
                        reason: "expected a whole number above 0".to_string(),
                    });
                }
            },
        };
        Ok(RecoveryConfig {
            common,
            context,
            alert_topic: settings.required("ALERT_TOPIC_ARN")?,
            state_table: settings.required("STATE_TABLE")?,
            jenkins_secret: settings.required("JENKINS_SECRET")?,
            jenkins_user: settings
                .optional("JENKINS_USER")
                .unwrap_or_else(|| "longshore".to_string()),
            masters,
            crash_loop_stops,
            crash_loop_window: settings
                .duration("CRASH_LOOP_WINDOW", Duration::from_secs(15 * 60))?,
            drain_timeout: settings.duration("DRAIN_TIMEOUT", Duration::from_secs(45 * 60))?,
        })
    }
}

/// [`Settings`] offers typed reads only; `context_from` wants the raw value.
fn settings_get<S: Source>(settings: &Settings<S>, key: &str) -> Option<String> {
    match key {
        ENV_CLUSTER => settings.optional(ENV_CLUSTER),
        ENV_MASTER_SERVICES => settings.optional(ENV_MASTER_SERVICES),
        ENV_MASTER_ASG => settings.optional(ENV_MASTER_ASG),
        _ => None,
    }
}

/// Why an event's actions did not all get done; EventBridge retries the event.
#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Jenkins(#[from] JenkinsError),
    #[error("{} actions failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<RecoveryError>),
}

impl From<RecoveryError> for lambda_runtime::Diagnostic {
    fn from(err: RecoveryError) -> Self {
        let error_type = match &err {
            RecoveryError::Aws(_) => "AwsError",
            RecoveryError::Jenkins(_) => "JenkinsError",
            RecoveryError::Several(_) => "SeveralFailures",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: err.to_string(),
        }
    }
}

/// Clients built once per cold start; the Jenkins credentials are read on first need.
pub struct Deps {
    pub config: RecoveryConfig,
    sdk: aws_config::SdkConfig,
    http: reqwest::Client,
    credentials: Mutex<Option<JenkinsCredentials>>,
    actor: Actor<Ec2Fleet, SsmSecrets, SnsAlerts, AsgLifecycle, EcsHosts, RecoveryState>,
}

impl Deps {
    pub fn new(sdk: &aws_config::SdkConfig, config: RecoveryConfig) -> Deps {
        let stack = config.common.stack.clone();
        let cluster = config.context.cluster.clone().unwrap_or_default();
        let actor = Actor {
            stack: stack.clone(),
            dry_run: config.common.dry_run,
            // recovery never launches: the launch template is not needed and left empty.
            fleet: Ec2Fleet::new(
                aws_sdk_ec2::Client::new(sdk),
                &stack,
                LaunchTemplateRef {
                    id: String::new(),
                    version: String::new(),
                },
            ),
            secrets: SsmSecrets::new(aws_sdk_ssm::Client::new(sdk)),
            alerts: SnsAlerts::new(aws_sdk_sns::Client::new(sdk), &config.alert_topic),
            lifecycle: AsgLifecycle::new(aws_sdk_autoscaling::Client::new(sdk)),
            hosts: EcsHosts::new(aws_sdk_ecs::Client::new(sdk), &cluster),
            store: RecoveryState::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.state_table,
                &stack,
            ),
            crash_loop_stops: config.crash_loop_stops,
            crash_loop_window: config.crash_loop_window.as_secs() as i64,
            drain_timeout: config.drain_timeout.as_secs() as i64,
        };
        Deps {
            sdk: sdk.clone(),
            http: JenkinsClient::http_client(),
            credentials: Mutex::new(None),
            config,
            actor,
        }
    }

    /// The masters' Jenkins clients, looked up when an action needs them.
    async fn masters(&self) -> Result<Vec<(String, JenkinsClient)>, RecoveryError> {
        let addresses = match &self.config.masters {
            MasterSource::Static(list) => list.clone(),
            MasterSource::Ecs { cluster, port } => {
                EcsMasters::new(aws_sdk_ecs::Client::new(&self.sdk), cluster, *port)
                    .find(&self.config.context.master_services)
                    .await?
            }
        };
        let mut guard = self.credentials.lock().await;
        let credentials = match guard.as_ref() {
            Some(credentials) => credentials.clone(),
            None => {
                let read = jenkins_credentials(
                    &aws_sdk_secretsmanager::Client::new(&self.sdk),
                    &self.config.jenkins_secret,
                    &self.config.jenkins_user,
                )
                .await?;
                guard.insert(read).clone()
            }
        };
        Ok(addresses
            .into_iter()
            .map(|address| {
                let client = JenkinsClient::new(
                    self.http.clone(),
                    &address.url,
                    &credentials.user,
                    &credentials.token,
                );
                (address.name, client)
            })
            .collect())
    }
}

/// Handles one event: classify, then act. The payload is taken as plain JSON so that an
/// event that does not fit the typed envelope is still answered (skipped), not refused.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, RecoveryError> {
    let payload = event.payload;
    let event_id = log_envelope(&payload, &event.context.request_id);
    let classification = classify(&payload, &deps.config.context);
    let (kind, cause, only_if, actions, unchecked) = match classification {
        Classification::Act {
            kind,
            cause,
            only_if,
            actions,
            unchecked,
            ..
        } => (kind, cause, only_if, actions, unchecked),
        Classification::Ignored { reason } => {
            info!(%reason, "event skipped");
            return Ok(json!({"outcome": "ignored", "reason": reason}));
        }
    };
    if !unchecked.is_empty() {
        // Config requires every identifier, so this cannot happen; refuse to guess if it does.
        warn!(
            ?unchecked,
            "event skipped: the stack's identifiers are not all configured"
        );
        return Ok(json!({"outcome": "ignored", "reason": "unchecked context"}));
    }
    info!(?kind, %cause, "event classified");
    let needs_masters = actions.iter().any(|a| {
        matches!(
            a,
            Action::RetireMasterAgents { .. }
                | Action::TakeNodeOffline { .. }
                | Action::RemoveAgent { .. }
        )
    });
    let agent = match &only_if {
        Some(Condition::InstanceTaggedOurs { instance_id }) => {
            match deps.actor.our_agent(instance_id).await? {
                Some(agent) => Some(agent),
                None => {
                    let reason = format!(
                        "instance {instance_id} does not carry the stack's tag {}={}: not ours",
                        tags::STACK,
                        deps.config.common.stack
                    );
                    info!(%reason, "event skipped");
                    return Ok(json!({"outcome": "ignored", "reason": reason}));
                }
            }
        }
        None => None,
    };
    let masters = if needs_masters && !deps.config.common.dry_run {
        deps.masters().await?
    } else {
        Vec::new()
    };
    let stopped_task = actions.iter().find_map(|a| match a {
        Action::RecordStop { task_arn, .. } => Some(task_arn.as_str()),
        _ => None,
    });
    let run = Run {
        event_id: event_id.as_deref(),
        agent: agent.as_ref(),
        masters: &masters,
        stopped_task,
        now: now_secs(),
    };
    let (done, errors) = deps.actor.act_all(&run, &actions).await;
    if let Some(err) = into_error(errors) {
        return Err(err);
    }
    Ok(json!({
        "outcome": "act",
        "kind": kind,
        "cause": cause,
        "acted": !deps.config.common.dry_run,
        "done": done,
    }))
}

/// Logs the envelope as the typed [`EventBridgeEvent`] reads it; returns the event's `id`.
fn log_envelope(payload: &Value, request_id: &str) -> Option<String> {
    match serde_json::from_value::<EventBridgeEvent<Value>>(payload.clone()) {
        Ok(typed) => {
            info!(
                request_id,
                id = typed.id.as_deref().unwrap_or(""),
                detail_type = %typed.detail_type,
                source = %typed.source,
                time = ?typed.time,
                "event received"
            );
            typed.id
        }
        Err(err) => {
            // Classified anyway: the classifier names what is missing or wrong.
            info!(request_id, %err, "event received; it does not fit the typed EventBridge envelope");
            payload
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
    }
}

fn into_error(mut errors: Vec<RecoveryError>) -> Option<RecoveryError> {
    match errors.len() {
        0 => None,
        1 => errors.pop(),
        _ => Some(RecoveryError::Several(errors)),
    }
}

/// What one invocation knows while acting.
pub struct Run<'a, J> {
    /// The event's `id`, the key that makes alerts once-only across redeliveries.
    pub event_id: Option<&'a str>,
    /// The agent instance the event is about, checked to carry the stack's tag.
    pub agent: Option<&'a AgentInstance>,
    /// The reachable masters by name.
    pub masters: &'a [(String, J)],
    /// The stopped master task the event is about: its alert is sent once per task, however
    /// many STOPPED events ECS sends for it.
    pub stopped_task: Option<&'a str>,
    /// Epoch seconds.
    pub now: i64,
}

/// Carries out actions through the ports.
pub struct Actor<F, S, A, L, H, R> {
    pub stack: String,
    pub dry_run: bool,
    pub fleet: F,
    pub secrets: S,
    pub alerts: A,
    pub lifecycle: L,
    pub hosts: H,
    pub store: R,
    pub crash_loop_stops: usize,
    /// Seconds.
    pub crash_loop_window: i64,
    /// Seconds.
    pub drain_timeout: i64,
}

impl<F, S, A, L, H, R> Actor<F, S, A, L, H, R>
where
    F: Fleet + Sync,
    S: Secrets + Sync,
    A: Alerts + Sync,
    L: Lifecycles + Sync,
    H: MasterHosts + Sync,
    R: RecoveryStore + Sync,
{
    /// The stack's agent instance with this ID, if EC2 lists it with the stack's tag.
    pub async fn our_agent(&self, instance_id: &str) -> Result<Option<AgentInstance>, AwsError> {
        Ok(self
            .fleet
            .agents()
            .await?
            .into_iter()
            .find(|agent| agent.id == instance_id))
    }

    /// Every action, in order; one failing does not stop the others (each is idempotent and
    /// the whole event is retried). Returns what was done and what failed.
    pub async fn act_all<J: Jenkins + Sync>(
        &self,
        run: &Run<'_, J>,
        actions: &[Action],
    ) -> (Vec<String>, Vec<RecoveryError>) {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            if self.dry_run && !matches!(action, Action::Metric { .. }) {
                info!(?action, "dry run: would {}", describe(action));
                done.push(format!("would {}", describe(action)));
                continue;
            }
            match self.act(run, index, action).await {
                Ok(mut what) => {
                    for line in &what {
                        info!(%line, "done");
                    }
                    done.append(&mut what);
                }
                Err(err) => {
                    warn!(%err, ?action, "action failed");
                    errors.push(err);
                }
            }
        }
        (done, errors)
    }

    async fn act<J: Jenkins + Sync>(
        &self,
        run: &Run<'_, J>,
        index: usize,
        action: &Action,
    ) -> Result<Vec<String>, RecoveryError> {
        match action {
            Action::Alert { subject, message } => {
                let key = alert_key(run, index);
                let until = run.now + ALERT_MEMORY_SECS;
                Ok(vec![
                    self.alert_once(key.as_deref(), run.now, until, subject, message)
                        .await?,
                ])
            }
            Action::RetireMasterAgents { master } => self.retire(run, master).await,
            Action::RecordStop {
                master,
                task_arn,
                stopped_at,
            } => {
                self.record_stop(run, master, task_arn, stopped_at.as_deref())
                    .await
            }
            Action::DrainHost {
                ec2_instance_id,
                lifecycle,
            } => {
                let action = LifecycleAction {
                    asg_name: lifecycle.asg_name.clone(),
                    hook_name: lifecycle.hook_name.clone(),
                    action_token: lifecycle.action_token.clone(),
                    instance_id: ec2_instance_id.clone(),
                };
                Ok(vec![self.drain_host(run, &action).await?])
            }
            Action::TakeNodeOffline {
                instance_id,
                reason,
            } => Ok(vec![self.take_offline(run, instance_id, reason).await?]),
            Action::RemoveAgent { instance_id } => self.remove_agent(run, instance_id).await,
            Action::Metric { name } => {
                MetricRecord::new(NAMESPACE)
                    .dimension("Stack", self.stack.as_str())
                    .metric(name.as_str(), 1.0, Unit::Count)
                    .emit();
                Ok(vec![format!("metric {name}")])
            }
            Action::CheckDrains => self.check_drains(run).await,
        }
    }

    /// Publishes unless the claim `key` says it was sent; without a key it always publishes.
    async fn alert_once(
        &self,
        key: Option<&str>,
        now: i64,
        until: i64,
        subject: &str,
        message: &str,
    ) -> Result<String, RecoveryError> {
        if let Some(key) = key
            && !self.store.claim_alert(key, now, until).await?
        {
            return Ok(format!("alert {subject:?} already sent"));
        }
        if let Err(err) = self.alerts.publish(subject, message).await {
            if let Some(key) = key {
                // Give the claim back so the retry publishes; if that fails too, the alert
                // is lost and the log line below is what is left of it.
                if let Err(release) = self.store.release_alert(key).await {
                    warn!(%release, %subject, "alert claim not released");
                }
            }
            return Err(err.into());
        }
        Ok(format!("alert {subject:?} published"))
    }

    /// Deletes the master's nodes (if it answers), terminates its agents and deletes their
    /// secrets. A master that does not answer has crashed: its replacement starts without
    /// those nodes, so only EC2 and SSM need cleaning.
    async fn retire<J: Jenkins + Sync>(
        &self,
        run: &Run<'_, J>,
        master: &str,
    ) -> Result<Vec<String>, RecoveryError> {
        let agents: Vec<AgentInstance> = self
            .fleet
            .agents()
            .await?
            .into_iter()
            .filter(|agent| agent.master.as_deref() == Some(master))
            .collect();
        let mut done = Vec::new();
        if let Some(jenkins) = jenkins_of(run, master) {
            match jenkins.computers().await {
                Ok(computers) => {
                    for agent in &agents {
                        if computers
                            .computer
                            .iter()
                            .any(|c| c.display_name == agent.id)
                        {
                            match jenkins.delete_node(&agent.id).await {
                                Ok(()) => done.push(format!("node {} deleted", agent.id)),
                                Err(err) => warn!(%err, node = %agent.id, "node not deleted"),
                            }
                        }
                    }
                }
                Err(err) => {
                    warn!(%err, master, "master unreachable; its nodes are left to its replacement")
                }
            }
        }
        let live: Vec<String> = agents
            .iter()
            .filter(|agent| agent.state != AgentState::Gone)
            .map(|agent| agent.id.clone())
            .collect();
        for id in self.fleet.terminate(&live).await? {
            done.push(format!("instance {id} terminated"));
        }
        for agent in &agents {
            self.secrets
                .delete_secret(&agent_secret_path(&self.stack, &agent.id))
                .await?;
        }
        done.push(format!("master {master}: {} agents retired", agents.len()));
        Ok(done)
    }

    /// Records the stop once per task and alerts once per window when the master loops.
    async fn record_stop<J>(
        &self,
        run: &Run<'_, J>,
        master: &str,
        task_arn: &str,
        stopped_at: Option<&str>,
    ) -> Result<Vec<String>, RecoveryError> {
        let at = stopped_at.and_then(parse_time).unwrap_or(run.now);
        let window = self.crash_loop_window;
        let first = self
            .store
            .record_stop(master, task_arn, at, at + window)
            .await?;
        let mut done = vec![if first {
            format!("stop of {task_arn} recorded")
        } else {
            format!("stop of {task_arn} was recorded before")
        }];
        let stops = self.store.stops(master, run.now).await?;
        if crash_loop(&stops, run.now, self.crash_loop_stops, window) {
            let subject = format!("longshore: master {master} is crash-looping");
            let message = format!(
                "master {master} stopped unexpectedly {} times within {} minutes; the latest \
                 stop: {task_arn}. Its service keeps restarting it: look at the task's logs.",
                stops.iter().filter(|&&t| run.now - t < window).count(),
                window / 60
            );
            let key = format!("crashloop#{master}");
            done.push(
                self.alert_once(Some(&key), run.now, run.now + window, &subject, &message)
                    .await?,
            );
            MetricRecord::new(NAMESPACE)
                .dimension("Stack", self.stack.as_str())
                .dimension("Master", master)
                .metric("MasterCrashLoop", 1.0, Unit::Count)
                .emit();
        }
        Ok(done)
    }

    /// DRAINING, then complete at once when no task is left, else remember and heartbeat.
    async fn drain_host<J>(
        &self,
        run: &Run<'_, J>,
        action: &LifecycleAction,
    ) -> Result<String, RecoveryError> {
        let host = &action.instance_id;
        let Some(arn) = self.hosts.container_instance(host).await? else {
            self.complete(action).await?;
            return Ok(format!(
                "host {host} has no container instance: lifecycle action completed"
            ));
        };
        self.hosts.drain(&arn).await?;
        let live = self.hosts.live_tasks(&arn).await?;
        if live.is_empty() {
            self.complete(action).await?;
            return Ok(format!(
                "host {host} drained with no task left: lifecycle action completed"
            ));
        }
        let deadline = run.now + self.drain_timeout;
        let drain = PendingDrain {
            action: action.clone(),
            deadline,
        };
        let new = self
            .store
            .put_drain(&drain, deadline + ALERT_MEMORY_SECS)
            .await?;
        self.heartbeat(action).await?;
        Ok(format!(
            "host {host} DRAINING with {} tasks left: drain {}, heartbeat sent",
            live.len(),
            if new { "recorded" } else { "already pending" }
        ))
    }

    /// The schedule's re-check of every pending drain.
    async fn check_drains<J>(&self, run: &Run<'_, J>) -> Result<Vec<String>, RecoveryError> {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for drain in self.store.drains().await? {
            match self.check_drain(run, &drain).await {
                Ok(what) => done.push(what),
                Err(err) => errors.push(err),
            }
        }
        match into_error(errors) {
            None => Ok(done),
            Some(err) => Err(err),
        }
    }

    async fn check_drain<J>(
        &self,
        run: &Run<'_, J>,
        drain: &PendingDrain,
    ) -> Result<String, RecoveryError> {
        let action = &drain.action;
        let host = &action.instance_id;
        let live = match self.hosts.container_instance(host).await? {
            Some(arn) => self.hosts.live_tasks(&arn).await?.len(),
            None => 0,
        };
        match drain_step(live, run.now, drain.deadline) {
            DrainStep::Complete => {
                self.complete(action).await?;
                self.store.delete_drain(host).await?;
                Ok(format!("host {host} drained: lifecycle action completed"))
            }
            DrainStep::Heartbeat => {
                if self.heartbeat(action).await? == LifecycleOutcome::NotPending {
                    self.store.delete_drain(host).await?;
                    return Ok(format!(
                        "host {host}: lifecycle action no longer pending; drain forgotten"
                    ));
                }
                Ok(format!("host {host}: {live} tasks left, heartbeat sent"))
            }
            DrainStep::GiveUp => {
                self.complete(action).await?;
                self.store.delete_drain(host).await?;
                let subject = format!("longshore: master host {host} terminated before drained");
                let message = format!(
                    "{live} master tasks still ran on {host} at the drain deadline; the \
                     termination went on ({COMPLETE_RESULT}). Their masters restart elsewhere."
                );
                let key = format!("drain-timeout#{host}");
                let sent = self
                    .alert_once(
                        Some(&key),
                        run.now,
                        run.now + ALERT_MEMORY_SECS,
                        &subject,
                        &message,
                    )
                    .await?;
                Ok(format!(
                    "host {host}: drain deadline passed with {live} tasks; completed; {sent}"
                ))
            }
        }
    }

    async fn complete(&self, action: &LifecycleAction) -> Result<(), RecoveryError> {
        let outcome = self.lifecycle.complete(action, COMPLETE_RESULT).await?;
        if outcome == LifecycleOutcome::NotPending {
            info!(instance = %action.instance_id, "lifecycle action was no longer pending");
        }
        Ok(())
    }

    async fn heartbeat(&self, action: &LifecycleAction) -> Result<LifecycleOutcome, RecoveryError> {
        Ok(self.lifecycle.heartbeat(action).await?)
    }

    /// Marks the node temporarily offline unless it is already (Jenkins only toggles).
    async fn take_offline<J: Jenkins + Sync>(
        &self,
        run: &Run<'_, J>,
        instance_id: &str,
        reason: &str,
    ) -> Result<String, RecoveryError> {
        let Some(jenkins) = agent_master(run).and_then(|m| jenkins_of(run, m)) else {
            return Ok(format!(
                "node {instance_id}: its master is not reachable; nothing to take offline"
            ));
        };
        let computers = jenkins.computers().await?;
        let Some(node) = computers
            .computer
            .iter()
            .find(|c| c.display_name == instance_id)
        else {
            return Ok(format!("node {instance_id} does not exist (any more)"));
        };
        if node.temporarily_offline {
            return Ok(format!("node {instance_id} was already offline"));
        }
        jenkins
            .toggle_offline(instance_id, &format!("longshore recovery: {reason}"))
            .await?;
        Ok(format!("node {instance_id} taken offline: {reason}"))
    }

    /// Deletes the node (if its master lists it) and the agent's secret.
    async fn remove_agent<J: Jenkins + Sync>(
        &self,
        run: &Run<'_, J>,
        instance_id: &str,
    ) -> Result<Vec<String>, RecoveryError> {
        let mut done = Vec::new();
        if let Some(jenkins) = agent_master(run).and_then(|m| jenkins_of(run, m)) {
            let computers = jenkins.computers().await?;
            if computers
                .computer
                .iter()
                .any(|c| c.display_name == instance_id)
            {
                jenkins.delete_node(instance_id).await?;
                done.push(format!("node {instance_id} deleted"));
            }
        }
        self.secrets
            .delete_secret(&agent_secret_path(&self.stack, instance_id))
            .await?;
        done.push(format!("secret of {instance_id} deleted"));
        Ok(done)
    }
}

/// The once-only key of the event's `index`th action (an alert): the stopped task, else the
/// event's id; `None` (always publish) when the event has neither.
fn alert_key<J>(run: &Run<'_, J>, index: usize) -> Option<String> {
    match (run.stopped_task, run.event_id) {
        (Some(task), _) => Some(format!("task#{task}")),
        (None, Some(id)) => Some(format!("event#{id}#{index}")),
        (None, None) => None,
    }
}

fn agent_master<'a, J>(run: &Run<'a, J>) -> Option<&'a str> {
    run.agent.and_then(|agent| agent.master.as_deref())
}

fn jenkins_of<'a, J>(run: &Run<'a, J>, master: &str) -> Option<&'a J> {
    run.masters
        .iter()
        .find(|(name, _)| name == master)
        .map(|(_, jenkins)| jenkins)
}

/// An action in words, for dry-run logs.
fn describe(action: &Action) -> String {
    match action {
        Action::Alert { subject, .. } => format!("publish the alert {subject:?}"),
        Action::RetireMasterAgents { master } => {
            format!("retire every agent of master {master} (nodes, instances, secrets)")
        }
        Action::RecordStop {
            master, task_arn, ..
        } => {
            format!("record the stop of {task_arn} of {master} for crash-loop detection")
        }
        Action::DrainHost {
            ec2_instance_id, ..
        } => format!("drain host {ec2_instance_id} and complete its lifecycle action"),
        Action::TakeNodeOffline {
            instance_id,
            reason,
        } => format!("take node {instance_id} offline ({reason})"),
        Action::RemoveAgent { instance_id } => {
            format!("delete node {instance_id} and its secret")
        }
        Action::Metric { name } => format!("emit metric {name}"),
        Action::CheckDrains => "re-check the pending host drains".to_string(),
    }
}

/// Epoch seconds of an RFC 3339 time such as ECS's `stoppedAt`.
fn parse_time(text: &str) -> Option<i64> {
    DateTime::from_str(text, DateTimeFormat::DateTimeWithOffset)
        .or_else(|_| DateTime::from_str(text, DateTimeFormat::DateTime))
        .ok()
        .map(|t| t.secs())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_lists_and_treats_blank_as_unset() {
        let ctx = context_from(|k| match k {
            ENV_MASTER_SERVICES => Some(" a, b ,,".to_string()),
            ENV_CLUSTER => Some("  ".to_string()),
            _ => None,
        });
        assert_eq!(ctx.master_services, vec!["a", "b"]);
        assert_eq!(ctx.cluster, None);
        assert_eq!(ctx.master_asg, None);
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("LONGSHORE_STACK", "ci"),
            ("STATE_TABLE", "ci-state"),
            (
                "ALERT_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:ci-alerts",
            ),
            ("JENKINS_SECRET", "ci/jenkins"),
            (ENV_CLUSTER, "ci-masters"),
            (ENV_MASTER_SERVICES, "a,b"),
            (ENV_MASTER_ASG, "ci-master-hosts"),
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
    fn config_defaults_and_ecs_discovery() {
        let config = RecoveryConfig::from_settings(&Settings::new(Pairs(base()))).unwrap();
        assert_eq!(config.context.master_services, vec!["a", "b"]);
        assert_eq!(
            config.context.master_asg.as_deref(),
            Some("ci-master-hosts")
        );
        assert_eq!(config.crash_loop_stops, 3);
        assert_eq!(config.crash_loop_window, Duration::from_secs(900));
        assert_eq!(config.jenkins_user, "longshore");
        assert_eq!(
            config.masters,
            MasterSource::Ecs {
                cluster: "ci-masters".to_string(),
                port: 8080
            }
        );
    }

    #[test]
    fn every_identifier_is_required_and_bad_values_name_themselves() {
        for missing in [
            ENV_CLUSTER,
            ENV_MASTER_SERVICES,
            ENV_MASTER_ASG,
            "STATE_TABLE",
        ] {
            let env: Vec<_> = base().into_iter().filter(|(k, _)| *k != missing).collect();
            let err = RecoveryConfig::from_settings(&Settings::new(Pairs(env))).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
        let mut env = base();
        env.push(("CRASH_LOOP_STOPS", "0"));
        let err = RecoveryConfig::from_settings(&Settings::new(Pairs(env))).unwrap_err();
        assert!(err.to_string().contains("CRASH_LOOP_STOPS"));
        let mut env = base();
        env.push(("LONGSHORE_MASTERS", "a=ftp://x"));
        let err = RecoveryConfig::from_settings(&Settings::new(Pairs(env))).unwrap_err();
        assert!(err.to_string().contains("LONGSHORE_MASTERS"));
    }

    #[test]
    fn stop_times_parse_as_rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:01:40Z"), Some(100));
        assert_eq!(
            parse_time("2024-01-01T00:00:00.123+00:00"),
            Some(1_704_067_200)
        );
        assert_eq!(parse_time("yyyy-mm-ddThh:mm:ssZ"), None);
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = explain(Path::new("/nonexistent/event.json"), &Context::default());
        assert!(matches!(err, Err(ExplainError::Read { .. })));
    }

    // ---- the actor against in-memory ports -------------------------------------------------

    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    #[derive(Default)]
    struct World {
        claims: StdMutex<HashMap<String, i64>>,
        drains: StdMutex<HashMap<String, PendingDrain>>,
        published: StdMutex<Vec<String>>,
        publish_fails: StdMutex<bool>,
        lifecycle_calls: StdMutex<Vec<String>>,
        tasks: StdMutex<usize>,
    }

    struct Fake<'a>(&'a World);

    impl Fleet for Fake<'_> {
        async fn launch(
            &self,
            _: &crate::adapters::aws::ec2::LaunchSpec,
        ) -> Result<String, AwsError> {
            unimplemented!("recovery never launches")
        }
        async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
            Ok(Vec::new())
        }
        async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
            Ok(ids.to_vec())
        }
    }
    impl Secrets for Fake<'_> {
        async fn put_secret(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn delete_secret(&self, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
    }
    impl Alerts for Fake<'_> {
        async fn publish(&self, subject: &str, _: &str) -> Result<(), AwsError> {
            if *self.0.publish_fails.lock().unwrap() {
                return Err(AwsError::missing("Publish", "a topic"));
            }
            self.0.published.lock().unwrap().push(subject.to_string());
            Ok(())
        }
    }
    impl Lifecycles for Fake<'_> {
        async fn heartbeat(&self, _: &LifecycleAction) -> Result<LifecycleOutcome, AwsError> {
            self.0
                .lifecycle_calls
                .lock()
                .unwrap()
                .push("heartbeat".into());
            Ok(LifecycleOutcome::Done)
        }
        async fn complete(
            &self,
            _: &LifecycleAction,
            result: &str,
        ) -> Result<LifecycleOutcome, AwsError> {
            self.0
                .lifecycle_calls
                .lock()
                .unwrap()
                .push(format!("complete {result}"));
            Ok(LifecycleOutcome::Done)
        }
    }
    impl MasterHosts for Fake<'_> {
        async fn container_instance(&self, id: &str) -> Result<Option<String>, AwsError> {
            Ok(Some(format!("ci-{id}")))
        }
        async fn drain(&self, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn live_tasks(&self, _: &str) -> Result<Vec<String>, AwsError> {
            Ok(vec!["task".to_string(); *self.0.tasks.lock().unwrap()])
        }
    }
    impl RecoveryStore for Fake<'_> {
        async fn record_stop(&self, _: &str, _: &str, _: i64, _: i64) -> Result<bool, AwsError> {
            Ok(true)
        }
        async fn stops(&self, _: &str, _: i64) -> Result<Vec<i64>, AwsError> {
            Ok(Vec::new())
        }
        async fn claim_alert(&self, key: &str, now: i64, until: i64) -> Result<bool, AwsError> {
            let mut claims = self.0.claims.lock().unwrap();
            match claims.get(key) {
                Some(&held) if held >= now => Ok(false),
                _ => {
                    claims.insert(key.to_string(), until);
                    Ok(true)
                }
            }
        }
        async fn release_alert(&self, key: &str) -> Result<(), AwsError> {
            self.0.claims.lock().unwrap().remove(key);
            Ok(())
        }
        async fn put_drain(&self, drain: &PendingDrain, _: i64) -> Result<bool, AwsError> {
            let mut drains = self.0.drains.lock().unwrap();
            let id = drain.action.instance_id.clone();
            if drains.contains_key(&id) {
                return Ok(false);
            }
            drains.insert(id, drain.clone());
            Ok(true)
        }
        async fn drains(&self) -> Result<Vec<PendingDrain>, AwsError> {
            Ok(self.0.drains.lock().unwrap().values().cloned().collect())
        }
        async fn delete_drain(&self, id: &str) -> Result<(), AwsError> {
            self.0.drains.lock().unwrap().remove(id);
            Ok(())
        }
    }

    type FakeActor<'a> = Actor<Fake<'a>, Fake<'a>, Fake<'a>, Fake<'a>, Fake<'a>, Fake<'a>>;

    fn actor(world: &World) -> FakeActor<'_> {
        Actor {
            stack: "ci".to_string(),
            dry_run: false,
            fleet: Fake(world),
            secrets: Fake(world),
            alerts: Fake(world),
            lifecycle: Fake(world),
            hosts: Fake(world),
            store: Fake(world),
            crash_loop_stops: 3,
            crash_loop_window: 900,
            drain_timeout: 600,
        }
    }

    fn run(now: i64) -> Run<'static, JenkinsClient> {
        Run {
            event_id: Some("e-1"),
            agent: None,
            masters: &[],
            stopped_task: None,
            now,
        }
    }

    #[tokio::test]
    async fn a_failed_alert_gives_its_claim_back_so_the_retry_alerts_once() {
        let world = World::default();
        let actor = actor(&world);
        let alert = [Action::Alert {
            subject: "s".to_string(),
            message: "m".to_string(),
        }];
        *world.publish_fails.lock().unwrap() = true;
        let (_, errors) = actor.act_all(&run(100), &alert).await;
        assert_eq!(errors.len(), 1);
        assert!(world.claims.lock().unwrap().is_empty());
        *world.publish_fails.lock().unwrap() = false;
        for _ in 0..2 {
            let (_, errors) = actor.act_all(&run(101), &alert).await;
            assert!(errors.is_empty());
        }
        assert_eq!(*world.published.lock().unwrap(), vec!["s".to_string()]);
    }

    #[tokio::test]
    async fn a_drain_heartbeats_until_the_tasks_are_gone_then_completes_once() {
        let world = World::default();
        let actor = actor(&world);
        *world.tasks.lock().unwrap() = 1;
        let drain = [Action::DrainHost {
            ec2_instance_id: "i-1".to_string(),
            lifecycle: crate::domain::recovery::Lifecycle {
                hook_name: "h".to_string(),
                asg_name: "g".to_string(),
                action_token: "t".to_string(),
            },
        }];
        actor.act_all(&run(100), &drain).await;
        actor.act_all(&run(200), &drain).await; // redelivered: the first deadline stands
        assert_eq!(world.drains.lock().unwrap()["i-1"].deadline, 700);
        actor.act_all(&run(300), &[Action::CheckDrains]).await;
        *world.tasks.lock().unwrap() = 0;
        actor.act_all(&run(400), &[Action::CheckDrains]).await;
        actor.act_all(&run(500), &[Action::CheckDrains]).await;
        assert_eq!(
            *world.lifecycle_calls.lock().unwrap(),
            vec!["heartbeat", "heartbeat", "heartbeat", "complete CONTINUE"]
        );
        assert!(world.drains.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn dry_run_takes_no_action() {
        let world = World::default();
        let mut actor = actor(&world);
        actor.dry_run = true;
        *world.tasks.lock().unwrap() = 0;
        let (done, errors) = actor
            .act_all(
                &run(100),
                &[
                    Action::Alert {
                        subject: "s".to_string(),
                        message: "m".to_string(),
                    },
                    Action::CheckDrains,
                ],
            )
            .await;
        assert!(errors.is_empty());
        assert!(done.iter().all(|d| d.starts_with("would ")), "{done:?}");
        assert!(world.published.lock().unwrap().is_empty());
        assert!(world.claims.lock().unwrap().is_empty());
    }
}
