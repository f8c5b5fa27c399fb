//! The Jenkins simulator over real HTTP and WebSocket on loopback: shapes against the
//! recordings of real Jenkins, scheduling, auth, `tree=`, agents, `why` texts, faults, bad input.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use longshore_farm::jenkins::{Budget, Fault, JobKind, RunningSim, SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};

const USER: &str = "admin";
const TOKEN: &str = "11aa22bb";

async fn start() -> RunningSim {
    start_with(Duration::from_millis(0)).await
}

async fn start_with(quiet: Duration) -> RunningSim {
    let cfg = SimConfig {
        token: TOKEN.into(),
        quiet_period: quiet,
        ..SimConfig::default()
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    Simulator::start(cfg, addr).await.expect("simulator starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn get(sim: &RunningSim, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", sim.url()))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("request")
}

async fn get_json(sim: &RunningSim, path: &str) -> Value {
    let res = get(sim, path).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    res.json().await.expect("json")
}

async fn post(sim: &RunningSim, path: &str) -> reqwest::Response {
    client()
        .post(format!("{}{path}", sim.url()))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("request")
}

async fn post_body(sim: &RunningSim, path: &str, ctype: &str, body: String) -> reqwest::Response {
    client()
        .post(format!("{}{path}", sim.url()))
        .basic_auth(USER, Some(TOKEN))
        .header("Content-Type", ctype)
        .body(body)
        .send()
        .await
        .expect("request")
}

/// Polls `f` every 10 ms until it returns `Some`, failing after `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(
    sim: &RunningSim,
    headers: &[(&str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let url = format!("ws://{}/wsagents/", sim.addr());
    let mut req = url.into_client_request().expect("ws request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    tokio_tungstenite::connect_async(req).await
}

async fn connect_agent(sim: &RunningSim, name: &str) -> Ws {
    let secret = sim.sim().agent_secret(name).expect("agent exists");
    let (ws, _) = ws_connect(
        sim,
        &[
            ("Node-Name", name),
            ("Secret-Key", &secret),
            ("X-Remoting-Capability", "AAAAAw=="),
        ],
    )
    .await
    .expect("agent connects");
    let path = format!("computer/{name}/api/json");
    let path = path.as_str();
    eventually(5, "agent online", || async move {
        let c = get_json(sim, path).await;
        (c["offline"] == false).then_some(())
    })
    .await;
    ws
}

async fn next_text(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("open stream")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json frame");
        }
    }
}

async fn queue_items(sim: &RunningSim) -> Vec<Value> {
    get_json(sim, "queue/api/json").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// ----- fixture shapes -----------------------------------------------------------------------

fn fixture(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/jenkins")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture json")
}

/// Keys current Jenkins core exports that the (older) recordings lack: computers'
/// `assignedLabels` and `description` (Computer.java) and `absoluteRemotePath`
/// (SlaveComputer.java). `_class` may always be added.
const NEWER_KEYS: [&str; 3] = ["assignedLabels", "description", "absoluteRemotePath"];

fn compare_shape(path: &str, rec: &Value, sim: &Value, errors: &mut Vec<String>) {
    match (rec, sim) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(r), Value::Object(s)) => {
            if let (Some(rc), Some(sc)) = (r.get("_class"), s.get("_class"))
                && rc != sc
            {
                errors.push(format!("{path}: _class {sc} != recorded {rc}"));
            }
            for k in r.keys() {
                if !s.contains_key(k) {
                    errors.push(format!("{path}: missing key {k}"));
                }
            }
            for k in s.keys() {
                if !r.contains_key(k) && k != "_class" && !NEWER_KEYS.contains(&k.as_str()) {
                    errors.push(format!("{path}: extra key {k}"));
                }
            }
            for (k, rv) in r {
                if let Some(sv) = s.get(k) {
                    compare_shape(&format!("{path}.{k}"), rv, sv, errors);
                }
            }
        }
        (Value::Array(r), Value::Array(s)) => {
            for (i, sv) in s.iter().enumerate() {
                if let Some(rv) = r.get(i).or(r.first()) {
                    compare_shape(&format!("{path}[{i}]"), rv, sv, errors);
                }
            }
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            errors.push(format!(
                "{path}: {sim} has another shape than recorded {rec}"
            ));
        }
        _ => {}
    }
}

