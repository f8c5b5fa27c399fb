//! One chaos run on the local farm: the real [`Scaler`] with its real adapters, talking to moto
//! through the [`AwsProxy`] and to two Jenkins simulators, guarded by the real DynamoDB
//! [`Lease`]; the booter boots what it launches. The run plays its [`Scenario`] for
//! [`FAULT_TICKS`] ticks, stops every fault, ticks until the farm is quiet and the boots have
//! settled, ticks twice more, and hands what it observed to [`super::check`].
//!
//! Invocations are modelled on the Lambda handler (`handlers::queue_scaler::handle`): an
//! invocation takes the lease until its end plus two polls, reads the launch journal, renews
//! the lease every tick, releases it when it ends; an invocation that finds the lease held
//! observes once and ends. A tick cut off mid-act kills its invocation without a release, and
//! the next one starts cold.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use longshore::adapters::aws::ec2::{AgentInstance, Ec2Fleet, LaunchSpec, tags};
use longshore::adapters::aws::ecs::MasterAddress;
use longshore::adapters::aws::launches::DynamoLaunchJournal;
use longshore::adapters::aws::lease::Lease;
use longshore::adapters::aws::ssm::SsmSecrets;
use longshore::adapters::jenkins::JenkinsClient;
use longshore::domain::fleet::{FleetConfig, SpotPolicy};
use longshore::error::AwsError;
use longshore::handlers::queue_scaler::{MasterEndpoint, Scaler, TickReport};
use longshore::ports::Fleet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::check::{Observations, SeenInstance};
use super::custom_resource::{self, RequestFault};
use super::events::{EventBridge, SpotPlan};
use super::scenario::{Action, BootFaultRates, FAULT_TICKS, LABELS, MASTERS, Scenario};
use crate::aws_proxy::AwsProxy;
use crate::booter::{AgentState, BootFault, Booter, BooterConfig, BooterHandle};
use crate::demo::fleet::demo_fleet;
use crate::events;
use crate::jenkins::{JobKind, RunningSim, SimConfig, Simulator};
use crate::moto::{MotoServer, REGION, TestNetwork};
use crate::stack;

/// Wall time between the harness's ticks.
const TICK: Duration = Duration::from_millis(75);
/// Ticks of one scaler invocation (its budget, as `INVOCATION_BUDGET` / `POLL_INTERVAL`).
const INVOCATION_TICKS: i64 = 20;
/// How long the farm may take to run every job once the faults stop.
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);

/// moto, the proxy and their SDK configs, shared by every run of a batch.
pub struct Batch {
    moto: MotoServer,
    proxy: AwsProxy,
    moto_sdk: SdkConfig,
    proxy_sdk: SdkConfig,
}

impl Batch {
    /// Starts moto and the proxy in front of it.
    pub async fn start() -> Result<Batch, String> {
        let moto = MotoServer::start().map_err(|e| e.to_string())?;
        let proxy = AwsProxy::start(&moto.endpoint_url())
            .await
            .map_err(|e| format!("aws proxy: {e}"))?;
        let moto_sdk = moto.sdk_config().await;
        let proxy_sdk = scaler_sdk(&proxy.endpoint_url()).await;
        Ok(Batch {
            moto,
            proxy,
            moto_sdk,
            proxy_sdk,
        })
    }

    /// Plays one seed's scenario on a fresh farm.
    pub async fn run(&self, seed: u64) -> Result<Observations, String> {
        self.moto.reset().await.map_err(|e| e.to_string())?;
        let farm = RunFarm::start(self, seed).await?;
        let observations = farm.play(self, &Scenario::from_seed(seed)).await;
        farm.shutdown().await;
        observations
    }
}

/// The SDK as the Lambda gets it: the standard retry mode (3 attempts), with a backoff
/// compressed like every other timing of the fast farm.
async fn scaler_sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "chaos",
        ))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .load()
        .await
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the fleet wrapper decides and records about launches.
struct LaunchChaos {
    rng: StdRng,
    rates: BootFaultRates,
    active: bool,
    injected: Vec<(String, BootFault)>,
}

