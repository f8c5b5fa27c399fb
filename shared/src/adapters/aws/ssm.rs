//! SSM Parameter Store adapter: agent secrets as SecureString parameters under
//! `/longshore/<stack>/agents/<instance-id>`, the path the agent's boot polls.
//!
//! Each agent secret is tagged [`INSTANCE_ARN_TAG`] = the ARN of the instance it is for. The
//! agent role may read a parameter of that path only when this tag equals the
//! `ec2:SourceInstanceARN` of the caller (infra/template.yaml, `AgentRole`), so an agent reads
//! its own secret and no other. The ARN is built from the parameter's own ARN (partition,
//! region and account, read back once per cold start) and the instance ID the path ends with.

use std::sync::{Arc, OnceLock};

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

use crate::error::AwsError;

/// The IAM actions of [`SsmSecrets::put_secret`] (the template's roles are checked against
/// these lists).
pub const PUT_SECRET_IAM_ACTIONS: &[&str] = &[
    "ssm:PutParameter",
    "ssm:GetParameter",
    "ssm:AddTagsToResource",
];
/// The IAM actions of [`SsmSecrets::delete_secret`].
pub const DELETE_SECRET_IAM_ACTIONS: &[&str] = &["ssm:DeleteParameter"];

/// The tag on an agent secret naming the instance allowed to read it.
pub const INSTANCE_ARN_TAG: &str = "longshore:instance-arn";

/// The SSM path of an agent's secret; the agent role may read only its own.
pub fn agent_secret_path(stack: &str, instance_id: &str) -> String {
    format!("/longshore/{stack}/agents/{instance_id}")
}

/// `arn:<partition>:ec2:<region>:<account>:instance/` from a parameter's ARN
/// (`arn:<partition>:ssm:<region>:<account>:parameter/…`); `None` when it is not one.
pub fn instance_arn_prefix(parameter_arn: &str) -> Option<String> {
    let mut parts = parameter_arn.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let ok = arn == "arn"
        && service == "ssm"
        && !partition.is_empty()
        && !region.is_empty()
        && !account.is_empty()
        && resource.starts_with("parameter/");
    ok.then(|| format!("arn:{partition}:ec2:{region}:{account}:instance/"))
}

/// A request this adapter refuses to make, or an answer it cannot use.
fn invalid(operation: &'static str, message: String) -> AwsError {
    AwsError {
        operation,
        code: "InvalidInput".to_string(),
        message,
    }
}

/// Agent secrets in SSM.
#[derive(Debug, Clone)]
pub struct SsmSecrets {
    client: aws_sdk_ssm::Client,
    /// [`instance_arn_prefix`] of this account and region, learned from the first secret.
    instance_arn_prefix: Arc<OnceLock<String>>,
}

