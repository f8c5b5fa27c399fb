//! The HTTP and WebSocket endpoints. Every answer carries `X-Jenkins: <version>`.
//!
//! | endpoint | method | answer |
//! |---|---|---|
//! | `/api/json` | GET | `hudson.model.Hudson` |
//! | `/crumbIssuer/api/json` | GET | `DefaultCrumbIssuer`; opens a web session (cookie) |
//! | `/queue/api/json`, `/queue/item/<id>/api/json` | GET | queue, one item or `LeftItem` |
//! | `/queue/cancelItem?id=` | POST | 204, 404 (`Queue.doCancelItem`) |
//! | `/computer/api/json`, `/computer/<name>/api/json` | GET | `ComputerSet`, one computer |
//! | `/computer/doCreateItem` | POST | form `name`, `type`, `json` → 302 to `computer/` |
//! | `/computer/createItem?name=` | POST | node `config.xml` body → 200 |
//! | `/computer/<name>/{jenkins,slave}-agent.jnlp` | GET | JNLP with the secret |
//! | `/computer/<name>/{toggleOffline,changeOfflineCause,doDelete}` | POST | 302 |
//! | `/label/<expr>/api/json`, `/overallLoad/api/json` | GET | label, load |
//! | `/createItem?name=` | POST | job `config.xml` body → 200 |
//! | `/job/<name>/{build,buildWithParameters}` | POST | 201, `Location: …/queue/item/<id>/` |
//! | `/jnlpJars/agent.jar` | GET | placeholder, no auth |
//! | `/wsagents/` | GET (upgrade) | agent WebSocket, no auth |
//! | `/__sim/faults` | POST, DELETE | inject (JSON [`Fault`]) / clear, 204 |
//! | `/__sim/submit`, `/__sim/agents` | POST | JSON, like [`Simulator::submit`] / `create_agent` |
//! | `/__sim/agents/<name>/secret`, `/__sim/stats` | GET | text / JSON |
//!
//! Status codes and pages (jenkinsci/jenkins ff9430ee unless noted): state-changing endpoints
//! are `@RequirePOST`: a GET gets 405, `Allow: POST`, "This URL requires POST"
//! (`CrumbFilter.ErrorCustomizer` → `CrumbFilter/retry.jelly`); unknown objects 404;
//! `Failure`s (bad or duplicate names) 400 with `X-Error` (`AbstractModelObject/error.jelly`);
//! `sendError` texts use a Jetty-style error page (shape only).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use longshore::domain::labels;
use serde::Deserialize;

use super::faults::{self, Fault};
use super::messages as msg;
use super::model::{self, Ctx};
use super::state::{
    AgentEvent, AgentSpec, DURATION_PARAM, JobKind, NodeMode, SimError, State, UserOffline,
};
use super::tree::{self, Pruner};
use super::{PING_INTERVAL, Simulator};

const MAX_BODY: usize = 1 << 20;
/// `X-Remoting-Minimum-Version` (RemotingVersionInfo.getMinimumSupportedVersion of a 2.479
/// core; the exact value is not verified).
const REMOTING_MINIMUM_VERSION: &str = "3107.v665000b_51092";
/// Our `Capability.toASCII()`: base64 of a capability mask (opaque to clients; not verified
/// byte for byte).
const REMOTING_CAPABILITY: &str = "AAAAAw==";
const AGENT_JAR_PLACEHOLDER: &[u8] =
    b"longshore Jenkins simulator: placeholder agent.jar (the farm's agents never run it)\n";

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/wsagents", any(ws_agents))
        .route("/wsagents/", any(ws_agents))
        .fallback(handle)
        .layer(axum::middleware::map_response_with_state(
            sim.clone(),
            add_jenkins_headers,
        ))
        .with_state(sim)
}

async fn add_jenkins_headers(AxState(sim): AxState<Simulator>, mut res: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(sim.version()) {
        res.headers_mut().insert("X-Jenkins", v);
    }
    res.headers_mut()
        .insert("X-Hudson", HeaderValue::from_static("1.395"));
    res
}

// ----- small helpers ----------------------------------------------------------------------

/// Percent-encodes one path segment (`Util.rawEncode`-like).
pub(crate) fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~()!*'$,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `application/x-www-form-urlencoded`; `None` when malformed.
fn parse_urlencoded(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        body,
    )
        .into_response()
}

/// The page of `HttpServletResponse.sendError(status, message)` (Jetty's error handler).
fn jetty_error(status: StatusCode, message: &str, uri: &str) -> Response {
    let m = html_escape(message);
    let body = format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n\
         <title>Error {code} {m}</title>\n</head>\n<body>\n<h2>HTTP ERROR {code} {m}</h2>\n\
         <table>\n<tr><th>URI:</th><td>{uri}</td></tr>\n<tr><th>STATUS:</th><td>{code}</td></tr>\n\
         <tr><th>MESSAGE:</th><td>{m}</td></tr>\n<tr><th>SERVLET:</th><td>Stapler</td></tr>\n\
         </table>\n</body>\n</html>\n",
        code = status.as_u16(),
        uri = html_escape(uri),
    );
    html(status, body)
}

