//! The demo's interim scaling driver, standing in until the queue-scaler Lambda exists.
//!
//! It talks to the farm exactly as the scaler will (Jenkins REST for queue and computers, EC2
//! RunInstances from the launch template, SSM for the agent secret) but with a deliberately
//! simple policy: launch one agent per waiting item that no idle or booting executor covers,
//! within a per-label cap; retire an agent idle longer than the idle time, safely (mark it
//! offline, read it again, delete and terminate only if it is still idle).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use longshore::adapters::aws::ec2::{AgentInstance, AgentState, Ec2Fleet, LaunchSpec};
use longshore::adapters::aws::ssm::{SsmSecrets, agent_secret_path};
use longshore::adapters::jenkins::{JenkinsClient, NewAgent};
use longshore::domain::jenkins::{Computer, ComputerSet, Queue};
use longshore::domain::queue_why::{self, Why};
use tracing::{info, warn};

/// How the driver provisions one label.
#[derive(Debug, Clone)]
pub struct LabelPolicy {
    pub label: &'static str,
    pub instance_type: &'static str,
    pub executors: u32,
    /// Most agents of this label per master.
    pub cap: usize,
}

/// A master the driver scales.
#[derive(Debug, Clone)]
pub struct Master {
    pub name: String,
    pub url: String,
    pub client: JenkinsClient,
}

/// Counters the demo reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverCounts {
    pub launched: usize,
    pub retired: usize,
    pub retirements_cancelled: usize,
    pub errors: usize,
}

/// The interim driver's state between ticks.
pub struct Driver {
    pub masters: Vec<Master>,
    pub fleet: Ec2Fleet,
    pub secrets: SsmSecrets,
    pub stack: String,
    pub subnets: Vec<String>,
    pub policies: Vec<LabelPolicy>,
    pub idle_time: Duration,
    pub counts: DriverCounts,
    idle_since: HashMap<String, Instant>,
    tick: u64,
}

impl Driver {
    #[allow(clippy::too_many_arguments)] // reason: plain wiring of the demo's parts, once
    pub fn new(
        masters: Vec<Master>,
        fleet: Ec2Fleet,
        secrets: SsmSecrets,
        stack: &str,
        subnets: Vec<String>,
        policies: Vec<LabelPolicy>,
        idle_time: Duration,
    ) -> Driver {
        Driver {
            masters,
            fleet,
            secrets,
            stack: stack.to_string(),
            subnets,
            policies,
            idle_time,
            counts: DriverCounts::default(),
            idle_since: HashMap::new(),
            tick: 0,
        }
    }

    /// One observe → decide → act round over every master.
    pub async fn tick(&mut self) {
        self.tick += 1;
        let agents = match self.fleet.agents().await {
            Ok(agents) => agents,
            Err(err) => {
                warn!(error = %err, "cannot list agents; skipping this tick");
                self.counts.errors += 1;
                return;
            }
        };
        for index in 0..self.masters.len() {
            let master = self.masters[index].clone();
            let (queue, computers) = match (
                master.client.queue().await,
                master.client.computers().await,
            ) {
                (Ok(queue), Ok(computers)) => (queue, computers),
                (Err(err), _) | (_, Err(err)) => {
                    // Fail safe: an unreadable master gets no launches and no retirements.
                    warn!(master = %master.name, error = %err, "master unreadable; skipping it this tick");
                    self.counts.errors += 1;
                    continue;
                }
            };
            let ours: Vec<&AgentInstance> = agents
                .iter()
                .filter(|agent| {
                    agent.master.as_deref() == Some(master.name.as_str())
                        && agent.state != AgentState::Gone
                })
                .collect();
            self.scale_up(&master, &queue, &computers, &ours).await;
            self.retire_idle(&master, &computers, &ours).await;
        }
    }

    async fn scale_up(
        &mut self,
        master: &Master,
        queue: &Queue,
        computers: &ComputerSet,
        ours: &[&AgentInstance],
    ) {
        let waiting = waiting_per_label(queue);
        for policy in self.policies.clone() {
            let demand = waiting.get(policy.label).copied().unwrap_or(0);
            let of_label: Vec<&&AgentInstance> = ours
                .iter()
                .filter(|agent| agent.label.as_deref() == Some(policy.label))
                .collect();
            let supply: u32 = of_label
                .iter()
                .map(|agent| match computer_of(computers, &agent.id) {
                    Some(computer) if !computer.offline => {
                        computer.num_executors - computer.busy_executors()
                    }
                    Some(computer) if computer.temporarily_offline => 0,
                    _ => policy.executors, // still booting: its executors are on the way
                })
                .sum();
            let missing = demand
                .saturating_sub(supply as usize)
                .div_ceil(policy.executors as usize);
            let room = policy.cap.saturating_sub(of_label.len());
            for n in 0..missing.min(room) {
                self.launch(master, &policy, n).await;
            }
        }
    }

