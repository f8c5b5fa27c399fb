//! The agent booter: "boots" the EC2 instances launched into moto the way their user data boots a
//! real agent, and connects each one to its master as an inbound agent over WebSocket.
//!
//! It follows `infra/agent/user-data.yaml` step by step (there is one copy of the boot logic;
//! this is its stand-in where no instance runs):
//!
//! 1. Watch the stack's instances (`DescribeInstances`, filter `tag:longshore:stack`, every
//!    `poll_interval`). Each new running instance gets one small tokio task.
//! 2. After `boot_delay`: read the user data as cloud-init gets it (`DescribeInstanceAttribute
//!    userData`, base64-decoded) and parse it with
//!    [`longshore::domain::render::parse_agent_user_data_bytes`]. User data that is malformed
//!    or not ours is logged with the reason and the instance is skipped (never a panic).
//! 3. Read what IMDS would answer: the instance id and its `longshore:master` /
//!    `longshore:master-url` tags (from `DescribeInstances`: moto has no IMDS).
//! 4. Poll SSM `GetParameter` (with decryption) at `<prefix>/<instance-id>` with backoff until
//!    the secret appears or `secret_wait` runs out.
//! 5. `GET <master-url>jnlpJars/agent.jar`, with retries, as the script's curl does.
//! 6. Connect to `<master-url>wsagents/` with the headers agent.jar `-webSocket` sends
//!    (`Node-Name`, `Secret-Key`, `X-Remoting-Capability`, and the `Connection-Cookie` the
//!    master handed out on the previous connection), keep the socket open (pings are answered
//!    by tungstenite), and reconnect with agent.jar's backoff when the master drops it:
//!    jenkinsci/remoting `Engine.runWebSocket` loops forever, retrying each connect through
//!    `ExponentialRetry` (first try at once, then `delay = min(10 s, 2 * delay + 1 s)`:
//!    0, 1, 3, 7, 10, 10, … s) unless `-noReconnect`.
//! 7. Close the connection when the instance is stopping, stopped, shutting down or gone.
//!
//! Cheap at scale: one task per agent holding a socket with a 4 KiB read buffer, shared SDK and
//! HTTP clients, and a semaphore bounding how many agents talk to moto at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

use aws_config::SdkConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceAttributeName};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use longshore::domain::render::{AgentBootSettings, parse_agent_user_data_bytes};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

/// The tag that marks an instance as the stack's (DESIGN.md "Act").
pub const STACK_TAG: &str = "longshore:stack";

/// The `X-Remoting-Capability` agent.jar sends: `Capability.toASCII()` of remoting's default
/// capability, i.e. base64 of the Java serialization of `hudson.remoting.Capability` with mask
/// 0x1fe (multi-classloader, pipe throttling, mimic exception, prefetch, greedy remote input
/// stream, proxy writer 2.35, chunked encoding, proxy exception fallback) — jenkinsci/remoting
/// `src/main/java/hudson/remoting/Capability.java` (constructor, `toASCII`, the `MASK_*` bits).
pub const REMOTING_CAPABILITY: &str =
    "rO0ABXNyABpodWRzb24ucmVtb3RpbmcuQ2FwYWJpbGl0eQAAAAAAAAABAgABSgAEbWFza3hwAAAAAAAAAf4=";

/// How the booter behaves; the defaults are the real agent's timings.
#[derive(Debug, Clone)]
pub struct BooterConfig {
    /// Only instances tagged `longshore:stack=<stack>` are booted.
    pub stack: String,
    /// Time from "instance seen running" to "boot script starts" (seconds in the demo,
    /// milliseconds in tests).
    pub boot_delay: Duration,
    /// How often the instance list is read.
    pub poll_interval: Duration,
    /// How long an agent waits for its secret in SSM (the user data says 300 s; the farm
    /// compresses time).
    pub secret_wait: Duration,
    /// The unit of the SSM backoff: polls after 1, 2, 4, 8, then every 10 units (the script's
    /// unit is one second).
    pub secret_poll: Duration,
    /// The unit of agent.jar's reconnect backoff (one second in remoting).
    pub reconnect_unit: Duration,
    /// Attempts at fetching agent.jar (the script's `curl --retry 10`).
    pub jar_attempts: u32,
    /// Pause between agent.jar attempts (the script's `--retry-delay 3`).
    pub jar_retry_delay: Duration,
    /// Bound on one HTTP request or WebSocket handshake.
    pub request_timeout: Duration,
    /// How many agents may call moto at the same moment (moto is one Python process).
    pub aws_concurrency: usize,
}

