//! `make chaos`: the seeded fault harness. Each run plays a [`scenario::Scenario`] drawn from
//! its seed on the local farm in fast mode ([`run`]): jobs on two labels and two masters,
//! Jenkins 5xx / login pages / slow and half-written answers / restarts, AWS throttling, 5xx,
//! no capacity and lost RunInstances answers through the proxy, fresh instances hidden from
//! DescribeInstances, agents that never connect, connect late or die under a build, ticks cut
//! off mid-act, two invocations at once behind the real lease. Then the faults stop, the farm
//! settles, and [`check`] judges the invariants.
//!
//! One moto server and one proxy serve the whole batch (moto is reset between runs; each run
//! has its own stack name, so ClientTokens of different runs never meet in the proxy);
//! simulators and the booter are fresh per run. Run `i` uses seed `SEED + i`, so a failing
//! run replays with `make chaos RUNS=1 SEED=<its seed>`: the script is the same, the farm's
//! timing (which request a fault hits) may differ.

pub mod check;
pub mod custom_resource;
pub mod events;
pub mod logs;
pub mod run;
pub mod scenario;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use check::Invariants;

/// Settings of a batch.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosOptions {
    /// Number of runs.
    #[arg(long, env = "RUNS", default_value_t = 20)]
    pub runs: u64,
    /// Seed of the first run; run i uses SEED + i.
    #[arg(long, env = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// Batches played at once, each on its own moto and proxy (the runs of one batch share
    /// them and go one after the other).
    #[arg(long, env = "JOBS", default_value_t = 1)]
    pub jobs: usize,
    /// Where summary.json goes, and the failing runs' logs (`seed-<N>.log`).
    #[arg(long, default_value = "out/chaos")]
    pub out: PathBuf,
    /// Write every run's log, not only the failing runs'.
    #[arg(long)]
    pub all_logs: bool,
}

/// One run in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub seed: u64,
    pub invariants: Invariants,
    pub reasons: Vec<String>,
    pub faults: BTreeMap<String, u64>,
    pub settled: bool,
    pub acting_ticks: u64,
    pub observing_ticks: u64,
    pub instances: usize,
    pub idempotent_replays: u64,
    pub events_delivered: u64,
    pub scaler_errors: u64,
    pub wall_ms: u64,
    /// Where the run's own log was written (failing runs, or all with `--all-logs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// The batch's summary (`summary.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosSummary {
    pub first_seed: u64,
    pub runs: u64,
    pub failed_runs: Vec<u64>,
    pub faults: BTreeMap<String, u64>,
    pub invariants: Invariants,
    pub instances: usize,
    pub idempotent_replays: u64,
    pub events_delivered: u64,
    pub wall_s: f64,
    pub per_run: Vec<RunSummary>,
}

impl ChaosSummary {
    pub fn invariants_hold(&self) -> bool {
        self.failed_runs.is_empty()
    }
}

/// Plays `seeds` on one moto and proxy; `progress` prints a line per run.
pub async fn run_seeds(seeds: &[u64], progress: bool) -> Result<ChaosSummary, String> {
    run_seeds_in_parallel(seeds, 1, progress, None).await
}

/// Where runs' own logs ([`logs`]) are written, as `seed-<N>.log`.
#[derive(Debug, Clone, Copy)]
pub struct LogDir<'a> {
    pub dir: &'a std::path::Path,
    /// Every run's, not only the failing runs'.
    pub all: bool,
}

/// Plays `seeds` in `jobs` batches at once (seed i goes to batch i mod `jobs`), each on its
/// own moto and proxy, and sums them up in seed order.
pub async fn run_seeds_in_parallel(
    seeds: &[u64],
    jobs: usize,
    progress: bool,
    failing_logs: Option<LogDir<'_>>,
) -> Result<ChaosSummary, String> {
    let started = Instant::now();
    let jobs = jobs.clamp(1, seeds.len().max(1));
    let shares: Vec<Vec<u64>> = (0..jobs)
        .map(|j| seeds.iter().copied().skip(j).step_by(jobs).collect())
        .collect();
    let batches = futures_util::future::join_all(
        shares
            .iter()
            .map(|share| play_batch(share, progress, failing_logs)),
    )
    .await;
    let mut runs = Vec::new();
    for batch in batches {
        runs.extend(batch?);
    }
    runs.sort_by_key(|run| run.seed);
    let mut summary = ChaosSummary {
        first_seed: seeds.first().copied().unwrap_or(0),
        runs: seeds.len() as u64,
        ..ChaosSummary::default()
    };
    for run in runs {
        summary.add(run);
    }
    summary.wall_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// One batch: its seeds one after the other on one moto and proxy.
async fn play_batch(
    seeds: &[u64],
    progress: bool,
    failing_logs: Option<LogDir<'_>>,
) -> Result<Vec<RunSummary>, String> {
    use tracing::Instrument as _;
    let batch = run::Batch::start().await?;
    let mut runs = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let seen = batch
            .run(seed)
            .instrument(tracing::info_span!(logs::RUN_SPAN, seed))
            .await
            .map_err(|e| format!("seed {seed}: the farm failed: {e}"))?;
        let verdict = seen.verdict();
        let lines = logs::installed().map(|logs| logs.take(seed));
        let log = match (lines, failing_logs) {
            (Some(lines), Some(to)) if to.all || !verdict.invariants.hold() => {
                write_run_log(to.dir, seed, &lines)
            }
            _ => None,
        };
        let run = RunSummary {
            seed,
            invariants: verdict.invariants,
            reasons: verdict.reasons,
            faults: seen.faults.clone(),
            settled: seen.settled,
            acting_ticks: seen.acting_ticks,
            observing_ticks: seen.observing_ticks,
            instances: seen.all_instances.len(),
            idempotent_replays: seen.idempotent_replays,
            events_delivered: seen.events_delivered,
            scaler_errors: seen.scaler_errors,
            wall_ms: seen.wall_ms,
            log,
        };
        if progress {
            print_run(&run);
        }
        runs.push(run);
    }
    Ok(runs)
}

