//! `make demo`: the whole local farm against a job trace, with live progress and a summary.
//!
//! moto stands in for AWS, two Jenkins simulators for the masters, the booter for the agents'
//! boot; the agents' launch template carries the real user data from `infra/agent/`. Jobs are
//! submitted from a seeded trace; the interim [`driver`] scales agents until the queue-scaler
//! Lambda takes over. The run ends once every job has run and every agent has been retired, or
//! at a deadline; the exit status says whether the invariants held.

pub mod driver;
pub mod progress;
pub mod trace;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use longshore::adapters::aws::ec2::{AgentState, Ec2Fleet};
use longshore::adapters::aws::ssm::SsmSecrets;
use longshore::adapters::jenkins::JenkinsClient;
use longshore::domain::scaling::is_instance_id;
use serde::Serialize;

use crate::booter::{Booter, BooterConfig};
use crate::jenkins::{JobKind, RunningSim, SimConfig, Simulator};
use crate::moto::MotoServer;
use crate::stack;
use driver::{Driver, demo_fleet};
use longshore::handlers::queue_scaler::MasterEndpoint;
use progress::Progress;

/// The stack name the demo's resources are tagged with.
const STACK: &str = "longshore-demo";
/// The simulated masters.
const MASTERS: [&str; 2] = ["master-a", "master-b"];
/// How often the driver ticks and the progress redraws (wall time).
const TICK: Duration = Duration::from_secs(1);

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
    pub retirements_cancelled: usize,
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
    let masters: Vec<MasterEndpoint<JenkinsClient>> = sims
        .iter()
        .zip(MASTERS)
        .map(|(sim, name)| MasterEndpoint {
            name: name.to_string(),
            url: sim.url(),
            jenkins: JenkinsClient::new(http.clone(), &sim.url(), "admin", "admin"),
        })
        .collect();

    let mut booter_config = BooterConfig::new(STACK);
    booter_config.boot_delay = Duration::from_secs(options.boot_delay_secs);
    booter_config.poll_interval = Duration::from_millis(500);
    let booter = Booter::new(&sdk, booter_config).spawn();

    let subnets: Vec<(String, String)> = network
        .subnets
        .iter()
        .map(|s| (s.subnet_id.clone(), s.availability_zone.clone()))
        .collect();
    let config = demo_fleet(
        STACK,
        &template.id,
        &subnets,
        &MASTERS,
        Duration::from_secs(options.idle_secs),
    );
    let fleet = Ec2Fleet::new(aws_sdk_ec2::Client::new(&sdk), STACK, template);
    let secrets = SsmSecrets::new(aws_sdk_ssm::Client::new(&sdk));
    let masters_for_check: Vec<JenkinsClient> = masters.iter().map(|m| m.jenkins.clone()).collect();
    let mut driver = Driver::new(masters, fleet.clone(), secrets, config);

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
        let tick = driver.tick().await;
        let stats: Vec<_> = sims.iter().map(|sim| sim.sim().stats()).collect();
        let agents = fleet.agents().await.unwrap_or_default();
        let live_agents = agents
            .iter()
            .filter(|a| a.state != AgentState::Gone)
            .count();
        progress.draw(
            replay_start.elapsed(),
            &stats,
            &tick,
            live_agents,
            &driver.counts,
        );
        let completed = completed(&stats);
        let all_done = next == trace.len() && completed + lost(&stats) >= trace.len();
        if (all_done && live_agents == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    progress.finish();

    let stats: Vec<_> = sims.iter().map(|sim| sim.sim().stats()).collect();
    let agents = fleet.agents().await.unwrap_or_default();
    let nodes_left = agent_nodes_left(&masters_for_check).await;
    let instances_left = agents
        .iter()
        .filter(|a| a.state != AgentState::Gone)
        .count();
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
        agents_launched: driver.counts.launched,
        agents_retired: driver.counts.retired,
        retirements_cancelled: driver.counts.retirements_cancelled,
        agent_seconds: progress.agent_seconds(),
        orphans_left: nodes_left + instances_left,
        errors: driver.counts.errors,
        wall_s: started.elapsed().as_secs_f64(),
    };
    booter.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
    drop(moto);
    progress::print_summary(&report);
    write_summary(&options.out, &report);
    Ok(report)
}

/// Agent nodes (named after instances) still defined on the masters; unreadable counts as one.
async fn agent_nodes_left(masters: &[JenkinsClient]) -> usize {
    let mut left = 0;
    for master in masters {
        match master.computers().await {
            Ok(set) => {
                left += set
                    .computer
                    .iter()
                    .filter(|c| is_instance_id(&c.display_name))
                    .count()
            }
            Err(err) => {
                eprintln!(
                    "cannot read {} for the final check: {err}",
                    master.base_url()
                );
                left += 1;
            }
        }
    }
    left
}

fn completed(stats: &[crate::jenkins::SimStats]) -> usize {
    stats.iter().map(|s| s.builds_completed as usize).sum()
}

fn lost(stats: &[crate::jenkins::SimStats]) -> usize {
    stats.iter().map(|s| s.builds_lost.len()).sum()
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
