//! Runs the REAL agent boot script (taken out of the rendered user data) with bash against
//! fakes: a loopback IMDSv2 and master (agent.jar) server, moto for SSM through the real `aws`
//! CLI of the venv, and a fake `java` that records its argv. Proves the script waits for its
//! secret, fetches agent.jar from its master, execs java with `-secret @file` (the secret never
//! reaches a log or a command line), and fails clearly when the secret never comes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use longshore::domain::render::{AgentBootParams, agent_user_data, parse_agent_user_data};
use longshore_farm::moto::MotoServer;
use longshore_tests::{TempDir, venv_dir};

const INSTANCE_ID: &str = "i-0123456789abcdef0";
const TOKEN: &str = "imds-session-token";
const JAR: &[u8] = b"PK\x03\x04 not really a jar";

#[derive(Default)]
struct Seen {
    token_puts: usize,
    gets_without_token: Vec<String>,
    jar_fetches: Vec<Instant>,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
    master_url: String,
}

fn has_token(headers: &HeaderMap) -> bool {
    headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        == Some(TOKEN)
}

/// IMDSv2 (token, instance-id, instance tags) and the master's `jnlpJars/agent.jar` on one
/// loopback port. Returns the port.
async fn start_fakes(seen: Arc<Mutex<Seen>>) -> (u16, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // No trailing slash on purpose: the script must add it.
    let master_url = format!("http://127.0.0.1:{port}/jenkins");
    let fake = Fake {
        seen,
        master_url: master_url.clone(),
    };
    let app = Router::new()
        .route(
            "/latest/api/token",
            put(|State(f): State<Fake>, headers: HeaderMap| async move {
                f.seen.lock().unwrap().token_puts += 1;
                match headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(_) => (StatusCode::OK, TOKEN.to_string()),
                    None => (StatusCode::BAD_REQUEST, String::new()),
                }
            }),
        )
        .route(
            "/latest/meta-data/instance-id",
            get(|State(f): State<Fake>, headers: HeaderMap| async move {
                if !has_token(&headers) {
                    f.seen.lock().unwrap().gets_without_token.push("instance-id".into());
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                (StatusCode::OK, INSTANCE_ID.to_string())
            }),
        )
        .route(
            "/latest/meta-data/tags/instance/{key}",
            get(
                |State(f): State<Fake>, UrlPath(key): UrlPath<String>, headers: HeaderMap| async move {
                    if !has_token(&headers) {
                        f.seen.lock().unwrap().gets_without_token.push(key);
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    match key.as_str() {
                        "longshore:master" => (StatusCode::OK, "alpha".to_string()),
                        "longshore:master-url" => (StatusCode::OK, f.master_url.clone()),
                        "longshore:stack" => (StatusCode::OK, "ci-farm".to_string()),
                        _ => (StatusCode::NOT_FOUND, String::new()),
                    }
                },
            ),
        )
        .route(
            "/jenkins/jnlpJars/agent.jar",
            get(|State(f): State<Fake>| async move {
                f.seen.lock().unwrap().jar_fetches.push(Instant::now());
                JAR.to_vec()
            }),
        )
        .with_state(fake);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, master_url)
}

/// The boot pieces taken from the rendered user data, with the settings a test needs.
struct Boot {
    dir: TempDir,
    script: PathBuf,
    env_file: PathBuf,
    work_dir: PathBuf,
    bin_dir: PathBuf,
}

