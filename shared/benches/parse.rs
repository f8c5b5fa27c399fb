//! Parsing what the scaler reads from Jenkins at the large size: one master's share of
//! 10,000 queued items (the scaler reads each master on its own, so this is the worst single
//! answer) and 2,000 computers, in the shape the scaler's `tree=` queries return. Run with
//! `make bench`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use longshore::domain::jenkins::{ComputerSet, Queue};
use serde_json::{Value, json};

fn queue_json(items: usize) -> String {
    let items: Vec<Value> = (0..items)
        .map(|n| {
            json!({
                "_class": "hudson.model.Queue$BuildableItem",
                "id": n,
                "why": format!("Waiting for next available executor on \u{2018}docker-{}\u{2019}", n % 4),
                "buildable": true,
                "blocked": false,
                "stuck": false,
                "inQueueSince": 1_800_000_000_000i64 + n as i64,
                "buildableStartMilliseconds": 1_800_000_005_000i64 + n as i64,
                "task": {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": format!("job-{n}")}
            })
        })
        .collect();
    json!({"_class": "hudson.model.Queue", "items": items}).to_string()
}

fn computers_json(count: usize) -> String {
    let computers: Vec<Value> = (0..count)
        .map(|n| {
            json!({
                "_class": "hudson.slaves.SlaveComputer",
                "displayName": format!("i-{n:017x}"),
                "offline": n % 10 == 0,
                "temporarilyOffline": false,
                "idle": n % 3 != 0,
                "numExecutors": 2,
                "offlineCauseReason": "",
                "assignedLabels": [{"name": "docker"}, {"name": "linux"}],
                "executors": [{"idle": n % 3 != 0}, {"idle": true}]
            })
        })
        .collect();
    json!({"_class": "hudson.model.ComputerSet", "computer": computers}).to_string()
}

fn bench_parse(c: &mut Criterion) {
    let queue = queue_json(10_000);
    // Measure parsing, not a parse error: the shapes must be what the scaler accepts.
    let parsed = serde_json::from_str::<Queue>(&queue).expect("queue JSON parses");
    assert_eq!(parsed.items.len(), 10_000);
    c.bench_function("parse queue 10000 items", |b| {
        b.iter(|| serde_json::from_str::<Queue>(black_box(&queue)).map(|q| q.items.len()))
    });
    let computers = computers_json(2_000);
    let parsed = serde_json::from_str::<ComputerSet>(&computers).expect("computer JSON parses");
    assert_eq!(parsed.computer[3].busy_executors(), 1);
    c.bench_function("parse computers 2000 nodes", |b| {
        b.iter(|| {
            serde_json::from_str::<ComputerSet>(black_box(&computers)).map(|c| c.computer.len())
        })
    });
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