/// The real EC2 fleet; each instance it launches may be given a boot fault in the booter, the
/// way a real instance may never connect or die under a build.
#[derive(Clone)]
struct ChaosFleet {
    inner: Ec2Fleet,
    booter: Arc<BooterHandle>,
    chaos: Arc<Mutex<LaunchChaos>>,
}

impl ChaosFleet {
    fn maybe_break(&self, id: &str) {
        let Ok(mut chaos) = self.chaos.lock() else {
            return;
        };
        if !chaos.active {
            return;
        }
        let rates = chaos.rates;
        let draw: f64 = chaos.rng.random_range(0.0..1.0);
        let fault = if draw < rates.never_connects {
            BootFault::NeverConnects
        } else if draw < rates.never_connects + rates.dies_mid_build {
            BootFault::DiesMidBuild
        } else if draw < rates.never_connects + rates.dies_mid_build + rates.connects_late {
            // Later than the boot timeout (2 s) or just under it.
            BootFault::ConnectsLate(Duration::from_millis(chaos.rng.random_range(500..=3_000)))
        } else {
            return;
        };
        self.booter.inject(id, fault);
        chaos.injected.push((id.to_string(), fault));
    }
}

impl Fleet for ChaosFleet {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, AwsError> {
        let id = self.inner.launch(spec).await?;
        self.maybe_break(&id);
        Ok(id)
    }
    async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
        self.inner.agents().await
    }
    async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        self.inner.terminate(ids).await
    }
}

type ChaosScaler = Scaler<JenkinsClient, ChaosFleet, SsmSecrets, DynamoLaunchJournal>;

/// An invocation in progress.
struct Invocation {
    owner: String,
    stop_at_ms: i64,
}

/// One place invocations run in (a Lambda execution environment): its warm scaler survives
/// from one invocation to the next unless the process dies.
struct Slot {
    name: &'static str,
    scaler: Option<ChaosScaler>,
    invocation: Option<Invocation>,
    started: u32,
}

/// What one slot did in one tick.
#[derive(Default)]
struct Step {
    acted: bool,
    observed: bool,
    cut: bool,
    report: Option<TickReport>,
}

/// A Spot reclamation whose warning went out: EC2 takes the instance at `due` (events tick).
struct Reclamation {
    due: u64,
    instance_id: String,
    terminations: Vec<u32>,
}

struct RunFarm {
    seed: u64,
    stack: String,
    network: TestNetwork,
    launch_template_id: String,
    lease_table: String,
    sims: Vec<RunningSim>,
    booter: Arc<BooterHandle>,
    fleet: ChaosFleet,
    config: FleetConfig,
    lease: Lease,
    journal: DynamoLaunchJournal,
    ssm: aws_sdk_ssm::Client,
    moto_ec2: aws_sdk_ec2::Client,
    chaos: Arc<Mutex<LaunchChaos>>,
}

