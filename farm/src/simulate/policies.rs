//! The policies compared: longshore's own `scaling::plan`, and the models of what a user would
//! pick instead. Each peer's figures and where they come from are in the README section
//! "Benchmarks: policy simulator"; the constants below carry the same citations.

use std::collections::BTreeMap;

use longshore::domain::fleet::{
    FLEET_CONFIG_SCHEMA, FleetConfig, LabelTemplate, LaunchTemplate, Placement, SpotPolicy, Subnet,
};
use longshore::domain::labels;
use longshore::domain::queue_why::Why;
use longshore::domain::scaling::{self, Instance, MasterSnapshot, MasterView, Node, Snapshot};

use super::engine::{Action, AgentState, Policy, World};
use super::trace::Trace;

/// The queue-scaler's schedule in the farm: one tick every 2 s (DESIGN.md's POLL_INTERVAL).
pub const LONGSHORE_POLL_MS: i64 = 2_000;
/// The one master of the simulated farm.
const MASTER: &str = "sim";

/// longshore: every tick, the snapshot production would read, the very `scaling::plan` that
/// ships, and its launches and retirements applied as the queue-scaler applies them
/// (retirements only of idle agents: the plan never proposes others, and a busy kill would
/// be counted if it did).
pub struct Longshore {
    config: FleetConfig,
    template_label: BTreeMap<String, usize>,
    whys: Vec<Why>,
    standby: Vec<Node>,
}

impl Longshore {
    /// A fleet with one template per trace label, one executor per agent, `idle_secs` of
    /// idleness before retirement (the stack default is 2 min), no warm minimum, caps
    /// high enough never to bind.
    /// Every label is one Jenkins label atom: `why` renders it escaped as Jenkins would.
    pub fn new(trace: &Trace, idle_secs: u32, boot_ms: i64) -> Longshore {
        let config = FleetConfig {
            schema: FLEET_CONFIG_SCHEMA,
            stack: "simulate".to_string(),
            launch_template: LaunchTemplate {
                id: "lt-simulate".to_string(),
                version: "1".to_string(),
            },
            max_agents: 100_000,
            boot_timeout_secs: (boot_ms / 1000 * 3).max(600) as u32,
            masters: vec![MASTER.to_string()],
            labels: trace
                .labels
                .iter()
                .map(|label| LabelTemplate {
                    name: label.clone(),
                    node_labels: vec![label.clone()],
                    executors: 1,
                    placements: vec![Placement {
                        instance_type: "c6i.large".to_string(),
                        subnets: vec![Subnet {
                            id: "subnet-a".to_string(),
                            availability_zone: "us-east-1a".to_string(),
                        }],
                    }],
                    max_per_master: 100_000,
                    warm_minimum: 0,
                    idle_secs,
                    spot: SpotPolicy::Never,
                })
                .collect(),
        };
        let standby = trace
            .labels
            .iter()
            .map(|label| Node {
                name: scaling::standby_node_name(label),
                executors: 1,
                busy: 0,
                online: false,
                temporarily_offline: false,
                idle_since_ms: None,
                registration: None,
            })
            .collect();
        Longshore {
            template_label: trace
                .labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i))
                .collect(),
            // What Jenkins' queue says of an item waiting for a label with nodes.
            whys: trace
                .labels
                .iter()
                .map(|l| Why::Label(labels::escape_atom(l)))
                .collect(),
            standby,
            config,
        }
    }

    /// The snapshot the queue-scaler would read from Jenkins and EC2 now.
    pub fn snapshot(&self, world: &World) -> Snapshot {
        let mut waiting = Vec::new();
        for (label, queue) in world.queues.iter().enumerate() {
            for &job in queue {
                waiting.push(scaling::WaitingItem {
                    id: job as u64,
                    why: self.whys[label].clone(),
                    waiting_since_ms: world.trace.jobs[job].queued_ms,
                });
            }
        }
        let mut nodes = self.standby.clone();
        let mut instances = Vec::new();
        for agent in world.agents.values() {
            let name = node_name(agent.id);
            // A booting agent has an instance but no connected node yet.
            if agent.state != AgentState::Booting {
                let busy = matches!(agent.state, AgentState::Busy { .. });
                nodes.push(Node {
                    name: name.clone(),
                    executors: 1,
                    busy: u32::from(busy),
                    online: true,
                    temporarily_offline: agent.offline,
                    idle_since_ms: match agent.state {
                        AgentState::Idle { since_ms } => Some(since_ms),
                        _ => None,
                    },
                    // The simulated EC2 lists every instance at once: nothing to recover.
                    registration: None,
                });
            }
            instances.push(Instance {
                id: name,
                master: Some(MASTER.to_string()),
                template: Some(world.trace.labels[agent.label].clone()),
                subnet_id: Some("subnet-a".to_string()),
                launched_at_ms: agent.launched_ms,
            });
        }
        Snapshot {
            now_ms: world.now_ms,
            masters: vec![MasterSnapshot {
                name: MASTER.to_string(),
                view: Some(MasterView { waiting, nodes }),
            }],
            instances,
        }
    }
}