fn not_found(uri: &str) -> Response {
    jetty_error(StatusCode::NOT_FOUND, "Not Found", uri)
}

fn bad_request(message: &str, uri: &str) -> Response {
    jetty_error(StatusCode::BAD_REQUEST, message, uri)
}

/// `hudson.model.Failure` → `AbstractModelObject/error.jelly`: 400, `X-Error`, the message.
fn failure(message: &str) -> Response {
    let mut res = html(
        StatusCode::BAD_REQUEST,
        format!(
            "<!DOCTYPE html><html><head><title>Jenkins</title></head><body>\
             <div id=\"main-panel\"><h1>Error</h1><p>{}</p></div></body></html>",
            html_escape(message)
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        res.headers_mut().insert("X-Error", v);
    } else if let Ok(v) = HeaderValue::from_bytes(message.as_bytes()) {
        res.headers_mut().insert("X-Error", v);
    }
    res
}

/// `@RequirePOST` refusal (`CrumbFilter/retry.jelly`).
fn require_post(url: &str) -> Response {
    let mut res = html(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "<!DOCTYPE html><html><head><title>Method Not Allowed [Jenkins]</title></head><body>\
             <div id=\"main-panel\"><h1>This URL requires POST</h1><p>The URL you're trying to \
             access requires that requests be sent using POST (like a form submission). The \
             button below allows you to retry accessing this URL using POST. URL being \
             accessed:</p><p><code>{}</code></p><form method=\"post\" name=\"retry\">\
             <button>Retry using POST</button></form></div></body></html>",
            html_escape(url)
        ),
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

/// The 500 "Oops!" page (`jenkins/model/Jenkins/oops.jelly`).
fn oops(detail: &str) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "<!DOCTYPE html><html><head><title>Jenkins</title></head><body>\
             <div id=\"main-panel\"><h1><span>Oops!</span></h1><div id=\"error-description\">\
             <h2>A problem occurred while processing the request</h2>\
             <p>Logging ID={}</p></div><pre>{}</pre></div></body></html>",
            hex::encode(rand::random::<[u8; 16]>()),
            html_escape(detail)
        ),
    )
}

fn redirect(status: StatusCode, location: &str) -> Response {
    let mut res = status.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json_body(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

/// `HudsonAuthenticationEntryPoint.commence` for an anonymous request: 403, the headers of
/// `AccessDeniedException3.reportAsHeaders`, and a white page that redirects to the login form.
fn login_required(uri_with_query: &str) -> Response {
    let from = percent_encode_query(uri_with_query);
    let login = format!("/login?from={from}");
    let body = format!(
        "<html><head><meta http-equiv='refresh' content='1;url={l}'/>\
         <script id='redirect' data-redirect-url='{l}' src='/static/longshore/scripts/redirect.js'>\
         </script></head><body style='background-color:white; color:white;'>\n\
         Authentication required\n<!--\nYou are authenticated as: anonymous\n\
         Groups that you are in:\n  \nPermission you need to have (but didn't): \
         hudson.model.Hudson.Read\n ... which is implied by: hudson.security.Permission.GenericRead\n \
         ... which is implied by: hudson.model.Hudson.Administer\n-->\n\n</body></html>",
        l = html_escape(&login)
    );
    let mut res = html(StatusCode::FORBIDDEN, body);
    let h = res.headers_mut();
    h.insert(
        "X-You-Are-Authenticated-As",
        HeaderValue::from_static("anonymous"),
    );
    h.insert(
        "X-You-Are-In-Group-Disabled",
        HeaderValue::from_static(
            "JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true or use /whoAmI to diagnose",
        ),
    );
    h.insert(
        "X-Required-Permission",
        HeaderValue::from_static("hudson.model.Hudson.Read"),
    );
    h.append(
        "X-Permission-Implied-By",
        HeaderValue::from_static("hudson.security.Permission.GenericRead"),
    );
    h.append(
        "X-Permission-Implied-By",
        HeaderValue::from_static("hudson.model.Hudson.Administer"),
    );
    res
}

fn percent_encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._*".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Spring Security's `BasicAuthenticationEntryPoint`: 401 "Unauthorized".
fn unauthorized(uri: &str) -> Response {
    let mut res = jetty_error(StatusCode::UNAUTHORIZED, "Unauthorized", uri);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Jenkins\""),
    );
    res
}