impl RunFarm {
    async fn start(batch: &Batch, seed: u64) -> Result<RunFarm, String> {
        let stack = format!("chaos-{seed}");
        let network = batch
            .moto
            .prepare_network()
            .await
            .map_err(|e| e.to_string())?;
        let template = stack::create_agent_launch_template(&batch.moto_sdk, &stack).await?;
        let launch_template_id = template.id.clone();
        let lease_table = format!("{stack}-lease");
        stack::create_lease_table(&batch.moto_sdk, &lease_table).await?;
        let mut sims = Vec::new();
        for name in MASTERS {
            let config = SimConfig {
                name: name.to_string(),
                quiet_period: Duration::ZERO,
                ..SimConfig::default()
            };
            let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
            sims.push(
                Simulator::start(config, addr)
                    .await
                    .map_err(|e| format!("simulator: {e}"))?,
            );
        }
        let mut config = demo_fleet(
            &stack,
            &template.id,
            &network.subnets,
            &MASTERS,
            Duration::from_secs(1),
        );
        // Small caps, so that demand runs into them.
        config.max_agents = 5;
        config.boot_timeout_secs = 2;
        for label in &mut config.labels {
            label.spot = SpotPolicy::Never;
            label.max_per_master = if label.name == LABELS[0] { 3 } else { 2 };
        }
        let booter = Arc::new(Booter::new(&batch.moto_sdk, BooterConfig::fast(&stack)).spawn());
        let scenario = Scenario::from_seed(seed);
        let chaos = Arc::new(Mutex::new(LaunchChaos {
            rng: StdRng::seed_from_u64(seed ^ 0x000b_007f),
            rates: scenario.boot_faults,
            active: true,
            injected: Vec::new(),
        }));
        let fleet = ChaosFleet {
            inner: Ec2Fleet::new(aws_sdk_ec2::Client::new(&batch.proxy_sdk), &stack, template),
            booter: booter.clone(),
            chaos: chaos.clone(),
        };
        Ok(RunFarm {
            seed,
            network,
            launch_template_id,
            lease_table: lease_table.clone(),
            lease: Lease::new(
                aws_sdk_dynamodb::Client::new(&batch.proxy_sdk),
                &lease_table,
                &stack,
            ),
            journal: DynamoLaunchJournal::new(
                aws_sdk_dynamodb::Client::new(&batch.proxy_sdk),
                &lease_table,
                &stack,
            ),
            stack,
            sims,
            booter,
            fleet,
            config,
            ssm: aws_sdk_ssm::Client::new(&batch.proxy_sdk),
            moto_ec2: aws_sdk_ec2::Client::new(&batch.moto_sdk),
            chaos,
        })
    }

    fn client(&self, master: usize) -> JenkinsClient {
        JenkinsClient::new(
            JenkinsClient::http_client(),
            &self.sims[master].url(),
            "admin",
            "admin",
        )
    }

    fn scaler(&self) -> ChaosScaler {
        let endpoints = (0..MASTERS.len())
            .map(|m| MasterEndpoint {
                name: MASTERS[m].to_string(),
                url: self.sims[m].url(),
                jenkins: self.client(m),
            })
            .collect();
        Scaler::new(
            endpoints,
            self.fleet.clone(),
            SsmSecrets::new(self.ssm.clone()),
            self.journal.clone(),
            self.config.clone(),
            false,
        )
    }

    /// Plays the scenario, with its custom resource requests beside it, settles, checks
    /// nothing yet: returns what was seen.
    async fn play(&self, batch: &Batch, scenario: &Scenario) -> Result<Observations, String> {
        let resources = custom_resource::resources(
            &batch.moto_sdk,
            &self.network,
            &self.launch_template_id,
            &self.stack,
        )
        .await?;
        let cr_stack = format!("{}-cr", self.stack);
        let (seen, answered) = tokio::join!(
            self.play_farm(batch, scenario),
            custom_resource::play(
                &batch.proxy_sdk,
                &batch.proxy,
                &cr_stack,
                &resources,
                &scenario.custom_resource_requests,
            )
        );
        let mut seen = seen?;
        let (sent, answers) = answered?;
        for (request, fault) in sent {
            seen.count_fault(fault.kind());
            let must_fail = matches!(fault, RequestFault::BadProperty(_) | RequestFault::Hang);
            seen.cr_sent.push((request, must_fail));
        }
        seen.cr_answers = answers
            .into_iter()
            .map(|a| (a.request_id, a.status))
            .collect();
        Ok(seen)
    }

