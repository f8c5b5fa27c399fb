//! The Lambda harness: the real function binaries, attached to `cargo lambda watch`, invoked the
//! way EventBridge and CloudFormation invoke them in AWS (the event JSON POSTed to the function's
//! invoke endpoint).
//!
//! Why it is built the way it is:
//! - **cargo-lambda never builds.** A plain `cargo lambda watch` compiles the function itself
//!   with its own package selection, which unifies features differently and recompiles every
//!   AWS SDK crate (TOOLCHAIN.md "Build cost"). The harness starts the emulator with
//!   `--only-lambda-apis` (runtime and invoke APIs only) and runs the binaries the workspace
//!   build already produced ([`binary_path`]).
//! - **One emulator serves every function.** The emulator's runtime API lives under
//!   `/.rt/<function>/2018-06-01/runtime/…` (cargo-lambda-watch `state.rs`: `runtime_url` is
//!   `http://<addr>/.rt`, `function_addr` appends `/<name>`; `runtime/mod.rs` routes
//!   `/:function_name/2018-06-01/runtime/invocation/next`), and its invoke API
//!   `/2015-03-31/functions/<name>/invocations` queues the event for that name. So each function
//!   process gets `AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:<port>/.rt/<name>` (AWS sets a bare
//!   `host:port`; lambda_runtime's client also takes a scheme and a base path:
//!   `lambda_runtime_api_client::set_origin`; the port is the forwarder's, see below), plus the
//!   variables `lambda_runtime::Config::from_env` panics without (`AWS_LAMBDA_FUNCTION_NAME`,
//!   `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION`): the same set
//!   cargo-lambda's own watcher gives the functions it starts (`watcher.rs`, `on_pre_spawn`).
//! - **Hermetic environment.** A function starts with an empty environment plus what Lambda
//!   would set (region, log group, `TZ`), static test credentials and
//!   `AWS_EC2_METADATA_DISABLED=true` (so the SDK never reaches for real credentials), then the
//!   caller's settings. A variable exported in the developer's shell (say `LONGSHORE_STACK`)
//!   can therefore never make a test pass by accident. `RUST_LOG` and `RUST_BACKTRACE` pass
//!   through for debugging.
//! - **Deadlines as in AWS.** cargo-lambda 1.9.2 answers `…/invocation/next` with
//!   `Lambda-Runtime-Deadline-Ms: 600000` (a constant: `runtime/functions_router.rs`) where AWS
//!   sends epoch milliseconds, so `Context::deadline` would lie in 1970 and a handler that
//!   budgets its work from it (config-resolver's `remaining_until`) would see no time left. The
//!   functions therefore reach the emulator through a small transparent forwarder of the
//!   harness ([`RuntimeProxy`]) that sets the deadline to *now + the function's timeout* and
//!   the invoked ARN to a real-looking one; everything else, bodies and the other headers, passes
//!   unchanged. The forwarder also tells when a function first polls for an event: that is
//!   when its init is done (lambda_runtime polls only after `main` parsed its settings and
//!   built its clients). A function that exits first failed at init
//!   ([`LambdaError::InitFailed`], with its output).
//! - **Never hangs.** The emulator queues an invocation until some process polls for it and has
//!   no timeout of its own, so every wait here is bounded: emulator start, function readiness,
//!   and each invocation (the function's [`FunctionSpec::timeout`], and a process that dies
//!   mid-invocation is reported at once instead of waited for).
//! - **Dies with its owner.** Like the moto harness: every process is spawned through
//!   [`spawn_tied_to_process`] (PDEATHSIG from a process-lifetime thread) and `Drop` stops the
//!   functions, then the emulator (SIGTERM, short grace, SIGKILL, reap), also while a panic
//!   unwinds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::moto::{REGION, spawn_tied_to_process, venv_dir};

