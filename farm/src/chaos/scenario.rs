//! One chaos run's script, drawn from its seed: which jobs arrive when, which faults start on
//! which tick, when a second scaler overlaps the first, when a tick is cut off. Pure and
//! deterministic (a seeded `StdRng`), so a failing seed replays the same script; what the
//! farm's real timing makes of it (which request a fault hits) can still vary between replays.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::custom_resource::RequestFault;
use super::events::SpotPlan;
use crate::aws_proxy::{AwsFault, FaultRule};
use crate::jenkins::{Budget, Fault};

/// The masters of every run.
pub const MASTERS: [&str; 2] = ["master-a", "master-b"];
/// The agent templates (labels) of every run.
pub const LABELS: [&str; 2] = ["docker", "docker-large"];
/// Ticks during which faults are injected; then the faults stop.
pub const FAULT_TICKS: u32 = 40;

/// A job to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    pub name: String,
    pub master: usize,
    pub label: &'static str,
    pub duration: Duration,
}

/// Something the harness does at the start of a tick.
#[derive(Debug, Clone)]
pub enum Action {
    Submit(JobPlan),
    /// A Jenkins fault on one master, for a while.
    Jenkins {
        master: usize,
        fault: Fault,
    },
    /// An AWS fault rule in the proxy, for a number of requests.
    Aws(FaultRule),
    /// Fresh instances stay out of DescribeInstances this long (zero: off again).
    HideNewInstances(Duration),
    /// This tick of the acting scaler is dropped after this long, mid-act; its invocation
    /// dies without releasing the lease and the next one starts cold.
    CutTick(Duration),
    /// A second invocation runs beside the first for this many ticks.
    Overlap(u32),
    /// The first invocation ends normally (releases the lease); `cold`: the next one starts
    /// in a new process, without the scaler's memory.
    EndInvocation {
        cold: bool,
    },
    /// EC2 reclaims a connected agent: warning, notice, termination, events on their way.
    Spot(SpotPlan),
}

/// Boot faults drawn per launched instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootFaultRates {
    pub never_connects: f64,
    pub dies_mid_build: f64,
    pub connects_late: f64,
}

/// The whole script of one run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    /// `(tick, action)` in tick order.
    pub actions: Vec<(u32, Action)>,
    pub boot_faults: BootFaultRates,
    /// Custom resource requests played beside the farm, one fault each.
    pub custom_resource_requests: Vec<RequestFault>,
}

impl Scenario {
    /// The script of `seed`.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut actions = Vec::new();
        let jobs = rng.random_range(4..=10);
        for n in 0..jobs {
            let tick = rng.random_range(0..FAULT_TICKS * 3 / 4);
            let job = JobPlan {
                name: format!("job-{n}"),
                master: rng.random_range(0..MASTERS.len()),
                label: LABELS[usize::from(rng.random_bool(0.35))],
                duration: Duration::from_millis(rng.random_range(100..=900)),
            };
            actions.push((tick, Action::Submit(job)));
        }
        for _ in 0..rng.random_range(1..=4) {
            let tick = rng.random_range(0..FAULT_TICKS);
            let master = rng.random_range(0..MASTERS.len());
            actions.push((
                tick,
                Action::Jenkins {
                    master,
                    fault: jenkins_fault(&mut rng),
                },
            ));
        }
        for _ in 0..rng.random_range(1..=5) {
            let tick = rng.random_range(0..FAULT_TICKS);
            actions.push((tick, Action::Aws(aws_rule(&mut rng))));
        }
        if rng.random_bool(0.5) {
            let start = rng.random_range(0..FAULT_TICKS / 2);
            let hide = Duration::from_millis(rng.random_range(200..=1_000));
            actions.push((start, Action::HideNewInstances(hide)));
            let end = rng.random_range(start + 1..=FAULT_TICKS);
            actions.push((end, Action::HideNewInstances(Duration::ZERO)));
        }
        for _ in 0..rng.random_range(0..=2) {
            let tick = rng.random_range(1..FAULT_TICKS);
            let after = Duration::from_millis(rng.random_range(2..=60));
            actions.push((tick, Action::CutTick(after)));
        }
        for _ in 0..rng.random_range(0..=2) {
            let tick = rng.random_range(0..FAULT_TICKS);
            actions.push((tick, Action::Overlap(rng.random_range(3..=12))));
        }
        if rng.random_bool(0.5) {
            let tick = rng.random_range(1..FAULT_TICKS);
            let cold = rng.random_bool(0.5);
            actions.push((tick, Action::EndInvocation { cold }));
        }
        actions.sort_by_key(|(tick, _)| *tick);
        let mut rate = || {
            if rng.random_bool(0.6) {
                rng.random_range(0.05..0.2)
            } else {
                0.0
            }
        };
        let boot_faults = BootFaultRates {
            never_connects: rate(),
            dies_mid_build: rate(),
            connects_late: rate(),
        };
        // Drawn from a stream of their own, so that adding them left the older faults'
        // scripts of every seed as they were.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0e7e_0b5e);
        for _ in 0..rng.random_range(0..=2) {
            let tick = rng.random_range(2..FAULT_TICKS - 10);
            actions.push((tick, Action::Spot(SpotPlan::draw(&mut rng))));
        }
        actions.sort_by_key(|(tick, _)| *tick);
        let custom_resource_requests = (0..rng.random_range(1..=3))
            .map(|_| RequestFault::draw(&mut rng))
            .collect();
        Scenario {
            seed,
            actions,
            boot_faults,
            custom_resource_requests,
        }
    }

    /// The jobs of the run.
    pub fn jobs(&self) -> Vec<&JobPlan> {
        self.actions
            .iter()
            .filter_map(|(_, action)| match action {
                Action::Submit(job) => Some(job),
                _ => None,
            })
            .collect()
    }
}

