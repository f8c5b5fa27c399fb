//! SSM Parameter Store adapter: agent secrets as SecureString parameters under
//! `/longshore/<stack>/agents/<instance-id>`, the path the agent's boot polls.

use aws_sdk_ssm::types::ParameterType;

use crate::error::AwsError;

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
