//! `make demo`: the whole local farm against a job trace, with faults midway, live progress,
//! a summary and a timeline.
//!
//! moto stands in for AWS, two Jenkins simulators for the masters behind one load balancer
//! that routes by name as the stack's ALB does ([`crate::front`]), the booter for the agents'
//! boot; the agents' launch template carries the real user data from `infra/agent/`. The real
//! queue-scaler binary runs under `cargo lambda watch` and the farm invokes it every minute with
//! the EventBridge schedule event, as AWS would; it reaches moto through the farm's AWS proxy,
//! which can refuse capacity in a zone. The real recovery binary runs beside it and gets the
//! events AWS would send when the farm injects a fault ([`faults`]). Jobs are submitted from a
//! seeded trace. The run ends once every job has run (or was lost to an injected fault) and
//! every agent has been retired, or at a deadline; the exit status says whether the
//! invariants held.

pub mod faults;
pub mod fleet;
pub mod inject;
pub mod leaks;
pub mod observe;
pub mod progress;
pub mod stack;
pub mod timeline;
pub mod trace;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore::adapters::aws::ec2::Ec2Fleet;
use longshore::adapters::jenkins::JenkinsClient;
use longshore::domain::fleet::FleetConfig;
use longshore::handlers::queue_scaler::DEADLINE_MARGIN;
use serde::Serialize;

use crate::aws_proxy::AwsProxy;
use crate::booter::{Booter, BooterConfig};
use crate::front::{Front, FrontStats};
use crate::jenkins::{JobKind, RunningSim, SimConfig, SimStats, Simulator};
use crate::lambda::{FunctionSpec, Invocation, LambdaFarm};
use crate::moto::MotoServer;
use faults::FaultRecord;
use fleet::demo_fleet;
use inject::{FarmHandles, Injector};
use observe::{Observer, Seen};
use progress::Progress;
use timeline::Sample;
use trace::TraceJob;

/// The stack name the demo's resources are tagged with.
const STACK: &str = "longshore-demo";
/// The simulated masters.
const MASTERS: [&str; 2] = ["master-a", "master-b"];
/// The stack's `DomainName`: each master answers at `<master>.<domain>` through the front.
/// Names under `localhost` resolve to this machine in browsers (RFC 6761), so the URLs the
/// demo prints open as they are.
const DOMAIN: &str = "longshore-demo.localhost";
/// How often the progress redraws (wall time).
const TICK: Duration = Duration::from_secs(1);
/// EventBridge's schedule, `rate(1 minute)` (trace time, compressed like the rest).
const SCHEDULE: Duration = Duration::from_secs(60);
/// The queue-scaler's settings in the stack (trace time): it ticks every `POLL_INTERVAL`
/// for `INVOCATION_BUDGET` of each scheduled invocation, less the handler's margin to answer.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const INVOCATION_BUDGET: Duration = Duration::from_secs(55);
/// How long an agent may take to connect before it counts as failed (trace time).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The EventBridge schedule event the farm delivers (a real sample: ../shared/fixtures).
const SCHEDULE_EVENT: &str = r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2015-10-08T16:53:06Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/longshore-demo-scaler"],"detail":{}}"#;

/// Settings of one demo run.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Time compression: trace seconds per wall second. Everything that takes time is
    /// compressed alike: arrivals, builds, boots, idle time, the schedule, the scaler's poll
    /// interval, the faults' durations.
    #[arg(long, env = "SPEED", default_value_t = 10.0)]
    pub speed: f64,
    /// Seed of the synthetic trace.
    #[arg(long, env = "SEED", default_value_t = 7)]
    pub seed: u64,
    /// Number of builds in the trace.
    #[arg(long, default_value_t = 40)]
    pub jobs: usize,
    /// Seconds from launch until an agent connects (trace time).
    #[arg(long, default_value_t = 30)]
    pub boot_delay_secs: u64,
    /// Seconds an agent may stay idle before it is retired (trace time; the stack's default
    /// is 2 minutes).
    #[arg(long, default_value_t = 120)]
    pub idle_secs: u64,
    /// Wall-clock limit of the whole run, in seconds.
    #[arg(long, default_value_t = 200)]
    pub deadline_secs: u64,
    /// Inject no faults (the run of the previous demo).
    #[arg(long)]
    pub no_faults: bool,
    /// Where the summary and the timeline go.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
}

