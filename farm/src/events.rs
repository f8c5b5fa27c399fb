//! The farm's EventBridge: moto delivers no events (MOTO.md), so the farm builds them in the
//! shapes AWS sends (the envelopes and details of the real samples in
//! `../shared/fixtures/aws`) and invokes the function through the Lambda harness, the way an
//! EventBridge rule with a Lambda target does: the event JSON as the invocation payload.
//!
//! Each event gets a fresh `id` and the current `time`, like a real delivery; delivering the
//! same [`serde_json::Value`] twice is what an at-least-once redelivery looks like.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
use serde_json::{Value, json};

use crate::lambda::{Invocation, LambdaError, LambdaFarm};
use crate::moto::REGION;

/// moto's default account, which every ARN here names.
pub const ACCOUNT: &str = "123456789012";

/// Delivers events to one function of a [`LambdaFarm`].
pub struct EventBus<'a> {
    farm: &'a LambdaFarm,
    function: String,
}

impl<'a> EventBus<'a> {
    pub fn new(farm: &'a LambdaFarm, function: impl Into<String>) -> EventBus<'a> {
        EventBus {
            farm,
            function: function.into(),
        }
    }

    /// Invokes the function with the event and returns its answer.
    pub async fn deliver(&self, event: &Value) -> Result<Invocation, LambdaError> {
        tracing::info!(
            function = %self.function,
            detail_type = event["detail-type"].as_str().unwrap_or("?"),
            "delivering event"
        );
        self.farm.invoke(&self.function, event).await
    }
}

/// The EventBridge envelope around `detail`.
pub fn envelope(detail_type: &str, source: &str, resources: Vec<String>, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": event_id(),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": now_rfc3339(false),
        "region": REGION,
        "resources": resources,
        "detail": detail,
    })
}

/// A master task that stopped, as ECS reports it (fixture
/// `ecs-task-state-change/kx-kotlin-stopped-service-scheduler-elb-healthcheck.json`).
#[derive(Debug, Clone)]
pub struct TaskStop {
    pub cluster_arn: String,
    pub task_arn: String,
    /// `service:<name>` for a service's task.
    pub group: String,
    pub container_instance_arn: Option<String>,
    pub stop_code: String,
    pub stopped_reason: String,
    pub container_name: String,
    pub exit_code: Option<i64>,
}

/// `ECS Task State Change` with `lastStatus` STOPPED.
pub fn ecs_task_stopped(stop: &TaskStop) -> Value {
    let now = now_rfc3339(true);
    let mut detail = json!({
        "clusterArn": stop.cluster_arn,
        "taskArn": stop.task_arn,
        "group": stop.group,
        "launchType": "EC2",
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": stop.stop_code,
        "stoppedReason": stop.stopped_reason,
        "stoppingAt": now,
        "stoppedAt": now,
        "updatedAt": now,
        "containers": [{
            "containerArn": format!("{}/{}", stop.task_arn.replace(":task/", ":container/"), event_id()),
            "lastStatus": "STOPPED",
            "name": stop.container_name,
            "taskArn": stop.task_arn,
            "exitCode": stop.exit_code,
        }],
        "version": 3,
    });
    if let Some(arn) = &stop.container_instance_arn {
        detail["containerInstanceArn"] = json!(arn);
    }
    envelope(
        "ECS Task State Change",
        "aws.ecs",
        vec![stop.task_arn.clone()],
        detail,
    )
}

/// `EC2 Instance State-change Notification` (fixture `ec2-instance-state-change/`).
pub fn ec2_state_change(instance_id: &str, state: &str) -> Value {
    envelope(
        "EC2 Instance State-change Notification",
        "aws.ec2",
        vec![instance_arn(instance_id)],
        json!({"instance-id": instance_id, "state": state}),
    )
}

/// `EC2 Spot Instance Interruption Warning` (fixture `ec2-spot-interruption-warning/`).
pub fn spot_interruption_warning(instance_id: &str) -> Value {
    envelope(
        "EC2 Spot Instance Interruption Warning",
        "aws.ec2",
        vec![instance_arn(instance_id)],
        json!({"instance-id": instance_id, "instance-action": "terminate"}),
    )
}

/// `EC2 Instance-terminate Lifecycle Action` (fixture `autoscaling-lifecycle-action/`).
pub fn terminate_lifecycle_action(asg: &str, hook: &str, instance_id: &str, token: &str) -> Value {
    envelope(
        "EC2 Instance-terminate Lifecycle Action",
        "aws.autoscaling",
        vec![format!(
            "arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:{}:autoScalingGroupName/{asg}",
            event_id()
        )],
        json!({
            "LifecycleActionToken": token,
            "AutoScalingGroupName": asg,
            "LifecycleHookName": hook,
            "EC2InstanceId": instance_id,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        }),
    )
}

/// The `rate(1 minute)` schedule's `Scheduled Event` (fixture `scheduled-event/`).
pub fn scheduled(rule: &str) -> Value {
    envelope(
        "Scheduled Event",
        "aws.events",
        vec![format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}")],
        json!({}),
    )
}

fn instance_arn(instance_id: &str) -> String {
    format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}")
}

/// A random UUID-shaped id, as EventBridge gives every event.
fn event_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Now as RFC 3339: whole seconds for the envelope's `time`, milliseconds in ECS details.
fn now_rfc3339(millis: bool) -> String {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let time = if millis {
        DateTime::from_millis(elapsed.as_millis() as i64)
    } else {
        DateTime::from_secs(elapsed.as_secs() as i64)
    };
    time.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use longshore::domain::recovery::{Classification, Context, Kind, classify};

    fn kind(event: &Value) -> Option<Kind> {
        match classify(event, &Context::default()) {
            Classification::Act { kind, .. } => Some(kind),
            Classification::Ignored { .. } => None,
        }
    }

    #[test]
    fn built_events_classify_like_the_real_samples() {
        let stop = TaskStop {
            cluster_arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/masters"),
            task_arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/masters/abc"),
            group: "service:master-a".to_string(),
            container_instance_arn: None,
            stop_code: "EssentialContainerExited".to_string(),
            stopped_reason: "Essential container in task exited".to_string(),
            container_name: "jenkins".to_string(),
            exit_code: Some(1),
        };
        assert_eq!(
            kind(&ecs_task_stopped(&stop)),
            Some(Kind::MasterTaskStopped)
        );
        assert_eq!(
            kind(&ec2_state_change("i-1", "terminated")),
            Some(Kind::AgentInstanceGone)
        );
        assert_eq!(kind(&ec2_state_change("i-1", "running")), None);
        assert_eq!(
            kind(&spot_interruption_warning("i-1")),
            Some(Kind::AgentSpotInterruption)
        );
        assert_eq!(
            kind(&terminate_lifecycle_action("g", "h", "i-1", "t")),
            Some(Kind::MasterHostTerminating)
        );
        assert_eq!(kind(&scheduled("r")), Some(Kind::DrainCheck));
        let a = scheduled("r");
        let b = scheduled("r");
        assert_ne!(a["id"], b["id"]);
        assert!(a["time"].as_str().unwrap().ends_with('Z'));
    }
}
