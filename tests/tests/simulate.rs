//! The policy simulator's own guarantees (issue 9): the oracle never makes a build wait, a
//! static fleet as large as the peak concurrency never does either, a seed gives the same
//! JSON, longshore's shipped plan never kills a busy agent (while the simulator does count
//! kills when a policy makes them), and a bad user CSV is refused with its line named.

use longshore_farm::simulate::engine::{self, Action, AgentState, Policy, World};
use longshore_farm::simulate::policies::{Longshore, Oracle, Static};
use longshore_farm::simulate::trace::{self, Trace};
use longshore_farm::simulate::{self as sim, Params};

const BOOT_MS: i64 = 40_000;

fn params() -> Params {
    Params {
        boot_secs: 40,
        longshore_idle_secs: 600,
        buildkite_cooldown_secs: 300,
    }
}

#[test]
fn the_oracle_never_makes_a_build_wait() {
    for trace in trace::synthetic_all(11) {
        let stats = engine::run(&trace, &mut Oracle, BOOT_MS);
        assert_eq!(stats.launches, trace.jobs.len(), "{}", trace.name);
        assert!(
            stats.waits_ms.iter().all(|w| *w == Some(0)),
            "{}: every build starts when queued",
            trace.name
        );
        // Each agent lives exactly boot + its build.
        let expected: i64 = trace.jobs.iter().map(|j| BOOT_MS + j.duration_ms).sum();
        assert_eq!(stats.agent_ms, expected, "{}", trace.name);
    }
}

#[test]
fn a_static_fleet_at_peak_concurrency_never_makes_a_build_wait() {
    for trace in trace::synthetic_all(11) {
        let peaks: Vec<usize> = (0..trace.labels.len())
            .map(|l| trace.peak_concurrency(l))
            .collect();
        let stats = engine::run(
            &trace,
            &mut Static {
                sizes: peaks.clone(),
            },
            BOOT_MS,
        );
        assert!(
            stats.waits_ms.iter().all(|w| *w == Some(0)),
            "{}: {peaks:?} agents",
            trace.name
        );
        // One agent fewer on the busiest label makes someone wait: the peak is tight.
        let mut fewer = peaks.clone();
        fewer[0] -= 1;
        let stats = engine::run(&trace, &mut Static { sizes: fewer }, BOOT_MS);
        assert!(
            stats.waits_ms.iter().any(|w| w.is_some_and(|w| w > 0)),
            "{}",
            trace.name
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_json_and_another_seed_does_not() {
    let run = |seed| {
        let traces = vec![trace::steady(seed), trace::bursty(seed)];
        sim::to_json(&sim::bench(&traces, params(), seed).unwrap())
    };
    let first = run(5);
    assert_eq!(first, run(5));
    assert_ne!(first, run(6));
    let value: serde_json::Value = serde_json::from_str(&first).unwrap();
    let policies: Vec<&str> = value["traces"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        [
            "oracle",
            "longshore",
            "static",
            "jenkins-ec2",
            "buildkite",
            "netflix"
        ]
    );
}

/// Many short builds with gaps around the idle time: retirements keep racing arrivals.
fn churn_trace() -> Trace {
    let mut rows = Vec::new();
    let mut at = 0;
    for n in 0..400i64 {
        let label = if n % 3 == 0 { "b" } else { "a" };
        rows.push((at, 5_000 + (n * 7_919) % 50_000, label.to_string()));
        at += [0, 1_000, 2_000, 3_000, 59_000, 61_000][(n % 6) as usize];
    }
    Trace::from_rows("churn", rows)
}

#[test]
fn longshore_never_kills_a_busy_agent_and_runs_every_build() {
    let mut traces = trace::synthetic_all(3);
    traces.push(churn_trace());
    for idle_secs in [0, 60, 600] {
        for trace in &traces {
            let mut longshore = Longshore::new(trace, idle_secs, BOOT_MS);
            let stats = engine::run(trace, &mut longshore, BOOT_MS);
            assert_eq!(stats.busy_kills, 0, "{} idle {idle_secs}", trace.name);
            assert!(stats.waits_ms.iter().all(Option::is_some), "{}", trace.name);
            assert!(stats.launches > 0);
        }
    }
}

/// A policy that terminates the first busy agent it sees, once.
struct Reckless {
    done: bool,
}

impl Policy for Reckless {
    fn name(&self) -> String {
        "reckless".to_string()
    }
    fn period_ms(&self) -> Option<i64> {
        Some(1_000)
    }
    fn tick(&mut self, world: &World) -> Vec<Action> {
        let mut actions = Vec::new();
        for label in 0..world.trace.labels.len() {
            if world.agents_of(label).count() == 0 && !world.queues[label].is_empty() {
                actions.push(Action::Launch { label, count: 1 });
            }
        }
        let busy = world
            .agents
            .values()
            .find(|a| matches!(a.state, AgentState::Busy { .. }));
        if let (false, Some(agent)) = (self.done, busy) {
            self.done = true;
            actions.push(Action::Terminate(agent.id));
        }
        actions
    }
}

#[test]
fn the_simulator_counts_a_busy_kill_and_runs_the_build_again() {
    let trace = Trace::from_rows("one", vec![(0, 30_000, "a".to_string())]);
    let stats = engine::run(&trace, &mut Reckless { done: false }, BOOT_MS);
    assert_eq!(stats.busy_kills, 1);
    assert_eq!(stats.launches, 2, "a new agent for the killed build");
    let wait = stats.waits_ms[0].expect("the build ran again");
    assert!(wait > BOOT_MS, "it waited for the second boot: {wait}");
}

#[test]
fn a_bad_user_csv_is_refused_naming_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("longshore-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.csv");
    std::fs::write(
        &path,
        "queued_at,duration_s,label\n1700000000,120,linux\n1700000060,two minutes,linux\n",
    )
    .unwrap();
    let err = trace::from_csv(&path).unwrap_err().to_string();
    assert!(err.contains("history.csv line 3"), "{err}");
    assert!(err.contains("two minutes"), "{err}");

    std::fs::write(&path, "queued_at,duration_s,label\n1700000000,120,linux\n").unwrap();
    let good = trace::from_csv(&path).unwrap();
    assert_eq!(good.jobs.len(), 1);
    assert_eq!(good.labels, ["linux"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_real_histories_load_in_place() {
    let dir = sim::default_trace_dir();
    let names = ["autoware".to_string(), "bitcoin".to_string()];
    let traces = sim::load_traces(&names, 0, &dir).unwrap();
    assert_eq!(traces[0].jobs.len(), 470, "every Autoware run");
    assert_eq!(traces[1].labels, ["linux", "macos", "windows"]);
    assert!(traces[1].jobs.len() > 1_000);
}
