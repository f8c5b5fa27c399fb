//! The scaler's lease: one DynamoDB item per stack, written with a condition so that only one
//! invocation acts at a time. An invocation holds the lease until it expires or it releases
//! it; an overlapping invocation finds it held and only observes.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::AwsError;

/// The IAM actions [`Lease`] calls (the template's roles are checked against it).
pub const IAM_ACTIONS: &[&str] = &["dynamodb:PutItem", "dynamodb:DeleteItem"];

/// A lease on one key of a DynamoDB table (partition key `pk`, a string).
#[derive(Debug, Clone)]
pub struct Lease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
}

impl Lease {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, stack: &str) -> Lease {
        Lease {
            client,
            table: table.to_string(),
            key: format!("queue-scaler#{stack}"),
        }
    }

    /// Takes or renews the lease for `owner` until `expires_at_ms`; `Ok(false)` when another
    /// owner holds an unexpired lease.
    pub async fn acquire(
        &self,
        owner: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool, AwsError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.key.clone()))
            .item("owner", AttributeValue::S(owner.to_string()))
            .item("expiresAt", AttributeValue::N(expires_at_ms.to_string()))
            .condition_expression("attribute_not_exists(pk) OR #owner = :me OR expiresAt < :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => {
                let err = AwsError::from_sdk("PutItem", &err);
                if err.code == "ConditionalCheckFailedException" {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Gives the lease up early, if `owner` still holds it.
    pub async fn release(&self, owner: &str) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.key.clone()))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = AwsError::from_sdk("DeleteItem", &err);
                if err.code == "ConditionalCheckFailedException" {
                    Ok(()) // someone else holds it now (ours expired): nothing to give up
                } else {
                    Err(err)
                }
            }
        }
    }
}
