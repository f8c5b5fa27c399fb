//! The small traits the handlers and the farm's driver need, sized to the calls really made.
//! Real adapters implement them in [`crate::adapters`]; tests and the dry-run mode provide
//! their own.

use std::future::Future;

use crate::adapters::aws::ec2::{AgentInstance, Ec2Fleet, LaunchSpec};
use crate::adapters::aws::launches::{DynamoLaunchJournal, LaunchRecord};
use crate::adapters::aws::ssm::SsmSecrets;
use crate::adapters::jenkins::{JenkinsClient, NewAgent};
use crate::domain::jenkins::{ComputerSet, Queue};
use crate::error::{AwsError, JenkinsError};

/// One Jenkins master.
pub trait Jenkins {
    fn queue(&self) -> impl Future<Output = Result<Queue, JenkinsError>> + Send;
    fn computers(&self) -> impl Future<Output = Result<ComputerSet, JenkinsError>> + Send;
    fn create_inbound_agent(
        &self,
        agent: &NewAgent<'_>,
    ) -> impl Future<Output = Result<(), JenkinsError>> + Send;
    fn agent_secret(&self, node: &str)
    -> impl Future<Output = Result<String, JenkinsError>> + Send;
    fn toggle_offline(
        &self,
        node: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), JenkinsError>> + Send;
    fn delete_node(&self, node: &str) -> impl Future<Output = Result<(), JenkinsError>> + Send;
}