fn restarting() -> Response {
    let mut res = html(
        StatusCode::SERVICE_UNAVAILABLE,
        "<!DOCTYPE html><html><head><title>Starting Jenkins</title></head><body>\
         <h1>Please wait while Jenkins is getting ready to work...</h1>\
         <p>Your browser will reload automatically when Jenkins is ready.</p></body></html>"
            .to_owned(),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

fn reverse_proxy_login() -> Response {
    html(
        StatusCode::OK,
        "<!DOCTYPE html><html><head><title>Sign in</title></head><body>\
         <form method=\"post\" action=\"/oauth2/sign_in\"><h1>Sign in to continue</h1>\
         <input name=\"username\"/><input name=\"password\" type=\"password\"/>\
         <button>Sign in</button></form></body></html>"
            .to_owned(),
    )
}

// ----- auth -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// HTTP Basic with the API token (`BasicHeaderApiTokenAuthenticator`): no crumb needed.
    Token,
    /// A web session from the cookie: crumb needed on POST.
    Session(String),
    Anonymous,
}

fn cookie_name(st: &State) -> String {
    // Jetty names the session cookie JSESSIONID.<node id>.
    format!("JSESSIONID.{}", &st.crumb("cookie-name")[..8])
}

fn authenticate(st: &State, headers: &HeaderMap) -> Result<Principal, ()> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let auth = auth.to_str().map_err(|_| ())?;
        if auth.len() >= 6 && auth[..6].eq_ignore_ascii_case("basic ") {
            // BasicHeaderProcessor: undecodable base64 counts as "", which has no ':'.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth[6..].trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let Some((user, token)) = decoded.split_once(':') else {
                tracing::debug!("Malformed HTTP basic Authorization header");
                return Err(());
            };
            if user == st.cfg.user && token == st.cfg.token {
                return Ok(Principal::Token);
            }
            tracing::debug!(reason = %msg::invalid_token(user), "authentication failed");
            return Err(());
        }
    }
    let name = cookie_name(st);
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
                && st.sessions.contains_key(v)
            {
                return Ok(Principal::Session(v.to_owned()));
            }
        }
    }
    Ok(Principal::Anonymous)
}

// ----- the request handler ----------------------------------------------------------------

struct Req {
    method: Method,
    uri: String,
    segs: Vec<String>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    principal: Principal,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn segs(&self) -> Vec<&str> {
        self.segs.iter().map(String::as_str).collect()
    }

    fn is_post(&self) -> bool {
        self.method == Method::POST
    }
}

async fn handle(AxState(sim): AxState<Simulator>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let uri = parts.uri.path().to_owned();
    let uri_with_query = parts
        .uri
        .path_and_query()
        .map_or(uri.clone(), |p| p.as_str().to_owned());
    let Some(query) = parse_urlencoded(parts.uri.query().unwrap_or("")) else {
        return bad_request("Malformed query string", &uri);
    };
    let segs: Option<Vec<String>> = uri
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let Some(segs) = segs else {
        return bad_request("Malformed URI", &uri);
    };
    let is_sim = segs.first().is_some_and(|s| s == "__sim");

    let mut truncate = false;
    if !is_sim {
        let (down, fx) = sim.with(|st, now| {
            (
                st.down_until.is_some_and(|u| now < u),
                faults::effects(&mut st.faults, now),
            )
        });
        if down {
            return restarting();
        }
        if let Some(d) = fx.delay {
            tokio::time::sleep(d).await;
        }
        if let Some(status) = fx.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return jetty_error(status, status.canonical_reason().unwrap_or("Error"), &uri);
        }
        if fx.login_page {
            return reverse_proxy_login();
        }
        truncate = fx.truncate_json;
    }

    // Unprotected root actions.
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match seg_refs.as_slice() {
        ["jnlpJars", "agent.jar" | "slave.jar"] => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/java-archive")],
                AGENT_JAR_PLACEHOLDER,
            )
                .into_response();
        }
        ["jnlpJars", ..] => return not_found(&uri),
        ["login"] => {
            return html(
                StatusCode::OK,
                "<!DOCTYPE html><html><head><title>Sign in [Jenkins]</title></head><body>\
                 <form method=\"post\" action=\"j_spring_security_check\">\
                 <input name=\"j_username\"/><input name=\"j_password\" type=\"password\"/>\
                 </form></body></html>"
                    .to_owned(),
            );
        }
        _ => {}
    }

    let principal = {
        let st = sim.lock();
        authenticate(&st, &parts.headers)
    };
    let principal = match principal {
        Ok(Principal::Anonymous) => return login_required(&uri_with_query),
        Ok(p) => p,
        Err(()) => return unauthorized(&uri),
    };

    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return jetty_error(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", &uri),
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        let parsed = std::str::from_utf8(&body).ok().and_then(parse_urlencoded);
        match parsed {
            Some(f) => f,
            None => return bad_request("Malformed form submission", &uri),
        }
    } else {
        Vec::new()
    };
    let req = Req {
        method: parts.method,
        uri,
        segs,
        query,
        form,
        headers: parts.headers,
        body,
        principal,
    };

    // CrumbFilter: a POST from a web session needs the session's crumb.
    if req.is_post()
        && let Principal::Session(sid) = &req.principal
    {
        let expected = sim.lock().crumb(sid);
        let given = req
            .headers
            .get("Jenkins-Crumb")
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.param("Jenkins-Crumb"));
        if given != Some(expected.as_str()) {
            return jetty_error(StatusCode::FORBIDDEN, msg::NO_VALID_CRUMB, &req.uri);
        }
    }

    let res = if is_sim {
        sim_route(&sim, &req)
    } else {
        sim.with(|st, now| route(st, now, &req))
    };
    if truncate {
        return truncate_json(res).await;
    }
    res
}