/// Why the demo could not run at all (as opposed to running and breaking an invariant).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start moto: {0}")]
    Moto(#[from] crate::moto::MotoError),
    #[error("cannot start a Jenkins simulator: {0}")]
    Simulator(#[from] std::io::Error),
    #[error("cannot prepare the farm: {0}")]
    Setup(String),
}

/// Error counts, by who saw them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorCounts {
    /// Reads of a master or EC2 by the demo's observer that failed (a master answering 500 or
    /// down shows here: expected while that fault lasts).
    pub observer_unreadable: usize,
    /// `ERROR` log lines of the queue-scaler.
    pub scaler_error_lines: usize,
    /// `ERROR` log lines of recovery.
    pub recovery_error_lines: usize,
    /// Event deliveries recovery answered with an error (each retried, as EventBridge does).
    pub recovery_failed_deliveries: usize,
}

/// What the run achieved; written to `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DemoReport {
    pub seed: u64,
    pub speed: f64,
    pub jobs_submitted: usize,
    /// Builds that ran to the end (lost builds not included).
    pub jobs_completed: usize,
    /// Builds running on an agent a fault took (Spot interruption) or on the killed master.
    pub builds_lost_to_faults: usize,
    /// Builds queued on the killed master: its replacement starts empty.
    pub builds_queued_on_killed_master: usize,
    /// Builds lost on an agent no fault touched: only the scaler could have killed those.
    pub builds_lost_otherwise: usize,
    /// Distinct agents behind `builds_lost_otherwise`.
    pub busy_agents_killed: usize,
    /// Waits, from a build's submission to its start, in trace seconds (wall × speed), as
    /// are the agent-seconds: what they would be uncompressed.
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_max_s: f64,
    pub agents_launched: usize,
    /// Instances terminated that no fault took: the scaler's retirements.
    pub agents_retired_by_scaler: usize,
    /// Instances terminated by the faults (EC2 reclaiming Spot, recovery retiring the killed
    /// master's agents).
    pub agents_terminated_by_faults: usize,
    pub agent_seconds: f64,
    pub agent_hours: f64,
    pub max_live_instances: usize,
    /// Looks at the farm that found more instances than a cap allows (stack-wide, or per
    /// master and label).
    pub cap_overshoots: usize,
    /// `InsufficientInstanceCapacity` answers the AWS proxy gave the scaler.
    pub insufficient_capacity_answers: u64,
    /// Instances, agent nodes and agent secrets left at the end.
    pub orphans_left: usize,
    pub orphan_instances: usize,
    pub orphan_nodes: usize,
    pub orphan_secrets: usize,
    pub errors: ErrorCounts,
    pub recovery_events_delivered: usize,
    /// Secrets found in the Lambdas' logs (kind and log, never the value); must be empty.
    pub secrets_in_logs: Vec<String>,
    /// How many secrets were looked for: the API token and every agent secret handed out.
    pub secrets_looked_for: usize,
    /// What the masters' load balancer answered (the demo's observer reads through it).
    pub load_balancer: FrontStats,
    pub faults: Vec<FaultRecord>,
    pub wall_s: f64,
}

impl DemoReport {
    /// Every job ran or was lost to an injected fault, no busy agent was killed otherwise, no
    /// cap was exceeded, nothing was left behind.
    pub fn invariants_hold(&self) -> bool {
        self.jobs_completed + self.builds_lost_to_faults + self.builds_queued_on_killed_master
            == self.jobs_submitted
            && self.builds_lost_otherwise == 0
            && self.busy_agents_killed == 0
            && self.cap_overshoots == 0
            && self.orphans_left == 0
            && self.secrets_in_logs.is_empty()
    }
}

/// The running farm.
struct Farm {
    moto: MotoServer,
    sdk: aws_config::SdkConfig,
    proxy: AwsProxy,
    sims: Vec<Option<RunningSim>>,
    /// Both masters behind one listener, by name.
    front: Front,
    lambdas: Arc<LambdaFarm>,
    fleet: Ec2Fleet,
    config: FleetConfig,
    /// The agents' subnets, one per zone.
    subnets: Vec<String>,
    /// The masters' API token, fresh for the run (the logs are searched for it).
    token: String,
}

