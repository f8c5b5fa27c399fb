//! recovery Lambda: EventBridge handler that heals the farm: master task stops, master host drains,
//! lost or interrupted agents.
//!
//! `recovery explain EVENT.json` classifies one saved event offline and prints the result as
//! JSON (exit 0); an unreadable or non-JSON file exits 2. It never calls AWS. The stack's
//! identifiers come from LONGSHORE_ECS_CLUSTER, LONGSHORE_MASTER_SERVICES (comma list) and
//! LONGSHORE_MASTER_ASG; unset ones skip their check and are listed under `unchecked`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use longshore::config::{CommonConfig, Env, Settings};
use longshore::handlers::{self, events::EventBridgeEvent, recovery};
use longshore::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("explain") {
        std::process::exit(explain(&args[1..]));
    }
    telemetry::init();
    let config = CommonConfig::from_settings(&Settings::new(Env))?;
    tracing::info!(stack = %config.stack, dry_run = config.dry_run, "cold start");
    run(service_fn(
        |event: LambdaEvent<EventBridgeEvent>| async move {
            handlers::not_built_yet("recovery", &event.context.request_id)
        },
    ))
    .await
}

/// Runs `explain <file>` and returns the exit code.
fn explain(args: &[String]) -> i32 {
    let [path] = args else {
        eprintln!("usage: recovery explain EVENT.json");
        return 2;
    };
    let ctx = recovery::context_from(|key| std::env::var(key).ok());
    match recovery::explain(std::path::Path::new(path), &ctx) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(err) => {
            eprintln!("recovery explain: {err}");
            2
        }
    }
}
