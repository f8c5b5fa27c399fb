//! The demo's stack: `infra/template.yaml` deployed into the demo's moto the way
//! `make deploy-local` deploys it ([`crate::deploy::deploy_local`]: CreateStack with the
//! parameters file, the real config-resolver answering the custom resource), and what the demo
//! takes from it.
//!
//! From the stack: the agents' launch template (the user data the template renders), the state
//! table (the scaler's lease and launch journal, recovery's state), the alert topic, the subnets
//! and the fleet parameter config-resolver wrote. What the farm provides instead, and says so:
//! the admin secret (moto's CloudFormation skips `AWS::SecretsManager::Secret`; the farm
//! generates it as the template's `GenerateSecretString` says, with Secrets Manager's
//! `GetRandomPassword`, and creates it), the masters themselves (two simulators;
//! moto's ECS runs no container, so the Lambdas get `LONGSHORE_MASTERS`), and the fleet
//! configuration's content (the template has one label and counts idle time in minutes; the
//! demo replays two labels with every duration divided by `SPEED`, so it writes its own over
//! config-resolver's, as an operator's update of the stack would).

use std::collections::BTreeMap;

use longshore::adapters::aws::ec2::LaunchTemplateRef;

use crate::deploy::{LocalDeployOptions, LocalDeployment, deploy_local};
use crate::moto::{MotoServer, TestSubnet};

/// What the demo uses of the deployed stack.
#[derive(Debug, Clone)]
pub struct DemoStack {
    pub deployment: LocalDeployment,
    pub launch_template: LaunchTemplateRef,
    /// The DynamoDB table of the scaler's lease and launch journal and of recovery's state.
    pub state_table: String,
    /// The admin secret's ARN, and the API token Secrets Manager generated into it.
    pub admin_secret: String,
    pub token: String,
    pub alert_topic: String,
    /// Where config-resolver stored the fleet configuration.
    pub fleet_parameter: String,
    pub subnets: Vec<TestSubnet>,
}

/// The stack's parameters for the demo: `infra/parameters.example` with the demo's domain and
/// its first label's agents (the second label is the demo's own, see the module docs).
pub fn parameters(stack: &str, domain: &str) -> Result<LocalDeployOptions, String> {
    let mut options = LocalDeployOptions::example(stack).map_err(|e| e.to_string())?;
    let demo: BTreeMap<&str, &str> = [
        ("DomainName", domain),
        ("AgentLabel", "docker"),
        ("AgentInstanceTypes", "c6i.large,m6i.large"),
        ("AgentMaxPerMaster", "6"),
        ("MaxAgents", "16"),
    ]
    .into();
    for (key, value) in demo {
        options
            .parameters
            .insert(key.to_string(), value.to_string());
    }
    Ok(options)
}

/// Deploys the template and reads back what the demo needs.
pub async fn deploy(moto: &MotoServer, options: &LocalDeployOptions) -> Result<DemoStack, String> {
    let deployment = deploy_local(moto, options)
        .await
        .map_err(|e| format!("deploying infra/template.yaml into moto: {e}"))?;
    if deployment.status != "CREATE_COMPLETE" {
        return Err(format!(
            "the stack ended {} rather than CREATE_COMPLETE",
            deployment.status
        ));
    }
    let physical = |logical: &str| -> Result<String, String> {
        deployment
            .resources
            .iter()
            .find(|r| r.logical_id == logical && r.listed && !r.physical_id.is_empty())
            .map(|r| r.physical_id.clone())
            .ok_or_else(|| format!("the stack has no {logical}"))
    };
    let sdk = moto.sdk_config().await;
    let admin_secret = match physical("AdminSecret") {
        Ok(secret) => secret,
        Err(_) => create_admin_secret(&sdk, &options.stack_name).await?,
    };
    let token = generated_token(&sdk, &admin_secret).await?;
    let fleet_parameter = deployment
        .custom_data
        .get("FleetParameter")
        .cloned()
        .ok_or("config-resolver answered no FleetParameter")?;
    Ok(DemoStack {
        launch_template: LaunchTemplateRef {
            id: physical("AgentLaunchTemplate")?,
            version: "$Latest".to_string(),
        },
        state_table: physical("StateTable")?,
        alert_topic: physical("AlertTopic")?,
        subnets: subnets(&sdk, &deployment.subnets).await?,
        admin_secret,
        token,
        fleet_parameter,
        deployment,
    })
}

