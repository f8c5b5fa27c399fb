//! What the recovery function makes of one EventBridge event: `classify(event, ctx)` returns
//! either the actions to take and why, or the reason the event is ignored. Pure: no AWS SDK, no
//! I/O, no clock. The shell (handler) carries the actions out; every action is idempotent by
//! construction (drain/offline/remove of something already drained/offline/gone is a no-op).
//!
//! The envelope (`detail-type`, `source`, `detail`) is read from a [`serde_json::Value`] by hand
//! rather than through `aws_lambda_events::eventbridge::EventBridgeEvent`: that struct types
//! `time` as a timestamp, and published samples carry placeholders such as
//! `"time": "yyyy-mm-ddThh:mm:ssZ"` (fixtures/SOURCES.md), and some real events have no
//! top-level `version`. Only the fields a rule needs are read; a missing or mistyped one turns
//! into `Ignored { reason }` naming it, never a panic.
//!
//! Where the rules come from:
//! - ECS task state change events, `lastStatus`, `stopCode`, `stoppedReason`, `group`
//!   ("service:<name>" for tasks started by a service): "Amazon ECS task state change events",
//!   <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html>.
//! - The stop codes (`TaskFailedToStart`, `EssentialContainerExited`, `UserInitiated`,
//!   `ServiceSchedulerInitiated`, `SpotInterruption`, `TerminationNotice`,
//!   `InfrastructureHealth`): the ECS API's `TaskStopCode` enum (e.g. boto3's
//!   <https://docs.aws.amazon.com/sdk-for-python/v4/reference/clients/ecs/enums/TaskStopCode/>)
//!   and "Amazon ECS stopped tasks error codes" in the ECS Developer Guide.
//! - `ServiceSchedulerInitiated` is split by `stoppedReason`: "Task failed ELB health checks in
//!   (target-group …)" is a real recorded reason (fixture `kx-kotlin-stopped-service-scheduler-
//!   elb-healthcheck.json`); "Task failed container health checks" and "Scaling activity
//!   initiated by (deployment ecs-svc/…)" are the scheduler's texts for the other two cases. A
//!   scheduler reason we do not recognise is treated as unexpected: an extra alert is cheap,
//!   a missed crash is not.
//! - Out of memory: exit code 137 (128 + SIGKILL, what the kernel OOM killer leaves) or
//!   "OutOfMemoryError" in a container's or the task's reason. 137 counts as OOM only when the
//!   container exited on its own (`EssentialContainerExited` or no stop code): a stop asked for
//!   by the scheduler or a user also ends in SIGKILL after the stop timeout.
//! - Auto Scaling lifecycle actions and launch/terminate activity events (`LifecycleActionToken`,
//!   `LifecycleHookName`, `AutoScalingGroupName`, `EC2InstanceId`, `StatusMessage`, `Cause`):
//!   "Amazon EC2 Auto Scaling event reference" in the Auto Scaling User Guide, samples in
//!   fixtures/aws/autoscaling-*.
//! - EC2 instance state change, Spot interruption warning, rebalance recommendation
//!   (`instance-id`, `state`, `instance-action`): the EC2 User Guide pages cited in
//!   fixtures/SOURCES.md.
//!
//! - The schedule (`Scheduled Event` from `aws.events`, the template's `rate(1 minute)` rule)
//!   re-checks the host drains still pending, so no invocation ever waits for tasks to leave.
//!
//! Not here: crash-loop detection and pending drains need history, so they are stateful; the
//! handler keeps it in DynamoDB and asks the pure [`crash_loop`] and [`drain_step`] helpers.

use serde::Serialize;
use serde_json::Value;

/// The stack's own identifiers, from config: an event about anything else is ignored.
///
/// Every field may be unknown (empty), e.g. when `explain` runs without the stack's settings;
/// the matching check is then skipped and named in [`Classification::Act::unchecked`], so a
/// classification never silently pretends to know whose resource it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Context {
    /// The masters' ECS cluster: its name or its full ARN.
    pub cluster: Option<String>,
    /// The names of the masters' ECS services (one per master).
    pub master_services: Vec<String>,
    /// The name of the masters' Auto Scaling group.
    pub master_asg: Option<String>,
}

