//! Carries out the fault schedule of [`super::faults`] against the running farm, and keeps
//! what the accounting at the end needs: which instances the faults took, what the killed
//! master had when it died, how recovery answered.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use longshore::adapters::aws::ec2::{AgentState, Ec2Fleet};
use serde_json::Value;

use super::faults::{
    FaultKind, FaultRecord, MASTER_DOWN_FOR, MASTER_ERRORS_FOR, SPOT_NOTICE, StepAction,
    ZONE_OUT_FOR, spot_victims,
};
use super::observe::Seen;
use super::trace::TraceJob;
use crate::aws_proxy::{AwsFault, AwsProxy, FaultRule};
use crate::events::{self, EventBus, TaskStop};
use crate::front::Front;
use crate::jenkins::{Budget, Fault, RunningSim, SimConfig, SimStats, Simulator};
use crate::lambda::{Invocation, LambdaFarm};
use crate::moto::REGION;

/// The master that is killed (index into the demo's masters).
pub const KILLED: usize = 1;
/// The master that answers 500 for a while.
const ERRORING: usize = 0;
/// The ECS names the master-stopped event carries (the demo's masters are simulators, not ECS
/// tasks: recovery is told these names and only matches events against them).
pub const CLUSTER: &str = "longshore-demo-masters";
pub const MASTER_ASG: &str = "longshore-demo-master-hosts";
/// How often the farm delivers an event recovery answered with an error (EventBridge retries).
const DELIVERY_ATTEMPTS: usize = 3;

/// What the farm hands the injector for one step.
pub struct FarmHandles<'a> {
    pub lambdas: &'a LambdaFarm,
    pub ec2: &'a aws_sdk_ec2::Client,
    pub fleet: &'a Ec2Fleet,
    pub proxy: &'a AwsProxy,
    /// The masters' load balancer: a killed master's target is taken out until it is back.
    pub front: &'a Front,
    pub sims: &'a mut [Option<RunningSim>],
    pub masters: &'a [&'static str],
    pub seen: &'a Seen,
}

/// The faults' state and outcome.
#[derive(Default)]
pub struct Injector {
    pub records: Vec<FaultRecord>,
    /// Instances the Spot interruption took.
    pub interrupted: BTreeSet<String>,
    /// Instances of the killed master alive when it died (recovery retires them).
    pub of_killed_master: BTreeSet<String>,
    /// The killed master's counters at its death.
    pub killed_stats: Vec<SimStats>,
    /// Builds triggered on the killed master while it was down, triggered again on its
    /// replacement.
    pub deferred: Vec<TraceJob>,
    pub events_delivered: usize,
    /// Deliveries recovery answered with an error or did not answer (each is retried).
    pub event_failures: usize,
    /// The killed master's address and name while it is down.
    down: Option<(SocketAddr, String)>,
    /// The agents' subnets, one per zone; the fault takes the least loaded one.
    subnets: Vec<String>,
    zone_subnet: String,
    speed: f64,
    /// The masters' API token (a replacement master gets the same).
    token: String,
}

impl Injector {
    pub fn new(subnets: Vec<String>, speed: f64, token: String) -> Injector {
        Injector {
            subnets,
            speed: speed.max(0.01),
            token,
            ..Injector::default()
        }
    }

    /// Whether master `index` is down (its builds must wait to be triggered).
    pub fn is_down(&self, index: usize) -> bool {
        index == KILLED && self.down.is_some()
    }

    /// Does one step; returns the line to announce.
    pub async fn step(&mut self, action: StepAction, farm: FarmHandles<'_>, now_s: f64) -> String {
        match action {
            StepAction::SpotWarning => self.spot_warning(&farm, now_s).await,
            StepAction::SpotTermination => self.spot_termination(&farm).await,
            StepAction::MasterErrorsStart => self.master_errors(&farm, now_s),
            StepAction::ZoneOutStart => self.zone_out(&farm, now_s).await,
            StepAction::ZoneOutEnd => {
                farm.proxy.clear_rules();
                self.close(FaultKind::ZoneOutOfCapacity, now_s);
                format!("zone of subnet {} has capacity again", self.zone_subnet)
            }
            StepAction::MasterKill => self.kill_master(farm, now_s).await,
            StepAction::MasterReplace => self.replace_master(farm, now_s).await,
        }
    }

