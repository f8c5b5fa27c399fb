//! `longshore-farm footprint` (in `make bench`): what each Lambda costs to start and to run.
//!
//! Each function binary of a build profile (`release` in the bench) runs alone under the
//! Lambda runtime emulator (`cargo lambda watch`, [`crate::lambda`]) against a private moto and
//! a simulated master, and gets the event it exists for, doing its real work:
//! - queue-scaler: the EventBridge schedule event; one full tick (SSM, Secrets Manager, the
//!   DynamoDB lease, the master's queue and nodes, DescribeInstances), nothing to launch;
//! - recovery: the schedule event; its drain re-check scans its state table;
//! - config-resolver: a custom resource Create on real resources; it resolves them, writes the
//!   rendered configuration to SSM and PUTs SUCCESS to the ResponseURL.
//!
//! Per function it records the init (spawn → first poll for an event), the cold start (spawn →
//! first invocation answered, the figure issue 9 sets a goal for), a second, warm invocation of
//! the same event (so the cold start's share of AWS round trips to moto can be told from the
//! start-up itself), the peak RSS (`VmHWM`) and the binary's size. moto answers in
//! milliseconds where AWS takes tens of them, so the handlers' part is a floor, not AWS's
//! figure. Written to `lambda.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::put;
use serde::Serialize;
use serde_json::{Value, json};

use crate::chaos::custom_resource;
use crate::demo::fleet::demo_fleet;
use crate::jenkins::{SimConfig, Simulator};
use crate::lambda::{FunctionSpec, Invocation, LambdaFarm, peak_rss_kib, profile_binary_path};
use crate::moto::MotoServer;
use crate::stack;

/// The stack name the measured functions are configured with.
const STACK: &str = "footprint";
const FLEET_PARAMETER: &str = "/longshore/footprint/config/fleet";
const JENKINS_SECRET: &str = "footprint/jenkins";
const TOKEN: &str = "footprint-token";

/// Settings of a footprint run.
#[derive(Debug, Clone, clap::Args)]
pub struct FootprintOptions {
    /// The build profile whose binaries are measured (`target/<profile>/<function>`).
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// Where lambda.json and the functions' logs go.
    #[arg(long, default_value = "out/bench")]
    pub out: PathBuf,
}

/// One function's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub function: String,
    pub profile: String,
    /// Spawn → first poll for an event.
    pub init_ms: f64,
    /// Spawn → first invocation answered.
    pub cold_start_ms: f64,
    /// The same event again, on the warm process.
    pub warm_invocation_ms: f64,
    pub peak_rss_mib: f64,
    pub binary_mib: f64,
    /// What the function answered (so a figure from a failed invocation is seen as such).
    pub answer: String,
    /// Both invocations answered without an error.
    pub ok: bool,
    /// The process's log lines (written beside lambda.json, `<function>.log`).
    #[serde(skip)]
    pub log: String,
}

/// Why the measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error("moto: {0}")]
    Moto(#[from] crate::moto::MotoError),
    #[error("setting up what the functions read: {0}")]
    Setup(String),
    #[error("{function}: {detail}")]
    Function { function: String, detail: String },
}

/// Measures every function of `profile`, one at a time.
pub async fn measure(profile: &str) -> Result<Vec<Footprint>, FootprintError> {
    let moto = MotoServer::start()?;
    let sdk = moto.sdk_config().await;
    let world = World::prepare(&moto, &sdk).await?;
    let mut rows = Vec::new();
    for (spec, event) in world.cases(&moto.endpoint_url()) {
        let binary = profile_binary_path(profile, &spec.name);
        let spec = spec.binary(binary).timeout(Duration::from_secs(60));
        rows.push(measure_one(profile, spec, &event).await?);
    }
    world.master.shutdown().await;
    Ok(rows)
}

/// What the functions read, in moto and on a simulated master.
struct World {
    master: crate::jenkins::RunningSim,
    resolver_properties: Value,
    response_url: String,
}