/// The node (and instance) name of an agent: an EC2-style instance id.
fn node_name(id: u64) -> String {
    format!("i-{id:017x}")
}

fn agent_of(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix("i-")?, 16).ok()
}

impl Policy for Longshore {
    fn name(&self) -> String {
        "longshore".to_string()
    }

    fn period_ms(&self) -> Option<i64> {
        Some(LONGSHORE_POLL_MS)
    }

    fn tick(&mut self, world: &World) -> Vec<Action> {
        let plan = scaling::plan(&self.snapshot(world), &self.config);
        let mut actions = Vec::new();
        for launch in &plan.launches {
            if let Some(&label) = self.template_label.get(&launch.template) {
                actions.push(Action::Launch { label, count: 1 });
            }
        }
        let doomed = plan
            .retirements
            .iter()
            .map(|r| r.node.as_str())
            .chain(plan.orphan_instances.iter().map(|o| o.instance_id.as_str()));
        actions.extend(doomed.filter_map(agent_of).map(Action::Terminate));
        actions
    }
}

/// A fixed fleet per label, up before the first build and never retired.
pub struct Static {
    pub sizes: Vec<usize>,
}

impl Policy for Static {
    fn name(&self) -> String {
        "static".to_string()
    }

    fn period_ms(&self) -> Option<i64> {
        None
    }

    fn tick(&mut self, _world: &World) -> Vec<Action> {
        Vec::new()
    }

    fn schedule(&mut self, _trace: &Trace, _boot_ms: i64, start_ms: i64) -> Vec<(i64, Action)> {
        self.sizes
            .iter()
            .enumerate()
            .map(|(label, &count)| (start_ms, Action::Launch { label, count }))
            .collect()
    }

    fn ends_with_trace(&self) -> bool {
        true
    }
}

/// Knows every arrival: one agent per build, launched exactly one boot delay before it is
/// queued, terminated when the build ends.
pub struct Oracle;

impl Policy for Oracle {
    fn name(&self) -> String {
        "oracle".to_string()
    }

    fn period_ms(&self) -> Option<i64> {
        None
    }

    fn tick(&mut self, _world: &World) -> Vec<Action> {
        Vec::new()
    }

    fn schedule(&mut self, trace: &Trace, boot_ms: i64, _start_ms: i64) -> Vec<(i64, Action)> {
        trace
            .jobs
            .iter()
            .map(|job| {
                (
                    job.queued_ms - boot_ms,
                    Action::Launch {
                        label: job.label,
                        count: 1,
                    },
                )
            })
            .collect()
    }

    fn retire_after_build(&self) -> bool {
        true
    }
}

/// Jenkins core's `LoadStatistics.CLOCK` (10 s) = `NodeProvisioner.recurrencePeriod` default.
pub const JENKINS_CLOCK_MS: i64 = 10_000;
/// `hudson.model.LoadStatistics.decay` default.
pub const JENKINS_DECAY: f32 = 0.9;
/// `hudson.slaves.NodeProvisioner.MARGIN` default (10, in percent).
pub const JENKINS_MARGIN: f32 = 0.1;
/// `hudson.slaves.NodeProvisioner.MARGIN0` default.
pub const JENKINS_MARGIN0: f32 = 0.5;
/// `hudson.slaves.NodeProvisioner.MARGIN_DECAY` default.
pub const JENKINS_MARGIN_DECAY: f32 = 0.5;
/// The EC2 plugin's idle termination (`idleTerminationMinutes`, 30 by default).
pub const EC2_IDLE_MS: i64 = 30 * 60_000;
/// Jenkins checks retention strategies once a minute (`ComputerRetentionWork`).
pub const RETENTION_CHECK_MS: i64 = 60_000;

/// One exponential moving average, as `hudson.model.TimeSeries.update`.
#[derive(Debug, Clone, Copy, Default)]
struct Ema(f32);

