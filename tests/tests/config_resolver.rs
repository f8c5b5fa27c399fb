//! config-resolver (`Custom::JenkinsConfig`) end to end: the real request fixtures against moto
//! with a local HTTP listener standing in for the pre-signed ResponseURL; bad properties; a
//! resolver that hangs; an unreachable ResponseURL; golden files of the rendered CasC and fleet
//! configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::RequestLaunchTemplateData;
use longshore::adapters::aws::network::AwsLookups;
use longshore::adapters::aws::ssm::{SsmParams, StoredParameter};
use longshore::adapters::cfn_response::{HttpResponder, ResponseError, RetryPolicy};
use longshore::domain::custom_resource::{
    Facts, Response, SecurityGroupFact, Status, SubnetFact, parse_properties, resolve,
};
use longshore::domain::fleet::FleetConfig;
use longshore::domain::render::casc::master_casc;
use longshore::domain::render::fleet::{fleet_config, fleet_json};
use longshore::error::AwsError;
use longshore::handlers::config_resolver::{Deps, handle};
use longshore::ports::{CfnResponder, Lookups, Params};
use longshore_farm::moto::MotoServer;
use longshore_tests::{init_tracing, workspace_root};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn fixture(name: &str) -> Value {
    let path = workspace_root()
        .join("../shared/fixtures/aws/cloudformation-custom-resource")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// One request the listener received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    content_type: Option<String>,
    body: String,
}

/// A loopback HTTP listener standing in for the pre-signed S3 URL: records every request and
/// answers 500 to the first `fail_first`, then 200.
struct Listener {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Listener {
    async fn start(fail_first: usize) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let header_end = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
                    let mut lines = head.lines();
                    let first: Vec<String> = lines
                        .next()
                        .unwrap_or_default()
                        .split(' ')
                        .map(str::to_string)
                        .collect();
                    let mut length = 0usize;
                    let mut content_type = None;
                    for line in lines {
                        if let Some((name, value)) = line.split_once(':') {
                            match name.trim().to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap_or(0),
                                "content-type" => content_type = Some(value.trim().to_string()),
                                _ => {}
                            }
                        }
                    }
                    while buffer.len() < header_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buffer[header_end..]).to_string();
                    let count = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Recorded {
                            method: first.first().cloned().unwrap_or_default(),
                            target: first.get(1).cloned().unwrap_or_default(),
                            content_type,
                            body,
                        });
                        seen.len()
                    };
                    let status = if count <= fail_first {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = socket
                        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        });
        Listener {
            url: format!("http://127.0.0.1:{port}/cr-response-key?sig-params=sig-values"),
            requests,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        attempt_timeout: Duration::from_secs(2),
    }
}

/// A copy of a fixture with the ResponseURL pointed at `url` and, when given, longshore's
/// properties in place of the sample's.
fn request_from(name: &str, url: &str, properties: Option<&Value>) -> Value {
    let mut request = fixture(name);
    request["ResponseURL"] = json!(url);
    if let Some(properties) = properties {
        request["ResourceProperties"] = properties.clone();
    }
    request
}

/// What moto needs to hold for a good `Custom::JenkinsConfig`.
struct World {
    moto: MotoServer,
    subnets: Vec<(String, String)>,
    security_group: String,
    other_vpc_group: String,
    profile_arn: String,
    launch_template: String,
}

