//! The Lambda harness runs the real function binaries under `cargo lambda watch
//! --only-lambda-apis` and invokes them with real event JSON: the runtime contract (a handler
//! error arrives as lambda_runtime's `Diagnostic`), an init failure reported instead of a hang,
//! a warm process across invocations, and no process left behind after drop. Plus the bench's
//! footprint measurement (cold start, peak RSS, size) run on the debug build.
//!
//! Needs the function binaries: `cargo build --workspace --all-targets` first (`make test` does).

use std::time::{Duration, Instant};

use longshore_farm::lambda::{FunctionSpec, Invocation, LambdaError, LambdaFarm};
use longshore_tests::{init_tracing, pid_alive, rerun_test_as_helper, wait_until, workspace_root};
use serde_json::{Value, json};

const HELPER_FLAG: &str = "LONGSHORE_LAMBDA_HELPER";

/// An outer bound on every test: the harness bounds each wait, this catches a harness bug.
const TEST_LIMIT: Duration = Duration::from_secs(120);

fn fixture(relative: &str) -> Value {
    let path = workspace_root()
        .join("../shared/fixtures/aws")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn scheduled_event() -> Value {
    fixture("scheduled-event/rust-runtime-eventbridge-schedule.json")
}

/// recovery with the settings it needs and AWS at a closed port: the scheduled event makes
/// it scan its state table, which fails at once (one attempt), so it carries the error-path
/// tests.
fn recovery() -> FunctionSpec {
    FunctionSpec::new("recovery")
        .env("LONGSHORE_STACK", "test")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("STATE_TABLE", "test-state")
        .env(
            "ALERT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:test-alerts",
        )
        .env("JENKINS_SECRET", "test/jenkins")
        .env("LONGSHORE_ECS_CLUSTER", "test-masters")
        .env("LONGSHORE_MASTER_SERVICES", "master-a")
        .env("LONGSHORE_MASTER_ASG", "test-master-hosts")
        .timeout(Duration::from_secs(20))
}

async fn bounded<F: std::future::Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test exceeded its outer time limit")
}

#[tokio::test]
async fn a_handler_error_arrives_as_the_runtime_diagnostic() {
    init_tracing();
    bounded(async {
        let farm = LambdaFarm::start(&[recovery()]).await.expect("start");
        let answer = farm
            .invoke("recovery", &scheduled_event())
            .await
            .expect("invoke");
        match answer {
            Invocation::Failed {
                error_type,
                error_message,
            } => {
                assert_eq!(error_type, "AwsError", "{error_message}");
                assert!(error_message.contains("Scan"), "{error_message}");
            }
            other => panic!("expected AwsError, got {other:?}"),
        }
        let logs = farm.logs("recovery");
        assert!(logs.contains("cold start"), "{logs}");
        assert!(logs.contains("\"stack\":\"test\""), "{logs}");
        assert!(farm.cold_start("recovery").is_some());
    })
    .await;
}

