//! The simulator's model of one Jenkins controller (nodes, jobs, queue, builds) and its
//! scheduler, modelled on `hudson.model.Queue.maintain()`. Pure state: no I/O, no await; the
//! caller passes the time and delivers the agent messages this module queues.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use longshore::domain::labels::{self, LabelExpr};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc::UnboundedSender;

use super::SimConfig;
use super::faults::{ActiveFault, Fault};
use super::messages as msg;

/// Simulator-only build parameter giving a build's duration in milliseconds.
pub const DURATION_PARAM: &str = "LONGSHORE_SIM_DURATION_MS";
/// Build duration when neither the trigger nor the job gives one.
pub const DEFAULT_BUILD_DURATION: Duration = Duration::from_secs(30);
/// `Queue.leftItems`: `expireAfterWrite(5 * 60, SECONDS)`.
const LEFT_ITEM_TTL_MS: u64 = 5 * 60 * 1000;

/// What a job runs as, which decides the queue item's task class and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `hudson.model.FreeStyleProject`: the job's own queue item needs an executor.
    Freestyle,
    /// `org.jenkinsci.plugins.workflow.job.WorkflowJob` with one `node('label') { … }` block:
    /// the run starts at once on a flyweight executor and queues a `PlaceholderTask` for the
    /// node block.
    Pipeline,
}

/// `hudson.model.Node.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeMode {
    /// Takes items without a label too.
    Normal,
    /// Takes only items whose label matches it.
    Exclusive,
}

impl NodeMode {
    /// The exported enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMode::Normal => "NORMAL",
            NodeMode::Exclusive => "EXCLUSIVE",
        }
    }
}

/// Why an in-process or `/__sim/` request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The name fails `Jenkins.checkGoodName` or is taken; the text is Jenkins'.
    #[error("{0}")]
    BadName(String),
    /// `Slave.InvalidConfig.Executors`.
    #[error("{0}")]
    InvalidConfig(String),
    /// No such node.
    #[error("no such node: {0}")]
    NoSuchNode(String),
    /// No such job.
    #[error("no such job: {0}")]
    NoSuchJob(String),
    /// Malformed request.
    #[error("{0}")]
    Invalid(String),
}

/// Counts of agents per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounts {
    /// Defined but never connected yet (the booting phase of a farm agent).
    pub connecting: usize,
    /// Connected, accepting, no build running.
    pub idle: usize,
    /// Connected with at least one build running.
    pub busy: usize,
    /// Connected once and now disconnected, or marked temporarily offline.
    pub offline: usize,
}

/// A build that ended because its agent went away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostBuild {
    /// Job name.
    pub job: String,
    /// Build number.
    pub number: u32,
    /// The node it was running on.
    pub node: String,
}

/// How long one build waited in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitSample {
    /// Job name.
    pub job: String,
    /// Build number.
    pub number: u32,
    /// The queue item that became the build (the `node` block's item for a pipeline).
    pub queue_id: u64,
    /// The item's label expression, `None` without a label.
    pub label: Option<String>,
    /// Milliseconds from entering the queue to starting on an executor.
    pub wait_ms: u64,
}

/// Counters for the demo and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Items in the queue per label name (`""` for items without a label).
    pub queue_by_label: BTreeMap<String, usize>,
    /// Items in the queue.
    pub queue_length: usize,
    /// Agents per state, per label of their label string (self labels excluded).
    pub agents_by_label: BTreeMap<String, AgentCounts>,
    /// Agents per state, all labels.
    pub agents: AgentCounts,
    /// Builds that finished (any result).
    pub builds_completed: u64,
    /// Builds running now.
    pub builds_running: usize,
    /// Builds lost because their agent disconnected (or Jenkins restarted) mid-build.
    pub builds_lost: Vec<LostBuild>,
    /// Queue waiting time of every started build, in start order.
    pub waits: Vec<WaitSample>,
    /// Every agent secret this master handed out (its JNLP file), so that a run can look for
    /// them where they must never be, such as logs.
    pub agent_secrets_issued: Vec<String>,
}

/// Messages the socket task of an agent connection acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A JSON text frame for the agent.
    Text(String),
    /// Close the connection (fault injection, restart, reconnection from the same peer).
    Close,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub id: u64,
    pub cookie: String,
    pub tx: UnboundedSender<AgentEvent>,
}

/// What `doCreateItem` (or `createItem` with XML) defines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgentSpec<'a> {
    pub name: &'a str,
    pub label_string: &'a str,
    /// `nodeDescription`, what `Computer.getDescription` exports.
    pub description: &'a str,
    pub executors: u32,
    pub mode: NodeMode,
    pub remote_fs: &'a str,
    pub websocket: bool,
}