impl BooterConfig {
    /// The real agent's timings for `stack`: 5 s boot, 2 s poll, 300 s secret wait.
    pub fn new(stack: impl Into<String>) -> BooterConfig {
        BooterConfig {
            stack: stack.into(),
            boot_delay: Duration::from_secs(5),
            poll_interval: Duration::from_secs(2),
            secret_wait: Duration::from_secs(300),
            secret_poll: Duration::from_secs(1),
            reconnect_unit: Duration::from_secs(1),
            jar_attempts: 10,
            jar_retry_delay: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            aws_concurrency: 16,
        }
    }

    /// Test timings: everything in milliseconds, so a scenario runs in well under a second.
    pub fn fast(stack: impl Into<String>) -> BooterConfig {
        BooterConfig {
            boot_delay: Duration::from_millis(10),
            poll_interval: Duration::from_millis(100),
            secret_wait: Duration::from_secs(2),
            secret_poll: Duration::from_millis(20),
            reconnect_unit: Duration::from_millis(50),
            jar_attempts: 3,
            jar_retry_delay: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            ..BooterConfig::new(stack)
        }
    }
}

/// A failure to inject into one instance's agent, to exercise the scaler's and recovery's
/// handling of agents that do not behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFault {
    /// Boots (secret, agent.jar) but never connects: an orphan for the scaler to reap.
    NeverConnects,
    /// Connects this much later than the boot delay alone would.
    ConnectsLate(Duration),
    /// On the first `build_started` from the master it drops the connection and never comes
    /// back, as an instance that died under a build.
    DiesMidBuild,
    /// Drops the connection this long after first connecting and never comes back.
    DiesAfter(Duration),
}

/// Where one agent is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Waiting out the boot delay, reading user data and metadata.
    Booting,
    /// Polling SSM for the secret.
    WaitingForSecret,
    /// Fetching agent.jar from the master.
    FetchingAgentJar,
    /// Opening the WebSocket.
    Connecting,
    /// Connected to its master.
    Connected,
    /// The master dropped it; retrying with backoff.
    Reconnecting(String),
    /// The master refused the handshake (HTTP status and body); retrying with backoff, as
    /// agent.jar does.
    Refused(String),
    /// Booted with the `NeverConnects` fault.
    NeverConnects,
    /// The boot gave up (no secret in time, no master tag, no agent.jar).
    Failed(String),
    /// The user data is malformed or not ours; the instance is left alone.
    SkippedBadUserData(String),
    /// Died on purpose (`DiesMidBuild`, `DiesAfter`).
    Dead(String),
    /// Its instance is stopping, stopped or terminated: the connection was closed.
    Stopped,
}

/// One instance and why it is where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIssue {
    /// The instance (and node) name.
    pub instance_id: String,
    /// The logged reason.
    pub reason: String,
}

/// A snapshot of what the booter did, for tests, the demo and the memory measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BooterStats {
    /// Instances of the stack ever booted (or skipped).
    pub seen: usize,
    /// Agents still booting (delay, user data, secret, agent.jar, first connect).
    pub booting: usize,
    /// Agents connected now.
    pub connected: usize,
    /// Agents the master dropped that are retrying.
    pub reconnecting: usize,
    /// Agents booted with `NeverConnects`.
    pub never_connecting: usize,
    /// Agents whose boot gave up or whose handshake the master refused, with reasons.
    pub failed: Vec<AgentIssue>,
    /// Instances skipped for malformed or foreign user data, with reasons.
    pub skipped_bad_user_data: Vec<AgentIssue>,
    /// Agents that died on purpose (faults), with reasons.
    pub dead: Vec<AgentIssue>,
    /// Agents whose instance went away.
    pub stopped: usize,
    /// Successful WebSocket handshakes, reconnects included.
    pub connects: u64,
    /// `build_started` frames received.
    pub builds_started: u64,
    /// `build_finished` frames received.
    pub builds_finished: u64,
}

