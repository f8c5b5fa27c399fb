//! One tick of the queue-scaler: observe every master and the stack's instances, run the pure
//! [`scaling::plan`], and act on it through the ports.
//!
//! [`Scaler`] keeps what must survive between ticks of one process: since when each node has
//! been idle (Jenkins does not export it: `Computer.getIdleStartMilliseconds` is not
//! `@Exported`), and the instances launched recently, which DescribeInstances may not list yet.
//! After a cold start idle times restart from zero, which can only delay a retirement. Its
//! launches it also writes down in a [`LaunchJournal`] before sending them, and a new
//! invocation reads them back ([`Scaler::recall_launches`]) before it acts: a launch whose
//! process died before it learnt the outcome still counts, and is settled first.
//!
//! Acting is careful: a launch tries the plan's candidates in order and moves on only on a
//! capacity error; a retirement marks the node offline, reads it again and deletes and
//! terminates only if no build started; nothing is terminated without the stack's tag (the
//! EC2 adapter checks against EC2's own answer).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::future::join_all;
use tracing::{info, warn};

use crate::adapters::aws::ec2::{AgentInstance, AgentState, LaunchSpec};
use crate::adapters::aws::launches::LaunchRecord;
use crate::adapters::aws::ssm::agent_secret_path;
use crate::adapters::jenkins::NewAgent;
use crate::domain::fleet::{FleetConfig, LabelTemplate};
use crate::domain::jenkins::{ComputerSet, Queue};
use crate::domain::queue_why;
use crate::domain::scaling::{
    self, Candidate, Instance, Launch, MasterSnapshot, MasterView, Node, OrphanReason, Plan,
    Registration, Snapshot, WaitingItem, standby_node_name,
};
use crate::error::{AwsError, JenkinsError};
use crate::ports::{Fleet, Jenkins, LaunchJournal, Secrets};

/// How many follow-up tokens a launch tries when EC2 says its token's instance is terminated.
const TERMINATED_TOKEN_RETRIES: u32 = 5;

/// Error codes after which a RunInstances may or may not have launched: the call failed on
/// the way back (`unknown`: no answer at all) or AWS failed inside.
const OUTCOME_UNKNOWN: [&str; 6] = [
    "unknown",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
];

/// Error codes of a request refused before EC2 looked at it: says nothing of an earlier try.
const THROTTLED: [&str; 4] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
];

/// EC2 error codes meaning "no capacity here": the next candidate is tried.
const CAPACITY_ERRORS: [&str; 8] = [
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "Unsupported",
    "UnfulfillableCapacity",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "InstanceLimitExceeded",
];
/// Recently launched instances are remembered this long for DescribeInstances to catch up.
const REMEMBER_LAUNCH_MS: i64 = 5 * 60 * 1000;
/// Where an agent keeps its workspace.
const AGENT_REMOTE_FS: &str = "/var/lib/jenkins";

/// One master the scaler serves.
#[derive(Debug, Clone)]
pub struct MasterEndpoint<J> {
    pub name: String,
    /// The URL agents connect to (the task's address), with a trailing slash.
    pub url: String,
    pub jenkins: J,
}

/// What one tick did, for logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub plan: Plan,
    pub launched: Vec<String>,
    pub retired: Vec<String>,
    pub retirements_cancelled: Vec<String>,
    pub orphans_removed: Vec<String>,
    pub standby_created: usize,
    pub unreadable_masters: Vec<String>,
    pub errors: Vec<String>,
    /// Waiting items and agents per master and template, for the metrics.
    pub observed: BTreeMap<(String, String), Observed>,
}

/// Observed numbers for one master and template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub waiting: usize,
    pub oldest_wait_ms: i64,
    pub pending: usize,
    pub idle: usize,
    pub busy: usize,
}

/// The scaler between ticks.
pub struct Scaler<J, F, S, L> {
    masters: Vec<MasterEndpoint<J>>,
    fleet: F,
    secrets: S,
    journal: L,
    config: FleetConfig,
    dry_run: bool,
    idle_since: HashMap<(String, String), i64>,
    /// Instances launched recently, by id, until EC2 lists them.
    launched: HashMap<String, RecentLaunch>,
    /// Launches whose RunInstances got no clear answer, by token: they may have started an
    /// instance EC2 does not list yet. Each is sent again, same token and candidate, until
    /// EC2 answers (idempotently: with the instance, or by launching it now).
    unresolved: HashMap<String, Unresolved>,
}

/// A launched instance EC2 may not list yet, and the token its journal record is kept under.
#[derive(Debug, Clone)]
struct RecentLaunch {
    instance: Instance,
    token: String,
}

/// A launch whose outcome is unknown.
#[derive(Debug, Clone)]
struct Unresolved {
    spec: LaunchSpec,
    since_ms: i64,
}

impl<J: Jenkins, F: Fleet, S: Secrets, L: LaunchJournal> Scaler<J, F, S, L> {
    pub fn new(
        masters: Vec<MasterEndpoint<J>>,
        fleet: F,
        secrets: S,
        journal: L,
        config: FleetConfig,
        dry_run: bool,
    ) -> Self {
        Scaler {
            masters,
            fleet,
            secrets,
            journal,
            config,
            dry_run,
            idle_since: HashMap::new(),
            launched: HashMap::new(),
            unresolved: HashMap::new(),
        }
    }

    /// Reads the launch journal: what an earlier invocation (this process or another, dead
    /// or alive) launched and EC2 may not list yet, and the launches whose outcome it never
    /// learnt. Called by each invocation that takes the lease, before its first tick; the
    /// journal replaces this process's memory of unsettled launches, since another process
    /// may have settled them meanwhile. Returns how many launches it holds.
    pub async fn recall_launches(&mut self, now_ms: i64) -> Result<usize, AwsError> {
        let records = self.journal.recall().await?;
        self.unresolved.clear();
        let mut held = 0;
        for record in records {
            let token = record.spec.client_token.clone();
            if now_ms - record.since_ms >= REMEMBER_LAUNCH_MS {
                // EC2 lists it by now, or it never launched.
                if let Err(err) = self.journal.forget(&token).await {
                    warn!(token = %token, error = %err, "cannot forget an old launch record");
                }
                continue;
            }
            held += 1;
            match record.instance_id {
                Some(id) => {
                    let instance = Instance {
                        id: id.clone(),
                        master: Some(record.spec.master.clone()),
                        template: Some(record.spec.label.clone()),
                        subnet_id: Some(record.spec.subnet_id.clone()),
                        launched_at_ms: record.since_ms,
                    };
                    self.launched
                        .entry(id)
                        .or_insert(RecentLaunch { instance, token });
                }
                None => {
                    info!(token = %token, master = %record.spec.master, template = %record.spec.label,
                          "an earlier invocation's launch is unsettled; it is sent again first");
                    self.unresolved.insert(
                        token,
                        Unresolved {
                            spec: record.spec,
                            since_ms: record.since_ms,
                        },
                    );
                }
            }
        }
        Ok(held)
    }

