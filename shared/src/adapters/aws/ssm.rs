//! SSM Parameter Store adapter: agent secrets as SecureString parameters under
//! `/longshore/<stack>/agents/<instance-id>`, the path the agent's boot polls.

use aws_sdk_ssm::types::ParameterType;

use crate::error::AwsError;

/// The IAM actions of [`SsmSecrets::put_secret`] (the template's roles are checked against
/// these lists).
pub const PUT_SECRET_IAM_ACTIONS: &[&str] = &["ssm:PutParameter"];
/// The IAM actions of [`SsmSecrets::delete_secret`].
pub const DELETE_SECRET_IAM_ACTIONS: &[&str] = &["ssm:DeleteParameter"];

/// The SSM path of an agent's secret; the agent role may read only its own.
pub fn agent_secret_path(stack: &str, instance_id: &str) -> String {
    format!("/longshore/{stack}/agents/{instance_id}")
}

/// Agent secrets in SSM.
#[derive(Debug, Clone)]
pub struct SsmSecrets {
    client: aws_sdk_ssm::Client,
}

impl SsmSecrets {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmSecrets { client }
    }

    /// Writes (or overwrites, for a retried tick) an agent's secret.
    pub async fn put_secret(&self, path: &str, secret: &str) -> Result<(), AwsError> {
        self.client
            .put_parameter()
            .name(path)
            .value(secret)
            .r#type(ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("PutParameter", &err))?;
        Ok(())
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