/// A temporary offline cause set by a user (`OfflineCause.UserCause`).
#[derive(Debug, Clone)]
pub(crate) struct UserOffline {
    pub user: String,
    pub message: Option<String>,
    pub timestamp: u64,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub builtin: bool,
    pub labels: BTreeSet<String>,
    /// `Node.getNodeDescription`.
    pub description: String,
    pub mode: NodeMode,
    pub remote_fs: String,
    pub websocket: bool,
    /// One slot per executor: the running build's key.
    pub executors: Vec<Option<u64>>,
    pub conn: Option<Conn>,
    pub ever_connected: bool,
    pub temp_offline: Option<UserOffline>,
    /// `OfflineCause.ChannelTermination` timestamp after a disconnect.
    pub channel_terminated: Option<u64>,
}

impl Node {
    /// Has a channel (the built-in node always does).
    pub fn connected(&self) -> bool {
        self.builtin || self.conn.is_some()
    }

    /// `Computer.isOffline()`: temporarily offline or no channel.
    pub fn offline(&self) -> bool {
        self.temp_offline.is_some() || !self.connected()
    }

    pub fn idle_slots(&self) -> usize {
        self.executors.iter().filter(|e| e.is_none()).count()
    }

    pub fn busy_slots(&self) -> usize {
        self.executors.len() - self.idle_slots()
    }

    /// `Computer.getDisplayName()`.
    pub fn display_name(&self) -> &str {
        if self.builtin {
            msg::BUILT_IN_DISPLAY_NAME
        } else {
            &self.name
        }
    }