/// The template's `AdminSecret`, made as CloudFormation would: `GenerateSecretString` with
/// `SecretStringTemplate` `{"user": "admin"}`, `GenerateStringKey` `token`, 32 characters
/// without punctuation.
async fn create_admin_secret(sdk: &aws_config::SdkConfig, stack: &str) -> Result<String, String> {
    let token = aws_sdk_secretsmanager::Client::new(sdk)
        .get_random_password()
        .password_length(32)
        .exclude_punctuation(true)
        .send()
        .await
        .map_err(|e| {
            format!(
                "GetRandomPassword: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?
        .random_password
        .ok_or("GetRandomPassword answered no password")?;
    crate::stack::create_jenkins_secret(sdk, &format!("{stack}-AdminSecret"), "admin", &token).await
}

/// The `token` Secrets Manager generated into the admin secret (`{"user", "token"}`).
async fn generated_token(sdk: &aws_config::SdkConfig, secret: &str) -> Result<String, String> {
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            format!(
                "GetSecretValue: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?
        .secret_string
        .ok_or("the admin secret has no string value")?;
    let parsed: serde_json::Value =
        serde_json::from_str(&value).map_err(|e| format!("the admin secret is not JSON: {e}"))?;
    parsed["token"]
        .as_str()
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "the admin secret has no token".to_string())
}

/// The subnets with their zones.
async fn subnets(sdk: &aws_config::SdkConfig, ids: &[String]) -> Result<Vec<TestSubnet>, String> {
    let answer = aws_sdk_ec2::Client::new(sdk)
        .describe_subnets()
        .set_subnet_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeSubnets: {}",
                aws_sdk_ec2::error::DisplayErrorContext(e)
            )
        })?;
    let mut subnets: Vec<TestSubnet> = answer
        .subnets()
        .iter()
        .filter_map(|s| {
            Some(TestSubnet {
                subnet_id: s.subnet_id()?.to_string(),
                availability_zone: s.availability_zone()?.to_string(),
                cidr: s.cidr_block().unwrap_or_default().to_string(),
            })
        })
        .collect();
    subnets.sort_by(|a, b| a.subnet_id.cmp(&b.subnet_id));
    if subnets.len() != ids.len() {
        return Err(format!(
            "DescribeSubnets found {} of {ids:?}",
            subnets.len()
        ));
    }
    Ok(subnets)
}

impl DemoStack {
    /// The lines the demo prints about its stack.
    pub fn describe(&self) -> Vec<String> {
        let created = self
            .deployment
            .resources
            .iter()
            .filter(|r| r.listed)
            .count();
        let skipped = self.deployment.resources.len() - created;
        vec![
            format!(
                "stack {}: {} ({created} resources created by moto's CloudFormation, {skipped} it cannot create or whose condition is false; stack.txt lists them)",
                self.deployment.stack_id.rsplit('/').nth(1).unwrap_or("longshore-demo"),
                self.deployment.status
            ),
            format!(
                "from the stack: launch template {}, state table {}, alert topic, subnets, fleet parameter {}",
                self.launch_template.id, self.state_table, self.fleet_parameter
            ),
            "by the farm: the admin secret (moto's CloudFormation skips it; generated as the template says, its token is the masters' API token), the masters (moto's ECS runs no container; the Lambdas get LONGSHORE_MASTERS), and the fleet configuration's content (two labels, durations / SPEED) written over config-resolver's one-label configuration".to_string(),
        ]
    }
}