async fn truncate_json(res: Response) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let cut = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

/// Renders an exported bean honouring `tree=` and `depth=`.
fn api_json(req: &Req, class: &str, f: impl FnOnce(&mut tree::Obj<'_, '_>)) -> Response {
    let spec = match req.query_param("tree").map(tree::parse_tree).transpose() {
        Ok(s) => s,
        Err(e) => {
            return oops(&format!(
                "jakarta.servlet.ServletException: Malformed tree expression: \
                 java.lang.IllegalArgumentException: {e}"
            ));
        }
    };
    let pruner = match Pruner::for_query(spec.as_ref(), req.query_param("depth")) {
        Ok(p) => p,
        Err(e) => return oops(&format!("jakarta.servlet.ServletException: {e}")),
    };
    json_body(StatusCode::OK, tree::render(pruner, class, f))
}

fn route(st: &mut State, now: Instant, req: &Req) -> Response {
    let now_ms = st.ms(now);
    let segs = req.segs();
    let root = st.root_url.clone();
    match segs.as_slice() {
        [] => html(
            StatusCode::OK,
            format!(
                "<!DOCTYPE html><html><head><title>Dashboard [Jenkins]</title></head><body>\
                 <h1>{} (longshore Jenkins simulator)</h1></body></html>",
                html_escape(&st.cfg.name)
            ),
        ),
        ["api", "json"] => {
            let cx = Ctx::new(st, now_ms);
            api_json(req, "hudson.model.Hudson", |o| model::root(o, &cx))
        }
        ["crumbIssuer", "api", "json"] => {
            let (sid, new) = match &req.principal {
                Principal::Session(sid) => (sid.clone(), false),
                _ => (hex::encode(rand::random::<[u8; 16]>()), true),
            };
            if new {
                st.sessions.insert(sid.clone(), st.cfg.user.clone());
            }
            let crumb = st.crumb(&sid);
            let mut res = api_json(req, "hudson.security.csrf.DefaultCrumbIssuer", |o| {
                model::crumb_issuer(o, &crumb)
            });
            if new {
                let cookie = format!("{}={sid}; Path=/; HttpOnly", cookie_name(st));
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    res.headers_mut().insert(header::SET_COOKIE, v);
                }
            }
            res
        }
        ["queue", "api", "json"] => {
            let cx = Ctx::new(st, now_ms);
            api_json(req, "hudson.model.Queue", |o| model::queue(o, &cx))
        }
        ["queue", "item", id, rest @ ..] => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found(&req.uri);
            };
            if rest != ["api", "json"] && !rest.is_empty() {
                return not_found(&req.uri);
            }
            let cx = Ctx::new(st, now_ms);
            if let Some(item) = st.queue.get(&id) {
                let class = match item.state {
                    super::state::ItemState::Waiting => "hudson.model.Queue$WaitingItem",
                    super::state::ItemState::Blocked => "hudson.model.Queue$BlockedItem",
                    super::state::ItemState::Buildable => "hudson.model.Queue$BuildableItem",
                };
                return api_json(req, class, |o| model::queue_item(o, &cx, item));
            }
            match st.left_item(id, now_ms) {
                Some(left) => api_json(req, "hudson.model.Queue$LeftItem", |o| {
                    model::left_item(o, &cx, left)
                }),
                None => not_found(&req.uri),
            }
        }
        ["queue", "cancelItem"] => {
            if !req.is_post() {
                return require_post(&format!("{root}queue/cancelItem"));
            }
            let Some(id) = req.param("id").and_then(|s| s.parse::<u64>().ok()) else {
                return bad_request("Provided id is not a number", &req.uri);
            };
            if st.cancel(id, now) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                jetty_error(
                    StatusCode::NOT_FOUND,
                    &format!("Provided id ({id}) not found"),
                    &req.uri,
                )
            }
        }
        ["computer", "api", "json"] => {
            let cx = Ctx::new(st, now_ms);
            api_json(req, "hudson.model.ComputerSet", |o| {
                model::computer_set(o, &cx)
            })
        }
        ["computer", "doCreateItem"] => do_create_node(st, now, req),
        ["computer", "createItem"] => create_node_xml(st, now, req),
        ["computer", name, rest @ ..] => {
            let Some(key) = st.node_key(name) else {
                return not_found(&req.uri);
            };
            computer_action(st, now, req, &key, rest)
        }
        ["label", expr, "api", "json"] => {
            let Some(l) = labels::assigned_label(Some(expr)) else {
                return not_found(&req.uri);
            };
            let cx = Ctx::new(st, now_ms);
            api_json(req, model::label_class(&l), |o| model::label(o, &cx, &l))
        }
        ["overallLoad", "api", "json"] => {
            let cx = Ctx::new(st, now_ms);
            api_json(req, "hudson.model.OverallLoadStatistics", |o| {
                model::overall_load(o, &cx)
            })
        }
        ["createItem"] => create_job(st, req),
        ["job", name, action @ ("build" | "buildWithParameters")] => {
            if !st.jobs.contains_key(*name) {
                return not_found(&req.uri);
            }
            if !req.is_post() {
                return require_post(&format!("{root}job/{name}/{action}"));
            }
            trigger(st, now, req, name, *action == "buildWithParameters")
        }
        _ => not_found(&req.uri),
    }
}

