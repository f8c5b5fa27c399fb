//! config-resolver Lambda: CloudFormation custom resource `Custom::JenkinsConfig`: resolves physical IDs into the
//! masters' Configuration-as-Code and the scaler's fleet configuration, stored in SSM.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use longshore::adapters::aws::{network::AwsLookups, ssm::SsmParams};
use longshore::adapters::cfn_response::{HttpResponder, RetryPolicy};
use longshore::config::{CommonConfig, Env, Settings};
use longshore::handlers::config_resolver::{self, Deps, remaining_until};
use longshore::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = CommonConfig::from_settings(&Settings::new(Env))?;
    tracing::info!(stack = %config.stack, dry_run = config.dry_run, "cold start");
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let responder = HttpResponder::new(RetryPolicy::default())?;
    let deps = &Deps::new(
        AwsLookups::from_conf(&aws),
        SsmParams::from_conf(&aws),
        responder,
    );
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let remaining = remaining_until(event.context.deadline);
            // Boxed: the handler's future is deep enough to overflow the layout query depth.
            Box::pin(config_resolver::handle(deps, event.payload, remaining)).await
        },
    ))
    .await
}