/// State shared by the watch loop, the agent tasks and the handle.
#[derive(Default)]
struct Shared {
    states: Mutex<HashMap<String, AgentState>>,
    faults: Mutex<HashMap<String, BootFault>>,
    connects: AtomicU64,
    builds_started: AtomicU64,
    builds_finished: AtomicU64,
}

impl Shared {
    fn set(&self, instance_id: &str, state: AgentState) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(instance_id.to_string(), state);
        }
    }

    fn fault(&self, instance_id: &str) -> Option<BootFault> {
        self.faults
            .lock()
            .ok()
            .and_then(|f| f.get(instance_id).copied())
    }

    fn stats(&self) -> BooterStats {
        let mut stats = BooterStats {
            connects: self.connects.load(Ordering::Relaxed),
            builds_started: self.builds_started.load(Ordering::Relaxed),
            builds_finished: self.builds_finished.load(Ordering::Relaxed),
            ..BooterStats::default()
        };
        let Ok(states) = self.states.lock() else {
            return stats;
        };
        stats.seen = states.len();
        let issue = |id: &String, reason: &String| AgentIssue {
            instance_id: id.clone(),
            reason: reason.clone(),
        };
        for (id, state) in states.iter() {
            match state {
                AgentState::Booting
                | AgentState::WaitingForSecret
                | AgentState::FetchingAgentJar
                | AgentState::Connecting => stats.booting += 1,
                AgentState::Connected => stats.connected += 1,
                AgentState::Reconnecting(_) => stats.reconnecting += 1,
                AgentState::NeverConnects => stats.never_connecting += 1,
                AgentState::Refused(reason) | AgentState::Failed(reason) => {
                    stats.failed.push(issue(id, reason))
                }
                AgentState::SkippedBadUserData(reason) => {
                    stats.skipped_bad_user_data.push(issue(id, reason))
                }
                AgentState::Dead(reason) => stats.dead.push(issue(id, reason)),
                AgentState::Stopped => stats.stopped += 1,
            }
        }
        for list in [
            &mut stats.failed,
            &mut stats.skipped_bad_user_data,
            &mut stats.dead,
        ] {
            list.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        }
        stats
    }
}

/// What every agent task shares: one client of each kind, the config, the state.
struct Ctx {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    http: reqwest::Client,
    config: BooterConfig,
    shared: Arc<Shared>,
    aws_slots: Semaphore,
}

/// Boots the stack's instances in moto as Jenkins agents; see the module docs.
pub struct Booter {
    ctx: Arc<Ctx>,
}

impl Booter {
    /// A booter for the instances reachable through `sdk` (moto), with `config`'s timings.
    pub fn new(sdk: &SdkConfig, config: BooterConfig) -> Booter {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // A thousand agents fetch agent.jar at about the same time; idle keep-alive
            // connections (each with its buffers) must not pile up in the pool.
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|e| {
                warn!(error = %e, "custom HTTP client failed; using the default one");
                reqwest::Client::new()
            });
        let slots = config.aws_concurrency.max(1);
        Booter {
            ctx: Arc::new(Ctx {
                ec2: aws_sdk_ec2::Client::new(sdk),
                ssm: aws_sdk_ssm::Client::new(sdk),
                http,
                config,
                shared: Arc::new(Shared::default()),
                aws_slots: Semaphore::new(slots),
            }),
        }
    }

    /// Makes `instance_id`'s agent misbehave as `fault` (also for instances not launched yet).
    pub fn inject(&self, instance_id: &str, fault: BootFault) {
        inject(&self.ctx.shared, instance_id, fault);
    }

    /// Starts watching and booting in the background (needs a tokio runtime).
    pub fn spawn(self) -> BooterHandle {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::clone(&self.ctx.shared);
        // In the caller's span: a chaos run keeps its agents' lines in its own log.
        let task = tokio::spawn(watch_loop(self.ctx, shutdown_rx).in_current_span());
        BooterHandle {
            shared,
            shutdown,
            task,
        }
    }
}

fn inject(shared: &Shared, instance_id: &str, fault: BootFault) {
    if let Ok(mut faults) = shared.faults.lock() {
        faults.insert(instance_id.to_string(), fault);
    }
}