/// How long [`LambdaFarm::start`] waits for the emulator to answer (it runs `cargo metadata`
/// first, which can wait on Cargo's package-cache lock while others build).
pub const EMULATOR_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`LambdaFarm::start`] waits for every function to finish its init and poll.
pub const FUNCTION_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The invocation timeout of a [`FunctionSpec::new`] (Lambda's own default is 3 s; the debug
/// binaries on a busy 2-core machine need more).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` unless the spec sets it: Lambda's default.
const DEFAULT_MEMORY_MB: &str = "128";
/// How many fresh ports the emulator start tries when the chosen one is taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How long `Drop` waits after SIGTERM before it sends SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Lines of output kept per process (older lines are dropped first).
const LOG_LINES_KEPT: usize = 20_000;
/// Lines of output quoted in error messages.
const ERROR_TAIL_LINES: usize = 40;
/// How often waits look at the processes again.
const POLL: Duration = Duration::from_millis(50);
/// The largest body the runtime forwarder passes (Lambda's synchronous payload limit is 6 MB).
const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// The account in the invoked-function ARN: moto's default account.
const ACCOUNT_ID: &str = "123456789012";

/// What can go wrong while starting the farm or invoking a function.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The venv has no `cargo-lambda`: the tools were never installed.
    #[error("cargo-lambda not found at {path}: run `make setup` (or set LONGSHORE_VENV)")]
    NotInstalled {
        /// The path that was looked at.
        path: PathBuf,
    },
    /// A function's binary has not been built.
    #[error(
        "no binary for function {function} at {path}: build the workspace first: cargo build --workspace --all-targets (with --release --bins --benches for a release binary)"
    )]
    BinaryMissing {
        /// The function (= binary) name.
        function: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The same function name was given twice, or a name that cannot be a URL path segment.
    #[error("invalid function list: {0}")]
    InvalidSpec(String),
    /// A process could not be started at all.
    #[error("could not start {what}: {source}")]
    Spawn {
        /// Which process.
        what: String,
        /// Why the OS refused.
        #[source]
        source: std::io::Error,
    },
    /// The emulator exited before it answered.
    #[error(
        "cargo lambda watch on port {port} exited early ({status}); its output ends with:\n{tail}"
    )]
    EmulatorExited {
        /// The port it was asked to listen on.
        port: u16,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// The emulator did not answer within [`EMULATOR_START_TIMEOUT`].
    #[error(
        "cargo lambda watch on port {port} did not answer within {waited:?}; its output ends with:\n{tail}"
    )]
    EmulatorTimeout {
        /// The port it was asked to listen on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The last lines it printed.
        tail: String,
    },
    /// Every fresh port was taken by someone else before the emulator could bind it.
    #[error("no free port for the emulator after {attempts} attempts; last error: {last}")]
    NoFreePort {
        /// How many ports were tried.
        attempts: usize,
        /// The last failure.
        last: Box<LambdaError>,
    },
    /// The function exited before it polled for its first event: its init failed (a missing
    /// setting, a client that cannot be built…). Its output says why.
    #[error("function {function} failed at init ({status}); its output ends with:\n{tail}")]
    InitFailed {
        /// The function.
        function: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// The function neither polled for an event nor exited within [`FUNCTION_READY_TIMEOUT`].
    #[error(
        "function {function} did not poll the runtime API within {waited:?}; its output ends with:\n{tail}"
    )]
    NotReady {
        /// The function.
        function: String,
        /// How long we waited.
        waited: Duration,
        /// The last lines it printed.
        tail: String,
    },
    /// The farm was not started with this function.
    #[error("function {0} is not part of this farm")]
    UnknownFunction(String),
    /// The function process is gone (before or during the invocation).
    #[error("function {function} exited ({status}); its output ends with:\n{tail}")]
    Exited {
        /// The function.
        function: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// The function did not answer within its timeout. The event stays queued in the emulator
    /// and the process is left as it is: drop the farm.
    #[error("function {function} did not answer within its timeout of {waited:?}")]
    Timeout {
        /// The function.
        function: String,
        /// Its configured timeout.
        waited: Duration,
    },
    /// The invoke request itself failed (connection refused, body unreadable).
    #[error("invoking {function} failed: {detail}")]
    Http {
        /// The function.
        function: String,
        /// Why.
        detail: String,
    },
    /// The emulator answered with something that is neither a result nor a function error
    /// (e.g. 404 "Missing function").
    #[error("the emulator answered the invocation of {function} with HTTP {status}: {body}")]
    Emulator {
        /// The function.
        function: String,
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// Local I/O (finding a free port, reading `/proc`) failed.
    #[error("lambda harness I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One function to run: which binary, with which settings, under which timeout.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The binary name, which is also the function name in the invoke URL.
    pub name: String,
    /// Settings on top of the Lambda-like defaults (e.g. `AWS_ENDPOINT_URL` pointing at moto,
    /// `LONGSHORE_STACK`, `DRY_RUN`); a default such as `AWS_REGION` can be overridden here,
    /// the runtime API variables cannot.
    pub env: Vec<(String, String)>,
    /// How long one invocation may take before [`LambdaFarm::invoke`] gives up.
    pub timeout: Duration,
    /// The executable; `None` is the workspace's debug build ([`binary_path`]).
    pub binary: Option<PathBuf>,
}

impl FunctionSpec {
    /// A function with no settings and [`DEFAULT_TIMEOUT`].
    pub fn new(name: impl Into<String>) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            binary: None,
        }
    }

    /// Runs this executable instead of the debug build (e.g. a release build, for the bench).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> FunctionSpec {
        self.binary = Some(path.into());
        self
    }

    /// The executable this spec runs.
    pub fn binary_path(&self) -> PathBuf {
        self.binary
            .clone()
            .unwrap_or_else(|| binary_path(&self.name))
    }

    /// Adds one setting (builder style, so a test reads as the function's configuration).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> FunctionSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the invocation timeout.
    pub fn timeout(mut self, timeout: Duration) -> FunctionSpec {
        self.timeout = timeout;
        self
    }
}