fn jenkins_fault(rng: &mut StdRng) -> Fault {
    let budget = Budget::for_duration(Duration::from_millis(rng.random_range(100..=800)));
    match rng.random_range(0..5) {
        0 => Fault::ServerError {
            status: [500, 502, 503][rng.random_range(0..3)],
            budget,
        },
        1 => Fault::LoginPage { budget },
        2 => Fault::Slow {
            delay_ms: rng.random_range(50..=400),
            budget,
        },
        3 => Fault::TruncatedJson { budget },
        _ => Fault::Restart {
            down_ms: Some(rng.random_range(100..=400)),
        },
    }
}

fn aws_rule(rng: &mut StdRng) -> FaultRule {
    let times = rng.random_range(1..=6);
    match rng.random_range(0..6) {
        0 => FaultRule::on(
            ["DescribeInstances", "RunInstances", "TerminateInstances"][rng.random_range(0..3)],
            AwsFault::Throttle,
        ),
        1 => FaultRule::on(
            [
                "DescribeInstances",
                "RunInstances",
                "TerminateInstances",
                "PutParameter",
            ][rng.random_range(0..4)],
            AwsFault::ServerError,
        ),
        2 => FaultRule::on("RunInstances", AwsFault::InsufficientCapacity).with_param(
            "InstanceType",
            ["c6i.large", "c6i.2xlarge"][rng.random_range(0..2)],
        ),
        3 | 4 => FaultRule::on("RunInstances", AwsFault::LoseResponse),
        _ => FaultRule::on("DeleteParameter", AwsFault::ServerError),
    }
    .times(times)
}

/// A short name of a Jenkins fault, for the fault table.
pub fn jenkins_fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::ServerError { .. } => "jenkins_5xx",
        Fault::LoginPage { .. } => "jenkins_login_page",
        Fault::Slow { .. } => "jenkins_slow",
        Fault::TruncatedJson { .. } => "jenkins_half_written_json",
        Fault::Restart { .. } => "jenkins_restart",
        Fault::DropAgents { .. } => "jenkins_drop_agents",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_script() {
        let one = Scenario::from_seed(42);
        let again = Scenario::from_seed(42);
        assert_eq!(format!("{:?}", one.actions), format!("{:?}", again.actions));
        assert_eq!(one.boot_faults, again.boot_faults);
        let other = Scenario::from_seed(43);
        assert_ne!(format!("{:?}", one.actions), format!("{:?}", other.actions));
    }

    #[test]
    fn scripts_stay_within_the_fault_phase_and_have_jobs() {
        for seed in 0..200 {
            let scenario = Scenario::from_seed(seed);
            assert!((4..=10).contains(&scenario.jobs().len()));
            assert!(scenario.actions.iter().all(|(t, _)| *t <= FAULT_TICKS));
            assert!(scenario.actions.windows(2).all(|w| w[0].0 <= w[1].0));
            let hides: Vec<&Duration> = scenario
                .actions
                .iter()
                .filter_map(|(_, a)| match a {
                    Action::HideNewInstances(d) => Some(d),
                    _ => None,
                })
                .collect();
            assert!(hides.is_empty() || hides.last() == Some(&&Duration::ZERO));
        }
    }
}
