//! The EventBridge side of a chaos run: the real recovery handler (in process, its SDK through
//! the run's fault proxy) gets the events AWS would send, the way EventBridge delivers them:
//! late, twice, out of order, and again after an error.
//!
//! - A Spot reclamation: the interruption warning, then (the notice later) EC2 terminates the
//!   instance under whatever it runs, then the `terminated` state change.
//! - Every instance that ends (retired, orphaned, reclaimed) gets its `terminated` state change,
//!   as EventBridge sends one for each, whoever terminated it.
//!
//! Each copy of an event is due a number of harness ticks after its cause; a warning due after
//! the termination's event is the reordering. A delivery recovery answers with an error is
//! retried on the next tick, up to [`DELIVERY_ATTEMPTS`].

use std::collections::BTreeSet;
use std::time::Duration;

use lambda_runtime::{Context as LambdaContext, LambdaEvent};
use longshore::adapters::aws::ecs::MasterAddress;
use longshore::config::CommonConfig;
use longshore::domain::recovery::Context;
use longshore::handlers::queue_scaler::MasterSource;
use longshore::handlers::recovery::{Deps, RecoveryConfig, handle};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::events;
use crate::stack;

/// How often EventBridge tries one event here (it retries for up to a day on AWS).
const DELIVERY_ATTEMPTS: u32 = 8;

/// A Spot reclamation in a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotPlan {
    /// Which connected agent (index into them, modulo their count).
    pub pick: usize,
    /// Ticks from the warning to the termination (the two-minute notice, compressed).
    pub notice_ticks: u32,
    /// One entry per copy of the warning: its delay in ticks (past `notice_ticks`: reordered).
    pub warnings: Vec<u32>,
    /// One entry per copy of the `terminated` event: its delay after the termination.
    pub terminations: Vec<u32>,
}

impl SpotPlan {
    pub fn draw(rng: &mut StdRng) -> SpotPlan {
        let notice_ticks = rng.random_range(2..=8);
        let copies = |rng: &mut StdRng, max_delay: u32| {
            let n = if rng.random_bool(0.3) { 2 } else { 1 };
            (0..n)
                .map(|_| rng.random_range(0..=max_delay))
                .collect::<Vec<u32>>()
        };
        SpotPlan {
            pick: rng.random_range(0..16),
            notice_ticks,
            warnings: copies(rng, notice_ticks + 3),
            terminations: copies(rng, 4),
        }
    }
}

struct Pending {
    due: u64,
    event: Value,
    attempts: u32,
}

/// Figures of the run's event deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub delivered: u64,
    /// Deliveries recovery answered with an error (each retried).
    pub failed: u64,
    /// Events given up after [`DELIVERY_ATTEMPTS`].
    pub given_up: u64,
}

/// Recovery and the events on their way to it.
pub struct EventBridge {
    deps: Deps,
    tick: u64,
    pending: Vec<Pending>,
    /// Instances whose end has been announced already.
    announced: BTreeSet<String>,
    pub stats: DeliveryStats,
}

impl EventBridge {
    /// Recovery configured for the run's stack: alerts to a fresh topic, state in the lease
    /// table, the masters' credentials in a secret, all in moto.
    pub async fn start(
        moto_sdk: &aws_config::SdkConfig,
        proxy_sdk: &aws_config::SdkConfig,
        stack: &str,
        state_table: &str,
        masters: Vec<MasterAddress>,
    ) -> Result<EventBridge, String> {
        let topic = aws_sdk_sns::Client::new(moto_sdk)
            .create_topic()
            .name(format!("{stack}-alerts"))
            .send()
            .await
            .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(e).to_string())?
            .topic_arn
            .ok_or("CreateTopic answered no ARN")?;
        let secret =
            stack::create_jenkins_secret(moto_sdk, &format!("{stack}-jenkins"), "admin", "admin")
                .await?;
        let config = RecoveryConfig {
            common: CommonConfig {
                stack: stack.to_string(),
                dry_run: false,
            },
            context: Context {
                cluster: Some(format!("{stack}-masters")),
                master_services: masters.iter().map(|m| m.name.clone()).collect(),
                master_asg: Some(format!("{stack}-hosts")),
            },
            alert_topic: topic,
            state_table: state_table.to_string(),
            jenkins_secret: secret,
            jenkins_user: "admin".to_string(),
            masters: MasterSource::Static(masters),
            crash_loop_stops: 3,
            crash_loop_window: Duration::from_secs(15 * 60),
            drain_timeout: Duration::from_secs(45 * 60),
        };
        Ok(EventBridge {
            deps: Deps::new(proxy_sdk, config),
            tick: 0,
            pending: Vec::new(),
            announced: BTreeSet::new(),
            stats: DeliveryStats::default(),
        })
    }

    /// Queues an event `delay` ticks from now.
    pub fn send(&mut self, delay: u32, event: Value) {
        self.pending.push(Pending {
            due: self.tick + u64::from(delay),
            event,
            attempts: 0,
        });
    }

    /// The `terminated` state change of each instance that ended and was not announced yet:
    /// a little late, sometimes twice.
    pub fn announce_ends<'i>(
        &mut self,
        rng: &mut StdRng,
        ended: impl Iterator<Item = &'i str>,
    ) -> u64 {
        let mut duplicated = 0;
        for id in ended {
            if !self.announced.insert(id.to_string()) {
                continue;
            }
            let copies = if rng.random_bool(0.2) { 2 } else { 1 };
            duplicated += copies - 1;
            for _ in 0..copies {
                let delay = rng.random_range(0..=3);
                self.send(delay, events::ec2_state_change(id, "terminated"));
            }
        }
        duplicated
    }

    /// Marks an instance's end as announced (its plan sends its own `terminated` events).
    pub fn announced_by_plan(&mut self, id: &str) {
        self.announced.insert(id.to_string());
    }

    /// Delivers what is due this tick, then moves on to the next tick.
    pub async fn deliver_due(&mut self) {
        let due: Vec<Pending>;
        (due, self.pending) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.due <= self.tick);
        for mut pending in due {
            pending.attempts += 1;
            let event = LambdaEvent::new(pending.event.clone(), LambdaContext::default());
            match handle(&self.deps, event).await {
                Ok(_) => self.stats.delivered += 1,
                Err(err) => {
                    self.stats.failed += 1;
                    tracing::info!(error = %err, "recovery failed; the event is retried");
                    if pending.attempts >= DELIVERY_ATTEMPTS {
                        self.stats.given_up += 1;
                    } else {
                        pending.due = self.tick + 1;
                        self.pending.push(pending);
                    }
                }
            }
        }
        self.tick += 1;
    }

    /// The current tick (advanced by each [`Self::deliver_due`]).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Nothing on its way.
    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }
}
