//! The moto harness: one private `moto_server` per test (or per demo), on a fresh loopback port,
//! that dies with the process that started it.
//!
//! Why it is built the way it is:
//! - **Fresh port, own process.** A test must never talk to a server left over by an earlier run
//!   or owned by another test. [`MotoServer::start`] picks a free port, starts `moto_server` on it
//!   and only declares it ready once *its own* PID owns the listening socket (checked through
//!   `/proc/net/tcp` and `/proc/<pid>/fd`) and it answers HTTP. If another process grabbed the
//!   port in between, our server exits with "address in use" and we retry on a new port.
//! - **Dies with its owner.** `Drop` stops the server (SIGTERM, short wait, SIGKILL, reap), also
//!   while a panic unwinds. For the cases where `Drop` never runs (`panic = "abort"`, the test
//!   process killed with SIGKILL) the child is started with `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
//!   Linux delivers that signal when the *thread* that forked the child exits, not the process:
//!   libtest runs every test on its own short-lived thread, so spawning from the test thread
//!   would kill the server as soon as that test's thread ends (or, worse, a later test's server
//!   would outlive nothing in particular). Every server is therefore spawned by one dedicated
//!   spawner thread that lives as long as the process and takes requests over a channel.
//! - **Bounded.** Startup waits at most [`START_TIMEOUT`]; a server that exits early fails the
//!   start with the tail of its output, so a broken venv says why.
//!
//! The Python tools live in a venv: `$LONGSHORE_VENV/bin/moto_server` (the Makefile exports
//! `LONGSHORE_VENV`), falling back to `<workspace>/.venv`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::AttributeBooleanValue;

/// How long [`MotoServer::start`] waits for one server to answer before giving up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports [`MotoServer::start`] tries when the chosen one is taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How long `Drop` waits after SIGTERM before it sends SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Lines of the server's output kept for error messages.
const OUTPUT_TAIL_LINES: usize = 40;
/// The region every test and the demo use.
pub const REGION: &str = "us-east-1";

/// What can go wrong while starting, resetting or preparing a moto server.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// The venv (or its `moto_server`) is not there: the tools were never installed.
    #[error("moto_server not found at {path}: run `make setup` (or set LONGSHORE_VENV)")]
    NotInstalled {
        /// The path that was looked at.
        path: PathBuf,
    },
    /// The process could not be started at all.
    #[error("could not start {path}: {source}")]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// Why the OS refused.
        #[source]
        source: std::io::Error,
    },
    /// The server exited before it answered.
    #[error("moto_server on port {port} exited early ({status}); its output ends with:\n{tail}")]
    Exited {
        /// The port it was asked to listen on.
        port: u16,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// The server did not answer within the bound.
    #[error(
        "moto_server on port {port} did not answer within {waited:?}; its output ends with:\n{tail}"
    )]
    Timeout {
        /// The port it was asked to listen on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The last lines it printed.
        tail: String,
    },
    /// Every fresh port we tried was taken by someone else before the server could bind it.
    #[error("no free port after {attempts} attempts; last error: {last}")]
    NoFreePort {
        /// How many ports were tried.
        attempts: usize,
        /// The last failure.
        last: Box<MotoError>,
    },
    /// Local I/O (finding a free port, the spawner thread) failed.
    #[error("moto harness I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An HTTP call to the moto API failed.
    #[error("moto API call {what} failed: {detail}")]
    Api {
        /// Which call.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// One subnet made by [`MotoServer::prepare_network`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSubnet {
    /// `subnet-…`
    pub subnet_id: String,
    /// The availability zone it lives in.
    pub availability_zone: String,
    /// Its CIDR block.
    pub cidr: String,
}

/// The network pre-created in moto (MOTO.md "Pre-create"): what the template and the scaler
/// expect to find already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestNetwork {
    /// `vpc-…`, created with DNS support and DNS hostnames on (ECS awsvpc needs them in moto).
    pub vpc_id: String,
    /// Two subnets in two different availability zones.
    pub subnets: Vec<TestSubnet>,
}

/// A private moto server; stopped when dropped, killed when the owning process dies.
pub struct MotoServer {
    port: u16,
    pid: u32,
    child: Option<Child>,
    output: OutputTail,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("port", &self.port)
            .field("pid", &self.pid)
            .finish()
    }
}

