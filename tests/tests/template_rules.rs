//! The template's own rules, checked on `infra/template.yaml` itself (parsed with serde_yaml,
//! CloudFormation's short tags turned into their JSON form by `longshore_farm::deploy::
//! template_json`): least-privilege IAM, IMDSv2, encryption, ingress, log retention, no
//! secret; the Lambdas' environment matches what the functions read; the agents' user data is
//! the file in `infra/agent/` verbatim; the custom resource's properties are ones config-resolver
//! accepts. These cover what moto ignores or cannot create (alarms, secrets, IAM conditions).

use std::collections::{BTreeMap, BTreeSet};

use longshore::adapters::aws::{autoscaling, ec2, ecs, launches, lease, secrets, sns, ssm, state};
use longshore::config::{CommonConfig, Settings, Source};
use longshore::domain::custom_resource::parse_properties;
use longshore::handlers::queue_scaler::{MasterSource, QueueScalerConfig};
use longshore::handlers::recovery::RecoveryConfig;
use longshore_farm::deploy::{
    Scope, effective_parameters, parse_parameters, resources, template_json, template_path,
    workspace_dir,
};
use serde_json::{Value, json};

fn template() -> Value {
    template_json(&std::fs::read_to_string(template_path()).expect("template")).expect("parses")
}

fn of_type(template: &Value, kind: &str) -> Vec<(String, Value)> {
    resources(template)
        .into_iter()
        .filter(|(_, (k, _))| k == kind)
        .map(|(id, (_, def))| (id, def))
        .collect()
}

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

/// Every `(role, statement)` of every inline policy of every role.
fn statements(template: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, role) in of_type(template, "AWS::IAM::Role") {
        for policy in list(&role["Properties"]["Policies"]) {
            for statement in list(&policy["PolicyDocument"]["Statement"]) {
                out.push((id.clone(), statement));
            }
        }
    }
    out
}

/// Actions that AWS only authorizes on `"*"` (no resource-level permissions), or that this
/// template scopes by a condition key instead of a resource.
const STAR_ONLY: &[&str] = &[
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeInstances",
    "autoscaling:DescribeAutoScalingGroups",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "ecs:ListTasks",
    "ecs:DescribeTasks",
];

