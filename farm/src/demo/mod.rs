//! `make demo`: the whole local farm against a job trace, with live progress and a summary.
//!
//! moto stands in for AWS, two Jenkins simulators for the masters, the booter for the agents'
//! boot; the agents' launch template carries the real user data from `infra/agent/`. The real
//! queue-scaler binary runs under `cargo lambda watch` and the farm invokes it every minute with
//! the EventBridge schedule event, as AWS would. Jobs are submitted from a seeded trace. The run
//! ends once every job has run and every agent has been retired, or at a deadline; the exit
//! status says whether the invariants held.

pub mod fleet;
pub mod observe;
pub mod progress;
pub mod trace;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use longshore::adapters::aws::ec2::{Ec2Fleet, LaunchTemplateRef};
use longshore::adapters::jenkins::JenkinsClient;
use serde::Serialize;

use crate::booter::{Booter, BooterConfig};
use crate::jenkins::{JobKind, RunningSim, SimConfig, Simulator};
use crate::lambda::{FunctionSpec, Invocation, LambdaFarm};
use crate::moto::MotoServer;
use crate::stack;
use fleet::demo_fleet;
use observe::Observer;
use progress::Progress;

/// The stack name the demo's resources are tagged with.
const STACK: &str = "longshore-demo";
/// The simulated masters.
const MASTERS: [&str; 2] = ["master-a", "master-b"];
/// How often the progress redraws (wall time).
const TICK: Duration = Duration::from_secs(1);
/// EventBridge's schedule: `rate(1 minute)`.
const SCHEDULE: Duration = Duration::from_secs(60);
/// Where the stack keeps what the scaler reads.
const FLEET_PARAMETER: &str = "/longshore/longshore-demo/config/fleet";
const LEASE_TABLE: &str = "longshore-demo-scaler-lease";
const JENKINS_SECRET: &str = "longshore-demo/jenkins-scaler";
/// The EventBridge schedule event the farm delivers (a real sample: ../shared/fixtures).
const SCHEDULE_EVENT: &str = r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2015-10-08T16:53:06Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/longshore-demo-scaler"],"detail":{}}"#;

/// Settings of one demo run.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Time compression: trace seconds per wall second (arrivals and build durations).
    #[arg(long, env = "SPEED", default_value_t = 1.0)]
    pub speed: f64,
    /// Seed of the synthetic trace.
    #[arg(long, env = "SEED", default_value_t = 7)]
    pub seed: u64,
    /// Number of builds in the trace.
    #[arg(long, default_value_t = 40)]
    pub jobs: usize,
    /// Seconds from launch until an agent connects (wall time).
    #[arg(long, default_value_t = 3)]
    pub boot_delay_secs: u64,
    /// Seconds an agent may stay idle before it is retired (wall time).
    #[arg(long, default_value_t = 8)]
    pub idle_secs: u64,
    /// Wall-clock limit of the whole run, in seconds.
    #[arg(long, default_value_t = 170)]
    pub deadline_secs: u64,
    /// Where the summary goes.
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

/// What the run achieved; written to `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DemoReport {
    pub jobs_submitted: usize,
    pub jobs_completed: usize,
    pub builds_lost: usize,
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_max_s: f64,
    pub agents_launched: usize,
    pub agents_retired: usize,
    pub agent_seconds: f64,
    pub orphans_left: usize,
    pub errors: usize,
    pub wall_s: f64,
}

impl DemoReport {
    /// Every job ran, no build lost its agent, nothing was left behind.
    pub fn invariants_hold(&self) -> bool {
        self.jobs_completed == self.jobs_submitted
            && self.builds_lost == 0
            && self.orphans_left == 0
    }
}