/// The function's answer, as the runtime reported it to the emulator.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The handler returned this payload.
    Ok(serde_json::Value),
    /// The handler (or the runtime, e.g. for an event it cannot deserialize) reported an error:
    /// lambda_runtime's `Diagnostic`.
    Failed {
        /// `errorType`, e.g. `NotBuiltYet`.
        error_type: String,
        /// `errorMessage`.
        error_message: String,
    },
}

/// The emulator, the runtime API forwarder and the function processes they serve; everything
/// stops when dropped and is killed when the owning process dies.
pub struct LambdaFarm {
    port: u16,
    emulator: Process,
    proxy: RuntimeProxy,
    functions: Vec<Function>,
    http: reqwest::Client,
}

impl std::fmt::Debug for LambdaFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaFarm")
            .field("port", &self.port)
            .field("emulator_pid", &self.emulator.pid)
            .field(
                "functions",
                &self
                    .functions
                    .iter()
                    .map(|f| (&f.spec.name, f.process.pid))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One started function.
struct Function {
    spec: FunctionSpec,
    process: Process,
    /// When the process was spawned: the start of its cold start.
    spawned_at: Instant,
    /// When it first polled for an event (init done).
    ready_at: Option<Instant>,
    /// How long its first invocation took, sent to answered: the handler's part of the cold
    /// start (the harness sends it whenever the caller asks, not at the first poll).
    first_call: Mutex<Option<Duration>>,
}

impl LambdaFarm {
    /// Starts the emulator on a free 127.0.0.1 port and the given functions (prebuilt binaries,
    /// see [`binary_path`]) with their settings, and waits (bounded) until every function has
    /// finished its init and polls for events.
    pub async fn start(functions: &[FunctionSpec]) -> Result<LambdaFarm, LambdaError> {
        let mut names = HashSet::new();
        let mut binaries = Vec::new();
        for spec in functions {
            let valid = !spec.name.is_empty()
                && spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(LambdaError::InvalidSpec(format!(
                    "{:?} is not a function name",
                    spec.name
                )));
            }
            if !names.insert(spec.name.as_str()) {
                return Err(LambdaError::InvalidSpec(format!(
                    "{} is listed twice",
                    spec.name
                )));
            }
            let path = spec.binary_path();
            if !path.is_file() {
                return Err(LambdaError::BinaryMissing {
                    function: spec.name.clone(),
                    path,
                });
            }
            binaries.push(path);
        }
        let http = reqwest::Client::builder()
            // Only loopback is ever called; a developer's HTTP_PROXY must not intercept it.
            .no_proxy()
            .build()
            .map_err(|e| LambdaError::Http {
                function: "-".into(),
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        let (port, emulator) = start_emulator(&http).await?;
        let timeouts = functions
            .iter()
            .map(|spec| (spec.name.clone(), spec.timeout))
            .collect();
        let proxy = RuntimeProxy::start(port, timeouts)?;
        let mut farm = LambdaFarm {
            port,
            emulator,
            proxy,
            functions: Vec::new(),
            http,
        };
        for (spec, binary) in functions.iter().zip(binaries) {
            let process = spawn_function(spec, &binary, farm.proxy.port)?;
            farm.functions.push(Function {
                spec: spec.clone(),
                process,
                spawned_at: Instant::now(),
                ready_at: None,
                first_call: Mutex::new(None),
            });
        }
        farm.wait_ready().await?;
        Ok(farm)
    }

    /// Invokes a function with an event, as EventBridge or CloudFormation would
    /// (`POST /2015-03-31/functions/<name>/invocations` on the emulator), and returns its
    /// answer. Bounded by the function's [`FunctionSpec::timeout`]; a function process that
    /// exits meanwhile is reported as [`LambdaError::Exited`] at once.
    pub async fn invoke(
        &self,
        function: &str,
        event: &serde_json::Value,
    ) -> Result<Invocation, LambdaError> {
        let f = self.function(function)?;
        if let Some(status) = f.process.exit_status() {
            return Err(f.exited(status).await);
        }
        let sent = Instant::now();
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations",
            self.port
        );
        let http_error = |e: reqwest::Error| LambdaError::Http {
            function: function.to_string(),
            detail: e.to_string(),
        };
        let call = async {
            let response = self
                .http
                .post(url)
                .json(event)
                .send()
                .await
                .map_err(http_error)?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(http_error)?;
            Ok::<_, LambdaError>((status, body))
        };
        let exit = async {
            loop {
                if let Some(status) = f.process.exit_status() {
                    return status;
                }
                tokio::time::sleep(POLL).await;
            }
        };
        let (status, body) = tokio::select! {
            answer = call => answer?,
            status = exit => return Err(f.exited(status).await),
            () = tokio::time::sleep(f.spec.timeout) => {
                return Err(LambdaError::Timeout {
                    function: function.to_string(),
                    waited: f.spec.timeout,
                });
            }
        };
        let invocation = parse_answer(function, status, &body)?;
        if let Ok(mut first) = f.first_call.lock() {
            first.get_or_insert_with(|| sent.elapsed());
        }
        Ok(invocation)
    }

    /// The function process's stdout and stderr so far (its JSON log lines and anything it
    /// printed before exiting), for tests to scan. Empty for an unknown function.
    pub fn logs(&self, function: &str) -> String {
        self.function(function)
            .map(|f| f.process.output.text())
            .unwrap_or_default()
    }

    /// The function process's id (for RSS measurements and to prove it is gone after drop).
    pub fn pid(&self, function: &str) -> Option<u32> {
        self.function(function).ok().map(|f| f.process.pid)
    }

    /// The emulator's process id.
    pub fn emulator_pid(&self) -> u32 {
        self.emulator.pid
    }

    /// The emulator's loopback port (its invoke API is `http://127.0.0.1:<port>/2015-03-31/…`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The emulator's output so far (cargo-lambda's own log lines), for diagnostics.
    pub fn emulator_logs(&self) -> String {
        self.emulator.output.text()
    }

    /// Process spawn → first poll for an event: the function's init time.
    pub fn ready_after(&self, function: &str) -> Option<Duration> {
        let f = self.function(function).ok()?;
        f.ready_at.map(|ready| ready - f.spawned_at)
    }

    /// Init plus the first invocation (sent → answered): the cold start a first event pays
    /// on AWS, where the event waits for the init and is handled at once.
    pub fn cold_start(&self, function: &str) -> Option<Duration> {
        let f = self.function(function).ok()?;
        let first = (*f.first_call.lock().ok()?)?;
        Some(f.ready_at? - f.spawned_at + first)
    }

    fn function(&self, name: &str) -> Result<&Function, LambdaError> {
        self.functions
            .iter()
            .find(|f| f.spec.name == name)
            .ok_or_else(|| LambdaError::UnknownFunction(name.to_string()))
    }

    /// Waits until every function has polled for its first event, fails the start as soon as
    /// one exits, and gives up after [`FUNCTION_READY_TIMEOUT`].
    async fn wait_ready(&mut self) -> Result<(), LambdaError> {
        let deadline = Instant::now() + FUNCTION_READY_TIMEOUT;
        loop {
            if let Some(status) = self.emulator.exit_status() {
                return Err(LambdaError::EmulatorExited {
                    port: self.port,
                    status,
                    tail: self.emulator.output.tail(ERROR_TAIL_LINES),
                });
            }
            let mut waiting = None;
            for f in self.functions.iter_mut().filter(|f| f.ready_at.is_none()) {
                if let Some(status) = f.process.exit_status() {
                    // Let the drain threads read the last words (the init error).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Err(LambdaError::InitFailed {
                        function: f.spec.name.clone(),
                        status,
                        tail: f.process.output.tail(ERROR_TAIL_LINES),
                    });
                }
                if let Some(polled_at) = self.proxy.first_poll(&f.spec.name) {
                    f.ready_at = Some(polled_at);
                    tracing::debug!(
                        function = %f.spec.name,
                        init_ms = (polled_at - f.spawned_at).as_millis() as u64,
                        "function polls the emulator"
                    );
                } else {
                    waiting.get_or_insert(f.spec.name.clone());
                }
            }
            let Some(function) = waiting else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let tail = self.logs(&function);
                return Err(LambdaError::NotReady {
                    function,
                    waited: FUNCTION_READY_TIMEOUT,
                    tail: last_lines(&tail, ERROR_TAIL_LINES),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for LambdaFarm {
    fn drop(&mut self) {
        // Functions first: with the emulator gone they would only log connection errors.
        for f in &self.functions {
            f.process.stop();
        }
        self.emulator.stop();
    }
}

impl Function {
    async fn exited(&self, status: String) -> LambdaError {
        // Give the drain threads a moment to read the last words.
        tokio::time::sleep(Duration::from_millis(100)).await;
        LambdaError::Exited {
            function: self.spec.name.clone(),
            status,
            tail: self.process.output.tail(ERROR_TAIL_LINES),
        }
    }
}

/// Where the workspace build puts a binary: `$CARGO_TARGET_DIR/debug/<name>` (a relative
/// `CARGO_TARGET_DIR` is taken from the workspace root, where `make` runs cargo), else
/// `<workspace>/target/debug/<name>`. The harness never builds: `cargo build --workspace --all-targets` does.
pub fn binary_path(name: &str) -> PathBuf {
    profile_binary_path("debug", name)
}

/// [`binary_path`] for another profile's directory (`release` for `cargo build --release`).
pub fn profile_binary_path(profile: &str, name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(PathBuf::from(dir)),
        _ => workspace.join("target"),
    };
    target.join(profile).join(name)
}

/// Where `cargo-lambda` is expected: `$LONGSHORE_VENV/bin/cargo-lambda`, else the workspace's
/// `.venv` (installed from requirements.txt by `make setup`).
pub fn cargo_lambda_path() -> PathBuf {
    venv_dir().join("bin").join("cargo-lambda")
}

/// The peak resident set size (`VmHWM` in `/proc/<pid>/status`) in KiB, while `pid` lives.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Maps the emulator's answer to the function's result. cargo-lambda answers 200 with the
/// payload, and 500 with the runtime's `Diagnostic` JSON when the function reported an error
/// (`runtime/functions_router.rs`: `…/error` is forwarded with `INTERNAL_SERVER_ERROR`).
fn parse_answer(function: &str, status: u16, body: &[u8]) -> Result<Invocation, LambdaError> {
    let emulator = || LambdaError::Emulator {
        function: function.to_string(),
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    match status {
        200 if body.is_empty() => Ok(Invocation::Ok(serde_json::Value::Null)),
        200 => serde_json::from_slice(body)
            .map(Invocation::Ok)
            .map_err(|_| emulator()),
        500 => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| emulator())?;
            match (value.get("errorType"), value.get("errorMessage")) {
                (Some(t), Some(m)) => Ok(Invocation::Failed {
                    error_type: t.as_str().unwrap_or_default().to_string(),
                    error_message: m.as_str().unwrap_or_default().to_string(),
                }),
                _ => Err(emulator()),
            }
        }
        _ => Err(emulator()),
    }
}

/// Starts `cargo lambda watch --only-lambda-apis` on a free loopback port (retrying on a new
/// port when another process took it meanwhile) and waits until it answers.
async fn start_emulator(http: &reqwest::Client) -> Result<(u16, Process), LambdaError> {
    let exe = cargo_lambda_path();
    if !exe.is_file() {
        return Err(LambdaError::NotInstalled { path: exe });
    }
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        match start_emulator_on(http, &exe, port).await {
            Ok(process) => return Ok((port, process)),
            Err(LambdaError::EmulatorExited { port, status, tail }) if port_taken(&tail) => {
                last = Some(LambdaError::EmulatorExited { port, status, tail });
            }
            Err(other) => return Err(other),
        }
    }
    Err(LambdaError::NoFreePort {
        attempts: PORT_ATTEMPTS,
        last: Box::new(last.unwrap_or(LambdaError::InvalidSpec("no attempt made".into()))),
    })
}

async fn start_emulator_on(
    http: &reqwest::Client,
    exe: &Path,
    port: u16,
) -> Result<Process, LambdaError> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = Command::new(exe);
    command
        // Called as `cargo-lambda lambda …`, which is what `cargo lambda …` executes.
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
        .args(["-P", &port.to_string()])
        // It reads the workspace's metadata (to know the binaries it may route to) and never
        // builds in this mode.
        .current_dir(&workspace)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let process = Process::spawn(command, "cargo lambda watch")?;
    let deadline = Instant::now() + EMULATOR_START_TIMEOUT;
    // A bogus request id's `…/response` is answered 200 by the emulator's own route and
    // touches no queue: proof that the runtime API is up, without invoking anything.
    let probe = format!(
        "http://127.0.0.1:{port}/.rt/2018-06-01/runtime/invocation/longshore-probe/response"
    );
    loop {
        if let Some(status) = process.exit_status() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(LambdaError::EmulatorExited {
                port,
                status,
                tail: process.output.tail(ERROR_TAIL_LINES),
            });
        }
        let answered = http
            .post(&probe)
            .body("{}")
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            return Ok(process);
        }
        if Instant::now() >= deadline {
            return Err(LambdaError::EmulatorTimeout {
                port,
                waited: EMULATOR_START_TIMEOUT,
                tail: process.output.tail(ERROR_TAIL_LINES),
            });
            // `process` drops here: the half-started emulator is stopped.
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts one function binary attached to the emulator on `port`.
fn spawn_function(spec: &FunctionSpec, binary: &Path, port: u16) -> Result<Process, LambdaError> {
    let name = &spec.name;
    let mut command = Command::new(binary);
    command.env_clear();
    for passthrough in ["RUST_LOG", "RUST_BACKTRACE"] {
        if let Some(value) = std::env::var_os(passthrough) {
            command.env(passthrough, value);
        }
    }
    command
        // What Lambda sets for every function.
        .env("AWS_REGION", REGION)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", DEFAULT_MEMORY_MB)
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "longshore-farm")
        .env("TZ", ":UTC")
        // Never real credentials, never the metadata service (the same static credentials the
        // moto harness uses).
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        // Last, so no setting can detach the function from its emulator.
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt/{name}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", name);
    Process::spawn(command, name)
}

