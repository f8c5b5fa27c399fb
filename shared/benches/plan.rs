//! `plan()` at the sizes the issue names: one master with 100 queued items and 50 agents, and
//! ten masters with 10,000 queued items and 2,000 agents in all. Run with `make bench`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use longshore::domain::fleet::{
    FLEET_CONFIG_SCHEMA, FleetConfig, LabelTemplate, LaunchTemplate, Placement, SpotPolicy, Subnet,
};
use longshore::domain::queue_why::Why;
use longshore::domain::scaling::{
    Instance, MasterSnapshot, MasterView, Node, Registration, Snapshot, WaitingItem, plan,
    standby_node_name,
};

const NOW: i64 = 1_800_000_000_000;
const TEMPLATES: [&str; 4] = ["docker", "docker-large", "docker-arm", "docker-gpu"];

fn config(masters: usize) -> FleetConfig {
    let subnets: Vec<Subnet> = (0..3)
        .map(|n| Subnet {
            id: format!("subnet-{n}"),
            availability_zone: format!("us-east-1{}", ['a', 'b', 'c'][n]),
        })
        .collect();
    FleetConfig {
        schema: FLEET_CONFIG_SCHEMA,
        stack: "bench".to_string(),
        launch_template: LaunchTemplate {
            id: "lt-1".to_string(),
            version: "1".to_string(),
        },
        max_agents: 5_000,
        boot_timeout_secs: 300,
        masters: (0..masters).map(|m| format!("master-{m}")).collect(),
        labels: TEMPLATES
            .iter()
            .map(|name| LabelTemplate {
                name: name.to_string(),
                node_labels: vec![name.to_string(), "linux".to_string()],
                executors: 2,
                placements: ["c6i.large", "m6i.large", "c5.large"]
                    .iter()
                    .map(|t| Placement {
                        instance_type: t.to_string(),
                        subnets: subnets.clone(),
                    })
                    .collect(),
                max_per_master: 400,
                warm_minimum: 1,
                idle_secs: 600,
                spot: SpotPolicy::Prefer,
            })
            .collect(),
    }
}

/// `masters` masters sharing `queued` items and `agents` agents, a third of them busy.
fn snapshot(masters: usize, queued: usize, agents: usize) -> Snapshot {
    let mut instances = Vec::new();
    let mut views: Vec<MasterView> = (0..masters)
        .map(|_| MasterView {
            waiting: Vec::new(),
            nodes: TEMPLATES
                .iter()
                .map(|t| Node {
                    name: standby_node_name(t),
                    executors: 1,
                    busy: 0,
                    online: false,
                    temporarily_offline: false,
                    idle_since_ms: None,
                    registration: None,
                })
                .collect(),
        })
        .collect();
    for n in 0..agents {
        let master = n % masters;
        let id = format!("i-{n:017x}");
        let busy = if n % 3 == 0 { 2 } else { 0 };
        views[master].nodes.push(Node {
            name: id.clone(),
            executors: 2,
            busy,
            online: n % 10 != 0,
            temporarily_offline: false,
            idle_since_ms: Some(NOW - (n as i64 % 900) * 1000),
            registration: Some(Registration {
                template: TEMPLATES[n % 4].to_string(),
                launched_at_ms: NOW - 3_600_000,
            }),
        });
        instances.push(Instance {
            id,
            master: Some(format!("master-{master}")),
            template: Some(TEMPLATES[n % 4].to_string()),
            subnet_id: Some(format!("subnet-{}", n % 3)),
            launched_at_ms: NOW - 3_600_000,
        });
    }
    for n in 0..queued {
        let why = match n % 5 {
            0 => Why::Label(format!("{}&&linux", TEMPLATES[n % 4])),
            1 => Why::AnyExecutor,
            2 => Why::NotForAgents,
            _ => Why::Label(TEMPLATES[n % 4].to_string()),
        };
        views[n % masters].waiting.push(WaitingItem {
            id: n as u64,
            why,
            waiting_since_ms: NOW - 5_000,
        });
    }
    Snapshot {
        now_ms: NOW,
        masters: views
            .into_iter()
            .enumerate()
            .map(|(m, view)| MasterSnapshot {
                name: format!("master-{m}"),
                view: Some(view),
            })
            .collect(),
        instances,
    }
}

fn bench_plan(c: &mut Criterion) {
    let small = (snapshot(1, 100, 50), config(1));
    c.bench_function("plan 1 master x 100 queued x 50 agents", |b| {
        b.iter(|| plan(black_box(&small.0), black_box(&small.1)))
    });
    let large = (snapshot(10, 10_000, 2_000), config(10));
    c.bench_function("plan 10 masters x 10000 queued x 2000 agents", |b| {
        b.iter(|| plan(black_box(&large.0), black_box(&large.1)))
    });
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