/// What recovery makes of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Classification {
    /// Something to do.
    Act {
        kind: Kind,
        /// Why, in words an operator reads in an alert or a log line.
        cause: String,
        /// The stop's classification, for a master task stop.
        #[serde(skip_serializing_if = "Option::is_none")]
        stop: Option<StopCause>,
        /// A check the shell must make before acting (the event cannot tell).
        #[serde(skip_serializing_if = "Option::is_none")]
        only_if: Option<Condition>,
        actions: Vec<Action>,
        /// Checks skipped because the [`Context`] did not know the stack's identifiers.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unchecked: Vec<String>,
    },
    /// Nothing to do, and why: so a log shows every event was looked at.
    Ignored { reason: String },
}

/// Which rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    MasterTaskStopped,
    MasterHostTerminating,
    MasterLaunchFailed,
    AgentSpotInterruption,
    AgentRebalanceRecommendation,
    AgentInstanceGone,
    /// The every-minute schedule: re-check the host drains still pending.
    DrainCheck,
}

/// Why a master task stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum StopCause {
    /// A new deployment replaced the task.
    Deployment,
    /// The service scaled in.
    ScaleIn,
    /// The load balancer found the master unhealthy and the scheduler replaced it.
    ElbHealthCheck,
    /// The container's own health check failed and the scheduler replaced it.
    ContainerHealthCheck,
    /// Scheduler-initiated for a reason not recognised.
    SchedulerOther,
    OutOfMemory,
    FailedToStart,
    SpotInterruption,
    /// The host was going away (`TerminationNotice`).
    HostTermination,
    /// ECS found the underlying infrastructure unhealthy.
    InfrastructureHealth,
    /// Someone called StopTask.
    UserInitiated,
    /// The essential container exited on its own.
    Crash {
        exit_code: Option<i64>,
    },
    /// No or an unknown stop code.
    Unknown,
}

impl StopCause {
    /// Planned stops need no alert and leave the agents alone: the service starts the master
    /// again and a deployment or scale-in is someone's decision.
    pub fn expected(&self) -> bool {
        matches!(
            self,
            StopCause::Deployment | StopCause::ScaleIn | StopCause::UserInitiated
        )
    }
}

/// A check on the instance the event names; the event carries only the instance id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Condition {
    /// Act only when the instance carries this stack's `longshore:stack` tag.
    InstanceTaggedOurs { instance_id: String },
}

/// The lifecycle action to heartbeat and complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    pub hook_name: String,
    pub asg_name: String,
    pub action_token: String,
}

/// One thing the shell does. Each is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Alert {
        subject: String,
        message: String,
    },
    /// Retire every agent of this master (its service name): they lost their master.
    RetireMasterAgents {
        master: String,
    },
    /// Remember this unexpected stop (once per task) for crash-loop detection; the shell
    /// alerts once when the master stopped too often within the window.
    RecordStop {
        master: String,
        task_arn: String,
        /// `stoppedAt` as the event gives it (RFC 3339); the shell falls back to its clock.
        #[serde(skip_serializing_if = "Option::is_none")]
        stopped_at: Option<String>,
    },
    /// Set the ECS container instance on this host DRAINING, heartbeat the lifecycle action,
    /// complete it once no master task remains there.
    DrainHost {
        ec2_instance_id: String,
        lifecycle: Lifecycle,
    },
    /// Mark the Jenkins node (named after the instance) temporarily offline at once.
    TakeNodeOffline {
        instance_id: String,
        reason: String,
    },
    /// Delete the node and its SSM secret.
    RemoveAgent {
        instance_id: String,
    },
    Metric {
        name: String,
    },
    /// Look at every pending host drain again: complete, heartbeat or give up.
    CheckDrains,
}

