//! What the CloudFormation stack would create, made with the same SDK calls, for the parts of
//! the farm that run before (or without) the template being deployed into moto.

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceMetadataTagsState, RequestLaunchTemplateData,
};
use base64::Engine;
use longshore::adapters::aws::ec2::LaunchTemplateRef;
use longshore::domain::render::{AgentBootParams, agent_user_data};

use crate::moto::REGION;

/// The SSM parameter of the ECS-optimized Amazon Linux 2023 AMI (moto ships it).
pub const AMI_PARAMETER: &str =
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id";

fn fail(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// The agents' launch template, as the stack defines it: the ECS-optimized AMI, the real user
/// data, IMDSv2 only with instance tags in metadata, and an encrypted root volume.
pub async fn create_agent_launch_template(
    sdk: &aws_config::SdkConfig,
    stack: &str,
) -> Result<LaunchTemplateRef, String> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let ami = ssm
        .get_parameter()
        .name(AMI_PARAMETER)
        .send()
        .await
        .map_err(|err| fail(aws_sdk_ssm::error::DisplayErrorContext(err)))?
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| fail("the AMI parameter has no value"))?;
    let user_data = agent_user_data(&AgentBootParams {
        region: REGION.to_string(),
        stack_name: stack.to_string(),
    });
    let data = RequestLaunchTemplateData::builder()
        .image_id(ami)
        .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .instance_metadata_tags(LaunchTemplateInstanceMetadataTagsState::Enabled)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name("/dev/xvda")
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .encrypted(true)
                        .volume_size(50)
                        .build(),
                )
                .build(),
        )
        .build();
    let output = aws_sdk_ec2::Client::new(sdk)
        .create_launch_template()
        .launch_template_name(format!("{stack}-agents"))
        .launch_template_data(data)
        .send()
        .await
        .map_err(|err| fail(aws_sdk_ec2::error::DisplayErrorContext(err)))?;
    let id = output
        .launch_template
        .and_then(|t| t.launch_template_id)
        .ok_or_else(|| fail("CreateLaunchTemplate answered no ID"))?;
    Ok(LaunchTemplateRef {
        id,
        version: "$Latest".to_string(),
    })
}

/// The scaler's lease table (partition key `pk`), as the stack defines it.
pub async fn create_lease_table(sdk: &aws_config::SdkConfig, table: &str) -> Result<(), String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let key = KeySchemaElement::builder()
        .attribute_name("pk")
        .key_type(KeyType::Hash)
        .build()
        .map_err(fail)?;
    let attribute = AttributeDefinition::builder()
        .attribute_name("pk")
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(fail)?;
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(table)
        .key_schema(key)
        .attribute_definitions(attribute)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|err| fail(aws_sdk_dynamodb::error::DisplayErrorContext(err)))?;
    Ok(())
}

/// The scaler's Jenkins credentials, as the stack's secret holds them.
pub async fn create_jenkins_secret(
    sdk: &aws_config::SdkConfig,
    name: &str,
    user: &str,
    token: &str,
) -> Result<String, String> {
    let value = serde_json::json!({ "user": user, "token": token }).to_string();
    let output = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .map_err(|err| fail(aws_sdk_secretsmanager::error::DisplayErrorContext(err)))?;
    output
        .arn
        .ok_or_else(|| fail("CreateSecret answered no ARN"))
}

/// Stores the fleet configuration where config-resolver would.
pub async fn put_fleet_config(
    sdk: &aws_config::SdkConfig,
    parameter: &str,
    config: &longshore::domain::fleet::FleetConfig,
) -> Result<(), String> {
    let text = serde_json::to_string(config).map_err(fail)?;
    longshore::adapters::aws::ssm::SsmParams::new(aws_sdk_ssm::Client::new(sdk))
        .put(parameter, &text)
        .await
        .map_err(fail)?;
    Ok(())
}
