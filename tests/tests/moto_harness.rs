//! The moto harness keeps tests isolated and never leaks a server: two servers share nothing,
//! `reset` empties one, and the process is gone after drop, after a panic, and after the owning
//! test process is SIGKILLed (PDEATHSIG through the process-lifetime spawner thread).

use std::io::{BufRead, BufReader};
use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;
use longshore_farm::moto::{MotoError, MotoServer};
use longshore_tests::{pid_alive, rerun_test_as_helper, wait_until};

const HELPER_FLAG: &str = "LONGSHORE_MOTO_HELPER";

async fn put(server: &MotoServer, name: &str, value: &str) {
    let ssm = aws_sdk_ssm::Client::new(&server.sdk_config().await);
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter");
}

async fn get(server: &MotoServer, name: &str) -> Option<String> {
    let ssm = aws_sdk_ssm::Client::new(&server.sdk_config().await);
    match ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(out) => out.parameter().and_then(|p| p.value()).map(str::to_string),
        Err(e) => {
            let service = e.into_service_error();
            assert!(
                service.is_parameter_not_found(),
                "unexpected error: {service:?}"
            );
            None
        }
    }
}

#[tokio::test]
async fn two_servers_are_independent() {
    let a = MotoServer::start().expect("start a");
    let b = MotoServer::start().expect("start b");
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    put(&a, "/longshore/t/agents/i-a", "only-in-a").await;
    assert_eq!(
        get(&a, "/longshore/t/agents/i-a").await.as_deref(),
        Some("only-in-a")
    );
    assert_eq!(get(&b, "/longshore/t/agents/i-a").await, None);
}

#[tokio::test]
async fn reset_empties_state() {
    let server = MotoServer::start().expect("start");
    put(&server, "/longshore/t/agents/i-1", "s3cret").await;
    assert!(get(&server, "/longshore/t/agents/i-1").await.is_some());
    server.reset().await.expect("reset");
    assert_eq!(get(&server, "/longshore/t/agents/i-1").await, None);
}

#[tokio::test]
async fn prepare_network_makes_a_dns_vpc_with_two_subnets_in_two_zones() {
    let server = MotoServer::start().expect("start");
    let net = server.prepare_network().await.expect("network");
    assert_eq!(net.subnets.len(), 2);
    assert_ne!(
        net.subnets[0].availability_zone,
        net.subnets[1].availability_zone
    );
    let ec2 = aws_sdk_ec2::Client::new(&server.sdk_config().await);
    let attr = ec2
        .describe_vpc_attribute()
        .vpc_id(&net.vpc_id)
        .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .expect("DescribeVpcAttribute");
    assert_eq!(
        attr.enable_dns_hostnames().and_then(|v| v.value()),
        Some(true)
    );
}

#[test]
fn server_is_gone_after_drop() {
    let server = MotoServer::start().expect("start");
    let pid = server.pid();
    let port = server.port();
    assert!(pid_alive(pid));
    drop(server);
    assert!(!pid_alive(pid), "moto pid {pid} still alive after drop");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
}

#[test]
fn server_is_gone_after_a_panic_unwinds() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let server = MotoServer::start().expect("start");
        tx.send(server.pid()).expect("send pid");
        panic!("test body fails while the server is up");
    });
    assert!(outcome.is_err());
    let pid = rx.recv().expect("pid");
    assert!(!pid_alive(pid), "moto pid {pid} survived the unwinding");
}

/// Not a test on its own: run by `server_dies_with_its_killed_owner` in a child process. Starts
/// a server, prints its PID and waits (bounded) to be SIGKILLed.
#[test]
fn helper_hold_moto_until_killed() {
    if std::env::var_os(HELPER_FLAG).is_none() {
        return;
    }
    let server = MotoServer::start().expect("start");
    // libtest prints "test <name> ... " on the same line first: the reader splits on the marker.
    println!("LONGSHORE_MOTO_PID={}", server.pid());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn server_dies_with_its_killed_owner() {
    let mut child = rerun_test_as_helper("helper_hold_moto_until_killed", HELPER_FLAG)
        .expect("current exe")
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("piped stdout");
    // Read the helper's PID line on a thread so a broken helper cannot hang this test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, pid)) = line.split_once("LONGSHORE_MOTO_PID=") {
                let _ = tx.send(pid.trim().parse::<u32>().ok());
                return;
            }
        }
        let _ = tx.send(None);
    });
    let moto_pid = rx.recv_timeout(Duration::from_secs(60));
    // SIGKILL: no Drop, no unwinding, no atexit in the owner.
    child.kill().expect("SIGKILL the helper");
    let status = child.wait().expect("reap the helper");
    let moto_pid = moto_pid
        .expect("helper printed no PID in time")
        .expect("helper could not start moto");
    assert!(!status.success());
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(moto_pid)),
        "moto pid {moto_pid} outlived its SIGKILLed owner"
    );
}

/// Not a test on its own: run by `missing_venv_names_the_path_and_make_setup` with a bogus
/// LONGSHORE_VENV (set only in that child process: changing the environment in this
/// multi-threaded test binary would race the other tests).
#[test]
fn helper_start_without_venv() {
    if std::env::var_os("LONGSHORE_NO_VENV_HELPER").is_none() {
        return;
    }
    match MotoServer::start() {
        Err(e @ MotoError::NotInstalled { .. }) => println!("LONGSHORE_ERROR={e}"),
        other => println!("LONGSHORE_ERROR=unexpected {other:?}"),
    }
}

#[test]
fn missing_venv_names_the_path_and_make_setup() {
    let output = rerun_test_as_helper("helper_start_without_venv", "LONGSHORE_NO_VENV_HELPER")
        .expect("current exe")
        .env("LONGSHORE_VENV", "/nonexistent/longshore-venv")
        .output()
        .expect("run helper");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("LONGSHORE_ERROR=").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("no error line in {stdout}"));
    assert!(
        line.contains("/nonexistent/longshore-venv/bin/moto_server"),
        "{line}"
    );
    assert!(line.contains("make setup"), "{line}");
}