#[test]
fn iam_is_least_privilege() {
    let template = template();
    let all = statements(&template);
    assert!(all.len() > 30, "too few statements found: {}", all.len());
    for (role, s) in &all {
        assert_eq!(s["Effect"], "Allow", "{role}: only Allow statements");
        let actions: Vec<String> = list(&s["Action"])
            .iter()
            .map(|a| a.as_str().expect("action is a string").to_string())
            .collect();
        for action in &actions {
            assert!(
                !action.contains('*'),
                "{role}: wildcard action {action} ({s})"
            );
        }
        let resources = list(&s["Resource"]);
        if resources.iter().any(|r| r == "*") {
            for action in &actions {
                assert!(
                    STAR_ONLY.contains(&action.as_str()),
                    "{role}: {action} on \"*\" although the API takes a narrower resource"
                );
            }
            // Scoped by a condition where the API offers one.
            if actions.iter().any(|a| a.starts_with("ecs:")) {
                assert!(s["Condition"]["ArnEquals"]["ecs:cluster"].is_object());
            }
            if actions.iter().any(|a| a == "cloudwatch:PutMetricData") {
                assert_eq!(
                    s["Condition"]["StringEquals"]["cloudwatch:namespace"],
                    "longshore"
                );
            }
        }
        // The stack's tag and the agent role: the master hosts carry the stack's tag too.
        let tag_condition = |s: &Value| {
            let c = &s["Condition"]["StringEquals"];
            let stack = json!({"Ref": "AWS::StackName"});
            (c["aws:ResourceTag/longshore:stack"] == stack
                && c["aws:ResourceTag/longshore:role"] == "agent")
                || (c["aws:RequestTag/longshore:stack"] == stack
                    && c["aws:RequestTag/longshore:role"] == "agent")
        };
        if actions
            .iter()
            .any(|a| a == "ec2:TerminateInstances" || a == "ec2:CreateTags")
        {
            assert!(
                tag_condition(s),
                "{role}: {actions:?} without the longshore:stack and longshore:role=agent tag condition"
            );
        }
        if actions.iter().any(|a| a == "iam:PassRole") {
            assert_eq!(
                resources,
                vec![json!({"Fn::GetAtt": ["AgentRole", "Arn"]})],
                "{role}: PassRole only for the agent role"
            );
            assert_eq!(
                s["Condition"]["StringEquals"]["iam:PassedToService"],
                "ec2.amazonaws.com"
            );
        }
        if actions.iter().any(|a| a == "ec2:RunInstances")
            && resources
                .iter()
                .any(|r| r.to_string().contains(":instance/"))
        {
            assert!(
                tag_condition(s),
                "{role}: RunInstances must tag longshore:stack"
            );
        }
    }
    // Who may do what, in short.
    let can = |role: &str, action: &str| {
        all.iter()
            .any(|(r, s)| r == role && list(&s["Action"]).iter().any(|a| a == action))
    };
    assert!(can("QueueScalerRole", "ec2:RunInstances"));
    assert!(can("QueueScalerRole", "iam:PassRole"));
    assert!(!can("RecoveryRole", "iam:PassRole"));
    assert!(!can("ConfigResolverRole", "ec2:TerminateInstances"));
    assert!(!can("AgentRole", "ssm:PutParameter"));
    // Recovery's state shares the table under its own key prefix.
    let recovery_table = all
        .iter()
        .find(|(r, s)| r == "RecoveryRole" && s["Sid"] == "PendingDrains")
        .expect("recovery's table statement");
    assert_eq!(
        recovery_table.1["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
        json!([{"Fn::Sub": "recovery#${AWS::StackName}#*"}])
    );
    // ... the prefix RecoveryState writes under.
    assert!(
        include_str!("../../shared/src/adapters/aws/state.rs")
            .contains("format!(\"recovery#{stack}#\")")
    );
    // The scaler's lease and launch journal, under theirs.
    let scaler_table = all
        .iter()
        .find(|(r, s)| r == "QueueScalerRole" && s["Sid"] == "LeaseAndLaunchJournal")
        .expect("the scaler's table statement");
    assert_eq!(
        scaler_table.1["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
        json!([{"Fn::Sub": "queue-scaler#${AWS::StackName}*"}])
    );
    assert!(
        include_str!("../../shared/src/adapters/aws/lease.rs")
            .contains("format!(\"queue-scaler#{stack}\")")
    );
    assert!(
        include_str!("../../shared/src/adapters/aws/launches.rs")
            .contains("format!(\"queue-scaler#{stack}#launch#\")")
    );
}

#[test]
fn instances_require_imdsv2_and_volumes_are_encrypted() {
    let template = template();
    let templates = of_type(&template, "AWS::EC2::LaunchTemplate");
    assert_eq!(templates.len(), 2);
    for (id, def) in templates {
        let data = &def["Properties"]["LaunchTemplateData"];
        assert_eq!(data["MetadataOptions"]["HttpTokens"], "required", "{id}");
        assert_eq!(
            data["MetadataOptions"]["HttpPutResponseHopLimit"], 1,
            "{id}"
        );
        let volumes = list(&data["BlockDeviceMappings"]);
        assert!(!volumes.is_empty(), "{id}");
        for volume in volumes {
            assert_eq!(volume["Ebs"]["Encrypted"], true, "{id}");
        }
    }
    let agent = &template["Resources"]["AgentLaunchTemplate"]["Properties"]["LaunchTemplateData"];
    assert_eq!(agent["MetadataOptions"]["InstanceMetadataTags"], "enabled");
    for (id, def) in of_type(&template, "AWS::EFS::FileSystem") {
        assert_eq!(def["Properties"]["Encrypted"], true, "{id}");
    }
    for (id, def) in of_type(&template, "AWS::ECS::TaskDefinition") {
        let volume = &def["Properties"]["Volumes"][0]["EFSVolumeConfiguration"];
        assert_eq!(volume["TransitEncryption"], "ENABLED", "{id}");
        assert_eq!(volume["AuthorizationConfig"]["IAM"], "ENABLED", "{id}");
    }
    for (id, def) in of_type(&template, "AWS::DynamoDB::Table") {
        assert_eq!(
            def["Properties"]["SSESpecification"]["SSEEnabled"], true,
            "{id}"
        );
    }
    for (id, def) in of_type(&template, "AWS::SNS::Topic") {
        assert!(def["Properties"]["KmsMasterKeyId"].is_string(), "{id}");
    }
    for (id, def) in of_type(&template, "AWS::ECR::Repository") {
        assert!(
            def["Properties"]["EncryptionConfiguration"].is_object(),
            "{id}"
        );
        assert_eq!(def["Properties"]["ImageTagMutability"], "IMMUTABLE", "{id}");
    }
}

#[test]
fn ingress_is_only_what_each_tier_needs() {
    let template = template();
    let groups = of_type(&template, "AWS::EC2::SecurityGroup");
    assert_eq!(groups.len(), 6);
    let mut rules: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    for (id, def) in &groups {
        for rule in list(&def["Properties"]["SecurityGroupIngress"]) {
            let source = rule
                .get("CidrIp")
                .or_else(|| rule.get("SourceSecurityGroupId"))
                .cloned()
                .expect("a source");
            rules
                .entry(id.clone())
                .or_default()
                .push((rule["FromPort"].as_i64().unwrap(), source));
        }
        assert!(
            def["Properties"].get("SecurityGroupEgress").is_none(),
            "{id}: egress is the default (all out)"
        );
    }
    for (_, def) in of_type(&template, "AWS::EC2::SecurityGroupIngress") {
        let p = &def["Properties"];
        let target = p["GroupId"]["Fn::GetAtt"][0].as_str().unwrap().to_string();
        rules.entry(target).or_default().push((
            p["FromPort"].as_i64().unwrap(),
            p["SourceSecurityGroupId"].clone(),
        ));
    }
    let group = |id: &str| json!({"Fn::GetAtt": [id, "GroupId"]});
    let cidr = json!({"Ref": "AllowedCidr"});
    assert_eq!(
        rules["AlbSecurityGroup"],
        vec![(443, cidr.clone()), (80, cidr)]
    );
    assert_eq!(
        rules["MasterSecurityGroup"],
        vec![
            (8080, group("AlbSecurityGroup")),
            (8080, group("AgentSecurityGroup")),
            (8080, group("FunctionSecurityGroup"))
        ]
    );
    assert_eq!(
        rules["EfsSecurityGroup"],
        vec![(2049, group("MasterSecurityGroup"))]
    );
    assert!(
        !rules.contains_key("AgentSecurityGroup"),
        "agents: no ingress"
    );
    assert!(
        !rules.contains_key("MasterHostSecurityGroup"),
        "hosts: no ingress"
    );
    assert!(
        !rules.contains_key("FunctionSecurityGroup"),
        "Lambdas: no ingress"
    );
    // The two Lambdas that call Jenkins sit in the VPC, in that group (the masters answer at
    // their tasks' private IPs only); config-resolver calls AWS APIs alone and stays out.
    for function in ["QueueScalerFunction", "RecoveryFunction"] {
        let vpc = &template["Resources"][function]["Properties"]["VpcConfig"];
        assert_eq!(
            vpc["SubnetIds"],
            json!({"Ref": "PrivateSubnets"}),
            "{function}"
        );
        assert_eq!(
            vpc["SecurityGroupIds"],
            json!([group("FunctionSecurityGroup")]),
            "{function}"
        );
    }
    assert!(
        template["Resources"]["ConfigResolverFunction"]["Properties"]
            .get("VpcConfig")
            .is_none()
    );
    assert!(!template.to_string().contains("0.0.0.0/0"));
}

#[test]
fn logs_are_kept_for_a_bounded_time_and_every_function_has_its_group() {
    let template = template();
    for (id, def) in of_type(&template, "AWS::Logs::LogGroup") {
        assert_eq!(
            def["Properties"]["RetentionInDays"],
            json!({"Ref": "LogRetentionDays"}),
            "{id}"
        );
    }
    let functions = of_type(&template, "AWS::Lambda::Function");
    assert_eq!(functions.len(), 3);
    for (id, def) in functions {
        let p = &def["Properties"];
        let group = p["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .expect("log group");
        assert_eq!(
            template["Resources"][group]["Type"], "AWS::Logs::LogGroup",
            "{id}"
        );
        assert_eq!(p["Runtime"], "provided.al2023", "{id}");
        assert_eq!(p["Architectures"], json!(["x86_64"]), "{id}");
        assert!(
            p["Code"]
                .as_str()
                .unwrap_or("")
                .starts_with("../out/lambda/"),
            "{id}: Code is the directory `make deploy` stages for `package`"
        );
    }
}

#[test]
fn no_secret_is_in_the_template() {
    let template = template();
    let text = std::fs::read_to_string(template_path()).unwrap();
    for needle in [
        "AKIA",
        "BEGIN RSA",
        "BEGIN PRIVATE",
        "aws_secret_access_key",
    ] {
        assert!(!text.contains(needle), "{needle}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("SecretString:")),
        "a secret value written into the template"
    );
    // No parameter carries a secret, and no default looks like one.
    for (name, def) in template["Parameters"].as_object().unwrap() {
        let lower = name.to_lowercase();
        assert!(
            !["password", "token", "secret", "key"]
                .iter()
                .any(|w| lower.contains(w)),
            "parameter {name} looks like a secret: generate it in Secrets Manager instead"
        );
        assert!(def.get("NoEcho").is_none(), "{name}");
    }
    // The admin secret is generated at deploy, never written here, and no output names it.
    let secret = &template["Resources"]["AdminSecret"]["Properties"];
    assert_eq!(secret["GenerateSecretString"]["GenerateStringKey"], "token");
    assert!(secret.get("SecretString").is_none());
    assert!(!template["Outputs"].to_string().contains("AdminSecret"));
    // The masters get the password from Secrets Manager through ECS, never as plain env.
    for id in ["MasterATask", "MasterBTask"] {
        let container = &template["Resources"][id]["Properties"]["ContainerDefinitions"][0];
        assert!(!container["Environment"].to_string().contains("PASSWORD"));
        assert_eq!(container["Secrets"][0]["Name"], "ADMIN_PASSWORD");
    }
}

#[test]
fn the_agents_user_data_is_the_boot_file_verbatim() {
    let template = template();
    let embedded = &template["Resources"]["AgentLaunchTemplate"]["Properties"]["LaunchTemplateData"]
        ["UserData"]["Fn::Base64"]["Fn::Sub"];
    let file = std::fs::read_to_string(workspace_dir().join("infra/agent/user-data.yaml")).unwrap();
    assert_eq!(
        embedded.as_str(),
        Some(file.as_str()),
        "infra/template.yaml must embed infra/agent/user-data.yaml verbatim (re-indent the \
         file by 14 spaces under AgentLaunchTemplate's Fn::Sub)"
    );
    assert_eq!(file, longshore::domain::render::AGENT_USER_DATA_TEMPLATE);
}

/// A template's environment map with every intrinsic replaced by a placeholder.
struct EnvOf(BTreeMap<String, String>);

impl Source for EnvOf {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn environment(template: &Value, function: &str) -> EnvOf {
    EnvOf(
        template["Resources"][function]["Properties"]["Environment"]["Variables"]
            .as_object()
            .expect("variables")
            .iter()
            .map(|(k, v)| {
                let value = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("resolved-{k}"));
                (k.clone(), value)
            })
            .collect(),
    )
}

#[test]
fn the_functions_environment_is_what_the_code_reads() {
    let template = template();
    let scaler = environment(&template, "QueueScalerFunction");
    let keys: BTreeSet<String> = scaler.0.keys().cloned().collect();
    let config = QueueScalerConfig::from_settings(&Settings::new(scaler))
        .expect("the template's environment satisfies the queue-scaler");
    assert_eq!(
        config.masters,
        MasterSource::Ecs {
            cluster: "resolved-ECS_CLUSTER".into(),
            port: 8080
        }
    );
    assert_eq!(config.jenkins_user, "admin");
    let read = [
        include_str!("../../shared/src/handlers/queue_scaler/mod.rs"),
        include_str!("../../shared/src/config.rs"),
    ]
    .concat();
    for key in &keys {
        assert!(
            read.contains(&format!("\"{key}\"")),
            "queue-scaler never reads {key}"
        );
    }
    let env =
        &template["Resources"]["QueueScalerFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env["FLEET_CONFIG_PARAMETER"],
        json!({"Fn::GetAtt": ["JenkinsConfig", "FleetParameter"]})
    );
    assert_eq!(env["JENKINS_SECRET"], json!({"Ref": "AdminSecret"}));
    assert_eq!(env["LEASE_TABLE"], json!({"Ref": "StateTable"}));

    let resolver = environment(&template, "ConfigResolverFunction");
    assert_eq!(
        resolver.0.keys().collect::<Vec<_>>(),
        vec!["LONGSHORE_STACK"]
    );
    CommonConfig::from_settings(&Settings::new(resolver)).expect("config-resolver settings");
}

#[test]
fn recovery_reads_its_environment_from_the_template() {
    let template = template();
    let mut recovery = environment(&template, "RecoveryFunction");
    let env = &template["Resources"]["RecoveryFunction"]["Properties"]["Environment"]["Variables"];
    // The master services' names as ECS task events carry them ("service:<ServiceName>"):
    // the Sub of the services' Name attributes, resolved with their ServiceName.
    let services = env["LONGSHORE_MASTER_SERVICES"]["Fn::Sub"]
        .as_str()
        .expect("LONGSHORE_MASTER_SERVICES is a Sub of the services' names")
        .to_string();
    let mut resolved = services.clone();
    for (id, service) in of_type(&template, "AWS::ECS::Service") {
        let name = service["Properties"]["ServiceName"]
            .as_str()
            .expect("services are named")
            .to_string();
        resolved = resolved.replace(&format!("${{{id}.Name}}"), &name);
    }
    assert_eq!(resolved, "master-a,master-b", "from {services}");
    recovery
        .0
        .insert("LONGSHORE_MASTER_SERVICES".to_string(), resolved);
    let keys: BTreeSet<String> = recovery.0.keys().cloned().collect();
    let config = RecoveryConfig::from_settings(&Settings::new(recovery))
        .expect("the template's environment satisfies recovery");
    assert_eq!(
        config.context.master_services,
        vec!["master-a".to_string(), "master-b".to_string()]
    );
    assert_eq!(
        config.context.cluster.as_deref(),
        Some("resolved-LONGSHORE_ECS_CLUSTER")
    );
    assert_eq!(
        config.masters,
        MasterSource::Ecs {
            cluster: "resolved-LONGSHORE_ECS_CLUSTER".into(),
            port: 8080
        }
    );
    assert_eq!(config.jenkins_user, "admin");
    assert_eq!(config.jenkins_secret, "resolved-JENKINS_SECRET");
    let read = [
        include_str!("../../shared/src/handlers/recovery.rs"),
        include_str!("../../shared/src/config.rs"),
    ]
    .concat();
    for key in &keys {
        assert!(
            read.contains(&format!("\"{key}\"")) || read.contains(&format!("= \"{key}\";")),
            "recovery never reads {key}"
        );
    }
    assert_eq!(env["LONGSHORE_ECS_CLUSTER"], json!({"Ref": "Cluster"}));
    assert_eq!(
        env["LONGSHORE_MASTER_ASG"],
        json!({"Ref": "MasterHostGroup"})
    );
    assert_eq!(env["ALERT_TOPIC_ARN"], json!({"Ref": "AlertTopic"}));
    assert_eq!(env["STATE_TABLE"], json!({"Ref": "StateTable"}));
    assert_eq!(env["JENKINS_SECRET"], json!({"Ref": "AdminSecret"}));
    // The table's TTL is on the attribute recovery's items carry.
    assert_eq!(
        template["Resources"]["StateTable"]["Properties"]["TimeToLiveSpecification"],
        json!({"AttributeName": "expiresAt", "Enabled": true})
    );
    assert!(
        include_str!("../../shared/src/adapters/aws/state.rs")
            .contains("(\"expiresAt\".to_string(), n(expires_at))")
    );
}

/// `(action, statement)` for every action of `role`'s statements.
fn grants(template: &Value, role: &str) -> Vec<(String, Value)> {
    statements(template)
        .into_iter()
        .filter(|(r, _)| r == role)
        .flat_map(|(_, s)| {
            list(&s["Action"])
                .into_iter()
                .map(move |a| (a.as_str().expect("action").to_string(), s.clone()))
        })
        .collect()
}

/// The SDK operations called in `source` (`client.<operation>(` with whitespace removed), as
/// IAM actions of `service`.
fn sdk_calls(source: &str, service: &str) -> BTreeSet<String> {
    let flat: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    flat.split("client.")
        .skip(1)
        .filter_map(|rest| {
            let op: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            (rest[op.len()..].starts_with('(') && !op.is_empty()).then_some(op)
        })
        .map(|op| {
            let camel: String = op
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect();
            format!("{service}:{camel}")
        })
        .collect()
}

/// The `impl <name>` block of `source`.
fn impl_block<'a>(source: &'a str, name: &str) -> &'a str {
    let start = source
        .find(&format!("impl {name} {{"))
        .unwrap_or_else(|| panic!("impl {name}"));
    let len = source[start..].find("\n}\n").expect("block end");
    &source[start..start + len]
}

#[test]
fn the_adapters_iam_lists_name_every_call_they_make() {
    let consts = |lists: &[&[&str]]| -> BTreeSet<String> {
        lists
            .iter()
            .flat_map(|l| l.iter().map(|a| a.to_string()))
            .collect()
    };
    let cases: Vec<(&str, BTreeSet<String>, BTreeSet<String>)> = vec![
        (
            "sns",
            sdk_calls(include_str!("../../shared/src/adapters/aws/sns.rs"), "sns"),
            consts(&[sns::IAM_ACTIONS]),
        ),
        (
            "autoscaling",
            sdk_calls(
                include_str!("../../shared/src/adapters/aws/autoscaling.rs"),
                "autoscaling",
            ),
            consts(&[autoscaling::IAM_ACTIONS]),
        ),
        (
            "state",
            sdk_calls(
                include_str!("../../shared/src/adapters/aws/state.rs"),
                "dynamodb",
            ),
            consts(&[state::IAM_ACTIONS]),
        ),
        (
            "launch journal",
            sdk_calls(
                include_str!("../../shared/src/adapters/aws/launches.rs"),
                "dynamodb",
            ),
            consts(&[launches::IAM_ACTIONS]),
        ),
        (
            "lease",
            sdk_calls(
                include_str!("../../shared/src/adapters/aws/lease.rs"),
                "dynamodb",
            ),
            consts(&[lease::IAM_ACTIONS]),
        ),
        (
            "secrets",
            sdk_calls(
                include_str!("../../shared/src/adapters/aws/secrets.rs"),
                "secretsmanager",
            ),
            consts(&[secrets::IAM_ACTIONS]),
        ),
        (
            "ecs masters",
            sdk_calls(
                impl_block(
                    include_str!("../../shared/src/adapters/aws/ecs.rs"),
                    "EcsMasters",
                ),
                "ecs",
            ),
            consts(&[ecs::MASTERS_IAM_ACTIONS]),
        ),
        (
            "ecs hosts",
            sdk_calls(
                impl_block(
                    include_str!("../../shared/src/adapters/aws/ecs.rs"),
                    "EcsHosts",
                ),
                "ecs",
            ),
            consts(&[ecs::HOSTS_IAM_ACTIONS]),
        ),
        (
            "ec2",
            sdk_calls(include_str!("../../shared/src/adapters/aws/ec2.rs"), "ec2"),
            consts(&[ec2::LAUNCH_IAM_ACTIONS, ec2::WATCH_IAM_ACTIONS]),
        ),
        (
            "ssm secrets",
            sdk_calls(
                impl_block(
                    include_str!("../../shared/src/adapters/aws/ssm.rs"),
                    "SsmSecrets",
                ),
                "ssm",
            ),
            consts(&[ssm::PUT_SECRET_IAM_ACTIONS, ssm::DELETE_SECRET_IAM_ACTIONS]),
        ),
    ];
    for (adapter, calls, listed) in cases {
        assert!(!calls.is_empty(), "{adapter}: no SDK call found");
        let missing: Vec<_> = calls.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "{adapter} calls {missing:?} but its IAM_ACTIONS do not list them"
        );
    }
}

#[test]
fn recovery_may_make_every_call_its_adapters_make_and_no_other() {
    let template = template();
    let granted = grants(&template, "RecoveryRole");
    let needed: BTreeSet<&str> = [
        sns::IAM_ACTIONS,
        autoscaling::IAM_ACTIONS,
        ecs::HOSTS_IAM_ACTIONS,
        ecs::MASTERS_IAM_ACTIONS,
        ec2::WATCH_IAM_ACTIONS,
        ssm::DELETE_SECRET_IAM_ACTIONS,
        state::IAM_ACTIONS,
        secrets::IAM_ACTIONS,
        &["logs:CreateLogStream", "logs:PutLogEvents"],
    ]
    .concat()
    .into_iter()
    .collect();
    let have: BTreeSet<&str> = granted.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(have, needed, "RecoveryRole's actions");
    // Each on the stack's own resource.
    let on = |action: &str| -> Value {
        let (_, s) = granted.iter().find(|(a, _)| a == action).expect(action);
        s["Resource"].clone()
    };
    assert_eq!(on("sns:Publish"), json!({"Ref": "AlertTopic"}));
    assert_eq!(
        on("secretsmanager:GetSecretValue"),
        json!({"Ref": "AdminSecret"})
    );
    for action in state::IAM_ACTIONS {
        assert_eq!(
            on(action),
            json!({"Fn::GetAtt": ["StateTable", "Arn"]}),
            "{action}"
        );
    }
    assert!(
        on("ssm:DeleteParameter")
            .to_string()
            .contains("parameter/longshore/${AWS::StackName}/agents/*")
    );
    for action in autoscaling::IAM_ACTIONS {
        assert!(
            on(action)
                .to_string()
                .contains("autoScalingGroupName/${MasterHostGroup}"),
            "{action}"
        );
    }
    assert_eq!(
        on("ecs:ListContainerInstances"),
        json!({"Fn::GetAtt": ["Cluster", "Arn"]})
    );
    for action in [
        "ecs:DescribeContainerInstances",
        "ecs:UpdateContainerInstancesState",
    ] {
        assert!(
            on(action)
                .to_string()
                .contains("container-instance/${Cluster}/*"),
            "{action}"
        );
    }
}

#[test]
fn every_rule_may_invoke_its_target_and_recovery_hears_what_it_handles() {
    let template = template();
    let rules = of_type(&template, "AWS::Events::Rule");
    assert_eq!(rules.len(), 5);
    let permissions = of_type(&template, "AWS::Lambda::Permission");
    for (id, rule) in &rules {
        let target = &rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0];
        let allowed = permissions.iter().any(|(_, p)| {
            p["Properties"]["SourceArn"] == json!({"Fn::GetAtt": [id, "Arn"]})
                && p["Properties"]["FunctionName"]["Ref"] == *target
                && p["Properties"]["Principal"] == "events.amazonaws.com"
        });
        assert!(allowed, "{id} has no permission to invoke {target}");
    }
    let pattern = |id: &str| template["Resources"][id]["Properties"]["EventPattern"].clone();
    assert_eq!(
        pattern("MasterTaskEvents")["detail"]["clusterArn"],
        json!([{"Fn::GetAtt": ["Cluster", "Arn"]}])
    );
    assert_eq!(
        pattern("MasterHostEvents")["detail-type"],
        json!([
            "EC2 Instance-terminate Lifecycle Action",
            "EC2 Instance Launch Unsuccessful"
        ])
    );
    assert_eq!(
        pattern("AgentInstanceEvents")["detail-type"],
        json!([
            "EC2 Instance State-change Notification",
            "EC2 Spot Instance Interruption Warning",
            "EC2 Instance Rebalance Recommendation"
        ])
    );
    for id in ["ScalerSchedule", "RecoverySchedule"] {
        assert_eq!(
            template["Resources"][id]["Properties"]["ScheduleExpression"],
            "rate(1 minute)"
        );
    }
    // The master hosts' terminate hook that recovery completes.
    let hook = &template["Resources"]["MasterHostGroup"]["Properties"]["LifecycleHookSpecificationList"]
        [0];
    assert_eq!(
        hook["LifecycleTransition"],
        "autoscaling:EC2_INSTANCE_TERMINATING"
    );
}

