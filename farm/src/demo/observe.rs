//! What the demo shows: the farm as an operator would see it, read from the outside (EC2's
//! instances of the stack, each master's computers, the simulators' queues), never from the
//! scaler's own reports.

use std::collections::{BTreeMap, BTreeSet};

use longshore::adapters::aws::ec2::{AgentState, Ec2Fleet};
use longshore::adapters::jenkins::JenkinsClient;
use longshore::domain::scaling::is_instance_id;

use crate::jenkins::SimStats;

/// Agents and queue of one label, summed over the masters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LabelLine {
    pub queued: usize,
    pub booting: usize,
    pub idle: usize,
    pub busy: usize,
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
}

/// Reads the farm and remembers every instance it has seen, to count launches and retirements.
pub struct Observer {
    fleet: Ec2Fleet,
    masters: Vec<JenkinsClient>,
    seen: BTreeSet<String>,
    gone: BTreeSet<String>,
}

impl Observer {
    pub fn new(fleet: Ec2Fleet, masters: Vec<JenkinsClient>) -> Observer {
        Observer {
            fleet,
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
        let mut nodes: BTreeMap<String, (bool, u32)> = BTreeMap::new();
        for master in &self.masters {
            match master.computers().await {
                Ok(set) => {
                    for computer in set
                        .computer
                        .iter()
                        .filter(|c| is_instance_id(&c.display_name))
                    {
                        nodes.insert(
                            computer.display_name.clone(),
                            (!computer.offline, computer.busy_executors()),
                        );
                    }
                }
                Err(_) => seen.unreadable += 1,
            }
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
            let line = seen
                .labels
                .entry(agent.label.clone().unwrap_or_default())
                .or_default();
            match nodes.get(&agent.id) {
                Some((true, busy)) if *busy > 0 => line.busy += 1,
                Some((true, _)) => line.idle += 1,
                _ => line.booting += 1,
            }
        }
        seen
    }
}