impl MotoServer {
    /// Starts a fresh server on a free loopback port and waits (at most [`START_TIMEOUT`]) until
    /// it answers. Blocking: call it before or outside hot async paths.
    pub fn start() -> Result<MotoServer, MotoError> {
        let exe = moto_server_path();
        if !exe.is_file() {
            return Err(MotoError::NotInstalled { path: exe });
        }
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match start_on(&exe, port) {
                Ok(server) => return Ok(server),
                // Someone took the port between our probe and the server's bind: try another.
                Err(MotoError::Exited { port, status, tail }) if port_taken(&tail) => {
                    last = Some(MotoError::Exited { port, status, tail });
                }
                Err(other) => return Err(other),
            }
        }
        Err(MotoError::NoFreePort {
            attempts: PORT_ATTEMPTS,
            last: Box::new(last.unwrap_or(MotoError::Api {
                what: "start",
                detail: "no attempt made".into(),
            })),
        })
    }

    /// `http://127.0.0.1:<port>`, what the SDK's `endpoint_url` and `AWS_ENDPOINT_URL` take.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to prove in tests that it is gone).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines the server printed (its request log), for diagnostics.
    pub fn output_tail(&self) -> String {
        self.output.text()
    }

    /// An SDK config aimed at this server: region us-east-1, static test credentials, no retries
    /// (moto answers unimplemented calls with 500, which the SDK would otherwise retry for
    /// seconds; TOOLCHAIN.md).
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint_url()).await
    }

    /// Empties every service (`POST /moto-api/reset`); moto recreates the default VPC.
    pub async fn reset(&self) -> Result<(), MotoError> {
        let url = format!("{}/moto-api/reset", self.endpoint_url());
        let response = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .map_err(|e| api_error("reset", e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(MotoError::Api {
                what: "reset",
                detail: format!("HTTP {status}: {body}"),
            });
        }
        Ok(())
    }

    /// Creates the network the stack expects to exist (MOTO.md "Pre-create"): a VPC with DNS
    /// hostnames on and two subnets in two availability zones of the region.
    pub async fn prepare_network(&self) -> Result<TestNetwork, MotoError> {
        let ec2 = aws_sdk_ec2::Client::new(&self.sdk_config().await);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .map_err(|e| sdk_error("CreateVpc", e))?;
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .ok_or_else(|| MotoError::Api {
                what: "CreateVpc",
                detail: "no VpcId in the answer".into(),
            })?
            .to_string();
        // One attribute per call: that is what the EC2 API accepts.
        for hostnames in [false, true] {
            let mut call = ec2.modify_vpc_attribute().vpc_id(&vpc_id);
            let on = AttributeBooleanValue::builder().value(true).build();
            call = if hostnames {
                call.enable_dns_hostnames(on)
            } else {
                call.enable_dns_support(on)
            };
            call.send()
                .await
                .map_err(|e| sdk_error("ModifyVpcAttribute", e))?;
        }
        let zones = ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| sdk_error("DescribeAvailabilityZones", e))?;
        let mut names: Vec<String> = zones
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        names.sort();
        if names.len() < 2 {
            return Err(MotoError::Api {
                what: "DescribeAvailabilityZones",
                detail: format!("need two zones in {REGION}, got {names:?}"),
            });
        }
        let mut subnets = Vec::new();
        for (i, az) in names.iter().take(2).enumerate() {
            let cidr = format!("10.0.{}.0/24", i + 1);
            let out = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(&cidr)
                .availability_zone(az)
                .send()
                .await
                .map_err(|e| sdk_error("CreateSubnet", e))?;
            let subnet_id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or_else(|| MotoError::Api {
                    what: "CreateSubnet",
                    detail: "no SubnetId in the answer".into(),
                })?
                .to_string();
            subnets.push(TestSubnet {
                subnet_id,
                availability_zone: az.clone(),
                cidr,
            });
        }
        Ok(TestNetwork { vpc_id, subnets })
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, TERM_GRACE);
        }
    }
}

/// An SDK config for any moto endpoint (the same settings as [`MotoServer::sdk_config`]), for
/// callers that only know the URL (the demo's subprocesses, the booter's tests).
pub async fn sdk_config_for(endpoint_url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "longshore-moto",
        ))
        .endpoint_url(endpoint_url)
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// Where `moto_server` is expected: `$LONGSHORE_VENV/bin/moto_server`, else the workspace's
/// `.venv` (this crate lives one level below the workspace root).
pub fn moto_server_path() -> PathBuf {
    venv_dir().join("bin").join("moto_server")
}

