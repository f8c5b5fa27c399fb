//! Measures what the booter costs per connected agent: 1,000 instances launched into moto, one
//! node each in a Jenkins simulator, boot delay 0; the booter's process RSS (`VmRSS` of
//! `/proc/self/status`) before it starts and once every agent is connected.
//!
//! The simulator runs in a child process (this example re-run with `sim-child`), so the
//! number is the booter's own: its tasks, sockets, buffers and state, not the master's side.
//!
//! ```text
//! cargo build --workspace --all-targets      # the workspace build: no SDK recompile
//! LONGSHORE_VENV=$PWD/.venv AWS_EC2_METADATA_DISABLED=true \
//!   target/debug/examples/booter_memory [AGENTS=1000] [POLL_SECONDS=2]
//! ```
//!
//! With a long poll interval the booter lists the instances once, so the delta is the agents'
//! own cost; with the default 2 s it also holds the heap of parsing a 1,000-instance
//! `DescribeInstances` answer every tick.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use longshore::domain::render::{AgentBootParams, agent_user_data};
use longshore_farm::booter::{Booter, BooterConfig};
use longshore_farm::jenkins::{SimConfig, Simulator};
use longshore_farm::moto::{MotoServer, spawn_tied_to_process};

const STACK: &str = "mem-farm";
const BATCH: i32 = 100;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("sim-child") {
        return runtime.block_on(sim_child());
    }
    let agents: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let poll_secs: u64 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(2);
    runtime.block_on(measure(agents, Duration::from_secs(poll_secs)))
}

/// The simulator side: prints its URL, creates one node per name read from stdin and prints
/// its secret, then serves until stdin closes.
async fn sim_child() -> Result<(), Error> {
    let running = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse()?).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "URL {}", running.url())?;
    out.flush()?;
    let mut lines = BufReader::new(std::io::stdin()).lines();
    while let Some(line) = lines.next().transpose()? {
        let name = line.trim();
        if name == "END" {
            break;
        }
        running.sim().create_agent(name, "docker", 1)?;
        let secret = running.sim().agent_secret(name).ok_or("no secret")?;
        writeln!(out, "SECRET {name} {secret}")?;
        out.flush()?;
    }
    drop(out);
    // Serve until the parent closes our stdin (or dies: PDEATHSIG).
    tokio::task::spawn_blocking(move || for _ in lines {}).await?;
    running.shutdown().await;
    Ok(())
}

fn vm_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn measure(agents: usize, poll_interval: Duration) -> Result<(), Error> {
    let moto = MotoServer::start()?;
    let sdk = moto.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);

    let mut sim_command = Command::new(std::env::current_exe()?);
    sim_command
        .arg("sim-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = spawn_tied_to_process(sim_command)?;
    let mut to_sim = child.stdin.take().ok_or("no stdin")?;
    let mut from_sim = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let url = from_sim
        .next()
        .transpose()?
        .and_then(|l| l.strip_prefix("URL ").map(str::to_string))
        .ok_or("simulator printed no URL")?;

    let user_data = base64_encode(agent_user_data(&AgentBootParams {
        region: "us-east-1".into(),
        stack_name: STACK.into(),
    }));
    let started = Instant::now();
    let mut ids = Vec::new();
    while ids.len() < agents {
        let n = BATCH.min((agents - ids.len()) as i32);
        let out = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
            .min_count(n)
            .max_count(n)
            .user_data(&user_data)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(tag("longshore:stack", STACK))
                    .tags(tag("longshore:master", "master-a"))
                    .tags(tag("longshore:master-url", &url))
                    .tags(tag("longshore:label", "docker"))
                    .build(),
            )
            .send()
            .await?;
        ids.extend(
            out.instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string)),
        );
    }
    for id in &ids {
        writeln!(to_sim, "{id}")?;
    }
    writeln!(to_sim, "END")?;
    to_sim.flush()?;
    for _ in &ids {
        let line = from_sim
            .next()
            .transpose()?
            .ok_or("simulator ended early")?;
        let mut parts = line.splitn(3, ' ');
        let (Some("SECRET"), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("unexpected line from the simulator: {line}").into());
        };
        ssm.put_parameter()
            .name(format!("/longshore/{STACK}/agents/{name}"))
            .value(secret)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await?;
    }
    eprintln!(
        "{} instances, nodes and secrets ready in {:.1?}",
        ids.len(),
        started.elapsed()
    );

    let mut config = BooterConfig::new(STACK);
    config.boot_delay = Duration::ZERO;
    config.poll_interval = poll_interval;
    config.secret_poll = Duration::from_millis(200);
    config.reconnect_unit = Duration::from_millis(200);
    let booter = Booter::new(&sdk, config);
    let before = vm_rss_kb();
    let booting = Instant::now();
    let handle = booter.spawn();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = handle.stats();
        if stats.connected >= ids.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} connected: {stats:?}",
                stats.connected,
                ids.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let connected_after = booting.elapsed();
    // Let allocations settle (boot-phase buffers freed, pings answered) and read again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = vm_rss_kb();
    let stats = handle.stats();
    println!(
        "agents={} connected={} boot_time={:.1?} rss_before_kb={} rss_after_kb={} delta_kb={} kb_per_agent={:.1}",
        ids.len(),
        stats.connected,
        connected_after,
        before,
        after,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / ids.len() as f64
    );
    handle.shutdown().await;
    drop(to_sim);
    let _ = child.wait();
    drop(moto);
    Ok(())
}

fn tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

fn base64_encode(text: String) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