/// The running booter: read its stats, inject faults, stop it.
pub struct BooterHandle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl BooterHandle {
    /// What the booter has done so far.
    pub fn stats(&self) -> BooterStats {
        self.shared.stats()
    }

    /// Where one instance's agent is, if the booter has seen it.
    pub fn state(&self, instance_id: &str) -> Option<AgentState> {
        self.shared
            .states
            .lock()
            .ok()
            .and_then(|s| s.get(instance_id).cloned())
    }

    /// Makes `instance_id`'s agent misbehave as `fault` from its next step on.
    pub fn inject(&self, instance_id: &str, fault: BootFault) {
        inject(&self.shared, instance_id, fault);
    }

    /// Closes every agent's connection and stops watching; waits (bounded) for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            warn!("booter did not stop within 10 s");
        }
    }
}

/// EC2 states in which an instance no longer runs its agent.
fn is_going_away(state: &str) -> bool {
    matches!(
        state,
        "shutting-down" | "terminated" | "stopping" | "stopped"
    )
}

async fn watch_loop(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut live: HashMap<String, watch::Sender<bool>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(ctx.config.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(stack = %ctx.config.stack, "booter watching instances");
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = ticker.tick() => {}
        }
        while tasks.try_join_next().is_some() {}
        let listed = match list_instances(&ctx).await {
            Ok(listed) => listed,
            Err(e) => {
                warn!(error = %e, "DescribeInstances failed; retrying next tick");
                continue;
            }
        };
        let mut present = HashSet::new();
        for (id, state) in listed {
            present.insert(id.clone());
            if is_going_away(&state) {
                if let Some(stop) = live.remove(&id) {
                    info!(instance_id = %id, state = %state, "instance going away; closing its agent");
                    let _ = stop.send(true);
                }
            } else if (state == "running" || state == "pending") && !live.contains_key(&id) {
                let (stop, stop_rx) = watch::channel(false);
                live.insert(id.clone(), stop);
                ctx.shared.set(&id, AgentState::Booting);
                debug!(instance_id = %id, "new instance; booting");
                tasks.spawn(run_agent(Arc::clone(&ctx), id, stop_rx).in_current_span());
            }
        }
        live.retain(|id, stop| {
            let keep = present.contains(id);
            if !keep {
                info!(instance_id = %id, "instance vanished; closing its agent");
                let _ = stop.send(true);
            }
            keep
        });
    }
    for stop in live.values() {
        let _ = stop.send(true);
    }
    while tasks.join_next().await.is_some() {}
    info!("booter stopped");
}

/// The stack's instances and their state names.
async fn list_instances(ctx: &Ctx) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ctx
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{STACK_TAG}"))
                    .values(&ctx.config.stack)
                    .build(),
            )
            // Pages keep each answer (and its parse) bounded; moto pages by reservation.
            .max_results(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_reason(&e))?;
        for reservation in page.reservations() {
            for instance in reservation.instances() {
                let (Some(id), Some(state)) = (
                    instance.instance_id(),
                    instance.state().and_then(|s| s.name()),
                ) else {
                    continue;
                };
                out.push((id.to_string(), state.as_str().to_string()));
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok(out),
        }
    }
}

fn sdk_reason<E, R>(e: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown"),
            service.message().unwrap_or("")
        ),
        None => format!("{e}"),
    }
}

/// Resolves once the flag is set (or its sender is gone). Drops the watch guard before
/// returning, so no lock is held across an await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `d`, or returns false as soon as the agent is told to stop.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stopped(stop) => false,
    }
}

/// How one agent's life ended before or instead of a connection.
enum BootEnd {
    Stopped,
    Skipped(String),
    Failed(String),
}

/// What the boot hands to the connection phase.
struct Booted {
    master_url: String,
    secret: String,
}