    fn wall(&self, trace: Duration) -> Duration {
        trace.div_f64(self.speed)
    }

    fn open(&mut self, kind: FaultKind, now_s: f64, until_s: Option<f64>, detail: String) {
        self.records.push(FaultRecord {
            at_s: now_s,
            until_s,
            kind,
            detail,
        });
    }

    fn close(&mut self, kind: FaultKind, now_s: f64) {
        if let Some(record) = self.records.iter_mut().rev().find(|r| r.kind == kind) {
            record.until_s = Some(now_s);
        }
    }

    async fn spot_warning(&mut self, farm: &FarmHandles<'_>, now_s: f64) -> String {
        let victims = spot_victims(&farm.seen.connected, 2);
        if victims.is_empty() {
            self.open(
                FaultKind::SpotInterruption,
                now_s,
                None,
                "no connected agent to interrupt".to_string(),
            );
            return "Spot interruption skipped: no agent is connected".to_string();
        }
        for id in &victims {
            self.deliver(farm.lambdas, &events::spot_interruption_warning(id))
                .await;
        }
        self.interrupted.extend(victims.iter().cloned());
        let detail = format!(
            "Spot interruption warning for {}; terminated {:.0} s later",
            victims.join(", "),
            self.wall(SPOT_NOTICE).as_secs_f64()
        );
        self.open(
            FaultKind::SpotInterruption,
            now_s,
            Some(now_s + self.wall(SPOT_NOTICE).as_secs_f64()),
            detail.clone(),
        );
        format!("{detail} (the two-minute notice, compressed); warnings delivered to recovery")
    }

