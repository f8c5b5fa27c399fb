//! The faults `make demo` injects midway, at fixed fractions of the trace, and what they did.
//!
//! - **Spot interruption** of two connected agents (busy ones first): the farm delivers EC2's
//!   `Spot Instance Interruption Warning` for each to the real recovery function, waits out the
//!   two-minute notice (compressed by `SPEED`, like every duration here), terminates the instances in moto (EC2
//!   reclaiming them) and delivers their `terminated` state-change events. The booter closes
//!   their connections when it sees them terminated, so their running builds are lost.
//! - **A master answering 500** to every Jenkins API request for a while (simulator fault).
//! - **A zone out of capacity**: the scaler talks to moto through an [`crate::aws_proxy`] that
//!   answers `InsufficientInstanceCapacity` to every `RunInstances` in one subnet for a while.
//! - **A master killed**: master-b's simulator stops (its agents' connections are cut, its
//!   running builds and queue are gone), the farm delivers an `ECS Task State Change` STOPPED
//!   for its service to recovery, which retires its agents; a fresh, empty master-b comes up on
//!   the same address a little later, as ECS would start a replacement task. Builds triggered
//!   on master-b while it is down are triggered again once it answers.
//!
//! Builds lost to these faults are expected and counted apart from builds lost on an agent no
//! fault touched, which only the scaler could have killed.

use std::time::Duration;

use serde::Serialize;

/// What was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    SpotInterruption,
    MasterErrors,
    ZoneOutOfCapacity,
    MasterKilled,
}

impl FaultKind {
    /// Upper-case words for the timeline's legend.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::SpotInterruption => "TWO AGENTS SPOT-INTERRUPTED",
            FaultKind::MasterErrors => "MASTER-A ANSWERS 500",
            FaultKind::ZoneOutOfCapacity => "ONE ZONE OUT OF CAPACITY",
            FaultKind::MasterKilled => "MASTER-B KILLED, THEN REPLACED",
        }
    }
}

/// One injected fault, in wall seconds from the start of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultRecord {
    pub at_s: f64,
    /// When it ended, for faults that last.
    pub until_s: Option<f64>,
    pub kind: FaultKind,
    pub detail: String,
}

/// One step of the schedule, due at `at` (wall time from the start of the replay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: StepAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// Warn recovery about two agents; their termination follows [`SPOT_NOTICE`] later.
    SpotWarning,
    SpotTermination,
    MasterErrorsStart,
    ZoneOutStart,
    ZoneOutEnd,
    MasterKill,
    MasterReplace,
}

/// Where each fault starts, as a fraction of the trace's span (its last arrival).
/// The first commit wave is the busiest time, when a crash or an interruption hurts most.
const AT_FRACTION: [(f64, StepAction); 4] = [
    (0.15, StepAction::SpotWarning),
    (0.28, StepAction::MasterKill),
    (0.45, StepAction::MasterErrorsStart),
    (0.62, StepAction::ZoneOutStart),
];
/// EC2's two-minute Spot notice (trace seconds).
pub const SPOT_NOTICE: Duration = Duration::from_secs(120);
/// How long master-a answers 500 (trace seconds).
pub const MASTER_ERRORS_FOR: Duration = Duration::from_secs(150);
/// How long the zone has no capacity (trace seconds).
pub const ZONE_OUT_FOR: Duration = Duration::from_secs(250);
/// How long master-b is down before its replacement task answers (trace seconds): ECS
/// places a new task and Jenkins starts.
pub const MASTER_DOWN_FOR: Duration = Duration::from_secs(80);

/// The steps for a trace spanning `span` (trace time) replayed at `speed`, in time order.
pub fn schedule(span: Duration, speed: f64) -> Vec<Step> {
    let wall = |trace: Duration| trace.div_f64(speed.max(0.01));
    let mut steps = Vec::new();
    for (fraction, action) in AT_FRACTION {
        let at = wall(span.mul_f64(fraction));
        steps.push(Step { at, action });
        let follow = match action {
            StepAction::SpotWarning => Some((SPOT_NOTICE, StepAction::SpotTermination)),
            StepAction::ZoneOutStart => Some((ZONE_OUT_FOR, StepAction::ZoneOutEnd)),
            StepAction::MasterKill => Some((MASTER_DOWN_FOR, StepAction::MasterReplace)),
            _ => None,
        };
        if let Some((after, next)) = follow {
            steps.push(Step {
                at: at + wall(after),
                action: next,
            });
        }
    }
    steps.sort_by_key(|step| step.at);
    steps
}

/// Picks up to `count` agents to interrupt among `(id, busy)` connected agents: busy ones
/// first (the harder case), then by id, so a run is reproducible given the same farm state.
pub fn spot_victims(connected: &[(String, bool)], count: usize) -> Vec<String> {
    let mut candidates: Vec<&(String, bool)> = connected.iter().collect();
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    candidates
        .into_iter()
        .take(count)
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_scheduled_in_order_and_ends_after_it_starts() {
        let steps = schedule(Duration::from_secs(60), 1.0);
        assert!(steps.windows(2).all(|pair| pair[0].at <= pair[1].at));
        let at = |action| {
            steps
                .iter()
                .find(|s| s.action == action)
                .map(|s| s.at)
                .expect("scheduled")
        };
        assert!(at(StepAction::SpotWarning) < at(StepAction::SpotTermination));
        assert!(at(StepAction::ZoneOutStart) < at(StepAction::ZoneOutEnd));
        assert!(at(StepAction::MasterKill) < at(StepAction::MasterReplace));
        assert!(at(StepAction::MasterErrorsStart) < Duration::from_secs(60));
        // Twice the speed, half the wall time.
        let fast = schedule(Duration::from_secs(60), 2.0);
        assert_eq!((fast[0].at * 2).as_millis(), steps[0].at.as_millis());
    }

    #[test]
    fn busy_agents_are_interrupted_first() {
        let connected = vec![
            ("i-a".to_string(), false),
            ("i-b".to_string(), true),
            ("i-c".to_string(), false),
        ];
        assert_eq!(spot_victims(&connected, 2), vec!["i-b", "i-a"]);
        assert_eq!(spot_victims(&connected[..1], 2), vec!["i-a"]);
    }
}