    /// `Computer.getUrl()`, relative to the root.
    pub fn url(&self) -> String {
        if self.builtin {
            "computer/(built-in)/".to_owned()
        } else {
            format!("computer/{}/", super::api::encode_path_segment(&self.name))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuildResult {
    Success,
    Failure,
}

impl BuildResult {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildResult::Success => "SUCCESS",
            BuildResult::Failure => "FAILURE",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BuildRec {
    pub number: u32,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub result: Option<BuildResult>,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub name: String,
    pub kind: JobKind,
    /// `assignedNode` of a freestyle job, the `node(..)` label of a pipeline.
    pub label: Option<String>,
    pub concurrent: bool,
    pub default_duration: Duration,
    pub next_number: u32,
    pub builds: BTreeMap<u32, BuildRec>,
}

impl Job {
    pub fn building(&self) -> Option<&BuildRec> {
        self.builds.values().rev().find(|b| b.result.is_none())
    }

    /// `Job.getEstimatedDuration`, simplified: the mean of the last three successful builds,
    /// -1 without one.
    pub fn estimated_duration_ms(&self) -> i64 {
        let done: Vec<u64> = self
            .builds
            .values()
            .rev()
            .filter(|b| b.result == Some(BuildResult::Success))
            .take(3)
            .map(|b| b.duration_ms)
            .collect();
        if done.is_empty() {
            -1
        } else {
            (done.iter().sum::<u64>() / done.len() as u64) as i64
        }
    }

    /// `Job.getIconColor()` name.
    pub fn color(&self) -> String {
        let last_done = self.builds.values().rev().find_map(|b| b.result);
        let base = match last_done {
            None => "notbuilt",
            Some(BuildResult::Success) => "blue",
            Some(BuildResult::Failure) => "red",
        };
        if self.building().is_some() {
            format!("{base}_anime")
        } else {
            base.to_owned()
        }
    }

    pub fn class(&self) -> &'static str {
        match self.kind {
            JobKind::Freestyle => "hudson.model.FreeStyleProject",
            JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        }
    }

    pub fn run_class(&self) -> &'static str {
        match self.kind {
            JobKind::Freestyle => "hudson.model.FreeStyleBuild",
            JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowRun",
        }
    }
}

/// What a queue item will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// The job itself (a freestyle build, or a pipeline run on a flyweight executor).
    Job(String),
    /// A pipeline's `node(..)` block of run `run` of job `job`.
    Placeholder { job: String, run: u32 },
}

impl Task {
    pub fn job(&self) -> &str {
        match self {
            Task::Job(j) => j,
            Task::Placeholder { job, .. } => job,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemState {
    Waiting,
    Blocked,
    Buildable,
}

#[derive(Debug, Clone)]
pub(crate) struct QItem {
    pub id: u64,
    pub task: Task,
    pub label: Option<LabelExpr>,
    pub in_queue_since: u64,
    /// End of the quiet period (`WaitingItem.timestamp`).
    pub due_ms: u64,
    pub buildable_since: Option<u64>,
    pub state: ItemState,
    pub params: Vec<(String, String)>,
    pub duration: Duration,
    pub user: String,
}

/// A queue item that left the queue (`Queue.LeftItem`).
#[derive(Debug, Clone)]
pub(crate) struct Left {
    pub item: QItem,
    pub left_ms: u64,
    pub cancelled: bool,
    /// The executable's class and build number once started.
    pub executable: Option<(&'static str, u32)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub task: Task,
    pub number: u32,
    pub node: String,
    pub started_ms: u64,
    pub ends_at: Instant,
}

/// The whole simulated controller.
pub(crate) struct State {
    pub cfg: SimConfig,
    pub root_url: String,
    secret_key: [u8; 32],
    /// Agent secrets handed out, for [`SimStats::agent_secrets_issued`].
    pub(crate) secrets_issued: BTreeSet<String>,
    epoch_ms: u64,
    epoch: Instant,
    next_queue_id: u64,
    next_key: u64,
    next_conn: u64,
    pub nodes: BTreeMap<String, Node>,
    pub jobs: BTreeMap<String, Job>,
    pub queue: BTreeMap<u64, QItem>,
    waiting: BTreeSet<(u64, u64)>,
    pub left: HashMap<u64, Left>,
    left_order: VecDeque<u64>,
    pub running: BTreeMap<u64, Running>,
    pub sessions: HashMap<String, String>,
    pub faults: Vec<ActiveFault>,
    pub down_until: Option<Instant>,
    builds_completed: u64,
    builds_lost: Vec<LostBuild>,
    waits: Vec<WaitSample>,
}

impl State {
    pub fn new(cfg: SimConfig, secret_key: [u8; 32], epoch_ms: u64, epoch: Instant) -> Self {
        let mut nodes = BTreeMap::new();
        // The built-in node: always has a computer (AbstractCIBase.createNewComputerForNode,
        // "we always need Computer for the built-in node"), 0 executors as longshore configures
        // its masters, self label `built-in` (Jenkins.getSelfLabel after the 2.307 rename).
        nodes.insert(
            String::new(),
            Node {
                name: String::new(),
                builtin: true,
                labels: labels::node_labels("built-in", ""),
                description: msg::BUILT_IN_DESCRIPTION.to_owned(),
                mode: NodeMode::Exclusive,
                remote_fs: "/var/jenkins_home".to_owned(),
                websocket: false,
                executors: Vec::new(),
                conn: None,
                ever_connected: true,
                temp_offline: None,
                channel_terminated: None,
            },
        );
        State {
            cfg,
            root_url: String::new(),
            secret_key,
            secrets_issued: BTreeSet::new(),
            epoch_ms,
            epoch,
            next_queue_id: 1,
            next_key: 1,
            next_conn: 1,
            nodes,
            jobs: BTreeMap::new(),
            queue: BTreeMap::new(),
            waiting: BTreeSet::new(),
            left: HashMap::new(),
            left_order: VecDeque::new(),
            running: BTreeMap::new(),
            sessions: HashMap::new(),
            faults: Vec::new(),
            down_until: None,
            builds_completed: 0,
            builds_lost: Vec::new(),
            waits: Vec::new(),
        }
    }

    /// Wall-clock milliseconds for `now`, monotonic within the simulator.
    pub fn ms(&self, now: Instant) -> u64 {
        self.epoch_ms + now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn mac(&self, data: &str) -> String {
        // HMAC-SHA256 accepts keys of any length, so `new_from_slice` cannot fail here.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret_key) else {
            return String::new();
        };
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// `JnlpAgentReceiver.SLAVE_SECRET.mac(name)`: HMAC-SHA256 of the node name, hex.
    pub fn agent_secret(&self, name: &str) -> Option<String> {
        self.nodes
            .get(name)
            .filter(|n| !n.builtin)
            .map(|_| self.mac(name))
    }

    /// The crumb for a web session (`DefaultCrumbIssuer` mixes in the session id).
    pub fn crumb(&self, session: &str) -> String {
        self.mac(&format!("crumb:{session}"))
    }

    /// `Jenkins.getNodes()` is not empty (the built-in node is not in that list).
    fn has_agents(&self) -> bool {
        self.nodes.values().any(|n| !n.builtin)
    }

    /// Resolves a node name from a URL (`Jenkins.getComputer`: `(built-in)` and `(master)`
    /// address the built-in node).
    pub fn node_key(&self, url_name: &str) -> Option<String> {
        let key = match url_name {
            "(built-in)" | "(master)" => "",
            other => other,
        };
        self.nodes.contains_key(key).then(|| key.to_owned())
    }

    // ----- nodes -------------------------------------------------------------------------

    /// `ComputerSet.checkName` + `Jenkins.checkGoodName`.
    pub fn check_new_node_name(&self, name: Option<&str>) -> Result<String, SimError> {
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SimError::BadName(msg::NAME_REQUIRED.to_owned()))?;
        check_good_name(name)?;
        if self.nodes.contains_key(name) {
            return Err(SimError::BadName(msg::agent_already_exists(name)));
        }
        Ok(name.to_owned())
    }

    pub fn create_agent(&mut self, spec: AgentSpec<'_>, now: Instant) -> Result<(), SimError> {
        let AgentSpec {
            name,
            label_string,
            description,
            executors,
            mode,
            remote_fs,
            websocket,
        } = spec;
        let name = self.check_new_node_name(Some(name))?;
        if executors == 0 {
            return Err(SimError::InvalidConfig(msg::invalid_executors(&name)));
        }
        let node = Node {
            labels: labels::node_labels(&name, label_string),
            description: description.to_owned(),
            name: name.clone(),
            builtin: false,
            mode,
            remote_fs: remote_fs.to_owned(),
            websocket,
            executors: vec![None; executors as usize],
            conn: None,
            ever_connected: false,
            temp_offline: None,
            channel_terminated: None,
        };
        self.nodes.insert(name, node);
        self.maintain(now);
        Ok(())
    }

    pub fn delete_node(&mut self, key: &str, now: Instant) -> Result<(), SimError> {
        if key.is_empty() {
            return Err(SimError::Invalid(
                "the built-in node cannot be deleted".into(),
            ));
        }
        self.disconnect_node(key, now, true);
        self.nodes.remove(key);
        self.maintain(now);
        Ok(())
    }

    /// `Computer.doToggleOffline` / `doChangeOfflineCause`.
    pub fn set_temp_offline(&mut self, key: &str, cause: Option<UserOffline>, now: Instant) {
        if let Some(n) = self.nodes.get_mut(key) {
            n.temp_offline = cause;
        }
        self.maintain(now);
    }

    /// An agent connection was accepted: the node goes online. Returns the connection id.
    pub fn connect(
        &mut self,
        name: &str,
        cookie: String,
        tx: UnboundedSender<AgentEvent>,
        now: Instant,
    ) -> Option<u64> {
        let id = self.next_conn;
        self.next_conn += 1;
        let node = self.nodes.get_mut(name)?;
        node.conn = Some(Conn { id, cookie, tx });
        node.ever_connected = true;
        node.channel_terminated = None;
        self.maintain(now);
        Some(id)
    }

    /// The connection `conn_id` of `name` closed. A stale id (already replaced) is ignored.
    pub fn connection_closed(&mut self, name: &str, conn_id: u64, now: Instant) {
        let current = self
            .nodes
            .get(name)
            .and_then(|n| n.conn.as_ref())
            .map(|c| c.id);
        if current == Some(conn_id) {
            self.disconnect_node(name, now, false);
            self.maintain(now);
        }
    }

    /// Drops a node's channel: builds on it fail and count as lost; the socket is told to close.
    pub fn disconnect_node(&mut self, key: &str, now: Instant, close_socket: bool) {
        let ms = self.ms(now);
        let Some(node) = self.nodes.get_mut(key) else {
            return;
        };
        if let Some(conn) = node.conn.take() {
            if close_socket {
                let _ = conn.tx.send(AgentEvent::Close);
            }
            node.channel_terminated = Some(ms);
        }
        let keys: Vec<u64> = node.executors.iter_mut().filter_map(Option::take).collect();
        for key in keys {
            if let Some(run) = self.running.remove(&key) {
                self.builds_lost.push(LostBuild {
                    job: run.task.job().to_owned(),
                    number: run.number,
                    node: run.node.clone(),
                });
                self.finish_build(&run, BuildResult::Failure, ms);
            }
        }
    }

    /// Which agents are connected now, with their current connection cookie.
    pub fn connected_cookie(&self, name: &str) -> Option<&str> {
        self.nodes
            .get(name)
            .and_then(|n| n.conn.as_ref())
            .map(|c| c.cookie.as_str())
    }

    // ----- jobs and queue ----------------------------------------------------------------

    pub fn create_job(
        &mut self,
        name: &str,
        kind: JobKind,
        label: Option<String>,
        concurrent: bool,
        default_duration: Duration,
    ) -> Result<(), SimError> {
        check_good_name(name)?;
        if self.jobs.contains_key(name) {
            return Err(SimError::BadName(msg::job_already_exists(name)));
        }
        self.jobs.insert(
            name.to_owned(),
            Job {
                name: name.to_owned(),
                kind,
                label,
                concurrent,
                default_duration,
                next_number: 1,
                builds: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// `Queue.schedule2`: adds an item for `job`, or returns the item already queued for the
    /// same job with the same parameters (Jenkins folds such duplicates) when `fold` is set.
    pub fn schedule(
        &mut self,
        job: &str,
        quiet: Option<Duration>,
        params: Vec<(String, String)>,
        duration: Option<Duration>,
        fold: bool,
        now: Instant,
    ) -> Result<u64, SimError> {
        let j = self
            .jobs
            .get(job)
            .ok_or_else(|| SimError::NoSuchJob(job.to_owned()))?;
        if fold {
            let dup = self
                .queue
                .values()
                .find(|i| i.task == Task::Job(job.to_owned()) && i.params == params);
            if let Some(dup) = dup {
                return Ok(dup.id);
            }
        }
        let duration = duration.unwrap_or(j.default_duration);
        let label = match j.kind {
            JobKind::Freestyle => labels::assigned_label(j.label.as_deref()),
            // The pipeline run itself is a flyweight task without a label.
            JobKind::Pipeline => None,
        };
        let quiet = quiet.unwrap_or(self.cfg.quiet_period);
        let ms = self.ms(now);
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let item = QItem {
            id,
            task: Task::Job(job.to_owned()),
            label,
            in_queue_since: ms,
            due_ms: ms + quiet.as_millis() as u64,
            buildable_since: None,
            state: ItemState::Waiting,
            params,
            duration,
            user: self.cfg.user.clone(),
        };
        self.waiting.insert((item.due_ms, id));
        self.queue.insert(id, item);
        self.maintain(now);
        Ok(id)
    }

    /// `Queue.cancel`: the item leaves the queue as a cancelled `LeftItem`.
    pub fn cancel(&mut self, id: u64, now: Instant) -> bool {
        let Some(item) = self.queue.remove(&id) else {
            return false;
        };
        self.waiting.remove(&(item.due_ms, id));
        let ms = self.ms(now);
        self.push_left(Left {
            item,
            left_ms: ms,
            cancelled: true,
            executable: None,
        });
        self.maintain(now);
        true
    }

    fn push_left(&mut self, left: Left) {
        let id = left.item.id;
        let now = left.left_ms;
        self.left.insert(id, left);
        self.left_order.push_back(id);
        while let Some(&old) = self.left_order.front() {
            let expired = self
                .left
                .get(&old)
                .is_none_or(|l| l.left_ms + LEFT_ITEM_TTL_MS <= now);
            if !expired {
                break;
            }
            self.left_order.pop_front();
            if self
                .left
                .get(&old)
                .is_some_and(|l| l.left_ms + LEFT_ITEM_TTL_MS <= now)
            {
                self.left.remove(&old);
            }
        }
    }

    /// `Queue.getItem(id)` for the left-items cache, honouring its expiry.
    pub fn left_item(&self, id: u64, now_ms: u64) -> Option<&Left> {
        self.left
            .get(&id)
            .filter(|l| l.left_ms + LEFT_ITEM_TTL_MS > now_ms)
    }

    fn finish_build(&mut self, run: &Running, result: BuildResult, ms: u64) {
        self.builds_completed += 1;
        if let Some(job) = self.jobs.get_mut(run.task.job())
            && let Some(rec) = job.builds.get_mut(&run.number)
        {
            rec.result = Some(result);
            rec.duration_ms = ms.saturating_sub(rec.started_ms);
        }
        if let Some(node) = self.nodes.get(&run.node)
            && let Some(conn) = &node.conn
        {
            let text = serde_json::json!({
                "type": "build_finished",
                "job": run.task.job(),
                "number": run.number,
                "result": result.as_str(),
            })
            .to_string();
            let _ = conn.tx.send(AgentEvent::Text(text));
        }
    }

    /// One pass of the scheduler (`Queue.maintain`): finishes due builds, ends quiet periods,
    /// blocks and unblocks, assigns buildable items to idle executors in queue order.
    /// Returns when it next has something to do.
    pub fn maintain(&mut self, now: Instant) -> Option<Instant> {
        let ms = self.ms(now);
        // 1. Builds whose time is up.
        let due: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, r)| r.ends_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(run) = self.running.remove(&key) {
                if let Some(node) = self.nodes.get_mut(&run.node) {
                    for slot in node.executors.iter_mut() {
                        if *slot == Some(key) {
                            *slot = None;
                        }
                    }
                }
                self.finish_build(&run, BuildResult::Success, ms);
            }
        }
        // 2. Quiet periods that ended.
        while let Some(&(due_ms, id)) = self.waiting.first() {
            if due_ms > ms {
                break;
            }
            self.waiting.pop_first();
            let Some(item) = self.queue.get_mut(&id) else {
                continue;
            };
            item.buildable_since = Some(ms);
            item.state = ItemState::Buildable;
            if let Task::Job(job) = &item.task
                && self
                    .jobs
                    .get(job)
                    .is_some_and(|j| j.kind == JobKind::Pipeline)
            {
                // A WorkflowJob's own item is a FlyweightTask: it leaves the queue at once and
                // its run asks for a node with a PlaceholderTask item.
                let job = job.clone();
                self.start_pipeline_run(id, &job, ms);
            }
        }
        // 3. Blocked or buildable, in queue order; then dispatch.
        let mut idle: Vec<(String, usize)> = self
            .nodes
            .values()
            .filter(|n| !n.offline() && n.idle_slots() > 0)
            .map(|n| (n.name.clone(), n.idle_slots()))
            .collect();
        // Without an idle executor only blocking can change, and only for non-concurrent jobs:
        // skip the pass then, so queueing 10,000 items stays linear.
        let may_block = self.jobs.values().any(|j| !j.concurrent);
        let ids: Vec<u64> = if idle.is_empty() && !may_block {
            Vec::new()
        } else {
            self.queue
                .values()
                .filter(|i| i.state != ItemState::Waiting)
                .map(|i| i.id)
                .collect()
        };
        for id in ids {
            let Some(item) = self.queue.get(&id) else {
                continue;
            };
            let blocked = match &item.task {
                Task::Job(job) => self
                    .jobs
                    .get(job)
                    .is_some_and(|j| !j.concurrent && j.building().is_some()),
                Task::Placeholder { .. } => false,
            };
            let state = if blocked {
                ItemState::Blocked
            } else {
                ItemState::Buildable
            };
            if let Some(item) = self.queue.get_mut(&id) {
                item.state = state;
            }
            if blocked || idle.is_empty() {
                continue;
            }
            let Some(item) = self.queue.get(&id) else {
                continue;
            };
            let label = item.label.clone();
            let pick = idle.iter().position(|(name, _)| {
                self.nodes.get(name).is_some_and(|n| match &label {
                    Some(l) => l.matches(&n.labels),
                    None => n.mode == NodeMode::Normal,
                })
            });
            if let Some(pos) = pick {
                let node = idle[pos].0.clone();
                idle[pos].1 -= 1;
                if idle[pos].1 == 0 {
                    idle.remove(pos);
                }
                self.start_build(id, &node, now, ms);
            }
        }
        // 4. Next wake-up.
        let next_run = self.running.values().map(|r| r.ends_at).min();
        let next_wait = self
            .waiting
            .first()
            .map(|&(due_ms, _)| now + Duration::from_millis(due_ms.saturating_sub(ms)));
        match (next_run, next_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn start_pipeline_run(&mut self, id: u64, job: &str, ms: u64) {
        let Some(item) = self.queue.remove(&id) else {
            return;
        };
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        let number = j.next_number;
        j.next_number += 1;
        j.builds.insert(
            number,
            BuildRec {
                number,
                started_ms: ms,
                duration_ms: 0,
                result: None,
            },
        );
        let label = labels::assigned_label(j.label.as_deref());
        let placeholder_id = self.next_queue_id;
        self.next_queue_id += 1;
        self.queue.insert(
            placeholder_id,
            QItem {
                id: placeholder_id,
                task: Task::Placeholder {
                    job: job.to_owned(),
                    run: number,
                },
                label,
                in_queue_since: ms,
                due_ms: ms,
                buildable_since: Some(ms),
                state: ItemState::Buildable,
                params: Vec::new(),
                duration: item.duration,
                user: item.user.clone(),
            },
        );
        self.push_left(Left {
            item,
            left_ms: ms,
            cancelled: false,
            executable: Some(("org.jenkinsci.plugins.workflow.job.WorkflowRun", number)),
        });
    }

    fn start_build(&mut self, id: u64, node_name: &str, now: Instant, ms: u64) {
        let Some(item) = self.queue.remove(&id) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(item.task.job()) else {
            return;
        };
        let (number, class) = match &item.task {
            Task::Job(_) => {
                let n = job.next_number;
                job.next_number += 1;
                job.builds.insert(
                    n,
                    BuildRec {
                        number: n,
                        started_ms: ms,
                        duration_ms: 0,
                        result: None,
                    },
                );
                (n, job.run_class())
            }
            Task::Placeholder { run, .. } => (
                *run,
                "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask$PlaceholderExecutable",
            ),
        };
        let key = self.next_key;
        self.next_key += 1;
        let Some(node) = self.nodes.get_mut(node_name) else {
            return;
        };
        if let Some(slot) = node.executors.iter_mut().find(|s| s.is_none()) {
            *slot = Some(key);
        }
        if let Some(conn) = &node.conn {
            let text = serde_json::json!({
                "type": "build_started",
                "job": item.task.job(),
                "number": number,
            })
            .to_string();
            let _ = conn.tx.send(AgentEvent::Text(text));
        }
        self.running.insert(
            key,
            Running {
                task: item.task.clone(),
                number,
                node: node_name.to_owned(),
                started_ms: ms,
                ends_at: now + item.duration,
            },
        );
        self.waits.push(WaitSample {
            job: item.task.job().to_owned(),
            number,
            queue_id: item.id,
            label: item.label.as_ref().map(LabelExpr::name),
            wait_ms: ms.saturating_sub(item.in_queue_since),
        });
        self.push_left(Left {
            item,
            left_ms: ms,
            cancelled: false,
            executable: Some((class, number)),
        });
    }

    // ----- why, stuck --------------------------------------------------------------------

    /// `Queue.Item.getWhy()` for an item still in the queue.
    pub fn why(&self, item: &QItem, now_ms: u64) -> String {
        match item.state {
            ItemState::Waiting => {
                if item.due_ms >= now_ms {
                    msg::in_quiet_period(&msg::time_span(item.due_ms - now_ms))
                } else {
                    msg::FINISHED_WAITING.to_owned()
                }
            }
            ItemState::Blocked => {
                let job = self.jobs.get(item.task.job());
                let building = job.and_then(Job::building);
                match (job, building) {
                    (Some(job), Some(b)) => {
                        let est = job.estimated_duration_ms();
                        let elapsed = now_ms.saturating_sub(b.started_ms) as i64;
                        let eta = (est >= 0 && est - elapsed > 0)
                            .then(|| msg::time_span((est - elapsed) as u64));
                        msg::build_in_progress(b.number, eta.as_deref())
                    }
                    _ => msg::WAITING_FOR_EXECUTOR.to_owned(),
                }
            }
            ItemState::Buildable => self.why_buildable(item.label.as_ref()),
        }
    }

    /// `Queue.BuildableItem.getCauseOfBlockage()` (see `messages` for which text when).
    pub fn why_buildable(&self, label: Option<&LabelExpr>) -> String {
        // "no master/agent. pointless to talk about nodes"
        let label = if self.has_agents() { label } else { None };
        match label {
            Some(l) => {
                let nodes: Vec<&Node> = self
                    .nodes
                    .values()
                    .filter(|n| l.matches(&n.labels))
                    .collect();
                if nodes.iter().all(|n| n.offline()) {
                    match nodes.as_slice() {
                        [] => msg::label_has_no_nodes(&l.name()),
                        [one] => msg::node_offline(one.display_name()),
                        _ => msg::all_nodes_offline(&l.name()),
                    }
                } else {
                    match nodes.as_slice() {
                        [one] => msg::waiting_for_executor_on(one.display_name()),
                        _ => msg::waiting_for_executor_on(&l.name()),
                    }
                }
            }
            None => {
                // transientCausesOfBlockage are shown when idle executors exist that refused
                // the item: every parked executor's node gives its reason.
                let online_idle = self
                    .nodes
                    .values()
                    .any(|n| !n.offline() && n.idle_slots() > 0);
                if online_idle {
                    let reasons: Vec<String> = self
                        .nodes
                        .values()
                        .filter(|n| n.idle_slots() > 0)
                        .filter_map(|n| {
                            if n.offline() {
                                Some(msg::node_offline(n.display_name()))
                            } else if n.mode == NodeMode::Exclusive {
                                Some(msg::node_reserved(n.display_name()))
                            } else {
                                None
                            }
                        })
                        .collect();
                    if !reasons.is_empty() {
                        return msg::composite(reasons);
                    }
                }
                msg::WAITING_FOR_EXECUTOR.to_owned()
            }
        }
    }

    /// `Label.isOffline()` for an item's label (no label: never).
    pub fn label_offline(&self, label: Option<&LabelExpr>) -> bool {
        label.is_some_and(|l| {
            self.nodes
                .values()
                .filter(|n| l.matches(&n.labels))
                .all(|n| n.offline())
        })
    }

    /// `BuildableItem.isStuck()`.
    pub fn stuck(&self, item: &QItem, now_ms: u64) -> bool {
        if item.state != ItemState::Buildable {
            return false;
        }
        if self.label_offline(item.label.as_ref()) {
            return true;
        }
        let est = self
            .jobs
            .get(item.task.job())
            .map_or(-1, Job::estimated_duration_ms);
        let elapsed = now_ms.saturating_sub(item.buildable_since.unwrap_or(now_ms));
        if est >= 0 {
            elapsed > (est as u64).max(60_000) * 10
        } else {
            elapsed > 24 * 3_600_000
        }
    }

    // ----- faults, restart, stats --------------------------------------------------------

    pub fn inject(&mut self, fault: Fault, now: Instant) {
        match fault {
            Fault::DropAgents { names } => {
                let keys: Vec<String> = match names {
                    Some(names) => names,
                    None => self
                        .nodes
                        .values()
                        .filter(|n| n.conn.is_some())
                        .map(|n| n.name.clone())
                        .collect(),
                };
                for k in keys {
                    self.disconnect_node(&k, now, true);
                }
                self.maintain(now);
            }
            Fault::Restart { down_ms } => {
                let keys: Vec<String> = self.nodes.keys().cloned().collect();
                for k in keys {
                    self.disconnect_node(&k, now, true);
                }
                // Queue items survive in queue.xml (Queue.load); the left-items cache, web
                // sessions and temporary offline marks do not.
                self.left.clear();
                self.left_order.clear();
                self.sessions.clear();
                for n in self.nodes.values_mut() {
                    n.temp_offline = None;
                }
                self.down_until = down_ms.map(|d| now + Duration::from_millis(d));
                self.maintain(now);
            }
            other => self.faults.push(ActiveFault::new(other, now)),
        }
    }

    pub fn stats(&self, now_ms: u64) -> SimStats {
        let _ = now_ms;
        let mut queue_by_label: BTreeMap<String, usize> = BTreeMap::new();
        for item in self.queue.values() {
            let key = item.label.as_ref().map(LabelExpr::name).unwrap_or_default();
            *queue_by_label.entry(key).or_default() += 1;
        }
        let mut agents = AgentCounts::default();
        let mut agents_by_label: BTreeMap<String, AgentCounts> = BTreeMap::new();
        for n in self.nodes.values().filter(|n| !n.builtin) {
            let bump = |c: &mut AgentCounts| {
                if !n.ever_connected && n.conn.is_none() {
                    c.connecting += 1;
                } else if n.offline() {
                    c.offline += 1;
                } else if n.busy_slots() > 0 {
                    c.busy += 1;
                } else {
                    c.idle += 1;
                }
            };
            bump(&mut agents);
            for l in n.labels.iter().filter(|l| **l != n.name) {
                bump(agents_by_label.entry(l.clone()).or_default());
            }
        }
        SimStats {
            queue_length: self.queue.len(),
            queue_by_label,
            agents_by_label,
            agents,
            builds_completed: self.builds_completed,
            builds_running: self.running.len(),
            builds_lost: self.builds_lost.clone(),
            waits: self.waits.clone(),
            agent_secrets_issued: self.secrets_issued.iter().cloned().collect(),
        }
    }
}

/// `Jenkins.checkGoodName`.
pub fn check_good_name(name: &str) -> Result<(), SimError> {
    let bad = |m: String| Err(SimError::BadName(m));
    if name.is_empty() {
        return bad("No name is specified".to_owned());
    }
    let trimmed = name.trim_matches(|c: char| c <= ' ');
    if trimmed == "." || trimmed == ".." {
        return bad(msg::not_allowed_name(trimmed));
    }
    for c in name.chars() {
        if matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}') {
            return bad(msg::control_code(&name.escape_default().to_string()));
        }
        if "?*/\\%!@#$^&|<>[]:;".contains(c) {
            return bad(msg::unsafe_char(c));
        }
    }
    if trimmed.ends_with('.') {
        return bad(msg::TRAILING_DOT.to_owned());
    }
    Ok(())
}
