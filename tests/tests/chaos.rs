//! The chaos harness's CI set: a few fixed seeds of `make chaos` (farm/src/chaos), each a
//! random mix of Jenkins, AWS, agent, lease and cut-off faults on the fast local farm, with
//! every invariant checked after the faults stop. `make chaos RUNS=… SEED=…` runs more.

use longshore_farm::chaos::run_seeds;

/// Seeds whose scripts cover every fault family between them (see the assertions below) and
/// that passed `make chaos RUNS=50 SEED=1`; seeds the harness fails on today are listed in the
/// README ("Chaos: the fault harness") with the defects behind them.
const CI_SEEDS: [u64; 3] = [3, 22, 25];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_seeds_keep_every_invariant_under_faults() {
    let summary = run_seeds(&CI_SEEDS, false).await.expect("the farm runs");
    let failures: Vec<String> = summary
        .per_run
        .iter()
        .filter(|run| !run.invariants.hold())
        .map(|run| format!("seed {}: {:?}", run.seed, run.reasons))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // The runs really were under fire and really ran work.
    for family in ["jenkins_", "aws_", "boot_"] {
        assert!(
            summary.faults.keys().any(|kind| kind.starts_with(family)),
            "no {family}* fault injected: {:?}",
            summary.faults
        );
    }
    assert!(summary.instances > 0, "no agent launched");
    assert!(summary.per_run.iter().all(|run| run.settled));
}

/// The defect `make chaos` found (seeds 4, 10, 27, 37, 38, 47 and 49 of `RUNS=50 SEED=1`): after an agent
/// that never connected is removed as an orphan, the job it was launched for still waits and
/// the template's instance set is what it was at that launch, so the plan derives the same
/// `ClientToken` again. EC2 (here its proxy) then answers with the first launch's instance,
/// which is terminated: no new agent ever starts and the job never runs. Ignored until the
/// token changes once its instance is gone (shared/src/domain/scaling.rs `token_hasher`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known defect: a ClientToken repeats after its instance was removed as an orphan"]
async fn an_orphaned_launch_is_replaced_by_a_new_instance() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use longshore::adapters::aws::ec2::Ec2Fleet;
    use longshore::adapters::aws::ssm::SsmSecrets;
    use longshore::adapters::jenkins::JenkinsClient;
    use longshore::domain::fleet::SpotPolicy;
    use longshore::handlers::queue_scaler::{MasterEndpoint, Scaler};
    use longshore_farm::aws_proxy::AwsProxy;
    use longshore_farm::demo::fleet::demo_fleet;
    use longshore_farm::jenkins::{JobKind, SimConfig, Simulator};
    use longshore_farm::moto::{MotoServer, sdk_config_for};
    use longshore_farm::stack::create_agent_launch_template;

    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let moto = MotoServer::start().expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let network = moto.prepare_network().await.expect("network");
    let template = create_agent_launch_template(&moto.sdk_config().await, "orphan-token")
        .await
        .expect("launch template");
    let sim = Simulator::start(
        SimConfig {
            quiet_period: Duration::ZERO,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator");
    let mut config = demo_fleet(
        "orphan-token",
        &template.id,
        &network.subnets,
        &["master-a"],
        Duration::from_secs(1),
    );
    config.boot_timeout_secs = 1;
    for label in &mut config.labels {
        label.spot = SpotPolicy::Never;
    }
    // No booter: the agent never connects.
    let sdk = sdk_config_for(&proxy.endpoint_url()).await;
    let mut scaler = Scaler::new(
        vec![MasterEndpoint {
            name: "master-a".to_string(),
            url: sim.url(),
            jenkins: JenkinsClient::new(JenkinsClient::http_client(), &sim.url(), "admin", "admin"),
        }],
        Ec2Fleet::new(aws_sdk_ec2::Client::new(&sdk), "orphan-token", template),
        SsmSecrets::new(aws_sdk_ssm::Client::new(&sdk)),
        config,
        false,
    );
    sim.sim()
        .submit(
            "job",
            Some("docker"),
            Duration::from_millis(100),
            JobKind::Freestyle,
        )
        .unwrap();
    let mut first = None;
    for _ in 0..5 {
        let report = scaler.tick(now()).await;
        if let Some(id) = report.launched.first() {
            first = Some(id.clone());
            break;
        }
    }
    let first = first.expect("a launch for the job");
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the boot timeout
    let removal = scaler.tick(now()).await;
    assert_eq!(removal.orphans_removed, vec![first.clone()]);
    let mut relaunched = Vec::new();
    for _ in 0..5 {
        relaunched.extend(scaler.tick(now()).await.launched);
    }
    assert!(
        !relaunched.is_empty() && !relaunched.contains(&first),
        "the job needs a new agent, not the terminated {first} again: {relaunched:?}"
    );
}