/// Classifies one EventBridge event for this stack. Never panics (property-tested).
pub fn classify(event: &Value, ctx: &Context) -> Classification {
    let Some(obj) = event.as_object() else {
        return ignored("the event is not a JSON object");
    };
    let Some(detail_type) = obj.get("detail-type").and_then(Value::as_str) else {
        return ignored(
            "no string `detail-type`: not an EventBridge event (e.g. a CloudFormation \
             custom resource request or a test payload)",
        );
    };
    let source = obj.get("source").and_then(Value::as_str);
    let expected_source = match detail_type {
        "ECS Task State Change" => "aws.ecs",
        "EC2 Instance-terminate Lifecycle Action"
        | "EC2 Instance-launch Lifecycle Action"
        | "EC2 Instance Launch Unsuccessful"
        | "EC2 Instance Launch Successful"
        | "EC2 Instance Terminate Successful"
        | "EC2 Instance Terminate Unsuccessful" => "aws.autoscaling",
        "EC2 Instance State-change Notification"
        | "EC2 Spot Instance Interruption Warning"
        | "EC2 Instance Rebalance Recommendation" => "aws.ec2",
        "Scheduled Event" => "aws.events",
        other => {
            return ignored(format!(
                "detail-type {other:?} (source {}) is not one recovery handles",
                source.unwrap_or("missing")
            ));
        }
    };
    if let Some(source) = source
        && source != expected_source
    {
        return ignored(format!(
            "detail-type {detail_type:?} came from source {source:?}, not {expected_source:?}"
        ));
    }
    let Some(detail) = obj.get("detail").and_then(Value::as_object) else {
        return ignored(format!("{detail_type}: no `detail` object"));
    };
    match detail_type {
        "ECS Task State Change" => ecs_task(detail, ctx),
        "EC2 Instance-terminate Lifecycle Action" => terminate_lifecycle(detail, ctx),
        "EC2 Instance Launch Unsuccessful" => launch_unsuccessful(detail, ctx),
        "EC2 Instance State-change Notification" => instance_state(detail),
        "EC2 Spot Instance Interruption Warning" => spot_warning(detail),
        "EC2 Instance Rebalance Recommendation" => rebalance(detail),
        "Scheduled Event" => Classification::Act {
            kind: Kind::DrainCheck,
            cause: "scheduled re-check of pending master host drains".to_string(),
            stop: None,
            only_if: None,
            actions: vec![Action::CheckDrains],
            unchecked: Vec::new(),
        },
        other => ignored(format!(
            "{other}: needs nothing from recovery (only terminate lifecycle actions and \
             unsuccessful launches of the master group do)"
        )),
    }
}

/// True when at least `n` stops fall in the `window` (seconds) ending at `now` (epoch
/// seconds): a master crash-looping. Pure so the handler can keep the history wherever it likes.
pub fn crash_loop(stops: &[i64], now: i64, n: usize, window: i64) -> bool {
    n > 0
        && stops
            .iter()
            .filter(|&&t| t <= now && now.saturating_sub(t) < window)
            .count()
            >= n
}

/// What to do with a pending host drain on a re-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainStep {
    /// No master task runs on the host any more: let the termination go on.
    Complete,
    /// Tasks remain and there is time: keep the lifecycle action alive.
    Heartbeat,
    /// Tasks remain but the drain's deadline passed: let the termination go on anyway.
    GiveUp,
}

/// The next step for a drain with `running` tasks left, at `now` against `deadline` (both
/// epoch seconds).
pub fn drain_step(running: usize, now: i64, deadline: i64) -> DrainStep {
    if running == 0 {
        DrainStep::Complete
    } else if now < deadline {
        DrainStep::Heartbeat
    } else {
        DrainStep::GiveUp
    }
}

type Detail = serde_json::Map<String, Value>;

fn ignored(reason: impl Into<String>) -> Classification {
    Classification::Ignored {
        reason: reason.into(),
    }
}

fn str_field<'a>(detail: &'a Detail, key: &str) -> Option<&'a str> {
    detail.get(key).and_then(Value::as_str)
}

/// The cluster's name from its ARN (`arn:aws:ecs:region:account:cluster/NAME`) or a bare name.
fn cluster_name(arn_or_name: &str) -> &str {
    arn_or_name
        .rsplit_once(":cluster/")
        .map_or(arn_or_name, |(_, name)| name)
}

