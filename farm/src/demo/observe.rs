//! What the demo shows: the farm as an operator would see it, read from the outside (EC2's
//! instances of the stack, each master's computers, the simulators' queues), never from the
//! scaler's own reports.

use std::collections::{BTreeMap, BTreeSet};

use longshore::adapters::aws::ec2::{AgentState, Ec2Fleet};
use longshore::adapters::jenkins::JenkinsClient;
use longshore::domain::jenkins::Computer;
use longshore::domain::scaling::is_instance_id;

use crate::jenkins::SimStats;

/// Agents and queue of one label, summed over the masters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LabelLine {
    pub queued: usize,
    pub booting: usize,
    pub idle: usize,
    pub busy: usize,
    /// Nodes marked offline (being retired, or warned of a Spot interruption).
    pub offline: usize,
}

/// One look at the farm.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub labels: BTreeMap<String, LabelLine>,
    /// Pending or running instances of the stack.
    pub live_instances: usize,
    /// Nodes named after instances, on all masters.
    pub agent_nodes: usize,
    /// Masters or EC2 that could not be read this time.
    pub unreadable: usize,
    pub builds_completed: u64,
    /// Connected agents (instance id, busy), for picking the ones to interrupt.
    pub connected: Vec<(String, bool)>,
    /// Live instances per (master, label), for the cap checks.
    pub per_master_label: BTreeMap<(String, String), usize>,
}

/// An agent node as its master shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    /// Defined, not connected (yet, or any more): the agent is booting or gone.
    NotConnected,
    /// Marked offline on purpose (being retired, or warned of a Spot interruption).
    TakenOffline,
    Idle,
    Busy,
}

fn node_state(computer: &Computer) -> NodeState {
    if computer.temporarily_offline {
        NodeState::TakenOffline
    } else if computer.offline {
        NodeState::NotConnected
    } else if computer.busy_executors() > 0 {
        NodeState::Busy
    } else {
        NodeState::Idle
    }
}

/// Reads the farm and remembers every instance it has seen, to count launches and retirements.
pub struct Observer {
    fleet: Ec2Fleet,
    masters: Vec<JenkinsClient>,
    seen: BTreeSet<String>,
    gone: BTreeSet<String>,
    /// Each master's agent nodes at its last successful read: a master that cannot be read
    /// (answering 500, or down) is shown as it was last seen rather than as all booting.
    last_nodes: Vec<BTreeMap<String, NodeState>>,
}

impl Observer {
    pub fn new(fleet: Ec2Fleet, masters: Vec<JenkinsClient>) -> Observer {
        Observer {
            fleet,
            last_nodes: vec![BTreeMap::new(); masters.len()],
            masters,
            seen: BTreeSet::new(),
            gone: BTreeSet::new(),
        }
    }

    /// Instances of the stack ever seen.
    pub fn launched(&self) -> usize {
        self.seen.len()
    }

    /// Instances seen terminated (or on their way).
    pub fn retired(&self) -> usize {
        self.gone.len()
    }

    /// The instances seen terminated.
    pub fn gone(&self) -> impl Iterator<Item = &String> {
        self.gone.iter()
    }

    pub async fn observe(&mut self, stats: &[SimStats]) -> Seen {
        let mut seen = Seen {
            builds_completed: stats.iter().map(|s| s.builds_completed).sum(),
            ..Seen::default()
        };
        for sim in stats {
            for (label, queued) in &sim.queue_by_label {
                seen.labels.entry(label.clone()).or_default().queued += queued;
            }
        }
        let mut nodes: BTreeMap<String, NodeState> = BTreeMap::new();
        for (master, last) in self.masters.iter().zip(self.last_nodes.iter_mut()) {
            match master.computers().await {
                Ok(set) => {
                    *last = set
                        .computer
                        .iter()
                        .filter(|c| is_instance_id(&c.display_name))
                        .map(|c| (c.display_name.clone(), node_state(c)))
                        .collect();
                }
                Err(_) => seen.unreadable += 1,
            }
            nodes.extend(last.iter().map(|(name, state)| (name.clone(), *state)));
        }
        seen.agent_nodes = nodes.len();
        let agents = match self.fleet.agents().await {
            Ok(agents) => agents,
            Err(_) => {
                seen.unreadable += 1;
                return seen;
            }
        };
        for agent in agents {
            self.seen.insert(agent.id.clone());
            if agent.state == AgentState::Gone {
                self.gone.insert(agent.id.clone());
                continue;
            }
            seen.live_instances += 1;
            *seen
                .per_master_label
                .entry((
                    agent.master.clone().unwrap_or_default(),
                    agent.label.clone().unwrap_or_default(),
                ))
                .or_default() += 1;
            let line = seen
                .labels
                .entry(agent.label.clone().unwrap_or_default())
                .or_default();
            match nodes.get(&agent.id) {
                Some(NodeState::Busy) => {
                    line.busy += 1;
                    seen.connected.push((agent.id.clone(), true));
                }
                Some(NodeState::Idle) => {
                    line.idle += 1;
                    seen.connected.push((agent.id.clone(), false));
                }
                Some(NodeState::TakenOffline) => line.offline += 1,
                Some(NodeState::NotConnected) | None => line.booting += 1,
            }
        }
        seen
    }
}
