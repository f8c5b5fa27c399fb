//! `longshore-farm simulate`: the policy simulator of `make bench`.
//!
//! A discrete-event simulation in simulated time ([`engine`]) replays build traces
//! ([`trace`]) under longshore's shipped `scaling::plan` and under the policies a user would
//! otherwise pick ([`policies`]): a static fleet, the Jenkins EC2 plugin's NodeProvisioner,
//! a Buildkite-style desired-count scaler, a Netflix-style utilization step scaler, and an
//! oracle that knows every arrival. Per trace and policy it reports wait p50/p95/max,
//! agent-hours (both against the oracle), launches and busy kills; it writes
//! `policy.json` and a Pareto plot `policy.png` ([`plot`]) and prints one table.

pub mod engine;
pub mod plot;
pub mod policies;
pub mod trace;

use std::path::{Path, PathBuf};

use serde::Serialize;

use engine::{Policy, RunStats, percentile};
use policies::{Buildkite, JenkinsEc2, Longshore, Netflix, Oracle, Static};
use trace::{Trace, TraceError};

/// Settings of one simulator run.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// Seconds from launching an agent until it takes builds (the same for every policy).
    #[arg(long, default_value_t = 40)]
    pub boot_secs: u32,
    /// longshore's idle time before retiring an agent, minutes (the stack's default).
    #[arg(long, default_value_t = longshore::domain::custom_resource::DEFAULT_IDLE_MINUTES)]
    pub idle_minutes: u32,
    /// The Buildkite model's scale-out cooldown, seconds (Elastic CI Stack default 300; the
    /// scaler on its own defaults to 0).
    #[arg(long, default_value_t = 300)]
    pub buildkite_cooldown_secs: u32,
    /// Seed of the synthetic traces.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Which standard traces to run (steady, bursty, nightly, long-tail, autoware, bitcoin).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "steady,bursty,nightly,long-tail,autoware,bitcoin"
    )]
    pub traces: Vec<String>,
    /// Where the real run histories are (default: ../shared/traces next to the repository).
    #[arg(long)]
    pub trace_dir: Option<PathBuf>,
    /// A build history of your own: CSV `queued_at,duration_s,label` (repeatable).
    #[arg(long)]
    pub csv: Vec<PathBuf>,
    /// Output directory for policy.json and policy.png.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
}

/// Why a simulator run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("unknown trace {0:?} (known: steady, bursty, nightly, long-tail, autoware, bitcoin)")]
    UnknownTrace(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The parameters every policy shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Params {
    pub boot_secs: u32,
    pub longshore_idle_secs: u32,
    pub buildkite_cooldown_secs: u32,
}

impl Params {
    fn boot_ms(self) -> i64 {
        i64::from(self.boot_secs) * 1000
    }

    /// The wait goal of issue 9: p95 ≤ boot delay + 10 s.
    pub fn wait_goal_ms(self) -> i64 {
        self.boot_ms() + 10_000
    }
}

/// One policy on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_max_s: f64,
    pub agent_hours: f64,
    /// Waits over the oracle's (`null` where the oracle's is 0: no ratio exists).
    pub wait_p50_ratio: Option<f64>,
    pub wait_p95_ratio: Option<f64>,
    pub wait_max_ratio: Option<f64>,
    pub agent_hours_ratio: f64,
    /// Wait p95 over the wait goal (boot delay + 10 s): the oracle's waits are 0, so this is
    /// the wait ratio that always exists.
    pub wait_p95_goal_ratio: f64,
    pub launches: usize,
    pub busy_kills: usize,
    /// Builds that never ran (the run gave up on them).
    pub never_ran: usize,
    /// The static fleet's size per label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_sizes: Option<Vec<usize>>,
}

/// How longshore fared against issue 9's goals on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goals {
    pub wait_p95_goal_s: f64,
    pub wait_p95_met: bool,
    pub agent_hours_ratio_goal: f64,
    pub agent_hours_ratio_met: bool,
    /// Peers at least as good on both wait p95 and agent-hours, and better on one.
    pub dominated_by: Vec<String>,
}