    async fn launch(&mut self, master: &Master, policy: &LabelPolicy, n: usize) {
        let subnet = self.subnets[(self.counts.launched + n) % self.subnets.len()].clone();
        let spec = LaunchSpec {
            master: master.name.clone(),
            master_url: master.url.clone(),
            label: policy.label.to_string(),
            instance_type: policy.instance_type.to_string(),
            subnet_id: subnet,
            client_token: format!(
                "{}-{}-{}-{}-{}",
                self.stack, master.name, policy.label, self.tick, n
            ),
        };
        let id = match self.fleet.launch(&spec).await {
            Ok(id) => id,
            Err(err) => {
                warn!(master = %master.name, label = policy.label, error = %err, "launch failed");
                self.counts.errors += 1;
                return;
            }
        };
        let agent = NewAgent {
            name: &id,
            labels: policy.label,
            executors: policy.executors,
            description: "longshore agent",
            remote_fs: "/var/lib/jenkins",
        };
        let registered = async {
            master.client.create_inbound_agent(&agent).await?;
            master.client.agent_secret(&id).await
        }
        .await;
        match registered {
            Ok(secret) => match self
                .secrets
                .put_secret(&agent_secret_path(&self.stack, &id), &secret)
                .await
            {
                Ok(()) => {
                    self.counts.launched += 1;
                    info!(master = %master.name, label = policy.label, instance = %id, "agent launched");
                }
                Err(err) => {
                    warn!(instance = %id, error = %err, "cannot store the agent secret");
                    self.counts.errors += 1;
                }
            },
            Err(err) => {
                warn!(instance = %id, error = %err, "cannot register the agent node");
                self.counts.errors += 1;
            }
        }
    }

    async fn retire_idle(
        &mut self,
        master: &Master,
        computers: &ComputerSet,
        ours: &[&AgentInstance],
    ) {
        let now = Instant::now();
        for agent in ours {
            let Some(computer) = computer_of(computers, &agent.id) else {
                continue;
            };
            if computer.offline || !computer.idle {
                self.idle_since.remove(&agent.id);
                continue;
            }
            let since = *self.idle_since.entry(agent.id.clone()).or_insert(now);
            if now.duration_since(since) >= self.idle_time {
                self.retire(master, &agent.id).await;
            }
        }
    }

    /// Safe retirement: offline first, then check again that no build slipped in.
    async fn retire(&mut self, master: &Master, id: &str) {
        if let Err(err) = master
            .client
            .toggle_offline(id, "longshore: idle, retiring")
            .await
        {
            warn!(instance = %id, error = %err, "cannot mark the agent offline; keeping it");
            self.counts.errors += 1;
            return;
        }
        let still_idle = match master.client.computers().await {
            Ok(set) => computer_of(&set, id).is_some_and(|c| c.idle && c.temporarily_offline),
            Err(_) => false,
        };
        if !still_idle {
            // A build started meanwhile (or we cannot tell): bring the agent back.
            let _ = master.client.toggle_offline(id, "").await;
            self.counts.retirements_cancelled += 1;
            return;
        }
        self.idle_since.remove(id);
        let removed = async {
            master
                .client
                .delete_node(id)
                .await
                .map_err(|err| err.to_string())?;
            self.fleet
                .terminate(&[id.to_string()])
                .await
                .map_err(|err| err.to_string())?;
            self.secrets
                .delete_secret(&agent_secret_path(&self.stack, id))
                .await
                .map_err(|err| err.to_string())
        }
        .await;
        match removed {
            Ok(()) => {
                self.counts.retired += 1;
                info!(master = %master.name, instance = %id, "agent retired");
            }
            Err(err) => {
                warn!(instance = %id, error = %err, "retirement incomplete");
                self.counts.errors += 1;
            }
        }
    }
}

/// Buildable items per label, read from their `why`; unknown texts are logged, not counted.
pub fn waiting_per_label(queue: &Queue) -> BTreeMap<String, usize> {
    let mut waiting = BTreeMap::new();
    for item in queue.items.iter().filter(|item| item.buildable) {
        match item.why.as_deref().map(queue_why::parse) {
            Some(Why::Label(label)) => *waiting.entry(label).or_insert(0) += 1,
            Some(Why::Unknown) => {
                warn!(item = item.id, why = ?item.why, "unknown queue text; not counted")
            }
            _ => {}
        }
    }
    waiting
}

fn computer_of<'a>(computers: &'a ComputerSet, name: &str) -> Option<&'a Computer> {
    computers
        .computer
        .iter()
        .find(|computer| computer.display_name == name)
}