impl World {
    async fn new() -> World {
        init_tracing();
        let moto = MotoServer::start().expect("moto");
        let net = moto.prepare_network().await.expect("network");
        let conf = moto.sdk_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let iam = aws_sdk_iam::Client::new(&conf);
        let security_group = ec2
            .create_security_group()
            .group_name("ci-agents")
            .description("agents")
            .vpc_id(&net.vpc_id)
            .send()
            .await
            .expect("CreateSecurityGroup")
            .group_id()
            .expect("group id")
            .to_string();
        let other_vpc = ec2
            .create_vpc()
            .cidr_block("10.9.0.0/16")
            .send()
            .await
            .expect("CreateVpc");
        let other_vpc_group = ec2
            .create_security_group()
            .group_name("elsewhere")
            .description("another vpc")
            .vpc_id(other_vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id"))
            .send()
            .await
            .expect("CreateSecurityGroup")
            .group_id()
            .expect("group id")
            .to_string();
        let profile_arn = iam
            .create_instance_profile()
            .instance_profile_name("ci-agent")
            .send()
            .await
            .expect("CreateInstanceProfile")
            .instance_profile()
            .expect("profile")
            .arn()
            .to_string();
        let launch_template = ec2
            .create_launch_template()
            .launch_template_name("ci-agents")
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id("ami-12c6146b")
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplate")
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .expect("template id")
            .to_string();
        World {
            subnets: net
                .subnets
                .iter()
                .map(|s| (s.subnet_id.clone(), s.availability_zone.clone()))
                .collect(),
            moto,
            security_group,
            other_vpc_group,
            profile_arn,
            launch_template,
        }
    }

    fn properties(&self) -> Value {
        json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
            "LaunchTemplate": self.launch_template,
            "LaunchTemplateVersion": "$Latest",
            "Subnets": [self.subnets[0].0, self.subnets[1].0],
            "SecurityGroups": [self.security_group],
            "InstanceProfile": self.profile_arn,
            "Masters": [{"Name": "master-a"}, {"Name": "master-b"}],
            "JenkinsUrl": "https://jenkins.example.com",
            "MaxAgents": "20",
            "Labels": [
                // g7e.2xlarge is offered in us-east-1a but not us-east-1b (moto's offering data).
                {"Name": "docker", "NodeLabels": ["docker", "linux"], "Executors": "2",
                 "InstanceTypes": ["g7e.2xlarge", "c6i.large"], "MaxPerMaster": "5",
                 "WarmMinimum": "1", "Spot": "prefer"},
                {"Name": "small", "InstanceTypes": ["t3.micro"], "MaxPerMaster": "3"}
            ]
        })
    }

    async fn deps(&self) -> Deps<AwsLookups, SsmParams, HttpResponder> {
        let conf = self.moto.sdk_config().await;
        let mut deps = Deps::new(
            AwsLookups::from_conf(&conf),
            SsmParams::from_conf(&conf),
            HttpResponder::new(fast_policy()).expect("http client"),
        );
        deps.answer_margin = Duration::from_secs(5);
        deps
    }

    async fn parameter(&self, name: &str) -> Option<String> {
        let ssm = aws_sdk_ssm::Client::new(&self.moto.sdk_config().await);
        match ssm.get_parameter().name(name).send().await {
            Ok(out) => out.parameter().and_then(|p| p.value()).map(str::to_string),
            Err(_) => None,
        }
    }
}

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The fixtures as CloudFormation sends them, and adapted to longshore's properties, on moto
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sample_fixtures_are_answered_naming_the_missing_property() {
    let world = World::new().await;
    let deps = world.deps().await;
    let listener = Listener::start(0).await;

    for name in [
        "rust-runtime-create-request.json",
        "aws-lambda-go-cloudformation-event.json",
    ] {
        let response = handle(&deps, request_from(name, &listener.url, None), LONG)
            .await
            .expect(name);
        assert_eq!(response.status, Status::Failed, "{name}");
        assert_eq!(
            response.reason.as_deref(),
            Some("property LaunchTemplate: is required"),
            "{name}"
        );
        assert!(response.physical_resource_id.contains(".failed-"), "{name}");
    }
    let update = fixture("rust-runtime-update-request.json");
    let response = handle(
        &deps,
        request_from("rust-runtime-update-request.json", &listener.url, None),
        LONG,
    )
    .await
    .expect("update");
    assert_eq!(response.status, Status::Failed);
    assert_eq!(response.physical_resource_id, update["PhysicalResourceId"]);
    assert_eq!(response.request_id, update["RequestId"]);

    // A Delete of an id longshore never issued succeeds and touches nothing.
    let response = handle(
        &deps,
        request_from("rust-runtime-delete-request.json", &listener.url, None),
        LONG,
    )
    .await
    .expect("delete");
    assert_eq!(response.status, Status::Success);
    assert_eq!(
        response.physical_resource_id,
        "custom-resource-f4bd5382-3de3-4caf-b7ad-1be06b899647"
    );

    let seen = listener.requests();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.method, "PUT");
        assert_eq!(request.target, "/cr-response-key?sig-params=sig-values");
        assert_eq!(
            request.content_type.as_deref(),
            Some(""),
            "pre-signed S3 PUT: empty content type"
        );
        let body: Value = serde_json::from_str(&request.body).expect("JSON body");
        for key in [
            "Status",
            "PhysicalResourceId",
            "StackId",
            "RequestId",
            "LogicalResourceId",
            "NoEcho",
            "Data",
        ] {
            assert!(body.get(key).is_some(), "{key} missing in {body}");
        }
    }

    // Provider-framework requests carry no ResponseURL: there is nowhere to answer.
    let provider = fixture("rust-runtime-provider-create-request.json");
    assert!(handle(&deps, provider, LONG).await.is_err());
}

