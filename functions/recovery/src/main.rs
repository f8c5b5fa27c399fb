//! recovery Lambda: EventBridge handler that heals the farm: master task stops, master host drains,
//! lost or interrupted agents (shared/src/handlers/recovery.rs has the rules and settings).
//!
//! `recovery explain EVENT.json` classifies one saved event offline and prints the result as
//! JSON (exit 0); an unreadable or non-JSON file exits 2. It never calls AWS. The stack's
//! identifiers come from LONGSHORE_ECS_CLUSTER, LONGSHORE_MASTER_SERVICES (comma list) and
//! LONGSHORE_MASTER_ASG; unset ones skip their check and are listed under `unchecked`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use longshore::config::{Env, Settings};
use longshore::handlers::recovery::{self, Deps, RecoveryConfig};
use longshore::telemetry;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("explain") {
        std::process::exit(recovery::explain_command(&args[1..]));
    }
    telemetry::init();
    let config = RecoveryConfig::from_settings(&Settings::new(Env))?;
    tracing::info!(
        stack = %config.common.stack,
        dry_run = config.common.dry_run,
        "cold start"
    );
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = Deps::new(&sdk, config);
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        recovery::handle(deps, event).await
    }))
    .await
}
