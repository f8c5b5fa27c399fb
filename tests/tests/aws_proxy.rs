//! The AWS proxy in front of moto: EC2's ClientToken idempotency (which moto lacks) and the
//! injected faults, seen through the real SDK.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::InstanceType;
use longshore_farm::aws_proxy::{AwsFault, AwsProxy, FaultRule};
use longshore_farm::moto::MotoServer;

/// An SDK config for the proxy, with the SDK's standard retries (3 attempts) when asked.
async fn sdk_via(proxy: &AwsProxy, retries: bool) -> aws_config::SdkConfig {
    let retry = if retries {
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(10))
    } else {
        RetryConfig::disabled()
    };
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(proxy.endpoint_url())
        .retry_config(retry)
        .load()
        .await
}

async fn image_id(ec2: &aws_sdk_ec2::Client) -> String {
    let images = ec2.describe_images().send().await.expect("images");
    images.images()[0].image_id().expect("image id").to_string()
}

fn run(
    ec2: &aws_sdk_ec2::Client,
    image: &str,
    token: &str,
    instance_type: InstanceType,
) -> aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder {
    ec2.run_instances()
        .image_id(image)
        .instance_type(instance_type)
        .min_count(1)
        .max_count(1)
        .client_token(token)
}

async fn running_count(ec2: &aws_sdk_ec2::Client) -> usize {
    let answer = ec2.describe_instances().send().await.expect("describe");
    answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_seen_before_launches_nothing_and_returns_the_first_instance() {
    let moto = MotoServer::start().expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let ec2 = aws_sdk_ec2::Client::new(&sdk_via(&proxy, false).await);
    let image = image_id(&ec2).await;

    let first = run(&ec2, &image, "token-1", InstanceType::T3Micro)
        .send()
        .await
        .expect("first launch");
    let again = run(&ec2, &image, "token-1", InstanceType::T3Micro)
        .send()
        .await
        .expect("same token again");
    let id = |r: &aws_sdk_ec2::operation::run_instances::RunInstancesOutput| {
        r.instances()[0].instance_id().map(str::to_string)
    };
    assert_eq!(id(&first), id(&again));
    assert_eq!(running_count(&ec2).await, 1);

    let mismatch = run(&ec2, &image, "token-1", InstanceType::M5Large)
        .send()
        .await
        .expect_err("same token, other parameters");
    assert_eq!(mismatch.code(), Some("IdempotentParameterMismatch"));

    run(&ec2, &image, "token-2", InstanceType::T3Micro)
        .send()
        .await
        .expect("a new token launches");
    assert_eq!(running_count(&ec2).await, 2);
    let stats = proxy.stats();
    assert_eq!(stats.launches_forwarded, 2);
    assert_eq!(stats.idempotent_replays, 1);
    assert_eq!(stats.idempotency_mismatches, 1);

    // Once its instance is terminated, the token no longer replays: EC2 refuses it.
    ec2.terminate_instances()
        .instance_ids(id(&first).expect("instance id"))
        .send()
        .await
        .expect("terminate");
    let refused = run(&ec2, &image, "token-1", InstanceType::T3Micro)
        .send()
        .await
        .expect_err("the token's instance is terminated");
    assert_eq!(refused.code(), Some("IdempotentInstanceTerminated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_by_the_sdk_and_launches_once() {
    let moto = MotoServer::start().expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let ec2 = aws_sdk_ec2::Client::new(&sdk_via(&proxy, true).await);
    let image = image_id(&ec2).await;
    proxy.add_rule(FaultRule::on("RunInstances", AwsFault::LoseResponse).times(1));

    let launched = run(&ec2, &image, "token-lost", InstanceType::T3Micro)
        .send()
        .await
        .expect("the SDK's retry gets the first launch's answer");
    assert_eq!(launched.instances().len(), 1);
    assert_eq!(running_count(&ec2).await, 1);
    let stats = proxy.stats();
    assert_eq!(stats.requests["RunInstances"], 2);
    assert_eq!(stats.faults["lose_response"], 1);
    assert_eq!(stats.idempotent_replays, 1);

    // Without a token of ours, the SDK fills one in (RunInstances' ClientToken is an
    // idempotency token in the API model) and keeps it across its own retries, so a lost answer
    // still launches once. What the plan's derived token adds is the same token on a retried
    // *tick*, which the SDK cannot know about.
    proxy.add_rule(FaultRule::on("RunInstances", AwsFault::LoseResponse).times(1));
    ec2.run_instances()
        .image_id(&image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("retried with the SDK's own token");
    assert_eq!(running_count(&ec2).await, 2);
    assert_eq!(proxy.stats().idempotent_replays, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_come_in_each_protocols_shape_and_stop_when_used_up() {
    let moto = MotoServer::start().expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let sdk = sdk_via(&proxy, false).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let image = image_id(&ec2).await;

    proxy.add_rule(
        FaultRule::on("RunInstances", AwsFault::InsufficientCapacity)
            .with_param("InstanceType", "m5.large"),
    );
    let refused = run(&ec2, &image, "token-m5", InstanceType::M5Large)
        .send()
        .await
        .expect_err("no m5.large capacity");
    assert_eq!(refused.code(), Some("InsufficientInstanceCapacity"));
    run(&ec2, &image, "token-t3", InstanceType::T3Micro)
        .send()
        .await
        .expect("other types still launch");

    proxy.add_rule(FaultRule::on("DescribeInstances", AwsFault::Throttle).times(1));
    let throttled = ec2
        .describe_instances()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(throttled.code(), Some("RequestLimitExceeded"));
    ec2.describe_instances()
        .send()
        .await
        .expect("the rule is used up");

    proxy.add_rule(FaultRule::on("GetParameter", AwsFault::Throttle).times(1));
    let json_throttled = ssm
        .get_parameter()
        .name("/nothing")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(json_throttled.code(), Some("ThrottlingException"));

    proxy.clear_rules();
    let stats = proxy.stats();
    assert_eq!(stats.faults["insufficient_capacity"], 1);
    assert_eq!(stats.faults["throttle"], 2);
    assert_eq!(running_count(&ec2).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_absorbed_by_the_sdks_retries() {
    let moto = MotoServer::start().expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let ec2 = aws_sdk_ec2::Client::new(&sdk_via(&proxy, true).await);
    proxy.add_rule(FaultRule::on("DescribeInstances", AwsFault::Throttle).times(2));
    ec2.describe_instances()
        .send()
        .await
        .expect("third attempt succeeds");
    assert_eq!(proxy.stats().requests["DescribeInstances"], 3);
}

/// Chaos seed 342, under load: a tick cut off while its `RunInstances` was with moto dropped
/// the connection, the proxy dropped the launch with it and kept its token "in flight" for
/// good, and every retry was answered 500: the job waited forever. EC2 completes a launch
/// whether or not its caller waits for the answer, and so does the proxy now: the retry gets
/// the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_caller_gave_up_completes_and_its_retry_gets_the_instance() {
    let moto = MotoServer::start().expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let ec2 = aws_sdk_ec2::Client::new(&sdk_via(&proxy, false).await);
    let image = image_id(&ec2).await;
    // Give up ever sooner until a launch is cut off after it reached moto through the proxy.
    let mut cut_in_flight = None;
    for (attempt, micros) in [20_000u64, 10_000, 5_000, 2_000, 1_000, 500, 200]
        .into_iter()
        .enumerate()
    {
        let token = format!("cut-{attempt}");
        let forwarded = proxy.stats().launches_forwarded;
        let call = run(&ec2, &image, &token, InstanceType::T3Micro).send();
        let answered = tokio::time::timeout(Duration::from_micros(micros), call).await;
        if answered.is_err() && proxy.stats().launches_forwarded > forwarded {
            cut_in_flight = Some(token);
            break;
        }
    }
    let token = cut_in_flight.expect("a launch was cut off after reaching the proxy");
    // The retry, as the next tick sends it: EC2's answer, not a 500.
    let mut retried = None;
    for _ in 0..20 {
        match run(&ec2, &image, &token, InstanceType::T3Micro)
            .send()
            .await
        {
            Ok(answer) => {
                retried = answer.instances()[0].instance_id().map(str::to_string);
                break;
            }
            Err(err) => {
                // At most while moto is still launching.
                assert_eq!(err.code(), Some("InternalError"), "{err:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(retried.is_some(), "the retry never got the instance");
    let again = run(&ec2, &image, &token, InstanceType::T3Micro)
        .send()
        .await
        .expect("a second retry");
    assert_eq!(again.instances()[0].instance_id(), retried.as_deref());
}