/// Every policy on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceResult {
    pub trace: String,
    pub labels: Vec<String>,
    pub jobs: usize,
    pub span_hours: f64,
    pub peak_concurrency: Vec<usize>,
    pub results: Vec<PolicyResult>,
    pub longshore_goals: Goals,
}

/// The whole run: what `policy.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bench {
    pub params: Params,
    pub seed: u64,
    pub traces: Vec<TraceResult>,
}

/// Runs the simulator as the command line asks: loads the traces, runs every policy, writes
/// the JSON and the plot, prints the table.
pub fn run(options: &SimulateOptions) -> Result<Bench, SimulateError> {
    let params = Params {
        boot_secs: options.boot_secs,
        longshore_idle_secs: options.idle_minutes * 60,
        buildkite_cooldown_secs: options.buildkite_cooldown_secs,
    };
    let dir = options.trace_dir.clone().unwrap_or_else(default_trace_dir);
    let mut traces = load_traces(&options.traces, options.seed, &dir)?;
    for csv in &options.csv {
        traces.push(trace::from_csv(csv)?);
    }
    let bench = bench(&traces, params, options.seed)?;
    std::fs::create_dir_all(&options.out).map_err(|source| write_error(&options.out, source))?;
    let json_path = options.out.join("policy.json");
    std::fs::write(&json_path, to_json(&bench)).map_err(|s| write_error(&json_path, s))?;
    let png_path = options.out.join("policy.png");
    std::fs::write(&png_path, plot::pareto_png(&bench)).map_err(|s| write_error(&png_path, s))?;
    print!("{}", table(&bench));
    println!("wrote {} and {}", json_path.display(), png_path.display());
    Ok(bench)
}

fn write_error(path: &Path, source: std::io::Error) -> SimulateError {
    SimulateError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// `../shared/traces` relative to the repository root (this crate is `<root>/farm`).
pub fn default_trace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces")
}

/// The named standard traces.
pub fn load_traces(names: &[String], seed: u64, dir: &Path) -> Result<Vec<Trace>, SimulateError> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "steady" => Ok(trace::steady(seed)),
            "bursty" => Ok(trace::bursty(seed)),
            "nightly" => Ok(trace::nightly(seed)),
            "long-tail" => Ok(trace::long_tail(seed)),
            "autoware" => Ok(trace::autoware(
                &dir.join("autoware_universe_build-and-test-2026.jsonl"),
            )?),
            "bitcoin" => Ok(trace::bitcoin(
                &dir.join("bitcoin-core-ci-stats_tasks_2025-10-16.json.gz"),
            )?),
            other => Err(SimulateError::UnknownTrace(other.to_string())),
        })
        .collect()
}

/// The pretty JSON of a run (what `policy.json` holds).
pub fn to_json(bench: &Bench) -> String {
    // Plain structs of numbers and strings: serialization cannot fail.
    serde_json::to_string_pretty(bench).expect("a Bench always serializes") + "\n"
}

/// Runs every policy on every trace.
pub fn bench(traces: &[Trace], params: Params, seed: u64) -> Result<Bench, SimulateError> {
    let traces = traces
        .iter()
        .map(|t| bench_trace(t, params))
        .collect::<Result<_, _>>()?;
    Ok(Bench {
        params,
        seed,
        traces,
    })
}

