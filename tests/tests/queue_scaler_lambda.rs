//! The real queue-scaler binary under `cargo lambda watch`, invoked with the real EventBridge
//! schedule event, against moto (EC2, SSM, DynamoDB, Secrets Manager), two Jenkins simulators
//! and the booter. Also the lease on its own against moto's DynamoDB. The function reaches moto
//! through the farm's AWS proxy, which gives RunInstances EC2's ClientToken idempotency and
//! injects AWS faults on demand.

use std::time::{Duration, Instant};

use longshore::adapters::aws::ec2::tags;
use longshore::adapters::aws::lease::Lease;
use longshore::domain::fleet::SpotPolicy;
use longshore_farm::aws_proxy::{AwsFault, AwsProxy, FaultRule};
use longshore_farm::booter::{Booter, BooterConfig, BooterHandle};
use longshore_farm::demo::fleet::demo_fleet;
use longshore_farm::jenkins::{JobKind, RunningSim, SimConfig, Simulator};
use longshore_farm::lambda::{FunctionSpec, Invocation, LambdaFarm};
use longshore_farm::moto::MotoServer;
use longshore_farm::stack;
use serde_json::Value;

const STACK: &str = "lambda-test";
const FLEET_PARAMETER: &str = "/longshore/lambda-test/fleet";
const LEASE_TABLE: &str = "lambda-test-lease";
const SECRET: &str = "lambda-test/jenkins-scaler";
const SCHEDULE_EVENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/aws/scheduled-event/rust-runtime-eventbridge-schedule.json"
);

struct Setup {
    /// Kept for the test's duration: the function reaches it through `proxy`.
    _moto: MotoServer,
    proxy: AwsProxy,
    sims: Vec<RunningSim>,
    booter: BooterHandle,
    ec2: aws_sdk_ec2::Client,
}

/// moto with what the stack would hold, two simulated masters and the booter.
async fn setup(store_fleet_config: bool) -> Setup {
    setup_with_idle(store_fleet_config, Duration::from_secs(60)).await
}

