//! Shared helpers for the integration tests: process checks, bounded waiting, log capture, and
//! re-running the current test binary as a helper process.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Logs from the crates under test, at `RUST_LOG` (default `info` for longshore), to the test's
/// captured output. Safe to call from every test.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("longshore=info,longshore_farm=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// True while `pid` is a live process. A zombie (state `Z`: dead, waiting for a reaper that a
/// container's PID 1 may never be) counts as gone: it runs nothing and holds no socket.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(end) => !matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async twin of [`wait_until`], for conditions that call the network.
pub async fn wait_until_async<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A command that re-runs exactly one test of the current test binary (`--exact`, output not
/// captured) with `env_flag=1`, so a test can act as a helper process for another test.
pub fn rerun_test_as_helper(test_name: &str, env_flag: &str) -> std::io::Result<Command> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args([test_name, "--exact", "--nocapture", "--include-ignored", "--test-threads=1"])
        .env(env_flag, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(command)
}

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv with moto and the AWS CLI, as the harness finds it.
pub fn venv_dir() -> PathBuf {
    longshore_farm::moto::venv_dir()
}
