//! The real recovery binary under `cargo lambda watch`, fed by the farm's event bus
//! (`longshore_farm::events`, since moto delivers no events), acting on moto (EC2, SSM, ECS,
//! DynamoDB, SNS → SQS, Secrets Manager) and the Jenkins simulator. Auto Scaling's lifecycle
//! calls, which moto answers with HTTP 500, go to the wire recorder through
//! `AWS_ENDPOINT_URL_AUTO_SCALING`; everything else goes to moto.
//!
//! Needs the binaries: `cargo build --workspace --all-targets` first.

#[path = "support/lifecycle_recorder.rs"]
mod lifecycle_recorder;

use std::time::Duration;

use aws_sdk_ecs::types::ContainerDefinition;
use lifecycle_recorder::{Recorder, field};
use longshore::adapters::jenkins::JenkinsClient;
use longshore_farm::events::{self, EventBus, TaskStop};
use longshore_farm::jenkins::{RunningSim, SimConfig, Simulator};
use longshore_farm::lambda::{FunctionSpec, Invocation, LambdaFarm};
use longshore_farm::moto::{MotoServer, REGION};
use longshore_farm::stack;
use longshore_tests::{AgentLaunch, launch_agents, live_instances, put_agent_secret};
use serde_json::{Value, json};

const STACK: &str = "rec";
const STATE_TABLE: &str = "rec-state";
const SECRET: &str = "rec/jenkins";
const CLUSTER: &str = "rec-masters";
const ASG: &str = "rec-master-hosts";
const HOOK: &str = "rec-drain";
const QUEUE: &str = "rec-alerts";