impl World {
    async fn prepare(
        moto: &MotoServer,
        sdk: &aws_config::SdkConfig,
    ) -> Result<World, FootprintError> {
        let setup = |e: String| FootprintError::Setup(e);
        let network = moto.prepare_network().await?;
        let template = stack::create_agent_launch_template(sdk, STACK)
            .await
            .map_err(setup)?;
        let master = Simulator::start(
            SimConfig {
                name: "master-a".to_string(),
                token: TOKEN.to_string(),
                ..SimConfig::default()
            },
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .map_err(|e| setup(e.to_string()))?;
        let fleet = demo_fleet(
            STACK,
            &template.id,
            &network.subnets,
            &["master-a"],
            Duration::from_secs(120),
        );
        stack::put_fleet_config(sdk, FLEET_PARAMETER, &fleet)
            .await
            .map_err(setup)?;
        stack::create_lease_table(sdk, "footprint-lease")
            .await
            .map_err(setup)?;
        stack::create_lease_table(sdk, "footprint-state")
            .await
            .map_err(setup)?;
        stack::create_jenkins_secret(sdk, JENKINS_SECRET, "admin", TOKEN)
            .await
            .map_err(setup)?;
        let resources = custom_resource::resources(sdk, &network, &template.id, STACK)
            .await
            .map_err(setup)?;
        Ok(World {
            master,
            resolver_properties: custom_resource::good_properties(&resources),
            response_url: answer_cloudformation().await.map_err(setup)?,
        })
    }

    /// Each function with its settings and the event it is measured on.
    fn cases(&self, moto_endpoint: &str) -> Vec<(FunctionSpec, Value)> {
        let masters = format!("master-a={}", self.master.url());
        let schedule = schedule_event();
        let scaler = FunctionSpec::new("queue-scaler")
            .env("LONGSHORE_STACK", STACK)
            .env("FLEET_CONFIG_PARAMETER", FLEET_PARAMETER)
            .env("LEASE_TABLE", "footprint-lease")
            .env("JENKINS_SECRET", JENKINS_SECRET)
            .env("LONGSHORE_MASTERS", &masters)
            // One tick per invocation: the budget is spent as soon as the first tick ends.
            .env("INVOCATION_BUDGET", "1ms")
            .env("POLL_INTERVAL", "1s");
        let recovery = FunctionSpec::new("recovery")
            .env("LONGSHORE_STACK", STACK)
            .env("STATE_TABLE", "footprint-state")
            .env(
                "ALERT_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:footprint",
            )
            .env("JENKINS_SECRET", JENKINS_SECRET)
            .env("LONGSHORE_ECS_CLUSTER", "footprint-masters")
            .env("LONGSHORE_MASTER_SERVICES", "master-a")
            .env("LONGSHORE_MASTER_ASG", "footprint-master-hosts")
            .env("LONGSHORE_MASTERS", &masters);
        let resolver = FunctionSpec::new("config-resolver").env("LONGSHORE_STACK", STACK);
        let create = json!({
            "RequestType": "Create",
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
            "ResponseURL": self.response_url,
            "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/c0ffee00-0000-0000-0000-000000000000"),
            "RequestId": "footprint-create",
            "LogicalResourceId": "JenkinsConfig",
            "ResourceType": "Custom::JenkinsConfig",
            "ResourceProperties": self.resolver_properties,
        });
        [
            (scaler, schedule.clone()),
            (recovery, schedule),
            (resolver, create),
        ]
        .into_iter()
        .map(|(spec, event)| (spec.env("AWS_ENDPOINT_URL", moto_endpoint), event))
        .collect()
    }
}

