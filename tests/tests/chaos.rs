//! The chaos harness's CI set: a few fixed seeds of `make chaos` (farm/src/chaos), each a
//! random mix of Jenkins, AWS, agent, lease and cut-off faults on the fast local farm, with
//! every invariant checked after the faults stop. `make chaos RUNS=… SEED=…` runs more.

use longshore_farm::chaos::run_seeds;

/// Seeds whose scripts cover every fault family between them (see the assertions below).
const CI_SEEDS: [u64; 3] = [1, 3, 5];

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