async fn run_agent(ctx: Arc<Ctx>, id: String, mut stop: watch::Receiver<bool>) {
    // Boxed: the boot's SDK futures are large and would otherwise stay in every connected
    // agent's task allocation for its whole life.
    let booted = match Box::pin(boot(&ctx, &id, &mut stop)).await {
        Ok(booted) => booted,
        Err(BootEnd::Stopped) => {
            ctx.shared.set(&id, AgentState::Stopped);
            return;
        }
        Err(BootEnd::Skipped(reason)) => {
            warn!(instance_id = %id, reason = %reason, "skipping instance: bad user data");
            ctx.shared.set(&id, AgentState::SkippedBadUserData(reason));
            return;
        }
        Err(BootEnd::Failed(reason)) => {
            warn!(instance_id = %id, reason = %reason, "agent boot failed");
            ctx.shared.set(&id, AgentState::Failed(reason));
            return;
        }
    };
    if ctx.shared.fault(&id) == Some(BootFault::NeverConnects) {
        info!(instance_id = %id, "fault NeverConnects: booted, not connecting");
        ctx.shared.set(&id, AgentState::NeverConnects);
        stopped(&mut stop).await;
        ctx.shared.set(&id, AgentState::Stopped);
        return;
    }
    let end = stay_connected(&ctx, &id, &booted, &mut stop).await;
    ctx.shared.set(&id, end);
}

/// Steps 2–5 of the module docs: user data, metadata, secret, agent.jar.
async fn boot(ctx: &Ctx, id: &str, stop: &mut watch::Receiver<bool>) -> Result<Booted, BootEnd> {
    let mut delay = ctx.config.boot_delay;
    if let Some(BootFault::ConnectsLate(extra)) = ctx.shared.fault(id) {
        delay += extra;
    }
    if !sleep_or_stop(delay, stop).await {
        return Err(BootEnd::Stopped);
    }
    let settings = read_user_data(ctx, id).await?;
    let (master, master_url) = read_metadata(ctx, id, &settings).await?;
    debug!(instance_id = %id, master = %master, master_url = %master_url, "metadata read");

    ctx.shared.set(id, AgentState::WaitingForSecret);
    let secret = wait_for_secret(ctx, id, &settings, stop).await?;

    ctx.shared.set(id, AgentState::FetchingAgentJar);
    fetch_agent_jar(ctx, &master_url, stop).await?;
    Ok(Booted { master_url, secret })
}

async fn read_user_data(ctx: &Ctx, id: &str) -> Result<AgentBootSettings, BootEnd> {
    let answer = {
        let _slot = ctx.aws_slots.acquire().await;
        ctx.ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => return Err(BootEnd::Stopped),
        Err(e) => {
            return Err(BootEnd::Failed(format!(
                "DescribeInstanceAttribute userData: {}",
                sdk_reason(&e)
            )));
        }
    };
    let encoded = answer
        .user_data()
        .and_then(|v| v.value())
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| BootEnd::Skipped(format!("user data is not base64: {e}")))?;
    let settings =
        parse_agent_user_data_bytes(&bytes).map_err(|e| BootEnd::Skipped(e.to_string()))?;
    if settings.stack != ctx.config.stack {
        return Err(BootEnd::Skipped(format!(
            "user data is for stack {:?}, not {:?}",
            settings.stack, ctx.config.stack
        )));
    }
    Ok(settings)
}

/// The instance's tags as IMDS would serve them under `tags/instance/<key>`.
async fn read_metadata(
    ctx: &Ctx,
    id: &str,
    settings: &AgentBootSettings,
) -> Result<(String, String), BootEnd> {
    let answer = {
        let _slot = ctx.aws_slots.acquire().await;
        ctx.ec2.describe_instances().instance_ids(id).send().await
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => return Err(BootEnd::Stopped),
        Err(e) => {
            return Err(BootEnd::Failed(format!(
                "DescribeInstances: {}",
                sdk_reason(&e)
            )));
        }
    };
    let tags: HashMap<&str, &str> = answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.tags())
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    let tag = |key: &str| {
        tags.get(key)
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                BootEnd::Failed(format!(
                    "no {key} tag in IMDS (are instance metadata tags on?)"
                ))
            })
    };
    let master = tag(&settings.master_tag)?;
    let mut master_url = tag(&settings.master_url_tag)?;
    if !master_url.starts_with("http://") && !master_url.starts_with("https://") {
        return Err(BootEnd::Failed(format!(
            "{} is not an http(s) URL: {master_url}",
            settings.master_url_tag
        )));
    }
    if !master_url.ends_with('/') {
        master_url.push('/');
    }
    Ok((master, master_url))
}

