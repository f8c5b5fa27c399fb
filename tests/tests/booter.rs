//! The booter against moto and a master: instances launched into moto with the rendered user
//! data boot, fetch their secret and agent.jar, and connect over WebSocket exactly like
//! agent.jar `-webSocket`; bad user data is skipped, refusals are recorded, terminated
//! instances disconnect, and each injected fault behaves as named.
//!
//! `fake_master` tests check the wire (headers, cookie on reconnect) against a scripted master
//! in this file; `sim_` tests run the same scenarios against the project's Jenkins simulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use longshore::domain::render::{AgentBootParams, agent_user_data};
use longshore_farm::booter::{
    AgentState, BootFault, Booter, BooterConfig, BooterHandle, REMOTING_CAPABILITY,
};
use longshore_farm::moto::MotoServer;
use longshore_tests::{
    AgentLaunch, init_tracing, launch_agents, put_agent_secret, wait_until_async,
};
use tokio::sync::mpsc;

const STACK: &str = "ci-farm";
const LIMIT: Duration = Duration::from_secs(20);

// ----- a scripted master ------------------------------------------------------------------

/// One handshake the master saw.
#[derive(Debug, Clone)]
struct Handshake {
    name: String,
    secret: String,
    capability: Option<String>,
    cookie: Option<String>,
    status: u16,
}

enum Ctl {
    Text(String),
    Close,
}

#[derive(Default)]
struct MasterState {
    secrets: HashMap<String, String>,
    handshakes: Vec<Handshake>,
    sockets: HashMap<String, mpsc::UnboundedSender<Ctl>>,
    jar_fetches: usize,
    next_cookie: u32,
}

#[derive(Clone, Default)]
struct FakeMaster(Arc<Mutex<MasterState>>);

impl FakeMaster {
    async fn start() -> (FakeMaster, String) {
        let master = FakeMaster::default();
        let app = Router::new()
            .route(
                "/jnlpJars/agent.jar",
                get(|State(m): State<FakeMaster>| async move {
                    m.0.lock().unwrap().jar_fetches += 1;
                    b"PK\x03\x04fake".to_vec()
                }),
            )
            .route("/wsagents/", get(ws_agents))
            .with_state(master.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (master, url)
    }

    fn add_agent(&self, name: &str, secret: &str) {
        self.0
            .lock()
            .unwrap()
            .secrets
            .insert(name.into(), secret.into());
    }
    fn online(&self, name: &str) -> bool {
        self.0.lock().unwrap().sockets.contains_key(name)
    }
    fn handshakes(&self, name: &str) -> Vec<Handshake> {
        self.0
            .lock()
            .unwrap()
            .handshakes
            .iter()
            .filter(|h| h.name == name)
            .cloned()
            .collect()
    }
    fn send(&self, name: &str, ctl: Ctl) {
        if let Some(tx) = self.0.lock().unwrap().sockets.get(name) {
            let _ = tx.send(ctl);
        }
    }
    fn jar_fetches(&self) -> usize {
        self.0.lock().unwrap().jar_fetches
    }
}

/// `WebSocketAgents.doIndex`: 400 without the three headers or for an unknown agent, 403 for a
/// wrong secret, else the upgrade with a `Connection-Cookie`.
async fn ws_agents(
    State(m): State<FakeMaster>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(name), Some(secret), Some(capability)) =
        (h("Node-Name"), h("Secret-Key"), h("X-Remoting-Capability"))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "This endpoint is only for use from agent.jar in WebSocket mode",
        )
            .into_response();
    };
    let mut state = m.0.lock().unwrap();
    let status = match state.secrets.get(&name) {
        None => 400,
        Some(s) if *s != secret => 403,
        Some(_) => 101,
    };
    state.handshakes.push(Handshake {
        name: name.clone(),
        secret,
        capability: Some(capability),
        cookie: h("Connection-Cookie"),
        status,
    });
    match status {
        400 => return (StatusCode::BAD_REQUEST, "no such agent").into_response(),
        403 => return StatusCode::FORBIDDEN.into_response(),
        _ => {}
    }
    state.next_cookie += 1;
    let cookie = format!("cookie-{}", state.next_cookie);
    let (tx, rx) = mpsc::unbounded_channel();
    state.sockets.insert(name.clone(), tx);
    drop(state);
    let master = m.clone();
    (
        [
            ("Connection-Cookie", cookie),
            ("X-Remoting-Capability", REMOTING_CAPABILITY.to_string()),
        ],
        ws.on_upgrade(move |socket| serve_agent(master, name, socket, rx)),
    )
        .into_response()
}