/// A child process with its output captured; stopped by [`Process::stop`].
struct Process {
    pid: u32,
    child: Mutex<Option<Child>>,
    output: Output,
}

impl Process {
    fn spawn(mut command: Command, what: &str) -> Result<Process, LambdaError> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_tied_to_process(command).map_err(|source| LambdaError::Spawn {
            what: what.to_string(),
            source,
        })?;
        let output = Output::default();
        if let Some(out) = child.stdout.take() {
            output.drain(out, what);
        }
        if let Some(err) = child.stderr.take() {
            output.drain(err, what);
        }
        Ok(Process {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            output,
        })
    }

    /// `Some(status)` once the process has exited (it is reaped then).
    fn exit_status(&self) -> Option<String> {
        let mut guard = self.child.lock().ok()?;
        match guard.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown status: {e}")),
        }
    }

    /// SIGTERM, up to [`TERM_GRACE`] to exit, then SIGKILL; always reaps.
    fn stop(&self) {
        let Ok(mut guard) = self.child.lock() else {
            return;
        };
        let Some(mut child) = guard.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on a PID we spawned and have not reaped yet (so it cannot have
            // been recycled for another process).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A process's stdout and stderr lines, in arrival order, drained continuously by small threads
/// so a chatty function never blocks on a full pipe.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<VecDeque<String>>>);

impl Output {
    fn drain(&self, pipe: impl Read + Send + 'static, what: &str) {
        let lines = Arc::clone(&self.0);
        let spawned = std::thread::Builder::new()
            .name(format!("lambda-output-{what}"))
            .spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let Ok(mut kept) = lines.lock() else { break };
                    if kept.len() == LOG_LINES_KEPT {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, process = what, "cannot drain the output");
        }
    }

    fn text(&self) -> String {
        match self.0.lock() {
            Ok(kept) => kept.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }

    fn tail(&self, n: usize) -> String {
        last_lines(&self.text(), n)
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A port the OS considers free right now (it may be taken before the emulator binds it; the
/// caller retries).
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn port_taken(tail: &str) -> bool {
    tail.to_ascii_lowercase().contains("address already in use")
}

/// The forwarder between the function processes and the emulator's runtime API (see the module
/// docs, "Deadlines as in AWS"). It runs on its own thread with its own Tokio runtime, so it
/// keeps serving whatever the caller's runtime does (a current-thread test runtime blocked in
/// a synchronous wait, or no runtime at all); dropping it stops the thread.
pub struct RuntimeProxy {
    port: u16,
    state: Arc<ProxyState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the forwarder needs per request.
struct ProxyState {
    /// `http://127.0.0.1:<emulator port>`
    emulator: String,
    http: reqwest::Client,
    /// Each function's timeout: its deadline is *now + timeout* when it receives an event.
    timeouts: HashMap<String, Duration>,
    /// When each function first polled `…/invocation/next` (its init was done).
    polled: Mutex<HashMap<String, Instant>>,
}

impl RuntimeProxy {
    /// Listens on a free loopback port and forwards to the emulator on `emulator_port`.
    pub fn start(
        emulator_port: u16,
        timeouts: HashMap<String, Duration>,
    ) -> Result<RuntimeProxy, LambdaError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let http =
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| LambdaError::Spawn {
                    what: "the runtime API forwarder".into(),
                    source: std::io::Error::other(e),
                })?;
        let state = Arc::new(ProxyState {
            emulator: format!("http://127.0.0.1:{emulator_port}"),
            http,
            timeouts,
            polled: Mutex::new(HashMap::new()),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("lambda-runtime-proxy".into())
            .spawn(move || serve_proxy(listener, serving, stopped))
            .map_err(|source| LambdaError::Spawn {
                what: "the runtime API forwarder thread".into(),
                source,
            })?;
        Ok(RuntimeProxy {
            port,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The loopback port the functions' `AWS_LAMBDA_RUNTIME_API` points at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True once `function` has polled for an event (its init is done).
    pub fn has_polled(&self, function: &str) -> bool {
        self.first_poll(function).is_some()
    }

    /// When `function` first polled for an event, to the poll's arrival here.
    pub fn first_poll(&self, function: &str) -> Option<Instant> {
        let polled = self.state.polled.lock().ok()?;
        polled.get(function).copied()
    }
}

impl Drop for RuntimeProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Returns at once: the server future is dropped, not drained (see `serve_proxy`).
            let _ = thread.join();
        }
    }
}

/// The forwarder thread's body: serves until `stopped` fires, then drops every connection
/// (the long polls of the functions included) instead of waiting for them.
fn serve_proxy(
    listener: TcpListener,
    state: Arc<ProxyState>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime API forwarder");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the runtime API forwarder");
                return;
            }
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        tokio::select! {
            served = async { axum::serve(listener, app).await } => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "the runtime API forwarder stopped");
                }
            }
            _ = stopped => {}
        }
    });
}

