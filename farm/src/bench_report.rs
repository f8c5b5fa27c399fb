//! `longshore-farm bench-report`, the last step of `make bench`: one table of everything the
//! run measured, each figure next to what it is judged against and the ratio between them.
//!
//! It reads what the earlier steps of the same run wrote: criterion's estimates
//! (`<target>/criterion/**/new/{benchmark,estimates}.json`), the policy simulator's
//! `policy.json` and the footprint's `lambda.json`. The references are issue 9's goals where
//! it sets one (wait p95 ≤ boot + 10 s, agent-hours ≤ 1.25 × oracle, `plan()` ≤ 10 ms at the
//! large size, cold start ≤ 30 ms, RSS ≤ 40 MB), else another figure of the same run.
//! A figure that is missing (a step that did not run) is an error, never a blank row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

/// The goals of issue 9.
const PLAN_GOAL_NS: f64 = 10e6;
const COLD_START_GOAL_MS: f64 = 30.0;
const RSS_GOAL_MB: f64 = 40.0;

const PLAN_SMALL: &str = "plan 1 master x 100 queued x 50 agents";
const PLAN_LARGE: &str = "plan 10 masters x 10000 queued x 2000 agents";
const PARSE_QUEUE: &str = "parse queue 10000 items";
const PARSE_COMPUTERS: &str = "parse computers 2000 nodes";
const SIM_FULL: &str = "queue_api_json_10k/full";
const SIM_TREE: &str = "queue_api_json_10k/tree=items[id,why,inQueueSince,buildable]";

/// Settings of the report.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchReportOptions {
    /// Where policy.json and lambda.json are.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
    /// The cargo target directory criterion wrote to (default: $CARGO_TARGET_DIR or ./target).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
}

/// One row: a figure, what it is compared with, and the ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub reference: String,
    pub ratio: String,
    /// `met` / `MISSED` against a goal; empty where the reference is not a goal.
    pub verdict: String,
}

/// Criterion's mean estimate of each benchmark, by full id, in nanoseconds.
pub fn criterion_means(criterion_dir: &Path) -> Result<BTreeMap<String, f64>, String> {
    let mut means = BTreeMap::new();
    let mut stack = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("new/benchmark.json") {
                let id = read_json(&path)?["full_id"]
                    .as_str()
                    .ok_or_else(|| format!("{}: no full_id", path.display()))?
                    .to_string();
                let estimates = read_json(&path.with_file_name("estimates.json"))?;
                let mean = estimates["mean"]["point_estimate"]
                    .as_f64()
                    .ok_or_else(|| format!("{}: no mean", path.display()))?;
                means.insert(id, mean);
            }
        }
    }
    Ok(means)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The rows of the policy simulator: per trace and policy, wait p95 against the goal and
/// agent-hours against the oracle; longshore's row says whether it met both.
pub fn policy_rows(policy: &Value) -> Result<Vec<Row>, String> {
    let traces = policy["traces"]
        .as_array()
        .ok_or("policy.json: no traces")?;
    let goal_s = policy["params"]["boot_secs"]
        .as_f64()
        .ok_or("policy.json: no boot_secs")?
        + 10.0;
    let mut rows = Vec::new();
    for trace in traces {
        let name = trace["trace"].as_str().unwrap_or("?");
        let results = trace["results"]
            .as_array()
            .ok_or("policy.json: no results")?;
        let oracle_hours = results
            .iter()
            .find(|r| r["policy"] == "oracle")
            .and_then(|r| r["agent_hours"].as_f64())
            .ok_or_else(|| format!("policy.json: {name} has no oracle"))?;
        for result in results.iter().filter(|r| r["policy"] != "oracle") {
            let policy = result["policy"].as_str().unwrap_or("?");
            let p95 = number(result, "wait_p95_s")?;
            let hours = number(result, "agent_hours")?;
            let kills = result["busy_kills"].as_u64().unwrap_or(0);
            let (wait_ratio, hours_ratio) = (p95 / goal_s, hours / oracle_hours.max(1e-9));
            let verdict = if policy == "longshore" {
                let dominated = trace["longshore_goals"]["dominated_by"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty());
                verdict(wait_ratio <= 1.0 && hours_ratio <= 1.25 && !dominated && kills == 0)
            } else {
                String::new()
            };
            rows.push(Row {
                figure: format!("{name}: {policy}"),
                measured: format!("p95 {p95:.0} s, {hours:.1} agent-h, {kills} kills"),
                reference: format!("goal {goal_s:.0} s, oracle {oracle_hours:.1} agent-h"),
                ratio: format!("{wait_ratio:.2}, {hours_ratio:.2}"),
                verdict,
            });
        }
    }
    Ok(rows)
}

