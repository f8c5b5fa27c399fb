//! recovery Lambda: EventBridge handler that heals the farm: master task stops, master host drains,
//! lost or interrupted agents.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use longshore::config::{CommonConfig, Env, Settings};
use longshore::handlers::{self, events::EventBridgeEvent};
use longshore::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
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
