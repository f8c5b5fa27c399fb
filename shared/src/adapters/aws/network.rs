//! EC2 lookups config-resolver makes at deploy time: subnets (zone and VPC), security groups
//! (VPC), instance type offerings per zone, and whether the agents' launch template exists.
//! Read-only calls; each answers the facts the pure resolver checks.

use aws_sdk_ec2::types::{Filter, LocationType};

use crate::domain::custom_resource::{SecurityGroupFact, SubnetFact};
use crate::error::AwsError;

/// Read-only EC2 lookups.
#[derive(Debug, Clone)]
pub struct Ec2Lookups {
    client: aws_sdk_ec2::Client,
}

fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

impl Ec2Lookups {
    /// Lookups over a client built once at cold start.
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Ec2Lookups { client }
    }

    /// The subnets among `ids` that exist. Filtering by `subnet-id` (rather than passing
    /// `SubnetIds`) makes an unknown ID a missing row instead of an error for the whole call,
    /// so the caller can name the property that holds it.
    pub async fn subnets(&self, ids: &[String]) -> Result<Vec<SubnetFact>, AwsError> {
        let out = self
            .client
            .describe_subnets()
            .filters(filter("subnet-id", ids))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeSubnets", &err))?;
        Ok(out
            .subnets()
            .iter()
            .filter_map(|s| {
                Some(SubnetFact {
                    id: s.subnet_id()?.to_string(),
                    availability_zone: s.availability_zone()?.to_string(),
                    vpc_id: s.vpc_id()?.to_string(),
                })
            })
            .collect())
    }

    /// The security groups among `ids` that exist (filtered by `group-id`, as for subnets).
    pub async fn security_groups(
        &self,
        ids: &[String],
    ) -> Result<Vec<SecurityGroupFact>, AwsError> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter("group-id", ids))
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DescribeSecurityGroups", &err))?;
        Ok(out
            .security_groups()
            .iter()
            .filter_map(|g| {
                Some(SecurityGroupFact {
                    id: g.group_id()?.to_string(),
                    vpc_id: g.vpc_id()?.to_string(),
                })
            })
            .collect())
    }

    /// `(instance type, zone)` pairs offered among `types` × `zones`.
    pub async fn offerings(
        &self,
        types: &[String],
        zones: &[String],
    ) -> Result<Vec<(String, String)>, AwsError> {
        let mut pairs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(filter("instance-type", types))
                .filters(filter("location", zones))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|err| AwsError::from_sdk("DescribeInstanceTypeOfferings", &err))?;
            pairs.extend(out.instance_type_offerings().iter().filter_map(|o| {
                Some((
                    o.instance_type()?.as_str().to_string(),
                    o.location()?.to_string(),
                ))
            }));
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(pairs)
    }

    /// Whether the launch template exists. AWS answers an unknown ID with
    /// `InvalidLaunchTemplateId.NotFound` (or `.Malformed`); moto 5.2.5 answers an empty list.
    pub async fn launch_template_exists(&self, id: &str) -> Result<bool, AwsError> {
        match self
            .client
            .describe_launch_templates()
            .launch_template_ids(id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .launch_templates()
                .iter()
                .any(|t| t.launch_template_id() == Some(id))),
            Err(err) => {
                let err = AwsError::from_sdk("DescribeLaunchTemplates", &err);
                if err.code.starts_with("InvalidLaunchTemplateId") {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// Every lookup config-resolver makes, over the three SDK clients it needs (built once).
#[derive(Debug, Clone)]
pub struct AwsLookups {
    pub ec2: Ec2Lookups,
    pub iam: crate::adapters::aws::iam::IamLookups,
    pub cfn: crate::adapters::aws::cloudformation::CfnLookups,
}

impl AwsLookups {
    /// All lookups from one SDK configuration.
    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        AwsLookups {
            ec2: Ec2Lookups::new(aws_sdk_ec2::Client::new(config)),
            iam: crate::adapters::aws::iam::IamLookups::new(aws_sdk_iam::Client::new(config)),
            cfn: crate::adapters::aws::cloudformation::CfnLookups::new(
                aws_sdk_cloudformation::Client::new(config),
            ),
        }
    }
}