    /// The farm's part of [`Self::play`].
    async fn play_farm(&self, batch: &Batch, scenario: &Scenario) -> Result<Observations, String> {
        let started = Instant::now();
        let proxy_before = batch.proxy.stats();
        let mut seen = Observations::new(self.seed, &self.config);
        let masters = (0..MASTERS.len())
            .map(|m| MasterAddress {
                name: MASTERS[m].to_string(),
                url: self.sims[m].url(),
            })
            .collect();
        let mut bridge = EventBridge::start(
            &batch.moto_sdk,
            &batch.proxy_sdk,
            &self.stack,
            &self.lease_table,
            masters,
        )
        .await?;
        let mut events = Events {
            bridge: &mut bridge,
            rng: StdRng::seed_from_u64(self.seed ^ 0x0e7e_0b5e_0001),
            reclamations: Vec::new(),
        };
        let mut a = Slot {
            name: "a",
            scaler: None,
            invocation: None,
            started: 0,
        };
        let mut b = Slot {
            name: "b",
            scaler: None,
            invocation: None,
            started: 0,
        };
        let mut overlap_left = 0u32;
        let mut actions = scenario.actions.iter().peekable();
        for tick in 0..FAULT_TICKS {
            let mut cut = None;
            while let Some((_, action)) = actions.next_if(|(at, _)| *at <= tick) {
                match action {
                    Action::Submit(job) => {
                        self.sims[job.master]
                            .sim()
                            .submit(&job.name, Some(job.label), job.duration, JobKind::Freestyle)
                            .map_err(|e| format!("submit {}: {e}", job.name))?;
                        seen.jobs
                            .push((job.master, job.label.to_string(), job.name.clone()));
                    }
                    Action::Jenkins { master, fault } => {
                        let sim = self.sims[*master].sim();
                        let before = sim.stats().builds_lost.len();
                        sim.inject(fault.clone());
                        // A restart loses the builds running at that moment, by design.
                        let lost = sim.stats().builds_lost;
                        seen.lost_to_restarts
                            .extend(lost.iter().skip(before).map(|l| (*master, l.node.clone())));
                        seen.count_fault(super::scenario::jenkins_fault_kind(fault));
                    }
                    Action::Aws(rule) => batch.proxy.add_rule(rule.clone()),
                    Action::HideNewInstances(delay) => {
                        batch.proxy.hide_new_instances_for(*delay);
                        if !delay.is_zero() {
                            seen.count_fault("aws_hidden_fresh_instances");
                        }
                    }
                    Action::CutTick(after) => cut = Some(*after),
                    Action::Overlap(ticks) => overlap_left = overlap_left.max(*ticks),
                    Action::EndInvocation { cold } => {
                        self.end_invocation(&mut a, true).await;
                        if *cold {
                            a.scaler = None;
                        }
                    }
                    Action::Spot(plan) => self.spot_warning(&mut events, plan, &mut seen),
                }
            }
            let (step_a, step_b) = if overlap_left > 0 {
                overlap_left -= 1;
                seen.count_fault("overlapping_invocations");
                let (x, y) = tokio::join!(self.step(&mut a, cut), self.step(&mut b, cut));
                (x, Some(y))
            } else {
                if b.invocation.is_some() {
                    self.end_invocation(&mut b, true).await;
                }
                (self.step(&mut a, cut).await, None)
            };
            for step in std::iter::once(step_a).chain(step_b) {
                seen.record_step(step.acted, step.observed, step.cut, step.report.as_ref());
            }
            self.observe_and_deliver(&mut seen, &mut events).await;
            tokio::time::sleep(TICK).await;
        }

        // The faults stop: no rule, nothing hidden, every master sane, no new boot fault.
        batch.proxy.clear_rules();
        batch.proxy.hide_new_instances_for(Duration::ZERO);
        for sim in &self.sims {
            sim.sim().clear_faults();
        }
        if let Ok(mut chaos) = self.chaos.lock() {
            chaos.active = false;
        }
        self.end_invocation(&mut b, true).await;
        let settle_started = Instant::now();
        while settle_started.elapsed() < SETTLE_DEADLINE && !self.quiet(&seen, &events) {
            let step = self.step(&mut a, None).await;
            seen.record_step(step.acted, step.observed, false, step.report.as_ref());
            self.observe_and_deliver(&mut seen, &mut events).await;
            tokio::time::sleep(TICK).await;
        }
        seen.settled = self.quiet(&seen, &events);
        // Boots settle: every instance is connected or past its boot timeout.
        let boot_timeout = i64::from(self.config.boot_timeout_secs) * 1000;
        while settle_started.elapsed() < SETTLE_DEADLINE
            && now_ms() - seen.last_launch_ms() < boot_timeout + 300
        {
            let step = self.step(&mut a, None).await;
            seen.record_step(step.acted, step.observed, false, step.report.as_ref());
            self.observe_and_deliver(&mut seen, &mut events).await;
            tokio::time::sleep(TICK).await;
        }
        // Two acting ticks, then the orphan check.
        let mut acting = 0;
        let final_deadline = Instant::now() + Duration::from_secs(10);
        while acting < 2 && Instant::now() < final_deadline {
            let step = self.step(&mut a, None).await;
            acting += usize::from(step.acted);
            seen.record_step(step.acted, step.observed, false, step.report.as_ref());
            self.observe_and_deliver(&mut seen, &mut events).await;
            if acting < 2 {
                tokio::time::sleep(TICK).await;
            }
        }
        self.end_invocation(&mut a, true).await;
        let stats = events.bridge.stats;
        for (kind, count) in [
            ("events_delivery_failed", stats.failed),
            ("events_given_up", stats.given_up),
        ] {
            if count > 0 {
                *seen.faults.entry(kind.to_string()).or_default() += count;
            }
        }
        seen.events_delivered = stats.delivered;
        self.final_look(batch, &mut seen, &proxy_before).await?;
        seen.wall_ms = started.elapsed().as_millis() as u64;
        Ok(seen)
    }