/// Runs the demo end to end.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let speed = options.speed.max(0.01);
    println!("longshore demo: starting moto, the AWS proxy, two Jenkins masters, the Lambdas…");
    let mut farm = start_farm(&options).await?;
    let clients = clients_through_front(&farm.front, &farm.token)?;
    println!(
        "masters behind one load balancer: {}",
        MASTERS
            .iter()
            .map(|m| farm.front.url_of(&master_host(m)))
            .collect::<Vec<_>>()
            .join("  ")
    );
    let mut booter_config = BooterConfig::new(STACK);
    booter_config.boot_delay = wall(Duration::from_secs(options.boot_delay_secs), speed);
    booter_config.poll_interval = Duration::from_millis(500);
    let booter = Booter::new(&farm.sdk, booter_config).spawn();
    let schedule = tokio::spawn(invoke_on_schedule(
        farm.lambdas.clone(),
        wall(SCHEDULE, speed),
    ));
    let mut observer = Observer::new(farm.fleet.clone(), clients);
    let ec2 = aws_sdk_ec2::Client::new(&farm.sdk);

    let trace = trace::synthetic(options.seed, options.jobs, MASTERS.len());
    let span = trace.last().map_or(Duration::ZERO, |job| job.at);
    let mut steps = if options.no_faults {
        Vec::new()
    } else {
        faults::schedule(span, speed)
    };
    steps.reverse();
    println!(
        "replaying {} builds on labels {:?} across {} masters at speed {speed}; {} faults midway",
        trace.len(),
        trace::LABELS,
        MASTERS.len(),
        if options.no_faults { 0 } else { 4 }
    );
    let mut injector = Injector::new(farm.subnets.clone(), speed, farm.token.clone());
    let mut progress = Progress::new(trace.len());
    let mut samples: Vec<Sample> = Vec::new();
    let mut cap_overshoots = 0;
    let mut max_live = 0;
    let mut unreadable = 0;
    let mut seen = Seen::default();
    let mut next = 0;
    let deadline = started + Duration::from_secs(options.deadline_secs);
    let replay_start = Instant::now();
    loop {
        let elapsed = replay_start.elapsed();
        let trace_now = elapsed.as_secs_f64() * speed;
        while next < trace.len() && trace[next].at.as_secs_f64() <= trace_now {
            let job = &trace[next];
            match &farm.sims[job.master] {
                Some(sim) if !injector.is_down(job.master) => submit(sim, job, speed),
                _ => injector.deferred.push(job.clone()),
            }
            next += 1;
        }
        while steps.last().is_some_and(|step| step.at <= elapsed) {
            let Some(step) = steps.pop() else { break };
            let handles = FarmHandles {
                lambdas: &farm.lambdas,
                front: &farm.front,
                ec2: &ec2,
                fleet: &farm.fleet,
                proxy: &farm.proxy,
                sims: &mut farm.sims,
                masters: &MASTERS,
                seen: &seen,
            };
            let line = injector
                .step(step.action, handles, elapsed.as_secs_f64())
                .await;
            progress.announce(replay_start.elapsed(), &line);
        }
        let stats = all_stats(&farm.sims, &injector);
        seen = observer.observe(&stats).await;
        progress.draw(replay_start.elapsed(), &seen);
        samples.push(sample(replay_start.elapsed(), &seen));
        max_live = max_live.max(seen.live_instances);
        unreadable += seen.unreadable;
        if over_cap(&farm.config, &seen) {
            cap_overshoots += 1;
        }
        // A lost build is a finished (failed) build too: `completed` counts it.
        let accounted = completed(&stats) + queued_on_killed(&injector);
        let all_done = next == trace.len()
            && steps.is_empty()
            && injector.deferred.is_empty()
            && accounted >= trace.len();
        if (all_done && seen.live_instances == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    progress.finish();

    let stats = all_stats(&farm.sims, &injector);
    let seen = observer.observe(&stats).await;
    let secrets = agent_secrets_left(&farm.sdk).await;
    schedule.abort();
    let mut report = account(&stats, &injector, &observer, &seen, next);
    report.seed = options.seed;
    report.speed = speed;
    // Trace time: what the run would have cost and waited uncompressed.
    report.wait_p50_s *= speed;
    report.wait_p95_s *= speed;
    report.wait_max_s *= speed;
    report.agent_seconds = progress.agent_seconds() * speed;
    report.agent_hours = report.agent_seconds / 3600.0;
    report.max_live_instances = max_live;
    report.cap_overshoots = cap_overshoots;
    report.insufficient_capacity_answers = farm
        .proxy
        .stats()
        .faults
        .get("insufficient_capacity")
        .copied()
        .unwrap_or(0);
    report.orphan_secrets = secrets;
    report.load_balancer = farm.front.stats();
    report.orphans_left = report.orphan_instances + report.orphan_nodes + report.orphan_secrets;
    report.errors = ErrorCounts {
        observer_unreadable: unreadable + seen.unreadable,
        scaler_error_lines: error_lines(&farm.lambdas, "queue-scaler"),
        recovery_error_lines: error_lines(&farm.lambdas, "recovery"),
        recovery_failed_deliveries: injector.event_failures,
    };
    report.recovery_events_delivered = injector.events_delivered;
    write_logs(&options.out, &farm.lambdas);
    (report.secrets_in_logs, report.secrets_looked_for) =
        secrets_in_logs(&farm.lambdas, &farm.token, &stats);
    report.faults = injector.records.clone();
    report.wall_s = started.elapsed().as_secs_f64();
    drop(farm.lambdas);
    booter.shutdown().await;
    for sim in farm.sims.into_iter().flatten() {
        sim.shutdown().await;
    }
    drop(farm.proxy);
    drop(farm.moto);
    progress::print_summary(&report);
    write_outputs(&options.out, &report, &samples);
    Ok(report)
}

/// A span of trace time in wall time.
pub(crate) fn wall(trace: Duration, speed: f64) -> Duration {
    trace.div_f64(speed.max(0.01))
}

/// Submits one trace job to a master, its duration compressed by `speed`.
pub(crate) fn submit(sim: &RunningSim, job: &TraceJob, speed: f64) {
    let duration = wall(job.duration, speed);
    if let Err(err) = sim
        .sim()
        .submit(&job.job, Some(job.label), duration, JobKind::Freestyle)
    {
        tracing::warn!(job = %job.job, error = %err, "cannot submit");
    }
}

/// The counters of every master that ran: the live ones and the killed one's at its death.
fn all_stats(sims: &[Option<RunningSim>], injector: &Injector) -> Vec<SimStats> {
    // A killed master's builds still count as ended or lost; its queue is gone with it (and
    // counted apart, as queued on the killed master), so it is not shown as waiting.
    let killed = injector.killed_stats.iter().map(|stats| SimStats {
        queue_by_label: Default::default(),
        ..stats.clone()
    });
    sims.iter()
        .flatten()
        .map(|sim| sim.sim().stats())
        .chain(killed)
        .collect()
}

/// Builds that ended, including the lost ones (they end as failures).
fn completed(stats: &[SimStats]) -> usize {
    stats.iter().map(|s| s.builds_completed as usize).sum()
}

fn lost(stats: &[SimStats]) -> usize {
    stats.iter().map(|s| s.builds_lost.len()).sum()
}

fn queued_on_killed(injector: &Injector) -> usize {
    injector.killed_stats.iter().map(|s| s.queue_length).sum()
}

fn sample(elapsed: Duration, seen: &Seen) -> Sample {
    let mut sample = Sample {
        t_s: elapsed.as_secs_f64(),
        ..Sample::default()
    };
    for line in seen.labels.values() {
        sample.queued += line.queued;
        sample.booting += line.booting;
        sample.idle += line.idle;
        sample.busy += line.busy;
        sample.offline += line.offline;
    }
    sample
}

/// More live instances than the stack-wide cap, or than a template's per-master cap.
fn over_cap(config: &FleetConfig, seen: &Seen) -> bool {
    seen.live_instances > config.max_agents as usize
        || seen.per_master_label.iter().any(|((_, label), count)| {
            config
                .labels
                .iter()
                .find(|t| t.name == *label)
                .is_some_and(|t| *count > t.max_per_master as usize)
        })
}

/// Splits lost builds by cause and puts the run's numbers together.
fn account(
    stats: &[SimStats],
    injector: &Injector,
    observer: &Observer,
    seen: &Seen,
    submitted: usize,
) -> DemoReport {
    let live_count = stats.len() - injector.killed_stats.len();
    let (live, killed) = stats.split_at(live_count);
    let mut lost_to_faults: usize = killed.iter().map(|s| s.builds_lost.len()).sum();
    let mut killed_agents = BTreeSet::new();
    let mut lost_otherwise = 0;
    for build in live.iter().flat_map(|s| s.builds_lost.iter()) {
        if injector.interrupted.contains(&build.node)
            || injector.of_killed_master.contains(&build.node)
        {
            lost_to_faults += 1;
        } else {
            lost_otherwise += 1;
            killed_agents.insert(build.node.clone());
        }
    }
    let mut waits: Vec<f64> = stats
        .iter()
        .flat_map(|s| s.waits.iter().map(|w| w.wait_ms as f64 / 1000.0))
        .collect();
    waits.sort_by(f64::total_cmp);
    let by_faults = observer
        .gone()
        .filter(|id| injector.interrupted.contains(*id) || injector.of_killed_master.contains(*id))
        .count();
    DemoReport {
        jobs_submitted: submitted,
        jobs_completed: completed(stats) - lost(stats),
        builds_lost_to_faults: lost_to_faults,
        builds_queued_on_killed_master: queued_on_killed(injector),
        builds_lost_otherwise: lost_otherwise,
        busy_agents_killed: killed_agents.len(),
        wait_p50_s: percentile(&waits, 0.50),
        wait_p95_s: percentile(&waits, 0.95),
        wait_max_s: waits.last().copied().unwrap_or(0.0),
        agents_launched: observer.launched(),
        agents_retired_by_scaler: observer.retired() - by_faults,
        agents_terminated_by_faults: by_faults,
        orphan_instances: seen.live_instances,
        orphan_nodes: seen.agent_nodes,
        ..DemoReport::default()
    }
}

fn error_lines(lambdas: &LambdaFarm, function: &str) -> usize {
    lambdas
        .logs(function)
        .matches("\"level\":\"ERROR\"")
        .count()
}

/// Agent secrets (`/longshore/<stack>/agents/…` in SSM) still stored.
async fn agent_secrets_left(sdk: &aws_config::SdkConfig) -> usize {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let mut pages = ssm
        .get_parameters_by_path()
        .path(format!("/longshore/{STACK}/agents/"))
        .recursive(true)
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => count += page.parameters().len(),
            Err(err) => {
                eprintln!(
                    "cannot list agent secrets: {}",
                    aws_sdk_ssm::error::DisplayErrorContext(err)
                );
                break;
            }
        }
    }
    count
}

