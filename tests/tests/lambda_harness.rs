//! The Lambda harness runs the real function binaries under `cargo lambda watch
//! --only-lambda-apis` and invokes them with real event JSON: the runtime contract (a handler
//! error arrives as lambda_runtime's `Diagnostic`), an init failure reported instead of a hang,
//! a warm process across invocations, and no process left behind after drop. Plus an ignored
//! measurement of each function's cold start and peak RSS (debug build).
//!
//! Needs the function binaries: `cargo build --workspace --all-targets` first (`make test` does).

use std::time::{Duration, Instant};

use longshore_farm::lambda::{
    FunctionSpec, Invocation, LambdaError, LambdaFarm, binary_path, peak_rss_kib,
};
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

/// Cold start (spawn → first invocation answered) and peak RSS (VmHWM) of each function,
/// debug build, under the emulator, against a private moto server. Run with:
/// `cargo test --workspace --all-targets lambda_footprint -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement, not a check: prints cold start and peak RSS per function"]
async fn lambda_footprint() {
    init_tracing();
    let moto = longshore_farm::moto::MotoServer::start().expect("moto");
    let endpoint = moto.endpoint_url();
    longshore_farm::stack::create_lease_table(&moto.sdk_config().await, "footprint-state")
        .await
        .expect("recovery's state table");
    let cfn_response = answer_cloudformation_responses().await;
    let mut create = fixture("cloudformation-custom-resource/rust-runtime-create-request.json");
    create["ResponseURL"] = json!(cfn_response);
    // Well-formed properties naming resources moto does not have: the resolver looks them up
    // (real SDK calls within its deadline) and answers FAILED with what is missing.
    create["ResourceProperties"] = json!({
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
        "LaunchTemplate": "lt-0123456789abcdef0",
        "Subnets": ["subnet-0123456789abcdef0"],
        "SecurityGroups": ["sg-0123456789abcdef0"],
        "InstanceProfile": "ci-agent",
        "Masters": [{"Name": "master-a"}],
        "JenkinsUrl": "https://jenkins.example.com/",
        "MaxAgents": "20",
        "Labels": [{"Name": "small", "InstanceTypes": ["t3.micro"], "MaxPerMaster": "3"}]
    });
    let cases: Vec<(FunctionSpec, Value)> = vec![
        (
            // The schedule's drain re-check: a real Scan of its state table in moto.
            FunctionSpec::new("recovery")
                .env("LONGSHORE_STACK", "footprint")
                .env("STATE_TABLE", "footprint-state")
                .env(
                    "ALERT_TOPIC_ARN",
                    "arn:aws:sns:us-east-1:123456789012:footprint",
                )
                .env("JENKINS_SECRET", "footprint-jenkins")
                .env("LONGSHORE_ECS_CLUSTER", "footprint-masters")
                .env("LONGSHORE_MASTER_SERVICES", "m1")
                .env("LONGSHORE_MASTER_ASG", "footprint-master-hosts")
                .env("LONGSHORE_MASTERS", "m1=http://127.0.0.1:9/"),
            scheduled_event(),
        ),
        (
            FunctionSpec::new("config-resolver").env("LONGSHORE_STACK", "footprint"),
            create,
        ),
        (
            FunctionSpec::new("queue-scaler")
                .env("LONGSHORE_STACK", "footprint")
                .env("DRY_RUN", "true")
                .env("LONGSHORE_MASTERS", "m1=http://127.0.0.1:9/")
                .env("FLEET_CONFIG_PARAMETER", "/longshore/footprint/fleet")
                .env("LEASE_TABLE", "footprint-lease")
                .env("JENKINS_SECRET", "footprint-jenkins")
                .env("INVOCATION_BUDGET", "2s")
                .env("POLL_INTERVAL", "1s"),
            scheduled_event(),
        ),
    ];
    let mut rows = Vec::new();
    for (spec, event) in cases {
        let spec = spec
            .env("AWS_ENDPOINT_URL", &endpoint)
            .timeout(Duration::from_secs(60));
        let name = spec.name.clone();
        let farm = match LambdaFarm::start(&[spec]).await {
            Ok(farm) => farm,
            Err(e) => {
                rows.push(format!("{name:<16} did not start: {e}"));
                continue;
            }
        };
        let answer = farm.invoke(&name, &event).await;
        let pid = farm.pid(&name).expect("pid");
        let summary = match &answer {
            Ok(Invocation::Ok(v)) => format!("ok {v}"),
            Ok(Invocation::Failed { error_type, .. }) => format!("error {error_type}"),
            Err(e) => format!("harness error: {e}"),
        };
        rows.push(format!(
            "{name:<16} init {:>6} ms  cold start {:>6} ms  peak RSS {:>7} KiB  binary {:>4} MB  ({summary})",
            farm.ready_after(&name).map_or(0, |d| d.as_millis()),
            farm.cold_start(&name).map_or(0, |d| d.as_millis()),
            peak_rss_kib(pid).unwrap_or(0),
            std::fs::metadata(binary_path(&name)).map_or(0, |m| m.len() / 1_000_000),
        ));
    }
    println!("\nLambda footprint (debug build, cargo lambda watch --only-lambda-apis):");
    for row in &rows {
        println!("  {row}");
    }
    assert!(rows.iter().all(|r| r.contains("cold start")), "{rows:#?}");
}

/// A local stand-in for CloudFormation's pre-signed ResponseURL: answers every request 200.
async fn answer_cloudformation_responses() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    format!("http://{addr}/cfn-response")
}