/// Polls SSM like the script: after 1, 2, 4, 8, then every 10 units, until `secret_wait`.
async fn wait_for_secret(
    ctx: &Ctx,
    id: &str,
    settings: &AgentBootSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<String, BootEnd> {
    let name = settings.secret_parameter(id);
    let deadline = Instant::now() + ctx.config.secret_wait;
    let mut units = 1u32;
    loop {
        let answer = {
            let _slot = ctx.aws_slots.acquire().await;
            ctx.ssm
                .get_parameter()
                .name(&name)
                .with_decryption(true)
                .send()
                .await
        };
        match answer {
            Ok(out) => {
                if let Some(value) = out.parameter().and_then(|p| p.value())
                    && !value.is_empty()
                {
                    debug!(instance_id = %id, parameter = %name, "secret found");
                    return Ok(value.to_string());
                }
            }
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found());
                if !not_found {
                    debug!(instance_id = %id, parameter = %name, error = %e, "GetParameter failed");
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(BootEnd::Failed(format!(
                "secret {name} did not appear within {:?}",
                ctx.config.secret_wait
            )));
        }
        let pause = (ctx.config.secret_poll * units).min(deadline - now);
        units = (units * 2).min(10);
        if !sleep_or_stop(pause, stop).await {
            return Err(BootEnd::Stopped);
        }
    }
}

/// `GET <master-url>jnlpJars/agent.jar` with retries; the body is read and dropped.
async fn fetch_agent_jar(
    ctx: &Ctx,
    master_url: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), BootEnd> {
    let url = format!("{master_url}jnlpJars/agent.jar");
    let mut last = String::new();
    for attempt in 0..ctx.config.jar_attempts.max(1) {
        if attempt > 0 && !sleep_or_stop(ctx.config.jar_retry_delay, stop).await {
            return Err(BootEnd::Stopped);
        }
        match ctx.http.get(&url).send().await {
            Ok(mut response) if response.status().is_success() => {
                let mut bytes = 0usize;
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => bytes += chunk.len(),
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            last = format!("reading the body after {bytes} bytes: {e}");
                            break;
                        }
                    }
                }
            }
            // curl --fail --retry retries only transient answers; a 404 will not heal.
            Ok(response) if response.status().is_client_error() => {
                return Err(BootEnd::Failed(format!(
                    "cannot fetch {url}: HTTP {}",
                    response.status()
                )));
            }
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(BootEnd::Failed(format!("cannot fetch {url}: {last}")))
}

/// agent.jar's reconnect delay before attempt `attempt` (0-based): 0, 1, 3, 7, 10, 10, … units
/// (`ExponentialRetry`: initial 0, `min(max, 2 * delay + increment)`, increment 1 s, max 10 s).
pub fn reconnect_delay(attempt: u32, unit: Duration) -> Duration {
    let mut units = 0u32;
    for _ in 0..attempt {
        units = (units * 2 + 1).min(10);
    }
    unit * units
}

/// `http(s)://host/…/` → `ws(s)://host/…/wsagents/`, as Engine.runWebSocket builds it.
pub fn websocket_url(master_url: &str) -> String {
    let base = if master_url.ends_with('/') {
        master_url.to_string()
    } else {
        format!("{master_url}/")
    };
    let ws = match base.strip_prefix("http") {
        Some(rest) => format!("ws{rest}"),
        None => base,
    };
    format!("{ws}wsagents/")
}

/// How a connected session ended.
enum SessionEnd {
    /// The instance is going away: closed by us.
    Stopped,
    /// A fault killed it.
    Died(String),
    /// The master (or the network) dropped it: reconnect.
    Dropped(String),
}