fn ecs_task(detail: &Detail, ctx: &Context) -> Classification {
    let Some(last_status) = str_field(detail, "lastStatus") else {
        return ignored("ECS Task State Change: no string `lastStatus`");
    };
    if last_status != "STOPPED" {
        return ignored(format!(
            "ECS Task State Change: lastStatus {last_status}, not a stop"
        ));
    }
    let mut unchecked = Vec::new();
    let cluster_arn = str_field(detail, "clusterArn").unwrap_or("");
    match &ctx.cluster {
        Some(ours) if cluster_name(ours) != cluster_name(cluster_arn) => {
            return ignored(format!(
                "task of cluster {cluster_arn:?}, not the masters' cluster {ours:?}"
            ));
        }
        Some(_) => {}
        None => unchecked.push("cluster: the masters' cluster is not configured".to_string()),
    }
    let group = str_field(detail, "group").unwrap_or("");
    let Some(service) = group.strip_prefix("service:") else {
        return ignored(format!(
            "task group {group:?} is not a service (\"service:<name>\"): not a master"
        ));
    };
    if ctx.master_services.is_empty() {
        unchecked.push("service: the master services are not configured".to_string());
    } else if !ctx.master_services.iter().any(|s| s == service) {
        return ignored(format!(
            "task of service {service:?}, not one of the master services {:?}",
            ctx.master_services
        ));
    }
    let (stop, why) = stop_cause(detail);
    let task = str_field(detail, "taskArn").unwrap_or("(no taskArn)");
    let cause = format!("master {service} task {task} stopped: {why}");
    let mut actions = Vec::new();
    if stop.expected() {
        actions.push(Action::Metric {
            name: "MasterTaskStoppedExpected".to_string(),
        });
    } else {
        actions.push(Action::Alert {
            subject: format!("longshore: master {service} stopped unexpectedly"),
            message: cause.clone(),
        });
        actions.push(Action::RetireMasterAgents {
            master: service.to_string(),
        });
        actions.push(Action::RecordStop {
            master: service.to_string(),
            task_arn: task.to_string(),
            stopped_at: str_field(detail, "stoppedAt").map(str::to_string),
        });
        actions.push(Action::Metric {
            name: "MasterTaskStoppedUnexpected".to_string(),
        });
    }
    Classification::Act {
        kind: Kind::MasterTaskStopped,
        cause,
        stop: Some(stop),
        only_if: None,
        actions,
        unchecked,
    }
}

/// The stop's cause and a sentence saying how it was told.
fn stop_cause(detail: &Detail) -> (StopCause, String) {
    let code = str_field(detail, "stopCode");
    let reason = str_field(detail, "stoppedReason").unwrap_or("");
    let containers: &[Value] = detail
        .get("containers")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let exit_codes: Vec<i64> = containers
        .iter()
        .filter_map(|c| c.get("exitCode").and_then(Value::as_i64))
        .collect();
    let oom_text = reason.contains("OutOfMemoryError")
        || containers.iter().any(|c| {
            c.get("reason")
                .and_then(Value::as_str)
                .is_some_and(|r| r.contains("OutOfMemoryError"))
        });
    let said = |what: &str| {
        format!(
            "{what} (stopCode {}, stoppedReason {reason:?}, exit codes {exit_codes:?})",
            code.unwrap_or("missing")
        )
    };
    if oom_text {
        return (StopCause::OutOfMemory, said("out of memory"));
    }
    match code {
        Some("TaskFailedToStart") => (StopCause::FailedToStart, said("failed to start")),
        Some("SpotInterruption") => (StopCause::SpotInterruption, said("Spot interruption")),
        Some("TerminationNotice") => (StopCause::HostTermination, said("host terminating")),
        Some("InfrastructureHealth") => (
            StopCause::InfrastructureHealth,
            said("unhealthy infrastructure"),
        ),
        Some("UserInitiated") => (StopCause::UserInitiated, said("stopped by a user")),
        Some("ServiceSchedulerInitiated") => {
            if reason.contains("ELB health checks") {
                (StopCause::ElbHealthCheck, said("failed ELB health checks"))
            } else if reason.contains("container health checks") {
                (
                    StopCause::ContainerHealthCheck,
                    said("failed container health checks"),
                )
            } else if reason.contains("deployment") {
                (StopCause::Deployment, said("replaced by a deployment"))
            } else if reason.contains("Scaling activity") {
                (StopCause::ScaleIn, said("service scale-in"))
            } else {
                (
                    StopCause::SchedulerOther,
                    said("stopped by the service scheduler for an unrecognised reason"),
                )
            }
        }
        Some("EssentialContainerExited") | None if exit_codes.contains(&137) => (
            StopCause::OutOfMemory,
            said("killed (exit 137), likely OOM"),
        ),
        Some("EssentialContainerExited") => (
            StopCause::Crash {
                // The failing container's code, not a sidecar's clean 0.
                exit_code: exit_codes
                    .iter()
                    .find(|&&c| c != 0)
                    .or(exit_codes.first())
                    .copied(),
            },
            said("the essential container exited"),
        ),
        _ => (StopCause::Unknown, said("unknown stop code")),
    }
}