/// As [`setup`], with agents retired after `idle`.
async fn setup_with_idle(store_fleet_config: bool, idle: Duration) -> Setup {
    let moto = MotoServer::start().expect("moto");
    let sdk = moto.sdk_config().await;
    let network = moto.prepare_network().await.expect("network");
    let template = stack::create_agent_launch_template(&sdk, STACK)
        .await
        .expect("template");
    stack::create_lease_table(&sdk, LEASE_TABLE)
        .await
        .expect("lease table");
    stack::create_jenkins_secret(&sdk, SECRET, "admin", "admin")
        .await
        .expect("secret");
    let mut config = demo_fleet(
        STACK,
        &template.id,
        &network.subnets,
        &["master-a", "master-b"],
        idle,
    );
    for label in &mut config.labels {
        label.spot = SpotPolicy::Never;
    }
    if store_fleet_config {
        stack::put_fleet_config(&sdk, FLEET_PARAMETER, &config)
            .await
            .expect("fleet config");
    }
    let mut sims = Vec::new();
    for name in ["master-a", "master-b"] {
        let sim_config = SimConfig {
            name: name.to_string(),
            quiet_period: Duration::ZERO,
            ..SimConfig::default()
        };
        sims.push(
            Simulator::start(sim_config, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("simulator"),
        );
    }
    // Agents wait for their secret as long as the real boot does in spirit (bounded, well
    // beyond a tick whose launch answer was lost and retried).
    let booter_config = BooterConfig {
        secret_wait: Duration::from_secs(20),
        ..BooterConfig::fast(STACK)
    };
    let booter = Booter::new(&sdk, booter_config).spawn();
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    Setup {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        _moto: moto,
        proxy,
        sims,
        booter,
    }
}

fn scaler_spec(setup: &Setup, budget: &str, extra: &[(&str, &str)]) -> FunctionSpec {
    let masters = format!(
        "master-a={},master-b={}",
        setup.sims[0].url(),
        setup.sims[1].url()
    );
    let mut spec = FunctionSpec::new("queue-scaler")
        .env("AWS_ENDPOINT_URL", setup.proxy.endpoint_url())
        .env("LONGSHORE_STACK", STACK)
        .env("FLEET_CONFIG_PARAMETER", FLEET_PARAMETER)
        .env("LEASE_TABLE", LEASE_TABLE)
        .env("JENKINS_SECRET", SECRET)
        .env("LONGSHORE_MASTERS", masters)
        .env("POLL_INTERVAL", "200ms")
        .env("INVOCATION_BUDGET", budget)
        .timeout(Duration::from_secs(60));
    for (key, value) in extra {
        spec = spec.env(*key, *value);
    }
    spec
}

fn schedule_event() -> Value {
    serde_json::from_str(&std::fs::read_to_string(SCHEDULE_EVENT).expect("fixture"))
        .expect("fixture JSON")
}

/// Starts the scaler under the Lambda harness, queues one short pipeline for `label` on the
/// master `sims[master]`, and invokes the function once with the schedule event.
async fn run_one_job(
    setup: &Setup,
    spec: FunctionSpec,
    master: usize,
    label: &str,
) -> (LambdaFarm, Invocation) {
    let lambdas = LambdaFarm::start(&[spec]).await.expect("lambda");
    setup.sims[master]
        .sim()
        .submit(
            "build-image",
            Some(label),
            Duration::from_millis(300),
            JobKind::Pipeline,
        )
        .unwrap();
    let answer = lambdas
        .invoke("queue-scaler", &schedule_event())
        .await
        .expect("invoke");
    (lambdas, answer)
}

async fn live_instances(ec2: &aws_sdk_ec2::Client) -> Vec<aws_sdk_ec2::types::Instance> {
    longshore_tests::live_instances(ec2, STACK).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_invocation_launches_an_agent_and_the_build_runs() {
    let setup = setup(true).await;
    let (lambdas, answer) =
        run_one_job(&setup, scaler_spec(&setup, "6s", &[]), 1, "docker-large").await;
    let Invocation::Ok(payload) = answer else {
        panic!(
            "scaler failed: {answer:?}\n{}",
            lambdas.logs("queue-scaler")
        )
    };
    assert_eq!(payload["acted"], true);
    assert!(payload["ticks"].as_u64().unwrap() >= 5, "{payload}");
    assert_eq!(payload["launched"], 1, "{payload}");
    assert_eq!(setup.sims[1].sim().stats().builds_completed, 1);
    assert!(setup.sims[1].sim().stats().builds_lost.is_empty());
    let instances = live_instances(&setup.ec2).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0]
            .tags()
            .iter()
            .find(|t| t.key() == Some(tags::MASTER))
            .and_then(|t| t.value()),
        Some("master-b")
    );
    // IMDSv2 required on every agent.
    let metadata = instances[0].metadata_options().expect("metadata options");
    assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"));

    let logs = lambdas.logs("queue-scaler");
    assert!(
        logs.contains("\"CloudWatchMetrics\""),
        "EMF metric lines are printed"
    );
    assert!(
        !logs.contains(
            &setup.sims[1]
                .sim()
                .agent_secret(instances[0].instance_id().unwrap())
                .unwrap()
        )
    );
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_and_logs_but_launches_nothing() {
    let setup = setup(true).await;
    let lambdas = LambdaFarm::start(&[scaler_spec(&setup, "2s", &[("DRY_RUN", "true")])])
        .await
        .expect("lambda");
    setup.sims[0]
        .sim()
        .submit(
            "build-api-image",
            Some("docker"),
            Duration::from_millis(300),
            JobKind::Freestyle,
        )
        .unwrap();
    let answer = lambdas
        .invoke("queue-scaler", &schedule_event())
        .await
        .expect("invoke");
    assert!(
        matches!(&answer, Invocation::Ok(payload) if payload["acted"] == false),
        "{answer:?}"
    );
    assert!(live_instances(&setup.ec2).await.is_empty());
    assert!(
        lambdas
            .logs("queue-scaler")
            .contains("would create a standby node")
    );
    assert_eq!(setup.sims[0].sim().stats().builds_completed, 0);
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_fleet_configuration_is_a_clear_error_and_no_action() {
    let setup = setup(false).await;
    let lambdas = LambdaFarm::start(&[scaler_spec(&setup, "2s", &[])])
        .await
        .expect("lambda");
    setup.sims[0]
        .sim()
        .submit(
            "job",
            Some("docker"),
            Duration::from_millis(100),
            JobKind::Freestyle,
        )
        .unwrap();
    let answer = lambdas
        .invoke("queue-scaler", &schedule_event())
        .await
        .expect("invoke");
    match answer {
        Invocation::Failed {
            error_type,
            error_message,
        } => {
            assert_eq!(error_type, "FleetConfigMissing");
            assert!(error_message.contains(FLEET_PARAMETER), "{error_message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(live_instances(&setup.ec2).await.is_empty());
    // The lease it asked for while reading the configuration was given back, not left to
    // expire.
    let sdk = setup._moto.sdk_config().await;
    let lease = Lease::new(aws_sdk_dynamodb::Client::new(&sdk), LEASE_TABLE, STACK);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(lease.acquire("next", now, now + 60_000).await.unwrap());
    setup.booter.shutdown().await;
}

/// A warm process that cannot read the fleet configuration once fails that invocation and
/// keeps what it knows (credentials, idle times, recent launches) for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_configuration_read_keeps_the_warm_state() {
    let setup = setup(true).await;
    let lambdas = LambdaFarm::start(&[scaler_spec(&setup, "1ms", &[])])
        .await
        .expect("lambda");
    let event = schedule_event();
    let invoke = || lambdas.invoke("queue-scaler", &event);
    assert!(matches!(invoke().await.expect("invoke"), Invocation::Ok(_)));
    setup
        .proxy
        .add_rule(FaultRule::on("GetParameter", AwsFault::ServerError));
    match invoke().await.expect("invoke") {
        Invocation::Failed { error_type, .. } => assert_eq!(error_type, "AwsError"),
        other => panic!("expected a failure, got {other:?}"),
    }
    setup.proxy.clear_rules();
    assert!(matches!(invoke().await.expect("invoke"), Invocation::Ok(_)));
    let requests = setup.proxy.stats().requests;
    assert_eq!(
        requests.get("GetSecretValue"),
        Some(&1),
        "credentials read once, at the cold start: {requests:?}"
    );
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_admits_one_owner_until_it_expires_or_is_released() {
    let moto = MotoServer::start().expect("moto");
    let sdk = moto.sdk_config().await;
    stack::create_lease_table(&sdk, LEASE_TABLE)
        .await
        .expect("table");
    let lease = Lease::new(aws_sdk_dynamodb::Client::new(&sdk), LEASE_TABLE, STACK);
    assert!(lease.acquire("first", 1_000, 61_000).await.unwrap());
    assert!(
        !lease.acquire("second", 2_000, 62_000).await.unwrap(),
        "held by the first"
    );
    assert!(
        lease.acquire("first", 3_000, 63_000).await.unwrap(),
        "the owner renews"
    );
    assert!(
        lease.acquire("second", 63_001, 123_001).await.unwrap(),
        "expired: taken over"
    );
    lease.release("first").await.unwrap(); // no longer the owner: changes nothing
    assert!(!lease.acquire("first", 64_000, 124_000).await.unwrap());
    lease.release("second").await.unwrap();
    assert!(
        lease.acquire("first", 65_000, 125_000).await.unwrap(),
        "released: free again"
    );
}

/// Reaction time: job queued → RunInstances, with the default 2 s poll interval. Prints
/// p50/p95 over 8 jobs (4 per master: the template's per-master cap); run with `cargo test --workspace --test queue_scaler_lambda -- --ignored
/// --nocapture reaction_time`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: about a minute"]
async fn reaction_time() {
    let setup = setup(true).await;
    let lambdas = LambdaFarm::start(&[scaler_spec(&setup, "55s", &[("POLL_INTERVAL", "2s")])])
        .await
        .expect("lambda");
    let invocation = async { lambdas.invoke("queue-scaler", &schedule_event()).await };
    let measure = async {
        tokio::time::sleep(Duration::from_secs(3)).await; // standby nodes first
        let mut reactions = Vec::new();
        for n in 0..8 {
            let before = live_instances(&setup.ec2).await.len();
            let queued = Instant::now();
            setup.sims[n % 2]
                .sim()
                .submit(
                    &format!("job-{n}"),
                    Some("docker-large"),
                    Duration::from_secs(60),
                    JobKind::Freestyle,
                )
                .unwrap();
            while live_instances(&setup.ec2).await.len() == before
                && queued.elapsed() < Duration::from_secs(10)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            reactions.push(queued.elapsed().as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(700 + 300 * (n as u64 % 3))).await;
        }
        reactions
    };
    let (answer, mut reactions) = tokio::join!(invocation, measure);
    answer.expect("invoke");
    reactions.sort_unstable();
    let p = |q: f64| {
        reactions[((reactions.len() as f64 * q).ceil() as usize).clamp(1, reactions.len()) - 1]
    };
    println!(
        "reaction time (job queued -> RunInstances), ms: p50 {} p95 {} all {:?}",
        p(0.5),
        p(0.95),
        reactions
    );
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_answers_are_all_lost_still_runs_exactly_one_agent() {
    let setup = setup(true).await;
    // The first RunInstances takes effect, then its answer is lost on every one of the SDK's
    // three attempts: the retries carry the same ClientToken and launch nothing more, and the
    // tick reports an error. The next tick finds the instance without a node and registers it,
    // and sends the unanswered launch once more, which EC2 answers with that instance.
    setup
        .proxy
        .add_rule(FaultRule::on("RunInstances", AwsFault::LoseResponse).times(3));
    let (lambdas, answer) = run_one_job(&setup, scaler_spec(&setup, "15s", &[]), 0, "docker").await;
    let Invocation::Ok(payload) = answer else {
        panic!(
            "scaler failed: {answer:?}\n{}",
            lambdas.logs("queue-scaler")
        )
    };
    let stats = setup.proxy.stats();
    assert_eq!(stats.faults["lose_response"], 3, "{stats:?}");
    assert_eq!(
        stats.launches_forwarded, 1,
        "one launch reached EC2: {stats:?}"
    );
    assert_eq!(stats.idempotent_replays, 3, "{stats:?}");
    assert_eq!(live_instances(&setup.ec2).await.len(), 1);
    assert_eq!(
        setup.sims[0].sim().stats().builds_completed,
        1,
        "{payload}\n{}",
        lambdas.logs("queue-scaler")
    );
    assert!(
        lambdas
            .logs("queue-scaler")
            .contains("registering an agent whose launch left no node")
    );
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_for_the_first_instance_type_falls_back_to_the_next() {
    let setup = setup(true).await;
    setup.proxy.add_rule(
        FaultRule::on("RunInstances", AwsFault::InsufficientCapacity)
            .with_param("InstanceType", "c6i.large"),
    );
    let (lambdas, answer) = run_one_job(&setup, scaler_spec(&setup, "10s", &[]), 0, "docker").await;
    assert!(
        matches!(answer, Invocation::Ok(_)),
        "{answer:?}\n{}",
        lambdas.logs("queue-scaler")
    );
    let instances = live_instances(&setup.ec2).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0].instance_type().map(|t| t.as_str()),
        Some("m6i.large"),
        "the template's second type"
    );
    assert!(setup.proxy.stats().faults["insufficient_capacity"] >= 1);
    assert_eq!(setup.sims[0].sim().stats().builds_completed, 1);
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_idle_past_its_idle_time_is_retired_and_its_instance_terminated() {
    let setup = setup_with_idle(true, Duration::from_secs(1)).await;
    let (lambdas, answer) = run_one_job(&setup, scaler_spec(&setup, "12s", &[]), 0, "docker").await;
    let Invocation::Ok(payload) = answer else {
        panic!(
            "scaler failed: {answer:?}\n{}",
            lambdas.logs("queue-scaler")
        )
    };
    assert_eq!(payload["launched"], 1, "{payload}");
    assert_eq!(payload["retired"], 1, "{payload}");
    assert_eq!(setup.sims[0].sim().stats().builds_completed, 1);
    assert!(
        setup.sims[0].sim().stats().builds_lost.is_empty(),
        "no build was cut off"
    );
    assert!(
        live_instances(&setup.ec2).await.is_empty(),
        "its instance is terminated"
    );
    let nodes = setup.sims[0].sim().stats().agents;
    assert_eq!(
        (nodes.idle, nodes.busy, nodes.offline),
        (0, 0, 0),
        "its node is gone: {nodes:?}"
    );
    setup.booter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_tick_that_cannot_see_its_launch_yet_sends_the_same_token() {
    let setup = setup(true).await;
    // Every answer of the first launch is lost, and EC2 (eventually consistent) does not list
    // the instance yet: the next tick plans the same launch. Its ClientToken, derived from the
    // plan's inputs, is the same, so EC2 returns the first instance instead of a second one.
    setup
        .proxy
        .add_rule(FaultRule::on("RunInstances", AwsFault::LoseResponse).times(3));
    setup.proxy.hide_new_instances_for(Duration::from_secs(60));
    let (lambdas, answer) = run_one_job(&setup, scaler_spec(&setup, "15s", &[]), 0, "docker").await;
    assert!(
        matches!(answer, Invocation::Ok(_)),
        "{answer:?}\n{}",
        lambdas.logs("queue-scaler")
    );
    let stats = setup.proxy.stats();
    assert_eq!(
        stats.launches_forwarded, 1,
        "one launch reached EC2: {stats:?}"
    );
    assert!(stats.requests["RunInstances"] >= 4, "{stats:?}");
    assert_eq!(stats.idempotency_mismatches, 0, "{stats:?}");
    assert_eq!(live_instances(&setup.ec2).await.len(), 1);
    assert_eq!(
        setup.sims[0].sim().stats().builds_completed,
        1,
        "{}",
        lambdas.logs("queue-scaler")
    );
    setup.booter.shutdown().await;
}
