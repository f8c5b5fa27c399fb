//! The discrete-event core: builds arrive per label, agents boot, run one build per executor
//! (one executor per agent), idle, and are retired — all in simulated milliseconds, with no
//! clock and no randomness, so a trace and a policy always give the same run.
//!
//! Events at the same instant are handled in a fixed order: builds finish, boots complete,
//! scheduled actions, arrivals, then the policy's tick — so a tick sees the world after
//! everything that happened at its instant, as a scaler reading Jenkins would. Waiting builds
//! go, in queue order, to the idle online agent of their label with the lowest id.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use super::trace::Trace;

/// What an agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Launched, not connected yet.
    Booting,
    /// Connected, nothing to run since `since_ms`.
    Idle { since_ms: i64 },
    /// Running build `job` until `until_ms`.
    Busy { job: usize, until_ms: i64 },
}

/// One agent (one instance, one executor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: u64,
    pub label: usize,
    pub launched_ms: i64,
    pub state: AgentState,
    /// Marked offline on purpose (being drained): takes no new build.
    pub offline: bool,
}

/// What a policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `count` agents for a label.
    Launch { label: usize, count: usize },
    /// Terminate an agent now (a busy one loses its build: a busy kill, the build is queued
    /// again at the head of its label's queue).
    Terminate(u64),
    /// Mark an agent offline (no new builds) or back online.
    SetOffline(u64, bool),
}

/// A scaling policy under test.
pub trait Policy {
    /// The policy's name in the report.
    fn name(&self) -> String;
    /// How often [`Policy::tick`] runs; `None` for policies that only act on schedule.
    fn period_ms(&self) -> Option<i64>;
    /// One evaluation: look at the world, ask for actions.
    fn tick(&mut self, world: &World) -> Vec<Action>;
    /// Actions fixed before the run, at their times (the oracle, a static fleet).
    fn schedule(&mut self, _trace: &Trace, _boot_ms: i64, _start_ms: i64) -> Vec<(i64, Action)> {
        Vec::new()
    }
    /// Terminate each agent as soon as its build ends (the oracle).
    fn retire_after_build(&self) -> bool {
        false
    }
    /// The run ends with the last build (a static fleet is charged until then, not after).
    fn ends_with_trace(&self) -> bool {
        false
    }
    /// Nothing pending inside the policy: ticks may be skipped while the farm is empty.
    fn quiescent(&self) -> bool {
        true
    }
}

/// The farm as a policy sees it.
#[derive(Debug, Clone)]
pub struct World<'t> {
    pub now_ms: i64,
    pub trace: &'t Trace,
    pub boot_ms: i64,
    /// Agents alive (booting, idle or busy), by id.
    pub agents: BTreeMap<u64, Agent>,
    /// Per label, the builds waiting, in queue order (indices into `trace.jobs`).
    pub queues: Vec<VecDeque<usize>>,
}

impl World<'_> {
    /// The agents of one label.
    pub fn agents_of(&self, label: usize) -> impl Iterator<Item = &Agent> {
        self.agents.values().filter(move |a| a.label == label)
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    /// Per build: queued → (last) start, ms; `None` if it never ran.
    pub waits_ms: Vec<Option<i64>>,
    /// Agent lifetime, launch to termination (or the end of the run), summed, ms.
    pub agent_ms: i64,
    pub launches: usize,
    /// Agents terminated while running a build.
    pub busy_kills: usize,
    /// When the run ended (simulated ms).
    pub end_ms: i64,
}

/// After the last build, how long idle agents may linger before the run ends (and they are
/// charged up to then): longer than every policy's idle timeout.
pub const TAIL_MS: i64 = 60 * 60_000;
/// A policy that leaves builds waiting this long after the last arrival is given up on.
const GIVE_UP_MS: i64 = 7 * 24 * 3_600_000;

// Event kinds, in their order at one instant.
const BUILD_DONE: u8 = 0;
const BOOT_DONE: u8 = 1;
const SCHEDULED: u8 = 2;
const ARRIVAL: u8 = 3;
const TICK: u8 = 4;

type Event = Reverse<(i64, u8, u64, usize)>;

struct Sim<'t> {
    world: World<'t>,
    events: BinaryHeap<Event>,
    seq: u64,
    next_agent: u64,
    stats: RunStats,
    starts: Vec<Option<i64>>,
    done: usize,
    last_done_ms: i64,
}

