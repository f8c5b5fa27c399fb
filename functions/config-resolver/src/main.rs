//! config-resolver Lambda: CloudFormation custom resource `Custom::JenkinsConfig`: resolves physical IDs into the
//! masters' Configuration-as-Code and the scaler's fleet configuration, stored in SSM.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use longshore::config::{CommonConfig, Env, Settings};
use longshore::handlers::{self, events::CloudFormationCustomResourceRequest};
use longshore::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = CommonConfig::from_settings(&Settings::new(Env))?;
    tracing::info!(stack = %config.stack, dry_run = config.dry_run, "cold start");
    run(service_fn(
        |event: LambdaEvent<CloudFormationCustomResourceRequest>| async move {
            handlers::not_built_yet("config-resolver", &event.context.request_id)
        },
    ))
    .await
}