#[test]
fn alarms_notify_the_alert_topic() {
    let template = template();
    let alarms = of_type(&template, "AWS::CloudWatch::Alarm");
    assert_eq!(alarms.len(), 6);
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        assert_eq!(p["AlarmActions"], json!([{"Ref": "AlertTopic"}]), "{id}");
        assert!(
            p["MetricName"].is_string() && p["Namespace"].is_string(),
            "{id}"
        );
        assert!(!list(&p["Dimensions"]).is_empty(), "{id}");
    }
    let metrics: BTreeSet<String> = alarms
        .iter()
        .map(|(_, a)| a["Properties"]["MetricName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        metrics,
        BTreeSet::from([
            "Errors".into(),
            "RunningTaskCount".into(),
            "UnHealthyHostCount".into()
        ])
    );
    let subscription = &template["Resources"]["AlertEmail"];
    assert_eq!(subscription["Condition"], "HasAlarmEmail");
    assert_eq!(
        subscription["Properties"]["TopicArn"],
        json!({"Ref": "AlertTopic"})
    );
}

#[test]
fn the_custom_resource_properties_are_accepted_by_config_resolver() {
    let template = template();
    let text = std::fs::read_to_string(workspace_dir().join("infra/parameters.example")).unwrap();
    let parameters = effective_parameters(&template, &parse_parameters(&text).unwrap()).unwrap();
    let physical = BTreeMap::from([
        (
            "AgentLaunchTemplate".to_string(),
            "lt-0123456789abcdef0".to_string(),
        ),
        (
            "AgentInstanceProfile".to_string(),
            "ci-AgentInstanceProfile-1".to_string(),
        ),
    ]);
    let attributes = BTreeMap::from([
        (
            "AgentSecurityGroup.GroupId".to_string(),
            "sg-0123456789abcdef0".to_string(),
        ),
        (
            "AgentLaunchTemplate.LatestVersionNumber".to_string(),
            "1".to_string(),
        ),
        (
            "ConfigResolverFunction.Arn".to_string(),
            "arn:aws:lambda:us-east-1:123456789012:function:r".to_string(),
        ),
    ]);
    let scope = Scope {
        template: &template,
        stack_name: "ci",
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/ci/1",
        parameters: &parameters,
        physical: &physical,
        attributes: &attributes,
    };
    let mut properties = scope
        .eval(&template["Resources"]["JenkinsConfig"]["Properties"])
        .expect("evaluates");
    properties.as_object_mut().unwrap().remove("ServiceToken");
    let parsed = parse_properties(&properties)
        .unwrap_or_else(|e| panic!("config-resolver refuses the template's properties: {e:?}"));
    assert_eq!(parsed.masters.len(), 2);
    assert_eq!(parsed.masters[0].service.as_deref(), Some("master-a"));
    assert_eq!(parsed.masters[1].url, "http://master-b.ci.example.com/");
    assert_eq!(
        parsed.labels[0].instance_types,
        vec!["m7i.large", "m6i.large", "m5.large"]
    );
    // The services are named what the custom resource and recovery are told.
    for (service, name) in [
        ("MasterAService", "master-a"),
        ("MasterBService", "master-b"),
    ] {
        assert_eq!(
            template["Resources"][service]["Properties"]["ServiceName"],
            name
        );
    }
    // Each master's task definition takes its own rendered CasC and its hash (a change rolls it).
    for (task, index, name) in [
        ("MasterATask", 0, "master-a"),
        ("MasterBTask", 1, "master-b"),
    ] {
        let container = &template["Resources"][task]["Properties"]["ContainerDefinitions"][0];
        assert!(
            container["Environment"]
                .to_string()
                .contains(&format!("Master{index}CascHash"))
        );
        let casc = container["Secrets"][1]["ValueFrom"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(casc.ends_with(&format!(
            "parameter${{JenkinsConfig.CascParameterPrefix}}{name}"
        )));
    }
}

/// What moto creates but ignores (MOTO.md): checked in the template instead.
#[test]
fn what_moto_ignores_is_right_in_the_template() {
    let template = template();
    let r = |id: &str| template["Resources"][id]["Properties"].clone();
    // HTTPS when a certificate is given: port 80 redirects, the host rules sit on 443.
    let http = &r("HttpListener")["DefaultActions"][0]["Fn::If"];
    assert_eq!(http[0], "HasCertificate");
    assert_eq!(http[1]["Type"], "redirect");
    assert_eq!(http[1]["RedirectConfig"]["Protocol"], "HTTPS");
    assert_eq!(
        template["Resources"]["HttpsListener"]["Condition"],
        "HasCertificate"
    );
    for rule in ["MasterATargetRule", "MasterBTargetRule"] {
        assert_eq!(
            r(rule)["ListenerArn"],
            json!({"Fn::If": ["HasCertificate", {"Ref": "HttpsListener"}, {"Ref": "HttpListener"}]})
        );
    }
    // Sticky sessions for the UI, health check on /login.
    for tg in ["MasterATargets", "MasterBTargets"] {
        let p = r(tg);
        assert_eq!(p["HealthCheckPath"], "/login");
        let attributes = p["TargetGroupAttributes"].to_string();
        assert!(attributes.contains("stickiness.enabled") && attributes.contains("lb_cookie"));
    }
    // Each master: awsvpc, never two tasks on one JENKINS_HOME, its own access point.
    for (task, service, home) in [
        ("MasterATask", "MasterAService", "MasterAHome"),
        ("MasterBTask", "MasterBService", "MasterBHome"),
    ] {
        assert_eq!(r(task)["NetworkMode"], "awsvpc");
        assert_eq!(
            r(task)["Volumes"][0]["EFSVolumeConfiguration"]["AuthorizationConfig"]["AccessPointId"],
            json!({"Ref": home})
        );
        assert_eq!(
            r(task)["ExecutionRoleArn"],
            json!({"Fn::GetAtt": ["MasterExecutionRole", "Arn"]})
        );
        let deployment = &r(service)["DeploymentConfiguration"];
        assert_eq!(deployment["MaximumPercent"], 100);
        assert_eq!(deployment["MinimumHealthyPercent"], 0);
    }
    assert_ne!(
        r("MasterAHome")["RootDirectory"]["Path"],
        r("MasterBHome")["RootDirectory"]["Path"]
    );
    // The master hosts' terminate hook and the managed policies moto drops.
    let hook = &r("MasterHostGroup")["LifecycleHookSpecificationList"][0];
    assert_eq!(hook["DefaultResult"], "CONTINUE");
    assert!(
        r("MasterHostRole")["ManagedPolicyArns"]
            .to_string()
            .contains("AmazonEC2ContainerServiceforEC2Role")
    );
    // Alias to the load balancer's own zone.
    assert_eq!(
        r("MastersAlias")["AliasTarget"]["HostedZoneId"],
        json!({"Fn::GetAtt": ["LoadBalancer", "CanonicalHostedZoneID"]})
    );
}

#[test]
fn an_agent_may_read_only_the_secret_tagged_with_its_own_instance_arn() {
    let template = template();
    let agent = grants(&template, "AgentRole");
    let reads: Vec<&Value> = agent
        .iter()
        .filter(|(a, _)| a.starts_with("ssm:"))
        .map(|(a, s)| {
            assert_eq!(a, "ssm:GetParameter", "the agent's only SSM action");
            s
        })
        .collect();
    assert_eq!(reads.len(), 1);
    let s = reads[0];
    assert!(
        s["Resource"]
            .to_string()
            .contains("parameter/longshore/${AWS::StackName}/agents/*")
    );
    // The tag the scaler writes, compared with the caller's instance ARN.
    let condition = &s["Condition"]["StringEquals"];
    assert_eq!(
        condition.as_object().map(|c| c.len()),
        Some(1),
        "one condition: {condition}"
    );
    assert_eq!(
        condition[format!("ssm:resourceTag/{}", ssm::INSTANCE_ARN_TAG)],
        "${ec2:SourceInstanceARN}"
    );
    // A policy variable, so it must reach IAM as written: not inside a Fn::Sub (which would
    // try to resolve it).
    assert!(
        condition
            .to_string()
            .contains("\"${ec2:SourceInstanceARN}\"")
    );

    // The scaler may write, tag and delete secrets there (and recovery delete them).
    let scaler = grants(&template, "QueueScalerRole");
    // Its lease and launch journal live in the state table.
    for action in lease::IAM_ACTIONS.iter().chain(launches::IAM_ACTIONS) {
        assert!(
            scaler.iter().any(|(a, s)| a == action
                && s["Resource"] == json!({"Fn::GetAtt": ["StateTable", "Arn"]})),
            "QueueScalerRole may not {action} on the state table"
        );
    }
    for action in ssm::PUT_SECRET_IAM_ACTIONS
        .iter()
        .chain(ssm::DELETE_SECRET_IAM_ACTIONS)
    {
        assert!(
            scaler.iter().any(|(a, s)| a == action
                && s["Resource"]
                    .to_string()
                    .contains("parameter/longshore/${AWS::StackName}/agents/*")),
            "QueueScalerRole may not {action} on the agents' secrets"
        );
    }
}