/// Forwards one runtime API request to the emulator; on a delivered event (`…/next`) sets the
/// deadline and the invoked ARN the way AWS does.
async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    // `/.rt/<function>/2018-06-01/runtime/…`
    let function = path
        .strip_prefix("/.rt/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let is_next = parts.uri.path().ends_with("/runtime/invocation/next");
    if is_next && let Ok(mut polled) = state.polled.lock() {
        polled.entry(function.clone()).or_insert_with(Instant::now);
    }
    let body = match axum::body::to_bytes(body, MAX_PAYLOAD).await {
        Ok(body) => body,
        Err(e) => return bad_gateway(format!("unreadable request body: {e}")),
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let answer = state
        .http
        .request(parts.method, format!("{}{path}", state.emulator))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return bad_gateway(format!("the emulator did not answer: {e}")),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    strip_hop_by_hop(&mut headers);
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return bad_gateway(format!("unreadable emulator answer: {e}")),
    };
    if is_next
        && status == StatusCode::OK
        && let Some(timeout) = state.timeouts.get(&function)
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let deadline_ms = u64::try_from((now + *timeout).as_millis()).unwrap_or(u64::MAX);
        headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline_ms));
        let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}");
        if let Ok(arn) = HeaderValue::from_str(&arn) {
            headers.insert("lambda-runtime-invoked-function-arn", arn);
        }
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Headers that describe one connection, not the message: each side sets its own.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
}

