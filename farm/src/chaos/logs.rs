//! Each chaos run's own log, kept while it plays so that a failing run's can be written out.
//!
//! A replay of a failing seed plays the same script, but which request a fault hits depends
//! on the farm's timing, so some failures do not come back on replay. The batch therefore
//! records, for every run, what the scaler and recovery logged inside it (at `info`), and
//! writes `seed-<N>.log` beside `summary.json` when the run broke an invariant; a passing
//! run's log is dropped.
//!
//! A run's events are those emitted inside its `chaos_run` span (the run's future is
//! instrumented with it, and the booter's tasks inherit it). Tasks the simulators and the AWS
//! proxy spawn log outside it and are not kept.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The span every run plays in; its `seed` field names the run.
pub const RUN_SPAN: &str = "chaos_run";
/// What is kept of a run: the scaler's and recovery's decisions, the agents' boots and the
/// harness's own lines (its `chaos_run` span must pass too), not the rest of the farm's.
const KEPT: &str = "info,longshore_farm=warn,longshore_farm::chaos=info,longshore_farm::booter=info,aws_config=warn,aws_smithy_runtime=warn,hyper=warn";

type Buffers = Arc<Mutex<HashMap<u64, Vec<String>>>>;

/// The runs' logs of this process, once [`install`] has run.
static INSTALLED: OnceLock<RunLogs> = OnceLock::new();

/// The runs' logs, if [`install`] installed the subscriber that keeps them.
pub fn installed() -> Option<&'static RunLogs> {
    INSTALLED.get()
}

/// The runs' logs so far.
#[derive(Clone, Default)]
pub struct RunLogs {
    buffers: Buffers,
}

impl RunLogs {
    /// The lines run `seed` logged, which are forgotten here.
    pub fn take(&self, seed: u64) -> Vec<String> {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&seed)
            .unwrap_or_default()
    }
}

/// Installs the process's subscriber: the usual text output (`RUST_LOG`, `info` by default)
/// and the runs' logs ([`installed`]). Does nothing when a subscriber was installed already.
pub fn install() {
    let logs = RunLogs::default();
    let layer = RunLogLayer {
        buffers: logs.buffers.clone(),
        started: Instant::now(),
    };
    let text = tracing_subscriber::fmt::layer()
        .with_target(false)
        .compact()
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let installed = tracing_subscriber::registry()
        .with(text)
        .with(layer.with_filter(EnvFilter::new(KEPT)))
        .try_init();
    if installed.is_ok() {
        let _ = INSTALLED.set(logs);
    }
}

/// The seed of the run a span belongs to.
struct RunSeed(u64);

struct RunLogLayer {
    buffers: Buffers,
    started: Instant,
}

impl<S> Layer<S> for RunLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != RUN_SPAN {
            return;
        }
        let mut seed = SeedField(None);
        attrs.record(&mut seed);
        if let (Some(seed), Some(span)) = (seed.0, ctx.span(id)) {
            span.extensions_mut().insert(RunSeed(seed));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(seed) = scope
            .from_root()
            .find_map(|span| span.extensions().get::<RunSeed>().map(|s| s.0))
        else {
            return;
        };
        let meta = event.metadata();
        let mut line = format!(
            "{:>8.3} {:<5} {}:",
            self.started.elapsed().as_secs_f64(),
            meta.level(),
            meta.target()
        );
        event.record(&mut LineFields(&mut line));
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(seed)
            .or_default()
            .push(line);
    }
}

/// Finds the run span's `seed`.
struct SeedField(Option<u64>);

impl Visit for SeedField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "seed" {
            self.0 = Some(value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "seed" {
            self.0 = u64::try_from(value).ok();
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// Appends an event's fields to its line: the message first, then `name=value`.
struct LineFields<'a>(&'a mut String);

impl Visit for LineFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Instrument as _;

    #[tokio::test]
    async fn each_run_keeps_only_what_was_logged_inside_it() {
        let logs = RunLogs::default();
        let layer = RunLogLayer {
            buffers: logs.buffers.clone(),
            started: Instant::now(),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        let _guard = tracing::subscriber::set_default(subscriber);
        let run = |seed: u64| {
            async move {
                tracing::info!(instance = "i-1", "launched");
                tokio::task::yield_now().await;
                tracing::warn!(seed_was = seed, "later");
            }
            .instrument(tracing::info_span!(RUN_SPAN, seed))
        };
        tracing::info!("outside any run");
        tokio::join!(run(7), run(8));
        let seven = logs.take(7);
        assert_eq!(seven.len(), 2, "{seven:?}");
        assert!(seven[0].ends_with("launched instance=i-1"), "{seven:?}");
        assert!(seven[1].contains("WARN") && seven[1].ends_with("later seed_was=7"));
        assert_eq!(logs.take(8).len(), 2);
        assert!(logs.take(7).is_empty(), "taken once");
    }
}
