//! A Jenkins simulator: one in-process controller that speaks Jenkins' REST and WebSocket-agent
//! wire format closely enough that longshore's scaler, booter and tests cannot tell it from a
//! real master, and that can be made to misbehave on purpose.
//!
//! Start it with [`Simulator::start`]; it binds to a loopback address only. Everything it
//! answers is documented, with the Jenkins source it follows, in the submodules:
//! [`messages`] (every English text), [`tree`] (`tree=`/`depth=`), [`faults`]; the endpoints are
//! listed in `api.rs` and in `shared/JENKINS_API.md`.
//!
//! What it models: the built-in node (`computer/(built-in)/`, 0 executors, online); inbound
//! agents created by `POST /computer/doCreateItem` (or `createItem` with a node `config.xml`),
//! online while a WebSocket connection from them is open on `/wsagents/`; freestyle and pipeline
//! jobs, their queue items (`WaitingItem` during the quiet period → `BlockedItem`/`BuildableItem`
//! → `LeftItem`), label-aware assignment to idle executors in queue order, builds that hold their
//! executor for a given duration; API-token auth, crumbs for cookie sessions; fault injection.
//!
//! Choices a real Jenkins would not make (all deliberate, for a simulator):
//! - Builds do nothing but hold an executor. Their duration comes from the simulator-only
//!   build parameter `LONGSHORE_SIM_DURATION_MS` (query or form field of `build` /
//!   `buildWithParameters`; not shown in the item's parameters), else from the job (a
//!   `LONGSHORE_SIM_DURATION_MS` parameter definition's default in its `config.xml`), else 30 s.
//! - The agent protocol is not remoting: after the WebSocket handshake the simulator sends JSON
//!   text frames `{"type":"build_started","job":..,"number":N}` and
//!   `{"type":"build_finished","job":..,"number":N,"result":..}` and otherwise only pings (every
//!   [`PING_INTERVAL`]; a peer silent for three intervals is dropped). `/jnlpJars/agent.jar`
//!   serves a placeholder body: the farm's agents never run it.
//! - When an agent disconnects mid-build the build ends at once as FAILURE and is counted in
//!   [`SimStats::builds_lost`] (Jenkins would fail a freestyle build the same way; a pipeline
//!   would first wait for the agent to come back).
//! - Executors are picked on the first matching node in name order (Jenkins' default load
//!   balancer hashes the task onto nodes); the queue is served in `inQueueSince` order.
//! - A `node('x')` pipeline runs one node block; the run starts as soon as its own queue item
//!   leaves the quiet period. [`Simulator::submit`] skips the quiet period (like `delay=0sec`)
//!   and never folds duplicates (`POST …/build` does, as `Queue.schedule2` does).
//! - Node monitor data are constants in the recorded shape.
//! - A malformed `tree=` answers 500 with Jenkins' "Oops!" page, which is what Jenkins does
//!   (`ServletException` from stapler, see [`tree`]), not 400.
//! - Anonymous requests get 403 with the login-redirect page (Jenkins'
//!   `HudsonAuthenticationEntryPoint`), not 401; a bad API token gets 401 `Unauthorized` with
//!   `WWW-Authenticate: Basic realm="Jenkins"` (Spring Security's `BasicAuthenticationEntryPoint`;
//!   the "Invalid password/token for user: …" cause is only logged, as in Jenkins).

pub(crate) mod api;
pub mod faults;
pub mod messages;
mod model;
mod state;
pub mod tree;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use faults::{Budget, Fault};
pub use state::{
    AgentCounts, DEFAULT_BUILD_DURATION, DURATION_PARAM, JobKind, LostBuild, NodeMode, SimError,
    SimStats, WaitSample,
};

use state::State;

/// How often the simulator pings a connected agent.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// How the simulated controller presents itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The master's name, e.g. `master-a` (used in logs and the dashboard page).
    pub name: String,
    /// The one user; API requests authenticate as `user:token` with HTTP Basic.
    pub user: String,
    /// That user's API token.
    pub token: String,
    /// Sent as `X-Jenkins` on every answer, e.g. `2.479.3`.
    pub version: String,
    /// Jenkins' quiet period (default 5 s); builds triggered with `delay=0sec` skip it.
    pub quiet_period: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            name: "master-a".to_owned(),
            user: "admin".to_owned(),
            token: "admin".to_owned(),
            version: "2.479.3".to_owned(),
            quiet_period: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    wake: Notify,
    version: String,
}

/// A cheap, cloneable handle onto one simulated controller's state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