    async fn spot_termination(&mut self, farm: &FarmHandles<'_>) -> String {
        let ids: Vec<String> = self.interrupted.iter().cloned().collect();
        if ids.is_empty() {
            return "no interrupted agent to terminate".to_string();
        }
        // EC2 reclaiming the capacity: the farm terminates them in moto, as AWS would.
        if let Err(err) = farm
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_ec2::error::DisplayErrorContext(err), "cannot terminate");
        }
        for id in &ids {
            self.deliver(farm.lambdas, &events::ec2_state_change(id, "terminated"))
                .await;
        }
        format!(
            "EC2 reclaimed {}; `terminated` state changes delivered to recovery",
            ids.join(", ")
        )
    }

    fn master_errors(&mut self, farm: &FarmHandles<'_>, now_s: f64) -> String {
        let lasts = self.wall(MASTER_ERRORS_FOR);
        let name = farm.masters[ERRORING];
        if let Some(sim) = &farm.sims[ERRORING] {
            sim.sim().inject(Fault::ServerError {
                status: 500,
                budget: Budget::for_duration(lasts),
            });
        }
        let detail = format!(
            "{name} answers HTTP 500 to every API request for {:.0} s",
            lasts.as_secs_f64()
        );
        self.open(
            FaultKind::MasterErrors,
            now_s,
            Some(now_s + lasts.as_secs_f64()),
            detail.clone(),
        );
        detail
    }

    async fn zone_out(&mut self, farm: &FarmHandles<'_>, now_s: f64) -> String {
        // The scaler launches into the least loaded subnet first: take that zone's capacity,
        // so the next launches meet the fault.
        let agents = farm.fleet.agents().await.unwrap_or_default();
        let load = |subnet: &String| {
            agents
                .iter()
                .filter(|a| a.state != AgentState::Gone && a.subnet_id.as_ref() == Some(subnet))
                .count()
        };
        self.zone_subnet = self
            .subnets
            .iter()
            .min_by_key(|subnet| load(subnet))
            .cloned()
            .unwrap_or_default();
        farm.proxy.add_rule(
            FaultRule::on("RunInstances", AwsFault::InsufficientCapacity)
                .with_param("SubnetId", &self.zone_subnet),
        );
        let lasts = self.wall(ZONE_OUT_FOR).as_secs_f64();
        let detail = format!(
            "InsufficientInstanceCapacity for every RunInstances in subnet {} for {lasts:.0} s",
            self.zone_subnet
        );
        self.open(FaultKind::ZoneOutOfCapacity, now_s, None, detail.clone());
        detail
    }

    async fn kill_master(&mut self, farm: FarmHandles<'_>, now_s: f64) -> String {
        let name = farm.masters[KILLED];
        let Some(running) = farm.sims[KILLED].take() else {
            return format!("{name} is already down");
        };
        match farm.fleet.agents().await {
            Ok(agents) => self.of_killed_master.extend(
                agents
                    .into_iter()
                    .filter(|a| a.master.as_deref() == Some(name) && a.state != AgentState::Gone)
                    .map(|a| a.id),
            ),
            Err(err) => tracing::warn!(error = %err, "cannot list the killed master's agents"),
        }

        let addr = running.addr();
        let sim = running.sim().clone();
        // ECS deregisters the stopped task from its target group: the ALB answers 503.
        farm.front.deregister(&super::master_host(name));
        // Stop listening first, then cut the agents, so they cannot reconnect to the dying
        // master; the graceful shutdown ends once their connections are closed.
        let stopping = tokio::spawn(running.shutdown());
        tokio::time::sleep(Duration::from_millis(200)).await;
        sim.inject(Fault::DropAgents { names: None });
        let _ = stopping.await;
        let stats = sim.stats();
        let summary = format!(
            "{name} killed: {} builds running and {} queued are gone with it",
            stats.builds_lost.len(),
            stats.queue_length
        );
        self.killed_stats.push(stats);
        self.down = Some((addr, name.to_string()));
        let stop = events::ecs_task_stopped(&TaskStop {
            cluster_arn: format!("arn:aws:ecs:{REGION}:{}:cluster/{CLUSTER}", events::ACCOUNT),
            task_arn: format!(
                "arn:aws:ecs:{REGION}:{}:task/{CLUSTER}/{}",
                events::ACCOUNT,
                now_s as u64
            ),
            group: format!("service:{name}"),
            container_instance_arn: None,
            stop_code: "EssentialContainerExited".to_string(),
            stopped_reason: "Essential container in task exited".to_string(),
            container_name: "jenkins".to_string(),
            exit_code: Some(137),
        });
        self.deliver(farm.lambdas, &stop).await;
        let down = self.wall(MASTER_DOWN_FOR).as_secs_f64();
        self.open(
            FaultKind::MasterKilled,
            now_s,
            None,
            format!(
                "{summary}; ECS task STOPPED delivered to recovery, which retires its {} agents",
                self.of_killed_master.len()
            ),
        );
        format!(
            "{summary}; ECS task STOPPED delivered to recovery; a fresh {name} starts in {down:.0} s"
        )
    }

    async fn replace_master(&mut self, farm: FarmHandles<'_>, now_s: f64) -> String {
        let Some((addr, name)) = self.down.clone() else {
            return "no master is down".to_string();
        };
        let config = SimConfig {
            name: name.clone(),
            token: self.token.clone(),
            quiet_period: Duration::ZERO,
            ..SimConfig::default()
        };
        // The same address, so the scaler's and recovery's master list still holds (their
        // settings are read once per cold start, as on AWS). A port still held by the dying
        // server is retried for a few seconds.
        let mut started = None;
        for _ in 0..20 {
            match Simulator::start(config.clone(), addr).await {
                Ok(sim) => {
                    started = Some(sim);
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, %addr, "cannot rebind the master's address yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let Some(sim) = started else {
            return format!(
                "{name} could not be restarted on {addr}: it stays down for the rest of the run"
            );
        };
        let deferred = std::mem::take(&mut self.deferred);
        for job in &deferred {
            super::submit(&sim, job, self.speed);
        }
        farm.front.register(&super::master_host(&name), &sim.url());
        farm.sims[KILLED] = Some(sim);
        self.down = None;
        self.close(FaultKind::MasterKilled, now_s);
        format!(
            "a fresh, empty {name} answers on {addr} (same URL); {} builds triggered while it \
             was down are triggered again",
            deferred.len()
        )
    }

    /// Delivers an event to recovery, retrying an error the way EventBridge does.
    async fn deliver(&mut self, lambdas: &LambdaFarm, event: &Value) {
        let bus = EventBus::new(lambdas, "recovery");
        for attempt in 1..=DELIVERY_ATTEMPTS {
            self.events_delivered += 1;
            match bus.deliver(event).await {
                Ok(Invocation::Ok(_)) => return,
                Ok(Invocation::Failed {
                    error_type,
                    error_message,
                }) => {
                    tracing::warn!(attempt, error_type, error_message, "recovery failed");
                }
                Err(err) => tracing::warn!(attempt, error = %err, "recovery not invoked"),
            }
            self.event_failures += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