#[tokio::test]
async fn create_update_delete_with_the_fixtures_on_moto() {
    let world = World::new().await;
    let deps = world.deps().await;
    let listener = Listener::start(0).await;
    let props = world.properties();

    // Create, twice (a repeated delivery): the same id, parameters and answer.
    let create = request_from(
        "rust-runtime-create-request.json",
        &listener.url,
        Some(&props),
    );
    let first = handle(&deps, create.clone(), LONG).await.expect("create");
    assert_eq!(first.status, Status::Success, "{:?}", first.reason);
    let again = handle(&deps, create, LONG).await.expect("create again");
    assert_eq!(again, first);
    let id = first.physical_resource_id.clone();
    assert!(
        id.starts_with("longshore.stack-name.CustomResource."),
        "{id}"
    );
    let data = &first.data;
    let fleet_name = &data["FleetParameter"];
    assert_eq!(&data["FleetParameterVersion"], "1");
    let fleet = FleetConfig::from_json(&world.parameter(fleet_name).await.expect("fleet stored"))
        .expect("fleet parses");
    assert_eq!(fleet.stack, "stack-name");
    assert_eq!(fleet.masters, ["master-a", "master-b"]);
    assert_eq!(fleet.launch_template.id, world.launch_template);
    let docker = &fleet.labels[0];
    assert_eq!(docker.placements[0].instance_type, "g7e.2xlarge");
    assert_eq!(
        docker.placements[0].subnets.len(),
        1,
        "us-east-1b lacks g7e.2xlarge"
    );
    assert_eq!(
        docker.placements[0].subnets[0].availability_zone,
        "us-east-1a"
    );
    assert_eq!(docker.placements[1].subnets.len(), 2);
    for master in ["master-a", "master-b"] {
        let casc = world
            .parameter(&format!("{}{master}", data["CascParameterPrefix"]))
            .await
            .expect("casc stored");
        assert!(casc.contains(&format!("value: \"{master}\"")), "{casc}");
        assert!(casc.contains("url: \"https://jenkins.example.com/\""));
        assert!(casc.contains("password: \"${ADMIN_PASSWORD}\""));
    }
    let body: Value = serde_json::from_str(&listener.requests()[0].body).expect("json");
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["NoEcho"], false);
    assert_eq!(body["RequestId"], "82304eb2-bdda-469f-a33b-a3f1406d0a52");
    assert_eq!(body["Data"]["ConfigHash"], data["ConfigHash"]);

    // Update keeping the identity (a cap changes): same id, new version, new hash.
    let mut changed = props.clone();
    changed["MaxAgents"] = json!("30");
    let mut update = request_from(
        "rust-runtime-update-request.json",
        &listener.url,
        Some(&changed),
    );
    update["PhysicalResourceId"] = json!(id);
    update["OldResourceProperties"] = props.clone();
    let updated = handle(&deps, update, LONG).await.expect("update");
    assert_eq!(updated.status, Status::Success, "{:?}", updated.reason);
    assert_eq!(updated.physical_resource_id, id);
    assert_eq!(&updated.data["FleetParameterVersion"], "2");
    assert_ne!(updated.data["ConfigHash"], data["ConfigHash"]);
    assert_eq!(
        updated.data["Master0CascVersion"], data["Master0CascVersion"],
        "CasC unchanged"
    );

    // Update changing the identity (a third master): a new id; the old one's parameters stay
    // until CloudFormation deletes the old id, which must not touch the new one's.
    let mut more = changed.clone();
    more["Masters"] = json!([{"Name": "master-a"}, {"Name": "master-b"}, {"Name": "master-c"}]);
    let mut replace = request_from(
        "rust-runtime-update-request.json",
        &listener.url,
        Some(&more),
    );
    replace["PhysicalResourceId"] = json!(id);
    let replaced = handle(&deps, replace, LONG).await.expect("replace");
    assert_eq!(replaced.status, Status::Success, "{:?}", replaced.reason);
    let new_id = replaced.physical_resource_id.clone();
    assert_ne!(new_id, id);
    let new_fleet = &replaced.data["FleetParameter"];
    assert_ne!(new_fleet, fleet_name);
    assert!(world.parameter(fleet_name).await.is_some());

    let mut delete_old = request_from(
        "rust-runtime-delete-request.json",
        &listener.url,
        Some(&changed),
    );
    delete_old["PhysicalResourceId"] = json!(id);
    let deleted = handle(&deps, delete_old.clone(), LONG)
        .await
        .expect("delete old");
    assert_eq!(deleted.status, Status::Success);
    assert_eq!(deleted.physical_resource_id, id);
    assert!(
        world.parameter(fleet_name).await.is_none(),
        "old fleet deleted"
    );
    assert!(world.parameter(new_fleet).await.is_some(), "new fleet kept");
    let new_casc = format!("{}master-c", replaced.data["CascParameterPrefix"]);
    assert!(world.parameter(&new_casc).await.is_some());
    // Delivered twice: still fine.
    assert_eq!(
        handle(&deps, delete_old, LONG).await.expect("again").status,
        Status::Success
    );

    let mut delete_new = request_from(
        "rust-runtime-delete-request.json",
        &listener.url,
        Some(&more),
    );
    delete_new["PhysicalResourceId"] = json!(new_id);
    assert_eq!(
        handle(&deps, delete_new, LONG)
            .await
            .expect("delete new")
            .status,
        Status::Success
    );
    assert!(world.parameter(new_fleet).await.is_none());
    assert!(world.parameter(&new_casc).await.is_none());
}

#[tokio::test]
async fn a_failed_create_then_its_delete_succeed_and_spare_other_resources() {
    let world = World::new().await;
    let deps = world.deps().await;
    let listener = Listener::start(0).await;

    // A working resource under another logical id.
    let mut other = request_from(
        "rust-runtime-create-request.json",
        &listener.url,
        Some(&world.properties()),
    );
    other["LogicalResourceId"] = json!("OtherConfig");
    let other = handle(&deps, other, LONG).await.expect("other");
    assert_eq!(other.status, Status::Success, "{:?}", other.reason);

    // A Create that fails on AWS facts: a subnet that does not exist.
    let mut props = world.properties();
    props["Subnets"][1] = json!("subnet-0000000000deadbee");
    let failed = handle(
        &deps,
        request_from(
            "rust-runtime-create-request.json",
            &listener.url,
            Some(&props),
        ),
        LONG,
    )
    .await
    .expect("create");
    assert_eq!(failed.status, Status::Failed);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("property Subnets[1]: subnet"),
        "{:?}",
        failed.reason
    );

    // CloudFormation's rollback Delete, with whatever id the failed Create answered.
    let mut delete = request_from(
        "rust-runtime-delete-request.json",
        &listener.url,
        Some(&props),
    );
    delete["PhysicalResourceId"] = json!(failed.physical_resource_id);
    let deleted = handle(&deps, delete, LONG).await.expect("delete");
    assert_eq!(deleted.status, Status::Success);
    assert!(
        world
            .parameter(&other.data["FleetParameter"])
            .await
            .is_some()
    );
}