impl Ema {
    fn update(&mut self, value: f32) {
        self.0 = self.0 * JENKINS_DECAY + value * (1.0 - JENKINS_DECAY);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct JenkinsLabel {
    queue: Ema,
    available: Ema,
    planned: Ema,
}

/// The Jenkins EC2 plugin under core's `NodeProvisioner.StandardStrategyImpl`: per label, every
/// 10 s, EMAs of queue length, idle executors and planned capacity; provision
/// `floor(excess + m)` agents when the conservative excess workload exceeds `1 − m`. An agent
/// still booting counts as planned capacity until it connects. Idle agents are terminated
/// after 30 min, checked every minute.
pub struct JenkinsEc2 {
    labels: Vec<JenkinsLabel>,
}

impl JenkinsEc2 {
    pub fn new(trace: &Trace) -> JenkinsEc2 {
        JenkinsEc2 {
            labels: vec![JenkinsLabel::default(); trace.labels.len()],
        }
    }
}

impl Policy for JenkinsEc2 {
    fn name(&self) -> String {
        "jenkins-ec2".to_string()
    }

    fn period_ms(&self) -> Option<i64> {
        Some(JENKINS_CLOCK_MS)
    }

    fn quiescent(&self) -> bool {
        self.labels
            .iter()
            .all(|l| l.queue.0 < 0.01 && l.available.0 < 0.01 && l.planned.0 < 0.01)
    }

    fn tick(&mut self, world: &World) -> Vec<Action> {
        let mut actions = Vec::new();
        for (label, stats) in self.labels.iter_mut().enumerate() {
            let agents: Vec<_> = world.agents_of(label).collect();
            let idle = agents
                .iter()
                .filter(|a| !a.offline && matches!(a.state, AgentState::Idle { .. }))
                .count() as f32;
            let online = agents
                .iter()
                .filter(|a| a.state != AgentState::Booting)
                .count();
            let planned = agents
                .iter()
                .filter(|a| a.state == AgentState::Booting)
                .count() as f32;
            let queue = world.queues[label].len() as f32;
            // LoadStatistics' updater, then NodeProvisioner.update (same 10 s clock).
            stats.queue.update(queue);
            stats.available.update(idle);
            stats.planned.update(planned);

            let need_some = idle == 0.0 && online == 0 && planned == 0.0 && queue > 0.0;
            let available = idle.max(stats.available.0);
            if available < JENKINS_MARGIN || need_some {
                let qlen = stats.queue.0.min(queue);
                let planned_capacity = stats.planned.0.max(planned);
                let mut excess = qlen - planned_capacity;
                if need_some && excess < 1.0 {
                    excess = 1.0;
                }
                let m = (JENKINS_MARGIN
                    + (JENKINS_MARGIN0 - JENKINS_MARGIN)
                        * JENKINS_MARGIN_DECAY.powi(online as i32))
                .clamp(0.0, 1.0);
                if excess > 1.0 - m {
                    let count = (excess + m).floor() as usize;
                    if count > 0 {
                        actions.push(Action::Launch { label, count });
                    }
                }
            }
        }
        // EC2RetentionStrategy: terminate agents idle past idleTerminationMinutes.
        if world.now_ms.rem_euclid(RETENTION_CHECK_MS) < JENKINS_CLOCK_MS {
            actions.extend(idle_longer_than(world, EC2_IDLE_MS).map(Action::Terminate));
        }
        actions
    }
}

/// Agents idle (and online) for at least `ms`.
fn idle_longer_than<'w>(world: &'w World, ms: i64) -> impl Iterator<Item = u64> + 'w {
    world.agents.values().filter_map(move |a| match a.state {
        AgentState::Idle { since_ms } if world.now_ms - since_ms >= ms => Some(a.id),
        _ => None,
    })
}

/// buildkite-agent-scaler's poll: the Elastic CI Stack's `ScalerMinPollInterval` default 10s.
pub const BUILDKITE_POLL_MS: i64 = 10_000;
/// The Elastic CI Stack's `ScaleOutCooldownPeriod` default (300 s): after a scale-out, the
/// scaler does not scale out again for this long (`scaleOut` in the scaler's scaler.go).
pub const BUILDKITE_SCALE_OUT_COOLDOWN_MS: i64 = 300_000;
/// The Elastic CI Stack's `ScaleInIdlePeriod` default (600 s): an agent idle this long stops
/// and terminates its instance. The scaler itself does not scale in (`DisableScaleIn` default
/// true, so `ScaleInCooldownPeriod`, 3600 s, never applies).
pub const BUILDKITE_IDLE_MS: i64 = 600_000;