/// The policies in report order, the oracle first.
pub fn bench_trace(trace: &Trace, params: Params) -> Result<TraceResult, SimulateError> {
    let boot = params.boot_ms();
    let oracle = engine::run(trace, &mut Oracle, boot);
    let sizes = static_sizes(trace, params);
    let mut runs: Vec<(String, RunStats, Option<Vec<usize>>)> =
        vec![("oracle".to_string(), oracle, None)];
    let mut longshore = Longshore::new(trace, params.longshore_idle_secs, boot);
    let mut peers: Vec<Box<dyn Policy>> = vec![
        Box::new(Static {
            sizes: sizes.clone(),
        }),
        Box::new(JenkinsEc2::new(trace)),
        Box::new(Buildkite::new(
            trace,
            i64::from(params.buildkite_cooldown_secs) * 1000,
        )),
        Box::new(Netflix::new(trace)),
    ];
    runs.push((
        longshore.name(),
        engine::run(trace, &mut longshore, boot),
        None,
    ));
    for peer in &mut peers {
        let stats = engine::run(trace, peer.as_mut(), boot);
        let fleet = (peer.name() == "static").then(|| sizes.clone());
        runs.push((peer.name(), stats, fleet));
    }
    let goal_s = params.wait_goal_ms() as f64 / 1000.0;
    let oracle = summarize("oracle", &runs[0].1, None, None, goal_s);
    let results: Vec<PolicyResult> = runs
        .iter()
        .map(|(name, stats, fleet)| summarize(name, stats, Some(&oracle), fleet.clone(), goal_s))
        .collect();
    let span_ms = trace
        .jobs
        .iter()
        .map(|j| j.queued_ms + j.duration_ms)
        .max()
        .unwrap_or(0);
    Ok(TraceResult {
        trace: trace.name.clone(),
        labels: trace.labels.clone(),
        jobs: trace.jobs.len(),
        span_hours: span_ms as f64 / 3.6e6,
        peak_concurrency: (0..trace.labels.len())
            .map(|l| trace.peak_concurrency(l))
            .collect(),
        longshore_goals: goals(&results, params),
        results,
    })
}

fn summarize(
    name: &str,
    stats: &RunStats,
    oracle: Option<&PolicyResult>,
    fleet_sizes: Option<Vec<usize>>,
    wait_goal_s: f64,
) -> PolicyResult {
    let mut waits: Vec<i64> = stats.waits_ms.iter().flatten().copied().collect();
    waits.sort_unstable();
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let (p50, p95, max) = (
        seconds(percentile(&waits, 50.0)),
        seconds(percentile(&waits, 95.0)),
        seconds(waits.last().copied().unwrap_or(0)),
    );
    let agent_hours = stats.agent_ms as f64 / 3.6e6;
    let ratio = |value: f64, base: f64| (base > 0.0).then(|| value / base);
    PolicyResult {
        policy: name.to_string(),
        wait_p50_s: p50,
        wait_p95_s: p95,
        wait_max_s: max,
        agent_hours,
        wait_p50_ratio: oracle.and_then(|o| ratio(p50, o.wait_p50_s)),
        wait_p95_ratio: oracle.and_then(|o| ratio(p95, o.wait_p95_s)),
        wait_max_ratio: oracle.and_then(|o| ratio(max, o.wait_max_s)),
        agent_hours_ratio: oracle
            .and_then(|o| ratio(agent_hours, o.agent_hours))
            .unwrap_or(1.0),
        wait_p95_goal_ratio: p95 / wait_goal_s,
        launches: stats.launches,
        busy_kills: stats.busy_kills,
        never_ran: stats.waits_ms.iter().filter(|w| w.is_none()).count(),
        fleet_sizes,
    }
}

/// longshore against the goals: wait p95 ≤ boot + 10 s, agent-hours ≤ 1.25 × oracle, and no
/// peer (the oracle excluded) at least as good on both axes and better on one.
fn goals(results: &[PolicyResult], params: Params) -> Goals {
    let goal_s = params.wait_goal_ms() as f64 / 1000.0;
    let Some(ours) = results.iter().find(|r| r.policy == "longshore") else {
        return Goals {
            wait_p95_goal_s: goal_s,
            wait_p95_met: false,
            agent_hours_ratio_goal: 1.25,
            agent_hours_ratio_met: false,
            dominated_by: Vec::new(),
        };
    };
    let dominated_by = results
        .iter()
        .filter(|r| r.policy != "longshore" && r.policy != "oracle")
        .filter(|r| {
            r.wait_p95_s <= ours.wait_p95_s
                && r.agent_hours <= ours.agent_hours
                && (r.wait_p95_s < ours.wait_p95_s || r.agent_hours < ours.agent_hours)
        })
        .map(|r| r.policy.clone())
        .collect();
    Goals {
        wait_p95_goal_s: goal_s,
        wait_p95_met: ours.wait_p95_s <= goal_s,
        agent_hours_ratio_goal: 1.25,
        agent_hours_ratio_met: ours.agent_hours_ratio <= 1.25,
        dominated_by,
    }
}