/// The Python venv with moto and the AWS CLI (`$LONGSHORE_VENV`, else `<workspace>/.venv`).
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("LONGSHORE_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".venv"),
    }
}

fn api_error(what: &'static str, e: impl std::fmt::Display) -> MotoError {
    MotoError::Api {
        what,
        detail: e.to_string(),
    }
}

fn sdk_error<E, R>(what: &'static str, e: aws_sdk_ec2::error::SdkError<E, R>) -> MotoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown"),
            service.message().unwrap_or("")
        ),
        None => format!("{e:?}"),
    };
    MotoError::Api { what, detail }
}

/// A port the OS considers free right now (it may be taken again before moto binds it; the
/// caller retries).
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn port_taken(tail: &str) -> bool {
    let t = tail.to_ascii_lowercase();
    t.contains("address already in use") || t.contains("is in use by another program")
}

fn start_on(exe: &Path, port: u16) -> Result<MotoServer, MotoError> {
    let mut command = Command::new(exe);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_PORT", port.to_string())
        // The Python tools must never reach for real credentials or the metadata service.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_tied_to_process(command).map_err(|source| MotoError::Spawn {
        path: exe.to_path_buf(),
        source,
    })?;
    let pid = child.id();
    let output = OutputTail::default();
    if let Some(out) = child.stdout.take() {
        output.drain(out);
    }
    if let Some(err) = child.stderr.take() {
        output.drain(err);
    }
    let mut server = MotoServer {
        port,
        pid,
        child: Some(child),
        output,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(child) = server.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            server.child = None; // reaped already
            // Give the drain threads a moment to read the last words.
            std::thread::sleep(Duration::from_millis(100));
            return Err(MotoError::Exited {
                port,
                status: status.to_string(),
                tail: server.output.text(),
            });
        }
        if owns_listening_port(pid, port) && answers_http(port) {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            return Err(MotoError::Timeout {
                port,
                waited: START_TIMEOUT,
                tail: server.output.text(),
            });
            // `server` drops here: the half-started process is stopped.
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when the process `pid` owns a socket listening on 127.0.0.1:`port` (so whatever answers
/// on that port is our server and not a leftover). Reads `/proc/net/tcp` and `/proc/<pid>/fd`.
fn owns_listening_port(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (cols.len() > 9 && cols[1] == wanted && cols[3] == "0A")
                .then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// One blocking `GET /moto-api/data.json`; true on an HTTP 200.
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Stops a child: SIGTERM, up to `grace` for it to exit, then SIGKILL; always reaps it.
fn stop_child(mut child: Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    // SAFETY: kill(2) with a PID we spawned and have not reaped yet (so it cannot be recycled).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines a child printed on stdout and stderr. Both pipes are drained continuously by
/// small threads, so a chatty server (moto logs every request) never blocks on a full pipe.
#[derive(Clone, Default)]
struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    fn drain(&self, pipe: impl Read + Send + 'static) {
        let lines = Arc::clone(&self.0);
        let spawned = std::thread::Builder::new()
            .name("moto-output".into())
            .spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let Ok(mut tail) = lines.lock() else { break };
                    if tail.len() == OUTPUT_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot drain moto_server output");
        }
    }

    fn text(&self) -> String {
        match self.0.lock() {
            Ok(tail) => tail.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }
}

/// A request to the spawner thread: the command, and where to send the child back.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from the process-lifetime spawner thread with `PR_SET_PDEATHSIG = SIGKILL`,
/// so the child is killed when this process dies, however it dies.
///
/// PDEATHSIG is tied to the thread that forked the child, which is why the fork must happen on
/// a thread that never exits (see the module docs).
pub fn spawn_tied_to_process(mut command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe
    // functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("longshore-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the sender sits in a static and is never dropped.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is not running"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread dropped the request"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_taken_recognises_werkzeug_messages() {
        assert!(port_taken("OSError: [Errno 98] Address already in use"));
        assert!(port_taken("Port 5000 is in use by another program."));
        assert!(!port_taken("ImportError: no module named moto"));
    }

    #[test]
    fn venv_falls_back_to_the_workspace() {
        let path = moto_server_path();
        assert!(path.ends_with("bin/moto_server"), "{path:?}");
    }
}