    /// Replaces the fleet configuration (after its SSM version changed).
    pub fn set_config(&mut self, config: FleetConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Points the scaler at the masters found for this invocation, keeping what it
    /// remembers of their nodes.
    pub fn set_masters(&mut self, masters: Vec<MasterEndpoint<J>>) {
        self.masters = masters;
    }

    /// One observe → plan → act round. `now_ms` is the wall clock in epoch milliseconds.
    pub async fn tick(&mut self, now_ms: i64) -> TickReport {
        self.tick_with(now_ms, !self.dry_run).await
    }

    /// Observes and plans without acting (an overlapping invocation without the lease).
    pub async fn observe_only(&mut self, now_ms: i64) -> TickReport {
        self.tick_with(now_ms, false).await
    }

    async fn tick_with(&mut self, now_ms: i64, act: bool) -> TickReport {
        let mut report = TickReport::default();
        let agents = match self.fleet.agents().await {
            Ok(agents) => agents,
            Err(err) => {
                // Without the instance list neither caps nor orphans can be judged: do nothing.
                warn!(error = %err, "cannot list the stack's instances; no action this tick");
                report.errors.push(err.to_string());
                return report;
            }
        };
        let snapshot = self.observe(now_ms, &agents, &mut report).await;
        let plan = scaling::plan(&snapshot, &self.planning_config());
        for ignored in &plan.ignored {
            warn!(master = %ignored.master, item = ignored.item, reason = %ignored.reason, "queue item not counted");
        }
        if !act {
            log_plan(&plan);
        } else {
            self.act(&plan, now_ms, &mut report).await;
        }
        report.plan = plan;
        report
    }

    async fn observe(
        &mut self,
        now_ms: i64,
        agents: &[AgentInstance],
        report: &mut TickReport,
    ) -> Snapshot {
        let mut instances: Vec<Instance> = agents
            .iter()
            .filter(|agent| agent.state != AgentState::Gone)
            .map(|agent| Instance {
                id: agent.id.clone(),
                master: agent.master.clone(),
                template: agent.label.clone(),
                subnet_id: agent.subnet_id.clone(),
                launched_at_ms: agent.launched_at_ms.unwrap_or(now_ms),
            })
            .collect();
        // Launches EC2 does not list (yet, or this time) still count (see the module docs).
        self.forget_old_launches(now_ms, agents).await;
        let listed: HashSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
        instances.extend(
            self.launched
                .values()
                .filter(|l| !listed.contains(l.instance.id.as_str()))
                .map(|l| l.instance.clone()),
        );
        instances.sort_by(|a, b| a.id.cmp(&b.id));

        // The masters are read at once (a tick's latency does not grow with their number);
        // their answers are taken in order.
        let reads = join_all(self.masters.iter().map(|m| read_master(&m.jenkins))).await;
        let mut masters = Vec::with_capacity(self.masters.len());
        for (master, read) in self.masters.iter().zip(reads) {
            let view = match read {
                Ok((queue, computers)) => Some(view_of(
                    &mut self.idle_since,
                    &master.name,
                    now_ms,
                    &queue,
                    &computers,
                )),
                Err(err) => {
                    // Fail safe: an unreadable master gets no retirements and no clean-up.
                    warn!(master = %master.name, error = %err, "master unreadable this tick");
                    report.unreadable_masters.push(master.name.clone());
                    report.errors.push(err.to_string());
                    None
                }
            };
            masters.push(MasterSnapshot {
                name: master.name.clone(),
                view,
            });
        }
        let snapshot = Snapshot {
            now_ms,
            masters,
            instances,
        };
        report.observed = observed(&snapshot, &self.config);
        snapshot
    }

    /// The fleet configuration the plan works with. Each launch whose outcome is unknown may
    /// have started an instance the plan cannot see: its template waits on its master (see
    /// `act`), and it keeps a place under `max_agents` until it is settled, so that no other
    /// template takes that place (chaos seed 442: 6 instances under a cap of 5).
    fn planning_config(&self) -> std::borrow::Cow<'_, FleetConfig> {
        if self.unresolved.is_empty() {
            return std::borrow::Cow::Borrowed(&self.config);
        }
        let mut config = self.config.clone();
        let reserved = u32::try_from(self.unresolved.len()).unwrap_or(u32::MAX);
        config.max_agents = config.max_agents.saturating_sub(reserved);
        std::borrow::Cow::Owned(config)
    }

