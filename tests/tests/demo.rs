//! `make demo` as a test: the whole farm (moto, the proxy, two simulated masters, the real
//! queue-scaler and recovery binaries under the Lambda harness, booting agents) replays its
//! trace with the four faults, and must keep every invariant it reports. The Lambdas' logs are
//! searched for the run's fresh API token and every agent secret the masters handed out.

use std::time::Duration;

use longshore_farm::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_keeps_its_invariants_and_its_logs_hold_no_secret() {
    longshore_tests::init_tracing();
    let out = std::env::temp_dir().join(format!("longshore-demo-test-{}", std::process::id()));
    let options = DemoOptions {
        speed: 10.0,
        seed: 7,
        jobs: 40,
        boot_delay_secs: 30,
        idle_secs: 120,
        deadline_secs: 300,
        no_faults: false,
        out: out.clone(),
    };
    let report = tokio::time::timeout(Duration::from_secs(400), run(options))
        .await
        .expect("the demo ends within its deadline")
        .expect("the farm starts");
    assert!(report.invariants_hold(), "{report:#?}");
    assert!(
        report.secrets_in_logs.is_empty(),
        "{:?}",
        report.secrets_in_logs
    );
    // The token and at least one agent secret per launched agent were looked for.
    assert!(
        report.secrets_looked_for > report.agents_launched,
        "{} secrets looked for, {} agents launched",
        report.secrets_looked_for,
        report.agents_launched
    );
    assert_eq!(report.faults.len(), 4, "{:?}", report.faults);
    for file in [
        "summary.json",
        "timeline.png",
        "queue-scaler.log",
        "recovery.log",
    ] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let _ = std::fs::remove_dir_all(&out);
}