/// Writes a failing run's log; its path, or `None` (said on stderr) when it cannot.
fn write_run_log(dir: &std::path::Path, seed: u64, lines: &[String]) -> Option<String> {
    let path = dir.join(format!("seed-{seed}.log"));
    let mut text = lines.join("\n");
    text.push('\n');
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)) {
        Ok(()) => Some(path.display().to_string()),
        Err(err) => {
            eprintln!("cannot write {}: {err}", path.display());
            None
        }
    }
}

impl ChaosSummary {
    fn add(&mut self, run: RunSummary) {
        if !run.invariants.hold() {
            self.failed_runs.push(run.seed);
        }
        for (kind, count) in &run.faults {
            *self.faults.entry(kind.clone()).or_default() += count;
        }
        self.invariants.add(&run.invariants);
        self.instances += run.instances;
        self.idempotent_replays += run.idempotent_replays;
        self.events_delivered += run.events_delivered;
        self.per_run.push(run);
    }
}

fn print_run(run: &RunSummary) {
    let faults: u64 = run.faults.values().sum();
    if run.invariants.hold() {
        println!(
            "seed {:>6}: ok    {faults:>3} faults, {:>2} instances, {:>5} ms",
            run.seed, run.instances, run.wall_ms
        );
    } else {
        println!(
            "seed {:>6}: FAIL  {faults:>3} faults, {:>2} instances, {:>5} ms — replay: make chaos RUNS=1 SEED={}",
            run.seed, run.instances, run.wall_ms, run.seed
        );
        for reason in &run.reasons {
            println!("    {reason}");
        }
        if let Some(log) = &run.log {
            println!("    its log: {log}");
        }
    }
}

/// The end-of-batch table.
pub fn print_table(summary: &ChaosSummary) {
    println!();
    println!(
        "chaos: {} runs (seeds {}..={}), wall time {:.1} s, {} events handled by recovery",
        summary.runs,
        summary.first_seed,
        summary.first_seed + summary.runs.saturating_sub(1),
        summary.wall_s,
        summary.events_delivered
    );
    println!("  faults injected");
    for (kind, count) in &summary.faults {
        println!("    {kind:<32} {count:>6}");
    }
    let i = &summary.invariants;
    println!("  invariants (must all be 0)");
    for (name, count) in [
        ("busy agents killed", i.busy_agents_killed),
        ("cap overshoots", i.cap_overshoots),
        ("orphans after settling", i.orphans),
        ("duplicate launches", i.duplicate_launches),
        ("jobs never run", i.jobs_never_run),
        ("custom resource unanswered", i.custom_resource_unanswered),
        (
            "custom resource wrong answers",
            i.custom_resource_wrong_answers,
        ),
    ] {
        println!("    {name:<32} {count:>6}");
    }
    println!(
        "  instances launched {}, idempotent RunInstances replays {}",
        summary.instances, summary.idempotent_replays
    );
    if summary.failed_runs.is_empty() {
        println!("  all invariants held");
    } else {
        println!("  FAILED seeds: {:?}", summary.failed_runs);
    }
}

/// `longshore-farm chaos`: runs the batch, prints the table, writes `summary.json`.
pub async fn run_cli(options: ChaosOptions) -> Result<ChaosSummary, String> {
    let seeds: Vec<u64> = (options.seed..options.seed.saturating_add(options.runs)).collect();
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let logs = LogDir {
        dir: &options.out,
        all: options.all_logs,
    };
    let summary = run_seeds_in_parallel(&seeds, options.jobs, true, Some(logs)).await?;
    print_table(&summary);
    let path = options.out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("  summary: {}", path.display());
    Ok(summary)
}