#[tokio::test]
async fn aws_facts_that_do_not_fit_are_named() {
    let world = World::new().await;
    let deps = world.deps().await;
    let listener = Listener::start(0).await;
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "unknown subnet",
            Box::new(|p| p["Subnets"][0] = json!("subnet-0000000000deadbee")),
            "property Subnets[0]: subnet",
        ),
        (
            "group in another VPC",
            Box::new({
                let group = world.other_vpc_group.clone();
                move |p| p["SecurityGroups"][0] = json!(group)
            }),
            "property SecurityGroups[0]: security group",
        ),
        (
            "unknown profile",
            Box::new(|p| p["InstanceProfile"] = json!("no-such-profile")),
            "property InstanceProfile: instance profile",
        ),
        (
            "unknown launch template",
            Box::new(|p| p["LaunchTemplate"] = json!("lt-0000000000deadbee")),
            "property LaunchTemplate: launch template",
        ),
        (
            "no type offered",
            Box::new(|p| p["Labels"][1]["InstanceTypes"] = json!(["hpc7g.4xlarge"])),
            "property Labels[1].InstanceTypes: none of hpc7g.4xlarge",
        ),
        (
            "missing stack resource",
            Box::new(|p| p["Subnets"][1] = json!({"Stack": "network", "LogicalId": "SubnetB"})),
            "property Subnets[1]: ",
        ),
    ];
    for (name, change, expected) in cases {
        let mut props = world.properties();
        change(&mut props);
        let response = handle(
            &deps,
            request_from(
                "rust-runtime-create-request.json",
                &listener.url,
                Some(&props),
            ),
            LONG,
        )
        .await
        .expect(name);
        assert_eq!(response.status, Status::Failed, "{name}");
        let reason = response.reason.unwrap_or_default();
        assert!(reason.starts_with(expected), "{name}: {reason}");
    }
}

#[tokio::test]
async fn references_to_another_stack_are_resolved_with_describe_stack_resource() {
    let world = World::new().await;
    let deps = world.deps().await;
    let listener = Listener::start(0).await;
    let conf = world.moto.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let vpc_id = ec2
        .describe_subnets()
        .subnet_ids(&world.subnets[0].0)
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()[0]
        .vpc_id()
        .expect("vpc")
        .to_string();
    let template = json!({
        "Resources": {
            "SubnetC": {"Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": vpc_id, "CidrBlock": "10.0.3.0/24", "AvailabilityZone": "us-east-1b"}}
        }
    });
    cfn.create_stack()
        .stack_name("network")
        .template_body(template.to_string())
        .send()
        .await
        .expect("CreateStack");
    let mut props = world.properties();
    props["Subnets"][1] = json!({"Stack": "network", "LogicalId": "SubnetC"});
    let response = handle(
        &deps,
        request_from(
            "rust-runtime-create-request.json",
            &listener.url,
            Some(&props),
        ),
        LONG,
    )
    .await
    .expect("create");
    assert_eq!(response.status, Status::Success, "{:?}", response.reason);
    let fleet = FleetConfig::from_json(
        &world
            .parameter(&response.data["FleetParameter"])
            .await
            .expect("fleet"),
    )
    .expect("parses");
    let subnets: Vec<&str> = fleet.labels[1].placements[0]
        .subnets
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(subnets.len(), 2);
    assert!(
        subnets[1].starts_with("subnet-") && subnets[1] != world.subnets[1].0,
        "{subnets:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fakes: bad properties, a hanging resolver, response delivery
// ---------------------------------------------------------------------------------------------

/// AWS where everything exists, in one VPC, and every type is offered everywhere; or where
/// DescribeSubnets never answers.
#[derive(Clone, Default)]
struct FakeAws {
    hang: bool,
}

impl Lookups for FakeAws {
    async fn stack_resource(
        &self,
        _stack: &str,
        logical_id: &str,
    ) -> Result<Option<String>, AwsError> {
        if logical_id == "SlowMissing" {
            // Answers after every other lookup, and finds nothing.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Ok(None);
        }
        Ok(Some("subnet-0123456789abcdef1".into()))
    }
    async fn subnets(&self, ids: &[String]) -> Result<Vec<SubnetFact>, AwsError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| SubnetFact {
                id: id.clone(),
                availability_zone: ["us-east-1a", "us-east-1b"][i % 2].into(),
                vpc_id: "vpc-1".into(),
            })
            .collect())
    }
    async fn security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroupFact>, AwsError> {
        Ok(ids
            .iter()
            .map(|id| SecurityGroupFact {
                id: id.clone(),
                vpc_id: "vpc-1".into(),
            })
            .collect())
    }
    async fn instance_profile_arn(&self, name: &str) -> Result<Option<String>, AwsError> {
        Ok(Some(format!(
            "arn:aws:iam::123456789012:instance-profile/{name}"
        )))
    }
    async fn launch_template_exists(&self, _id: &str) -> Result<bool, AwsError> {
        Ok(true)
    }
    async fn offerings(
        &self,
        types: &[String],
        zones: &[String],
    ) -> Result<Vec<(String, String)>, AwsError> {
        Ok(types
            .iter()
            .flat_map(|t| zones.iter().map(move |z| (t.clone(), z.clone())))
            .collect())
    }
}

