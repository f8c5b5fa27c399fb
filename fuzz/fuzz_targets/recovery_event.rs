//! `recovery::classify` on any JSON: never panics, and classifies the same event the same way
//! whatever the context knows. Each input is classified three times: with an empty context
//! (every identity check skipped), with one that names other resources (every check fails),
//! and with one built from the event's own fields (every check passes), so the rules behind
//! the identity checks are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longshore::domain::recovery::{Classification, Context, classify};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let others = Context {
        cluster: Some("not-ours".to_string()),
        master_services: vec!["not-ours".to_string()],
        master_asg: Some("not-ours".to_string()),
    };
    for ctx in [Context::default(), others, own_context(&event)] {
        let classification = classify(&event, &ctx);
        // What the handler logs: the outcome always serializes.
        let logged = serde_json::to_value(&classification).expect("a classification serializes");
        assert!(logged.get("outcome").is_some());
        if let Classification::Ignored { reason } = &classification {
            assert!(!reason.is_empty(), "an ignored event says why");
        }
    }
});

/// A context that owns whatever the event names.
fn own_context(event: &Value) -> Context {
    let detail = &event["detail"];
    let text = |v: &Value| v.as_str().map(str::to_string);
    Context {
        cluster: text(&detail["clusterArn"]),
        master_services: detail["group"]
            .as_str()
            .and_then(|g| g.strip_prefix("service:"))
            .map(str::to_string)
            .into_iter()
            .collect(),
        master_asg: text(&detail["AutoScalingGroupName"]),
    }
}