fn bad_gateway(detail: String) -> Response {
    tracing::warn!(%detail, "runtime API forwarder");
    let mut response = Response::new(Body::from(detail));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_error_is_the_runtime_diagnostic() {
        let body = br#"{"errorType":"NotBuiltYet","errorMessage":"not yet"}"#;
        assert_eq!(
            parse_answer("recovery", 500, body).unwrap(),
            Invocation::Failed {
                error_type: "NotBuiltYet".into(),
                error_message: "not yet".into()
            }
        );
    }

    #[test]
    fn a_payload_is_ok_and_an_empty_body_is_null() {
        assert_eq!(
            parse_answer("f", 200, br#"{"a":1}"#).unwrap(),
            Invocation::Ok(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            parse_answer("f", 200, b"").unwrap(),
            Invocation::Ok(serde_json::Value::Null)
        );
    }

    #[test]
    fn an_emulator_answer_is_not_a_function_error() {
        let body = br#"{"title":"Missing function","detail":"x"}"#;
        assert!(matches!(
            parse_answer("nosuch", 404, body),
            Err(LambdaError::Emulator { status: 404, .. })
        ));
        assert!(matches!(
            parse_answer("f", 500, br#"{"title":"Internal Server Error"}"#),
            Err(LambdaError::Emulator { status: 500, .. })
        ));
    }

    #[test]
    fn binaries_live_in_the_debug_profile() {
        let path = binary_path("recovery");
        assert!(path.ends_with("debug/recovery"), "{path:?}");
    }

    #[test]
    fn peak_rss_of_this_process_is_known() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    /// A stand-in for cargo-lambda's runtime API: every answer carries its constant deadline.
    async fn fake_emulator() -> u16 {
        async fn answer(request: Request) -> Response {
            let mut response = Response::new(Body::from(request.uri().path().to_string()));
            response
                .headers_mut()
                .insert("lambda-runtime-deadline-ms", HeaderValue::from(600_000u64));
            response
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, axum::Router::new().fallback(answer))
                .await
                .unwrap()
        });
        port
    }

    #[tokio::test]
    async fn the_forwarder_sets_the_deadline_of_a_delivered_event() {
        let emulator = fake_emulator().await;
        let timeouts = HashMap::from([("recovery".to_string(), Duration::from_secs(30))]);
        let proxy = RuntimeProxy::start(emulator, timeouts).unwrap();
        assert!(!proxy.has_polled("recovery"));
        let base = format!(
            "http://127.0.0.1:{}/.rt/recovery/2018-06-01/runtime",
            proxy.port()
        );
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert!(proxy.has_polled("recovery"));
        let deadline: u64 = next.headers()["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let expected = (before + Duration::from_secs(30)).as_millis() as u64;
        assert!(
            (expected..expected + 5_000).contains(&deadline),
            "{deadline} vs {expected}"
        );
        assert_eq!(
            next.headers()["lambda-runtime-invoked-function-arn"],
            "arn:aws:lambda:us-east-1:123456789012:function:recovery"
        );
        assert_eq!(
            next.text().await.unwrap(),
            "/.rt/recovery/2018-06-01/runtime/invocation/next"
        );

        // Anything else passes unchanged.
        let posted = http
            .post(format!("{base}/invocation/abc/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.headers()["lambda-runtime-deadline-ms"], "600000");
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }
}
