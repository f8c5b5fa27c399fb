//! The queue-scaler's tick against the local farm: moto for EC2 and SSM, Jenkins simulators as
//! the masters, the booter booting each launched instance from its user data. Each test owns
//! its moto server and simulators; timings are compressed (agents boot in milliseconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use longshore::adapters::aws::ec2::{AgentInstance, Ec2Fleet, LaunchSpec, tags};
use longshore::adapters::aws::launches::DynamoLaunchJournal;
use longshore::adapters::aws::ssm::{SsmSecrets, agent_secret_path};
use longshore::adapters::jenkins::{JenkinsClient, NewAgent};
use longshore::domain::fleet::{FleetConfig, SpotPolicy};
use longshore::domain::jenkins::{ComputerSet, Queue};
use longshore::error::{AwsError, JenkinsError};
use longshore::handlers::queue_scaler::{MasterEndpoint, Scaler, TickReport};
use longshore::ports::{Fleet, Jenkins, LaunchJournal, Secrets};
use longshore_farm::booter::{Booter, BooterConfig, BooterHandle};
use longshore_farm::demo::fleet::demo_fleet;
use longshore_farm::jenkins::{Budget, Fault, JobKind, RunningSim, SimConfig, Simulator};
use longshore_farm::moto::MotoServer;
use longshore_farm::stack::{create_agent_launch_template, create_lease_table};

const STACK: &str = "scaler-test";
const MASTERS: [&str; 2] = ["master-a", "master-b"];
const DEADLINE: Duration = Duration::from_secs(30);

/// A Jenkins port that can run a hook before marking a node offline: the window in which a
/// real master may hand the node a build, between the scaler's read and its offline mark.
#[derive(Clone)]
struct RacingJenkins {
    inner: JenkinsClient,
    before_offline: Arc<AtomicBool>,
    sim: Simulator,
}

impl Jenkins for RacingJenkins {
    async fn queue(&self) -> Result<Queue, JenkinsError> {
        self.inner.queue().await
    }
    async fn computers(&self) -> Result<ComputerSet, JenkinsError> {
        self.inner.computers().await
    }
    async fn create_inbound_agent(&self, agent: &NewAgent<'_>) -> Result<(), JenkinsError> {
        self.inner.create_inbound_agent(agent).await
    }
    async fn agent_secret(&self, node: &str) -> Result<String, JenkinsError> {
        self.inner.agent_secret(node).await
    }
    async fn toggle_offline(&self, node: &str, message: &str) -> Result<(), JenkinsError> {
        if self.before_offline.swap(false, Ordering::SeqCst) {
            // A build arrives for the node just before it goes offline.
            self.sim
                .submit(
                    "late-build",
                    Some("docker"),
                    Duration::from_secs(2),
                    JobKind::Freestyle,
                )
                .expect("submit");
            let sim = self.sim.clone();
            let started = wait_for(|| {
                let sim = sim.clone();
                async move { sim.stats().builds_running == 1 }
            })
            .await;
            assert!(started, "the late build never started");
        }
        self.inner.toggle_offline(node, message).await
    }
    async fn delete_node(&self, node: &str) -> Result<(), JenkinsError> {
        self.inner.delete_node(node).await
    }
}

/// A fleet whose first instance type has no capacity, as in an AZ that is out of it.
#[derive(Clone)]
struct ScarceFleet {
    inner: Ec2Fleet,
    scarce_type: String,
}

impl Fleet for ScarceFleet {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, AwsError> {
        if spec.instance_type == self.scarce_type {
            return Err(AwsError {
                operation: "RunInstances",
                code: "InsufficientInstanceCapacity".to_string(),
                message: "We currently do not have sufficient capacity".to_string(),
            });
        }
        self.inner.launch(spec).await
    }
    async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
        self.inner.agents().await
    }
    async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        self.inner.terminate(ids).await
    }
}

struct Farm {
    _moto: MotoServer,
    sims: Vec<RunningSim>,
    booter: Option<BooterHandle>,
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    fleet: Ec2Fleet,
    journal: DynamoLaunchJournal,
    config: FleetConfig,
}

