//! queue-scaler Lambda: scheduled every minute by EventBridge; ticks every few seconds inside an invocation,
//! launching agents for waiting work and retiring idle ones safely.

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
            handlers::not_built_yet("queue-scaler", &event.context.request_id)
        },
    ))
    .await
}
