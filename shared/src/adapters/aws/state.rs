//! recovery's memory between invocations, in the DynamoDB table the scaler's lease lives in
//! (partition key `pk`, a string). Every key starts with `recovery#<stack>#<kind>#` so the two
//! never collide and a scan can pick one kind:
//!
//! - `stop#<service>#<task ARN>`: one unexpected master stop (`at`, epoch seconds), written
//!   only if absent, so a redelivered event keeps the first time and is counted once.
//! - `alert#<key>`: an alert already sent (`until`, epoch seconds): the claim is a conditional
//!   write, so of two deliveries of the same event only one publishes.
//! - `drain#<instance>`: a pending master host drain, with the lifecycle action and deadline.
//!
//! Every item carries `expiresAt` (epoch seconds) for the table's TTL to clean up; reads
//! ignore expired items themselves, since DynamoDB deletes them only eventually.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::aws::autoscaling::LifecycleAction;
use crate::error::AwsError;

/// The IAM actions [`RecoveryState`] calls (the template's roles are checked against it).
pub const IAM_ACTIONS: &[&str] = &["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"];

/// A host drain waiting for its tasks to leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDrain {
    pub action: LifecycleAction,
    /// When to give up waiting (epoch seconds).
    pub deadline: i64,
}

/// recovery's items in the state table.
#[derive(Debug, Clone)]
pub struct RecoveryState {
    client: aws_sdk_dynamodb::Client,
    table: String,
    prefix: String,
}

type Item = HashMap<String, AttributeValue>;

impl RecoveryState {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, stack: &str) -> RecoveryState {
        RecoveryState {
            client,
            table: table.to_string(),
            prefix: format!("recovery#{stack}#"),
        }
    }

    /// Records an unexpected stop of `service`'s task; `false` when it was recorded before.
    pub async fn record_stop(
        &self,
        service: &str,
        task_arn: &str,
        at: i64,
        expires_at: i64,
    ) -> Result<bool, AwsError> {
        let key = format!("{}stop#{service}#{task_arn}", self.prefix);
        let item = HashMap::from([
            ("pk".to_string(), s(&key)),
            ("at".to_string(), n(at)),
            ("expiresAt".to_string(), n(expires_at)),
        ]);
        self.put_if_absent(item, None).await
    }

    /// The stop times recorded for `service` and not expired at `now`.
    pub async fn stops(&self, service: &str, now: i64) -> Result<Vec<i64>, AwsError> {
        let items = self
            .scan(&format!("{}stop#{service}#", self.prefix))
            .await?;
        Ok(items
            .iter()
            .filter(|item| num(item, "expiresAt").is_none_or(|e| e > now))
            .filter_map(|item| num(item, "at"))
            .collect())
    }

    /// Claims the right to send the alert `key` until `until`; `false` when an earlier
    /// claim still holds (the alert was sent already).
    pub async fn claim_alert(&self, key: &str, now: i64, until: i64) -> Result<bool, AwsError> {
        let item = HashMap::from([
            ("pk".to_string(), s(&format!("{}alert#{key}", self.prefix))),
            ("until".to_string(), n(until)),
            ("expiresAt".to_string(), n(until)),
        ]);
        self.put_if_absent(item, Some(now)).await
    }

    /// Gives a claim back (the alert could not be sent), so a retry sends it.
    pub async fn release_alert(&self, key: &str) -> Result<(), AwsError> {
        self.delete(&format!("{}alert#{key}", self.prefix)).await
    }

    /// Records a pending drain; `false` when one is pending already for that instance (its
    /// first deadline stands).
    pub async fn put_drain(&self, drain: &PendingDrain, expires_at: i64) -> Result<bool, AwsError> {
        let a = &drain.action;
        let item = HashMap::from([
            ("pk".to_string(), s(&self.drain_key(&a.instance_id))),
            ("instanceId".to_string(), s(&a.instance_id)),
            ("asg".to_string(), s(&a.asg_name)),
            ("hook".to_string(), s(&a.hook_name)),
            ("token".to_string(), s(&a.action_token)),
            ("deadline".to_string(), n(drain.deadline)),
            ("expiresAt".to_string(), n(expires_at)),
        ]);
        self.put_if_absent(item, None).await
    }

    /// Every pending drain. An item missing a field is skipped (and logged): it cannot be
    /// acted on, and its TTL removes it.
    pub async fn drains(&self) -> Result<Vec<PendingDrain>, AwsError> {
        let items = self.scan(&format!("{}drain#", self.prefix)).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let drain = parse_drain(item);
                if drain.is_none() {
                    tracing::warn!(pk = ?item.get("pk"), "unreadable drain item skipped");
                }
                drain
            })
            .collect())
    }

    /// Forgets a drain (done or given up); absent is fine.
    pub async fn delete_drain(&self, instance_id: &str) -> Result<(), AwsError> {
        self.delete(&self.drain_key(instance_id)).await
    }

    fn drain_key(&self, instance_id: &str) -> String {
        format!("{}drain#{instance_id}", self.prefix)
    }

    /// Puts `item` unless an item with its key exists (and, with `now`, has not run `until`
    /// out); `false` when the condition held it back.
    async fn put_if_absent(&self, item: Item, now: Option<i64>) -> Result<bool, AwsError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = match now {
            Some(now) => put
                .condition_expression("attribute_not_exists(pk) OR #until < :now")
                .expression_attribute_names("#until", "until")
                .expression_attribute_values(":now", n(now)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
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

    async fn scan(&self, prefix: &str) -> Result<Vec<Item>, AwsError> {
        scan_prefix(&self.client, &self.table, prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DeleteItem", &err))?;
        Ok(())
    }
}

/// Every item of `table` whose key starts with `prefix` (a scan: the table holds a handful
/// of items; the launch journal reads it this way too). Reads are strongly consistent: an
/// item written a moment ago by another invocation must be seen.
pub(crate) async fn scan_prefix(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    prefix: &str,
) -> Result<Vec<Item>, AwsError> {
    let mut items = Vec::new();
    let mut pages = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .filter_expression("begins_with(pk, :prefix)")
        .expression_attribute_values(":prefix", s(prefix))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| AwsError::from_sdk("Scan", &err))?;
        items.extend(page.items.unwrap_or_default());
    }
    Ok(items)
}

fn parse_drain(item: &Item) -> Option<PendingDrain> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(PendingDrain {
        action: LifecycleAction {
            instance_id: text("instanceId")?,
            asg_name: text("asg")?,
            hook_name: text("hook")?,
            action_token: text("token")?,
        },
        deadline: num(item, "deadline")?,
    })
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn num(item: &Item, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}