/// A simulator serving HTTP; stops serving when shut down or dropped.
pub struct RunningSim {
    sim: Simulator,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    scheduler: JoinHandle<()>,
}

impl RunningSim {
    /// The root URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The simulator behind the server.
    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Stops accepting requests and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            // Open WebSocket sessions keep a graceful shutdown waiting: give it a moment.
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
        self.scheduler.abort();
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.scheduler.abort();
    }
}

impl Simulator {
    /// A simulator that is not serving HTTP yet (for benches and in-process use).
    pub fn new(config: SimConfig) -> Self {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let version = config.version.clone();
        let state = State::new(config, rand::random::<[u8; 32]>(), epoch_ms, Instant::now());
        Simulator {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                wake: Notify::new(),
                version,
            }),
        }
    }

    /// Binds `addr` (loopback only; port 0 picks a free port) and serves the Jenkins API.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<RunningSim> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the Jenkins simulator binds to loopback addresses only, not {addr}"),
            ));
        }
        let sim = Simulator::new(config);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        sim.lock().root_url = format!("http://{addr}/");
        let scheduler = tokio::spawn(scheduler(sim.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = api::router(sim.clone());
        let server = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "jenkins simulator server ended");
            }
        });
        tracing::info!(url = %format!("http://{addr}/"), "jenkins simulator listening");
        Ok(RunningSim {
            sim,
            addr,
            stop: Some(stop),
            server: Some(server),
            scheduler,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the model half-updated in a way that
        // matters more than stopping the simulator would, so a poisoned lock is used as is.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the state and wakes the scheduler to recompute its next deadline.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let r = f(&mut self.lock(), Instant::now());
        self.inner.wake.notify_one();
        r
    }

    pub(crate) fn version(&self) -> &str {
        &self.inner.version
    }

    /// Queues a build of `job` (created, concurrent, if missing; its label is set to `label`),
    /// holding an executor for `duration` once started; no quiet period. Returns the queue id.
    pub fn submit(
        &self,
        job: &str,
        label: Option<&str>,
        duration: Duration,
        kind: JobKind,
    ) -> Result<u64, SimError> {
        self.with(|st, now| {
            if !st.jobs.contains_key(job) {
                st.create_job(job, kind, label.map(str::to_owned), true, duration)?;
            } else if let Some(j) = st.jobs.get_mut(job) {
                j.label = label.map(str::to_owned);
            }
            st.schedule(
                job,
                Some(Duration::ZERO),
                Vec::new(),
                Some(duration),
                false,
                now,
            )
        })
    }

    /// Defines a permanent inbound (WebSocket) agent, as `POST /computer/doCreateItem` does.
    pub fn create_agent(&self, name: &str, labels: &str, executors: u32) -> Result<(), SimError> {
        self.with(|st, now| {
            st.create_agent(
                state::AgentSpec {
                    name,
                    label_string: labels,
                    description: "",
                    executors,
                    mode: NodeMode::Normal,
                    remote_fs: "/home/jenkins/agent",
                    websocket: true,
                },
                now,
            )
        })
    }

    /// The inbound agent secret of a node (`SlaveComputer.getJnlpMac()`), `None` if unknown.
    pub fn agent_secret(&self, name: &str) -> Option<String> {
        self.lock().agent_secret(name)
    }

    /// Injects a fault (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.with(|st, now| st.inject(fault, now));
    }

    /// Clears the HTTP faults (`DELETE /__sim/faults`).
    pub fn clear_faults(&self) {
        self.with(|st, _| {
            st.faults.clear();
            st.down_until = None;
        });
    }

    /// Counters for the demo and the tests.
    pub fn stats(&self) -> SimStats {
        let st = self.lock();
        let now_ms = st.ms(Instant::now());
        st.stats(now_ms)
    }

    /// The JSON of `GET /queue/api/json[?tree=…]`, rendered in-process (for benchmarks).
    pub fn queue_json(&self, tree: Option<&str>) -> Result<String, String> {
        let spec = tree.map(tree::parse_tree).transpose()?;
        let pruner = tree::Pruner::for_query(spec.as_ref(), None)?;
        let st = self.lock();
        let cx = model::Ctx::new(&st, st.ms(Instant::now()));
        Ok(tree::render(pruner, "hudson.model.Queue", |o| {
            model::queue(o, &cx)
        }))
    }
}

/// Runs `Queue.maintain` whenever something changed or a build / quiet period is due.
async fn scheduler(sim: Simulator) {
    loop {
        let next = {
            let mut st = sim.lock();
            st.maintain(Instant::now())
        };
        let wait = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = sim.inner.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