/// The static fleet: per label, the smallest size whose wait p95 for that label meets the
/// same goal longshore is held to (boot delay + 10 s), found by bisection between 1 and the
/// label's peak concurrency (where no build waits). Every label meeting it bounds the
/// overall p95 too.
pub fn static_sizes(trace: &Trace, params: Params) -> Vec<usize> {
    let peaks: Vec<usize> = (0..trace.labels.len())
        .map(|l| trace.peak_concurrency(l))
        .collect();
    let mut sizes = peaks.clone();
    for label in 0..trace.labels.len() {
        let meets = |n: usize, sizes: &[usize]| {
            let mut trial = sizes.to_vec();
            trial[label] = n;
            let stats = engine::run(trace, &mut Static { sizes: trial }, params.boot_ms());
            let mut waits: Vec<i64> = trace
                .jobs
                .iter()
                .zip(&stats.waits_ms)
                .filter(|(j, _)| j.label == label)
                .map(|(_, w)| w.unwrap_or(i64::MAX))
                .collect();
            waits.sort_unstable();
            percentile(&waits, 95.0) <= params.wait_goal_ms()
        };
        let (mut lo, mut hi) = (1usize, peaks[label].max(1));
        while lo < hi {
            let mid = (lo + hi) / 2;
            if meets(mid, &sizes) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        sizes[label] = lo;
    }
    sizes
}

/// The one table `make bench` prints.
pub fn table(bench: &Bench) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "policy simulator: boot delay {} s, longshore idle {} s, buildkite scale-out cooldown {} s, \
         wait goal p95 ≤ {} s, seed {}",
        bench.params.boot_secs,
        bench.params.longshore_idle_secs,
        bench.params.buildkite_cooldown_secs,
        bench.params.wait_goal_ms() / 1000,
        bench.seed
    );
    let _ = writeln!(
        out,
        "{:<10} {:<12} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>5}",
        "trace",
        "policy",
        "wait p50",
        "wait p95",
        "p95/goal",
        "wait max",
        "agent-h",
        "×oracle",
        "launches",
        "kills"
    );
    for t in &bench.traces {
        for r in &t.results {
            let _ = writeln!(
                out,
                "{:<10} {:<12} {:>8.0}s {:>8.0}s {:>8.2} {:>8.0}s {:>10.1} {:>9.2} {:>9} {:>5}",
                t.trace,
                r.policy,
                r.wait_p50_s,
                r.wait_p95_s,
                r.wait_p95_goal_ratio,
                r.wait_max_s,
                r.agent_hours,
                r.agent_hours_ratio,
                r.launches,
                r.busy_kills
            );
        }
        let g = &t.longshore_goals;
        let _ = writeln!(
            out,
            "{:<10} longshore goals: wait p95 ≤ {:.0}s {}, agent-h ≤ {:.2}×oracle {}, dominated by: {}",
            t.trace,
            g.wait_p95_goal_s,
            if g.wait_p95_met { "met" } else { "MISSED" },
            g.agent_hours_ratio_goal,
            if g.agent_hours_ratio_met {
                "met"
            } else {
                "MISSED"
            },
            if g.dominated_by.is_empty() {
                "none".to_string()
            } else {
                g.dominated_by.join(", ")
            }
        );
    }
    out
}