/// Runs the demo end to end.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let speed = options.speed.max(0.01);
    println!("longshore demo: starting moto and two Jenkins masters…");
    let moto = MotoServer::start()?;
    let sdk = moto.sdk_config().await;
    let network = moto.prepare_network().await?;
    let template = stack::create_agent_launch_template(&sdk, STACK)
        .await
        .map_err(setup)?;

    let mut sims: Vec<RunningSim> = Vec::new();
    for name in MASTERS {
        let config = SimConfig {
            name: name.to_string(),
            quiet_period: Duration::ZERO,
            ..SimConfig::default()
        };
        sims.push(Simulator::start(config, "127.0.0.1:0".parse().map_err(setup)?).await?);
    }
    let http = JenkinsClient::http_client();
    let clients: Vec<JenkinsClient> = sims
        .iter()
        .map(|sim| JenkinsClient::new(http.clone(), &sim.url(), "admin", "admin"))
        .collect();

    let mut booter_config = BooterConfig::new(STACK);
    booter_config.boot_delay = Duration::from_secs(options.boot_delay_secs);
    booter_config.poll_interval = Duration::from_millis(500);
    let booter = Booter::new(&sdk, booter_config).spawn();

    let lambdas = start_scaler(&sdk, &moto, &network, &template, &sims, &options).await?;
    let lambdas = Arc::new(lambdas);
    let schedule = tokio::spawn(invoke_on_schedule(lambdas.clone()));
    let fleet = Ec2Fleet::new(aws_sdk_ec2::Client::new(&sdk), STACK, template);
    let mut observer = Observer::new(fleet, clients);

    let trace = trace::synthetic(options.seed, options.jobs, sims.len());
    println!(
        "replaying {} builds on labels {:?} across {} masters at speed {speed}",
        trace.len(),
        trace::LABELS,
        sims.len()
    );
    let mut progress = Progress::new(trace.len());
    let mut next = 0;
    let deadline = started + Duration::from_secs(options.deadline_secs);
    let replay_start = Instant::now();
    loop {
        let elapsed = replay_start.elapsed().as_secs_f64() * speed;
        while next < trace.len() && trace[next].at.as_secs_f64() <= elapsed {
            let job = &trace[next];
            let duration = job.duration.div_f64(speed);
            if let Err(err) = sims[job.master].sim().submit(
                &job.job,
                Some(job.label),
                duration,
                JobKind::Freestyle,
            ) {
                tracing::warn!(job = %job.job, error = %err, "cannot submit");
            }
            next += 1;
        }
        let stats: Vec<_> = sims.iter().map(|sim| sim.sim().stats()).collect();
        let seen = observer.observe(&stats).await;
        progress.draw(replay_start.elapsed(), &seen);
        let live_agents = seen.live_instances;
        let completed = completed(&stats);
        let all_done = next == trace.len() && completed + lost(&stats) >= trace.len();
        if (all_done && live_agents == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    progress.finish();

    let stats: Vec<_> = sims.iter().map(|sim| sim.sim().stats()).collect();
    let seen = observer.observe(&stats).await;
    let mut waits: Vec<f64> = stats
        .iter()
        .flat_map(|s| s.waits.iter().map(|w| w.wait_ms as f64 / 1000.0))
        .collect();
    waits.sort_by(f64::total_cmp);
    let report = DemoReport {
        jobs_submitted: next,
        jobs_completed: completed(&stats),
        builds_lost: lost(&stats),
        wait_p50_s: percentile(&waits, 0.50),
        wait_p95_s: percentile(&waits, 0.95),
        wait_max_s: waits.last().copied().unwrap_or(0.0),
        agents_launched: observer.launched(),
        agents_retired: observer.retired(),
        agent_seconds: progress.agent_seconds(),
        orphans_left: seen.live_instances + seen.agent_nodes,
        errors: seen.unreadable,
        wall_s: started.elapsed().as_secs_f64(),
    };
    schedule.abort();
    let scaler_errors = lambdas
        .logs("queue-scaler")
        .matches("\"level\":\"ERROR\"")
        .count();
    drop(lambdas);
    booter.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
    drop(moto);
    progress::print_summary(&report, scaler_errors);
    write_summary(&options.out, &report);
    Ok(report)
}

fn completed(stats: &[crate::jenkins::SimStats]) -> usize {
    stats.iter().map(|s| s.builds_completed as usize).sum()
}

fn lost(stats: &[crate::jenkins::SimStats]) -> usize {
    stats.iter().map(|s| s.builds_lost.len()).sum()
}

/// Puts into moto what the stack and config-resolver would hold for the scaler, and starts the
/// real queue-scaler binary under `cargo lambda watch`.
async fn start_scaler(
    sdk: &aws_config::SdkConfig,
    moto: &MotoServer,
    network: &crate::moto::TestNetwork,
    template: &LaunchTemplateRef,
    sims: &[RunningSim],
    options: &DemoOptions,
) -> Result<LambdaFarm, DemoError> {
    let idle = Duration::from_secs(options.idle_secs);
    let config = demo_fleet(STACK, &template.id, &network.subnets, &MASTERS, idle);
    stack::put_fleet_config(sdk, FLEET_PARAMETER, &config)
        .await
        .map_err(setup)?;
    stack::create_lease_table(sdk, LEASE_TABLE)
        .await
        .map_err(setup)?;
    stack::create_jenkins_secret(sdk, JENKINS_SECRET, "admin", "admin")
        .await
        .map_err(setup)?;
    let masters: Vec<String> = sims
        .iter()
        .zip(MASTERS)
        .map(|(sim, name)| format!("{name}={}", sim.url()))
        .collect();
    let spec = FunctionSpec::new("queue-scaler")
        .env("AWS_ENDPOINT_URL", moto.endpoint_url())
        .env("LONGSHORE_STACK", STACK)
        .env("FLEET_CONFIG_PARAMETER", FLEET_PARAMETER)
        .env("LEASE_TABLE", LEASE_TABLE)
        .env("JENKINS_SECRET", JENKINS_SECRET)
        .env("LONGSHORE_MASTERS", masters.join(","))
        .env("POLL_INTERVAL", "2s")
        .env("INVOCATION_BUDGET", "55s")
        .timeout(SCHEDULE);
    LambdaFarm::start(&[spec]).await.map_err(setup)
}

/// EventBridge's part: the schedule event every minute, as `rate(1 minute)` delivers it.
async fn invoke_on_schedule(lambdas: Arc<LambdaFarm>) {
    let event: serde_json::Value = match serde_json::from_str(SCHEDULE_EVENT) {
        Ok(event) => event,
        Err(err) => {
            eprintln!("the schedule event does not parse: {err}");
            return;
        }
    };
    let mut schedule = tokio::time::interval(SCHEDULE);
    loop {
        schedule.tick().await;
        let lambdas = lambdas.clone();
        let event = event.clone();
        // Invocations may overlap, as on AWS; the scaler's lease sorts them out.
        tokio::spawn(async move {
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

fn write_summary(dir: &std::path::Path, report: &DemoReport) {
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let text = serde_json::to_string_pretty(report).unwrap_or_default();
        std::fs::write(dir.join("summary.json"), text)
    });
    match written {
        Ok(()) => println!("summary written to {}", dir.join("summary.json").display()),
        Err(err) => eprintln!("cannot write {}: {err}", dir.display()),
    }
}