async fn serve_agent(
    m: FakeMaster,
    name: String,
    mut socket: WebSocket,
    mut rx: mpsc::UnboundedReceiver<Ctl>,
) {
    let _ = socket.send(WsMessage::Ping(b"hi".to_vec().into())).await;
    loop {
        tokio::select! {
            ctl = rx.recv() => match ctl {
                Some(Ctl::Text(t)) => { let _ = socket.send(WsMessage::Text(t.into())).await; }
                Some(Ctl::Close) | None => { let _ = socket.send(WsMessage::Close(None)).await; break; }
            },
            frame = socket.recv() => match frame {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    m.0.lock().unwrap().sockets.remove(&name);
}

// ----- the farm around it -------------------------------------------------------------------

struct Farm {
    _moto: MotoServer,
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    sdk: aws_config::SdkConfig,
    user_data: String,
}

async fn farm() -> Farm {
    init_tracing();
    let moto = MotoServer::start().expect("moto");
    let sdk = moto.sdk_config().await;
    Farm {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        ssm: aws_sdk_ssm::Client::new(&sdk),
        sdk,
        _moto: moto,
        user_data: agent_user_data(&AgentBootParams {
            region: "us-east-1".into(),
            stack_name: STACK.into(),
        }),
    }
}

impl Farm {
    async fn launch(&self, master_url: &str, user_data: Option<&[u8]>) -> String {
        let ids = launch_agents(
            &self.ec2,
            &AgentLaunch {
                stack: STACK,
                master: "alpha",
                master_url,
                label: "docker",
                user_data: Some(user_data.unwrap_or(self.user_data.as_bytes())),
                count: 1,
            },
        )
        .await;
        ids.into_iter().next().expect("one instance")
    }

    async fn terminate(&self, id: &str) {
        self.ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("TerminateInstances");
    }
}

fn config() -> BooterConfig {
    BooterConfig::fast(STACK)
}

async fn state_is(booter: &BooterHandle, id: &str, want: impl Fn(&AgentState) -> bool) -> bool {
    wait_until_async(LIMIT, || {
        let state = booter.state(id);
        let ok = state.as_ref().is_some_and(&want);
        async move { ok }
    })
    .await
}

// ----- against the scripted master ----------------------------------------------------------

#[tokio::test]
async fn fake_master_an_instance_connects_like_agent_jar() {
    let farm = farm().await;
    let (master, url) = FakeMaster::start().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = farm.launch(&url, None).await;
    master.add_agent(&id, "right-secret");
    // The secret arrives after the boot started: the booter must wait for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(master.handshakes(&id).is_empty());
    put_agent_secret(&farm.ssm, STACK, &id, "right-secret").await;

    assert!(
        wait_until_async(LIMIT, || {
            let ok = master.online(&id);
            async move { ok }
        })
        .await,
        "never connected: {:?}",
        booter.state(&id)
    );
    let hs = master.handshakes(&id);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].secret, "right-secret");
    assert_eq!(hs[0].capability.as_deref(), Some(REMOTING_CAPABILITY));
    assert_eq!(hs[0].cookie, None);
    assert_eq!(master.jar_fetches(), 1);
    assert!(state_is(&booter, &id, |s| *s == AgentState::Connected).await);
    let stats = booter.stats();
    assert_eq!(
        (stats.seen, stats.connected, stats.connects),
        (1, 1, 1),
        "{stats:?}"
    );
    booter.shutdown().await;
}

#[tokio::test]
async fn fake_master_dropped_agent_reconnects_with_its_cookie() {
    let farm = farm().await;
    let (master, url) = FakeMaster::start().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = farm.launch(&url, None).await;
    master.add_agent(&id, "s");
    put_agent_secret(&farm.ssm, STACK, &id, "s").await;
    assert!(
        wait_until_async(LIMIT, || {
            let ok = master.online(&id);
            async move { ok }
        })
        .await
    );

    master.send(&id, Ctl::Close);
    assert!(
        wait_until_async(LIMIT, || {
            let n = master.handshakes(&id).len();
            async move { n == 2 }
        })
        .await
    );
    let hs = master.handshakes(&id);
    assert_eq!(
        hs[1].cookie.as_deref(),
        Some("cookie-1"),
        "reconnect must carry the master's cookie"
    );
    assert!(
        wait_until_async(LIMIT, || {
            let ok = master.online(&id);
            async move { ok }
        })
        .await
    );
    assert_eq!(booter.stats().connects, 2);
    booter.shutdown().await;
}

#[tokio::test]
async fn fake_master_wrong_secret_is_refused_and_recorded() {
    let farm = farm().await;
    let (master, url) = FakeMaster::start().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = farm.launch(&url, None).await;
    master.add_agent(&id, "the-real-one");
    put_agent_secret(&farm.ssm, STACK, &id, "a-wrong-one").await;
    assert!(
        state_is(
            &booter,
            &id,
            |s| matches!(s, AgentState::Refused(r) if r.contains("403"))
        )
        .await,
        "{:?}",
        booter.state(&id)
    );
    assert!(!master.online(&id));
    assert!(master.handshakes(&id).iter().all(|h| h.status == 403));
    let stats = booter.stats();
    assert_eq!(stats.failed.len(), 1);
    assert!(stats.failed[0].reason.contains("HTTP 403"), "{stats:?}");
    assert_eq!(stats.connected, 0);
    booter.shutdown().await;
}

#[tokio::test]
async fn fake_master_bad_user_data_is_skipped_with_a_reason() {
    let farm = farm().await;
    let (_master, url) = FakeMaster::start().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let script = farm
        .launch(&url, Some(b"#!/bin/bash\necho not ours\n"))
        .await;
    let broken = farm
        .launch(&url, Some(b"#cloud-config\nwrite_files: [\n"))
        .await;
    let foreign = farm
        .launch(
            &url,
            Some(
                agent_user_data(&AgentBootParams {
                    region: "us-east-1".into(),
                    stack_name: "other".into(),
                })
                .as_bytes(),
            ),
        )
        .await;
    for (id, why) in [
        (&script, "not a #cloud-config"),
        (&broken, "not valid"),
        (&foreign, "stack \"other\""),
    ] {
        assert!(
            state_is(
                &booter,
                id,
                |s| matches!(s, AgentState::SkippedBadUserData(r) if r.contains(why))
            )
            .await,
            "{id}: {:?}",
            booter.state(id)
        );
    }
    assert_eq!(booter.stats().skipped_bad_user_data.len(), 3);
    booter.shutdown().await;
}

#[tokio::test]
async fn fake_master_missing_secret_fails_the_boot() {
    let farm = farm().await;
    let (master, url) = FakeMaster::start().await;
    let mut cfg = config();
    cfg.secret_wait = Duration::from_millis(400);
    let booter = Booter::new(&farm.sdk, cfg).spawn();
    let id = farm.launch(&url, None).await;
    assert!(
        state_is(
            &booter,
            &id,
            |s| matches!(s, AgentState::Failed(r) if r.contains("did not appear"))
        )
        .await,
        "{:?}",
        booter.state(&id)
    );
    assert_eq!(master.jar_fetches(), 0);
    booter.shutdown().await;
}

#[tokio::test]
async fn fake_master_terminated_instance_disconnects() {
    let farm = farm().await;
    let (master, url) = FakeMaster::start().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = farm.launch(&url, None).await;
    master.add_agent(&id, "s");
    put_agent_secret(&farm.ssm, STACK, &id, "s").await;
    assert!(
        wait_until_async(LIMIT, || {
            let ok = master.online(&id);
            async move { ok }
        })
        .await
    );
    farm.terminate(&id).await;
    assert!(
        wait_until_async(LIMIT, || {
            let ok = !master.online(&id);
            async move { ok }
        })
        .await
    );
    assert!(state_is(&booter, &id, |s| *s == AgentState::Stopped).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        master.handshakes(&id).len(),
        1,
        "a terminated instance must not reconnect"
    );
    booter.shutdown().await;
}

#[tokio::test]
async fn fake_master_faults_behave_as_named() {
    let farm = farm().await;
    let (master, url) = FakeMaster::start().await;
    let booter = Booter::new(&farm.sdk, config());
    let never = farm.launch(&url, None).await;
    let late = farm.launch(&url, None).await;
    let mid_build = farm.launch(&url, None).await;
    let after = farm.launch(&url, None).await;
    booter.inject(&never, BootFault::NeverConnects);
    booter.inject(&late, BootFault::ConnectsLate(Duration::from_millis(1500)));
    booter.inject(&mid_build, BootFault::DiesMidBuild);
    booter.inject(&after, BootFault::DiesAfter(Duration::from_millis(300)));
    for id in [&never, &late, &mid_build, &after] {
        master.add_agent(id, "s");
        put_agent_secret(&farm.ssm, STACK, id, "s").await;
    }
    let started = tokio::time::Instant::now();
    let booter = booter.spawn();

    // DiesAfter: connects, then drops after 300 ms and never comes back.
    assert!(
        state_is(&booter, &after, |s| matches!(s, AgentState::Dead(_))).await,
        "{:?}",
        booter.state(&after)
    );
    assert!(
        wait_until_async(LIMIT, || {
            let ok = !master.online(&after);
            async move { ok }
        })
        .await
    );

    // DiesMidBuild: connected until the first build starts on it.
    assert!(
        wait_until_async(LIMIT, || {
            let ok = master.online(&mid_build);
            async move { ok }
        })
        .await
    );
    master.send(
        &mid_build,
        Ctl::Text(r#"{"type":"build_started","job":"app","number":1}"#.into()),
    );
    assert!(
        state_is(
            &booter,
            &mid_build,
            |s| matches!(s, AgentState::Dead(r) if r.contains("DiesMidBuild"))
        )
        .await
    );
    assert!(
        wait_until_async(LIMIT, || {
            let ok = !master.online(&mid_build);
            async move { ok }
        })
        .await
    );

    // ConnectsLate: not before its extra delay.
    assert!(
        wait_until_async(LIMIT, || {
            let ok = master.online(&late);
            async move { ok }
        })
        .await
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // NeverConnects: booted (secret, agent.jar) but no handshake, ever.
    assert!(state_is(&booter, &never, |s| *s == AgentState::NeverConnects).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(master.handshakes(&never).is_empty());
    assert_eq!(master.handshakes(&after).len(), 1, "a dead agent came back");
    assert_eq!(
        master.handshakes(&mid_build).len(),
        1,
        "a dead agent came back"
    );

    let stats = booter.stats();
    assert_eq!(stats.dead.len(), 2, "{stats:?}");
    assert_eq!(stats.never_connecting, 1);
    assert_eq!(stats.connected, 1);
    assert_eq!(stats.builds_started, 1);
    booter.shutdown().await;
}

// ----- against the Jenkins simulator --------------------------------------------------------

use longshore_farm::jenkins::{JobKind, RunningSim, SimConfig, Simulator};

async fn simulator() -> RunningSim {
    Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator")
}

/// `offline` of `GET /computer/<name>/api/json`, read over the wire as the scaler reads it.
async fn node_offline(sim: &RunningSim, name: &str) -> Option<bool> {
    let config = SimConfig::default();
    let url = format!("{}computer/{name}/api/json?tree=offline", sim.url());
    let response = reqwest::Client::new()
        .get(url)
        .basic_auth(&config.user, Some(&config.token))
        .send()
        .await
        .ok()?;
    let json: serde_json::Value = response.json().await.ok()?;
    json.get("offline")?.as_bool()
}

async fn goes(sim: &RunningSim, name: &str, offline: bool) -> bool {
    wait_until_async(LIMIT, || async move {
        node_offline(sim, name).await == Some(offline)
    })
    .await
}

/// Launches an instance with the rendered user data, creates its node, stores `secret` (the
/// node's own when `None`) where the scaler does, as the scaler's launch does.
async fn launch_node(farm: &Farm, sim: &RunningSim, secret: Option<&str>) -> String {
    let id = farm.launch(&sim.url(), None).await;
    sim.sim()
        .create_agent(&id, "docker", 1)
        .expect("create node");
    let real = sim.sim().agent_secret(&id).expect("node secret");
    put_agent_secret(&farm.ssm, STACK, &id, secret.unwrap_or(&real)).await;
    id
}

#[tokio::test]
async fn sim_booted_instance_goes_online_and_terminated_goes_offline() {
    let farm = farm().await;
    let sim = simulator().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = launch_node(&farm, &sim, None).await;
    // The node exists; whether the fast booter has connected it yet is a race, so only its
    // coming online is asserted.
    assert!(node_offline(&sim, &id).await.is_some(), "the node exists");
    assert!(
        goes(&sim, &id, false).await,
        "node never came online: {:?}",
        booter.state(&id)
    );
    assert_eq!(booter.stats().connected, 1);

    farm.terminate(&id).await;
    assert!(
        goes(&sim, &id, true).await,
        "node stayed online after termination"
    );
    assert!(state_is(&booter, &id, |s| *s == AgentState::Stopped).await);
    booter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_wrong_secret_never_comes_online_and_is_recorded() {
    let farm = farm().await;
    let sim = simulator().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = launch_node(&farm, &sim, Some("not-the-node-secret")).await;
    assert!(
        state_is(
            &booter,
            &id,
            |s| matches!(s, AgentState::Refused(r) if r.contains("403"))
        )
        .await,
        "{:?}",
        booter.state(&id)
    );
    assert_eq!(node_offline(&sim, &id).await, Some(true));
    let stats = booter.stats();
    assert_eq!(stats.failed.len(), 1, "{stats:?}");
    assert_eq!(stats.failed[0].instance_id, id);
    booter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_malformed_user_data_is_skipped() {
    let farm = farm().await;
    let sim = simulator().await;
    let booter = Booter::new(&farm.sdk, config()).spawn();
    let id = farm
        .launch(&sim.url(), Some(b"#cloud-config\npackages: [git]\n"))
        .await;
    sim.sim()
        .create_agent(&id, "docker", 1)
        .expect("create node");
    put_agent_secret(&farm.ssm, STACK, &id, &sim.sim().agent_secret(&id).unwrap()).await;
    assert!(
        state_is(
            &booter,
            &id,
            |s| matches!(s, AgentState::SkippedBadUserData(r) if r.contains("agent.env"))
        )
        .await,
        "{:?}",
        booter.state(&id)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node_offline(&sim, &id).await, Some(true));
    booter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_faults_behave_as_named() {
    let farm = farm().await;
    let sim = simulator().await;
    let booter = Booter::new(&farm.sdk, config());
    let never = launch_node(&farm, &sim, None).await;
    let late = launch_node(&farm, &sim, None).await;
    let mid_build = launch_node(&farm, &sim, None).await;
    let after = launch_node(&farm, &sim, None).await;
    booter.inject(&never, BootFault::NeverConnects);
    booter.inject(&late, BootFault::ConnectsLate(Duration::from_millis(1500)));
    booter.inject(&mid_build, BootFault::DiesMidBuild);
    booter.inject(&after, BootFault::DiesAfter(Duration::from_millis(400)));
    let started = tokio::time::Instant::now();
    let booter = booter.spawn();

    // DiesAfter: online, then offline for good.
    assert!(
        state_is(&booter, &after, |s| matches!(s, AgentState::Dead(_))).await,
        "{:?}",
        booter.state(&after)
    );
    assert!(goes(&sim, &after, true).await);

    // DiesMidBuild: online until a build starts on it; the build is lost.
    assert!(goes(&sim, &mid_build, false).await);
    assert!(goes(&sim, &late, false).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ConnectsLate connected early"
    );
    // A node's name is one of its labels: the build lands on `mid_build`.
    sim.sim()
        .submit(
            "app",
            Some(&mid_build),
            Duration::from_secs(30),
            JobKind::Freestyle,
        )
        .expect("submit");
    assert!(
        state_is(
            &booter,
            &mid_build,
            |s| matches!(s, AgentState::Dead(r) if r.contains("DiesMidBuild"))
        )
        .await,
        "{:?}",
        booter.state(&mid_build)
    );
    assert!(goes(&sim, &mid_build, true).await);
    assert!(
        wait_until_async(LIMIT, || {
            let lost = sim
                .sim()
                .stats()
                .builds_lost
                .iter()
                .any(|b| b.node == mid_build && b.job == "app");
            async move { lost }
        })
        .await,
        "the build on the dead agent was not lost: {:?}",
        sim.sim().stats()
    );

    // NeverConnects: booted, its node never comes online.
    assert!(state_is(&booter, &never, |s| *s == AgentState::NeverConnects).await);
    assert_eq!(node_offline(&sim, &never).await, Some(true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node_offline(&sim, &after).await,
        Some(true),
        "a dead agent came back"
    );
    assert_eq!(
        node_offline(&sim, &mid_build).await,
        Some(true),
        "a dead agent came back"
    );
    assert_eq!(node_offline(&sim, &late).await, Some(false));
    booter.shutdown().await;
    sim.shutdown().await;
}