#[derive(Default)]
struct MemParams(Mutex<BTreeMap<String, StoredParameter>>);

impl Params for MemParams {
    async fn put(&self, name: &str, value: &str) -> Result<i64, AwsError> {
        let mut map = self.0.lock().unwrap();
        let version = map.get(name).map_or(1, |p| p.version + 1);
        map.insert(
            name.into(),
            StoredParameter {
                value: value.into(),
                version,
            },
        );
        Ok(version)
    }
    async fn get(&self, name: &str) -> Result<Option<StoredParameter>, AwsError> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
    async fn delete_under(&self, path: &str) -> Result<Vec<String>, AwsError> {
        let mut map = self.0.lock().unwrap();
        let names: Vec<String> = map
            .keys()
            .filter(|k| k.starts_with(path))
            .cloned()
            .collect();
        for name in &names {
            map.remove(name);
        }
        Ok(names)
    }
}

#[derive(Default)]
struct Captured(Mutex<Vec<String>>);

impl CfnResponder for Captured {
    async fn respond(&self, _url: &str, body: &str) -> Result<(), ResponseError> {
        self.0.lock().unwrap().push(body.to_string());
        Ok(())
    }
}

fn good_properties() -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
        "LaunchTemplate": "lt-0123456789abcdef0",
        "Subnets": ["subnet-0123456789abcdef0", {"Stack": "network", "LogicalId": "SubnetB"}],
        "SecurityGroups": ["sg-0123456789abcdef0"],
        "InstanceProfile": "ci-agent",
        "Masters": [{"Name": "master-a"}, {"Name": "master-b", "Url": "https://b.jenkins.example.com/"}],
        "JenkinsUrl": "https://jenkins.example.com/",
        "MaxAgents": "20",
        "BootTimeoutSeconds": "300",
        "Labels": [
            {"Name": "docker", "NodeLabels": ["docker", "linux"], "Executors": "2",
             "InstanceTypes": ["c6i.large", "c5.large"], "MaxPerMaster": "5", "WarmMinimum": "1",
             "IdleMinutes": "15", "Spot": "prefer"},
            {"Name": "small", "InstanceTypes": ["t3.micro"], "MaxPerMaster": "3"}
        ]
    })
}

#[tokio::test]
async fn bad_properties_are_answered_failed_naming_the_property() {
    let deps = Deps::new(
        FakeAws::default(),
        MemParams::default(),
        Captured::default(),
    );
    let cases: Vec<(&str, Value)> = vec![
        ("LaunchTemplate", json!(null)),
        ("LaunchTemplate", json!("ami-0123456789abcdef0")),
        ("LaunchTemplateVersion", json!("newest")),
        ("Subnets", json!([])),
        ("Subnets", json!("subnet-0123456789abcdef0")),
        ("Subnets[0]", json!(["vpc-0123456789abcdef0"])),
        (
            "Subnets[1]",
            json!(["subnet-0123456789abcdef0", "subnet-0123456789abcdef0"]),
        ),
        ("Subnets[0].LogicalId", json!([{"Stack": "network"}])),
        (
            "Subnets[0].Stack",
            json!([{"Stack": "not a stack!", "LogicalId": "A"}]),
        ),
        ("SecurityGroups[0]", json!([""])),
        ("SecurityGroups", json!({"Ref": "x"})),
        (
            "InstanceProfile",
            json!("arn:aws:iam::123456789012:role/not-a-profile"),
        ),
        ("Masters", json!([])),
        ("Masters[0].Name", json!([{"Name": "UPPER"}])),
        ("Masters[1].Name", json!([{"Name": "a"}, {"Name": "a"}])),
        ("Masters[0].Colour", json!([{"Name": "a", "Colour": "red"}])),
        ("JenkinsUrl", json!("jenkins.example.com")),
        ("MaxAgents", json!("0")),
        ("MaxAgents", json!("lots")),
        ("BootTimeoutSeconds", json!("99999")),
        ("Labels", json!([])),
        (
            "Labels[0].InstanceTypes",
            json!([{"Name": "x", "InstanceTypes": [], "MaxPerMaster": "1"}]),
        ),
        (
            "Labels[0].InstanceTypes[0]",
            json!([{"Name": "x", "InstanceTypes": ["c6i"], "MaxPerMaster": "1"}]),
        ),
        (
            "Labels[0].MaxPerMaster",
            json!([{"Name": "x", "InstanceTypes": ["c6i.large"]}]),
        ),
        (
            "Labels[0].WarmMinimum",
            json!([{"Name": "x", "InstanceTypes": ["c6i.large"], "MaxPerMaster": "1", "WarmMinimum": "2"}]),
        ),
        (
            "Labels[0].Spot",
            json!([{"Name": "x", "InstanceTypes": ["c6i.large"], "MaxPerMaster": "1", "Spot": "always"}]),
        ),
        (
            "Labels[0].IdleMinutes",
            json!([{"Name": "x", "InstanceTypes": ["c6i.large"], "MaxPerMaster": "1", "IdleMinutes": "-5"}]),
        ),
        (
            "Labels[1].Name",
            json!([{"Name": "x", "InstanceTypes": ["c6i.large"], "MaxPerMaster": "1"}, {"Name": "x", "InstanceTypes": ["c6i.large"], "MaxPerMaster": "1"}]),
        ),
    ];
    assert!(cases.len() >= 20);
    for (path, value) in cases {
        let key = path.split(['[', '.']).next().unwrap_or(path);
        let mut props = good_properties();
        if value.is_null() {
            props.as_object_mut().unwrap().remove(key);
        } else {
            props[key] = value.clone();
        }
        let mut request = fixture("rust-runtime-create-request.json");
        request["ResourceProperties"] = props;
        let response = handle(&deps, request, LONG).await.expect(path);
        assert_eq!(response.status, Status::Failed, "{path} {value}");
        let reason = response.reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("property {path}: ")),
            "{path}: {reason}"
        );
        assert!(response.to_body().len() <= 4096);
    }
    // A typo is refused by name, not ignored.
    let mut props = good_properties();
    props["Subnet"] = json!(["subnet-0123456789abcdef0"]);
    let mut request = fixture("rust-runtime-create-request.json");
    request["ResourceProperties"] = props;
    let response = handle(&deps, request, LONG).await.expect("typo");
    assert!(
        response
            .reason
            .unwrap_or_default()
            .starts_with("property Subnet: unknown property")
    );
    assert!(
        deps.params.0.lock().unwrap().is_empty(),
        "nothing stored on failure"
    );
}