fn assert_shape(name: &str, rec: &Value, sim: &Value) {
    let mut errors = Vec::new();
    compare_shape("$", rec, sim, &mut errors);
    assert!(errors.is_empty(), "{name}: {errors:#?}\nsimulator: {sim:#}");
}

#[tokio::test]
async fn answers_have_the_shape_of_the_recordings() {
    let owned = start().await;
    let sim = &owned;
    // Queue: two buildable parameterized items, no executor anywhere.
    for job in ["chicken", "Freestyle"] {
        let xml =
            "<project><canRoam>true</canRoam><concurrentBuild>false</concurrentBuild></project>";
        let res = post_body(
            sim,
            &format!("createItem?name={job}"),
            "application/xml",
            xml.into(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = post(
            sim,
            &format!("job/{job}/buildWithParameters?delay=0sec&feet=false"),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let queue = eventually(5, "two buildable items", || async move {
        let q = get_json(sim, "queue/api/json").await;
        let n = q["items"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["buildable"] == true).count());
        (n == 2).then_some(q)
    })
    .await;
    assert_shape(
        "queue",
        &fixture("queue/cdancy-queue-buildable-items.json"),
        &queue,
    );
    assert_eq!(
        queue["items"][0]["why"],
        "Waiting for next available executor"
    );
    assert_eq!(queue["items"][0]["params"], "\nfeet=false");

    // Left (running): an agent takes one; blocked: a second build of the same non-concurrent job.
    sim.sim().create_agent("a1", "", 1).expect("agent");
    let mut ws = connect_agent(sim, "a1").await;
    let started = next_text(&mut ws).await;
    assert_eq!(started["type"], "build_started");
    let job = started["job"].as_str().expect("job").to_owned();
    let items = queue_items(sim).await;
    let left_id = eventually(5, "left item", || async move {
        for id in 1..=2 {
            let item = get_json(sim, &format!("queue/item/{id}/api/json")).await;
            if item["_class"] == "hudson.model.Queue$LeftItem" {
                return Some(id);
            }
        }
        None
    })
    .await;
    let left = get_json(sim, &format!("queue/item/{left_id}/api/json")).await;
    assert_shape(
        "left running",
        &fixture("queue-item/cdancy-queue-item-left-running.json"),
        &left,
    );
    assert_eq!(left["executable"]["number"], 1);
    assert!(items.len() <= 1);
    let res = post(
        sim,
        &format!("job/{job}/buildWithParameters?delay=0sec&a=4"),
    )
    .await;
    let loc = res.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let blocked_path = loc.trim_start_matches(&sim.url()).to_owned() + "api/json";
    let blocked = eventually(5, "blocked item", || {
        let p = blocked_path.clone();
        async move {
            let v = get_json(sim, &p).await;
            (v["_class"] == "hudson.model.Queue$BlockedItem").then_some(v)
        }
    })
    .await;
    assert_shape(
        "blocked",
        &fixture("queue-item/cdancy-queue-item-blocked.json"),
        &blocked,
    );
    assert_eq!(blocked["why"], "Build #1 is already in progress (ETA: N/A)");

    // Left (cancelled).
    let id = blocked["id"].as_u64().expect("id");
    let res = post(sim, &format!("queue/cancelItem?id={id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cancelled = get_json(sim, &format!("queue/item/{id}/api/json")).await;
    assert_shape(
        "left cancelled",
        &fixture("queue-item/cdancy-queue-item-left-cancelled.json"),
        &cancelled,
    );
    assert_eq!(cancelled["cancelled"], true);

    // Computers, label, overall load.
    sim.sim()
        .create_agent("never-connected", "x", 2)
        .expect("agent");
    let computers = get_json(sim, "computer/api/json").await;
    assert_shape(
        "computer",
        &fixture("computer/cdancy-computer-set.json"),
        &computers,
    );
    assert_eq!(
        computers["computer"][0]["_class"],
        "hudson.model.Hudson$MasterComputer"
    );
    assert_eq!(computers["computer"][0]["displayName"], "Built-In Node");
    assert_eq!(
        computers["computer"][1]["_class"],
        "hudson.slaves.SlaveComputer"
    );
    let label = get_json(sim, "label/built-in/api/json").await;
    assert_shape(
        "label",
        &fixture("label/node-jenkins-label-master.json"),
        &label,
    );
    assert_eq!(label["nodes"][0]["nodeName"], "");
    let load = get_json(sim, "overallLoad/api/json").await;
    assert_shape(
        "overallLoad",
        &fixture("overallLoad/cdancy-overall-load.json"),
        &load,
    );
    let root = get_json(sim, "api/json").await;
    assert_eq!(root["_class"], "hudson.model.Hudson");
    assert_eq!(root["useCrumbs"], true);
    owned.shutdown().await;
}

// ----- scheduling -----------------------------------------------------------------------------

#[tokio::test]
async fn queue_assignment_build_and_freed_executor() {
    let owned = start().await;
    let sim = &owned;
    sim.sim()
        .create_agent("lin-1", "linux docker", 1)
        .expect("agent");
    let mut ws = connect_agent(sim, "lin-1").await;
    let d = Duration::from_millis(400);
    let first = sim
        .sim()
        .submit("build-a", Some("linux"), d, JobKind::Freestyle)
        .expect("submit");
    let second = sim
        .sim()
        .submit("build-a", Some("linux"), d, JobKind::Freestyle)
        .expect("submit");
    assert_ne!(first, second);
    let started = next_text(&mut ws).await;
    assert_eq!(
        started,
        serde_json::json!({"type":"build_started","job":"build-a","number":1})
    );
    // While #1 runs, #2 waits for the only executor.
    let items = queue_items(sim).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["_class"], "hudson.model.Queue$BuildableItem");
    assert_eq!(
        items[0]["why"],
        "Waiting for next available executor on ‘lin-1’"
    );
    let busy = get_json(sim, "computer/lin-1/api/json?depth=1").await;
    assert_eq!(busy["idle"], false);
    assert_eq!(busy["executors"][0]["currentExecutable"]["number"], 1);
    let finished = next_text(&mut ws).await;
    assert_eq!(finished["type"], "build_finished");
    assert_eq!(finished["result"], "SUCCESS");
    let started2 = next_text(&mut ws).await;
    assert_eq!(started2["number"], 2);
    let _ = next_text(&mut ws).await;
    let stats = eventually(5, "two builds done", || async move {
        let s = sim.sim().stats();
        (s.builds_completed == 2).then_some(s)
    })
    .await;
    assert_eq!(stats.waits.len(), 2);
    assert!(
        stats.waits[1].wait_ms >= 300,
        "second build waited for the first: {:?}",
        stats.waits
    );
    assert!(stats.builds_lost.is_empty());
    let idle = get_json(sim, "computer/lin-1/api/json").await;
    assert_eq!(idle["idle"], true);
    assert_eq!(stats.agents.idle, 1);
    owned.shutdown().await;
}

#[tokio::test]
async fn quiet_period_and_exclusive_nodes() {
    let owned = start_with(Duration::from_millis(300)).await;
    let sim = &owned;
    let xml = "<project><canRoam>true</canRoam></project>";
    post_body(sim, "createItem?name=q", "application/xml", xml.into()).await;
    let res = post(sim, "job/q/build").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let items = queue_items(sim).await;
    assert_eq!(items[0]["_class"], "hudson.model.Queue$WaitingItem");
    let why = items[0]["why"].as_str().expect("why");
    assert!(why.starts_with("In the quiet period. Expires in "), "{why}");
    // Triggering again folds into the same item (Queue.schedule2).
    let again = post(sim, "job/q/build").await;
    assert_eq!(again.headers()["location"], res.headers()["location"]);
    // An EXCLUSIVE agent does not take an item without a label.
    let form = "name=ex-1&type=hudson.slaves.DumbSlave&json=%7B%22numExecutors%22%3A1%2C%22mode%22%3A%22EXCLUSIVE%22%2C%22labelString%22%3A%22big%22%7D";
    let res = post_body(
        sim,
        "computer/doCreateItem",
        "application/x-www-form-urlencoded",
        form.into(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let _ws = connect_agent(sim, "ex-1").await;
    let item = eventually(5, "buildable", || async move {
        let items = queue_items(sim).await;
        items.first().filter(|i| i["buildable"] == true).cloned()
    })
    .await;
    assert_eq!(
        item["why"],
        "‘ex-1’ is reserved for jobs with matching label expression"
    );
    owned.shutdown().await;
}

// ----- auth -----------------------------------------------------------------------------------

#[tokio::test]
async fn auth_rules_follow_jenkins() {
    let owned = start().await;
    let sim = &owned;
    let c = client();
    let url = |p: &str| format!("{}{p}", sim.url());
    // Anonymous: 403 with the login redirect (HudsonAuthenticationEntryPoint).
    let res = c.get(url("queue/api/json")).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()["x-required-permission"],
        "hudson.model.Hudson.Read"
    );
    assert!(res.headers().contains_key("x-jenkins"));
    assert!(
        res.text()
            .await
            .expect("body")
            .contains("Authentication required")
    );
    // Bad token: 401 with the Basic challenge.
    let res = c
        .get(url("queue/api/json"))
        .basic_auth(USER, Some("nope"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"Jenkins\"");
    // Good token.
    let res = c
        .get(url("queue/api/json"))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-jenkins"], "2.479.3");
    // Unprotected.
    let res = c.get(url("jnlpJars/agent.jar")).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::OK);
    // Crumbs: a token POST needs none; a cookie-session POST does.
    sim.sim()
        .submit("j", None, Duration::from_secs(60), JobKind::Freestyle)
        .expect("job");
    let res = c
        .post(url("job/j/build?delay=0sec"))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = c
        .get(url("crumbIssuer/api/json"))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("req");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let crumb: Value = res.json().await.expect("json");
    assert_eq!(crumb["_class"], "hudson.security.csrf.DefaultCrumbIssuer");
    assert_eq!(crumb["crumbRequestField"], "Jenkins-Crumb");
    let res = c
        .post(url("job/j/build?delay=0sec"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .expect("body")
            .contains("No valid crumb was included in the request")
    );
    let res = c
        .post(url("job/j/build?delay=0sec"))
        .header("Cookie", &cookie)
        .header("Jenkins-Crumb", crumb["crumb"].as_str().expect("crumb"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::CREATED);
    owned.shutdown().await;
}

// ----- tree= and depth= -----------------------------------------------------------------------

#[tokio::test]
async fn tree_and_depth_select_fields() {
    let owned = start().await;
    let sim = &owned;
    for i in 0..3 {
        sim.sim()
            .submit(
                &format!("t{i}"),
                Some("nowhere"),
                Duration::from_secs(60),
                JobKind::Freestyle,
            )
            .expect("submit");
    }
    let q = get_json(sim, "queue/api/json?tree=items[id,why,task[name]]{0,2}").await;
    assert_eq!(q["items"].as_array().map(Vec::len), Some(2));
    let first = &q["items"][0];
    let keys: Vec<&String> = first.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["_class", "id", "task", "why"]);
    assert_eq!(
        first["task"],
        serde_json::json!({"_class":"hudson.model.FreeStyleProject","name":"t2"})
    );
    let q = get_json(sim, "queue/api/json?tree=items[id]{1}").await;
    assert_eq!(
        q["items"],
        serde_json::json!([{"_class":"hudson.model.Queue$BuildableItem","id":2}])
    );
    let q = get_json(sim, "queue/api/json?tree=items[id]{,1}").await;
    assert_eq!(q["items"][0]["id"], 3);
    let q = get_json(sim, "queue/api/json?tree=items[id]{2,}").await;
    assert_eq!(
        q["items"],
        serde_json::json!([{"_class":"hudson.model.Queue$BuildableItem","id":1}])
    );
    sim.sim().create_agent("d", "", 2).expect("agent");
    let c = get_json(sim, "computer/api/json").await;
    assert_eq!(c["computer"][1]["executors"], serde_json::json!([{}, {}]));
    let c = get_json(sim, "computer/api/json?depth=1").await;
    assert_eq!(c["computer"][1]["executors"][1]["number"], 1);
    let c = get_json(
        sim,
        "computer/api/json?tree=computer[displayName,assignedLabels[name]]",
    )
    .await;
    assert_eq!(
        c["computer"][1],
        serde_json::json!({"_class":"hudson.slaves.SlaveComputer","displayName":"d","assignedLabels":[{"name":"d"}]})
    );
    for bad in [
        "queue/api/json?tree=items[id",
        "queue/api/json?tree=",
        "queue/api/json?tree=items{x}",
        "queue/api/json?depth=deep",
    ] {
        let res = get(sim, bad).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{bad}");
        assert!(res.text().await.expect("body").contains("Oops!"), "{bad}");
    }
    owned.shutdown().await;
}

// ----- WebSocket agents -----------------------------------------------------------------------

#[tokio::test]
async fn websocket_agents_connect_and_disconnect() {
    let owned = start().await;
    let sim = &owned;
    sim.sim().create_agent("ws-1", "linux", 1).expect("agent");
    let secret = sim.sim().agent_secret("ws-1").expect("secret");
    let status =
        |r: Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error>| match r {
            Err(tungstenite::Error::Http(res)) => {
                let body = res
                    .body()
                    .clone()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                (res.status().as_u16(), body)
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => (101, String::new()),
        };
    let (code, body) = status(ws_connect(sim, &[("Node-Name", "ws-1")]).await);
    assert_eq!(code, 400);
    assert!(
        body.contains("This endpoint is only for use from agent.jar in WebSocket mode"),
        "{body}"
    );
    let (code, body) = status(
        ws_connect(
            sim,
            &[
                ("Node-Name", "ghost"),
                ("Secret-Key", "x"),
                ("X-Remoting-Capability", "AA=="),
            ],
        )
        .await,
    );
    assert_eq!(code, 400);
    assert!(body.contains("no such agent"), "{body}");
    let (code, _) = status(
        ws_connect(
            sim,
            &[
                ("Node-Name", "ws-1"),
                ("Secret-Key", "wrong"),
                ("X-Remoting-Capability", "AA=="),
            ],
        )
        .await,
    );
    assert_eq!(code, 403);
    let before = get_json(sim, "computer/ws-1/api/json").await;
    assert_eq!(before["offline"], true);
    assert_eq!(before["offlineCause"], Value::Null);
    let (mut ws, res) = ws_connect(
        sim,
        &[
            ("Node-Name", "ws-1"),
            ("Secret-Key", &secret),
            ("X-Remoting-Capability", "AA=="),
        ],
    )
    .await
    .expect("connects");
    assert!(res.headers().contains_key("x-remoting-capability"));
    assert!(res.headers().contains_key("x-remoting-minimum-version"));
    assert!(res.headers().contains_key("connection-cookie"));
    eventually(5, "online", || async move {
        (get_json(sim, "computer/ws-1/api/json").await["offline"] == false).then_some(())
    })
    .await;
    // A second connection without the current cookie is refused.
    let (code, body) = status(
        ws_connect(
            sim,
            &[
                ("Node-Name", "ws-1"),
                ("Secret-Key", &secret),
                ("X-Remoting-Capability", "AA=="),
            ],
        )
        .await,
    );
    assert_eq!(code, 400);
    assert!(
        body.contains("ws-1 is already connected to this controller. Rejecting this connection."),
        "{body}"
    );
    // The JNLP file carries the same secret first.
    let jnlp = get(sim, "computer/ws-1/jenkins-agent.jnlp")
        .await
        .text()
        .await
        .expect("jnlp");
    assert!(
        jnlp.contains(&format!(
            "<argument>{secret}</argument>\n    <argument>ws-1</argument>"
        )),
        "{jnlp}"
    );
    // A disconnect mid-build loses the build.
    sim.sim()
        .submit(
            "long",
            Some("linux"),
            Duration::from_secs(60),
            JobKind::Freestyle,
        )
        .expect("submit");
    let started = next_text(&mut ws).await;
    assert_eq!(started["type"], "build_started");
    ws.close(None).await.expect("close");
    drop(ws);
    let stats = eventually(5, "lost build", || async move {
        let s = sim.sim().stats();
        (!s.builds_lost.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(stats.builds_lost[0].job, "long");
    assert_eq!(stats.builds_lost[0].node, "ws-1");
    let after = get_json(sim, "computer/ws-1/api/json").await;
    assert_eq!(after["offline"], true);
    assert_eq!(after["offlineCauseReason"], "Connection was broken");
    assert_eq!(stats.agents.offline, 1);
    owned.shutdown().await;
}

// ----- why texts --------------------------------------------------------------------------------

async fn why_of(sim: &RunningSim, kind: JobKind, job: &str, label: Option<&str>) -> String {
    sim.sim()
        .submit(job, label, Duration::from_secs(60), kind)
        .expect("submit");
    let want_class = match kind {
        JobKind::Freestyle => "hudson.model.FreeStyleProject",
        JobKind::Pipeline => {
            "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask"
        }
    };
    let item = eventually(5, "item", || async move {
        queue_items(sim).await.into_iter().find(|i| {
            i["task"]["_class"] == want_class
                && (kind == JobKind::Pipeline || i["task"]["name"] == job)
                && i["buildable"] == true
        })
    })
    .await;
    let id = item["id"].as_u64().expect("id");
    let why = item["why"].as_str().expect("why").to_owned();
    post(sim, &format!("queue/cancelItem?id={id}")).await;
    why
}

#[tokio::test]
async fn why_texts_per_situation_for_freestyle_and_pipeline() {
    for kind in [JobKind::Freestyle, JobKind::Pipeline] {
        let owned = start().await;
        let sim = &owned;
        let j = |n: &str| format!("{n}-{kind:?}");
        // No agent at all: Jenkins does not talk about labels.
        assert_eq!(
            why_of(sim, kind, &j("a"), Some("docker")).await,
            "Waiting for next available executor"
        );
        sim.sim()
            .create_agent("other", "windows", 1)
            .expect("agent");
        assert_eq!(
            why_of(sim, kind, &j("b"), Some("docker")).await,
            "There are no nodes with the label ‘docker’"
        );
        sim.sim()
            .create_agent("d1", "docker linux", 1)
            .expect("agent");
        assert_eq!(
            why_of(sim, kind, &j("c"), Some("docker")).await,
            "‘d1’ is offline"
        );
        sim.sim().create_agent("d2", "docker", 1).expect("agent");
        assert_eq!(
            why_of(sim, kind, &j("d"), Some("docker")).await,
            "All nodes of label ‘docker’ are offline"
        );
        assert_eq!(
            why_of(sim, kind, &j("e"), Some("docker && linux")).await,
            "‘d1’ is offline"
        );
        // Busy: one node of the label, then two.
        let _w1 = connect_agent(sim, "d1").await;
        let _w2 = connect_agent(sim, "d2").await;
        sim.sim()
            .submit(
                "hog1",
                Some("d1"),
                Duration::from_secs(60),
                JobKind::Freestyle,
            )
            .expect("hog");
        sim.sim()
            .submit(
                "hog2",
                Some("d2"),
                Duration::from_secs(60),
                JobKind::Freestyle,
            )
            .expect("hog");
        eventually(5, "both busy", || async move {
            (sim.sim().stats().agents.busy == 2).then_some(())
        })
        .await;
        assert_eq!(
            why_of(sim, kind, &j("f"), Some("docker && linux")).await,
            "Waiting for next available executor on ‘d1’"
        );
        assert_eq!(
            why_of(sim, kind, &j("g"), Some("docker")).await,
            "Waiting for next available executor on ‘docker’"
        );
        assert_eq!(
            why_of(sim, kind, &j("h"), Some("docker||windows")).await,
            "Waiting for next available executor on ‘docker||windows’"
        );
        // No label, every executor busy or offline.
        assert_eq!(
            why_of(sim, kind, &j("i"), None).await,
            "Waiting for next available executor"
        );
        owned.shutdown().await;
    }
}

// ----- faults -------------------------------------------------------------------------------------

#[tokio::test]
async fn faults_are_observable() {
    let owned = start().await;
    let sim = &owned;
    sim.sim().inject(Fault::ServerError {
        status: 503,
        budget: Budget::requests(1),
    });
    assert_eq!(
        get(sim, "queue/api/json").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(sim, "queue/api/json").await.status(), StatusCode::OK);

    sim.sim().inject(Fault::LoginPage {
        budget: Budget::requests(1),
    });
    let res = get(sim, "queue/api/json").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );

    sim.sim().inject(Fault::TruncatedJson {
        budget: Budget::requests(1),
    });
    let text = get(sim, "computer/api/json")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "truncated: {text}"
    );

    // Over HTTP: slow, then cleared.
    let res = post_body(
        sim,
        "__sim/faults",
        "application/json",
        r#"{"kind":"slow","delay_ms":1000}"#.into(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let t = Instant::now();
    get(sim, "queue/api/json").await;
    assert!(t.elapsed() >= Duration::from_millis(1000));
    let res = client()
        .delete(format!("{}__sim/faults", sim.url()))
        .basic_auth(USER, Some(TOKEN))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let t = Instant::now();
    get(sim, "queue/api/json").await;
    // Cleared: the answer no longer carries the injected second (a loaded CI machine still
    // answers a small queue well within it).
    assert!(t.elapsed() < Duration::from_millis(1000));

    // Dropping agents takes them offline.
    sim.sim().create_agent("f1", "", 1).expect("agent");
    let mut ws = connect_agent(sim, "f1").await;
    sim.sim().inject(Fault::DropAgents {
        names: Some(vec!["f1".into()]),
    });
    assert_eq!(get_json(sim, "computer/f1/api/json").await["offline"], true);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true));

    // A restart loses connections and running builds, answers 503 for a while, keeps nodes.
    let mut ws = connect_agent(sim, "f1").await;
    sim.sim()
        .submit("r", None, Duration::from_secs(60), JobKind::Freestyle)
        .expect("submit");
    assert_eq!(next_text(&mut ws).await["type"], "build_started");
    sim.sim().inject(Fault::Restart { down_ms: Some(200) });
    assert_eq!(
        get(sim, "api/json").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let c = eventually(5, "back up", || async move {
        let res = get(sim, "computer/f1/api/json").await;
        if res.status() == StatusCode::OK {
            res.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_eq!(c["offline"], true);
    let lost = sim.sim().stats().builds_lost;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].job, "r");
    owned.shutdown().await;
}

// ----- bad input ----------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_gets_jenkins_errors_never_a_panic() {
    let owned = start().await;
    let sim = &owned;
    for path in [
        "computer/ghost/api/json",
        "computer/ghost/jenkins-agent.jnlp",
        "computer/ghost/slave-agent.jnlp",
        "queue/item/999/api/json",
        "queue/item/x/api/json",
        "job/ghost/build",
        "no/such/thing",
    ] {
        assert_eq!(
            get(sim, path).await.status(),
            StatusCode::NOT_FOUND,
            "GET {path}"
        );
    }
    for path in [
        "computer/ghost/toggleOffline",
        "computer/ghost/changeOfflineCause",
        "computer/ghost/doDelete",
    ] {
        assert_eq!(
            post(sim, path).await.status(),
            StatusCode::NOT_FOUND,
            "POST {path}"
        );
    }
    sim.sim().create_agent("n1", "", 1).expect("agent");
    for path in [
        "computer/n1/toggleOffline",
        "computer/n1/changeOfflineCause",
        "computer/n1/doDelete",
        "computer/doCreateItem",
        "createItem?name=x",
        "queue/cancelItem?id=1",
    ] {
        let res = get(sim, path).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "GET {path}");
        assert_eq!(res.headers()["allow"], "POST");
    }
    let form = "application/x-www-form-urlencoded";
    let cases = [
        "name=%zz&type=x",
        "name=n2&type=hudson.slaves.DumbSlave",
        "name=n2&type=hudson.slaves.DumbSlave&json=%7Bnot-json",
        "name=n1&type=hudson.slaves.DumbSlave&json=%7B%7D",
        "name=bad%2Fname&type=hudson.slaves.DumbSlave&json=%7B%7D",
        "name=n3&type=hudson.slaves.DumbSlave&json=%7B%22numExecutors%22%3A0%7D",
        "type=hudson.slaves.DumbSlave&json=%7B%7D",
    ];
    for body in cases {
        let res = post_body(sim, "computer/doCreateItem", form, body.into()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let dup = post_body(sim, "computer/doCreateItem", form, cases[3].into()).await;
    assert!(dup.headers().contains_key("x-error"));
    assert!(
        dup.text()
            .await
            .expect("body")
            .contains("Agent called ‘n1’ already exists")
    );
    // The recorded form body of a real client creates a node.
    let recorded = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/fixtures/jenkins/computer-create/node-jenkins-doCreateItem-form-body.txt",
    ))
    .expect("fixture")
    .trim()
    .replace("{name}", "rec-1");
    let res = post_body(sim, "computer/doCreateItem", form, recorded).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        get_json(sim, "computer/rec-1/api/json").await["numExecutors"],
        2
    );
    // Garbage XML and odd paths.
    let res = post_body(
        sim,
        "createItem?name=x",
        "application/xml",
        "not xml".into(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = post_body(
        sim,
        "computer/createItem?name=x",
        "application/xml",
        "\u{0}<".into(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        get(sim, "computer/%zz/api/json").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(sim, "queue/api/json?tree=%zz").await.status(),
        StatusCode::BAD_REQUEST
    );
    // Toggle, change cause, delete.
    let res = post(sim, "computer/n1/toggleOffline?offlineMessage=maintenance").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let n1 = get_json(sim, "computer/n1/api/json").await;
    assert_eq!(n1["temporarilyOffline"], true);
    assert_eq!(n1["offlineCauseReason"], "maintenance");
    assert_eq!(
        n1["offlineCause"]["_class"],
        "hudson.slaves.OfflineCause$UserCause"
    );
    post(sim, "computer/n1/toggleOffline").await;
    assert_eq!(
        get_json(sim, "computer/n1/api/json").await["temporarilyOffline"],
        false
    );
    assert_eq!(
        post(sim, "computer/n1/doDelete").await.status(),
        StatusCode::FOUND
    );
    assert_eq!(
        get(sim, "computer/n1/api/json").await.status(),
        StatusCode::NOT_FOUND
    );
    // The built-in node answers under its URL name.
    let b = get_json(sim, "computer/(built-in)/api/json").await;
    assert_eq!(b["displayName"], "Built-In Node");
    // Still serving.
    assert_eq!(get(sim, "api/json").await.status(), StatusCode::OK);
    owned.shutdown().await;
}

#[tokio::test]
async fn label_endpoint_renders_expressions_like_jenkins() {
    let owned = start().await;
    let sim = &owned;
    sim.sim()
        .create_agent("l1", "docker linux", 2)
        .expect("agent");
    let l = get_json(sim, "label/docker%20%26%26%20linux/api/json").await;
    assert_eq!(l["_class"], "hudson.model.labels.LabelExpression$And");
    assert_eq!(l["name"], "docker&&linux");
    assert_eq!(l["nodes"][0]["nodeName"], "l1");
    assert_eq!(l["offline"], true);
    let _ws = connect_agent(sim, "l1").await;
    let l = get_json(sim, "label/docker/api/json").await;
    assert_eq!(l["_class"], "hudson.model.labels.LabelAtom");
    assert_eq!(l["idleExecutors"], 2);
    assert_eq!(l["totalExecutors"], 2);
    owned.shutdown().await;
}