fn set(env: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out: Vec<String> = env
        .lines()
        .map(|line| {
            if line.starts_with(&format!("{key}=")) {
                found = true;
                format!("{key}={value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(found, "{key} is not in the rendered settings file");
    out.push(String::new());
    out.join("\n")
}

fn prepare(imds_port: u16, secret_wait_seconds: u32) -> Boot {
    let user_data = agent_user_data(&AgentBootParams {
        region: "us-east-1".into(),
        stack_name: "ci-farm".into(),
    });
    let settings = parse_agent_user_data(&user_data).expect("rendered user data parses");
    let dir = TempDir::new("longshore-boot").expect("temp dir");
    let work_dir = dir.path().join("work");
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");

    let mut env = settings.env_file.clone();
    env = set(
        &env,
        "LONGSHORE_IMDS_ENDPOINT",
        &format!("http://127.0.0.1:{imds_port}"),
    );
    env = set(
        &env,
        "LONGSHORE_WORK_DIR",
        work_dir.to_str().expect("utf-8 path"),
    );
    env = set(
        &env,
        "LONGSHORE_SECRET_WAIT_SECONDS",
        &secret_wait_seconds.to_string(),
    );
    let env_file = dir.path().join("agent.env");
    std::fs::write(&env_file, env).expect("env file");

    let script = dir.path().join("longshore-agent-boot");
    std::fs::write(&script, &settings.boot_script).expect("script");

    // A java that records its argv and what "-secret @file" points at, then exits 0.
    let java = bin_dir.join("java");
    std::fs::write(
        &java,
        "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$FAKE_JAVA_ARGV\"\n\
         for a in \"$@\"; do case \"$a\" in @*) cp \"${a#@}\" \"$FAKE_JAVA_SECRET\";; esac; done\n\
         exit 0\n",
    )
    .expect("fake java");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Boot {
        dir,
        script,
        env_file,
        work_dir,
        bin_dir,
    }
}

fn command(boot: &Boot, moto: &MotoServer) -> tokio::process::Command {
    let venv_bin = venv_dir().join("bin");
    assert!(
        venv_bin.join("aws").is_file(),
        "no aws CLI in {venv_bin:?}: run `make setup`"
    );
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        boot.bin_dir.display(),
        venv_bin.display()
    );
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(&boot.script)
        .env_clear()
        .env("PATH", path)
        .env("HOME", boot.dir.path())
        .env("LANG", "C.UTF-8")
        .env("LONGSHORE_AGENT_ENV", &boot.env_file)
        .env("AWS_ENDPOINT_URL", moto.endpoint_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("FAKE_JAVA_ARGV", boot.dir.path().join("java-argv"))
        .env("FAKE_JAVA_SECRET", boot.dir.path().join("java-secret"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn the_boot_waits_for_its_secret_then_execs_java_with_a_secret_file() {
    let moto = MotoServer::start().expect("moto");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (port, master_url) = start_fakes(Arc::clone(&seen)).await;
    let boot = prepare(port, 60);
    let child = command(&boot, &moto).spawn().expect("bash");

    // Let the script poll SSM a few times while the parameter does not exist yet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        seen.lock().unwrap().jar_fetches.is_empty(),
        "agent.jar fetched before the secret existed"
    );
    assert!(
        !boot.dir.path().join("java-argv").exists(),
        "java ran before the secret existed"
    );

    let secret = "5ecret-0f-the-agent-4f8a9c";
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let written_at = Instant::now();
    ssm.put_parameter()
        .name(format!("/longshore/ci-farm/agents/{INSTANCE_ID}"))
        .value(secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter");

    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the boot finished within 60 s")
        .expect("bash output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "boot failed: {stderr}");

    let work = boot.work_dir.to_str().unwrap().to_string();
    let argv: Vec<String> = read(&boot.dir.path().join("java-argv"))
        .lines()
        .map(str::to_string)
        .collect();
    let want: Vec<String> = [
        "-jar",
        &format!("{work}/agent.jar"),
        "-url",
        &format!("{master_url}/"),
        "-name",
        INSTANCE_ID,
        "-secret",
        &format!("@{work}/.agent-secret"),
        "-webSocket",
        "-workDir",
        &work,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(argv, want);
    assert_eq!(
        read(&boot.dir.path().join("java-secret")).trim_end(),
        secret
    );
    assert_eq!(
        std::fs::read(boot.work_dir.join("agent.jar")).expect("jar"),
        JAR
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen.jar_fetches.len(), 1);
    assert!(
        seen.jar_fetches[0] >= written_at,
        "jar fetched before the secret was written"
    );
    assert!(seen.token_puts >= 1, "no IMDSv2 token requested");
    assert!(
        seen.gets_without_token.is_empty(),
        "IMDS read without token: {:?}",
        seen.gets_without_token
    );
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "secret leaked to the logs: {stderr}"
    );
    assert!(
        stderr.contains(&format!("instance {INSTANCE_ID}, master alpha")),
        "{stderr}"
    );

    // The secret file is private to the agent's user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(boot.work_dir.join(".agent-secret"))
        .expect("secret file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "secret file mode {mode:o}");
}

#[tokio::test]
async fn the_boot_fails_clearly_when_the_secret_never_comes() {
    let moto = MotoServer::start().expect("moto");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (port, _) = start_fakes(Arc::clone(&seen)).await;
    let boot = prepare(port, 2);
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        command(&boot, &moto)
            .spawn()
            .expect("bash")
            .wait_with_output(),
    )
    .await
    .expect("the boot gave up within 60 s")
    .expect("bash output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "FATAL: secret /longshore/ci-farm/agents/{INSTANCE_ID} did not appear within 2 s"
        )),
        "{stderr}"
    );
    // It waited before giving up: the script's deadline is whole seconds of `date +%s`, so a
    // 2 s bound lasts between 1 and 2 s of wall time.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !boot.dir.path().join("java-argv").exists(),
        "java ran without a secret"
    );
    assert!(seen.lock().unwrap().jar_fetches.is_empty());
}