fn number(value: &Value, key: &str) -> Result<f64, String> {
    value[key]
        .as_f64()
        .ok_or_else(|| format!("policy.json: no {key}"))
}

/// The criterion rows: `plan()` against its goal, parsing against `plan()` at the same size,
/// the simulator's full queue answer against its `tree=` answer.
pub fn criterion_rows(means: &BTreeMap<String, f64>) -> Result<Vec<Row>, String> {
    let get = |id: &str| {
        means.get(id).copied().ok_or_else(|| {
            format!("criterion has no estimate for {id:?}: did `cargo bench --workspace` run?")
        })
    };
    let large = get(PLAN_LARGE)?;
    let mut rows = vec![
        Row {
            figure: "plan() 1 × 100 queued × 50 agents".into(),
            measured: duration(get(PLAN_SMALL)?),
            reference: format!("plan() at 10 × 10,000 × 2,000: {}", duration(large)),
            ratio: format!("{:.4}", get(PLAN_SMALL)? / large),
            verdict: String::new(),
        },
        Row {
            figure: "plan() 10 × 10,000 queued × 2,000 agents".into(),
            measured: duration(large),
            reference: format!("goal {}", duration(PLAN_GOAL_NS)),
            ratio: format!("{:.2}", large / PLAN_GOAL_NS),
            verdict: verdict(large <= PLAN_GOAL_NS),
        },
    ];
    for (figure, id) in [
        ("parse 10,000 queue items", PARSE_QUEUE),
        ("parse 2,000 computers", PARSE_COMPUTERS),
    ] {
        let mean = get(id)?;
        rows.push(Row {
            figure: figure.into(),
            measured: duration(mean),
            reference: format!("plan() at that size: {}", duration(large)),
            ratio: format!("{:.2}", mean / large),
            verdict: String::new(),
        });
    }
    let (full, tree) = (get(SIM_FULL)?, get(SIM_TREE)?);
    rows.push(Row {
        figure: "simulator /queue/api/json, 10,000 items".into(),
        measured: duration(full),
        reference: format!("the scaler's tree= query: {}", duration(tree)),
        ratio: format!("{:.2}", full / tree),
        verdict: String::new(),
    });
    Ok(rows)
}

/// The footprint rows: cold start and RSS against their goals, init against the cold start.
pub fn lambda_rows(lambda: &Value) -> Result<Vec<Row>, String> {
    let functions = lambda.as_array().ok_or("lambda.json: not a list")?;
    let mut rows = Vec::new();
    for f in functions {
        let name = f["function"].as_str().unwrap_or("?");
        let profile = f["profile"].as_str().unwrap_or("?");
        let field = |key: &str| {
            f[key]
                .as_f64()
                .ok_or_else(|| format!("lambda.json: {name} has no {key}"))
        };
        let (init, cold, warm) = (
            field("init_ms")?,
            field("cold_start_ms")?,
            field("warm_invocation_ms")?,
        );
        let (rss_mib, binary_mib) = (field("peak_rss_mib")?, field("binary_mib")?);
        let rss_mb = rss_mib * 1.048_576;
        rows.push(Row {
            figure: format!("{name} ({profile}) cold start"),
            measured: format!("{cold:.1} ms (init {init:.1} ms, warm call {warm:.1} ms)"),
            reference: format!("goal {COLD_START_GOAL_MS:.0} ms"),
            ratio: format!("{:.2}", cold / COLD_START_GOAL_MS),
            verdict: verdict(cold <= COLD_START_GOAL_MS),
        });
        rows.push(Row {
            figure: format!("{name} ({profile}) peak RSS"),
            measured: format!("{rss_mb:.1} MB (binary {binary_mib:.1} MiB)"),
            reference: format!("goal {RSS_GOAL_MB:.0} MB"),
            ratio: format!("{:.2}", rss_mb / RSS_GOAL_MB),
            verdict: verdict(rss_mb <= RSS_GOAL_MB),
        });
    }
    Ok(rows)
}

fn verdict(met: bool) -> String {
    if met { "met" } else { "MISSED" }.to_string()
}