/// The lookups run at once; the answer still names the first bad property in property order,
/// not the one whose lookup failed first.
#[tokio::test]
async fn of_two_bad_references_the_first_in_property_order_is_named() {
    let deps = Deps::new(
        FakeAws::default(),
        MemParams::default(),
        Captured::default(),
    );
    let mut props = good_properties();
    props["Subnets"] = json!([{"Stack": "network", "LogicalId": "SlowMissing"}]);
    // Resolves at once, to a subnet: the wrong kind of ID for a security group.
    props["SecurityGroups"] = json!([{"Stack": "network", "LogicalId": "SubnetB"}]);
    let mut request = fixture("rust-runtime-create-request.json");
    request["ResourceProperties"] = props;
    let response = handle(&deps, request, LONG).await.expect("answered");
    assert_eq!(response.status, Status::Failed);
    let reason = response.reason.unwrap_or_default();
    assert!(
        reason.starts_with("property Subnets[0]: stack network has no resource SlowMissing"),
        "{reason}"
    );
    assert!(deps.params.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_hanging_resolver_is_answered_failed_before_the_deadline() {
    init_tracing();
    let listener = Listener::start(0).await;
    let deps = Deps::new(
        FakeAws { hang: true },
        MemParams::default(),
        HttpResponder::new(fast_policy()).expect("client"),
    );
    let mut request = fixture("rust-runtime-create-request.json");
    request["ResponseURL"] = json!(listener.url);
    request["ResourceProperties"] = good_properties();
    let deadline = Duration::from_millis(1500);
    let started = Instant::now();
    let response = handle(&deps, request, deadline).await.expect("answered");
    assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
    assert_eq!(response.status, Status::Failed);
    assert!(
        response
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("timed out resolving the Create request")
    );
    // The id a rollback Delete will carry: the identity id, so it can clean up.
    assert!(
        response
            .physical_resource_id
            .starts_with("longshore.stack-name.CustomResource.")
    );
    let seen = listener.requests();
    assert_eq!(seen.len(), 1);
    let body: Value = serde_json::from_str(&seen[0].body).expect("json");
    assert_eq!(body["Status"], "FAILED");
}

#[tokio::test]
async fn an_unreachable_response_url_is_retried_then_logged() {
    init_tracing();
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let responder = HttpResponder::new(fast_policy()).expect("client");
    let started = Instant::now();
    let err = responder
        .put(
            &format!("http://127.0.0.1:{closed}/key?X-Amz-Signature=s3cr3t"),
            "{}",
        )
        .await
        .expect_err("nothing listens");
    assert_eq!(err.attempts, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "backed off 50 + 100 ms"
    );
    assert!(!err.to_string().contains("s3cr3t"), "{err}");

    // Through the handler: it still returns its answer (no panic, no error for the runtime).
    let deps = Deps::new(FakeAws::default(), MemParams::default(), responder);
    let mut request = fixture("rust-runtime-delete-request.json");
    request["ResponseURL"] = json!(format!("http://127.0.0.1:{closed}/key"));
    let response = handle(&deps, request, LONG).await.expect("handled");
    assert_eq!(response.status, Status::Success);

    // A flaky URL: two 500s, then delivered on the third attempt.
    let flaky = Listener::start(2).await;
    let responder = HttpResponder::new(fast_policy()).expect("client");
    responder
        .put(&flaky.url, "{\"Status\":\"SUCCESS\"}")
        .await
        .expect("third time");
    assert_eq!(flaky.requests().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Golden files
// ---------------------------------------------------------------------------------------------

fn golden(name: &str, actual: &str) {
    let path: PathBuf = workspace_root()
        .join("tests/golden/config-resolver")
        .join(name);
    if std::env::var_os("LONGSHORE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e} (LONGSHORE_UPDATE_GOLDEN=1 writes it)"));
    assert_eq!(
        actual, expected,
        "{name} differs; rerun with LONGSHORE_UPDATE_GOLDEN=1 after checking the change"
    );
}

#[test]
fn rendered_casc_and_fleet_config_match_the_golden_files() {
    let props = parse_properties(&good_properties()).expect("good");
    let facts = Facts {
        launch_template_id: "lt-0123456789abcdef0".into(),
        subnet_ids: vec![
            "subnet-0123456789abcdef0".into(),
            "subnet-0123456789abcdef1".into(),
        ],
        security_group_ids: vec!["sg-0123456789abcdef0".into()],
        instance_profile: "ci-agent".into(),
        launch_template_exists: true,
        subnets: vec![
            SubnetFact {
                id: "subnet-0123456789abcdef0".into(),
                availability_zone: "us-east-1a".into(),
                vpc_id: "vpc-1".into(),
            },
            SubnetFact {
                id: "subnet-0123456789abcdef1".into(),
                availability_zone: "us-east-1b".into(),
                vpc_id: "vpc-1".into(),
            },
        ],
        security_groups: vec![SecurityGroupFact {
            id: "sg-0123456789abcdef0".into(),
            vpc_id: "vpc-1".into(),
        }],
        instance_profile_arn: Some("arn:aws:iam::123456789012:instance-profile/ci-agent".into()),
        offerings: [
            ("c6i.large", "us-east-1a"),
            ("c5.large", "us-east-1a"),
            ("c5.large", "us-east-1b"),
            ("t3.micro", "us-east-1b"),
        ]
        .into_iter()
        .map(|(t, z)| (t.to_string(), z.to_string()))
        .collect(),
    };
    let resolved = resolve("ci", &props, &facts).expect("resolves");
    let fleet = fleet_config(&resolved).expect("valid");
    let text = fleet_json(&fleet);
    golden("fleet.json", &text);
    assert_eq!(
        FleetConfig::from_json(&text).expect("the scaler reads it"),
        fleet
    );
    for master in &resolved.masters {
        let casc = master_casc(&resolved, master);
        let _: serde_yaml::Value = serde_yaml::from_str(&casc).expect("YAML");
        golden(&format!("casc-{}.yaml", master.name), &casc);
    }
}

#[tokio::test]
async fn values_over_4_kb_go_to_the_advanced_tier() {
    let moto = MotoServer::start().expect("moto");
    let conf = moto.sdk_config().await;
    let params = SsmParams::from_conf(&conf);
    let big = "x".repeat(5000);
    assert_eq!(
        params
            .put("/longshore/t/config/big", &big)
            .await
            .expect("put"),
        1
    );
    assert_eq!(
        params
            .put("/longshore/t/config/small", "s")
            .await
            .expect("put"),
        1
    );
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let described = ssm
        .describe_parameters()
        .send()
        .await
        .expect("DescribeParameters");
    let tier = |name: &str| {
        described
            .parameters()
            .iter()
            .find(|p| p.name() == Some(name))
            .and_then(|p| p.tier())
            .map(|t| t.as_str().to_string())
    };
    assert_eq!(tier("/longshore/t/config/big").as_deref(), Some("Advanced"));
    assert_eq!(
        tier("/longshore/t/config/small").as_deref(),
        Some("Standard")
    );
    let stored = params
        .get("/longshore/t/config/big")
        .await
        .expect("get")
        .expect("there");
    assert_eq!((stored.value.len(), stored.version), (5000, 1));
    assert_eq!(
        params
            .delete_under("/longshore/t/config/")
            .await
            .expect("delete")
            .len(),
        2
    );
    assert!(
        params
            .delete_under("/longshore/t/config/")
            .await
            .expect("again")
            .is_empty()
    );
    assert_eq!(
        params.get("/longshore/t/config/big").await.expect("get"),
        None
    );
}

#[test]
fn responses_fit_in_4096_bytes() {
    let response = Response {
        status: Status::Failed,
        reason: Some("x".repeat(10_000)),
        physical_resource_id: "p".into(),
        stack_id: "s".into(),
        request_id: "r".into(),
        logical_resource_id: "l".into(),
        no_echo: false,
        data: BTreeMap::new(),
    };
    assert!(response.to_body().len() <= 4096);
}

// ---------------------------------------------------------------------------------------------
// A stack in moto whose custom resource is answered by the handler (MOTO.md "Custom
// resources"): moto creates the stack's function but cannot invoke it (no Docker), so the
// request is built here from the template and the handler PUTs to moto's cfnresponse URL.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_moto_stack_completes_when_the_handler_answers_its_custom_resource() {
    let world = World::new().await;
    let deps = world.deps().await;
    let conf = world.moto.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let mut properties = world.properties();
    let template = json!({
        "Resources": {
            "ResolverRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}}},
            "Resolver": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["ResolverRole", "Arn"]},
                "Code": {"ZipFile": "def handler(event, context):\n    pass\n"}}},
            "JenkinsConfig": {"Type": "Custom::JenkinsConfig", "Properties": {
                "ServiceToken": {"Fn::GetAtt": ["Resolver", "Arn"]},
                "LaunchTemplate": properties["LaunchTemplate"],
                "LaunchTemplateVersion": properties["LaunchTemplateVersion"],
                "Subnets": properties["Subnets"],
                "SecurityGroups": properties["SecurityGroups"],
                "InstanceProfile": properties["InstanceProfile"],
                "Masters": properties["Masters"],
                "JenkinsUrl": properties["JenkinsUrl"],
                "MaxAgents": 20,
                "Labels": properties["Labels"]}}
        },
        "Outputs": {
            "FleetParameter": {"Value": {"Fn::GetAtt": ["JenkinsConfig", "FleetParameter"]}},
            "ConfigHash": {"Value": {"Fn::GetAtt": ["JenkinsConfig", "ConfigHash"]}}
        }
    });
    let stack_id = cfn
        .create_stack()
        .stack_name("ci")
        .template_body(template.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        .send()
        .await
        .expect("CreateStack")
        .stack_id()
        .expect("stack id")
        .to_string();
    let status =
        |stacks: &aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput| {
            stacks.stacks()[0]
                .stack_status()
                .map(|s| s.as_str().to_string())
        };
    let before = cfn
        .describe_stacks()
        .stack_name(&stack_id)
        .send()
        .await
        .expect("DescribeStacks");
    assert_eq!(status(&before).as_deref(), Some("CREATE_IN_PROGRESS"));

    // The request CloudFormation would send (moto passes numbers unstringified; so does this).
    properties["MaxAgents"] = json!(20);
    let request = json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:Resolver",
        "ResponseURL": format!("{}/cloudformation_us-east-1/cfnresponse?stack={stack_id}", world.moto.endpoint_url()),
        "StackId": stack_id,
        "RequestId": "6f0f4a8e-moto-create",
        "ResourceType": "Custom::JenkinsConfig",
        "LogicalResourceId": "JenkinsConfig",
        "ResourceProperties": properties,
    });
    let response = handle(&deps, request, LONG).await.expect("handled");
    assert_eq!(response.status, Status::Success, "{:?}", response.reason);

    let after = cfn
        .describe_stacks()
        .stack_name(&stack_id)
        .send()
        .await
        .expect("DescribeStacks");
    assert_eq!(status(&after).as_deref(), Some("CREATE_COMPLETE"));
    let outputs: BTreeMap<String, String> = after.stacks()[0]
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    assert_eq!(
        outputs.get("FleetParameter"),
        Some(&response.data["FleetParameter"])
    );
    assert_eq!(
        outputs.get("ConfigHash"),
        Some(&response.data["ConfigHash"])
    );
    assert!(response.data["FleetParameter"].starts_with("/longshore/ci/config/JenkinsConfig-"));
    assert!(
        world
            .parameter(&response.data["FleetParameter"])
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_hanging_update_keeps_its_physical_id_and_malformed_requests_are_answered() {
    let deps = Deps {
        lookups: FakeAws { hang: true },
        params: MemParams::default(),
        responder: Captured::default(),
        answer_margin: Duration::from_millis(200),
    };
    let mut update = fixture("rust-runtime-update-request.json");
    update["ResourceProperties"] = good_properties();
    let response = handle(&deps, update, Duration::from_millis(600))
        .await
        .expect("answered");
    assert_eq!(response.status, Status::Failed);
    assert_eq!(
        response.physical_resource_id,
        "custom-resource-f4bd5382-3de3-4caf-b7ad-1be06b899647"
    );
    assert!(
        response
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("timed out resolving the Update request")
    );

    // No ResourceType: not a request the typed event accepts, but it names where to answer.
    let mut malformed = fixture("rust-runtime-create-request.json");
    malformed
        .as_object_mut()
        .expect("object")
        .remove("ResourceType");
    let response = handle(&deps, malformed, LONG).await.expect("answered");
    assert_eq!(response.status, Status::Failed);
    assert!(
        response
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("malformed custom resource request")
    );
    assert_eq!(deps.responder.0.lock().unwrap().len(), 2, "both answered");
    // Nothing to answer to: an error for the runtime, no panic.
    assert!(
        handle(&deps, json!({"hello": "world"}), LONG)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_stack_id_without_a_stack_name_is_refused_before_anything_is_written() {
    let deps = Deps::new(
        FakeAws::default(),
        MemParams::default(),
        Captured::default(),
    );
    let mut request = fixture("rust-runtime-create-request.json");
    request["ResourceProperties"] = good_properties();
    request["StackId"] = json!("not a stack id");
    let response = handle(&deps, request, LONG).await.expect("answered");
    assert_eq!(response.status, Status::Failed);
    assert!(
        response
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("StackId \"not a stack id\"")
    );
    assert!(deps.params.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_largest_success_still_fits_the_4096_byte_response() {
    let deps = Deps::new(
        FakeAws::default(),
        MemParams::default(),
        Captured::default(),
    );
    let mut props = good_properties();
    let masters: Vec<Value> = (0..20)
        .map(|i| json!({"Name": format!("master-{i:02}-{}", "x".repeat(22))}))
        .collect();
    props["Masters"] = json!(masters);
    props["MaxAgents"] = json!("1000");
    let mut request = fixture("rust-runtime-create-request.json");
    request["ResourceProperties"] = props;
    request["StackId"] = json!(format!(
        "arn:aws:cloudformation:ap-southeast-3:123456789012:stack/s{}/16580499-7622-4a9c-b32f-4eba35da93da",
        "t".repeat(127)
    ));
    request["LogicalResourceId"] = json!("L".repeat(255));
    let response = handle(&deps, request, LONG).await.expect("answered");
    assert_eq!(response.status, Status::Success, "{:?}", response.reason);
    let sent = deps.responder.0.lock().unwrap()[0].clone();
    assert!(sent.len() <= 4096, "{} bytes", sent.len());
    let body: Value = serde_json::from_str(&sent).expect("json");
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["Data"]["Master19CascVersion"], "1");
}