fn asg_matches(asg: &str, ctx: &Context, unchecked: &mut Vec<String>) -> Result<(), String> {
    match &ctx.master_asg {
        Some(ours) if ours != asg => Err(format!(
            "Auto Scaling group {asg:?} is not the masters' group {ours:?}"
        )),
        Some(_) => Ok(()),
        None => {
            unchecked.push("asg: the masters' Auto Scaling group is not configured".to_string());
            Ok(())
        }
    }
}

fn terminate_lifecycle(detail: &Detail, ctx: &Context) -> Classification {
    let field = |key: &str| str_field(detail, key).filter(|s| !s.is_empty());
    let (Some(asg), Some(instance), Some(hook), Some(token)) = (
        field("AutoScalingGroupName"),
        field("EC2InstanceId"),
        field("LifecycleHookName"),
        field("LifecycleActionToken"),
    ) else {
        return ignored(
            "terminate lifecycle action without AutoScalingGroupName, EC2InstanceId, \
             LifecycleHookName or LifecycleActionToken",
        );
    };
    if let Some(transition) = field("LifecycleTransition")
        && transition != "autoscaling:EC2_INSTANCE_TERMINATING"
    {
        return ignored(format!(
            "terminate lifecycle action with transition {transition:?}"
        ));
    }
    let mut unchecked = Vec::new();
    if let Err(reason) = asg_matches(asg, ctx, &mut unchecked) {
        return ignored(reason);
    }
    Classification::Act {
        kind: Kind::MasterHostTerminating,
        cause: format!("master host {instance} of {asg} is terminating: drain it first"),
        stop: None,
        only_if: None,
        actions: vec![Action::DrainHost {
            ec2_instance_id: instance.to_string(),
            lifecycle: Lifecycle {
                hook_name: hook.to_string(),
                asg_name: asg.to_string(),
                action_token: token.to_string(),
            },
        }],
        unchecked,
    }
}

fn launch_unsuccessful(detail: &Detail, ctx: &Context) -> Classification {
    let Some(asg) = str_field(detail, "AutoScalingGroupName") else {
        return ignored("launch unsuccessful without AutoScalingGroupName");
    };
    let mut unchecked = Vec::new();
    if let Err(reason) = asg_matches(asg, ctx, &mut unchecked) {
        return ignored(reason);
    }
    let status = str_field(detail, "StatusMessage").unwrap_or("(no StatusMessage)");
    let why = str_field(detail, "Cause").unwrap_or("(no Cause)");
    let place = detail
        .get("Details")
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}: {v}")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let cause = format!("master host launch failed in {asg}: {status}; cause: {why} [{place}]");
    Classification::Act {
        kind: Kind::MasterLaunchFailed,
        cause: cause.clone(),
        stop: None,
        only_if: None,
        actions: vec![
            Action::Alert {
                subject: format!("longshore: master host launch failed in {asg}"),
                message: cause,
            },
            Action::Metric {
                name: "MasterLaunchFailed".to_string(),
            },
        ],
        unchecked,
    }
}

fn instance_id(detail: &Detail) -> Option<&str> {
    str_field(detail, "instance-id").filter(|s| !s.is_empty())
}

fn agent_act(kind: Kind, instance: &str, cause: String, actions: Vec<Action>) -> Classification {
    Classification::Act {
        kind,
        cause,
        stop: None,
        only_if: Some(Condition::InstanceTaggedOurs {
            instance_id: instance.to_string(),
        }),
        actions,
        unchecked: Vec::new(),
    }
}

fn instance_state(detail: &Detail) -> Classification {
    let Some(instance) = instance_id(detail) else {
        return ignored("EC2 state change without `instance-id`");
    };
    let Some(state) = str_field(detail, "state") else {
        return ignored(format!("EC2 state change of {instance} without `state`"));
    };
    if !matches!(
        state,
        "shutting-down" | "terminated" | "stopping" | "stopped"
    ) {
        return ignored(format!(
            "instance {instance} is {state}: the instance is not going away"
        ));
    }
    let reason = format!("instance {instance} is {state}");
    agent_act(
        Kind::AgentInstanceGone,
        instance,
        reason.clone(),
        vec![
            Action::TakeNodeOffline {
                instance_id: instance.to_string(),
                reason,
            },
            Action::RemoveAgent {
                instance_id: instance.to_string(),
            },
        ],
    )
}