/// Connects, stays connected, reconnects with agent.jar's backoff; returns the final state.
async fn stay_connected(
    ctx: &Ctx,
    id: &str,
    booted: &Booted,
    stop: &mut watch::Receiver<bool>,
) -> AgentState {
    let url = websocket_url(&booted.master_url);
    let mut cookie: Option<HeaderValue> = None;
    let mut attempt = 0u32;
    let mut first_connect: Option<Instant> = None;
    let mut logged_refusal = String::new();
    ctx.shared.set(id, AgentState::Connecting);
    loop {
        let pause = reconnect_delay(attempt, ctx.config.reconnect_unit);
        if !pause.is_zero() && !sleep_or_stop(pause, stop).await {
            return AgentState::Stopped;
        }
        if *stop.borrow() {
            return AgentState::Stopped;
        }
        attempt += 1;
        let ws = match Box::pin(connect(ctx, id, &url, &booted.secret, cookie.as_ref())).await {
            Ok((ws, new_cookie)) => {
                cookie = new_cookie;
                ws
            }
            Err(ConnectError::Refused(reason)) => {
                if reason != logged_refusal {
                    info!(instance_id = %id, reason = %reason, "master refused the agent; retrying");
                    logged_refusal = reason.clone();
                }
                ctx.shared.set(id, AgentState::Refused(reason));
                continue;
            }
            Err(ConnectError::Other(reason)) => {
                debug!(instance_id = %id, reason = %reason, "connect failed; retrying");
                ctx.shared.set(id, AgentState::Reconnecting(reason));
                continue;
            }
        };
        ctx.shared.connects.fetch_add(1, Ordering::Relaxed);
        ctx.shared.set(id, AgentState::Connected);
        info!(instance_id = %id, url = %url, "agent connected");
        attempt = 0;
        logged_refusal.clear();
        let connected_at = *first_connect.get_or_insert_with(Instant::now);
        match session(ctx, id, ws, connected_at, stop).await {
            SessionEnd::Stopped => {
                info!(instance_id = %id, "agent disconnected: instance going away");
                return AgentState::Stopped;
            }
            SessionEnd::Died(reason) => {
                warn!(instance_id = %id, reason = %reason, "agent died (fault)");
                return AgentState::Dead(reason);
            }
            SessionEnd::Dropped(reason) => {
                info!(instance_id = %id, reason = %reason, "master dropped the agent; reconnecting");
                ctx.shared.set(id, AgentState::Reconnecting(reason));
            }
        }
    }
}

enum ConnectError {
    /// The master answered the handshake with an HTTP error (400 unknown agent, 403 secret).
    Refused(String),
    /// Anything else (connection refused, timeout, protocol).
    Other(String),
}

type AgentSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The agent.jar `-webSocket` handshake (JENKINS_API.md, remoting Engine.runWebSocket).
async fn connect(
    ctx: &Ctx,
    id: &str,
    url: &str,
    secret: &str,
    cookie: Option<&HeaderValue>,
) -> Result<(AgentSocket, Option<HeaderValue>), ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Other(format!("bad URL {url}: {e}")))?;
    let header = |v: &str| {
        HeaderValue::from_str(v).map_err(|_| ConnectError::Other("header value not ASCII".into()))
    };
    let headers = request.headers_mut();
    headers.insert("Node-Name", header(id)?);
    headers.insert("Secret-Key", header(secret)?);
    headers.insert("X-Remoting-Capability", header(REMOTING_CAPABILITY)?);
    if let Some(cookie) = cookie {
        headers.insert("Connection-Cookie", cookie.clone());
    }
    // Small buffers: a thousand idle agents must stay cheap (defaults are 128 KiB each).
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let attempt = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(ctx.config.request_timeout, attempt).await {
        Err(_) => Err(ConnectError::Other(format!(
            "handshake timed out after {:?}",
            ctx.config.request_timeout
        ))),
        Ok(Ok((ws, response))) => {
            let cookie = response.headers().get("Connection-Cookie").cloned();
            Ok((ws, cookie))
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| refusal_text(&String::from_utf8_lossy(b)))
                .unwrap_or_default();
            Err(ConnectError::Refused(format!(
                "HTTP {}: {body}",
                response.status().as_u16()
            )))
        }
        Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
    }
}