#[tokio::test]
async fn a_missing_setting_fails_the_start_and_names_itself() {
    init_tracing();
    bounded(async {
        let started = Instant::now();
        // No LONGSHORE_STACK (and the harness passes none of the test's own environment).
        let spec = FunctionSpec::new("recovery").timeout(Duration::from_secs(10));
        let err = LambdaFarm::start(&[spec])
            .await
            .expect_err("init must fail");
        let text = err.to_string();
        eprintln!("{text}");
        assert!(
            matches!(err, LambdaError::InitFailed { ref function, .. } if function == "recovery"),
            "{text}"
        );
        assert!(text.contains("LONGSHORE_STACK"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(70),
            "took {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn the_process_stays_warm_between_invocations() {
    init_tracing();
    bounded(async {
        let farm = LambdaFarm::start(&[recovery()]).await.expect("start");
        let pid = farm.pid("recovery").expect("pid");
        for round in 0..2 {
            let answer = farm
                .invoke("recovery", &scheduled_event())
                .await
                .unwrap_or_else(|e| panic!("invocation {round}: {e}"));
            assert!(
                matches!(answer, Invocation::Failed { ref error_type, .. } if error_type == "AwsError"),
                "invocation {round}: {answer:?}"
            );
        }
        // An event the function cannot read is skipped with its reason, not retried forever.
        let answer = farm
            .invoke("recovery", &json!({"not": "an EventBridge event"}))
            .await
            .expect("invoke");
        match answer {
            Invocation::Ok(payload) => {
                assert_eq!(payload["outcome"], "ignored", "{payload}");
                assert!(
                    payload["reason"].as_str().unwrap().contains("detail-type"),
                    "{payload}"
                );
            }
            other => panic!("expected a skip, got {other:?}"),
        }
        assert_eq!(farm.pid("recovery"), Some(pid), "same process");
        assert!(pid_alive(pid));
        let logs = farm.logs("recovery");
        assert_eq!(logs.matches("cold start").count(), 1, "{logs}");
        assert_eq!(logs.matches("action failed").count(), 2, "{logs}");
        assert_eq!(logs.matches("event skipped").count(), 1, "{logs}");
        // A name the farm does not run is an error at once, not a queued event.
        assert!(matches!(
            farm.invoke("queue-scaler", &scheduled_event()).await,
            Err(LambdaError::UnknownFunction(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn a_dead_function_is_reported_not_waited_for() {
    init_tracing();
    bounded(async {
        let farm = LambdaFarm::start(&[recovery()]).await.expect("start");
        let pid = farm.pid("recovery").expect("pid");
        let pid_t = libc::pid_t::try_from(pid).expect("pid fits");
        // SAFETY: kill(2) on the function process the farm started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid_t, libc::SIGKILL) }, 0);
        let started = Instant::now();
        let err = farm
            .invoke("recovery", &scheduled_event())
            .await
            .expect_err("the function is dead");
        assert!(
            matches!(err, LambdaError::Exited { ref function, .. } if function == "recovery"),
            "{err}"
        );
        // Well under the function's 20 s timeout: the exit is noticed, not waited out.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn no_process_is_left_after_drop() {
    init_tracing();
    bounded(async {
        let farm = LambdaFarm::start(&[recovery()]).await.expect("start");
        let function = farm.pid("recovery").expect("pid");
        let emulator = farm.emulator_pid();
        assert!(pid_alive(function) && pid_alive(emulator));
        drop(farm);
        assert!(
            wait_until(Duration::from_secs(5), || !pid_alive(function)
                && !pid_alive(emulator)),
            "function {function} or emulator {emulator} still runs"
        );
    })
    .await;
}

/// Not a test on its own: run by `processes_die_with_their_killed_owner` in a child process.
#[tokio::test]
async fn helper_hold_a_farm_until_killed() {
    if std::env::var_os(HELPER_FLAG).is_none() {
        return;
    }
    let farm = LambdaFarm::start(&[recovery()]).await.expect("start");
    // libtest prints "test <name> ... " on the same line first: the reader splits on the marker.
    println!(
        "LONGSHORE_LAMBDA_PIDS={},{}",
        farm.pid("recovery").expect("pid"),
        farm.emulator_pid()
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn processes_die_with_their_killed_owner() {
    use std::io::{BufRead, BufReader};
    let mut child = rerun_test_as_helper("helper_hold_a_farm_until_killed", HELPER_FLAG)
        .expect("current exe")
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("piped stdout");
    // Read the helper's PID line on a thread so a broken helper cannot hang this test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, pids)) = line.split_once("LONGSHORE_LAMBDA_PIDS=") {
                let pids: Option<Vec<u32>> =
                    pids.trim().split(',').map(|p| p.parse().ok()).collect();
                let _ = tx.send(pids);
                return;
            }
        }
        let _ = tx.send(None);
    });
    let pids = rx.recv_timeout(Duration::from_secs(90));
    // SIGKILL: no Drop, no unwinding in the owner; only PDEATHSIG can stop its children.
    child.kill().expect("SIGKILL the helper");
    let status = child.wait().expect("reap the helper");
    let pids = pids
        .expect("helper printed no PIDs in time")
        .expect("helper could not start the farm");
    assert!(!status.success());
    assert!(
        wait_until(Duration::from_secs(10), || pids
            .iter()
            .all(|&pid| !pid_alive(pid))),
        "{pids:?} outlived their SIGKILLed owner"
    );
}

#[tokio::test]
async fn a_missing_binary_says_how_to_build_it() {
    let err = LambdaFarm::start(&[FunctionSpec::new("no-such-function")])
        .await
        .expect_err("no binary");
    let text = err.to_string();
    assert!(matches!(err, LambdaError::BinaryMissing { .. }), "{text}");
    assert!(text.contains("cargo build --workspace"), "{text}");
}

/// The bench's footprint measurement on the debug build: every function gets its real event,
/// answers it without an error twice, and each figure is read (not a timing check: only that
/// the measurement measures something, in the order the phases happen).
/// `longshore-farm footprint --profile debug` prints the same table.
#[tokio::test]
async fn the_footprint_measures_every_function_on_its_real_work() {
    init_tracing();
    let rows = tokio::time::timeout(TEST_LIMIT, longshore_farm::footprint::measure("debug"))
        .await
        .expect("bounded")
        .expect("measured");
    let names: Vec<&str> = rows.iter().map(|r| r.function.as_str()).collect();
    assert_eq!(names, ["queue-scaler", "recovery", "config-resolver"]);
    for row in &rows {
        assert!(row.ok, "{row:?}");
        assert!(
            row.init_ms > 0.0 && row.cold_start_ms > row.init_ms,
            "{row:?}"
        );
        assert!(row.peak_rss_mib > 1.0 && row.binary_mib > 1.0, "{row:?}");
    }
    println!("{}", longshore_farm::footprint::table(&rows));
}
