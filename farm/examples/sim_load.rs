//! Load check of the Jenkins simulator over loopback: 10,000 queued items, then a bounded
//! number of `GET /queue/api/json?tree=items[id,why,inQueueSince,buildable]` requests with
//! fixed concurrency; prints answers per second and p50/p99 latency.
//!
//! `cargo run --release -p longshore-farm --example sim_load [-- REQUESTS CONCURRENCY]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use longshore_farm::jenkins::{JobKind, SimConfig, Simulator};

const ITEMS: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map_or(Ok(2_000), |s| s.parse())?;
    let concurrency: usize = args.next().map_or(Ok(8), |s| s.parse())?;
    let cfg = SimConfig::default();
    let (user, token) = (cfg.user.clone(), cfg.token.clone());
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let running = Simulator::start(cfg, addr).await?;
    let labels = [Some("linux"), Some("docker && linux"), Some("arm64"), None];
    for i in 0..ITEMS {
        let job = format!("job-{}", i % labels.len());
        running.sim().submit(
            &job,
            labels[i % labels.len()],
            Duration::from_secs(600),
            JobKind::Freestyle,
        )?;
    }
    let url = format!(
        "{}queue/api/json?tree=items[id,why,inQueueSince,buildable]",
        running.url()
    );
    let client = reqwest::Client::new();
    // One request to check the answer before measuring.
    let first = client
        .get(&url)
        .basic_auth(&user, Some(&token))
        .send()
        .await?;
    let bytes = first.bytes().await?.len();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, user, token, next) = (
            client.clone(),
            url.clone(),
            user.clone(),
            token.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t = Instant::now();
                let res = client
                    .get(&url)
                    .basic_auth(&user, Some(&token))
                    .send()
                    .await;
                if let Ok(res) = res
                    && res.status().is_success()
                    && res.bytes().await.is_ok()
                {
                    latencies.push(t.elapsed());
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} items, answer {} bytes; {} of {requests} requests ok with concurrency {concurrency} in {:.2?}: \
         {:.0} answers/s, p50 {:.2?}, p99 {:.2?}",
        ITEMS,
        bytes,
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
    running.shutdown().await;
    Ok(())
}
