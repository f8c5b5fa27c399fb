//! CloudFormation lookup config-resolver makes at deploy time: the physical ID of a resource
//! of another stack (`{Stack, LogicalId}` properties, e.g. a shared network stack's subnets).

use crate::error::AwsError;

/// Read-only CloudFormation lookups.
#[derive(Debug, Clone)]
pub struct CfnLookups {
    client: aws_sdk_cloudformation::Client,
}

impl CfnLookups {
    /// Lookups over a client built once at cold start.
    pub fn new(client: aws_sdk_cloudformation::Client) -> Self {
        CfnLookups { client }
    }

    /// The physical ID of `logical_id` in `stack`; `None` when the stack or the resource does
    /// not exist (CloudFormation answers both with `ValidationError`) or it has no physical ID
    /// yet.
    pub async fn stack_resource(
        &self,
        stack: &str,
        logical_id: &str,
    ) -> Result<Option<String>, AwsError> {
        match self
            .client
            .describe_stack_resource()
            .stack_name(stack)
            .logical_resource_id(logical_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .stack_resource_detail()
                .and_then(|d| d.physical_resource_id())
                .filter(|id| !id.is_empty())
                .map(str::to_string)),
            Err(err) => {
                let err = AwsError::from_sdk("DescribeStackResource", &err);
                if err.code == "ValidationError" {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }
}