/// The stack's agent instances.
pub trait Fleet {
    fn launch(&self, spec: &LaunchSpec) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn agents(&self) -> impl Future<Output = Result<Vec<AgentInstance>, AwsError>> + Send;
    fn terminate(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// Where agent secrets are kept for the instances to fetch.
pub trait Secrets {
    fn put_secret(
        &self,
        path: &str,
        secret: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_secret(&self, path: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Where the queue-scaler writes its launches down before sending them, so that a launch
/// whose outcome its process never learnt is settled by the next one
/// ([`crate::adapters::aws::launches`]).
pub trait LaunchJournal {
    /// Writes the record, replacing the one of the same token.
    fn record(&self, record: &LaunchRecord) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn forget(&self, token: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn recall(&self) -> impl Future<Output = Result<Vec<LaunchRecord>, AwsError>> + Send;
}

impl Jenkins for JenkinsClient {
    async fn queue(&self) -> Result<Queue, JenkinsError> {
        JenkinsClient::queue(self).await
    }
    async fn computers(&self) -> Result<ComputerSet, JenkinsError> {
        JenkinsClient::computers(self).await
    }
    async fn create_inbound_agent(&self, agent: &NewAgent<'_>) -> Result<(), JenkinsError> {
        JenkinsClient::create_inbound_agent(self, agent).await
    }
    async fn agent_secret(&self, node: &str) -> Result<String, JenkinsError> {
        JenkinsClient::agent_secret(self, node).await
    }
    async fn toggle_offline(&self, node: &str, message: &str) -> Result<(), JenkinsError> {
        JenkinsClient::toggle_offline(self, node, message).await
    }
    async fn delete_node(&self, node: &str) -> Result<(), JenkinsError> {
        JenkinsClient::delete_node(self, node).await
    }
}

impl Fleet for Ec2Fleet {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, AwsError> {
        Ec2Fleet::launch(self, spec).await
    }
    async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
        Ec2Fleet::agents(self).await
    }
    async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        Ec2Fleet::terminate(self, ids).await
    }
}

impl LaunchJournal for DynamoLaunchJournal {
    async fn record(&self, record: &LaunchRecord) -> Result<(), AwsError> {
        DynamoLaunchJournal::record(self, record).await
    }
    async fn forget(&self, token: &str) -> Result<(), AwsError> {
        DynamoLaunchJournal::forget(self, token).await
    }
    async fn recall(&self) -> Result<Vec<LaunchRecord>, AwsError> {
        DynamoLaunchJournal::recall(self).await
    }
}

impl Secrets for SsmSecrets {
    async fn put_secret(&self, path: &str, secret: &str) -> Result<(), AwsError> {
        SsmSecrets::put_secret(self, path, secret).await
    }
    async fn delete_secret(&self, path: &str) -> Result<(), AwsError> {
        SsmSecrets::delete_secret(self, path).await
    }
}

// ---------------------------------------------------------------------------------------------
// config-resolver (`Custom::JenkinsConfig`): the lookups it makes at deploy time, where it
// stores what it renders, and how it answers CloudFormation.
// ---------------------------------------------------------------------------------------------

/// Read-only lookups that turn the custom resource's properties into facts.
pub trait Lookups {
    /// The physical ID of a resource of another stack; `None` when there is none.
    fn stack_resource(
        &self,
        stack: &str,
        logical_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// The subnets among `ids` that exist.
    fn subnets(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<crate::domain::custom_resource::SubnetFact>, AwsError>> + Send;
    /// The security groups among `ids` that exist.
    fn security_groups(
        &self,
        ids: &[String],
    ) -> impl Future<
        Output = Result<Vec<crate::domain::custom_resource::SecurityGroupFact>, AwsError>,
    > + Send;
    /// The instance profile's ARN; `None` when it does not exist.
    fn instance_profile_arn(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// Whether the launch template exists.
    fn launch_template_exists(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// The `(instance type, zone)` pairs EC2 offers among `types` × `zones`.
    fn offerings(
        &self,
        types: &[String],
        zones: &[String],
    ) -> impl Future<Output = Result<Vec<(String, String)>, AwsError>> + Send;
}

/// Where rendered configuration is stored (SSM String parameters).
pub trait Params {
    /// Writes a parameter; returns its new version.
    fn put(&self, name: &str, value: &str) -> impl Future<Output = Result<i64, AwsError>> + Send;
    /// Reads a parameter; `None` when absent.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<crate::adapters::aws::ssm::StoredParameter>, AwsError>> + Send;
    /// Deletes everything under a path; returns the names deleted (none is fine).
    fn delete_under(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// Delivers a custom resource response to its pre-signed URL.
pub trait CfnResponder {
    fn respond(
        &self,
        url: &str,
        body: &str,
    ) -> impl Future<Output = Result<(), crate::adapters::cfn_response::ResponseError>> + Send;
}

impl Lookups for crate::adapters::aws::network::AwsLookups {
    async fn stack_resource(
        &self,
        stack: &str,
        logical_id: &str,
    ) -> Result<Option<String>, AwsError> {
        self.cfn.stack_resource(stack, logical_id).await
    }
    async fn subnets(
        &self,
        ids: &[String],
    ) -> Result<Vec<crate::domain::custom_resource::SubnetFact>, AwsError> {
        self.ec2.subnets(ids).await
    }
    async fn security_groups(
        &self,
        ids: &[String],
    ) -> Result<Vec<crate::domain::custom_resource::SecurityGroupFact>, AwsError> {
        self.ec2.security_groups(ids).await
    }
    async fn instance_profile_arn(&self, name: &str) -> Result<Option<String>, AwsError> {
        self.iam.instance_profile_arn(name).await
    }
    async fn launch_template_exists(&self, id: &str) -> Result<bool, AwsError> {
        self.ec2.launch_template_exists(id).await
    }
    async fn offerings(
        &self,
        types: &[String],
        zones: &[String],
    ) -> Result<Vec<(String, String)>, AwsError> {
        self.ec2.offerings(types, zones).await
    }
}

impl Params for crate::adapters::aws::ssm::SsmParams {
    async fn put(&self, name: &str, value: &str) -> Result<i64, AwsError> {
        crate::adapters::aws::ssm::SsmParams::put(self, name, value).await
    }
    async fn get(
        &self,
        name: &str,
    ) -> Result<Option<crate::adapters::aws::ssm::StoredParameter>, AwsError> {
        crate::adapters::aws::ssm::SsmParams::get(self, name).await
    }
    async fn delete_under(&self, path: &str) -> Result<Vec<String>, AwsError> {
        crate::adapters::aws::ssm::SsmParams::delete_under(self, path).await
    }
}

impl CfnResponder for crate::adapters::cfn_response::HttpResponder {
    async fn respond(
        &self,
        url: &str,
        body: &str,
    ) -> Result<(), crate::adapters::cfn_response::ResponseError> {
        self.put(url, body).await
    }
}

// ---------------------------------------------------------------------------------------------
// recovery: alerts, the masters' hosts and their lifecycle actions, and its memory between
// invocations.
// ---------------------------------------------------------------------------------------------

use crate::adapters::aws::autoscaling::{LifecycleAction, LifecycleOutcome};
use crate::adapters::aws::state::PendingDrain;

/// Where operators are told.
pub trait Alerts {
    fn publish(
        &self,
        subject: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// The terminate lifecycle actions of the masters' Auto Scaling group.
pub trait Lifecycles {
    fn heartbeat(
        &self,
        action: &LifecycleAction,
    ) -> impl Future<Output = Result<LifecycleOutcome, AwsError>> + Send;
    fn complete(
        &self,
        action: &LifecycleAction,
        result: &str,
    ) -> impl Future<Output = Result<LifecycleOutcome, AwsError>> + Send;
}

/// The masters' ECS container instances.
pub trait MasterHosts {
    fn container_instance(
        &self,
        ec2_instance_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn drain(
        &self,
        container_instance_arn: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn live_tasks(
        &self,
        container_instance_arn: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// recovery's state between invocations (see [`crate::adapters::aws::state`]).
pub trait RecoveryStore {
    fn record_stop(
        &self,
        service: &str,
        task_arn: &str,
        at: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn stops(
        &self,
        service: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<i64>, AwsError>> + Send;
    fn claim_alert(
        &self,
        key: &str,
        now: i64,
        until: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn release_alert(&self, key: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn put_drain(
        &self,
        drain: &PendingDrain,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn drains(&self) -> impl Future<Output = Result<Vec<PendingDrain>, AwsError>> + Send;
    fn delete_drain(&self, instance_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl Alerts for crate::adapters::aws::sns::SnsAlerts {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), AwsError> {
        crate::adapters::aws::sns::SnsAlerts::publish(self, subject, message)
            .await
            .map(|_| ())
    }
}

impl Lifecycles for crate::adapters::aws::autoscaling::AsgLifecycle {
    async fn heartbeat(&self, action: &LifecycleAction) -> Result<LifecycleOutcome, AwsError> {
        crate::adapters::aws::autoscaling::AsgLifecycle::heartbeat(self, action).await
    }
    async fn complete(
        &self,
        action: &LifecycleAction,
        result: &str,
    ) -> Result<LifecycleOutcome, AwsError> {
        crate::adapters::aws::autoscaling::AsgLifecycle::complete(self, action, result).await
    }
}

impl MasterHosts for crate::adapters::aws::ecs::EcsHosts {
    async fn container_instance(&self, ec2_instance_id: &str) -> Result<Option<String>, AwsError> {
        crate::adapters::aws::ecs::EcsHosts::container_instance(self, ec2_instance_id).await
    }
    async fn drain(&self, container_instance_arn: &str) -> Result<(), AwsError> {
        crate::adapters::aws::ecs::EcsHosts::drain(self, container_instance_arn).await
    }
    async fn live_tasks(&self, container_instance_arn: &str) -> Result<Vec<String>, AwsError> {
        crate::adapters::aws::ecs::EcsHosts::live_tasks(self, container_instance_arn).await
    }
}

impl RecoveryStore for crate::adapters::aws::state::RecoveryState {
    async fn record_stop(
        &self,
        service: &str,
        task_arn: &str,
        at: i64,
        expires_at: i64,
    ) -> Result<bool, AwsError> {
        crate::adapters::aws::state::RecoveryState::record_stop(
            self, service, task_arn, at, expires_at,
        )
        .await
    }
    async fn stops(&self, service: &str, now: i64) -> Result<Vec<i64>, AwsError> {
        crate::adapters::aws::state::RecoveryState::stops(self, service, now).await
    }
    async fn claim_alert(&self, key: &str, now: i64, until: i64) -> Result<bool, AwsError> {
        crate::adapters::aws::state::RecoveryState::claim_alert(self, key, now, until).await
    }
    async fn release_alert(&self, key: &str) -> Result<(), AwsError> {
        crate::adapters::aws::state::RecoveryState::release_alert(self, key).await
    }
    async fn put_drain(&self, drain: &PendingDrain, expires_at: i64) -> Result<bool, AwsError> {
        crate::adapters::aws::state::RecoveryState::put_drain(self, drain, expires_at).await
    }
    async fn drains(&self) -> Result<Vec<PendingDrain>, AwsError> {
        crate::adapters::aws::state::RecoveryState::drains(self).await
    }
    async fn delete_drain(&self, instance_id: &str) -> Result<(), AwsError> {
        crate::adapters::aws::state::RecoveryState::delete_drain(self, instance_id).await
    }
}