    /// Every job has started and finished, nothing queued or running, on both masters, and
    /// no event or reclamation on its way.
    fn quiet(&self, seen: &Observations, events: &Events<'_>) -> bool {
        events.bridge.idle()
            && events.reclamations.is_empty()
            && self.sims.iter().enumerate().all(|(m, sim)| {
                let stats = sim.sim().stats();
                let started: BTreeSet<&str> = stats.waits.iter().map(|w| w.job.as_str()).collect();
                stats.queue_length == 0
                    && stats.builds_running == 0
                    && seen
                        .jobs
                        .iter()
                        .filter(|(master, _, _)| *master == m)
                        .all(|(_, _, job)| started.contains(job.as_str()))
            })
    }

    /// One tick of one slot, as the Lambda handler would run it.
    async fn step(&self, slot: &mut Slot, cut: Option<Duration>) -> Step {
        let now = now_ms();
        let mut step = Step::default();
        if slot.invocation.is_none() {
            slot.started += 1;
            let invocation = Invocation {
                owner: format!("{}-{}-{}", self.stack, slot.name, slot.started),
                stop_at_ms: now + INVOCATION_TICKS * TICK.as_millis() as i64,
            };
            let scaler = slot.scaler.get_or_insert_with(|| self.scaler());
            match self
                .lease
                .acquire(&invocation.owner, now, lease_until(&invocation))
                .await
            {
                Ok(true) => {
                    if scaler.recall_launches(now).await.is_err() {
                        // The handler gives the lease back and fails the invocation.
                        let _ = self.lease.release(&invocation.owner).await;
                        return step;
                    }
                    slot.invocation = Some(invocation);
                }
                Ok(false) => {
                    // Another invocation holds the lease: observe once and end.
                    step.report = Some(scaler.observe_only(now).await);
                    step.observed = true;
                    return step;
                }
                Err(_) => return step, // the invocation fails before ticking
            }
        } else if let Some((owner, until)) = slot
            .invocation
            .as_ref()
            .map(|i| (i.owner.clone(), lease_until(i)))
        {
            match self.lease.acquire(&owner, now, until).await {
                Ok(true) => {}
                Ok(false) => {
                    // Lost to another invocation: stop (the handler breaks, then releases).
                    self.end_invocation(slot, true).await;
                    return step;
                }
                Err(_) => {
                    slot.invocation = None; // the handler returns the error, no release
                    return step;
                }
            }
        }
        let scaler = slot.scaler.get_or_insert_with(|| self.scaler());
        match cut {
            Some(after) => match tokio::time::timeout(after, scaler.tick(now)).await {
                Ok(report) => step.report = Some(report),
                Err(_) => {
                    // The invocation dies mid-tick: no release, and a cold start next.
                    step.cut = true;
                    slot.invocation = None;
                    slot.scaler = None;
                    step.acted = true;
                    return step;
                }
            },
            None => step.report = Some(scaler.tick(now).await),
        }
        step.acted = true;
        if slot
            .invocation
            .as_ref()
            .is_some_and(|i| now_ms() >= i.stop_at_ms)
        {
            self.end_invocation(slot, true).await;
        }
        step
    }