fn computer_action(st: &mut State, now: Instant, req: &Req, key: &str, rest: &[&str]) -> Response {
    let now_ms = st.ms(now);
    let root = st.root_url.clone();
    let node_url = st.nodes.get(key).map(|n| n.url()).unwrap_or_default();
    match rest {
        [] => html(
            StatusCode::OK,
            format!(
                "<!DOCTYPE html><html><head><title>{} [Jenkins]</title></head><body></body></html>",
                html_escape(key)
            ),
        ),
        ["api", "json"] => {
            let cx = Ctx::new(st, now_ms);
            let Some(n) = st.nodes.get(key) else {
                return not_found(&req.uri);
            };
            let class = if n.builtin {
                "hudson.model.Hudson$MasterComputer"
            } else {
                "hudson.slaves.SlaveComputer"
            };
            api_json(req, class, |o| model::computer(o, &cx, n))
        }
        ["jenkins-agent.jnlp" | "slave-agent.jnlp"] => {
            let Some(n) = st.nodes.get(key).filter(|n| !n.builtin) else {
                return not_found(&req.uri);
            };
            let secret = st.agent_secret(key).unwrap_or_default();
            let websocket = n.websocket;
            let (name, fs) = (html_escape(&n.name), html_escape(&n.remote_fs));
            st.secrets_issued.insert(secret.clone());
            let ws = if websocket {
                "    <argument>-webSocket</argument>\n"
            } else {
                ""
            };
            let body = format!(
                "<jnlp>\n  <application-desc>\n    <argument>{secret}</argument>\n    \
                 <argument>{name}</argument>\n{ws}    <argument>-workDir</argument>\n    \
                 <argument>{fs}</argument>\n    <argument>-internalDir</argument>\n    \
                 <argument>remoting</argument>\n    <argument>-url</argument>\n    \
                 <argument>{root}</argument>\n  </application-desc>\n</jnlp>",
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-java-jnlp-file")],
                body,
            )
                .into_response()
        }
        [action @ ("toggleOffline" | "changeOfflineCause" | "doDelete")] => {
            if !req.is_post() {
                return require_post(&format!("{root}{node_url}{action}"));
            }
            match *action {
                "doDelete" => match st.delete_node(key, now) {
                    Ok(()) => redirect(StatusCode::FOUND, &format!("{root}computer/")),
                    Err(e) => failure(&e.to_string()),
                },
                _ => {
                    let is_temp = st.nodes.get(key).is_some_and(|n| n.temp_offline.is_some());
                    let message = req
                        .param("offlineMessage")
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned);
                    let cause = if *action == "toggleOffline" && is_temp {
                        None
                    } else {
                        Some(UserOffline {
                            user: st.cfg.user.clone(),
                            message,
                            timestamp: st.ms(now),
                        })
                    };
                    st.set_temp_offline(key, cause, now);
                    redirect(StatusCode::FOUND, &format!("{root}{node_url}"))
                }
            }
        }
        _ => not_found(&req.uri),
    }
}

#[derive(Deserialize)]
struct NodeForm {
    #[serde(rename = "numExecutors", default)]
    num_executors: Option<serde_json::Value>,
    #[serde(rename = "labelString", default)]
    label_string: Option<String>,
    #[serde(rename = "nodeDescription", default)]
    node_description: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(rename = "remoteFS", default)]
    remote_fs: Option<String>,
    #[serde(default)]
    launcher: Option<serde_json::Value>,
}

fn parse_mode(s: Option<&str>) -> Result<NodeMode, String> {
    match s.map(str::trim) {
        None | Some("") | Some("NORMAL") => Ok(NodeMode::Normal),
        Some("EXCLUSIVE") => Ok(NodeMode::Exclusive),
        Some(other) => Err(format!("No enum constant hudson.model.Node.Mode.{other}")),
    }
}