/// A Buildkite-style desired-count scaler, one Auto Scaling group per label (queue): every
/// 10 s, desired instances = ceil((scheduled + running jobs) / agents per instance) ×
/// ScaleOutFactor (1.0) + InstanceBuffer (0); when above the group's instances (booting
/// included), it launches the difference unless it scaled out in the last 300 s; idle agents
/// terminate themselves after 600 s.
pub struct Buildkite {
    cooldown_ms: i64,
    last_scale_out: Vec<Option<i64>>,
}

impl Buildkite {
    /// `cooldown_ms`: [`BUILDKITE_SCALE_OUT_COOLDOWN_MS`] for the Elastic CI Stack's default;
    /// the scaler alone defaults to 0.
    pub fn new(trace: &Trace, cooldown_ms: i64) -> Buildkite {
        Buildkite {
            cooldown_ms,
            last_scale_out: vec![None; trace.labels.len()],
        }
    }
}

impl Policy for Buildkite {
    fn name(&self) -> String {
        "buildkite".to_string()
    }

    fn period_ms(&self) -> Option<i64> {
        Some(BUILDKITE_POLL_MS)
    }

    fn tick(&mut self, world: &World) -> Vec<Action> {
        let now = world.now_ms;
        let mut actions: Vec<Action> = idle_longer_than(world, BUILDKITE_IDLE_MS)
            .map(Action::Terminate)
            .collect();
        for (label, last) in self.last_scale_out.iter_mut().enumerate() {
            let agents = world.agents_of(label).count();
            let running = world
                .agents_of(label)
                .filter(|a| matches!(a.state, AgentState::Busy { .. }))
                .count();
            let desired = world.queues[label].len() + running; // 1 agent per instance
            let cooling = last.is_some_and(|at| now - at < self.cooldown_ms);
            if desired > agents && !cooling {
                actions.push(Action::Launch {
                    label,
                    count: desired - agents,
                });
                *last = Some(now);
            }
        }
        actions
    }
}

/// How often the Netflix-style scaler evaluates (our choice; the talk gives the windows).
pub const NETFLIX_EVAL_MS: i64 = 10_000;
const NETFLIX_UP_AFTER_MS: i64 = 60_000;
const NETFLIX_DOWN_AFTER_MS: i64 = 15 * 60_000;

#[derive(Debug, Clone, Copy, Default)]
struct NetflixLabel {
    high_since: Option<i64>,
    low_since: Option<i64>,
}

/// Netflix-style utilization step scaler (cdCon 2021): utilization = (busy + offline) / all
/// connected executors (1 when none are connected and builds wait). Above 65 % for 1 min:
/// add 20 % of the fleet (40 % above 80 %), at least 5. Below 25 % for 15 min: take idle
/// agents offline down to a fleet at 50 % utilization (our choice of step), and terminate the
/// offline ones at the next evaluation.
pub struct Netflix {
    labels: Vec<NetflixLabel>,
}

impl Netflix {
    pub fn new(trace: &Trace) -> Netflix {
        Netflix {
            labels: vec![NetflixLabel::default(); trace.labels.len()],
        }
    }
}

impl Policy for Netflix {
    fn name(&self) -> String {
        "netflix".to_string()
    }

    fn period_ms(&self) -> Option<i64> {
        Some(NETFLIX_EVAL_MS)
    }

    fn quiescent(&self) -> bool {
        self.labels
            .iter()
            .all(|l| l.high_since.is_none() && l.low_since.is_none())
    }