/// One connected session: answer the master, watch for the instance going away and for the
/// injected death.
async fn session(
    ctx: &Ctx,
    id: &str,
    mut ws: AgentSocket,
    connected_at: Instant,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let die_at = match ctx.shared.fault(id) {
        Some(BootFault::DiesAfter(d)) => Some(connected_at + d),
        _ => None,
    };
    loop {
        let die = async {
            match die_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stopped(stop) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return SessionEnd::Stopped;
            }
            _ = die => {
                // A dead instance sends no close frame: the socket just goes away.
                drop(ws);
                return SessionEnd::Died("DiesAfter: connection dropped".into());
            }
            frame = ws.next() => match frame {
                None => return SessionEnd::Dropped("connection closed".into()),
                Some(Err(e)) => return SessionEnd::Dropped(e.to_string()),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                    return SessionEnd::Dropped(format!("master closed the connection {why}").trim().to_string());
                }
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong while reading; push it out now.
                    let _ = ws.flush().await;
                }
                Some(Ok(Message::Text(text))) => {
                    match build_event(text.as_str()) {
                        Some(BuildEvent::Started) => {
                            ctx.shared.builds_started.fetch_add(1, Ordering::Relaxed);
                            if ctx.shared.fault(id) == Some(BootFault::DiesMidBuild) {
                                drop(ws);
                                return SessionEnd::Died("DiesMidBuild: died under a build".into());
                            }
                        }
                        Some(BuildEvent::Finished) => {
                            ctx.shared.builds_finished.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
                // Binary frames are the remoting channel itself; nothing to do for a fake agent.
                Some(Ok(_)) => {}
            }
        }
    }
}

enum BuildEvent {
    Started,
    Finished,
}

/// The simulator's build notifications: `{"type":"build_started",...}` / `build_finished`.
fn build_event(text: &str) -> Option<BuildEvent> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    match value.get("type")?.as_str()? {
        "build_started" => Some(BuildEvent::Started),
        "build_finished" => Some(BuildEvent::Finished),
        _ => None,
    }
}

/// A one-line reason from a refusal body: an HTML error page's title, or the text itself,
/// whitespace collapsed and cut, so a log line stays one line.
fn refusal_text(body: &str) -> String {
    let text = match (body.find("<title>"), body.find("</title>")) {
        (Some(start), Some(end)) if start + 7 <= end => &body[start + 7..end],
        _ => body,
    };
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_follow_remoting_exponential_retry() {
        let unit = Duration::from_secs(1);
        let delays: Vec<u64> = (0..7).map(|a| reconnect_delay(a, unit).as_secs()).collect();
        assert_eq!(delays, [0, 1, 3, 7, 10, 10, 10]);
    }

    #[test]
    fn websocket_url_is_the_wsagents_endpoint() {
        assert_eq!(
            websocket_url("http://10.0.1.5:8080/"),
            "ws://10.0.1.5:8080/wsagents/"
        );
        assert_eq!(
            websocket_url("https://ci.example.com/jenkins"),
            "wss://ci.example.com/jenkins/wsagents/"
        );
    }

    #[test]
    fn the_capability_header_is_remotings_default() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(REMOTING_CAPABILITY)
            .unwrap();
        assert_eq!(&bytes[..4], &[0xac, 0xed, 0x00, 0x05]);
        assert!(
            bytes
                .windows(26)
                .any(|w| w == b"hudson.remoting.Capability")
        );
        assert_eq!(&bytes[bytes.len() - 8..], &0x1feu64.to_be_bytes());
    }

    #[test]
    fn build_events_are_recognised() {
        assert!(matches!(
            build_event(r#"{"type":"build_started","job":"a","number":1}"#),
            Some(BuildEvent::Started)
        ));
        assert!(matches!(
            build_event(r#"{"type":"build_finished"}"#),
            Some(BuildEvent::Finished)
        ));
        assert!(build_event("not json").is_none());
        assert!(build_event(r#"{"type":"other"}"#).is_none());
    }

    /// The per-agent task is allocated at its largest state's size for its whole life: the
    /// boot and the handshake are boxed so a connected agent does not carry their SDK futures.
    #[test]
    fn an_agent_task_stays_small() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let booter = Booter::new(&sdk, BooterConfig::fast("x"));
        let (_stop, stop_rx) = watch::channel(false);
        let task = run_agent(Arc::clone(&booter.ctx), "i-1".into(), stop_rx);
        assert!(
            std::mem::size_of_val(&task) < 4096,
            "agent task future is {} bytes",
            std::mem::size_of_val(&task)
        );
    }

    #[test]
    fn going_away_states() {
        for s in ["shutting-down", "terminated", "stopping", "stopped"] {
            assert!(is_going_away(s));
        }
        assert!(!is_going_away("running"));
        assert!(!is_going_away("pending"));
    }
}
