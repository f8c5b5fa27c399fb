//! A master's answers as the scaler reads them: any bytes as `GET /queue/api/json` and as
//! `GET /computer/api/json`, every `why` through `queue_why::parse`, every description through
//! `parse_agent_description`, then what parsed into `scaling::plan`. Never panics; the plan
//! stays within the fleet's caps.
//!
//! The step from the parsed JSON to the plan's view is the tick's own `view_of`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use longshore::domain::fleet::FleetConfig;
use longshore::domain::jenkins::{ComputerSet, Queue};
use longshore::domain::scaling::{Instance, MasterSnapshot, Snapshot, is_instance_id, plan};
use longshore::handlers::queue_scaler::tick::view_of;

/// 2023-11-14T22:13:20Z: "now" for every plan.
const NOW_MS: i64 = 1_700_000_000_000;

const FLEET: &str = r#"{
  "schema": 1, "stack": "ci",
  "launchTemplate": {"id": "lt-0123456789abcdef0", "version": "1"},
  "maxAgents": 6, "bootTimeoutSecs": 300, "masters": ["a", "b"],
  "labels": [
    {"name": "docker", "nodeLabels": ["docker", "linux"], "executors": 2,
     "placements": [{"instanceType": "c5.large",
                     "subnets": [{"id": "subnet-a", "availabilityZone": "az-a"}]}],
     "maxPerMaster": 4, "warmMinimum": 1, "idleSecs": 600, "spot": "prefer"},
    {"name": "large", "nodeLabels": ["docker-large", "linux"], "executors": 1,
     "placements": [{"instanceType": "c5.xlarge",
                     "subnets": [{"id": "subnet-b", "availabilityZone": "az-b"}]}],
     "maxPerMaster": 2, "warmMinimum": 0, "idleSecs": 60, "spot": "never"}
  ]
}"#;

fuzz_target!(|data: &[u8]| {
    let queue = serde_json::from_slice::<Queue>(data).ok();
    let computers = serde_json::from_slice::<ComputerSet>(data).ok();
    if queue.is_none() && computers.is_none() {
        return;
    }
    let config = FleetConfig::from_json(FLEET).expect("the fleet config above is valid");
    // What a tick would plan from: the scaler's own step from the answers to the view.
    let mut idle_since = HashMap::new();
    let view = view_of(
        &mut idle_since,
        "a",
        NOW_MS,
        &queue.unwrap_or_default(),
        &computers.unwrap_or_default(),
    );
    // Every other agent node has its instance listed; the rest are left for the plan to find.
    let instances = view
        .nodes
        .iter()
        .filter(|n| is_instance_id(&n.name))
        .step_by(2)
        .map(|n| Instance {
            id: n.name.clone(),
            master: Some("a".to_string()),
            template: n.registration.as_ref().map(|r| r.template.clone()),
            subnet_id: Some("subnet-a".to_string()),
            launched_at_ms: n.registration.as_ref().map_or(NOW_MS, |r| r.launched_at_ms),
        })
        .collect();
    let snapshot = Snapshot {
        now_ms: NOW_MS,
        masters: vec![
            MasterSnapshot {
                name: "a".to_string(),
                view: Some(view),
            },
            MasterSnapshot {
                name: "b".to_string(),
                view: None,
            },
        ],
        instances,
    };
    let plan = plan(&snapshot, &config);
    assert!(
        plan.launches.len() <= config.max_agents as usize,
        "{plan:?}"
    );
});
