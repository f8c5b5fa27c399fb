//! The two Auto Scaling calls moto does not implement (it answers HTTP 500), tested at the
//! wire: recovery's adapter drives the real aws-sdk-autoscaling client, pointed at a local
//! listener that records the exact query-protocol request and answers AWS's XML.

#[path = "support/lifecycle_recorder.rs"]
mod lifecycle_recorder;

use lifecycle_recorder::{Recorder, field};
use longshore::adapters::aws::autoscaling::{AsgLifecycle, LifecycleAction, LifecycleOutcome};

fn action() -> LifecycleAction {
    LifecycleAction {
        asg_name: "ci-master-hosts".to_string(),
        hook_name: "ci-drain".to_string(),
        action_token: "87654321-4321-4321-4321-210987654321".to_string(),
        instance_id: "i-1234567890abcdef0".to_string(),
    }
}

async fn client(recorder: &Recorder) -> AsgLifecycle {
    let sdk = longshore_farm::moto::sdk_config_for(recorder.url()).await;
    AsgLifecycle::new(aws_sdk_autoscaling::Client::new(&sdk))
}

#[tokio::test]
async fn complete_and_heartbeat_send_the_exact_requests() {
    let recorder = Recorder::start().await;
    let asg = client(&recorder).await;
    assert_eq!(
        asg.heartbeat(&action()).await.expect("heartbeat"),
        LifecycleOutcome::Done
    );
    assert_eq!(
        asg.complete(&action(), "CONTINUE").await.expect("complete"),
        LifecycleOutcome::Done
    );
    let requests = recorder.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let mut heartbeat = requests[0].clone();
    heartbeat.sort();
    assert_eq!(
        heartbeat,
        vec![
            ("Action".into(), "RecordLifecycleActionHeartbeat".into()),
            ("AutoScalingGroupName".into(), "ci-master-hosts".into()),
            (
                "LifecycleActionToken".into(),
                "87654321-4321-4321-4321-210987654321".into()
            ),
            ("LifecycleHookName".into(), "ci-drain".into()),
            ("Version".into(), "2011-01-01".into()),
        ]
    );
    let mut complete = requests[1].clone();
    complete.sort();
    assert_eq!(
        complete,
        vec![
            ("Action".into(), "CompleteLifecycleAction".into()),
            ("AutoScalingGroupName".into(), "ci-master-hosts".into()),
            ("LifecycleActionResult".into(), "CONTINUE".into()),
            (
                "LifecycleActionToken".into(),
                "87654321-4321-4321-4321-210987654321".into()
            ),
            ("LifecycleHookName".into(), "ci-drain".into()),
            ("Version".into(), "2011-01-01".into()),
        ]
    );
}

#[tokio::test]
async fn an_action_no_longer_pending_counts_as_done_and_other_errors_do_not() {
    let recorder = Recorder::start().await;
    recorder.answer_not_pending();
    let asg = client(&recorder).await;
    assert_eq!(
        asg.complete(&action(), "CONTINUE").await.expect("complete"),
        LifecycleOutcome::NotPending
    );
    assert_eq!(
        asg.heartbeat(&action()).await.expect("heartbeat"),
        LifecycleOutcome::NotPending
    );
    assert_eq!(
        field(
            &recorder.calls("CompleteLifecycleAction")[0],
            "LifecycleActionResult"
        ),
        Some("CONTINUE")
    );
    // moto itself answers 500 for these calls: that is an error, retried by EventBridge.
    let moto = longshore_farm::moto::MotoServer::start().expect("moto");
    let asg = AsgLifecycle::new(aws_sdk_autoscaling::Client::new(&moto.sdk_config().await));
    let err = asg
        .complete(&action(), "CONTINUE")
        .await
        .expect_err("moto does not implement it");
    assert_eq!(err.operation, "CompleteLifecycleAction");
}
