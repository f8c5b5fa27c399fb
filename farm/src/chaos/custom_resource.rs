//! The custom resource side of a chaos run: CloudFormation requests for `Custom::JenkinsConfig`
//! played into the real config-resolver handler, with the run's AWS faults in the way (its
//! SDK goes through the same proxy), properties broken in the ways users break them, a
//! resolver that hangs (an AWS call held past the Lambda deadline), and a ResponseURL that
//! fails its first PUTs. What CloudFormation cares about is checked: every request gets one
//! answer, and a request with bad properties is never answered SUCCESS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use longshore::adapters::aws::network::AwsLookups;
use longshore::adapters::aws::ssm::SsmParams;
use longshore::adapters::cfn_response::{HttpResponder, RetryPolicy};
use longshore::handlers::config_resolver::{Deps, handle};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::aws_proxy::{AwsFault, AwsProxy, FaultRule};
use crate::moto::TestNetwork;

/// How one request is made to go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// Good properties: answered SUCCESS unless an AWS fault gets in the way.
    None,
    /// One property broken (missing, wrong type, unknown ID): must be answered FAILED.
    BadProperty(usize),
    /// The subnet lookup hangs past the deadline: must be answered FAILED, in time.
    Hang,
    /// The ResponseURL answers 500 to the first PUTs: the answer is retried.
    FlakyResponseUrl,
}

impl RequestFault {
    pub fn draw(rng: &mut StdRng) -> RequestFault {
        match rng.random_range(0..10) {
            0..=2 => RequestFault::None,
            3..=6 => RequestFault::BadProperty(rng.random_range(0..BREAKAGES.len())),
            7 => RequestFault::Hang,
            _ => RequestFault::FlakyResponseUrl,
        }
    }

    /// The fault's name in the run's fault counts.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestFault::None => "cr_request_clean",
            RequestFault::BadProperty(_) => "cr_bad_properties",
            RequestFault::Hang => "cr_resolver_hangs",
            RequestFault::FlakyResponseUrl => "cr_response_url_fails_first",
        }
    }
}

/// The ways properties get broken, as users break them.
const BREAKAGES: [fn(&mut Value); 8] = [
    |p| drop(p.as_object_mut().map(|o| o.remove("Subnets"))),
    |p| p["Subnets"] = json!("subnet-12345678"),
    |p| p["Subnets"] = json!(["subnet-0123456789abcdef0"]),
    |p| p["SecurityGroups"] = json!(["not-a-group"]),
    |p| p["MaxAgents"] = json!("many"),
    |p| p["Masters"] = json!([]),
    |p| p["Labels"][0]["Executors"] = json!("-1"),
    |p| p["JenkinsUrl"] = json!("ftp://jenkins"),
];

/// What CloudFormation received for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub request_id: String,
    pub status: String,
}

/// The ResponseURL: records each answer; fails the first PUTs of a request when told to.
#[derive(Clone, Default)]
struct Listener {
    answers: Arc<Mutex<Vec<Answer>>>,
    /// Request ids whose first PUTs fail, and how many still will.
    failing: Arc<Mutex<Vec<(String, u32)>>>,
}