struct Setup {
    moto: MotoServer,
    sdk: aws_config::SdkConfig,
    sims: Vec<RunningSim>,
    recorder: Recorder,
    topic: String,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let moto = MotoServer::start().expect("moto");
    let sdk = moto.sdk_config().await;
    stack::create_lease_table(&sdk, STATE_TABLE)
        .await
        .expect("table");
    stack::create_jenkins_secret(&sdk, SECRET, "admin", "admin")
        .await
        .expect("secret");
    aws_sdk_ecs::Client::new(&sdk)
        .create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .expect("cluster");
    let http = reqwest::Client::new();
    // SNS → SQS, the way an operator would subscribe; the queue is read through SQS's query
    // protocol (the workspace has no SQS SDK crate).
    sqs(
        &moto,
        &http,
        "/",
        &[("Action", "CreateQueue"), ("QueueName", QUEUE)],
    )
    .await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name("rec-alerts")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:{REGION}:123456789012:{QUEUE}"))
        .send()
        .await
        .expect("subscribe");
    let mut sims = Vec::new();
    for name in ["master-a", "master-b"] {
        let config = SimConfig {
            name: name.to_string(),
            ..SimConfig::default()
        };
        sims.push(
            Simulator::start(config, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("simulator"),
        );
    }
    Setup {
        recorder: Recorder::start().await,
        moto,
        sdk,
        sims,
        topic,
        http,
    }
}

fn spec(setup: &Setup, extra: &[(&str, &str)]) -> FunctionSpec {
    let mut spec = FunctionSpec::new("recovery")
        .env("AWS_ENDPOINT_URL", setup.moto.endpoint_url())
        .env("AWS_ENDPOINT_URL_AUTO_SCALING", setup.recorder.url())
        .env("LONGSHORE_STACK", STACK)
        .env("STATE_TABLE", STATE_TABLE)
        .env("ALERT_TOPIC_ARN", &setup.topic)
        .env("JENKINS_SECRET", SECRET)
        .env("LONGSHORE_ECS_CLUSTER", CLUSTER)
        .env("LONGSHORE_MASTER_SERVICES", "master-a,master-b")
        .env("LONGSHORE_MASTER_ASG", ASG)
        .env(
            "LONGSHORE_MASTERS",
            format!(
                "master-a={},master-b={}",
                setup.sims[0].url(),
                setup.sims[1].url()
            ),
        )
        .timeout(Duration::from_secs(60));
    for (k, v) in extra {
        spec = spec.env(*k, *v);
    }
    spec
}

/// A call to moto's SQS with the query protocol; the body of the answer.
async fn sqs(
    moto: &MotoServer,
    http: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> String {
    // moto routes by the service in the credential scope; the signature is not checked.
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/sqs/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    http.post(format!("{}{path}", moto.endpoint_url()))
        .header("Authorization", auth)
        .form(form)
        .send()
        .await
        .expect("SQS")
        .text()
        .await
        .expect("SQS body")
}

/// The (subject, message) of every alert delivered to the queue since the last call.
async fn alerts(setup: &Setup) -> Vec<(String, String)> {
    let body = sqs(
        &setup.moto,
        &setup.http,
        &format!("/123456789012/{QUEUE}"),
        &[
            ("Action", "ReceiveMessage"),
            ("MaxNumberOfMessages", "10"),
            ("VisibilityTimeout", "3600"),
        ],
    )
    .await;
    body.split("<Body>")
        .skip(1)
        .filter_map(|part| part.split("</Body>").next())
        .map(|escaped| {
            let text = escaped
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#x27;", "'")
                .replace("&amp;", "&");
            let json: Value = serde_json::from_str(&text).expect("SNS envelope");
            (
                json["Subject"].as_str().unwrap_or("").to_string(),
                json["Message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn jenkins(sim: &RunningSim) -> JenkinsClient {
    JenkinsClient::new(JenkinsClient::http_client(), &sim.url(), "admin", "admin")
}

async fn node(sim: &RunningSim, name: &str) -> Option<longshore::domain::jenkins::Computer> {
    jenkins(sim)
        .computers()
        .await
        .expect("computers")
        .computer
        .into_iter()
        .find(|c| c.display_name == name)
}

/// Agents of `master` as the scaler leaves them: instance, node and secret.
async fn agents(setup: &Setup, stack: &str, master: usize, count: i32) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(&setup.sdk);
    let ssm = aws_sdk_ssm::Client::new(&setup.sdk);
    let name = format!("master-{}", ["a", "b"][master]);
    let url = setup.sims[master].url();
    let ids = launch_agents(
        &ec2,
        &AgentLaunch {
            stack,
            master: &name,
            master_url: &url,
            label: "docker",
            user_data: None,
            count,
        },
    )
    .await;
    for id in &ids {
        setup.sims[master]
            .sim()
            .create_agent(id, "docker", 1)
            .expect("node");
        put_agent_secret(&ssm, stack, id, "s3cret").await;
    }
    ids
}

async fn secret_exists(setup: &Setup, id: &str) -> bool {
    aws_sdk_ssm::Client::new(&setup.sdk)
        .get_parameter()
        .name(format!("/longshore/{STACK}/agents/{id}"))
        .send()
        .await
        .is_ok()
}

fn ok(answer: Invocation) -> Value {
    match answer {
        Invocation::Ok(payload) => payload,
        other => panic!("expected success, got {other:?}"),
    }
}

fn crash(task: &str, service: &str) -> Value {
    events::ecs_task_stopped(&TaskStop {
        cluster_arn: format!("arn:aws:ecs:{REGION}:123456789012:cluster/{CLUSTER}"),
        task_arn: format!("arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{task}"),
        group: format!("service:{service}"),
        container_instance_arn: None,
        stop_code: "EssentialContainerExited".to_string(),
        stopped_reason: "Essential container in task exited".to_string(),
        container_name: "jenkins".to_string(),
        exit_code: Some(1),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_crash_retires_its_agents_alerts_once_and_detects_a_crash_loop() {
    let setup = setup().await;
    let ec2 = aws_sdk_ec2::Client::new(&setup.sdk);
    let lost = agents(&setup, STACK, 0, 2).await;
    let kept = agents(&setup, STACK, 1, 1).await;
    let farm = LambdaFarm::start(&[spec(&setup, &[("CRASH_LOOP_STOPS", "3")])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");

    let first = crash("t1", "master-a");
    let payload = ok(bus.deliver(&first).await.expect("invoke"));
    assert_eq!(payload["kind"], "master_task_stopped", "{payload}");
    for id in &lost {
        assert!(node(&setup.sims[0], id).await.is_none(), "node {id} left");
        assert!(!secret_exists(&setup, id).await, "secret {id} left");
    }
    let live: Vec<String> = live_instances(&ec2, STACK)
        .await
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert_eq!(live, kept, "only master-b's agent still runs");
    assert!(node(&setup.sims[1], &kept[0]).await.is_some());
    assert!(secret_exists(&setup, &kept[0]).await);
    let sent = alerts(&setup).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "longshore: master master-a stopped unexpectedly");
    assert!(sent[0].1.contains("t1"), "{sent:?}");

    // The same event again (EventBridge redelivers), and another STOPPED event of the same
    // task (a new event id): no second alert, nothing else to do.
    ok(bus.deliver(&first).await.expect("invoke"));
    ok(bus.deliver(&crash("t1", "master-a")).await.expect("invoke"));
    assert!(alerts(&setup).await.is_empty());
    assert_eq!(live_instances(&ec2, STACK).await.len(), 1);

    // Two more crashes make three within the window: one crash-loop alert, once.
    ok(bus.deliver(&crash("t2", "master-a")).await.expect("invoke"));
    ok(bus.deliver(&crash("t3", "master-a")).await.expect("invoke"));
    ok(bus.deliver(&crash("t4", "master-a")).await.expect("invoke"));
    let sent = alerts(&setup).await;
    let loops: Vec<_> = sent
        .iter()
        .filter(|(subject, _)| subject.contains("crash-looping"))
        .collect();
    assert_eq!(loops.len(), 1, "{sent:?}");
    assert!(loops[0].1.contains("3 times"), "{loops:?}");
    assert_eq!(
        sent.len(),
        4,
        "three stop alerts and one crash-loop alert: {sent:?}"
    );
    assert!(
        farm.logs("recovery")
            .contains("MasterTaskStoppedUnexpected")
    );
}

/// A master host with a registered container instance and one running master task.
async fn master_host(setup: &Setup) -> (String, String, String) {
    let ec2 = aws_sdk_ec2::Client::new(&setup.sdk);
    let ecs = aws_sdk_ecs::Client::new(&setup.sdk);
    let host = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("host")
        .instances()[0]
        .instance_id()
        .expect("id")
        .to_string();
    let document = json!({"instanceId": host, "region": REGION}).to_string();
    let container_instance = ecs
        .register_container_instance()
        .cluster(CLUSTER)
        .instance_identity_document(document)
        .send()
        .await
        .expect("register")
        .container_instance
        .and_then(|ci| ci.container_instance_arn)
        .expect("container instance");
    ecs.register_task_definition()
        .family("master-a")
        .container_definitions(
            ContainerDefinition::builder()
                .name("jenkins")
                .image("jenkins/jenkins:lts")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .expect("task definition");
    let task = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("master-a")
        .launch_type(aws_sdk_ecs::types::LaunchType::Ec2)
        .group("service:master-a")
        .send()
        .await
        .expect("run task")
        .tasks()[0]
        .task_arn()
        .expect("task arn")
        .to_string();
    (host, container_instance, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_termination_drains_and_completes_only_after_its_tasks_are_gone() {
    let setup = setup().await;
    let ecs = aws_sdk_ecs::Client::new(&setup.sdk);
    let (host, container_instance, task) = master_host(&setup).await;
    let farm = LambdaFarm::start(&[spec(&setup, &[])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");
    let token = "87654321-4321-4321-4321-210987654321";
    let terminating = events::terminate_lifecycle_action(ASG, HOOK, &host, token);

    let payload = ok(bus.deliver(&terminating).await.expect("invoke"));
    assert_eq!(payload["kind"], "master_host_terminating", "{payload}");
    let status = ecs
        .describe_container_instances()
        .cluster(CLUSTER)
        .container_instances(&container_instance)
        .send()
        .await
        .expect("describe")
        .container_instances()[0]
        .status()
        .map(str::to_string);
    assert_eq!(status.as_deref(), Some("DRAINING"));
    assert!(setup.recorder.calls("CompleteLifecycleAction").is_empty());
    assert_eq!(
        setup.recorder.calls("RecordLifecycleActionHeartbeat").len(),
        1
    );

    // The schedule finds the task still there, and so does a redelivered lifecycle event:
    // heartbeats only.
    ok(bus
        .deliver(&events::scheduled("rec-recovery"))
        .await
        .expect("invoke"));
    ok(bus.deliver(&terminating).await.expect("invoke"));
    assert!(setup.recorder.calls("CompleteLifecycleAction").is_empty());
    assert_eq!(
        setup.recorder.calls("RecordLifecycleActionHeartbeat").len(),
        3
    );

    // The master task leaves (its service places it elsewhere): the next schedule completes.
    ecs.stop_task()
        .cluster(CLUSTER)
        .task(&task)
        .reason("drained")
        .send()
        .await
        .expect("stop task");
    let payload = ok(bus
        .deliver(&events::scheduled("rec-recovery"))
        .await
        .expect("invoke"));
    let completes = setup.recorder.calls("CompleteLifecycleAction");
    assert_eq!(completes.len(), 1, "{payload}");
    let complete = &completes[0];
    assert_eq!(field(complete, "AutoScalingGroupName"), Some(ASG));
    assert_eq!(field(complete, "LifecycleHookName"), Some(HOOK));
    assert_eq!(field(complete, "LifecycleActionToken"), Some(token));
    assert_eq!(field(complete, "LifecycleActionResult"), Some("CONTINUE"));

    // The drain is forgotten: later schedules send nothing more.
    let before = setup.recorder.requests().len();
    ok(bus
        .deliver(&events::scheduled("rec-recovery"))
        .await
        .expect("invoke"));
    assert_eq!(setup.recorder.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_its_deadline_completes_anyway_and_alerts_and_an_empty_host_at_once() {
    let setup = setup().await;
    let (host, _, _task) = master_host(&setup).await;
    let farm = LambdaFarm::start(&[spec(&setup, &[("DRAIN_TIMEOUT", "0s")])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");
    ok(bus
        .deliver(&events::terminate_lifecycle_action(
            ASG, HOOK, &host, "tok-1",
        ))
        .await
        .expect("invoke"));
    assert!(setup.recorder.calls("CompleteLifecycleAction").is_empty());
    ok(bus
        .deliver(&events::scheduled("rec-recovery"))
        .await
        .expect("invoke"));
    let completes = setup.recorder.calls("CompleteLifecycleAction");
    assert_eq!(completes.len(), 1);
    assert_eq!(
        field(&completes[0], "LifecycleActionResult"),
        Some("CONTINUE")
    );
    let sent = alerts(&setup).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].0.contains("terminated before drained"), "{sent:?}");

    // A host that never registered a container instance has nothing to drain.
    ok(bus
        .deliver(&events::terminate_lifecycle_action(
            ASG,
            HOOK,
            "i-0000000000000dead",
            "tok-2",
        ))
        .await
        .expect("invoke"));
    let completes = setup.recorder.calls("CompleteLifecycleAction");
    assert_eq!(completes.len(), 2);
    assert_eq!(field(&completes[1], "LifecycleActionToken"), Some("tok-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_takes_the_node_offline_at_once_and_late_events_change_nothing() {
    let setup = setup().await;
    let ec2 = aws_sdk_ec2::Client::new(&setup.sdk);
    let id = agents(&setup, STACK, 0, 1).await.remove(0);
    let farm = LambdaFarm::start(&[spec(&setup, &[])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");

    let warning = events::spot_interruption_warning(&id);
    let payload = ok(bus.deliver(&warning).await.expect("invoke"));
    assert_eq!(payload["kind"], "agent_spot_interruption", "{payload}");
    let computer = node(&setup.sims[0], &id).await.expect("node");
    assert!(computer.temporarily_offline, "offline after one invocation");
    assert!(
        computer
            .offline_cause_reason
            .as_deref()
            .unwrap_or("")
            .contains("Spot interruption"),
        "{computer:?}"
    );
    // Twice: Jenkins only toggles, so a careless second call would bring it back online.
    ok(bus.deliver(&warning).await.expect("invoke"));
    assert!(
        node(&setup.sims[0], &id)
            .await
            .expect("node")
            .temporarily_offline
    );

    // The instance goes: node and secret are removed.
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("terminate");
    ok(bus
        .deliver(&events::ec2_state_change(&id, "terminated"))
        .await
        .expect("invoke"));
    assert!(node(&setup.sims[0], &id).await.is_none());
    assert!(!secret_exists(&setup, &id).await);

    // Late and out of order: "running" after "terminated", and the warning again.
    let running = ok(bus
        .deliver(&events::ec2_state_change(&id, "running"))
        .await
        .expect("invoke"));
    assert_eq!(running["outcome"], "ignored", "{running}");
    ok(bus.deliver(&warning).await.expect("invoke"));
    assert!(node(&setup.sims[0], &id).await.is_none(), "not resurrected");
    assert!(live_instances(&ec2, STACK).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_logs_the_actions_and_takes_none() {
    let setup = setup().await;
    let ec2 = aws_sdk_ec2::Client::new(&setup.sdk);
    let ids = agents(&setup, STACK, 0, 1).await;
    let farm = LambdaFarm::start(&[spec(&setup, &[("DRY_RUN", "true")])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");
    let payload = ok(bus.deliver(&crash("t9", "master-a")).await.expect("invoke"));
    assert_eq!(payload["acted"], false, "{payload}");
    ok(bus
        .deliver(&events::spot_interruption_warning(&ids[0]))
        .await
        .expect("invoke"));
    assert_eq!(live_instances(&ec2, STACK).await.len(), 1);
    let computer = node(&setup.sims[0], &ids[0]).await.expect("node kept");
    assert!(!computer.temporarily_offline);
    assert!(secret_exists(&setup, &ids[0]).await);
    assert!(alerts(&setup).await.is_empty());
    let logs = farm.logs("recovery");
    assert!(
        logs.contains("dry run: would retire every agent of master master-a"),
        "{logs}"
    );
    assert!(logs.contains("dry run: would publish the alert"), "{logs}");
    assert!(
        logs.contains(&format!("dry run: would take node {} offline", ids[0])),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_stacks_instances_and_malformed_events_are_skipped_with_success() {
    let setup = setup().await;
    let foreign = agents(&setup, "someone-else", 0, 1).await.remove(0);
    let farm = LambdaFarm::start(&[spec(&setup, &[])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");

    let payload = ok(bus
        .deliver(&events::spot_interruption_warning(&foreign))
        .await
        .expect("invoke"));
    assert_eq!(payload["outcome"], "ignored", "{payload}");
    assert!(
        payload["reason"].as_str().unwrap().contains("not ours"),
        "{payload}"
    );
    assert!(
        !node(&setup.sims[0], &foreign)
            .await
            .expect("node")
            .temporarily_offline
    );

    let mut other_cluster = crash("t1", "master-a");
    other_cluster["detail"]["clusterArn"] = json!("arn:aws:ecs:us-east-1:123456789012:cluster/x");
    let malformed = [
        json!([1, 2, 3]),
        json!({"detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": "text"}),
        json!({"detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2",
               "detail": {"instance-id": 7}}),
        json!({"detail-type": "Something New", "source": "aws.new", "detail": {}}),
        other_cluster,
    ];
    for event in &malformed {
        let payload = ok(bus.deliver(event).await.expect("invoke"));
        assert_eq!(payload["outcome"], "ignored", "{event} → {payload}");
    }
    assert_eq!(
        farm.logs("recovery").matches("event skipped").count(),
        1 + malformed.len()
    );
    assert!(alerts(&setup).await.is_empty());
    assert!(node(&setup.sims[0], &foreign).await.is_some());
}

/// Cold start (spawn → first invocation answered) and peak RSS (VmHWM) of the debug binary on
/// its heaviest path: a master crash (ECS event → SNS, EC2, SSM, Jenkins). Run with
/// `cargo test --workspace --all-targets recovery_footprint -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn recovery_footprint() {
    let setup = setup().await;
    agents(&setup, STACK, 0, 3).await;
    let farm = LambdaFarm::start(&[spec(&setup, &[])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");
    let payload = ok(bus.deliver(&crash("t1", "master-a")).await.expect("invoke"));
    let pid = farm.pid("recovery").expect("pid");
    println!(
        "recovery (debug) master crash: init {} ms, cold start {} ms, peak RSS {} KiB; done {}",
        farm.ready_after("recovery").map_or(0, |d| d.as_millis()),
        farm.cold_start("recovery").map_or(0, |d| d.as_millis()),
        longshore_farm::lambda::peak_rss_kib(pid).unwrap_or(0),
        payload["done"].as_array().map_or(0, Vec::len)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_master_host_launch_alerts_with_its_cause_once() {
    let setup = setup().await;
    let farm = LambdaFarm::start(&[spec(&setup, &[])])
        .await
        .expect("lambda");
    let bus = EventBus::new(&farm, "recovery");
    let path = longshore_tests::workspace_root()
        .join("../shared/fixtures/aws/autoscaling-activity/rust-runtime-launch-unsuccessful.json");
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    event["detail"]["AutoScalingGroupName"] = json!(ASG);
    let payload = ok(bus.deliver(&event).await.expect("invoke"));
    assert_eq!(payload["kind"], "master_launch_failed", "{payload}");
    ok(bus.deliver(&event).await.expect("invoke")); // redelivered: same id, no second alert
    let sent = alerts(&setup).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].0,
        format!("longshore: master host launch failed in {ASG}")
    );
    let cause = event["detail"]["StatusMessage"].as_str().unwrap_or("");
    assert!(!cause.is_empty() && sent[0].1.contains(cause), "{sent:?}");
}
