//! The demo's job trace: seeded, two labels, two masters, arrivals in two waves (a commit wave
//! and a smaller follow-up), so the farm must scale up, drain, and scale up again.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One build to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceJob {
    /// When to submit it, from the start of the trace (trace time, before speed-up).
    pub at: Duration,
    /// Index of the master it goes to.
    pub master: usize,
    pub label: &'static str,
    pub duration: Duration,
    pub job: String,
}

/// The labels the demo builds on: most images are small, some need a large agent.
pub const LABELS: [&str; 2] = ["docker", "docker-large"];

/// A seeded trace of `jobs` Docker image builds of 1 to 3.3 minutes each, arriving over about
/// ten minutes of trace time.
pub fn synthetic(seed: u64, jobs: usize, masters: usize) -> Vec<TraceJob> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut trace: Vec<TraceJob> = (0..jobs)
        .map(|n| {
            // Two thirds arrive in the first wave (0–200 s), the rest in a second (400–600 s).
            let wave_start = if n % 3 == 2 { 400_000 } else { 0 };
            let at = Duration::from_millis(wave_start + rng.random_range(0..200_000));
            let label = if rng.random_range(0..10) < 7 {
                LABELS[0]
            } else {
                LABELS[1]
            };
            let duration = Duration::from_millis(rng.random_range(60_000..200_000));
            let image = ["api", "web", "worker", "cron"][n % 4];
            TraceJob {
                at,
                master: n % masters.max(1),
                label,
                duration,
                job: format!("build-{image}-image"),
            }
        })
        .collect();
    trace.sort_by_key(|job| job.at);
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace() {
        assert_eq!(synthetic(7, 30, 2), synthetic(7, 30, 2));
        assert_ne!(synthetic(7, 30, 2), synthetic(8, 30, 2));
    }

    #[test]
    fn trace_is_sorted_and_uses_both_labels_and_masters() {
        let trace = synthetic(7, 40, 2);
        assert!(trace.windows(2).all(|pair| pair[0].at <= pair[1].at));
        for label in LABELS {
            assert!(trace.iter().any(|job| job.label == label));
        }
        assert!(trace.iter().any(|job| job.master == 0) && trace.iter().any(|job| job.master == 1));
    }
}