impl Farm {
    async fn start(adjust: impl FnOnce(&mut FleetConfig)) -> Farm {
        let moto = MotoServer::start().expect("moto");
        let sdk = moto.sdk_config().await;
        let network = moto.prepare_network().await.expect("network");
        let template = create_agent_launch_template(&sdk, STACK)
            .await
            .expect("launch template");
        create_lease_table(&sdk, "scaler-test-state")
            .await
            .expect("state table");
        let journal = DynamoLaunchJournal::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            "scaler-test-state",
            STACK,
        );
        let mut sims = Vec::new();
        for name in MASTERS {
            let config = SimConfig {
                name: name.to_string(),
                quiet_period: Duration::ZERO,
                ..SimConfig::default()
            };
            sims.push(
                Simulator::start(config, "127.0.0.1:0".parse().unwrap())
                    .await
                    .expect("simulator"),
            );
        }
        let mut config = demo_fleet(
            STACK,
            &template.id,
            &network.subnets,
            &MASTERS,
            Duration::from_secs(1),
        );
        for label in &mut config.labels {
            label.spot = SpotPolicy::Never;
        }
        adjust(&mut config);
        let booter = Booter::new(&sdk, BooterConfig::fast(STACK)).spawn();
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let fleet = Ec2Fleet::new(ec2.clone(), STACK, template);
        Farm {
            _moto: moto,
            sims,
            booter: Some(booter),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            ec2,
            fleet,
            journal,
            config,
        }
    }

    fn endpoints(&self) -> Vec<MasterEndpoint<JenkinsClient>> {
        self.sims
            .iter()
            .zip(MASTERS)
            .map(|(sim, name)| MasterEndpoint {
                name: name.to_string(),
                url: sim.url(),
                jenkins: JenkinsClient::new(
                    JenkinsClient::http_client(),
                    &sim.url(),
                    "admin",
                    "admin",
                ),
            })
            .collect()
    }

    fn scaler(&self) -> Scaler<JenkinsClient, Ec2Fleet, SsmSecrets, DynamoLaunchJournal> {
        Scaler::new(
            self.endpoints(),
            self.fleet.clone(),
            SsmSecrets::new(self.ssm.clone()),
            self.journal.clone(),
            self.config.clone(),
            false,
        )
    }

    fn sim(&self, master: usize) -> &Simulator {
        self.sims[master].sim()
    }

    async fn live_instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        longshore_tests::live_instances(&self.ec2, STACK).await
    }

    async fn shutdown(mut self) {
        if let Some(booter) = self.booter.take() {
            booter.shutdown().await;
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn tag(instance: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

async fn wait_for<F, Fut>(condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    longshore_tests::wait_until_async(DEADLINE, condition).await
}

/// Ticks every 100 ms until `done` holds for the farm's simulators or the deadline passes.
async fn tick_until<J: Jenkins, F: Fleet, S: Secrets, L: LaunchJournal>(
    scaler: &mut Scaler<J, F, S, L>,
    mut done: impl FnMut(&TickReport) -> bool,
) -> Vec<TickReport> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut reports = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let report = scaler.tick(now_ms()).await;
        let finished = done(&report);
        reports.push(report);
        if finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_gets_an_agent_runs_and_the_idle_agent_is_retired() {
    let farm = Farm::start(|_| {}).await;
    let mut scaler = farm.scaler();
    farm.sim(0)
        .submit(
            "build-api-image",
            Some("docker"),
            Duration::from_millis(300),
            JobKind::Freestyle,
        )
        .unwrap();

    let sim = farm.sim(0).clone();
    let reports = tick_until(&mut scaler, |_| sim.stats().builds_completed == 1).await;
    let launched: Vec<&String> = reports.iter().flat_map(|r| &r.launched).collect();
    assert_eq!(launched.len(), 1, "one agent for one job: {launched:?}");
    let stats = farm.sim(0).stats();
    assert_eq!(stats.builds_completed, 1);
    assert!(stats.builds_lost.is_empty());

    let instance = farm.live_instances().await;
    assert_eq!(instance.len(), 1);
    assert_eq!(tag(&instance[0], tags::MASTER).as_deref(), Some("master-a"));
    assert_eq!(tag(&instance[0], tags::LABEL).as_deref(), Some("docker"));
    let id = instance[0].instance_id().unwrap().to_string();

    // Idle time is 1 s: the agent goes, with its node and its secret.
    let reports = tick_until(&mut scaler, |r| !r.retired.is_empty()).await;
    assert_eq!(reports.last().unwrap().retired, vec![id.clone()]);
    assert!(farm.live_instances().await.is_empty());
    let nodes = JenkinsClient::new(
        JenkinsClient::http_client(),
        &farm.sims[0].url(),
        "admin",
        "admin",
    )
    .computers()
    .await
    .unwrap();
    assert!(nodes.computer.iter().all(|c| c.display_name != id));
    let secret = farm
        .ssm
        .get_parameter()
        .name(agent_secret_path(STACK, &id))
        .send()
        .await;
    assert!(secret.is_err(), "the agent's secret is deleted");
    farm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_starts_during_retirement_is_kept() {
    let farm = Farm::start(|_| {}).await;
    let race = Arc::new(AtomicBool::new(false));
    let endpoints: Vec<MasterEndpoint<RacingJenkins>> = farm
        .endpoints()
        .into_iter()
        .zip(&farm.sims)
        .map(|(e, sim)| MasterEndpoint {
            name: e.name,
            url: e.url,
            jenkins: RacingJenkins {
                inner: e.jenkins,
                before_offline: race.clone(),
                sim: sim.sim().clone(),
            },
        })
        .collect();
    let mut scaler = Scaler::new(
        endpoints,
        farm.fleet.clone(),
        SsmSecrets::new(farm.ssm.clone()),
        farm.journal.clone(),
        farm.config.clone(),
        false,
    );
    farm.sim(0)
        .submit(
            "first",
            Some("docker"),
            Duration::from_millis(200),
            JobKind::Freestyle,
        )
        .unwrap();
    let sim = farm.sim(0).clone();
    tick_until(&mut scaler, |_| sim.stats().builds_completed == 1).await;

    race.store(true, Ordering::SeqCst);
    let reports = tick_until(&mut scaler, |r| {
        !r.retirements_cancelled.is_empty() || !r.retired.is_empty()
    })
    .await;
    let last = reports.last().unwrap();
    assert_eq!(
        last.retired,
        Vec::<String>::new(),
        "the busy agent must not be retired"
    );
    assert_eq!(last.retirements_cancelled.len(), 1);
    let sim = farm.sim(0).clone();
    assert!(
        wait_for(|| {
            let sim = sim.clone();
            async move { sim.stats().builds_completed == 2 }
        })
        .await
    );
    assert!(farm.sim(0).stats().builds_lost.is_empty(), "no build lost");
    assert_eq!(farm.live_instances().await.len(), 1, "the agent stayed");
    farm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_master_gets_no_retirement() {
    let farm = Farm::start(|_| {}).await;
    let mut scaler = farm.scaler();
    farm.sim(0)
        .submit(
            "job",
            Some("docker"),
            Duration::from_millis(100),
            JobKind::Freestyle,
        )
        .unwrap();
    let sim = farm.sim(0).clone();
    tick_until(&mut scaler, |_| sim.stats().builds_completed == 1).await;

    tokio::time::sleep(Duration::from_millis(1_200)).await; // past the idle time
    for fault in [
        Fault::ServerError {
            status: 500,
            budget: Budget::requests(1_000),
        },
        Fault::LoginPage {
            budget: Budget::requests(1_000),
        },
        Fault::TruncatedJson {
            budget: Budget::requests(1_000),
        },
    ] {
        farm.sim(0).inject(fault);
        for _ in 0..3 {
            let report = scaler.tick(now_ms()).await;
            assert!(
                report.retired.is_empty() && report.orphans_removed.is_empty(),
                "{report:?}"
            );
            assert_eq!(report.unreadable_masters, vec!["master-a".to_string()]);
        }
        farm.sim(0).clear_faults();
    }
    assert_eq!(farm.live_instances().await.len(), 1);
    farm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_errors_fall_back_to_the_next_instance_type() {
    let farm = Farm::start(|_| {}).await;
    let scarce = ScarceFleet {
        inner: farm.fleet.clone(),
        scarce_type: "c6i.large".to_string(),
    };
    let mut scaler = Scaler::new(
        farm.endpoints(),
        scarce,
        SsmSecrets::new(farm.ssm.clone()),
        farm.journal.clone(),
        farm.config.clone(),
        false,
    );
    farm.sim(0)
        .submit(
            "job",
            Some("docker"),
            Duration::from_millis(100),
            JobKind::Freestyle,
        )
        .unwrap();
    let sim = farm.sim(0).clone();
    tick_until(&mut scaler, |_| sim.stats().builds_completed == 1).await;
    let instances = farm.live_instances().await;
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0].instance_type().map(|t| t.as_str()),
        Some("m6i.large")
    );
    farm.shutdown().await;
}

/// EC2 as it answers tokens an earlier life of this launch bound: each token of `dead` took
/// one instance type, and that instance is terminated since. The same token on another type
/// is refused with `IdempotentParameterMismatch`, on its own type with
/// `IdempotentInstanceTerminated`; other tokens launch in moto. While `no_capacity` is set,
/// every launch is refused for capacity (and its token noted), so a test learns the tokens
/// the scaler plans.
#[derive(Clone, Default)]
struct DeadTokensFleet {
    inner: Option<Ec2Fleet>,
    no_capacity: Arc<AtomicBool>,
    dead: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Every token sent, in order.
    tried: Arc<std::sync::Mutex<Vec<String>>>,
    /// The tokens of the launches that reached moto.
    launched: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Fleet for DeadTokensFleet {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, AwsError> {
        let refuse = |code: &str| AwsError {
            operation: "RunInstances",
            code: code.to_string(),
            message: "refused".to_string(),
        };
        self.tried.lock().unwrap().push(spec.client_token.clone());
        if self.no_capacity.load(Ordering::SeqCst) {
            return Err(refuse("InsufficientInstanceCapacity"));
        }
        let bound = self
            .dead
            .lock()
            .unwrap()
            .iter()
            .find(|(token, _)| *token == spec.client_token)
            .map(|(_, instance_type)| instance_type.clone());
        match bound {
            Some(instance_type) if instance_type != spec.instance_type => {
                Err(refuse("IdempotentParameterMismatch"))
            }
            Some(_) => Err(refuse("IdempotentInstanceTerminated")),
            None => {
                self.launched
                    .lock()
                    .unwrap()
                    .push(spec.client_token.clone());
                self.inner().launch(spec).await
            }
        }
    }
    async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
        self.inner().agents().await
    }
    async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        self.inner().terminate(ids).await
    }
}

impl DeadTokensFleet {
    fn inner(&self) -> &Ec2Fleet {
        self.inner.as_ref().expect("built with a fleet")
    }
}

/// Chaos seed 142: a launch's token and its first follow-up had both taken an instance, on
/// two different candidates, and both instances were gone. The scaler moved only the
/// candidate that answered "terminated" to the follow-up token, which the other candidate
/// held, so every candidate was refused and the job waited forever. Every candidate now
/// moves on together, and the second follow-up launches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_tokens_all_died_on_other_candidates_still_launches() {
    let farm = Farm::start(|_| {}).await;
    let fleet = DeadTokensFleet {
        inner: Some(farm.fleet.clone()),
        no_capacity: Arc::new(AtomicBool::new(true)),
        ..DeadTokensFleet::default()
    };
    let mut scaler = Scaler::new(
        farm.endpoints(),
        fleet.clone(),
        SsmSecrets::new(farm.ssm.clone()),
        farm.journal.clone(),
        farm.config.clone(),
        false,
    );
    farm.sim(0)
        .submit(
            "job",
            Some("docker"),
            Duration::from_millis(100),
            JobKind::Freestyle,
        )
        .unwrap();
    let tried = fleet.tried.clone();
    tick_until(&mut scaler, |_| !tried.lock().unwrap().is_empty()).await;
    let base = fleet.tried.lock().unwrap()[0].clone();
    *fleet.dead.lock().unwrap() = vec![
        (base.clone(), "m6i.large".to_string()),
        (format!("{base}-r1"), "c6i.large".to_string()),
    ];
    fleet.no_capacity.store(false, Ordering::SeqCst);
    let report = scaler.tick(now_ms()).await;
    assert_eq!(report.launched.len(), 1, "{report:?}");
    assert_eq!(*fleet.launched.lock().unwrap(), vec![format!("{base}-r2")]);
    assert_eq!(farm.live_instances().await.len(), 1);
    farm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_each_kind_are_gone_within_two_ticks() {
    let mut farm = Farm::start(|config| config.boot_timeout_secs = 1).await;
    // No booter: nothing connects, so a launched instance stays unconnected.
    farm.booter.take().unwrap().shutdown().await;
    let spec = |master: &str, url: &str, token: &str| LaunchSpec {
        master: master.to_string(),
        master_url: url.to_string(),
        label: "docker".to_string(),
        instance_type: "c6i.large".to_string(),
        subnet_id: farm.config.labels[0].placements[0].subnets[0].id.clone(),
        spot: false,
        client_token: token.to_string(),
    };
    let never_connected = farm
        .fleet
        .launch(&spec("master-a", &farm.sims[0].url(), "t1"))
        .await
        .unwrap();
    let master_gone = farm
        .fleet
        .launch(&spec("master-gone", "http://127.0.0.1:9/", "t2"))
        .await
        .unwrap();
    let client = JenkinsClient::new(
        JenkinsClient::http_client(),
        &farm.sims[1].url(),
        "admin",
        "admin",
    );
    let ghost = "i-0123456789abcdef0";
    let node = NewAgent {
        name: ghost,
        labels: "docker linux",
        executors: 2,
        description: "",
        remote_fs: "/tmp",
        exclusive: false,
    };
    client.create_inbound_agent(&node).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the boot timeout

    let mut scaler = farm.scaler();
    let first = scaler.tick(now_ms()).await;
    let second = scaler.tick(now_ms()).await;
    let mut removed: Vec<String> = first
        .orphans_removed
        .into_iter()
        .chain(second.orphans_removed)
        .collect();
    removed.sort();
    let mut expected = vec![never_connected, master_gone, ghost.to_string()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(farm.live_instances().await.is_empty());
    assert!(
        client
            .computers()
            .await
            .unwrap()
            .computer
            .iter()
            .all(|c| c.display_name != ghost)
    );
    farm.shutdown().await;
}

/// Found by deploying `infra/template.yaml` in `make demo`: the stack's master hosts carry the
/// stack's tag too (their Auto Scaling group propagates it), so the scaler listed them with
/// its agents, found neither master nor label on them and, past the boot timeout, terminated
/// them as untagged orphans: both hosts of the Jenkins masters, again and again. Agents now
/// carry `longshore:role=agent`, the scaler and recovery list and terminate only those, and
/// the template's IAM conditions say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_host_of_the_stack_is_never_taken_for_an_agent() {
    let mut farm = Farm::start(|config| config.boot_timeout_secs = 1).await;
    farm.booter.take().unwrap().shutdown().await;
    let host_tags = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .tags(ec2_tag(tags::STACK, STACK))
        .tags(ec2_tag(tags::ROLE, "master-host"))
        .build();
    let host = farm
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(host_tags)
        .send()
        .await
        .expect("RunInstances")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the boot timeout
    let mut scaler = farm.scaler();
    for _ in 0..2 {
        let report = scaler.tick(now_ms()).await;
        assert!(report.orphans_removed.is_empty(), "{report:?}");
    }
    assert!(farm.fleet.agents().await.unwrap().is_empty());
    assert!(
        farm.fleet
            .terminate(std::slice::from_ref(&host))
            .await
            .unwrap()
            .is_empty()
    );
    let live = farm.live_instances().await;
    assert_eq!(live.len(), 1, "the master host runs on");
    farm.shutdown().await;
}

fn ec2_tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_and_two_labels_do_not_mix_and_a_second_tick_does_not_launch_twice() {
    let farm = Farm::start(|_| {}).await;
    let mut scaler = farm.scaler();
    farm.sim(0)
        .submit(
            "small",
            Some("docker"),
            Duration::from_millis(400),
            JobKind::Freestyle,
        )
        .unwrap();
    farm.sim(1)
        .submit(
            "large",
            Some("docker-large"),
            Duration::from_millis(400),
            JobKind::Pipeline,
        )
        .unwrap();

    // The first ticks find no standby nodes yet: they create them, then launch.
    let first = scaler.tick(now_ms()).await;
    assert_eq!(first.standby_created, 4, "two templates on two masters");
    let launching = scaler.tick(now_ms()).await;
    assert_eq!(launching.launched.len(), 2, "{launching:?}");
    let again = scaler.tick(now_ms()).await;
    assert!(
        again.launched.is_empty(),
        "booting agents count as supply: {again:?}"
    );

    let (a, b) = (farm.sim(0).clone(), farm.sim(1).clone());
    tick_until(&mut scaler, |_| {
        a.stats().builds_completed == 1 && b.stats().builds_completed == 1
    })
    .await;
    let instances = farm.live_instances().await;
    let placed: Vec<(Option<String>, Option<String>)> = instances
        .iter()
        .map(|i| (tag(i, tags::MASTER), tag(i, tags::LABEL)))
        .collect();
    assert_eq!(placed.len(), 2);
    assert!(placed.contains(&(Some("master-a".to_string()), Some("docker".to_string()))));
    assert!(placed.contains(&(
        Some("master-b".to_string()),
        Some("docker-large".to_string())
    )));
    farm.shutdown().await;
}

/// A fleet that counts the calls made through it.
#[derive(Clone)]
struct CountingFleet {
    inner: Ec2Fleet,
    calls: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl CountingFleet {
    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Fleet for CountingFleet {
    async fn launch(&self, spec: &LaunchSpec) -> Result<String, AwsError> {
        self.record("RunInstances");
        self.inner.launch(spec).await
    }
    async fn agents(&self) -> Result<Vec<AgentInstance>, AwsError> {
        self.record("DescribeInstances");
        self.inner.agents().await
    }
    async fn terminate(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        self.record("TerminateInstances");
        self.inner.terminate(ids).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_tick_makes_one_ec2_call_and_nothing_else() {
    let farm = Farm::start(|config| {
        for label in &mut config.labels {
            label.idle_secs = 600;
        }
    })
    .await;
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fleet = CountingFleet {
        inner: farm.fleet.clone(),
        calls: calls.clone(),
    };
    let mut scaler = Scaler::new(
        farm.endpoints(),
        fleet,
        SsmSecrets::new(farm.ssm.clone()),
        farm.journal.clone(),
        farm.config.clone(),
        false,
    );
    farm.sim(0)
        .submit(
            "job",
            Some("docker"),
            Duration::from_millis(100),
            JobKind::Freestyle,
        )
        .unwrap();
    let sim = farm.sim(0).clone();
    tick_until(&mut scaler, |_| sim.stats().builds_completed == 1).await;

    calls.lock().unwrap().clear();
    for _ in 0..5 {
        let report = scaler.tick(now_ms()).await;
        assert!(
            report.launched.is_empty() && report.retired.is_empty() && report.errors.is_empty()
        );
        assert_eq!(report.standby_created, 0);
    }
    assert_eq!(*calls.lock().unwrap(), vec!["DescribeInstances"; 5]);
    farm.shutdown().await;
}