    /// Ends a slot's invocation, releasing the lease when asked.
    async fn end_invocation(&self, slot: &mut Slot, release: bool) {
        if let Some(invocation) = slot.invocation.take()
            && release
        {
            // A failed release leaves the lease to expire, as it would on AWS.
            let _ = self.lease.release(&invocation.owner).await;
        }
    }

    /// Sends a Spot warning for a connected agent (if any); EC2 takes it after the notice.
    fn spot_warning(&self, events: &mut Events<'_>, plan: &SpotPlan, seen: &mut Observations) {
        let connected: Vec<&String> = seen
            .connected
            .iter()
            .filter(|id| {
                !seen.reclaimed.contains(*id)
                    && self.booter.state(id) == Some(AgentState::Connected)
            })
            .collect();
        if connected.is_empty() {
            return;
        }
        let victim = connected[plan.pick % connected.len()].clone();
        seen.count_fault("spot_reclamations");
        for (copy, delay) in plan.warnings.iter().enumerate() {
            if copy > 0 {
                seen.count_fault("events_duplicated");
            }
            if *delay > plan.notice_ticks {
                seen.count_fault("events_reordered");
            }
            events
                .bridge
                .send(*delay, events::spot_interruption_warning(&victim));
        }
        events.bridge.announced_by_plan(&victim);
        events.reclamations.push(Reclamation {
            due: events.bridge.tick() + u64::from(plan.notice_ticks),
            instance_id: victim.clone(),
            terminations: plan.terminations.clone(),
        });
        seen.reclaimed.insert(victim);
    }

    /// Observes, takes the reclaimed instances due, announces ends, delivers due events.
    async fn observe_and_deliver(&self, seen: &mut Observations, events: &mut Events<'_>) {
        let instances = self.observe(seen).await;
        let now = events.bridge.tick();
        let (due, later): (Vec<Reclamation>, Vec<Reclamation>) =
            std::mem::take(&mut events.reclamations)
                .into_iter()
                .partition(|r| r.due <= now);
        events.reclamations = later;
        for reclamation in due {
            // EC2 reclaiming the capacity: terminated in moto directly, as AWS would.
            let _ = self
                .moto_ec2
                .terminate_instances()
                .instance_ids(&reclamation.instance_id)
                .send()
                .await;
            for (copy, delay) in reclamation.terminations.iter().enumerate() {
                if copy > 0 {
                    seen.count_fault("events_duplicated");
                }
                events.bridge.send(
                    *delay,
                    events::ec2_state_change(&reclamation.instance_id, "terminated"),
                );
            }
        }
        let ended = instances.iter().filter(|i| !i.alive).map(|i| i.id.as_str());
        let duplicated = events.bridge.announce_ends(&mut events.rng, ended);
        for _ in 0..duplicated {
            seen.count_fault("events_duplicated");
        }
        events.bridge.deliver_due().await;
    }

    /// The harness's own look at moto (not through the proxy) and the booter.
    async fn observe(&self, seen: &mut Observations) -> Vec<SeenInstance> {
        let Ok(instances) = self.instances().await else {
            return Vec::new();
        };
        for instance in &instances {
            if let Some(state) = self.booter.state(&instance.id)
                && matches!(
                    state,
                    AgentState::Connected | AgentState::Reconnecting(_) | AgentState::Dead(_)
                )
            {
                seen.connected.insert(instance.id.clone());
            }
        }
        seen.record_instances(now_ms(), &instances);
        instances
    }