async fn receive(State(listener): State<Listener>, body: Bytes) -> StatusCode {
    let Ok(answer) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let request_id = answer["RequestId"].as_str().unwrap_or_default().to_string();
    if let Ok(mut failing) = listener.failing.lock()
        && let Some((_, left)) = failing.iter_mut().find(|(id, _)| *id == request_id)
        && *left > 0
    {
        *left -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Ok(mut answers) = listener.answers.lock() {
        answers.push(Answer {
            request_id,
            status: answer["Status"].as_str().unwrap_or_default().to_string(),
        });
    }
    StatusCode::OK
}

/// The resources a good request names, created in moto for the run.
pub struct Resources {
    pub subnets: Vec<String>,
    pub instance_profile: String,
    pub security_group: String,
    pub launch_template: String,
}

/// Plays `faults` one request each; returns what was sent (request id, fault) and what
/// CloudFormation received.
pub async fn play(
    sdk: &aws_config::SdkConfig,
    proxy: &AwsProxy,
    stack: &str,
    resources: &Resources,
    faults: &[RequestFault],
) -> Result<(Vec<(String, RequestFault)>, Vec<Answer>), String> {
    let listener = Listener::default();
    let app = Router::new()
        .route("/{*path}", put(receive))
        .with_state(listener.clone());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("response listener: {e}"))?;
    let url = format!(
        "http://{}/cloudformation-response",
        socket.local_addr().map_err(|e| e.to_string())?
    );
    let server = tokio::spawn(async move { axum::serve(socket, app).await });
    let mut deps = Deps::new(
        AwsLookups::from_conf(sdk),
        SsmParams::from_conf(sdk),
        HttpResponder::new(RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(20),
            attempt_timeout: Duration::from_secs(2),
        })
        .map_err(|e| e.to_string())?,
    );
    deps.answer_margin = Duration::from_millis(1_500);
    let mut sent = Vec::new();
    for (n, fault) in faults.iter().enumerate() {
        let request_id = format!("{stack}-cr-{n}");
        let mut properties = good_properties(resources);
        match fault {
            RequestFault::BadProperty(which) => BREAKAGES[*which](&mut properties),
            RequestFault::Hang => proxy.add_rule(
                FaultRule::on("DescribeSubnets", AwsFault::Delay(Duration::from_secs(4))).times(1),
            ),
            RequestFault::FlakyResponseUrl => {
                if let Ok(mut failing) = listener.failing.lock() {
                    failing.push((request_id.clone(), 2));
                }
            }
            RequestFault::None => {}
        }
        let request = json!({
            "RequestType": "Create",
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
            "ResponseURL": url,
            "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{stack}/c0ffee00-0000-0000-0000-000000000000"),
            "RequestId": request_id,
            "LogicalResourceId": "JenkinsConfig",
            "ResourceType": "Custom::JenkinsConfig",
            "ResourceProperties": properties,
        });
        // A short deadline, so that a hang is cut off in the run's time scale.
        let _ = handle(&deps, request, Duration::from_secs(3)).await;
        sent.push((request_id, *fault));
    }
    server.abort();
    let answers = listener
        .answers
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    Ok((sent, answers))
}

/// The properties of a good request on this run's resources.
pub fn good_properties(resources: &Resources) -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
        "LaunchTemplate": resources.launch_template,
        "LaunchTemplateVersion": "$Latest",
        "Subnets": resources.subnets,
        "SecurityGroups": [resources.security_group],
        "InstanceProfile": resources.instance_profile,
        "Masters": [{"Name": "master-a"}, {"Name": "master-b"}],
        "JenkinsUrl": "https://jenkins.example.com",
        "MaxAgents": "5",
        "Labels": [
            {"Name": "docker", "NodeLabels": ["docker", "linux"], "Executors": "2",
             "InstanceTypes": ["c6i.large"], "MaxPerMaster": "3"}
        ]
    })
}

/// The run's resources: its subnets and launch template, and a security group in its VPC.
pub async fn resources(
    sdk: &aws_config::SdkConfig,
    network: &TestNetwork,
    launch_template: &str,
    stack: &str,
) -> Result<Resources, String> {
    let group = aws_sdk_ec2::Client::new(sdk)
        .create_security_group()
        .group_name(format!("{stack}-agents"))
        .description("chaos agents")
        .vpc_id(&network.vpc_id)
        .send()
        .await
        .map_err(|e| aws_sdk_ec2::error::DisplayErrorContext(e).to_string())?;
    let profile = aws_sdk_iam::Client::new(sdk)
        .create_instance_profile()
        .instance_profile_name(format!("{stack}-agent"))
        .send()
        .await
        .map_err(|e| aws_sdk_iam::error::DisplayErrorContext(e).to_string())?;
    Ok(Resources {
        instance_profile: profile
            .instance_profile()
            .map(|p| p.arn().to_string())
            .unwrap_or_default(),
        subnets: network
            .subnets
            .iter()
            .map(|s| s.subnet_id.clone())
            .collect(),
        security_group: group.group_id().unwrap_or_default().to_string(),
        launch_template: launch_template.to_string(),
    })
}