/// Starts moto, the AWS proxy, the masters, and both Lambdas with what the stack would hold.
async fn start_farm(options: &DemoOptions) -> Result<Farm, DemoError> {
    let moto = MotoServer::start()?;
    let sdk = moto.sdk_config().await;
    println!("deploying infra/template.yaml into moto, as make deploy-local does…");
    let stack_options = stack::parameters(STACK, DOMAIN).map_err(setup)?;
    let deployed = stack::deploy(&moto, &stack_options).await.map_err(setup)?;
    for line in deployed.describe() {
        println!("  {line}");
    }
    let written = std::fs::create_dir_all(&options.out).and_then(|()| {
        std::fs::write(options.out.join("stack.txt"), deployed.deployment.summary())
    });
    if let Err(err) = written {
        eprintln!("cannot write the stack's summary: {err}");
    }
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.map_err(setup)?;
    // Generated by Secrets Manager at deploy time, fresh for each run (the logs are searched
    // for it).
    let token = deployed.token.clone();
    let mut sims = Vec::new();
    for name in MASTERS {
        let config = SimConfig {
            name: name.to_string(),
            token: token.clone(),
            quiet_period: Duration::ZERO,
            ..SimConfig::default()
        };
        sims.push(Some(
            Simulator::start(config, "127.0.0.1:0".parse().map_err(setup)?).await?,
        ));
    }
    let front = Front::start()
        .await
        .map_err(|e| setup(format!("the masters' load balancer: {e}")))?;
    for (name, sim) in MASTERS.iter().zip(sims.iter().flatten()) {
        front.register(&master_host(name), &sim.url());
    }
    let speed = options.speed.max(0.01);
    // The fleet configuration counts whole seconds: at least one.
    let whole_secs = |trace: Duration| Duration::from_secs(wall(trace, speed).as_secs().max(1));
    let idle = whole_secs(Duration::from_secs(options.idle_secs));
    let mut config = demo_fleet(
        STACK,
        &deployed.launch_template.id,
        &deployed.subnets,
        &MASTERS,
        idle,
    );
    config.boot_timeout_secs = whole_secs(BOOT_TIMEOUT).as_secs() as u32;
    let subnets = deployed
        .subnets
        .iter()
        .map(|s| s.subnet_id.clone())
        .collect();
    let lambdas = start_lambdas(&sdk, &moto, &proxy, &config, &sims, &deployed, speed).await?;
    let fleet = Ec2Fleet::new(
        aws_sdk_ec2::Client::new(&sdk),
        STACK,
        deployed.launch_template.clone(),
    );
    Ok(Farm {
        moto,
        sdk,
        proxy,
        sims,
        front,
        lambdas: Arc::new(lambdas),
        fleet,
        config,
        subnets,
        token,
    })
}