impl SsmSecrets {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmSecrets {
            client,
            instance_arn_prefix: Arc::new(OnceLock::new()),
        }
    }

    /// Writes (or overwrites, for a retried tick) an agent's secret at `path` (which ends with
    /// the instance ID, see [`agent_secret_path`]) and tags it with the instance's ARN. Until
    /// the tag is on, the agent's read is refused and its boot keeps polling.
    pub async fn put_secret(&self, path: &str, secret: &str) -> Result<(), AwsError> {
        let instance_id = match path.rsplit_once('/') {
            Some((_, id)) if !id.is_empty() => id,
            _ => {
                return Err(invalid(
                    "PutParameter",
                    format!("agent secret path {path:?} does not end with an instance ID"),
                ));
            }
        };
        // Overwrite and Tags cannot go together in one PutParameter: tags are added after.
        self.client
            .put_parameter()
            .name(path)
            .value(secret)
            .r#type(ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("PutParameter", &err))?;
        let prefix = self.instance_arn_prefix(path).await?;
        let tag = Tag::builder()
            .key(INSTANCE_ARN_TAG)
            .value(format!("{prefix}{instance_id}"))
            .build()
            .map_err(|err| invalid("AddTagsToResource", err.to_string()))?;
        self.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(path)
            .tags(tag)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("AddTagsToResource", &err))?;
        Ok(())
    }

    /// The cached instance ARN prefix, or the one read from `path`'s own ARN (the parameter
    /// was just written; its value is not decrypted).
    async fn instance_arn_prefix(&self, path: &str) -> Result<String, AwsError> {
        if let Some(prefix) = self.instance_arn_prefix.get() {
            return Ok(prefix.clone());
        }
        let out = self
            .client
            .get_parameter()
            .name(path)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("GetParameter", &err))?;
        let arn = out
            .parameter()
            .and_then(|p| p.arn())
            .ok_or_else(|| AwsError::missing("GetParameter", "Parameter.ARN"))?;
        let prefix = instance_arn_prefix(arn)
            .ok_or_else(|| invalid("GetParameter", format!("{arn:?} is not a parameter ARN")))?;
        Ok(self.instance_arn_prefix.get_or_init(|| prefix).clone())
    }

    /// Removes an agent's secret; one that is already gone is not an error.
    pub async fn delete_secret(&self, path: &str) -> Result<(), AwsError> {
        match self.client.delete_parameter().name(path).send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = AwsError::from_sdk("DeleteParameter", &err);
                if err.code == "ParameterNotFound" {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// SSM's Standard tier holds values up to 4 KB (4096 bytes); larger ones need the Advanced
/// tier (up to 8 KB), which costs money, so it is chosen only when needed.
pub const STANDARD_TIER_MAX_BYTES: usize = 4096;

/// A parameter's value and version as SSM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredParameter {
    pub value: String,
    pub version: i64,
}

/// The tier a value of this size needs.
pub fn tier_for(value: &str) -> aws_sdk_ssm::types::ParameterTier {
    if value.len() > STANDARD_TIER_MAX_BYTES {
        aws_sdk_ssm::types::ParameterTier::Advanced
    } else {
        aws_sdk_ssm::types::ParameterTier::Standard
    }
}

/// Plain (String) configuration parameters: the CasC and fleet configuration config-resolver
/// writes at deploy time. Never used for secrets (no SecureString here).
#[derive(Debug, Clone)]
pub struct SsmParams {
    client: aws_sdk_ssm::Client,
}

impl SsmParams {
    /// Parameters over a client built once at cold start.
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmParams { client }
    }

    /// A client from the shared SDK configuration (built once at cold start).
    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        SsmParams::new(aws_sdk_ssm::Client::new(config))
    }

    /// Writes (or overwrites) a String parameter, Advanced tier when over 4 KB; returns the
    /// new version.
    pub async fn put(&self, name: &str, value: &str) -> Result<i64, AwsError> {
        let out = self
            .client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::String)
            .tier(tier_for(value))
            .overwrite(true)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("PutParameter", &err))?;
        Ok(out.version())
    }

    /// Reads a parameter; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<StoredParameter>, AwsError> {
        match self.client.get_parameter().name(name).send().await {
            Ok(out) => {
                let parameter = out
                    .parameter()
                    .ok_or_else(|| AwsError::missing("GetParameter", "Parameter"))?;
                Ok(Some(StoredParameter {
                    value: parameter.value().unwrap_or_default().to_string(),
                    version: parameter.version(),
                }))
            }
            Err(err) => {
                let err = AwsError::from_sdk("GetParameter", &err);
                if err.code == "ParameterNotFound" {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Deletes every parameter under `path` (recursively); returns the names deleted. Nothing
    /// there (already deleted, or never created) is not an error.
    pub async fn delete_under(&self, path: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_parameters_by_path()
                .path(path.trim_end_matches('/'))
                .recursive(true)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("GetParametersByPath", &err))?;
            names.extend(
                out.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        // DeleteParameters takes at most 10 names; names already gone come back as invalid,
        // which is what a repeated Delete wants.
        for chunk in names.chunks(10) {
            self.client
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DeleteParameters", &err))?;
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_arns_take_partition_region_and_account_from_the_parameter() {
        assert_eq!(
            instance_arn_prefix(
                "arn:aws:ssm:eu-west-1:123456789012:parameter/longshore/ci/agents/i-0abc"
            ),
            Some("arn:aws:ec2:eu-west-1:123456789012:instance/".to_string())
        );
        assert_eq!(
            instance_arn_prefix("arn:aws-cn:ssm:cn-north-1:123456789012:parameter/x"),
            Some("arn:aws-cn:ec2:cn-north-1:123456789012:instance/".to_string())
        );
        for bad in [
            "",
            "arn:aws:ssm:eu-west-1:123456789012:document/x",
            "arn:aws:s3:eu-west-1:123456789012:parameter/x",
            "arn:aws:ssm::123456789012:parameter/x",
            "not-an-arn",
        ] {
            assert_eq!(instance_arn_prefix(bad), None, "{bad}");
        }
    }
}
