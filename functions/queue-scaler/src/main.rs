//! queue-scaler Lambda: scheduled every minute by EventBridge; ticks every few seconds inside
//! an invocation, launching agents for waiting work and retiring idle ones safely.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use longshore::config::{Env, Settings};
use longshore::handlers::events::EventBridgeEvent;
use longshore::handlers::queue_scaler::{self, Deps, QueueScalerConfig};
use longshore::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = QueueScalerConfig::from_settings(&Settings::new(Env))?;
    tracing::info!(stack = %config.common.stack, dry_run = config.common.dry_run, "cold start");
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = Deps::new(&sdk, config);
    run(service_fn(|event: LambdaEvent<EventBridgeEvent>| {
        queue_scaler::handle(&deps, event)
    }))
    .await
}
