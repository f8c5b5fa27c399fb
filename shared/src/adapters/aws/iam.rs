//! IAM lookup config-resolver makes at deploy time: does the agents' instance profile exist.

use crate::error::AwsError;

/// Read-only IAM lookups.
#[derive(Debug, Clone)]
pub struct IamLookups {
    client: aws_sdk_iam::Client,
}

impl IamLookups {
    /// Lookups over a client built once at cold start.
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamLookups { client }
    }

    /// The instance profile's ARN; `None` when there is no profile of that name.
    pub async fn instance_profile_arn(&self, name: &str) -> Result<Option<String>, AwsError> {
        match self
            .client
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.instance_profile().map(|p| p.arn().to_string())),
            Err(err) => {
                let err = AwsError::from_sdk("GetInstanceProfile", &err);
                if err.code == "NoSuchEntity" {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }
}
