//! `infra/template.yaml` deployed into moto through the same code path as `make deploy-local`
//! (`longshore_farm::deploy::deploy_local`: the real `aws cloudformation package`, CreateStack
//! with the parameters file, the custom resource answered by the real config-resolver binary).
//! Every resource is then looked up through its own service's API (the venv's aws CLI, or the
//! SDK), never through the stack's status: moto lists skipped resources as nameless rows.
//!
//! Needs the workspace build (`cargo build --workspace --all-targets`) for the Lambda binaries.

use std::collections::BTreeMap;

use base64::Engine;
use longshore::domain::fleet::FleetConfig;
use longshore::domain::render::parse_agent_user_data;
use longshore_farm::deploy::{
    AwsCli, LocalDeployOptions, LocalDeployment, MOTO_GAPS, deploy_local, resources, template_json,
    template_path,
};
use longshore_farm::moto::MotoServer;
use serde_json::Value;

const STACK: &str = "ci";
const DOMAIN: &str = "ci.example.com";

fn physical<'a>(deployment: &'a LocalDeployment, logical: &str) -> &'a str {
    deployment
        .resources
        .iter()
        .find(|r| r.logical_id == logical)
        .map(|r| r.physical_id.as_str())
        .unwrap_or_else(|| panic!("{logical} is not in the template"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Ingress rules of a group as `(port, source)`: a CIDR or a security group id.
fn ingress(cli: &AwsCli, group: &str) -> Vec<(i64, String)> {
    let answer = cli
        .json(&["ec2", "describe-security-groups", "--group-ids", group])
        .expect("DescribeSecurityGroups");
    let mut out = Vec::new();
    for rule in answer["SecurityGroups"][0]["IpPermissions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let port = rule["FromPort"].as_i64().unwrap_or(-1);
        for range in rule["IpRanges"].as_array().into_iter().flatten() {
            out.push((port, range["CidrIp"].as_str().unwrap_or("").to_string()));
        }
        for pair in rule["UserIdGroupPairs"].as_array().into_iter().flatten() {
            out.push((port, pair["GroupId"].as_str().unwrap_or("").to_string()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_template_deploys_into_moto_and_every_supported_resource_exists() {
    let moto = MotoServer::start().expect("moto");
    let options = LocalDeployOptions::example(STACK).expect("parameters file");
    let deployment = deploy_local(&moto, &options)
        .await
        .unwrap_or_else(|e| panic!("deploy-local failed: {e}\nmoto: {}", moto.output_tail()));
    let cli = AwsCli::new(moto.endpoint_url());

    // The custom resource was answered: the stack completed and its outputs resolved.
    assert_eq!(
        deployment.status,
        "CREATE_COMPLETE",
        "{}",
        deployment.summary()
    );
    let data = &deployment.custom_data;
    assert_eq!(deployment.outputs["FleetParameter"], data["FleetParameter"]);
    assert_eq!(deployment.outputs["ConfigHash"], data["ConfigHash"]);
    assert_eq!(data["VpcId"], deployment.vpc_id);
    assert_eq!(
        deployment.outputs["JenkinsUrl"],
        format!("http://master-a.{DOMAIN}/")
    );
    // The request carried what CloudFormation would: every scalar a string.
    let props = &deployment.custom_request["ResourceProperties"];
    assert_eq!(props["MaxAgents"], "20");
    assert_eq!(props["Labels"][0]["MaxPerMaster"], "10");
    assert_eq!(strings(&props["Subnets"]), deployment.subnets);

    // Only the resources moto cannot create, or whose condition is false, are missing.
    for r in &deployment.resources {
        if !r.listed {
            assert!(
                r.condition_false || MOTO_GAPS.iter().any(|(kind, _, _)| *kind == r.kind),
                "{} ({}) was not created and is not a known moto gap",
                r.logical_id,
                r.kind
            );
        }
    }
    let missing: Vec<&str> = deployment
        .resources
        .iter()
        .filter(|r| !r.listed && !r.condition_false)
        .map(|r| r.kind.as_str())
        .collect();
    assert!(
        missing.contains(&"AWS::SecretsManager::Secret"),
        "{missing:?}"
    );
    assert!(missing.contains(&"AWS::CloudWatch::Alarm"), "{missing:?}");

    check_network(&cli, &deployment);
    check_masters(&cli, &deployment);
    check_agents(&cli, &deployment);
    check_load_balancer(&cli, &deployment);
    check_functions_and_rules(&cli, &deployment);
    check_state_and_alerts(&cli, &deployment);
    check_rendered_configuration(&moto, &deployment).await;
}

fn check_network(cli: &AwsCli, d: &LocalDeployment) {
    let alb = physical(d, "AlbSecurityGroup");
    let master = physical(d, "MasterSecurityGroup");
    let agent = physical(d, "AgentSecurityGroup");
    let efs = physical(d, "EfsSecurityGroup");
    let functions = physical(d, "FunctionSecurityGroup");
    assert_eq!(
        ingress(cli, alb),
        vec![
            (80, "203.0.113.0/24".to_string()),
            (443, "203.0.113.0/24".to_string())
        ]
    );
    let mut from = vec![
        (8080, alb.to_string()),
        (8080, agent.to_string()),
        (8080, functions.to_string()),
    ];
    from.sort();
    assert_eq!(
        ingress(cli, master),
        from,
        "masters: the ALB, the agents and the Jenkins-calling Lambdas only"
    );
    assert_eq!(ingress(cli, agent), vec![], "agents have no ingress");
    assert_eq!(ingress(cli, functions), vec![], "Lambdas have no ingress");
    assert_eq!(ingress(cli, physical(d, "MasterHostSecurityGroup")), vec![]);
    assert_eq!(ingress(cli, efs), vec![(2049, master.to_string())]);

    // EFS: encrypted, a mount target per AZ, one access point per master in its own directory.
    let fs = physical(d, "HomeFileSystem");
    let fss = cli
        .json(&["efs", "describe-file-systems", "--file-system-id", fs])
        .expect("DescribeFileSystems");
    assert_eq!(fss["FileSystems"][0]["Encrypted"], true);
    let targets = cli
        .json(&["efs", "describe-mount-targets", "--file-system-id", fs])
        .expect("DescribeMountTargets");
    let mut subnets: Vec<String> = targets["MountTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["SubnetId"].as_str().map(str::to_string))
        .collect();
    subnets.sort();
    let mut expected = d.subnets.clone();
    expected.sort();
    assert_eq!(subnets, expected);
    let points = cli
        .json(&["efs", "describe-access-points", "--file-system-id", fs])
        .expect("DescribeAccessPoints");
    let mut roots: Vec<String> = points["AccessPoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["RootDirectory"]["Path"].as_str().map(str::to_string))
        .collect();
    roots.sort();
    assert_eq!(
        roots,
        vec!["/master-a", "/master-b"],
        "two homes, never shared"
    );
}

fn check_masters(cli: &AwsCli, d: &LocalDeployment) {
    let cluster = &d.outputs["ClusterName"];
    let clusters = cli
        .json(&["ecs", "describe-clusters", "--clusters", cluster])
        .expect("DescribeClusters");
    assert_eq!(clusters["clusters"][0]["clusterName"], cluster.as_str());
    for master in ["master-a", "master-b"] {
        let service = master.to_string();
        let services = cli
            .json(&[
                "ecs",
                "describe-services",
                "--cluster",
                cluster,
                "--services",
                &service,
            ])
            .expect("DescribeServices");
        let s = &services["services"][0];
        assert_eq!(s["serviceName"], service.as_str());
        assert_eq!(s["desiredCount"], 1, "one task per master");
        let task_definition = s["taskDefinition"].as_str().expect("task definition");
        let def = cli
            .json(&[
                "ecs",
                "describe-task-definition",
                "--task-definition",
                task_definition,
            ])
            .expect("DescribeTaskDefinition");
        let container = &def["taskDefinition"]["containerDefinitions"][0];
        assert_eq!(
            container["image"],
            format!(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/{STACK}/jenkins-master:2.568.1-1"
            )
        );
        let env: BTreeMap<String, String> = container["environment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or("").to_string(),
                    e["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(env["LONGSHORE_MASTER"], master);
        assert!(env.contains_key("LONGSHORE_CASC_HASH"));
        let secrets: Vec<String> = container["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        assert_eq!(secrets, vec!["ADMIN_PASSWORD", "LONGSHORE_CASC"]);
    }

    // The master hosts: an ASG of two on the host launch template, IMDSv2, encrypted volume.
    let group = physical(d, "MasterHostGroup");
    let groups = cli
        .json(&[
            "autoscaling",
            "describe-auto-scaling-groups",
            "--auto-scaling-group-names",
            group,
        ])
        .expect("DescribeAutoScalingGroups");
    let g = &groups["AutoScalingGroups"][0];
    assert_eq!(g["MinSize"], 2);
    assert_eq!(
        g["LaunchTemplate"]["LaunchTemplateId"],
        physical(d, "MasterHostLaunchTemplate")
    );
    let data = launch_template_data(cli, physical(d, "MasterHostLaunchTemplate"));
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"], true);
    let user_data = decode(&data["UserData"]);
    assert!(user_data.contains(&format!("ECS_CLUSTER={}", d.outputs["ClusterName"])));

    // The master image repository.
    let repos = cli
        .json(&[
            "ecr",
            "describe-repositories",
            "--repository-names",
            &format!("{STACK}/jenkins-master"),
            &format!("{STACK}/builds"),
        ])
        .expect("DescribeRepositories");
    for repo in repos["repositories"].as_array().expect("repositories") {
        assert_eq!(repo["imageTagMutability"], "IMMUTABLE");
    }
    assert_eq!(repos["repositories"].as_array().map(Vec::len), Some(2));
}

fn launch_template_data(cli: &AwsCli, id: &str) -> Value {
    let versions = cli
        .json(&[
            "ec2",
            "describe-launch-template-versions",
            "--launch-template-id",
            id,
        ])
        .expect("DescribeLaunchTemplateVersions");
    versions["LaunchTemplateVersions"][0]["LaunchTemplateData"].clone()
}

fn decode(value: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("user data"))
        .expect("base64 user data");
    String::from_utf8(bytes).expect("UTF-8 user data")
}

fn check_agents(cli: &AwsCli, d: &LocalDeployment) {
    let data = launch_template_data(cli, physical(d, "AgentLaunchTemplate"));
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["MetadataOptions"]["InstanceMetadataTags"], "enabled");
    assert_eq!(data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"], true);
    assert_eq!(
        strings(&data["SecurityGroupIds"]),
        vec![physical(d, "AgentSecurityGroup").to_string()]
    );
    // The user data is the real boot, with the stack's own name and region filled in.
    let settings = parse_agent_user_data(&decode(&data["UserData"])).expect("agent user data");
    assert_eq!(settings.stack, STACK);
    assert_eq!(settings.region, "us-east-1");
    assert_eq!(settings.secret_prefix, format!("/longshore/{STACK}/agents"));
    let profile = physical(d, "AgentInstanceProfile");
    let answer = cli
        .json(&[
            "iam",
            "get-instance-profile",
            "--instance-profile-name",
            profile,
        ])
        .expect("GetInstanceProfile");
    assert_eq!(
        answer["InstanceProfile"]["Roles"][0]["RoleName"],
        physical(d, "AgentRole")
    );
}

fn check_load_balancer(cli: &AwsCli, d: &LocalDeployment) {
    let lb = physical(d, "LoadBalancer");
    let lbs = cli
        .json(&[
            "elbv2",
            "describe-load-balancers",
            "--load-balancer-arns",
            lb,
        ])
        .expect("DescribeLoadBalancers");
    let dns = lbs["LoadBalancers"][0]["DNSName"]
        .as_str()
        .expect("DNS name")
        .to_string();
    assert_eq!(lbs["LoadBalancers"][0]["Scheme"], "internet-facing");
    for (targets, master) in [
        ("MasterATargets", "master-a"),
        ("MasterBTargets", "master-b"),
    ] {
        let tg = physical(d, targets);
        let groups = cli
            .json(&["elbv2", "describe-target-groups", "--target-group-arns", tg])
            .expect("DescribeTargetGroups");
        let g = &groups["TargetGroups"][0];
        assert_eq!(g["HealthCheckPath"], "/login");
        assert_eq!(g["TargetType"], "ip");
        assert_eq!(g["Port"], 8080);
        // The listener rule sends master-X.<domain> to this group.
        let rules = cli
            .json(&[
                "elbv2",
                "describe-rules",
                "--listener-arn",
                physical(d, "HttpListener"),
            ])
            .expect("DescribeRules");
        let host = format!("{master}.{DOMAIN}");
        let routed = rules["Rules"].as_array().into_iter().flatten().any(|rule| {
            rule["Actions"][0]["TargetGroupArn"] == tg
                && rule["Conditions"].to_string().contains(&host)
        });
        assert!(routed, "no rule routes {host} to {targets}: {rules}");
    }
    let listeners = cli
        .json(&["elbv2", "describe-listeners", "--load-balancer-arn", lb])
        .expect("DescribeListeners");
    let ports: Vec<i64> = listeners["Listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["Port"].as_i64())
        .collect();
    assert_eq!(ports, vec![80], "no certificate given: HTTP only");

    // One wildcard alias to the load balancer.
    let records = cli
        .json(&[
            "route53",
            "list-resource-record-sets",
            "--hosted-zone-id",
            &d.hosted_zone_id,
        ])
        .expect("ListResourceRecordSets");
    let alias = records["ResourceRecordSets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["Type"] == "A")
        .unwrap_or_else(|| panic!("no A record: {records}"));
    let name = alias["Name"].as_str().unwrap_or("");
    assert!(
        name == format!("*.{DOMAIN}.") || name == format!("\\052.{DOMAIN}."),
        "{name}"
    );
    assert_eq!(alias["AliasTarget"]["DNSName"], dns.as_str());
}

fn check_functions_and_rules(cli: &AwsCli, d: &LocalDeployment) {
    let env = |logical: &str| -> BTreeMap<String, String> {
        let config = cli
            .json(&[
                "lambda",
                "get-function-configuration",
                "--function-name",
                physical(d, logical),
            ])
            .expect("GetFunctionConfiguration");
        assert_eq!(config["Runtime"], "provided.al2023", "{logical}");
        assert_eq!(config["Handler"], "bootstrap", "{logical}");
        config["Environment"]["Variables"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect()
    };
    let resolver = env("ConfigResolverFunction");
    assert_eq!(resolver["LONGSHORE_STACK"], STACK);
    let scaler = env("QueueScalerFunction");
    assert_eq!(scaler["LEASE_TABLE"], physical(d, "StateTable"));
    assert_eq!(scaler["ECS_CLUSTER"], d.outputs["ClusterName"]);
    assert_eq!(scaler["MASTER_PORT"], "8080");
    assert_eq!(scaler["JENKINS_USER"], "admin");
    // moto resolves the function's environment at CreateStack, before the custom resource is
    // answered and without the (skipped) secret, and drops the variables that resolved to
    // nothing: FLEET_CONFIG_PARAMETER (!GetAtt JenkinsConfig.FleetParameter) and
    // JENKINS_SECRET (!Ref AdminSecret). template_rules.rs checks them in the template.
    for key in ["FLEET_CONFIG_PARAMETER", "JENKINS_SECRET"] {
        assert!(
            !scaler.contains_key(key),
            "moto now resolves {key}: check its value here"
        );
    }
    let recovery = env("RecoveryFunction");
    assert_eq!(recovery["LONGSHORE_ECS_CLUSTER"], d.outputs["ClusterName"]);
    assert_eq!(recovery["LONGSHORE_MASTER_SERVICES"], "master-a,master-b");
    assert_eq!(
        recovery["LONGSHORE_MASTER_ASG"],
        physical(d, "MasterHostGroup")
    );
    assert_eq!(recovery["ALERT_TOPIC_ARN"], d.outputs["AlertTopicArn"]);
    assert_eq!(recovery["STATE_TABLE"], physical(d, "StateTable"));
    assert_eq!(recovery["MASTER_PORT"], "8080");
    assert_eq!(recovery["JENKINS_USER"], "admin");
    // As for the scaler: moto drops the secret's unresolved !Ref (template_rules.rs checks it).
    assert!(
        !recovery.contains_key("JENKINS_SECRET"),
        "moto now resolves JENKINS_SECRET: check its value here"
    );

    // Rules: two schedules, three event patterns, each targeting its function.
    let rule = |logical: &str| {
        let name = physical(d, logical);
        let described = cli
            .json(&["events", "describe-rule", "--name", name])
            .expect("DescribeRule");
        let targets = cli
            .json(&["events", "list-targets-by-rule", "--rule", name])
            .expect("ListTargetsByRule");
        let arn = targets["Targets"][0]["Arn"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (described, arn)
    };
    let (scaler_rule, target) = rule("ScalerSchedule");
    assert_eq!(scaler_rule["ScheduleExpression"], "rate(1 minute)");
    assert!(
        target.ends_with(physical(d, "QueueScalerFunction")),
        "{target}"
    );
    let (recovery_rule, target) = rule("RecoverySchedule");
    assert_eq!(recovery_rule["ScheduleExpression"], "rate(1 minute)");
    assert!(
        target.ends_with(physical(d, "RecoveryFunction")),
        "{target}"
    );
    for (logical, needle) in [
        ("MasterTaskEvents", "ECS Task State Change".to_string()),
        (
            "MasterHostEvents",
            physical(d, "MasterHostGroup").to_string(),
        ),
        (
            "AgentInstanceEvents",
            "EC2 Spot Instance Interruption Warning".to_string(),
        ),
    ] {
        let (described, target) = rule(logical);
        let pattern = described["EventPattern"].as_str().unwrap_or("");
        assert!(pattern.contains(&needle), "{logical}: {pattern}");
        assert!(
            target.ends_with(physical(d, "RecoveryFunction")),
            "{logical}: {target}"
        );
    }
    let (tasks, _) = rule("MasterTaskEvents");
    let cluster_arn = format!(
        "arn:aws:ecs:us-east-1:123456789012:cluster/{}",
        d.outputs["ClusterName"]
    );
    assert!(
        tasks["EventPattern"]
            .as_str()
            .unwrap_or("")
            .contains(&cluster_arn)
    );

    // Log groups keep 30 days.
    for logical in [
        "ConfigResolverLogs",
        "QueueScalerLogs",
        "RecoveryLogs",
        "MasterLogGroup",
    ] {
        let groups = cli
            .json(&[
                "logs",
                "describe-log-groups",
                "--log-group-name-prefix",
                physical(d, logical),
            ])
            .expect("DescribeLogGroups");
        assert_eq!(groups["logGroups"][0]["retentionInDays"], 30, "{logical}");
    }
}

fn check_state_and_alerts(cli: &AwsCli, d: &LocalDeployment) {
    let table = cli
        .json(&[
            "dynamodb",
            "describe-table",
            "--table-name",
            physical(d, "StateTable"),
        ])
        .expect("DescribeTable");
    assert_eq!(table["Table"]["KeySchema"][0]["AttributeName"], "pk");
    let topics = cli.json(&["sns", "list-topics"]).expect("ListTopics");
    assert!(
        topics["Topics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["TopicArn"] == d.outputs["AlertTopicArn"].as_str())
    );
    let dashboard = cli
        .json(&[
            "cloudwatch",
            "get-dashboard",
            "--dashboard-name",
            &format!("{STACK}-longshore"),
        ])
        .expect("GetDashboard");
    let body: Value = serde_json::from_str(dashboard["DashboardBody"].as_str().unwrap_or(""))
        .expect("the dashboard body is JSON");
    assert_eq!(body["widgets"].as_array().map(Vec::len), Some(4));
}

async fn check_rendered_configuration(moto: &MotoServer, d: &LocalDeployment) {
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let get = |name: String| {
        let ssm = ssm.clone();
        async move {
            ssm.get_parameter()
                .name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetParameter {name}: {e:?}"))
                .parameter
                .and_then(|p| p.value)
                .expect("value")
        }
    };
    let fleet = FleetConfig::from_json(&get(d.custom_data["FleetParameter"].clone()).await)
        .expect("the stored fleet configuration is what the queue-scaler reads");
    assert_eq!(fleet.stack, STACK);
    assert_eq!(fleet.launch_template.id, physical(d, "AgentLaunchTemplate"));
    assert_eq!(fleet.masters, vec!["master-a", "master-b"]);
    assert_eq!(fleet.max_agents, 20);
    assert_eq!(fleet.labels.len(), 1);
    for master in ["master-a", "master-b"] {
        let name = format!("{}{master}", d.custom_data["CascParameterPrefix"]);
        let casc: serde_yaml::Value = serde_yaml::from_str(&get(name).await).expect("CasC is YAML");
        assert_eq!(casc["jenkins"]["numExecutors"].as_i64(), Some(0));
        assert_eq!(casc["jenkins"]["slaveAgentPort"].as_i64(), Some(-1));
        assert_eq!(
            casc["unclassified"]["location"]["url"].as_str(),
            Some(format!("http://{master}.{DOMAIN}/").as_str())
        );
    }
    // The template the stack was made from is the one in the repository.
    let template = template_json(&std::fs::read_to_string(template_path()).unwrap()).unwrap();
    assert_eq!(resources(&template).len(), d.resources.len());
}

/// A deploy whose properties cannot work fails with config-resolver's reason naming the
/// property (moto itself ignores a FAILED answer: the stack stays CREATE_IN_PROGRESS there).
#[tokio::test]
async fn an_instance_type_no_zone_offers_fails_the_deploy_naming_the_property() {
    let moto = MotoServer::start().expect("moto");
    let mut options = LocalDeployOptions::example(STACK).expect("parameters file");
    options
        .parameters
        .insert("AgentInstanceTypes".into(), "hpc7g.4xlarge".into());
    let err = deploy_local(&moto, &options)
        .await
        .expect_err("no availability zone of the subnets offers hpc7g.4xlarge");
    let text = err.to_string();
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("Labels[0].InstanceTypes"), "{text}");
    assert!(text.contains("hpc7g.4xlarge"), "{text}");
}