/// Runs one policy over one trace with the given boot delay.
pub fn run(trace: &Trace, policy: &mut dyn Policy, boot_ms: i64) -> RunStats {
    let first = trace.jobs.first().map_or(0, |j| j.queued_ms);
    // Start early enough that an agent launched at the start is up for the first build.
    let start_ms = (first - boot_ms).min(0);
    let mut sim = Sim {
        world: World {
            now_ms: start_ms,
            trace,
            boot_ms,
            agents: BTreeMap::new(),
            queues: vec![VecDeque::new(); trace.labels.len()],
        },
        events: BinaryHeap::new(),
        seq: 0,
        next_agent: 1,
        stats: RunStats {
            waits_ms: vec![None; trace.jobs.len()],
            agent_ms: 0,
            launches: 0,
            busy_kills: 0,
            end_ms: start_ms,
        },
        starts: vec![None; trace.jobs.len()],
        done: 0,
        last_done_ms: start_ms,
    };
    for (index, job) in trace.jobs.iter().enumerate() {
        sim.push(job.queued_ms, ARRIVAL, index);
    }
    let scheduled = policy.schedule(trace, boot_ms, start_ms);
    for (index, (at, _)) in scheduled.iter().enumerate() {
        sim.push(*at, SCHEDULED, index);
    }
    let period = policy.period_ms();
    if period.is_some() {
        sim.push(start_ms, TICK, 0);
    }
    let last_arrival = trace.jobs.last().map_or(0, |j| j.queued_ms);

    while let Some(Reverse((at, kind, _, payload))) = sim.events.pop() {
        let all_done = sim.done == trace.jobs.len();
        if all_done
            && (policy.ends_with_trace()
                || sim.world.agents.is_empty()
                || at > sim.last_done_ms + TAIL_MS)
        {
            break;
        }
        if at > last_arrival + GIVE_UP_MS {
            break;
        }
        sim.world.now_ms = at;
        match kind {
            BUILD_DONE => sim.build_done(payload as u64, policy.retire_after_build()),
            BOOT_DONE => sim.boot_done(payload as u64),
            SCHEDULED => sim.apply(&scheduled[payload].1),
            ARRIVAL => {
                let label = trace.jobs[payload].label;
                sim.world.queues[label].push_back(payload);
                sim.dispatch(label);
            }
            _ => {
                let actions = policy.tick(&sim.world);
                for action in &actions {
                    sim.apply(action);
                }
                if let Some(period) = period {
                    let next = sim.next_tick(at, period, policy.quiescent());
                    sim.push(next, TICK, 0);
                }
            }
        }
    }
    let end = if sim.done < trace.jobs.len() {
        sim.world.now_ms
    } else if policy.ends_with_trace() {
        sim.last_done_ms
    } else if sim.world.agents.is_empty() {
        sim.world.now_ms
    } else {
        sim.last_done_ms + TAIL_MS
    };
    sim.finish(end)
}

impl Sim<'_> {
    fn push(&mut self, at: i64, kind: u8, payload: usize) {
        self.seq += 1;
        self.events.push(Reverse((at, kind, self.seq, payload)));
    }

    /// The next tick: one period on, or — while the farm is empty and the policy has nothing
    /// pending — the first tick of the period grid at or after the next event.
    fn next_tick(&self, now: i64, period: i64, quiescent: bool) -> i64 {
        let empty =
            self.world.agents.is_empty() && self.world.queues.iter().all(VecDeque::is_empty);
        match self.events.peek() {
            Some(Reverse((next, ..))) if empty && quiescent && *next > now + period => {
                now + (next - now).div_euclid(period) * period
            }
            _ => now + period,
        }
    }

    fn apply(&mut self, action: &Action) {
        let now = self.world.now_ms;
        match *action {
            Action::Launch { label, count } => {
                for _ in 0..count {
                    let id = self.next_agent;
                    self.next_agent += 1;
                    self.world.agents.insert(
                        id,
                        Agent {
                            id,
                            label,
                            launched_ms: now,
                            state: AgentState::Booting,
                            offline: false,
                        },
                    );
                    self.stats.launches += 1;
                    self.push(now + self.world.boot_ms, BOOT_DONE, id as usize);
                }
            }
            Action::Terminate(id) => {
                let Some(agent) = self.world.agents.remove(&id) else {
                    return;
                };
                self.stats.agent_ms += now - agent.launched_ms;
                if let AgentState::Busy { job, .. } = agent.state {
                    self.stats.busy_kills += 1;
                    self.starts[job] = None;
                    self.world.queues[agent.label].push_front(job);
                    self.dispatch(agent.label);
                }
            }
            Action::SetOffline(id, offline) => {
                if let Some(agent) = self.world.agents.get_mut(&id) {
                    agent.offline = offline;
                    let label = agent.label;
                    self.dispatch(label);
                }
            }
        }
    }

    fn boot_done(&mut self, id: u64) {
        let now = self.world.now_ms;
        let Some(agent) = self.world.agents.get_mut(&id) else {
            return; // terminated while booting
        };
        if agent.state == AgentState::Booting {
            agent.state = AgentState::Idle { since_ms: now };
            let label = agent.label;
            self.dispatch(label);
        }
    }

    fn build_done(&mut self, id: u64, retire: bool) {
        let now = self.world.now_ms;
        let Some(agent) = self.world.agents.get_mut(&id) else {
            return; // its agent was terminated (a busy kill): the build was queued again
        };
        let AgentState::Busy { job, until_ms } = agent.state else {
            return;
        };
        if until_ms != now {
            return; // a stale event of an earlier build
        }
        self.stats.waits_ms[job] =
            self.starts[job].map(|s| s - self.world.trace.jobs[job].queued_ms);
        self.done += 1;
        self.last_done_ms = now;
        agent.state = AgentState::Idle { since_ms: now };
        let label = agent.label;
        if retire {
            self.apply(&Action::Terminate(id));
        }
        self.dispatch(label);
    }

    /// Starts waiting builds of a label on its idle online agents.
    fn dispatch(&mut self, label: usize) {
        let now = self.world.now_ms;
        while !self.world.queues[label].is_empty() {
            let Some(agent) = self.world.agents.values_mut().find(|a| {
                a.label == label && !a.offline && matches!(a.state, AgentState::Idle { .. })
            }) else {
                return;
            };
            let Some(job) = self.world.queues[label].pop_front() else {
                return;
            };
            let until_ms = now + self.world.trace.jobs[job].duration_ms;
            agent.state = AgentState::Busy { job, until_ms };
            let id = agent.id;
            self.starts[job] = Some(now);
            self.push(until_ms, BUILD_DONE, id as usize);
        }
    }

    /// Charges the agents still alive up to `end`.
    fn finish(mut self, end: i64) -> RunStats {
        for agent in self.world.agents.values() {
            self.stats.agent_ms += (end - agent.launched_ms).max(0);
        }
        self.stats.end_ms = end;
        self.stats
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
