//! The small traits the handlers and the farm's driver need, sized to the calls really made.
//! Real adapters implement them in [`crate::adapters`]; tests and the dry-run mode provide
//! their own.

use std::future::Future;

use crate::adapters::aws::ec2::{AgentInstance, Ec2Fleet, LaunchSpec};
use crate::adapters::aws::ssm::SsmSecrets;
use crate::adapters::jenkins::{JenkinsClient, NewAgent};
use crate::domain::jenkins::{ComputerSet, Queue};
use crate::error::{AwsError, JenkinsError};

/// One Jenkins master.
pub trait Jenkins {
    fn queue(&self) -> impl Future<Output = Result<Queue, JenkinsError>> + Send;
    fn computers(&self) -> impl Future<Output = Result<ComputerSet, JenkinsError>> + Send;
    fn create_inbound_agent(&self, agent: &NewAgent<'_>) -> impl Future<Output = Result<(), JenkinsError>> + Send;
    fn agent_secret(&self, node: &str) -> impl Future<Output = Result<String, JenkinsError>> + Send;
    fn toggle_offline(&self, node: &str, message: &str) -> impl Future<Output = Result<(), JenkinsError>> + Send;
    fn delete_node(&self, node: &str) -> impl Future<Output = Result<(), JenkinsError>> + Send;
}

/// The stack's agent instances.
pub trait Fleet {
    fn launch(&self, spec: &LaunchSpec) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn agents(&self) -> impl Future<Output = Result<Vec<AgentInstance>, AwsError>> + Send;
    fn terminate(&self, ids: &[String]) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// Where agent secrets are kept for the instances to fetch.
pub trait Secrets {
    fn put_secret(&self, path: &str, secret: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_secret(&self, path: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
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

impl Secrets for SsmSecrets {
    async fn put_secret(&self, path: &str, secret: &str) -> Result<(), AwsError> {
        SsmSecrets::put_secret(self, path, secret).await
    }
    async fn delete_secret(&self, path: &str) -> Result<(), AwsError> {
        SsmSecrets::delete_secret(self, path).await
    }
}