    /// The stack's instances in moto, in every state.
    async fn instances(&self) -> Result<Vec<SeenInstance>, String> {
        let answer = self
            .moto_ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{}", tags::STACK))
                    .values(&self.stack)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_sdk_ec2::error::DisplayErrorContext(e).to_string())?;
        let tag = |instance: &aws_sdk_ec2::types::Instance, key: &str| {
            instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        Ok(answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|instance| {
                Some(SeenInstance {
                    id: instance.instance_id()?.to_string(),
                    master: tag(instance, tags::MASTER),
                    label: tag(instance, tags::LABEL),
                    alive: matches!(
                        instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
                        Some("pending" | "running")
                    ),
                })
            })
            .collect())
    }

    /// After the last tick: nodes, lost builds, starts, boot faults and proxy figures.
    async fn final_look(
        &self,
        batch: &Batch,
        seen: &mut Observations,
        proxy_before: &crate::aws_proxy::ProxyStats,
    ) -> Result<(), String> {
        let instances = self.instances().await?;
        seen.record_instances(now_ms(), &instances);
        seen.final_instances = instances;
        for (m, sim) in self.sims.iter().enumerate() {
            let computers = self
                .client(m)
                .computers()
                .await
                .map_err(|e| format!("{}: {e}", MASTERS[m]))?;
            seen.final_nodes.extend(
                computers
                    .computer
                    .into_iter()
                    .map(|c| (m, c.display_name.clone(), !c.offline)),
            );
            let stats = sim.sim().stats();
            seen.lost_builds.extend(
                stats
                    .builds_lost
                    .iter()
                    .map(|l| (m, l.node.clone(), l.job.clone())),
            );
            seen.started_jobs
                .extend(stats.waits.iter().map(|w| (m, w.job.clone())));
        }
        let booter = self.booter.stats();
        seen.dead_agents = booter.dead.iter().map(|d| d.instance_id.clone()).collect();
        if let Ok(chaos) = self.chaos.lock() {
            for (id, fault) in &chaos.injected {
                seen.boot_faults.insert(id.clone(), *fault);
                seen.count_fault(match fault {
                    BootFault::NeverConnects => "boot_never_connects",
                    BootFault::DiesMidBuild => "boot_dies_mid_build",
                    BootFault::ConnectsLate(_) => "boot_connects_late",
                    BootFault::DiesAfter(_) => "boot_dies_after",
                });
            }
        }
        let proxy = batch.proxy.stats();
        for (kind, count) in &proxy.faults {
            let delta = count - proxy_before.faults.get(kind).copied().unwrap_or(0);
            if delta > 0 {
                *seen.faults.entry(format!("aws_{kind}")).or_default() += delta;
            }
        }
        seen.idempotent_replays = proxy.idempotent_replays - proxy_before.idempotent_replays;
        let ours: BTreeSet<&str> = seen.all_instances.keys().map(String::as_str).collect();
        seen.launches_by_token = batch
            .proxy
            .launches_by_token()
            .into_iter()
            .filter(|(_, ids)| ids.iter().any(|id| ours.contains(id.as_str())))
            .collect::<HashMap<_, _>>()
            .into_iter()
            .collect::<BTreeMap<_, _>>();
        Ok(())
    }

    async fn shutdown(self) {
        let RunFarm {
            booter,
            fleet,
            sims,
            ..
        } = self;
        drop(fleet);
        if let Ok(booter) = Arc::try_unwrap(booter) {
            booter.shutdown().await;
        }
        for sim in sims {
            sim.shutdown().await;
        }
    }
}

/// The events side of a run: EventBridge with recovery behind it, the run's own random stream
/// for event timing, and the reclamations whose notice is running.
struct Events<'b> {
    bridge: &'b mut EventBridge,
    rng: StdRng,
    reclamations: Vec<Reclamation>,
}

/// The handler's lease horizon: the invocation's end plus two polls.
fn lease_until(invocation: &Invocation) -> i64 {
    invocation.stop_at_ms + 2 * TICK.as_millis() as i64
}