    /// Forgets the launches EC2 lists consistently by now, or lists as gone, here and in the
    /// journal. One listing is not enough: EC2's eventual consistency can leave a fresh
    /// instance out of the next answer again (chaos seed 895, under a cap).
    async fn forget_old_launches(&mut self, now_ms: i64, agents: &[AgentInstance]) {
        let done: Vec<String> = self
            .launched
            .iter()
            .filter(|(id, launched)| {
                now_ms - launched.instance.launched_at_ms >= REMEMBER_LAUNCH_MS
                    || agents
                        .iter()
                        .any(|agent| &agent.id == *id && agent.state == AgentState::Gone)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let Some(launched) = self.launched.remove(&id) else {
                continue;
            };
            if let Err(err) = self.journal.forget(&launched.token).await {
                // Harmless: a later recall finds EC2 listing it, and forgets it then.
                warn!(instance = %id, error = %err, "cannot forget a launch record");
            }
        }
    }

    async fn act(&mut self, plan: &Plan, now_ms: i64, report: &mut TickReport) {
        for standby in &plan.standby_nodes {
            let Some(template) = self.template(&standby.template).cloned() else {
                continue;
            };
            let Some(master) = self.master(&standby.master) else {
                continue;
            };
            let name = standby_node_name(&template.name);
            let labels = template.node_labels.join(" ");
            let node = NewAgent {
                name: &name,
                labels: &labels,
                executors: 1,
                description: "longshore standby node: never connects; keeps the label's queue texts readable",
                remote_fs: AGENT_REMOTE_FS,
                exclusive: true,
            };
            match master.jenkins.create_inbound_agent(&node).await {
                Ok(()) => report.standby_created += 1,
                Err(err) => report
                    .errors
                    .push(format!("standby node {name} on {}: {err}", standby.master)),
            }
        }
        for agent in &plan.unregistered {
            let Some(template) = self.template(&agent.template).cloned() else {
                continue;
            };
            warn!(master = %agent.master, instance = %agent.instance_id, "registering an agent whose launch left no node (its RunInstances answer was lost)");
            if let Err(err) = self
                .register(
                    &agent.master,
                    &template,
                    &agent.instance_id,
                    agent.launched_at_ms,
                )
                .await
            {
                report.errors.push(err);
            }
        }
        // The plan counted its orphan instances as gone, and may launch in their place.
        let mut orphans_still_running = 0;
        for orphan in &plan.orphan_instances {
            info!(instance = %orphan.instance_id, reason = ?orphan.reason, "removing orphan instance");
            let master = orphan.master.as_deref().and_then(|name| self.master(name));
            // An agent that was only late may connect between the plan's read and now: it
            // stays (a replacement would be a second instance for one job).
            let keep_if_connected = orphan.reason == OrphanReason::NotConnected;
            let node_removed = match master {
                Some(master) => {
                    remove_idle_node(&master.jenkins, &orphan.instance_id, keep_if_connected).await
                }
                None => Ok(true), // its master is gone, and the node with it
            };
            match node_removed {
                Ok(true) => {}
                Ok(false) => {
                    // It connected since the plan looked (and may have taken a build): not an
                    // orphan.
                    info!(instance = %orphan.instance_id, "orphan removal cancelled: its agent connected since the plan looked");
                    orphans_still_running += 1;
                    continue;
                }
                Err(err) => {
                    report.errors.push(err.to_string());
                    orphans_still_running += 1;
                    continue;
                }
            }
            match self.remove_instance(&orphan.instance_id).await {
                Ok(()) => report.orphans_removed.push(orphan.instance_id.clone()),
                Err(err) => {
                    orphans_still_running += usize::from(err.still_running);
                    report.errors.push(err.message);
                }
            }
        }
        for orphan in &plan.orphan_nodes {
            let Some(master) = self.master(&orphan.master) else {
                continue;
            };
            info!(master = %orphan.master, node = %orphan.node, "removing node whose instance is gone");
            let removed = match delete_node_if_present(&master.jenkins, &orphan.node).await {
                Ok(()) => self
                    .secrets
                    .delete_secret(&self.secret_path(&orphan.node))
                    .await
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match removed {
                Ok(()) => report.orphans_removed.push(orphan.node.clone()),
                Err(err) => report.errors.push(err),
            }
        }
        for retirement in &plan.retirements {
            self.retire(&retirement.master, &retirement.node, report)
                .await;
        }
        if orphans_still_running > 0 && !plan.launches.is_empty() {
            // Launching now could take a cap past its limit: the next tick plans again.
            warn!(
                orphans = orphans_still_running,
                launches = plan.launches.len(),
                "launches wait for the next tick: an orphan instance the plan counted as gone is still running"
            );
            return;
        }
        let settled_now = self.resolve_unknown_launches(now_ms, report).await;
        for launch in &plan.launches {
            // The plan cannot see an instance whose launch got no answer while EC2 does not
            // list it, nor one settled just now; its token may differ from today's (it
            // derives from the instances the plan sees), so launching now could start a
            // second one past a cap.
            let key = (launch.master.clone(), launch.template.clone());
            if settled_now.contains(&key)
                || self
                    .unresolved
                    .values()
                    .any(|u| u.spec.master == launch.master && u.spec.label == launch.template)
            {
                info!(master = %launch.master, template = %launch.template,
                      "launch waits: an earlier launch of this template got no answer until now");
                continue;
            }
            self.launch(launch, now_ms, report).await;
        }
    }

    /// Sends each launch of unknown outcome again (same token, same candidate). EC2 answers
    /// with the instance it launched the first time, or launches it now; either way the
    /// agent is registered as a launch of this tick would be. One that stays unanswered past
    /// the boot timeout is let go: EC2 lists whatever it started by then, and the plan
    /// registers it or removes it as an orphan. Returns the masters and templates that got an
    /// instance this way (which this tick's plan did not see).
    async fn resolve_unknown_launches(
        &mut self,
        now_ms: i64,
        report: &mut TickReport,
    ) -> HashSet<(String, String)> {
        let boot_timeout_ms = i64::from(self.config.boot_timeout_secs) * 1000;
        let pending: Vec<Unresolved> = self.unresolved.values().cloned().collect();
        let mut settled = HashSet::new();
        for unresolved in pending {
            let spec = &unresolved.spec;
            if now_ms - unresolved.since_ms > boot_timeout_ms {
                warn!(token = %spec.client_token, master = %spec.master, template = %spec.label,
                      "a launch stayed unanswered past the boot timeout; the plan takes over");
                self.unresolved.remove(&spec.client_token);
                self.forget_launch(&spec.client_token).await;
                continue;
            }
            match self.fleet.launch(spec).await {
                Ok(id) => {
                    info!(token = %spec.client_token, instance = %id, "a launch that got no answer is resolved");
                    self.unresolved.remove(&spec.client_token);
                    settled.insert((spec.master.clone(), spec.label.clone()));
                    self.adopt_launch(spec, &id, unresolved.since_ms, report)
                        .await;
                }
                Err(err)
                    if OUTCOME_UNKNOWN.contains(&err.code.as_str())
                        || THROTTLED.contains(&err.code.as_str()) =>
                {
                    report.errors.push(err.to_string());
                }
                Err(err) => {
                    // EC2 looked the token up: had the first try launched, it would answer
                    // with that instance. So nothing runs under it (terminated since, or it
                    // was refused). The plan launches again if it still needs to.
                    info!(token = %spec.client_token, code = %err.code, "a launch that got no answer launched nothing");
                    self.unresolved.remove(&spec.client_token);
                    self.forget_launch(&spec.client_token).await;
                }
            }
        }
        settled
    }

    /// Forgets a settled launch's record. On failure the record stays, and a later
    /// invocation sends it once more: EC2 answers with its instance or a clear refusal.
    async fn forget_launch(&self, token: &str) {
        if let Err(err) = self.journal.forget(token).await {
            warn!(token = %token, error = %err, "cannot forget a launch record");
        }
    }

    /// Launches one agent: the candidates in order, moving on when AWS has no capacity or an
    /// earlier try of this launch took another candidate; then its node and its secret. A
    /// launch whose node cannot be registered is terminated.
    async fn launch(&mut self, launch: &Launch, now_ms: i64, report: &mut TickReport) {
        if self.template(&launch.template).is_none() {
            return;
        }
        let Some(master_url) = self.master(&launch.master).map(|m| m.url.clone()) else {
            return;
        };
        let (id, spec) = match self.run_instance(launch, &master_url, now_ms).await {
            Ok(launched) => launched,
            Err(LaunchOutcome::LaunchedBefore(token)) => {
                // None of today's candidates is the one it took: it is registered once EC2
                // lists it (`Plan.unregistered`); launching again would be a duplicate.
                info!(master = %launch.master, template = %launch.template, token = %token,
                      "launched already by an earlier try with another candidate");
                self.forget_launch(&token).await;
                return;
            }
            Err(LaunchOutcome::Failed(token, message)) => {
                if let Some(token) = token {
                    self.forget_launch(&token).await;
                }
                report.errors.push(message);
                return;
            }
            Err(LaunchOutcome::Unknown(spec, message)) => {
                warn!(token = %spec.client_token, master = %spec.master, template = %spec.label, error = %message,
                      "RunInstances got no clear answer; it is sent again next tick");
                report.errors.push(message);
                self.unresolved.insert(
                    spec.client_token.clone(),
                    Unresolved {
                        spec,
                        since_ms: now_ms,
                    },
                );
                return;
            }
        };
        info!(master = %launch.master, template = %launch.template, instance = %id, items = ?launch.for_items, "instance launched");
        self.adopt_launch(&spec, &id, now_ms, report).await;
    }

    /// Remembers a launched instance (EC2 may not list it yet), here and in the journal, and
    /// registers its node and secret. An instance whose node cannot be registered now is not
    /// terminated: it may be one an earlier invocation registered and gave a build, and its
    /// node is still made by the plan's `unregistered` rule next tick, or it is removed as an
    /// orphan after the boot timeout.
    async fn adopt_launch(
        &mut self,
        spec: &LaunchSpec,
        id: &str,
        launched_at_ms: i64,
        report: &mut TickReport,
    ) {
        let Some(template) = self.template(&spec.label).cloned() else {
            return;
        };
        let instance = Instance {
            id: id.to_string(),
            master: Some(spec.master.clone()),
            template: Some(spec.label.clone()),
            subnet_id: Some(spec.subnet_id.clone()),
            launched_at_ms,
        };
        self.launched.insert(
            id.to_string(),
            RecentLaunch {
                instance,
                token: spec.client_token.clone(),
            },
        );
        let record = LaunchRecord {
            spec: spec.clone(),
            since_ms: launched_at_ms,
            instance_id: Some(id.to_string()),
        };
        if let Err(err) = self.journal.record(&record).await {
            // The record without its instance stays: a later invocation sends the launch
            // again and EC2 answers with this instance.
            warn!(instance = %id, error = %err, "cannot complete the launch record");
        }
        match self
            .register(&spec.master, &template, id, launched_at_ms)
            .await
        {
            Ok(()) => {
                info!(master = %spec.master, template = %spec.label, instance = %id, "agent launched");
                report.launched.push(id.to_string());
            }
            Err(err) => {
                warn!(instance = %id, error = %err, "cannot register the agent yet; the next tick tries again");
                report.errors.push(err);
            }
        }
    }

    /// RunInstances over the launch's candidates, under the launch's token or a follow-up.
    ///
    /// One token serves every candidate: EC2 binds a token only to a launch that succeeded,
    /// so a candidate refused for capacity leaves it free for the next, and a retried tick
    /// whose first try went to a later candidate is answered `IdempotentParameterMismatch`
    /// by the others instead of launching a second instance.
    ///
    /// A plan can derive a token whose instance is gone already: when an agent that never
    /// connected was removed as an orphan, its template's instances are again what they were
    /// at its launch. EC2 then answers `IdempotentInstanceTerminated` for the candidate the
    /// token took, and every candidate moves on to the next token of a fixed sequence
    /// (`…-r1`, `…-r2`), so a retried tick still sends the same tokens in the same order.
    /// (Moving only that candidate on would leave the others refused with a mismatch by a
    /// dead token, and the launch stalled for good, as chaos seed 142 showed.)
    async fn run_instance(
        &self,
        launch: &Launch,
        master_url: &str,
        now_ms: i64,
    ) -> Result<(String, LaunchSpec), LaunchOutcome> {
        let base = &launch.client_token;
        for follow_up in 0..=TERMINATED_TOKEN_RETRIES {
            let token = match follow_up {
                0 => base.clone(),
                n => format!("{base}-r{n}"),
            };
            match self
                .run_under_token(launch, master_url, &token, now_ms)
                .await
            {
                TokenOutcome::Launched(id, spec) => return Ok((id, spec)),
                TokenOutcome::Terminated => {
                    info!(token = %token, "the token's instance is terminated; launching with the next token");
                    self.forget_launch(&token).await;
                }
                TokenOutcome::Other(outcome) => return Err(outcome),
            }
        }
        Err(LaunchOutcome::Failed(
            None,
            format!(
                "{} on {}: every token of this launch ({base} and {TERMINATED_TOKEN_RETRIES} follow-ups) names a terminated instance",
                launch.template, launch.master
            ),
        ))
    }

    /// Every candidate under one token, in order, each written down before it is sent.
    async fn run_under_token(
        &self,
        launch: &Launch,
        master_url: &str,
        token: &str,
        now_ms: i64,
    ) -> TokenOutcome {
        let mut launched_before = false;
        for candidate in launch.candidates.iter() {
            let spec = launch_spec(launch, master_url, candidate, token);
            let record = LaunchRecord {
                spec: spec.clone(),
                since_ms: now_ms,
                instance_id: None,
            };
            if let Err(err) = self.journal.record(&record).await {
                // Unrecorded, a launch whose answer is lost could be repeated past a cap by
                // a new invocation: it waits for the next tick instead.
                return TokenOutcome::Other(LaunchOutcome::Failed(
                    Some(token.to_string()),
                    format!("the launch could not be written down: {err}"),
                ));
            }
            match self.fleet.launch(&spec).await {
                Ok(id) => return TokenOutcome::Launched(id, spec),
                Err(err) if err.code == "IdempotentInstanceTerminated" => {
                    return TokenOutcome::Terminated;
                }
                Err(err) if err.code == "IdempotentParameterMismatch" => {
                    // An earlier try of this very launch succeeded with another candidate (its
                    // answer was lost, or its tick cut off). The candidate it took answers with
                    // that instance or, if it is gone since, `IdempotentInstanceTerminated`.
                    launched_before = true;
                }
                Err(err) if CAPACITY_ERRORS.contains(&err.code.as_str()) => {
                    info!(master = %launch.master, template = %launch.template, instance_type = %candidate.instance_type,
                          subnet = %candidate.subnet_id, spot = candidate.spot, code = %err.code, "no capacity; trying the next candidate");
                }
                Err(err) if OUTCOME_UNKNOWN.contains(&err.code.as_str()) => {
                    return TokenOutcome::Other(LaunchOutcome::Unknown(spec, err.to_string()));
                }
                Err(err) => {
                    return TokenOutcome::Other(LaunchOutcome::Failed(
                        Some(token.to_string()),
                        err.to_string(),
                    ));
                }
            }
        }
        TokenOutcome::Other(if launched_before {
            LaunchOutcome::LaunchedBefore(token.to_string())
        } else {
            LaunchOutcome::Failed(
                Some(token.to_string()),
                format!(
                    "no capacity for {} on {} in any candidate",
                    launch.template, launch.master
                ),
            )
        })
    }

    /// Creates the agent's node (or finds it, on a retried tick) and stores its secret.
    async fn register(
        &self,
        master: &str,
        template: &LabelTemplate,
        id: &str,
        launched_at_ms: i64,
    ) -> Result<(), String> {
        let endpoint = self
            .master(master)
            .ok_or_else(|| format!("unknown master {master}"))?;
        let labels = template.node_labels.join(" ");
        let description = scaling::agent_description(&Registration {
            template: template.name.clone(),
            launched_at_ms,
        });
        let agent = NewAgent {
            name: id,
            labels: &labels,
            executors: template.executors,
            description: &description,
            remote_fs: AGENT_REMOTE_FS,
            exclusive: false,
        };
        let created = endpoint.jenkins.create_inbound_agent(&agent).await;
        // A retried tick finds the node it created before: reading its secret settles it.
        let secret = match (created, endpoint.jenkins.agent_secret(id).await) {
            (_, Ok(secret)) => secret,
            (Err(err), Err(_)) | (Ok(()), Err(err)) => return Err(err.to_string()),
        };
        self.secrets
            .put_secret(&self.secret_path(id), &secret)
            .await
            .map_err(|e| e.to_string())
    }

    /// Safe retirement: offline first, read again, and remove only if still idle.
    async fn retire(&mut self, master_name: &str, node: &str, report: &mut TickReport) {
        let Some(master) = self.master(master_name) else {
            return;
        };
        if let Err(err) = master
            .jenkins
            .toggle_offline(node, "longshore: idle beyond its idle time; retiring")
            .await
        {
            report.errors.push(err.to_string());
            return;
        }
        let still_idle = match master.jenkins.computers().await {
            Ok(set) => set
                .computer
                .iter()
                .find(|c| c.display_name == node)
                .map(|c| c.temporarily_offline && c.busy_executors() == 0),
            Err(err) => {
                report.errors.push(err.to_string());
                Some(false)
            }
        };
        match still_idle {
            Some(true) => {}
            None => return, // the node is gone already; the orphan rules take the instance
            Some(false) => {
                // A build started in between (or we cannot tell): bring the agent back.
                if let Err(err) = master.jenkins.toggle_offline(node, "").await {
                    report.errors.push(err.to_string());
                }
                info!(master = %master_name, node, "retirement cancelled: a build started");
                report.retirements_cancelled.push(node.to_string());
                return;
            }
        }
        if let Err(err) = delete_node_if_present(&master.jenkins, node).await {
            report.errors.push(err.to_string());
            return;
        }
        self.idle_since
            .remove(&(master_name.to_string(), node.to_string()));
        match self.remove_instance(node).await {
            Ok(()) => {
                info!(master = %master_name, node, "agent retired");
                report.retired.push(node.to_string());
            }
            Err(err) => report.errors.push(err.message),
        }
    }

    /// Terminates an instance (only if it carries the stack's tag) and deletes its secret.
    async fn remove_instance(&mut self, id: &str) -> Result<(), RemovalError> {
        let recent = self.launched.remove(id);
        self.fleet
            .terminate(&[id.to_string()])
            .await
            .map_err(|e| RemovalError {
                still_running: true,
                message: e.to_string(),
            })?;
        if let Some(recent) = recent {
            self.forget_launch(&recent.token).await;
        }
        self.secrets
            .delete_secret(&self.secret_path(id))
            .await
            .map_err(|e| RemovalError {
                still_running: false,
                message: e.to_string(),
            })
    }

    fn secret_path(&self, id: &str) -> String {
        agent_secret_path(&self.config.stack, id)
    }

    fn master(&self, name: &str) -> Option<&MasterEndpoint<J>> {
        self.masters.iter().find(|m| m.name == name)
    }

    fn template(&self, name: &str) -> Option<&LabelTemplate> {
        self.config.labels.iter().find(|t| t.name == name)
    }
}

/// Why a launch started no instance this tick; each names the token whose record is now
/// settled, if any.
enum LaunchOutcome {
    /// An earlier try of it took a candidate that is not among today's.
    LaunchedBefore(String),
    Failed(Option<String>, String),
    /// This RunInstances got no clear answer: it may have launched.
    Unknown(LaunchSpec, String),
}

/// The RunInstances of one launch on one candidate under one token.
fn launch_spec(
    launch: &Launch,
    master_url: &str,
    candidate: &Candidate,
    token: &str,
) -> LaunchSpec {
    LaunchSpec {
        master: launch.master.clone(),
        master_url: master_url.to_string(),
        label: launch.template.clone(),
        instance_type: candidate.instance_type.clone(),
        subnet_id: candidate.subnet_id.clone(),
        spot: candidate.spot,
        client_token: token.to_string(),
    }
}

/// What the candidates answered under one token.
enum TokenOutcome {
    /// The instance and the request that launched it.
    Launched(String, LaunchSpec),
    /// The token's instance is terminated: the next token is due.
    Terminated,
    Other(LaunchOutcome),
}

/// An instance removal that did not complete.
struct RemovalError {
    /// The termination failed: the instance still runs (and counts against the caps).
    still_running: bool,
    message: String,
}

/// Turns a master's answers into the plan's view, updating the idle clock of every node
/// (public so that the Jenkins-JSON fuzz target plans from exactly what a tick would).
pub fn view_of(
    idle_since: &mut HashMap<(String, String), i64>,
    master: &str,
    now_ms: i64,
    queue: &Queue,
    computers: &ComputerSet,
) -> MasterView {
    let waiting = queue
        .items
        .iter()
        // A pending item's executor is busy already: counted there, not as demand.
        .filter(|item| item.buildable && !item.pending)
        .map(|item| WaitingItem {
            id: item.id,
            why: item
                .why
                .as_deref()
                .map_or(queue_why::Why::Unknown, queue_why::parse),
            waiting_since_ms: item
                .buildable_start_milliseconds
                .unwrap_or(item.in_queue_since),
        })
        .collect();
    let nodes = computers
        .computer
        .iter()
        .map(|computer| {
            let busy = computer.busy_executors();
            let key = (master.to_string(), computer.display_name.clone());
            let idle = !computer.offline && !computer.temporarily_offline && busy == 0;
            let idle_since_ms = if idle {
                Some(*idle_since.entry(key).or_insert(now_ms))
            } else {
                idle_since.remove(&key);
                None
            };
            Node {
                name: computer.display_name.clone(),
                executors: computer.num_executors,
                busy,
                online: !computer.offline,
                temporarily_offline: computer.temporarily_offline,
                idle_since_ms,
                registration: computer
                    .description
                    .as_deref()
                    .and_then(scaling::parse_agent_description),
            }
        })
        .collect::<Vec<Node>>();
    // Forget the clocks of this master's nodes that are gone, so the map cannot grow forever.
    let present: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    idle_since
        .retain(|(of_master, node), _| of_master != master || present.contains(node.as_str()));
    MasterView { waiting, nodes }
}

/// Reads a master's nodes, then its queue. In this order an item that an executor takes
/// between the two requests is seen on neither side (its node idle, the item gone or
/// pending), which costs nothing: the node is busy by the time a retirement reads it again.
/// The other order sees it on both (waiting, and its node busy) and launches an agent
/// nobody needs (chaos seed 833).
async fn read_master<J: Jenkins>(jenkins: &J) -> Result<(Queue, ComputerSet), JenkinsError> {
    let computers = jenkins.computers().await?;
    let queue = jenkins.queue().await?;
    Ok((queue, computers))
}

/// Deletes a node unless it is busy, closing the race with a build that starts meanwhile the
/// way a retirement does: offline first (Jenkins then assigns it nothing), read it again, and
/// delete it only if it is still idle; a busy one is put back online. With
/// `keep_if_connected`, a node that is connected now is kept too. `Ok(false)`: kept.
async fn remove_idle_node<J: Jenkins>(
    jenkins: &J,
    node: &str,
    keep_if_connected: bool,
) -> Result<bool, JenkinsError> {
    let find = |set: ComputerSet| set.computer.into_iter().find(|c| c.display_name == node);
    let Some(computer) = find(jenkins.computers().await?) else {
        return Ok(true); // gone already
    };
    if keep_if_connected && !computer.offline {
        return Ok(false);
    }
    // Offline already (by an operator, a retirement or a Spot warning): toggling would bring
    // it back online.
    let took_offline = !computer.temporarily_offline;
    if took_offline {
        jenkins
            .toggle_offline(
                node,
                "longshore: not connected within the boot timeout; removing",
            )
            .await?;
    }
    let busy = match find(jenkins.computers().await?) {
        None => return Ok(true),
        Some(computer) => computer.busy_executors() > 0,
    };
    if busy {
        if took_offline {
            jenkins.toggle_offline(node, "").await?;
        }
        return Ok(false);
    }
    delete_node_if_present(jenkins, node).await?;
    Ok(true)
}

/// Deletes a node; one that is already gone (404) is fine.
async fn delete_node_if_present<J: Jenkins>(jenkins: &J, node: &str) -> Result<(), JenkinsError> {
    match jenkins.delete_node(node).await {
        Err(JenkinsError::Status { status: 404, .. }) => Ok(()),
        other => other,
    }
}

/// The numbers behind the per-label metrics.
fn observed(snapshot: &Snapshot, config: &FleetConfig) -> BTreeMap<(String, String), Observed> {
    let mut observed = BTreeMap::new();
    for master in &snapshot.masters {
        let Some(view) = &master.view else { continue };
        for template in &config.labels {
            let mut entry = Observed::default();
            for instance in snapshot.instances.iter().filter(|i| {
                i.master.as_deref() == Some(master.name.as_str())
                    && i.template.as_deref() == Some(template.name.as_str())
            }) {
                match view.nodes.iter().find(|n| n.name == instance.id) {
                    Some(node) if node.online && node.busy > 0 => entry.busy += 1,
                    Some(node) if node.online => entry.idle += 1,
                    _ => entry.pending += 1,
                }
            }
            observed.insert((master.name.clone(), template.name.clone()), entry);
        }
        let mut per_template: BTreeMap<String, (usize, i64)> = BTreeMap::new();
        let nodes: BTreeMap<&str, &Node> =
            view.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        for item in &view.waiting {
            if let Some(template) = scaling::template_of(&item.why, &nodes, config) {
                let slot = per_template.entry(template.to_string()).or_default();
                slot.0 += 1;
                slot.1 = slot.1.max(snapshot.now_ms - item.waiting_since_ms);
            }
        }
        for (template, (waiting, oldest)) in per_template {
            let entry = observed.entry((master.name.clone(), template)).or_default();
            entry.waiting = waiting;
            entry.oldest_wait_ms = oldest;
        }
    }
    observed
}

fn log_plan(plan: &Plan) {
    for launch in &plan.launches {
        info!(acting = false, master = %launch.master, template = %launch.template, candidates = launch.candidates.len(), items = ?launch.for_items, "would launch an agent");
    }
    for retirement in &plan.retirements {
        info!(acting = false, master = %retirement.master, node = %retirement.node, "would retire an idle agent");
    }
    for orphan in &plan.orphan_instances {
        info!(acting = false, instance = %orphan.instance_id, reason = ?orphan.reason, "would remove an orphan instance");
    }
    for orphan in &plan.orphan_nodes {
        info!(acting = false, master = %orphan.master, node = %orphan.node, "would remove an orphan node");
    }
    for agent in &plan.unregistered {
        info!(acting = false, master = %agent.master, instance = %agent.instance_id, "would register an agent that has no node");
    }
    for standby in &plan.standby_nodes {
        info!(acting = false, master = %standby.master, template = %standby.template, "would create a standby node");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::jenkins::Computer;

    fn computer(name: &str, idle: bool) -> Computer {
        serde_json::from_value(serde_json::json!({
            "displayName": name, "offline": false, "idle": idle, "numExecutors": 2
        }))
        .expect("computer JSON")
    }

    fn computers(list: Vec<Computer>) -> ComputerSet {
        ComputerSet { computer: list }
    }

    #[test]
    fn idle_clocks_start_once_stop_when_busy_and_are_forgotten_with_their_node() {
        let queue = Queue { items: Vec::new() };
        let mut clocks = HashMap::new();
        clocks.insert(("other".to_string(), "i-0000000c".to_string()), 5);
        let first = computers(vec![
            computer("i-0000000a", true),
            computer("i-0000000b", true),
        ]);
        view_of(&mut clocks, "m", 1_000, &queue, &first);
        let later = view_of(&mut clocks, "m", 2_000, &queue, &first);
        assert_eq!(
            later.nodes[0].idle_since_ms,
            Some(1_000),
            "the clock keeps its start"
        );

        let busy_and_gone = computers(vec![computer("i-0000000a", false)]);
        let view = view_of(&mut clocks, "m", 3_000, &queue, &busy_and_gone);
        assert_eq!(view.nodes[0].idle_since_ms, None);
        assert_eq!(
            clocks.keys().collect::<Vec<_>>(),
            vec![&("other".to_string(), "i-0000000c".to_string())],
            "another master's clocks stay; this master's gone and busy nodes have none"
        );
    }

    /// A Jenkins whose node list is fixed, recording the calls that change it.
    struct FixedNodes {
        set: ComputerSet,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl Jenkins for FixedNodes {
        async fn queue(&self) -> Result<Queue, JenkinsError> {
            Ok(Queue { items: Vec::new() })
        }
        async fn computers(&self) -> Result<ComputerSet, JenkinsError> {
            Ok(self.set.clone())
        }
        async fn create_inbound_agent(&self, _: &NewAgent<'_>) -> Result<(), JenkinsError> {
            unreachable!("not used by node removal")
        }
        async fn agent_secret(&self, _: &str) -> Result<String, JenkinsError> {
            unreachable!("not used by node removal")
        }
        async fn toggle_offline(&self, node: &str, _: &str) -> Result<(), JenkinsError> {
            self.calls.lock().unwrap().push(format!("offline {node}"));
            Ok(())
        }
        async fn delete_node(&self, node: &str) -> Result<(), JenkinsError> {
            self.calls.lock().unwrap().push(format!("delete {node}"));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_late_agent_connected_by_removal_time_is_kept_only_when_asked() {
        let jenkins = FixedNodes {
            set: computers(vec![computer("i-0000000a", true)]),
            calls: Default::default(),
        };
        let kept = remove_idle_node(&jenkins, "i-0000000a", true).await;
        assert!(!kept.unwrap(), "kept");
        assert!(jenkins.calls.lock().unwrap().is_empty());
        // Removed for another reason (its master or template is gone), it goes.
        let removed = remove_idle_node(&jenkins, "i-0000000a", false).await;
        assert!(removed.unwrap(), "removed");
        assert_eq!(
            *jenkins.calls.lock().unwrap(),
            vec!["offline i-0000000a", "delete i-0000000a"]
        );
    }

    /// A journal in memory, recording what is forgotten.
    #[derive(Default)]
    struct MemoryJournal {
        records: std::sync::Mutex<Vec<LaunchRecord>>,
        forgotten: std::sync::Mutex<Vec<String>>,
    }

    impl LaunchJournal for &MemoryJournal {
        async fn record(&self, record: &LaunchRecord) -> Result<(), AwsError> {
            self.records.lock().unwrap().push(record.clone());
            Ok(())
        }
        async fn forget(&self, token: &str) -> Result<(), AwsError> {
            self.forgotten.lock().unwrap().push(token.to_string());
            Ok(())
        }
        async fn recall(&self) -> Result<Vec<LaunchRecord>, AwsError> {
            Ok(self.records.lock().unwrap().clone())
        }
    }

    /// Neither EC2 nor secrets are called when the journal is read.
    struct Untouched;

    impl Fleet for Untouched {
        async fn launch(&self, _: &LaunchSpec) -> Result<String, AwsError> {
            unreachable!("recalling launches sends none")
        }
        async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
            unreachable!("recalling launches lists nothing")
        }
        async fn terminate(&self, _: &[String]) -> Result<Vec<String>, AwsError> {
            unreachable!("recalling launches terminates nothing")
        }
    }

    impl Secrets for Untouched {
        async fn put_secret(&self, _: &str, _: &str) -> Result<(), AwsError> {
            unreachable!()
        }
        async fn delete_secret(&self, _: &str) -> Result<(), AwsError> {
            unreachable!()
        }
    }

    /// A launch of `docker` on master-a under `token`, as the journal keeps it.
    fn record(token: &str, since_ms: i64, instance: Option<&str>) -> LaunchRecord {
        LaunchRecord {
            spec: LaunchSpec {
                master: "master-a".to_string(),
                master_url: "http://10.0.0.5:8080/".to_string(),
                label: "docker".to_string(),
                instance_type: "c6i.large".to_string(),
                subnet_id: "subnet-1".to_string(),
                spot: false,
                client_token: token.to_string(),
            },
            since_ms,
            instance_id: instance.map(str::to_string),
        }
    }

    fn fleet_config(max_agents: u32, masters: &[&str], labels: Vec<LabelTemplate>) -> FleetConfig {
        FleetConfig {
            schema: crate::domain::fleet::FLEET_CONFIG_SCHEMA,
            stack: "ci".to_string(),
            launch_template: crate::domain::fleet::LaunchTemplate {
                id: "lt-1".to_string(),
                version: "$Latest".to_string(),
            },
            max_agents,
            boot_timeout_secs: 60,
            masters: masters.iter().map(|m| m.to_string()).collect(),
            labels,
        }
    }

    #[tokio::test]
    async fn recalled_launches_count_old_ones_are_forgotten_and_the_journal_wins() {
        let now = 10 * REMEMBER_LAUNCH_MS;
        let journal = MemoryJournal::default();
        journal.records.lock().unwrap().extend([
            record("ls-launched", now - 1_000, Some("i-0000000a")),
            record("ls-unanswered", now - 2_000, None),
            record("ls-old", now - REMEMBER_LAUNCH_MS, None),
        ]);
        let config = fleet_config(4, &["master-a"], Vec::new());
        let mut scaler: Scaler<FixedNodes, Untouched, Untouched, &MemoryJournal> =
            Scaler::new(Vec::new(), Untouched, Untouched, &journal, config, false);
        // What this process remembered of an unanswered launch another process settled since.
        scaler.unresolved.insert(
            "ls-settled-elsewhere".to_string(),
            Unresolved {
                spec: record("ls-settled-elsewhere", now, None).spec,
                since_ms: now,
            },
        );
        assert_eq!(scaler.recall_launches(now).await.unwrap(), 2);
        assert_eq!(*journal.forgotten.lock().unwrap(), vec!["ls-old"]);
        assert_eq!(
            scaler.launched["i-0000000a"].instance.launched_at_ms,
            now - 1_000
        );
        assert_eq!(
            scaler.unresolved.keys().collect::<Vec<_>>(),
            vec!["ls-unanswered"]
        );
        // Each unanswered launch keeps a place under the stack's cap.
        assert_eq!(scaler.planning_config().max_agents, 3);
    }

    /// An EC2 that answers each DescribeInstances with the next listing of a script.
    struct Listings(std::sync::Mutex<std::collections::VecDeque<Vec<AgentInstance>>>);

    impl Fleet for Listings {
        async fn launch(&self, _: &LaunchSpec) -> Result<String, AwsError> {
            unreachable!("observing launches nothing")
        }
        async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .pop_front()
                .expect("one listing per tick"))
        }
        async fn terminate(&self, _: &[String]) -> Result<Vec<String>, AwsError> {
            unreachable!("observing terminates nothing")
        }
    }

    /// The `docker` template: one executor, one placement, two agents per master.
    fn docker_template() -> LabelTemplate {
        LabelTemplate {
            name: "docker".to_string(),
            node_labels: vec!["docker".to_string()],
            executors: 1,
            placements: vec![crate::domain::fleet::Placement {
                instance_type: "c6i.large".to_string(),
                subnets: vec![crate::domain::fleet::Subnet {
                    id: "subnet-1".to_string(),
                    availability_zone: "us-east-1a".to_string(),
                }],
            }],
            max_per_master: 2,
            warm_minimum: 0,
            idle_secs: 60,
            spot: crate::domain::fleet::SpotPolicy::Never,
        }
    }

    /// Agent i-0000000a of `docker` on master-a, as EC2 lists it.
    fn docker_agent(state: AgentState, launched_at_ms: i64) -> AgentInstance {
        AgentInstance {
            id: "i-0000000a".to_string(),
            state,
            master: Some("master-a".to_string()),
            master_url: Some("http://10.0.0.5:8080/".to_string()),
            label: Some("docker".to_string()),
            instance_type: Some("c6i.large".to_string()),
            subnet_id: Some("subnet-1".to_string()),
            launched_at_ms: Some(launched_at_ms),
        }
    }

    /// A queue of one buildable item (id 7) for `docker`, handed to an executor or not.
    fn docker_queue(since_ms: i64, pending: bool) -> Queue {
        serde_json::from_value(serde_json::json!({ "items": [{
            "id": 7, "buildable": true, "inQueueSince": since_ms, "pending": pending,
            "why": "Waiting for next available executor on \u{2018}docker\u{2019}"
        }]}))
        .expect("queue JSON")
    }

    /// Chaos seed 895: a fresh instance EC2 listed once and then left out again, on a master
    /// that cannot be read, must still count under the stack's cap until EC2 lists it gone.
    #[tokio::test]
    async fn a_launch_listed_once_then_hidden_again_still_counts_until_listed_gone() {
        let now = 10 * REMEMBER_LAUNCH_MS;
        let agent = |state| docker_agent(state, now - 2_000);
        let fleet = Listings(std::sync::Mutex::new(
            [
                vec![agent(AgentState::Pending)],
                Vec::new(),
                vec![agent(AgentState::Gone)],
            ]
            .into(),
        ));
        let journal = MemoryJournal::default();
        journal
            .records
            .lock()
            .unwrap()
            .push(record("ls-a", now - 2_000, Some("i-0000000a")));
        let waiting = docker_queue(now - 5_000, false);
        let masters = vec![
            MasterEndpoint {
                name: "master-a".to_string(),
                url: "http://10.0.0.5:8080/".to_string(),
                jenkins: Handover::steady(None),
            },
            MasterEndpoint {
                name: "master-b".to_string(),
                url: "http://10.0.0.6:8080/".to_string(),
                jenkins: Handover::steady(Some((waiting, computers(Vec::new())))),
            },
        ];
        let config = fleet_config(1, &["master-a", "master-b"], vec![docker_template()]);
        let mut scaler = Scaler::new(masters, fleet, Untouched, &journal, config, false);
        assert_eq!(scaler.recall_launches(now).await.unwrap(), 1);

        let listed = scaler.observe_only(now).await;
        assert_eq!(listed.unreadable_masters, vec!["master-a"]);
        assert!(listed.plan.launches.is_empty(), "{:?}", listed.plan);
        let hidden = scaler.observe_only(now + 1_000).await;
        assert!(
            hidden.plan.launches.is_empty(),
            "the hidden instance keeps its place: {:?}",
            hidden.plan
        );
        assert!(journal.forgotten.lock().unwrap().is_empty());

        let gone = scaler.observe_only(now + 2_000).await;
        assert_eq!(*journal.forgotten.lock().unwrap(), vec!["ls-a"]);
        assert_eq!(
            gone.plan
                .launches
                .iter()
                .map(|l| l.master.as_str())
                .collect::<Vec<_>>(),
            vec!["master-b"],
            "its place is free once EC2 lists it gone"
        );
    }

    /// A master whose first request sees the state `before` and every later one the state
    /// `after` (an agent taking an item between two requests); `None` answers 503.
    struct Handover {
        requests: std::sync::atomic::AtomicUsize,
        before: Option<(Queue, ComputerSet)>,
        after: Option<(Queue, ComputerSet)>,
    }

    impl Handover {
        fn changing(before: (Queue, ComputerSet), after: (Queue, ComputerSet)) -> Handover {
            Handover {
                requests: Default::default(),
                before: Some(before),
                after: Some(after),
            }
        }

        fn steady(state: Option<(Queue, ComputerSet)>) -> Handover {
            Handover {
                requests: Default::default(),
                before: state.clone(),
                after: state,
            }
        }

        fn state(&self) -> Result<&(Queue, ComputerSet), JenkinsError> {
            let n = self
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let state = if n == 0 { &self.before } else { &self.after };
            state.as_ref().ok_or_else(|| JenkinsError::Status {
                url: "http://master/computer/api/json".to_string(),
                status: 503,
                snippet: "restarting".to_string(),
            })
        }
    }

    impl Jenkins for Handover {
        async fn queue(&self) -> Result<Queue, JenkinsError> {
            Ok(self.state()?.0.clone())
        }
        async fn computers(&self) -> Result<ComputerSet, JenkinsError> {
            Ok(self.state()?.1.clone())
        }
        async fn create_inbound_agent(&self, _: &NewAgent<'_>) -> Result<(), JenkinsError> {
            unreachable!("observing creates nothing")
        }
        async fn agent_secret(&self, _: &str) -> Result<String, JenkinsError> {
            unreachable!("observing reads no secret")
        }
        async fn toggle_offline(&self, _: &str, _: &str) -> Result<(), JenkinsError> {
            unreachable!("observing retires nothing")
        }
        async fn delete_node(&self, _: &str) -> Result<(), JenkinsError> {
            unreachable!("observing deletes nothing")
        }
    }

    /// What one observing tick of master-a plans, its agent i-0000000a listed by EC2.
    async fn plan_of(master: Handover, now: i64) -> Plan {
        let fleet = Listings(std::sync::Mutex::new(
            [vec![docker_agent(AgentState::Running, now - 60_000)]].into(),
        ));
        let journal = MemoryJournal::default();
        let masters = vec![MasterEndpoint {
            name: "master-a".to_string(),
            url: "http://10.0.0.5:8080/".to_string(),
            jenkins: master,
        }];
        let config = fleet_config(4, &["master-a"], vec![docker_template()]);
        let mut scaler = Scaler::new(masters, fleet, Untouched, &journal, config, false);
        scaler.observe_only(now).await.plan
    }

    fn agent_node(idle: bool) -> ComputerSet {
        computers(vec![
            serde_json::from_value(serde_json::json!({
                "displayName": "i-0000000a", "offline": false, "idle": idle, "numExecutors": 1
            }))
            .expect("computer JSON"),
        ])
    }

    /// Chaos seed 833: the agent took the item between the scaler's two reads. Seen on both
    /// sides (waiting, and its node busy), it made the plan launch a second agent for it.
    #[tokio::test]
    async fn an_item_taken_between_the_two_reads_is_not_counted_twice() {
        let now = 10 * REMEMBER_LAUNCH_MS;
        let handover = |after_queue: Queue| {
            Handover::changing(
                (docker_queue(now - 5_000, false), agent_node(true)),
                (after_queue, agent_node(false)),
            )
        };
        for after_queue in [Queue::default(), docker_queue(now - 5_000, true)] {
            let plan = plan_of(handover(after_queue.clone()), now).await;
            assert!(plan.launches.is_empty(), "{after_queue:?}: {plan:?}");
        }
    }

    /// Jenkins lists an item handed to an executor (`pending`) while that executor is busy
    /// with it already: it is not demand.
    #[tokio::test]
    async fn a_pending_item_is_not_demand() {
        let now = 10 * REMEMBER_LAUNCH_MS;
        let pending = Handover::steady(Some((docker_queue(now - 5_000, true), agent_node(false))));
        assert!(plan_of(pending, now).await.launches.is_empty());
        // The same item still waiting, with its agent busy on another build, is.
        let waiting = Handover::steady(Some((docker_queue(now - 5_000, false), agent_node(false))));
        assert_eq!(plan_of(waiting, now).await.launches.len(), 1);
    }

    /// A master that answers its nodes only once every other master has asked too (it gives
    /// up after 5 s with a 503): a tick that reads masters one after the other finds them all
    /// unreadable.
    struct Meeting {
        others: std::sync::Arc<tokio::sync::Barrier>,
        master: Handover,
    }

    impl Jenkins for Meeting {
        async fn queue(&self) -> Result<Queue, JenkinsError> {
            self.master.queue().await
        }
        async fn computers(&self) -> Result<ComputerSet, JenkinsError> {
            let met =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.others.wait()).await;
            if met.is_err() {
                return Err(JenkinsError::Status {
                    url: "http://master/computer/api/json".to_string(),
                    status: 503,
                    snippet: "the other masters were not read at the same time".to_string(),
                });
            }
            self.master.computers().await
        }
        async fn create_inbound_agent(&self, agent: &NewAgent<'_>) -> Result<(), JenkinsError> {
            self.master.create_inbound_agent(agent).await
        }
        async fn agent_secret(&self, node: &str) -> Result<String, JenkinsError> {
            self.master.agent_secret(node).await
        }
        async fn toggle_offline(&self, node: &str, why: &str) -> Result<(), JenkinsError> {
            self.master.toggle_offline(node, why).await
        }
        async fn delete_node(&self, node: &str) -> Result<(), JenkinsError> {
            self.master.delete_node(node).await
        }
    }

    /// A tick reads its masters at once, so its length does not grow with their number; their
    /// answers still count each for its own master.
    #[tokio::test]
    async fn a_tick_reads_every_master_at_once() {
        let now = 10 * REMEMBER_LAUNCH_MS;
        let names = ["master-a", "master-b", "master-c"];
        let others = std::sync::Arc::new(tokio::sync::Barrier::new(names.len()));
        let masters = names
            .iter()
            .enumerate()
            .map(|(i, name)| MasterEndpoint {
                name: name.to_string(),
                url: format!("http://10.0.0.{i}:8080/"),
                jenkins: Meeting {
                    others: others.clone(),
                    // Only master-b has a build waiting.
                    master: Handover::steady(Some((
                        if i == 1 {
                            docker_queue(now - 5_000, false)
                        } else {
                            Queue::default()
                        },
                        computers(Vec::new()),
                    ))),
                },
            })
            .collect();
        let fleet = Listings(std::sync::Mutex::new([Vec::new()].into()));
        let journal = MemoryJournal::default();
        let config = fleet_config(4, &names, vec![docker_template()]);
        let mut scaler = Scaler::new(masters, fleet, Untouched, &journal, config, false);
        let report = scaler.observe_only(now).await;
        assert!(report.unreadable_masters.is_empty(), "{:?}", report.errors);
        let launches: Vec<&str> = report
            .plan
            .launches
            .iter()
            .map(|l| l.master.as_str())
            .collect();
        assert_eq!(launches, vec!["master-b"]);
    }
}