fn spot_warning(detail: &Detail) -> Classification {
    let Some(instance) = instance_id(detail) else {
        return ignored("Spot interruption warning without `instance-id`");
    };
    let action = str_field(detail, "instance-action").unwrap_or("unknown");
    let reason = format!("Spot interruption warning for {instance} (instance-action {action})");
    agent_act(
        Kind::AgentSpotInterruption,
        instance,
        reason.clone(),
        vec![Action::TakeNodeOffline {
            instance_id: instance.to_string(),
            reason,
        }],
    )
}

fn rebalance(detail: &Detail) -> Classification {
    let Some(instance) = instance_id(detail) else {
        return ignored("rebalance recommendation without `instance-id`");
    };
    let reason = format!("EC2 rebalance recommendation for {instance}: interruption risk");
    agent_act(
        Kind::AgentRebalanceRecommendation,
        instance,
        reason.clone(),
        vec![Action::TakeNodeOffline {
            instance_id: instance.to_string(),
            reason,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/aws");

    fn ctx(asg: &str) -> Context {
        Context {
            cluster: Some("sin-web_cluster-dev".to_string()),
            master_services: vec!["sin-web_service-dev".to_string()],
            master_asg: Some(asg.to_string()),
        }
    }

    fn load(path: &Path) -> Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap()
    }

    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }

    fn kind_of(c: &Classification) -> Option<Kind> {
        match c {
            Classification::Act { kind, .. } => Some(*kind),
            Classification::Ignored { .. } => None,
        }
    }

    /// Every fixture, with the rule it must hit (None = ignored). A new fixture fails the test
    /// until it is listed here.
    #[test]
    fn every_fixture_classifies_as_expected() {
        let expected: &[(&str, &str, Option<Kind>)] = &[
            ("rust-runtime-launch-successful.json", "my-asg", None),
            (
                "rust-runtime-launch-unsuccessful.json",
                "my-auto-scaling-group",
                Some(Kind::MasterLaunchFailed),
            ),
            ("rust-runtime-terminate-successful.json", "my-asg", None),
            ("rust-runtime-terminate-unsuccessful.json", "my-asg", None),
            ("rust-runtime-launch-lifecycle-action.json", "my-asg", None),
            (
                "rust-runtime-terminate-lifecycle-action.json",
                "my-asg",
                Some(Kind::MasterHostTerminating),
            ),
            ("aws-lambda-go-cloudformation-event.json", "my-asg", None),
            ("rust-runtime-create-request.json", "my-asg", None),
            ("rust-runtime-delete-request.json", "my-asg", None),
            ("rust-runtime-provider-create-request.json", "my-asg", None),
            ("rust-runtime-provider-delete-request.json", "my-asg", None),
            ("rust-runtime-provider-response.json", "my-asg", None),
            ("rust-runtime-provider-update-request.json", "my-asg", None),
            ("rust-runtime-response.json", "my-asg", None),
            ("rust-runtime-update-request.json", "my-asg", None),
            ("awsdocs-ec2-state-pending-no-version.json", "my-asg", None),
            (
                "awsdocs-ec2-rebalance-recommendation.json",
                "my-asg",
                Some(Kind::AgentRebalanceRecommendation),
            ),
            (
                "awsdocs-ec2-spot-interruption-warning.json",
                "my-asg",
                Some(Kind::AgentSpotInterruption),
            ),
            (
                "aws-lambda-go-ecs-container-instance-state-change.json",
                "my-asg",
                None,
            ),
            (
                "aws-lambda-dotnet-ecs-task-state-change-running-fargate.json",
                "my-asg",
                None,
            ),
            (
                "kx-kotlin-stopped-service-scheduler-elb-healthcheck.json",
                "my-asg",
                Some(Kind::MasterTaskStopped),
            ),
            (
                "rust-runtime-eventbridge-schedule.json",
                "my-asg",
                Some(Kind::DrainCheck),
            ),
        ];
        let mut files = Vec::new();
        walk(Path::new(FIXTURES), &mut files);
        assert!(files.len() >= expected.len(), "fixtures missing: {files:?}");
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            let (_, asg, want) = expected
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap_or_else(|| panic!("no expectation for fixture {name}"));
            let got = classify(&load(&file), &ctx(asg));
            assert_eq!(kind_of(&got), *want, "{name}: {got:?}");
            // With no context at all, every fixture still classifies (the checks are skipped).
            let _ = classify(&load(&file), &Context::default());
        }
    }

    fn kx() -> Value {
        load(
            &Path::new(FIXTURES).join(
                "ecs-task-state-change/kx-kotlin-stopped-service-scheduler-elb-healthcheck.json",
            ),
        )
    }

    fn stop_of(event: &Value) -> Classification {
        classify(event, &ctx("my-asg"))
    }

    fn with(mut event: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
        f(event["detail"].as_object_mut().unwrap());
        event
    }

    #[test]
    fn elb_health_check_alerts_and_retires() {
        match stop_of(&kx()) {
            Classification::Act {
                stop,
                actions,
                cause,
                unchecked,
                ..
            } => {
                assert_eq!(stop, Some(StopCause::ElbHealthCheck));
                assert!(cause.contains("ELB health checks"), "{cause}");
                assert!(actions.contains(&Action::RetireMasterAgents {
                    master: "sin-web_service-dev".into()
                }));
                assert!(actions.iter().any(|a| matches!(a, Action::Alert { .. })));
                assert!(unchecked.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    fn stop_cause_of(event: &Value) -> Option<StopCause> {
        match stop_of(event) {
            Classification::Act { stop, .. } => stop,
            Classification::Ignored { reason } => panic!("ignored: {reason}"),
        }
    }

    #[test]
    fn stop_variants() {
        let set = |code: &str, reason: &str, exit: i64| {
            with(kx(), |d| {
                d.insert("stopCode".into(), json!(code));
                d.insert("stoppedReason".into(), json!(reason));
                d["containers"][0]["exitCode"] = json!(exit);
            })
        };
        let cases = [
            (
                set(
                    "EssentialContainerExited",
                    "Essential container in task exited",
                    137,
                ),
                StopCause::OutOfMemory,
            ),
            (
                set(
                    "EssentialContainerExited",
                    "OutOfMemoryError: Container killed due to memory usage",
                    1,
                ),
                StopCause::OutOfMemory,
            ),
            (
                set(
                    "EssentialContainerExited",
                    "Essential container in task exited",
                    1,
                ),
                StopCause::Crash { exit_code: Some(1) },
            ),
            (
                set("TaskFailedToStart", "CannotPullContainerError: ...", 0),
                StopCause::FailedToStart,
            ),
            (
                set("SpotInterruption", "Spot interruption", 143),
                StopCause::SpotInterruption,
            ),
            (
                set("TerminationNotice", "host going away", 143),
                StopCause::HostTermination,
            ),
            (
                set("UserInitiated", "Task stopped by user", 137),
                StopCause::UserInitiated,
            ),
            (
                set(
                    "ServiceSchedulerInitiated",
                    "Scaling activity initiated by (deployment ecs-svc/5211643699352071000)",
                    137,
                ),
                StopCause::Deployment,
            ),
            (
                set(
                    "ServiceSchedulerInitiated",
                    "Scaling activity initiated by (service x)",
                    143,
                ),
                StopCause::ScaleIn,
            ),
            (
                set(
                    "ServiceSchedulerInitiated",
                    "Task failed container health checks",
                    143,
                ),
                StopCause::ContainerHealthCheck,
            ),
            (set("SomethingNew", "?", 0), StopCause::Unknown),
        ];
        for (event, want) in cases {
            assert_eq!(stop_cause_of(&event), Some(want.clone()));
            let actions = match stop_of(&event) {
                Classification::Act { actions, .. } => actions,
                Classification::Ignored { .. } => unreachable!(),
            };
            let retires = actions
                .iter()
                .any(|a| matches!(a, Action::RetireMasterAgents { .. }));
            assert_eq!(retires, !want.expected(), "{want:?}");
        }
    }

    #[test]
    fn not_ours_or_not_a_stop_is_ignored() {
        let other_service = with(kx(), |d| {
            d.insert("group".into(), json!("service:someone-else"));
        });
        let other_cluster = with(kx(), |d| {
            d.insert(
                "clusterArn".into(),
                json!("arn:aws:ecs:us-east-1:1:cluster/other"),
            );
        });
        let family = with(kx(), |d| {
            d.insert("group".into(), json!("family:x"));
        });
        let running = with(kx(), |d| {
            d.insert("lastStatus".into(), json!("RUNNING"));
        });
        for (event, needle) in [
            (other_service, "someone-else"),
            (other_cluster, "other"),
            (family, "not a service"),
            (running, "not a stop"),
        ] {
            match stop_of(&event) {
                Classification::Ignored { reason } => assert!(reason.contains(needle), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn cluster_may_be_configured_as_arn_and_unknown_context_is_named() {
        let mut c = ctx("my-asg");
        c.cluster =
            Some("arn:aws:ecs:ap-northeast-2:653734769926:cluster/sin-web_cluster-dev".into());
        assert_eq!(kind_of(&classify(&kx(), &c)), Some(Kind::MasterTaskStopped));
        match classify(&kx(), &Context::default()) {
            Classification::Act { unchecked, .. } => assert_eq!(unchecked.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn agent_instance_gone_is_removed_if_tagged_ours() {
        let event = json!({"detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "detail": {"instance-id": "i-1", "state": "terminated"}});
        match classify(&event, &Context::default()) {
            Classification::Act {
                only_if, actions, ..
            } => {
                assert_eq!(
                    only_if,
                    Some(Condition::InstanceTaggedOurs {
                        instance_id: "i-1".into()
                    })
                );
                assert!(actions.contains(&Action::RemoveAgent {
                    instance_id: "i-1".into()
                }));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_asg_is_ignored() {
        let event = json!({"detail-type": "EC2 Instance-terminate Lifecycle Action",
            "source": "aws.autoscaling", "detail": {"AutoScalingGroupName": "x",
            "EC2InstanceId": "i-1", "LifecycleHookName": "h", "LifecycleActionToken": "t"}});
        assert_eq!(kind_of(&classify(&event, &ctx("my-asg"))), None);
        assert_eq!(
            kind_of(&classify(&event, &Context::default())),
            Some(Kind::MasterHostTerminating)
        );
    }

    #[test]
    fn crash_loop_counts_stops_in_the_window() {
        assert!(crash_loop(&[100, 200, 290], 300, 3, 600));
        assert!(!crash_loop(&[100, 200, 290], 1000, 3, 600));
        assert!(!crash_loop(&[], 0, 0, 600));
    }

    #[test]
    fn drain_steps() {
        assert_eq!(drain_step(0, 100, 50), DrainStep::Complete);
        assert_eq!(drain_step(0, 10, 50), DrainStep::Complete);
        assert_eq!(drain_step(2, 10, 50), DrainStep::Heartbeat);
        assert_eq!(drain_step(1, 50, 50), DrainStep::GiveUp);
    }

    #[test]
    fn unexpected_stop_records_the_task_for_crash_loops() {
        let event = with(kx(), |d| {
            d.insert("stoppedAt".into(), json!("2024-01-01T00:00:00Z"));
        });
        match stop_of(&event) {
            Classification::Act { actions, .. } => assert!(actions.iter().any(|a| matches!(
                a,
                Action::RecordStop { master, stopped_at: Some(at), .. }
                    if master == "sin-web_service-dev" && at == "2024-01-01T00:00:00Z"
            ))),
            other => panic!("{other:?}"),
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("STOPPED".to_string()),
                Just("service:m".to_string()),
                Just("ServiceSchedulerInitiated".to_string()),
                ".*"
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("detail-type".to_string()),
                        Just("detail".to_string()),
                        Just("lastStatus".to_string()),
                        Just("containers".to_string()),
                        Just("exitCode".to_string()),
                        Just("group".to_string()),
                        Just("instance-id".to_string()),
                        ".*"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn classify_never_panics_on_any_json(value in arb_json()) {
            let _ = classify(&value, &ctx("my-asg"));
            let _ = classify(&value, &Context::default());
        }

        #[test]
        fn classify_never_panics_on_known_detail_types(
            detail_type in prop_oneof![
                Just("ECS Task State Change"),
                Just("EC2 Instance-terminate Lifecycle Action"),
                Just("EC2 Instance Launch Unsuccessful"),
                Just("EC2 Instance State-change Notification"),
                Just("EC2 Spot Instance Interruption Warning"),
                Just("EC2 Instance Rebalance Recommendation"),
            ],
            detail in arb_json(),
        ) {
            let event = json!({"detail-type": detail_type, "detail": detail});
            let c = classify(&event, &ctx("my-asg"));
            prop_assert!(serde_json::to_string(&c).is_ok());
        }

        #[test]
        fn classify_never_panics_on_any_text(text in ".*") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = classify(&value, &Context::default());
            }
        }
    }
}
