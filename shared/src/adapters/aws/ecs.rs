//! Finds the masters: each master is its own ECS service (desired count 1, awsvpc), and the
//! scaler and the agents talk to its task's private IP directly, never through the ALB.

use aws_sdk_ecs::types::DesiredStatus;

use crate::error::AwsError;

/// A master's current address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddress {
    /// The service name, which is the master's name in tags and the fleet configuration.
    pub name: String,
    /// `http://<task private IP>:<port>/`
    pub url: String,
}

/// ECS lookups of the masters' tasks.
#[derive(Debug, Clone)]
pub struct EcsMasters {
    client: aws_sdk_ecs::Client,
    cluster: String,
    port: u16,
}

impl EcsMasters {
    pub fn new(client: aws_sdk_ecs::Client, cluster: &str, port: u16) -> EcsMasters {
        EcsMasters {
            client,
            cluster: cluster.to_string(),
            port,
        }
    }

    /// The running task of each service; a service without one is left out (that master is
    /// gone for now, and its agents are orphans once it is replaced). During a deployment a
    /// service may run two tasks: the newest one is the master.
    pub async fn find(&self, services: &[String]) -> Result<Vec<MasterAddress>, AwsError> {
        let mut found = Vec::new();
        for service in services {
            let arns = self
                .client
                .list_tasks()
                .cluster(&self.cluster)
                .service_name(service)
                .desired_status(DesiredStatus::Running)
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("ListTasks", &err))?
                .task_arns
                .unwrap_or_default();
            if arns.is_empty() {
                continue;
            }
            let tasks = self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(arns))
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DescribeTasks", &err))?
                .tasks
                .unwrap_or_default();
            let newest = tasks
                .iter()
                .filter(|task| task.last_status() == Some("RUNNING"))
                .filter_map(|task| {
                    Some((
                        task.started_at().map(|t| t.secs()).unwrap_or(0),
                        private_ip(task)?,
                    ))
                })
                .max_by_key(|(started, _)| *started);
            if let Some((_, ip)) = newest {
                found.push(MasterAddress {
                    name: service.clone(),
                    url: format!("http://{ip}:{}/", self.port),
                });
            }
        }
        Ok(found)
    }
}

/// The task's ENI address (awsvpc network mode).
fn private_ip(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.attachments()
        .iter()
        .flat_map(|attachment| attachment.details())
        .find(|detail| detail.name() == Some("privateIPv4Address"))
        .and_then(|detail| detail.value())
        .map(str::to_string)
}
