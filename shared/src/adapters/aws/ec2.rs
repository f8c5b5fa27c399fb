//! EC2 adapter: launches agent instances from the stack's launch template, lists the stack's
//! agents by tag, and terminates only instances that carry the stack's tag.

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMarketOptionsRequest, InstanceMetadataOptionsRequest,
    InstanceMetadataTagsState, InstanceStateName, InstanceType, LaunchTemplateSpecification,
    MarketType, ResourceType, Tag, TagSpecification,
};

use crate::error::AwsError;

/// The IAM actions of [`Ec2Fleet::launch`] (tags at launch need `ec2:CreateTags` too).
pub const LAUNCH_IAM_ACTIONS: &[&str] = &["ec2:RunInstances", "ec2:CreateTags"];
/// The IAM actions of [`Ec2Fleet::agents`] and [`Ec2Fleet::terminate`] (the template's roles
/// are checked against these lists).
pub const WATCH_IAM_ACTIONS: &[&str] = &["ec2:DescribeInstances", "ec2:TerminateInstances"];

/// Tag keys longshore puts on every agent instance. The agent reads `MASTER_URL` through
/// instance metadata tags at boot; the scaler and recovery find their instances by `STACK` and
/// `ROLE`: the stack's master hosts carry `STACK` too (with `ROLE` `master-host`), and must
/// never be taken for agents.
pub mod tags {
    pub const STACK: &str = "longshore:stack";
    pub const ROLE: &str = "longshore:role";
    /// `ROLE`'s value on agents (and their volumes).
    pub const AGENT_ROLE: &str = "agent";
    pub const MASTER: &str = "longshore:master";
    pub const MASTER_URL: &str = "longshore:master-url";
    pub const LABEL: &str = "longshore:label";
}

/// Which launch template version the agents start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplateRef {
    pub id: String,
    pub version: String,
}

/// One agent to launch; everything not here comes from the launch template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub master: String,
    pub master_url: String,
    /// The label (expression) this agent was launched for.
    pub label: String,
    pub instance_type: String,
    pub subnet_id: String,
    /// Run on spot capacity (one-time request, terminated on interruption).
    pub spot: bool,
    /// Idempotency token: a retried launch with the same token starts no second instance.
    pub client_token: String,
}

/// The lifecycle states longshore distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Pending,
    Running,
    /// Shutting down, stopping, stopped or terminated: gone for scaling purposes.
    Gone,
}

/// An agent instance of the stack, as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInstance {
    pub id: String,
    pub state: AgentState,
    pub master: Option<String>,
    pub master_url: Option<String>,
    pub label: Option<String>,
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    /// Launch time in epoch milliseconds.
    pub launched_at_ms: Option<i64>,
}

/// The stack's agents on EC2.
#[derive(Debug, Clone)]
pub struct Ec2Fleet {
    client: aws_sdk_ec2::Client,
    stack: String,
    template: LaunchTemplateRef,
}

impl Ec2Fleet {
    pub fn new(client: aws_sdk_ec2::Client, stack: &str, template: LaunchTemplateRef) -> Self {
        Ec2Fleet {
            client,
            stack: stack.to_string(),
            template,
        }
    }

    /// Launches one agent and returns its instance ID.
    pub async fn launch(&self, spec: &LaunchSpec) -> Result<String, AwsError> {
        let instance_tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .set_tags(Some(self.agent_tags(spec)))
            .build();
        let volume_tags = TagSpecification::builder()
            .resource_type(ResourceType::Volume)
            .tags(tag(tags::STACK, &self.stack))
            .tags(tag(tags::ROLE, tags::AGENT_ROLE))
            .build();
        let market = spec.spot.then(|| {
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .build()
        });
        let output = self
            .client
            .run_instances()
            .set_instance_market_options(market)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&self.template.id)
                    .version(&self.template.version)
                    .build(),
            )
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .subnet_id(&spec.subnet_id)
            .min_count(1)
            .max_count(1)
            .client_token(&spec.client_token)
            // IMDSv2 only, and tags readable from instance metadata (the agent boot needs them).
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .instance_metadata_tags(InstanceMetadataTagsState::Enabled)
                    .build(),
            )
            .tag_specifications(instance_tags)
            .tag_specifications(volume_tags)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("RunInstances", &err))?;
        output
            .instances()
            .first()
            .and_then(|instance| instance.instance_id())
            .map(str::to_string)
            .ok_or_else(|| AwsError::missing("RunInstances", "instance ID"))
    }

    /// Every agent instance of the stack (its tag, and the agent role: not a master host), in
    /// any state but terminated long ago.
    pub async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
        let mut agents = Vec::new();
        let mut pages = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::STACK))
                    .values(&self.stack)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::ROLE))
                    .values(tags::AGENT_ROLE)
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| AwsError::from_sdk("DescribeInstances", &err))?;
            for reservation in page.reservations() {
                agents.extend(reservation.instances().iter().filter_map(agent_instance));
            }
        }
        Ok(agents)
    }

    /// Terminates the given instances, but only agents of the stack (its tag and the agent
    /// role): the check is made here, against EC2's own answer, not against what the caller
    /// believes.
    pub async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ours: Vec<String> = self
            .agents()
            .await?
            .into_iter()
            .filter(|agent| ids.contains(&agent.id) && agent.state != AgentState::Gone)
            .map(|agent| agent.id)
            .collect();
        if ours.is_empty() {
            return Ok(ours);
        }
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ours.clone()))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("TerminateInstances", &err))?;
        Ok(ours)
    }

    fn agent_tags(&self, spec: &LaunchSpec) -> Vec<Tag> {
        vec![
            tag(tags::STACK, &self.stack),
            tag(tags::ROLE, tags::AGENT_ROLE),
            tag(tags::MASTER, &spec.master),
            tag(tags::MASTER_URL, &spec.master_url),
            tag(tags::LABEL, &spec.label),
            tag("Name", &format!("{}-agent-{}", self.stack, spec.master)),
        ]
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn agent_instance(instance: &aws_sdk_ec2::types::Instance) -> Option<AgentInstance> {
    let id = instance.instance_id()?.to_string();
    let state = match instance.state().and_then(|state| state.name()) {
        Some(InstanceStateName::Pending) => AgentState::Pending,
        Some(InstanceStateName::Running) => AgentState::Running,
        _ => AgentState::Gone,
    };
    let tag_value = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(|tag| tag.value())
            .map(str::to_string)
    };
    Some(AgentInstance {
        id,
        state,
        master: tag_value(tags::MASTER),
        master_url: tag_value(tags::MASTER_URL),
        label: tag_value(tags::LABEL),
        instance_type: instance.instance_type().map(|t| t.as_str().to_string()),
        subnet_id: instance.subnet_id().map(str::to_string),
        launched_at_ms: instance.launch_time().and_then(|t| t.to_millis().ok()),
    })
}