/// Nanoseconds, in the unit that reads best.
fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The table, columns sized to their longest cell.
pub fn render(rows: &[Row]) -> String {
    let header = Row {
        figure: "figure".into(),
        measured: "measured".into(),
        reference: "compared with".into(),
        ratio: "ratio".into(),
        verdict: "goal".into(),
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let width = |cell: fn(&Row) -> &str| {
        all.iter()
            .map(|r| cell(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [
        width(|r| &r.figure),
        width(|r| &r.measured),
        width(|r| &r.reference),
        width(|r| &r.ratio),
    ];
    let mut out = String::new();
    for row in all {
        let cells = [&row.figure, &row.measured, &row.reference, &row.ratio];
        for (cell, width) in cells.iter().zip(widths) {
            out.push_str(cell);
            out.push_str(&" ".repeat(width - cell.chars().count() + 2));
        }
        out.push_str(&row.verdict);
        out.push('\n');
    }
    out
}

/// Reads the run's outputs, prints the table and keeps it in `report.txt` beside them. A
/// missing output fails; a missed goal is shown in its row, not an error (the bench measures,
/// the tests judge behaviour).
pub fn run_cli(options: BenchReportOptions) -> ExitCode {
    let target = options
        .target_dir
        .clone()
        .unwrap_or_else(default_target_dir);
    let rows = (|| -> Result<Vec<Row>, String> {
        let mut rows = policy_rows(&read_json(&options.out.join("policy.json"))?)?;
        rows.extend(criterion_rows(&criterion_means(
            &target.join("criterion"),
        )?)?);
        rows.extend(lambda_rows(&read_json(&options.out.join("lambda.json"))?)?);
        Ok(rows)
    })();
    match rows {
        Ok(rows) => {
            let table = format!(
                "longshore bench: every figure of this run, against its goal or its peer\n{}",
                render(&rows)
            );
            println!("\n{table}");
            let kept = options.out.join("report.txt");
            if let Err(err) = std::fs::write(&kept, &table) {
                eprintln!("bench-report: {}: {err}", kept.display());
                return ExitCode::FAILURE;
            }
            println!("(also in {})", kept.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-report: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `$CARGO_TARGET_DIR`, else `target` (where `make` runs cargo).
fn default_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn longshore_is_judged_on_both_goals_and_peers_only_compared() {
        let policy = json!({
            "params": {"boot_secs": 40},
            "traces": [{
                "trace": "steady",
                "longshore_goals": {"dominated_by": []},
                "results": [
                    {"policy": "oracle", "wait_p95_s": 0.0, "agent_hours": 2.0, "busy_kills": 0},
                    {"policy": "longshore", "wait_p95_s": 45.0, "agent_hours": 2.4, "busy_kills": 0},
                    {"policy": "static", "wait_p95_s": 10.0, "agent_hours": 8.0, "busy_kills": 0}
                ]
            }]
        });
        let rows = policy_rows(&policy).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ratio, "0.90, 1.20");
        assert_eq!(rows[0].verdict, "met");
        assert_eq!(rows[1].ratio, "0.20, 4.00");
        assert_eq!(rows[1].verdict, "");
    }

    #[test]
    fn a_missed_goal_says_so() {
        let lambda = json!([{
            "function": "queue-scaler", "profile": "release", "init_ms": 5.0,
            "cold_start_ms": 45.0, "warm_invocation_ms": 9.0, "peak_rss_mib": 20.0,
            "binary_mib": 12.0
        }]);
        let rows = lambda_rows(&lambda).expect("rows");
        assert_eq!(rows[0].verdict, "MISSED");
        assert_eq!(rows[0].ratio, "1.50");
        assert_eq!(rows[1].verdict, "met");
    }

    #[test]
    fn a_missing_benchmark_is_an_error_not_a_blank_row() {
        let err = criterion_rows(&BTreeMap::new()).expect_err("nothing measured");
        assert!(err.contains("cargo bench"), "{err}");
        let err = policy_rows(&json!({})).expect_err("no policy run");
        assert!(err.contains("policy.json"), "{err}");
    }

    #[test]
    fn criterion_estimates_are_found_by_their_full_id() {
        let dir = std::env::temp_dir().join(format!("longshore-criterion-{}", std::process::id()));
        let bench = dir.join("plan 10 masters x 10000 queued x 2000 agents/new");
        std::fs::create_dir_all(&bench).expect("dir");
        std::fs::write(
            bench.join("benchmark.json"),
            json!({"full_id": PLAN_LARGE}).to_string(),
        )
        .expect("write");
        std::fs::write(
            bench.join("estimates.json"),
            json!({"mean": {"point_estimate": 4.2e6}}).to_string(),
        )
        .expect("write");
        let means = criterion_means(&dir).expect("read");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(means.get(PLAN_LARGE), Some(&4.2e6));
    }

    #[test]
    fn the_table_lines_up() {
        let rows = vec![Row {
            figure: "plan()".into(),
            measured: "4.20 ms".into(),
            reference: "goal 10.00 ms".into(),
            ratio: "0.42".into(),
            verdict: "met".into(),
        }];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("ratio"), lines[1].find("0.42"));
    }
}
