//! Finds the masters: each master is its own ECS service (desired count 1, awsvpc), and the
//! scaler and the agents talk to its task's private IP directly, never through the ALB.
//! [`EcsHosts`] drains the container instance on a master host before the host terminates.

use aws_sdk_ecs::types::DesiredStatus;

use crate::error::AwsError;

/// The IAM actions [`EcsMasters`] calls (the template's roles are checked against it).
pub const MASTERS_IAM_ACTIONS: &[&str] = &["ecs:ListTasks", "ecs:DescribeTasks"];
/// The IAM actions [`EcsHosts`] calls.
pub const HOSTS_IAM_ACTIONS: &[&str] = &[
    "ecs:ListContainerInstances",
    "ecs:DescribeContainerInstances",
    "ecs:UpdateContainerInstancesState",
    "ecs:ListTasks",
    "ecs:DescribeTasks",
];

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

/// The masters' container instances (EC2 hosts), for draining one before it terminates.
#[derive(Debug, Clone)]
pub struct EcsHosts {
    client: aws_sdk_ecs::Client,
    cluster: String,
}

impl EcsHosts {
    pub fn new(client: aws_sdk_ecs::Client, cluster: &str) -> EcsHosts {
        EcsHosts {
            client,
            cluster: cluster.to_string(),
        }
    }

    /// The container instance ARN on EC2 instance `ec2_instance_id`; `None` when it never
    /// registered or is gone. The match is made here on DescribeContainerInstances' answer:
    /// moto ignores ListContainerInstances' `filter`, and a client-side check is right anyway.
    pub async fn container_instance(
        &self,
        ec2_instance_id: &str,
    ) -> Result<Option<String>, AwsError> {
        let mut pages = self
            .client
            .list_container_instances()
            .cluster(&self.cluster)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| AwsError::from_sdk("ListContainerInstances", &err))?;
            arns.extend(page.container_instance_arns.unwrap_or_default());
        }
        // DescribeContainerInstances takes at most 100 per call.
        for chunk in arns.chunks(100) {
            let described = self
                .client
                .describe_container_instances()
                .cluster(&self.cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DescribeContainerInstances", &err))?;
            if let Some(found) = described
                .container_instances()
                .iter()
                .find(|ci| ci.ec2_instance_id() == Some(ec2_instance_id))
            {
                return Ok(found.container_instance_arn().map(str::to_string));
            }
        }
        Ok(None)
    }

    /// Sets the container instance DRAINING (again is a no-op): ECS stops placing tasks there
    /// and the services start replacements elsewhere.
    pub async fn drain(&self, container_instance_arn: &str) -> Result<(), AwsError> {
        self.client
            .update_container_instances_state()
            .cluster(&self.cluster)
            .container_instances(container_instance_arn)
            .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("UpdateContainerInstancesState", &err))?;
        Ok(())
    }

    /// The tasks on the container instance that have not stopped yet (a task still stopping
    /// counts: it runs until it has stopped). Filtered on DescribeTasks' `lastStatus`, since
    /// moto's ListTasks also lists stopped tasks.
    pub async fn live_tasks(&self, container_instance_arn: &str) -> Result<Vec<String>, AwsError> {
        let arns = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .container_instance(container_instance_arn)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("ListTasks", &err))?
            .task_arns
            .unwrap_or_default();
        let mut live = Vec::new();
        for chunk in arns.chunks(100) {
            let tasks = self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DescribeTasks", &err))?
                .tasks
                .unwrap_or_default();
            live.extend(
                tasks
                    .iter()
                    .filter(|task| task.container_instance_arn() == Some(container_instance_arn))
                    .filter(|task| task.last_status() != Some("STOPPED"))
                    .filter_map(|task| task.task_arn().map(str::to_string)),
            );
        }
        Ok(live)
    }
}
