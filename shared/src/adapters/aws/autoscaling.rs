//! Auto Scaling adapter: keeps a master host's terminate lifecycle action alive while its
//! tasks drain, and completes it.
//!
//! Both calls identify the action by its token (from the event), which is what AWS matches
//! on. An action that is no longer pending (already completed, or timed out and gone on) is
//! answered with `ValidationError` "No active Lifecycle Action found …": for an idempotent
//! drain that is "already done", not a failure.

use crate::error::AwsError;

/// The IAM actions [`AsgLifecycle`] calls (the template's roles are checked against it).
pub const IAM_ACTIONS: &[&str] = &[
    "autoscaling:RecordLifecycleActionHeartbeat",
    "autoscaling:CompleteLifecycleAction",
];

/// Identifies one lifecycle action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub asg_name: String,
    pub hook_name: String,
    pub action_token: String,
    pub instance_id: String,
}

/// What became of a heartbeat or completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleOutcome {
    Done,
    /// The action was no longer pending (completed earlier or timed out).
    NotPending,
}

/// The lifecycle calls on the masters' group.
#[derive(Debug, Clone)]
pub struct AsgLifecycle {
    client: aws_sdk_autoscaling::Client,
}

impl AsgLifecycle {
    pub fn new(client: aws_sdk_autoscaling::Client) -> AsgLifecycle {
        AsgLifecycle { client }
    }

    /// RecordLifecycleActionHeartbeat: restarts the hook's heartbeat timeout.
    pub async fn heartbeat(&self, action: &LifecycleAction) -> Result<LifecycleOutcome, AwsError> {
        let result = self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.asg_name)
            .lifecycle_hook_name(&action.hook_name)
            .lifecycle_action_token(&action.action_token)
            .send()
            .await;
        match result {
            Ok(_) => Ok(LifecycleOutcome::Done),
            Err(err) => not_pending_or(AwsError::from_sdk("RecordLifecycleActionHeartbeat", &err)),
        }
    }

    /// CompleteLifecycleAction with `result` (`CONTINUE` or `ABANDON`).
    pub async fn complete(
        &self,
        action: &LifecycleAction,
        result: &str,
    ) -> Result<LifecycleOutcome, AwsError> {
        let answer = self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.asg_name)
            .lifecycle_hook_name(&action.hook_name)
            .lifecycle_action_token(&action.action_token)
            .lifecycle_action_result(result)
            .send()
            .await;
        match answer {
            Ok(_) => Ok(LifecycleOutcome::Done),
            Err(err) => not_pending_or(AwsError::from_sdk("CompleteLifecycleAction", &err)),
        }
    }
}

fn not_pending_or(err: AwsError) -> Result<LifecycleOutcome, AwsError> {
    if err.code == "ValidationError" && err.message.contains("No active Lifecycle Action") {
        Ok(LifecycleOutcome::NotPending)
    } else {
        Err(err)
    }
}