/// Starts one function, invokes it twice with `event` and reads its figures.
async fn measure_one(
    profile: &str,
    spec: FunctionSpec,
    event: &Value,
) -> Result<Footprint, FootprintError> {
    let function = spec.name.clone();
    let failed = |detail: String| FootprintError::Function {
        function: function.clone(),
        detail,
    };
    let binary_bytes = std::fs::metadata(spec.binary_path())
        .map(|m| m.len())
        .map_err(|e| failed(format!("{}: {e}", spec.binary_path().display())))?;
    let farm = LambdaFarm::start(&[spec])
        .await
        .map_err(|e| failed(e.to_string()))?;
    let first = farm
        .invoke(&function, event)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let warm_started = Instant::now();
    let second = farm
        .invoke(&function, event)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let warm = warm_started.elapsed();
    let pid = farm
        .pid(&function)
        .ok_or_else(|| failed("no process".into()))?;
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(Footprint {
        log: farm.logs(&function),
        init_ms: ms(farm.ready_after(&function)),
        cold_start_ms: ms(farm.cold_start(&function)),
        warm_invocation_ms: ms(Some(warm)),
        peak_rss_mib: peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0,
        binary_mib: binary_bytes as f64 / (1024.0 * 1024.0),
        ok: is_ok(&first) && is_ok(&second),
        answer: summary(&first),
        profile: profile.to_string(),
        function,
    })
}

/// An answer without an error. config-resolver answers CloudFormation itself; its own
/// result says whether that answer was SUCCESS.
fn is_ok(answer: &Invocation) -> bool {
    match answer {
        Invocation::Ok(value) => value.get("Status").is_none_or(|s| s == "SUCCESS"),
        Invocation::Failed { .. } => false,
    }
}

fn summary(answer: &Invocation) -> String {
    let text = match answer {
        Invocation::Ok(value) => format!("ok {value}"),
        Invocation::Failed {
            error_type,
            error_message,
        } => format!("error {error_type}: {error_message}"),
    };
    text.chars().take(160).collect()
}

/// The EventBridge schedule event (the shape of ../shared/fixtures' sample).
fn schedule_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2015-10-08T16:53:06Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/footprint-scaler"],
        "detail": {}
    })
}

/// A local stand-in for CloudFormation's pre-signed ResponseURL: answers every PUT 200.
async fn answer_cloudformation() -> Result<String, String> {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("response listener: {e}"))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new().route("/{*path}", put(|| async { StatusCode::OK }));
    tokio::spawn(async move { axum::serve(socket, app).await });
    Ok(format!("http://{addr}/cloudformation-response"))
}

/// The table `footprint` prints.
pub fn table(rows: &[Footprint]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:>11} {:>10} {:>10} {:>8}  answer\n",
        "function", "init ms", "cold start", "warm ms", "peak RSS", "binary"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:>8.1} {:>8.1} ms {:>10.1} {:>6.1} MiB {:>4.1} MiB  {}\n",
            r.function,
            r.init_ms,
            r.cold_start_ms,
            r.warm_invocation_ms,
            r.peak_rss_mib,
            r.binary_mib,
            if r.ok { "ok" } else { &r.answer }
        ));
    }
    out
}

/// `longshore-farm footprint`: measures, prints, writes `lambda.json`; fails when a function
/// could not be measured or answered with an error.
pub async fn run_cli(options: FootprintOptions) -> ExitCode {
    let rows = match measure(&options.profile).await {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("footprint: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Lambda footprint ({} build, under cargo lambda watch):",
        options.profile
    );
    print!("{}", table(&rows));
    if let Err(err) = write_json(&options.out, &rows) {
        eprintln!("footprint: {err}");
        return ExitCode::FAILURE;
    }
    if rows.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        eprintln!("footprint: a function answered with an error (see the table)");
        ExitCode::FAILURE
    }
}

fn write_json(dir: &Path, rows: &[Footprint]) -> Result<(), String> {
    let path = dir.join("lambda.json");
    let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    for row in rows {
        let log = dir.join(format!("{}.log", row.function));
        std::fs::write(&log, &row.log)
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    }
    println!("wrote {} and each function's log beside it", path.display());
    Ok(())
}
