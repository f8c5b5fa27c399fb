//! The queue-scaler's launch journal: its memory of recent launches, kept in the DynamoDB table
//! its lease lives in, so that it survives the process.
//!
//! An invocation can die between sending a `RunInstances` and learning its outcome (cut off at
//! its deadline, its answer lost), and EC2 lists a fresh instance only after a while. A new
//! process would then see neither the instance nor the launch, plan the job again and, under a
//! token of its own, start a second instance past a cap. So every launch is written down
//! before it is sent, completed with its instance once EC2 answers, and forgotten minutes
//! later or once EC2 lists the instance as gone (until then the scaler counts it whenever EC2
//! leaves it out). A new invocation reads the journal before it acts.
//!
//! Items are keyed `queue-scaler#<stack>#launch#<client token>` (the lease's key is
//! `queue-scaler#<stack>`) and carry `expiresAt` (epoch seconds) for the table's TTL.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::aws::ec2::LaunchSpec;
use crate::adapters::aws::state::scan_prefix;
use crate::error::AwsError;

/// The IAM actions [`DynamoLaunchJournal`] calls (the template's roles are checked against it).
pub const IAM_ACTIONS: &[&str] = &["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"];

/// How long an item outlives its launch before the table's TTL may delete it (the scaler
/// forgets launches after minutes; this only bounds what a crash leaves behind).
const EXPIRES_AFTER_SECS: i64 = 24 * 60 * 60;

/// One launch as written down: the exact request (its token and candidate), when it was
/// first sent and, once EC2 answered, its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRecord {
    pub spec: LaunchSpec,
    /// When the launch was first sent (epoch milliseconds).
    pub since_ms: i64,
    pub instance_id: Option<String>,
}

/// The journal in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoLaunchJournal {
    client: aws_sdk_dynamodb::Client,
    table: String,
    prefix: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoLaunchJournal {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, stack: &str) -> Self {
        DynamoLaunchJournal {
            client,
            table: table.to_string(),
            prefix: format!("queue-scaler#{stack}#launch#"),
        }
    }

    /// Writes the record, replacing the one of the same token.
    pub async fn record(&self, record: &LaunchRecord) -> Result<(), AwsError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(record)))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("PutItem", &err))?;
        Ok(())
    }

    /// Forgets the launch of `token`; absent is fine.
    pub async fn forget(&self, token: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("{}{token}", self.prefix)))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DeleteItem", &err))?;
        Ok(())
    }

    /// Every launch written down. An unreadable item is logged and skipped: it names no
    /// request that could be sent again, and its TTL removes it.
    pub async fn recall(&self) -> Result<Vec<LaunchRecord>, AwsError> {
        let items = scan_prefix(&self.client, &self.table, &self.prefix).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let record = parse_record(item);
                if record.is_none() {
                    tracing::warn!(pk = ?item.get("pk"), "unreadable launch record skipped");
                }
                record
            })
            .collect())
    }

    fn item(&self, record: &LaunchRecord) -> Item {
        let spec = &record.spec;
        let mut item = HashMap::from([
            (
                "pk".to_string(),
                s(&format!("{}{}", self.prefix, spec.client_token)),
            ),
            ("token".to_string(), s(&spec.client_token)),
            ("master".to_string(), s(&spec.master)),
            ("masterUrl".to_string(), s(&spec.master_url)),
            ("label".to_string(), s(&spec.label)),
            ("instanceType".to_string(), s(&spec.instance_type)),
            ("subnetId".to_string(), s(&spec.subnet_id)),
            ("spot".to_string(), AttributeValue::Bool(spec.spot)),
            ("since".to_string(), n(record.since_ms)),
            (
                "expiresAt".to_string(),
                n(record.since_ms / 1000 + EXPIRES_AFTER_SECS),
            ),
        ]);
        if let Some(id) = &record.instance_id {
            item.insert("instanceId".to_string(), s(id));
        }
        item
    }
}

fn parse_record(item: &Item) -> Option<LaunchRecord> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(LaunchRecord {
        spec: LaunchSpec {
            master: text("master")?,
            master_url: text("masterUrl")?,
            label: text("label")?,
            instance_type: text("instanceType")?,
            subnet_id: text("subnetId")?,
            spot: *item.get("spot")?.as_bool().ok()?,
            client_token: text("token")?,
        },
        since_ms: item.get("since")?.as_n().ok()?.parse().ok()?,
        instance_id: text("instanceId"),
    })
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> DynamoLaunchJournal {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        DynamoLaunchJournal::new(aws_sdk_dynamodb::Client::from_conf(config), "t", "ci")
    }

    fn record(instance_id: Option<&str>) -> LaunchRecord {
        LaunchRecord {
            spec: LaunchSpec {
                master: "master-a".to_string(),
                master_url: "http://10.0.0.5:8080/".to_string(),
                label: "docker".to_string(),
                instance_type: "c6i.large".to_string(),
                subnet_id: "subnet-1".to_string(),
                spot: true,
                client_token: "ls-abc-r1".to_string(),
            },
            since_ms: 1_700_000_000_123,
            instance_id: instance_id.map(str::to_string),
        }
    }

    #[test]
    fn a_record_reads_back_as_written_under_its_token() {
        let journal = journal();
        for with_instance in [None, Some("i-0abc")] {
            let written = record(with_instance);
            let item = journal.item(&written);
            assert_eq!(
                item["pk"].as_s().unwrap(),
                "queue-scaler#ci#launch#ls-abc-r1"
            );
            assert_eq!(item["expiresAt"].as_n().unwrap(), "1700086400");
            assert_eq!(parse_record(&item), Some(written));
        }
    }

    #[test]
    fn an_item_missing_a_field_is_unreadable() {
        let journal = journal();
        for field in ["token", "master", "subnetId", "spot", "since"] {
            let mut item = journal.item(&record(None));
            item.remove(field);
            assert_eq!(parse_record(&item), None, "{field}");
        }
        let mut item = journal.item(&record(None));
        item.insert("spot".to_string(), s("yes"));
        assert_eq!(parse_record(&item), None);
    }
}
