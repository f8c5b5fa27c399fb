//! Shared helpers for the integration tests: process checks, bounded waiting, log capture,
//! re-running the current test binary as a helper process, and launching agent instances into
//! moto the way the scaler does. This is test code: a helper that cannot do its job panics with
//! the reason, which fails the test that called it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Logs from the crates under test, at `RUST_LOG` (default `info` for longshore), to the test's
/// captured output. Safe to call from every test.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("longshore=info,longshore_farm=info")
        });
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
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
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

/// A scratch directory under the system temp dir, removed (best effort) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory named after `prefix`, this process and a counter.
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a test agent instance carries: its master and the rendered user data (or none, or
/// anything else for the malformed cases).
#[derive(Debug, Clone)]
pub struct AgentLaunch<'a> {
    /// `longshore:stack`.
    pub stack: &'a str,
    /// `longshore:master`.
    pub master: &'a str,
    /// `longshore:master-url`.
    pub master_url: &'a str,
    /// `longshore:label`.
    pub label: &'a str,
    /// User data text (base64-encoded here, as the EC2 API wants it); `None` launches without.
    pub user_data: Option<&'a [u8]>,
    /// How many instances (RunInstances MinCount = MaxCount).
    pub count: i32,
}

/// Launches agent instances into moto the way the scaler does (tags on the instance), and
/// returns their ids.
pub async fn launch_agents(ec2: &aws_sdk_ec2::Client, launch: &AgentLaunch<'_>) -> Vec<String> {
    use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
    use base64::Engine as _;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let mut call = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::T3Medium)
        .min_count(launch.count)
        .max_count(launch.count)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(tag("longshore:stack", launch.stack))
                .tags(tag("longshore:role", "agent"))
                .tags(tag("longshore:master", launch.master))
                .tags(tag("longshore:master-url", launch.master_url))
                .tags(tag("longshore:label", launch.label))
                .build(),
        );
    if let Some(data) = launch.user_data {
        call = call.user_data(base64::engine::general_purpose::STANDARD.encode(data));
    }
    let out = call.send().await.expect("RunInstances");
    out.instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// Writes an agent's secret where the scaler does (`/longshore/<stack>/agents/<id>`).
pub async fn put_agent_secret(
    ssm: &aws_sdk_ssm::Client,
    stack: &str,
    instance_id: &str,
    secret: &str,
) {
    ssm.put_parameter()
        .name(format!("/longshore/{stack}/agents/{instance_id}"))
        .value(secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("PutParameter");
}

/// The stack's pending or running instances in moto, found by the `longshore:stack` tag.
pub async fn live_instances(
    ec2: &aws_sdk_ec2::Client,
    stack: &str,
) -> Vec<aws_sdk_ec2::types::Instance> {
    use aws_sdk_ec2::types::{Filter, InstanceStateName};
    let out = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!(
                    "tag:{}",
                    longshore::adapters::aws::ec2::tags::STACK
                ))
                .values(stack)
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances against moto");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .filter(|i| {
            matches!(
                i.state().and_then(|s| s.name()),
                Some(InstanceStateName::Pending | InstanceStateName::Running)
            )
        })
        .collect()
}