/// `ComputerSet.doDoCreateItem`.
fn do_create_node(st: &mut State, now: Instant, req: &Req) -> Response {
    if !req.is_post() {
        return require_post(&format!("{}computer/doCreateItem", st.root_url));
    }
    let name = match st.check_new_node_name(req.param("name")) {
        Ok(n) => n,
        Err(e) => return failure(&e.to_string()),
    };
    match req.param("type") {
        Some("hudson.slaves.DumbSlave" | "hudson.slaves.DumbSlave$DescriptorImpl") => {}
        Some(other) => return failure(&format!("No node type ‘{other}’ is known")),
        None => return failure("No node type given"),
    }
    let Some(json) = req.param("json") else {
        return bad_request("This page expects a form submission", &req.uri);
    };
    let form: NodeForm = match serde_json::from_str(json) {
        Ok(f) => f,
        Err(e) => return bad_request(&format!("Malformed JSON form: {e}"), &req.uri),
    };
    let executors = match &form.num_executors {
        None => 1,
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        Some(_) => 0,
    };
    let mode = match parse_mode(form.mode.as_deref()) {
        Ok(m) => m,
        Err(e) => return bad_request(&e, &req.uri),
    };
    let websocket = form
        .launcher
        .as_ref()
        .and_then(|l| l.get("webSocket"))
        .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    let executors = u32::try_from(executors).unwrap_or(0);
    let spec = AgentSpec {
        name: &name,
        label_string: form.label_string.as_deref().unwrap_or(""),
        description: form.node_description.as_deref().unwrap_or(""),
        executors,
        mode,
        remote_fs: form.remote_fs.as_deref().unwrap_or("/home/jenkins/agent"),
        websocket,
    };
    match st.create_agent(spec, now) {
        Ok(()) => redirect(StatusCode::FOUND, &format!("{}computer/", st.root_url)),
        Err(e) => failure(&e.to_string()),
    }
}

/// Text of the first `<tag>…</tag>` in `xml`, entities resolved.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn xml_root(xml: &str) -> Option<String> {
    let mut rest = xml;
    loop {
        let i = rest.find('<')?;
        rest = &rest[i + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        return Some(rest[..end].to_owned());
    }
}

fn is_xml(req: &Req) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/xml") || v.starts_with("text/xml"))
}

/// `ComputerSet.doCreateItem` with an XML node configuration.
fn create_node_xml(st: &mut State, now: Instant, req: &Req) -> Response {
    if !req.is_post() {
        return require_post(&format!("{}computer/createItem", st.root_url));
    }
    if !is_xml(req) {
        return failure("No mode given");
    }
    let Ok(xml) = std::str::from_utf8(&req.body) else {
        return bad_request("Malformed XML", &req.uri);
    };
    if xml_root(xml).is_none() {
        return bad_request("Malformed XML", &req.uri);
    }
    let name = req
        .param("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| xml_text(xml, "name"));
    let Some(name) = name else {
        return failure(msg::NAME_REQUIRED);
    };
    if st.nodes.contains_key(&name) {
        return failure(&format!("Node '{name}' already exists"));
    }
    let executors = xml_text(xml, "numExecutors")
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1);
    let mode = match parse_mode(xml_text(xml, "mode").as_deref()) {
        Ok(m) => m,
        Err(e) => return bad_request(&e, &req.uri),
    };
    let websocket = xml_text(xml, "webSocket").is_some_and(|s| s.trim() == "true");
    let label = xml_text(xml, "label").unwrap_or_default();
    let description = xml_text(xml, "description").unwrap_or_default();
    let fs = xml_text(xml, "remoteFS").unwrap_or_else(|| "/home/jenkins/agent".into());
    let spec = AgentSpec {
        name: &name,
        label_string: &label,
        description: &description,
        executors,
        mode,
        remote_fs: &fs,
        websocket,
    };
    match st.create_agent(spec, now) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => failure(&e.to_string()),
    }
}

/// The label of a pipeline script's first `node('…')` (or declarative `label '…'`).
fn pipeline_label(script: &str) -> Option<String> {
    for key in ["node", "label"] {
        let mut rest = script;
        while let Some(i) = rest.find(key) {
            let after = rest[i + key.len()..].trim_start();
            let after = after.strip_prefix('(').unwrap_or(after).trim_start();
            if let Some(q @ ('\'' | '"')) = after.chars().next()
                && let Some(end) = after[1..].find(q)
            {
                return Some(after[1..1 + end].to_owned());
            }
            rest = &rest[i + key.len()..];
        }
    }
    None
}