/// A master's name behind the front, as the stack's DNS record and ALB rule name it.
pub fn master_host(master: &str) -> String {
    format!("{master}.{DOMAIN}")
}

/// The observer's Jenkins clients: each master by its name, which resolves to the front, as
/// people reach the stack's masters through the ALB.
fn clients_through_front(front: &Front, token: &str) -> Result<Vec<JenkinsClient>, DemoError> {
    let http = MASTERS
        .iter()
        .fold(JenkinsClient::http_client_builder(), |builder, master| {
            builder.resolve(&master_host(master), front.addr())
        })
        .build()
        .map_err(setup)?;
    Ok(MASTERS
        .iter()
        .map(|master| {
            let url = front.url_of(&master_host(master));
            JenkinsClient::new(http.clone(), &url, "admin", token)
        })
        .collect())
}

/// Writes the demo's fleet configuration over config-resolver's, and starts the real
/// queue-scaler and recovery binaries under `cargo lambda watch` with the stack's resources.
async fn start_lambdas(
    sdk: &aws_config::SdkConfig,
    moto: &MotoServer,
    proxy: &AwsProxy,
    config: &FleetConfig,
    sims: &[Option<RunningSim>],
    deployed: &stack::DemoStack,
    speed: f64,
) -> Result<LambdaFarm, DemoError> {
    let millis = |wall: Duration| format!("{}ms", wall.as_millis().max(1));
    // The handler stops ticking DEADLINE_MARGIN before its budget: time to answer, which does
    // not shrink with the trace. It is added back, so that each invocation ticks for the
    // compressed share of the minute it ticks for on AWS (52 s), and the Lambda timeout
    // stays past the budget, as the template's 60 s is past 55 s.
    let budget = wall(INVOCATION_BUDGET - DEADLINE_MARGIN, speed) + DEADLINE_MARGIN;
    let timeout = budget + Duration::from_secs(1);
    // Over config-resolver's: a new SSM version, which the scaler reloads as it would after
    // a stack update.
    crate::stack::put_fleet_config(sdk, &deployed.fleet_parameter, config)
        .await
        .map_err(setup)?;
    let masters: Vec<String> = sims
        .iter()
        .flatten()
        .zip(MASTERS)
        .map(|(sim, name)| format!("{name}={}", sim.url()))
        .collect();
    let masters = masters.join(",");
    let scaler = FunctionSpec::new("queue-scaler")
        .env("AWS_ENDPOINT_URL", proxy.endpoint_url())
        .env("LONGSHORE_STACK", STACK)
        .env("FLEET_CONFIG_PARAMETER", &deployed.fleet_parameter)
        .env("LEASE_TABLE", &deployed.state_table)
        .env("JENKINS_SECRET", &deployed.admin_secret)
        .env("LONGSHORE_MASTERS", &masters)
        .env("POLL_INTERVAL", millis(wall(POLL_INTERVAL, speed)))
        .env("INVOCATION_BUDGET", millis(budget))
        .env("RUST_LOG", "info")
        .timeout(timeout);
    let recovery = FunctionSpec::new("recovery")
        .env("AWS_ENDPOINT_URL", moto.endpoint_url())
        .env("LONGSHORE_STACK", STACK)
        .env("STATE_TABLE", &deployed.state_table)
        .env("ALERT_TOPIC_ARN", &deployed.alert_topic)
        .env("JENKINS_SECRET", &deployed.admin_secret)
        .env("LONGSHORE_ECS_CLUSTER", inject::CLUSTER)
        .env("LONGSHORE_MASTER_SERVICES", MASTERS.join(","))
        .env("LONGSHORE_MASTER_ASG", inject::MASTER_ASG)
        .env("LONGSHORE_MASTERS", &masters)
        .env("RUST_LOG", "info")
        // A limit, not a span of the trace: the template's 60 s, uncompressed.
        .timeout(Duration::from_secs(60));
    LambdaFarm::start(&[scaler, recovery]).await.map_err(setup)
}

