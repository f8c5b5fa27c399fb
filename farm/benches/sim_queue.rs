//! How fast the simulator answers `GET /queue/api/json` with 10,000 queued items, rendered
//! in-process (no HTTP): the whole answer, and the small tree the scaler asks for.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use longshore_farm::jenkins::{JobKind, SimConfig, Simulator};

fn queued(n: usize) -> Simulator {
    let sim = Simulator::new(SimConfig::default());
    let labels = [Some("linux"), Some("docker && linux"), Some("arm64"), None];
    for i in 0..n {
        let label = labels[i % labels.len()];
        // One job per label, so items fold nothing and carry real labels.
        let job = format!("job-{}", i % labels.len());
        if let Err(e) = sim.submit(&job, label, Duration::from_secs(60), JobKind::Freestyle) {
            panic!("submit: {e}");
        }
    }
    sim
}

fn bench(c: &mut Criterion) {
    let sim = queued(10_000);
    let mut group = c.benchmark_group("queue_api_json_10k");
    group.sample_size(20);
    group.bench_function("full", |b| b.iter(|| sim.queue_json(None).map(|s| s.len())));
    group.bench_function("tree=items[id,why,inQueueSince,buildable]", |b| {
        b.iter(|| {
            sim.queue_json(Some("items[id,why,inQueueSince,buildable]"))
                .map(|s| s.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