    fn tick(&mut self, world: &World) -> Vec<Action> {
        let now = world.now_ms;
        let mut actions = Vec::new();
        for (label, state) in self.labels.iter_mut().enumerate() {
            let agents: Vec<_> = world.agents_of(label).collect();
            // Drained agents (offline and idle) terminate.
            for agent in agents.iter().filter(|a| a.offline) {
                if matches!(agent.state, AgentState::Idle { .. }) {
                    actions.push(Action::Terminate(agent.id));
                }
            }
            let connected: Vec<_> = agents
                .iter()
                .filter(|a| a.state != AgentState::Booting)
                .collect();
            let busy = connected
                .iter()
                .filter(|a| matches!(a.state, AgentState::Busy { .. }))
                .count();
            let offline = connected
                .iter()
                .filter(|a| a.offline && matches!(a.state, AgentState::Idle { .. }))
                .count();
            let utilization = if connected.is_empty() {
                if world.queues[label].is_empty() {
                    0.0
                } else {
                    1.0
                }
            } else {
                (busy + offline) as f64 / connected.len() as f64
            };
            if utilization > 0.65 {
                state.low_since = None;
                let since = *state.high_since.get_or_insert(now);
                if now - since >= NETFLIX_UP_AFTER_MS {
                    let share = if utilization > 0.8 { 0.4 } else { 0.2 };
                    let count = ((agents.len() as f64 * share).ceil() as usize).max(5);
                    actions.push(Action::Launch { label, count });
                    state.high_since = None;
                }
            } else if utilization < 0.25 && !connected.is_empty() {
                state.high_since = None;
                let since = *state.low_since.get_or_insert(now);
                if now - since >= NETFLIX_DOWN_AFTER_MS {
                    let keep = busy * 2; // a fleet at 50 % utilization
                    let idle: Vec<u64> = connected
                        .iter()
                        .filter(|a| !a.offline && matches!(a.state, AgentState::Idle { .. }))
                        .map(|a| a.id)
                        .collect();
                    let surplus = connected.len().saturating_sub(keep).min(idle.len());
                    actions.extend(
                        idle.into_iter()
                            .take(surplus)
                            .map(|id| Action::SetOffline(id, true)),
                    );
                    state.low_since = None;
                }
            } else {
                state.high_since = None;
                state.low_since = None;
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use super::*;
    use crate::simulate::engine;

    fn trace(jobs: usize) -> Trace {
        Trace::from_rows(
            "t",
            (0..jobs).map(|_| (0, 600_000, "a".to_string())).collect(),
        )
    }

    fn world(trace: &Trace, now_ms: i64) -> World<'_> {
        World {
            now_ms,
            trace,
            boot_ms: 40_000,
            agents: BTreeMap::new(),
            queues: vec![(0..trace.jobs.len()).collect::<VecDeque<_>>()],
        }
    }

    fn launched(actions: &[Action]) -> usize {
        actions
            .iter()
            .map(|a| match a {
                Action::Launch { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn jenkins_provisions_one_at_once_from_nothing_then_follows_its_averages() {
        let t = trace(20);
        let mut jenkins = JenkinsEc2::new(&t);
        // EMA of the queue after one 10 s update: 0.1 × 20 = 2; m = 0.5 with no executors.
        assert_eq!(launched(&jenkins.tick(&world(&t, 0))), 2);
        let single = trace(1);
        let stats = engine::run(&single, &mut JenkinsEc2::new(&single), 40_000);
        assert_eq!(stats.launches, 1, "the needSomeWhenNoneAtAll case");
        assert_eq!(stats.waits_ms, vec![Some(40_000)]);
    }

    #[test]
    fn netflix_waits_a_minute_then_adds_at_least_five() {
        let t = trace(10);
        let mut netflix = Netflix::new(&t);
        for now in (0..60_000).step_by(10_000) {
            assert_eq!(launched(&netflix.tick(&world(&t, now))), 0, "at {now}");
        }
        assert_eq!(launched(&netflix.tick(&world(&t, 60_000))), 5);
    }

    #[test]
    fn buildkite_wants_one_instance_per_scheduled_or_running_job() {
        let t = trace(7);
        let mut buildkite = Buildkite::new(&t, BUILDKITE_SCALE_OUT_COOLDOWN_MS);
        assert_eq!(launched(&buildkite.tick(&world(&t, 0))), 7);
        // More builds queue, but the scale-out cooldown holds for 300 s.
        let more = trace(9);
        assert_eq!(launched(&buildkite.tick(&world(&more, 290_000))), 0);
        assert_eq!(launched(&buildkite.tick(&world(&more, 300_000))), 9);
    }

    #[test]
    fn longshore_snapshot_is_what_the_scaler_reads() {
        let t = trace(3);
        let longshore = Longshore::new(&t, 600, 40_000);
        let mut w = world(&t, 5_000);
        w.agents.insert(
            1,
            engine::Agent {
                id: 1,
                label: 0,
                launched_ms: 0,
                state: AgentState::Booting,
                offline: false,
            },
        );
        let snap = longshore.snapshot(&w);
        let view = snap.masters[0].view.as_ref().unwrap();
        assert_eq!(view.waiting.len(), 3);
        assert_eq!(
            view.nodes.len(),
            1,
            "the standby node only: agent 1 is booting"
        );
        assert_eq!(snap.instances[0].id, "i-00000000000000001");
        assert!(scaling::is_instance_id(&snap.instances[0].id));
        // The booting agent covers one build: two more are launched.
        assert_eq!(scaling::plan(&snap, &longshore.config).launches.len(), 2);
    }
}