/// `Jenkins.doCreateItem` with a `config.xml` body.
fn create_job(st: &mut State, req: &Req) -> Response {
    if !req.is_post() {
        return require_post(&format!("{}createItem", st.root_url));
    }
    let Some(name) = req.param("name").map(str::trim).filter(|n| !n.is_empty()) else {
        return failure(msg::NAME_REQUIRED);
    };
    let Ok(xml) = std::str::from_utf8(&req.body) else {
        return bad_request("Malformed XML", &req.uri);
    };
    let Some(root) = xml_root(xml) else {
        return bad_request("Malformed XML", &req.uri);
    };
    // A LONGSHORE_SIM_DURATION_MS parameter definition's default sets the job's duration.
    let duration = xml
        .find(&format!("<name>{DURATION_PARAM}</name>"))
        .and_then(|i| xml_text(&xml[i..], "defaultValue"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(super::state::DEFAULT_BUILD_DURATION, Duration::from_millis);
    let (kind, label, concurrent) = match root.as_str() {
        "project" => {
            let can_roam = xml_text(xml, "canRoam").is_none_or(|v| v.trim() == "true");
            let assigned = xml_text(xml, "assignedNode");
            let label = match (can_roam, assigned) {
                (true, _) => None,
                (false, None) => Some("built-in".to_owned()),
                (false, Some(a)) => Some(a),
            };
            let concurrent = xml_text(xml, "concurrentBuild").is_some_and(|v| v.trim() == "true");
            (JobKind::Freestyle, label, concurrent)
        }
        "flow-definition" => {
            let script = xml_text(xml, "script").unwrap_or_default();
            let concurrent = !xml.contains("DisableConcurrentBuildsJobProperty");
            (JobKind::Pipeline, pipeline_label(&script), concurrent)
        }
        other => return bad_request(&format!("Unsupported job type <{other}>"), &req.uri),
    };
    match st.create_job(name, kind, label, concurrent, duration) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => failure(&e.to_string()),
    }
}

/// `TimeDuration.fromString`: a number of seconds, or with `ms`/`sec`/`secs`/`min` units.
fn parse_delay(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix("secs").or_else(|| s.strip_suffix("sec")) {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix("min") {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .map(|n| Duration::from_millis(n.saturating_mul(unit_ms)))
}

/// `ParameterizedJobMixIn.doBuild` / `doBuildWithParameters`.
fn trigger(st: &mut State, now: Instant, req: &Req, job: &str, with_params: bool) -> Response {
    let delay = match req.param("delay").map(parse_delay) {
        None => None,
        Some(Some(d)) => Some(d),
        Some(None) => return bad_request("Invalid delay", &req.uri),
    };
    let duration = match req.param(DURATION_PARAM).map(|v| v.trim().parse::<u64>()) {
        None => None,
        Some(Ok(ms)) => Some(Duration::from_millis(ms)),
        Some(Err(_)) => {
            return bad_request(&format!("{DURATION_PARAM} must be milliseconds"), &req.uri);
        }
    };
    const NOT_PARAMS: [&str; 5] = ["delay", "token", "Jenkins-Crumb", "json", DURATION_PARAM];
    let params: Vec<(String, String)> = if with_params {
        req.query
            .iter()
            .chain(req.form.iter())
            .filter(|(k, _)| !NOT_PARAMS.contains(&k.as_str()))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    match st.schedule(job, delay, params, duration, true, now) {
        Ok(id) => redirect(
            StatusCode::CREATED,
            &format!("{}queue/item/{id}/", st.root_url),
        ),
        Err(SimError::NoSuchJob(_)) => not_found(&req.uri),
        Err(e) => failure(&e.to_string()),
    }
}

// ----- /__sim/ ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct SubmitBody {
    job: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    kind: Option<JobKind>,
}

#[derive(Deserialize)]
struct AgentBody {
    name: String,
    #[serde(default)]
    labels: String,
    #[serde(default = "one")]
    executors: u32,
}

fn one() -> u32 {
    1
}

fn sim_error(e: SimError) -> Response {
    match e {
        SimError::NoSuchNode(_) | SimError::NoSuchJob(_) => {
            plain(StatusCode::NOT_FOUND, e.to_string())
        }
        other => plain(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

fn sim_route(sim: &Simulator, req: &Req) -> Response {
    let segs = req.segs();
    let post = req.is_post();
    match (segs.as_slice(), &req.method) {
        (["__sim", "faults"], m) if *m == Method::POST => {
            match serde_json::from_slice::<Fault>(&req.body) {
                Ok(f) => {
                    sim.inject(f);
                    StatusCode::NO_CONTENT.into_response()
                }
                Err(e) => plain(StatusCode::BAD_REQUEST, format!("bad fault: {e}")),
            }
        }
        (["__sim", "faults"], m) if *m == Method::DELETE => {
            sim.clear_faults();
            StatusCode::NO_CONTENT.into_response()
        }
        (["__sim", "submit"], _) if post => match serde_json::from_slice::<SubmitBody>(&req.body) {
            Ok(b) => {
                let duration = b
                    .duration_ms
                    .map_or(super::state::DEFAULT_BUILD_DURATION, Duration::from_millis);
                match sim.submit(
                    &b.job,
                    b.label.as_deref(),
                    duration,
                    b.kind.unwrap_or(JobKind::Freestyle),
                ) {
                    Ok(id) => json_body(StatusCode::CREATED, format!("{{\"id\":{id}}}")),
                    Err(e) => sim_error(e),
                }
            }
            Err(e) => plain(StatusCode::BAD_REQUEST, format!("bad submit: {e}")),
        },
        (["__sim", "agents"], _) if post => match serde_json::from_slice::<AgentBody>(&req.body) {
            Ok(b) => match sim.create_agent(&b.name, &b.labels, b.executors) {
                Ok(()) => StatusCode::CREATED.into_response(),
                Err(e) => sim_error(e),
            },
            Err(e) => plain(StatusCode::BAD_REQUEST, format!("bad agent: {e}")),
        },
        (["__sim", "agents", name, "secret"], m) if *m == Method::GET => {
            match sim.agent_secret(name) {
                Some(s) => plain(StatusCode::OK, s),
                None => plain(StatusCode::NOT_FOUND, format!("no such node: {name}")),
            }
        }
        (["__sim", "stats"], m) if *m == Method::GET => match serde_json::to_string(&sim.stats()) {
            Ok(s) => json_body(StatusCode::OK, s),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        _ => plain(StatusCode::NOT_FOUND, "unknown simulator endpoint"),
    }
}

// ----- /wsagents/ -------------------------------------------------------------------------

/// `jenkins.agents.WebSocketAgents.doIndex` (unprotected root action).
async fn ws_agents(
    AxState(sim): AxState<Simulator>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let uri = "/wsagents/";
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(agent), Some(secret), Some(_capability)) =
        (h("Node-Name"), h("Secret-Key"), h("X-Remoting-Capability"))
    else {
        return bad_request(msg::WS_ONLY_FOR_AGENT_JAR, uri);
    };
    let cookie = h("Connection-Cookie");
    let checked = sim.with(|st, now| {
        if st.down_until.is_some_and(|u| now < u) {
            return Err(Box::new(restarting()));
        }
        let Some(expected) = st.agent_secret(&agent) else {
            return Err(Box::new(bad_request(msg::WS_NO_SUCH_AGENT, uri)));
        };
        // MessageDigest.isEqual: compare without an early exit.
        let same = secret.len() == expected.len()
            && secret
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Box::new(StatusCode::FORBIDDEN.into_response()));
        }
        // Util.toHexString(Util.fromHexString(cookie)), or a fresh 32-byte cookie.
        let cookie = match &cookie {
            Some(c) => match hex::decode(c) {
                Ok(bytes) => hex::encode(bytes),
                Err(_) => {
                    return Err(Box::new(oops(
                        "java.lang.NumberFormatException: malformed cookie",
                    )));
                }
            },
            None => hex::encode(rand::random::<[u8; 32]>()),
        };
        if let Some(current) = st.connected_cookie(&agent)
            && current != cookie
        {
            return Err(Box::new(bad_request(
                &msg::ws_already_connected(&agent),
                uri,
            )));
        }
        Ok(cookie)
    });
    let cookie = match checked {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let Ok(ws) = ws else {
        return bad_request("WebSocket upgrade required", uri);
    };
    let name = agent.clone();
    let session_cookie = cookie.clone();
    let mut res = ws.on_upgrade(move |socket| agent_session(sim, name, session_cookie, socket));
    let hdrs = res.headers_mut();
    hdrs.insert(
        "X-Remoting-Capability",
        HeaderValue::from_static(REMOTING_CAPABILITY),
    );
    hdrs.insert(
        "X-Remoting-Minimum-Version",
        HeaderValue::from_static(REMOTING_MINIMUM_VERSION),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        hdrs.insert("Connection-Cookie", v);
    }
    res
}

async fn agent_session(sim: Simulator, name: String, cookie: String, socket: WebSocket) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AgentEvent>();
    let conn_id = sim.with(|st, now| {
        match st.connected_cookie(&name) {
            // DefaultJnlpSlaveReceiver: the current peer reconnecting replaces its old channel.
            Some(current) if current == cookie => st.disconnect_node(&name, now, true),
            Some(_) => return None,
            None => {}
        }
        st.connect(&name, cookie, tx, now)
    });
    let (mut sink, mut stream) = socket.split();
    let Some(conn_id) = conn_id else {
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    tracing::info!(agent = %name, "agent connected");
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(AgentEvent::Text(t)) => {
                    if sink.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(AgentEvent::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => last_seen = Instant::now(),
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > PING_INTERVAL * 3 {
                    tracing::info!(agent = %name, "agent stopped answering pings");
                    break;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(agent = %name, "agent disconnected");
    sim.with(|st, now| st.connection_closed(&name, conn_id, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_forms_parse_or_fail_cleanly() {
        assert_eq!(
            parse_urlencoded("a=1&b=x+y&c=%E2%80%98"),
            Some(vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "‘".into())
            ])
        );
        assert_eq!(parse_urlencoded("a=%zz"), None);
        assert_eq!(parse_urlencoded("a=%e2"), None);
        assert_eq!(parse_urlencoded("a=%"), None);
    }

    #[test]
    fn pipeline_labels_are_found() {
        assert_eq!(
            pipeline_label("node('docker && linux') { sh 'make' }"),
            Some("docker && linux".into())
        );
        assert_eq!(pipeline_label("node { sh 'x' }"), None);
        assert_eq!(
            pipeline_label("pipeline { agent { label \"arm\" } }"),
            Some("arm".into())
        );
    }

    #[test]
    fn delays() {
        assert_eq!(parse_delay("0sec"), Some(Duration::ZERO));
        assert_eq!(parse_delay("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_delay("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_delay("x"), None);
    }
}