/// EventBridge's part: the schedule event every `period` (a compressed minute), as
/// `rate(1 minute)` delivers it.
async fn invoke_on_schedule(lambdas: Arc<LambdaFarm>, period: Duration) {
    let event: serde_json::Value = match serde_json::from_str(SCHEDULE_EVENT) {
        Ok(event) => event,
        Err(err) => {
            eprintln!("the schedule event does not parse: {err}");
            return;
        }
    };
    let mut schedule = tokio::time::interval(period);
    // Invocations in flight end with this task: aborted at the end of the run, it takes them
    // along instead of leaving them to fail against a farm being taken down.
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        schedule.tick().await;
        while in_flight.try_join_next().is_some() {}
        let lambdas = lambdas.clone();
        let event = event.clone();
        // Invocations may overlap, as on AWS; the scaler's lease sorts them out.
        in_flight.spawn(async move {
            match lambdas.invoke("queue-scaler", &event).await {
                Ok(Invocation::Ok(_)) => {}
                Ok(Invocation::Failed {
                    error_type,
                    error_message,
                }) => {
                    tracing::error!(error_type, error_message, "queue-scaler invocation failed");
                }
                Err(err) => tracing::error!(error = %err, "queue-scaler invocation failed"),
            }
        });
    }
}

/// The Lambdas' own logs (JSON lines, as CloudWatch would keep them), for a closer look.
fn write_logs(dir: &std::path::Path, lambdas: &LambdaFarm) {
    for function in ["queue-scaler", "recovery"] {
        let path = dir.join(format!("{function}.log"));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, lambdas.logs(function)));
        if let Err(err) = written {
            eprintln!("cannot write {}: {err}", path.display());
        }
    }
}

/// The API token and every agent secret the masters handed out, looked for in the logs.
fn secrets_in_logs(lambdas: &LambdaFarm, token: &str, stats: &[SimStats]) -> (Vec<String>, usize) {
    let logs: Vec<(String, String)> = ["queue-scaler", "recovery"]
        .iter()
        .map(|f| (format!("{f}.log"), lambdas.logs(f)))
        .collect();
    let logs: Vec<(&str, &str)> = logs.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let mut secrets = vec![leaks::Secret {
        kind: "the Jenkins API token",
        value: token,
    }];
    for secret in stats.iter().flat_map(|s| &s.agent_secrets_issued) {
        secrets.push(leaks::Secret {
            kind: "an agent secret",
            value: secret,
        });
    }
    (leaks::leaks(&logs, &secrets), secrets.len())
}

fn setup(err: impl std::fmt::Display) -> DemoError {
    DemoError::Setup(err.to_string())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn write_outputs(dir: &std::path::Path, report: &DemoReport, samples: &[Sample]) {
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let text = serde_json::to_string_pretty(report).unwrap_or_default();
        std::fs::write(dir.join("summary.json"), text)?;
        std::fs::write(
            dir.join("timeline.png"),
            timeline::timeline_png(samples, &report.faults),
        )
    });
    match written {
        Ok(()) => println!(
            "written: {} and {}",
            dir.join("summary.json").display(),
            dir.join("timeline.png").display()
        ),
        Err(err) => eprintln!("cannot write {}: {err}", dir.display()),
    }
}
