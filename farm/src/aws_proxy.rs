//! A small HTTP proxy between the AWS SDK and moto, for what moto does not do itself:
//!
//! - **EC2 idempotency.** Real EC2 honours `RunInstances`' `ClientToken`: the same token with
//!   the same parameters returns the original result and launches nothing; the same token with
//!   other parameters fails with `IdempotentParameterMismatch` ("Ensuring idempotency in Amazon
//!   EC2 API requests", EC2 API reference). moto 5.2.5 ignores the token and launches again.
//!   The proxy keeps each token's request and answer, so a retried request behaves as on AWS.
//!   Once the token's instance is terminated, EC2 answers `IdempotentInstanceTerminated`
//!   instead of the old result; the proxy does too (for terminations made through it).
//! - **Faults on purpose.** Rules inject what AWS answers under load or when it is out of
//!   capacity: throttling, 5xx, `InsufficientInstanceCapacity`, a request that succeeded but whose
//!   answer is lost (the caller sees a 500 and retries), or a delay. Each rule can be limited to
//!   one API action, to requests carrying one parameter value (say `InstanceType=c6i.large`) and
//!   to a number of requests.
//!
//! - **EC2's eventual consistency.** On AWS a fresh instance can be missing from
//!   `DescribeInstances` for a while ("Eventual consistency in the Amazon EC2 API"); moto lists
//!   it at once. [`AwsProxy::hide_new_instances_for`] makes the proxy leave instances it saw
//!   launched out of `DescribeInstances` answers for that long.
//!
//! Error bodies follow each protocol's real shape: EC2's `<Response><Errors>…` XML, the query
//! protocol's `<ErrorResponse>` (Auto Scaling, SNS) and the JSON protocols' `__type` body
//! (SSM, DynamoDB, ECS, Secrets Manager, chosen by the `X-Amz-Target` header).
//!
//! Point an SDK (or a Lambda under the harness, through `AWS_ENDPOINT_URL`) at
//! [`AwsProxy::endpoint_url`] instead of moto's URL.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a [`FaultRule`] makes the proxy answer instead of moto's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsFault {
    /// The protocol's throttling error (`RequestLimitExceeded` for EC2, `Throttling` for the
    /// query protocol, `ThrottlingException` for JSON), HTTP 503 / 400 as AWS sends them.
    Throttle,
    /// HTTP 500 `InternalError`, without reaching moto.
    ServerError,
    /// EC2's `InsufficientInstanceCapacity` (HTTP 500), without reaching moto.
    InsufficientCapacity,
    /// The request reaches moto and takes effect, then the caller gets HTTP 500: an answer lost
    /// on the way back.
    LoseResponse,
    /// The request is held this long before it is forwarded.
    Delay(Duration),
}

impl AwsFault {
    /// A short name for statistics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AwsFault::Throttle => "throttle",
            AwsFault::ServerError => "server_error",
            AwsFault::InsufficientCapacity => "insufficient_capacity",
            AwsFault::LoseResponse => "lose_response",
            AwsFault::Delay(_) => "delay",
        }
    }
}

/// One fault rule; the first rule that matches a request decides.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The API action (`RunInstances`, `GetParameter`…); `None` matches every action.
    pub action: Option<String>,
    /// Only requests whose form parameter has this value (`("InstanceType", "c6i.large")`).
    pub param: Option<(String, String)>,
    pub fault: AwsFault,
    /// How many requests the rule still applies to; `None` until it is cleared.
    pub remaining: Option<u32>,
}

impl FaultRule {
    /// A rule for every request of `action`, until cleared.
    pub fn on(action: &str, fault: AwsFault) -> FaultRule {
        FaultRule {
            action: Some(action.to_string()),
            param: None,
            fault,
            remaining: None,
        }
    }

    /// Only requests whose form parameter `name` equals `value`.
    pub fn with_param(mut self, name: &str, value: &str) -> FaultRule {
        self.param = Some((name.to_string(), value.to_string()));
        self
    }

    /// Only the next `count` matching requests.
    pub fn times(mut self, count: u32) -> FaultRule {
        self.remaining = Some(count);
        self
    }

    fn matches(&self, request: &AwsRequest) -> bool {
        let action_matches = self
            .action
            .as_deref()
            .is_none_or(|action| request.action.as_deref() == Some(action));
        let param_matches = self.param.as_ref().is_none_or(|(name, value)| {
            request.params.get(name.as_str()).map(String::as_str) == Some(value.as_str())
        });
        action_matches && param_matches && self.remaining != Some(0)
    }
}

/// What went through the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests per API action (`?` when the action could not be read).
    pub requests: BTreeMap<String, u64>,
    /// Faults injected, per [`AwsFault::kind`].
    pub faults: BTreeMap<String, u64>,
    /// `RunInstances` answered from a token's earlier result, without launching.
    pub idempotent_replays: u64,
    /// `RunInstances` refused with `IdempotentParameterMismatch`.
    pub idempotency_mismatches: u64,
    /// `RunInstances` forwarded to moto (each launched instances).
    pub launches_forwarded: u64,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<FaultRule>,
    /// How long a launched instance stays out of DescribeInstances answers.
    hide_new_for: Duration,
    /// Instances launched through the proxy and when.
    launched_at: HashMap<String, Instant>,
    /// Instances terminated through the proxy: a token whose launch they were no longer
    /// replays it (EC2 answers `IdempotentInstanceTerminated`).
    terminated: std::collections::HashSet<String>,
    stats: ProxyStats,
    /// ClientToken → (the request's parameters without the token, moto's answer once known).
    tokens: HashMap<String, TokenEntry>,
}

struct TokenEntry {
    params: BTreeMap<String, String>,
    answer: Option<(StatusCode, Bytes)>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<ProxyState>>,
    upstream: String,
    client: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProxyState> {
        // Statistics and rules stay usable after a panic elsewhere: nothing is half-updated
        // in a way that matters for a test proxy.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running proxy; it stops when dropped.
pub struct AwsProxy {
    shared: Shared,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl AwsProxy {
    /// Listens on a free loopback port and forwards to `upstream` (moto's endpoint URL).
    pub async fn start(upstream: &str) -> std::io::Result<AwsProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Shared {
            state: Arc::default(),
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "aws proxy ended");
            }
        });
        Ok(AwsProxy {
            shared,
            addr,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The URL to give the SDK (`endpoint_url`) or a function (`AWS_ENDPOINT_URL`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule after the existing ones.
    pub fn add_rule(&self, rule: FaultRule) {
        self.shared.lock().rules.push(rule);
    }

    /// Removes every rule: from now on every request reaches moto unchanged.
    pub fn clear_rules(&self) {
        self.shared.lock().rules.clear();
    }

    /// From now on, instances launched through the proxy are missing from `DescribeInstances`
    /// for `delay` after their launch (zero turns it off).
    pub fn hide_new_instances_for(&self, delay: Duration) {
        self.shared.lock().hide_new_for = delay;
    }

    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats.clone()
    }

    /// The instances each `ClientToken` launched, from the answers moto gave (whether or not
    /// the caller received them): how the chaos harness tells a retried launch from a second one.
    pub fn launches_by_token(&self) -> BTreeMap<String, Vec<String>> {
        let state = self.shared.lock();
        state
            .tokens
            .iter()
            .filter_map(|(token, entry)| {
                let (_, body) = entry.answer.as_ref()?;
                Some((token.clone(), instance_ids(&String::from_utf8_lossy(body))))
            })
            .collect()
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The parts of a request the proxy decides on.
struct AwsRequest {
    action: Option<String>,
    protocol: Protocol,
    /// Form parameters of query-protocol requests (empty for JSON protocols).
    params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// EC2's own query dialect (errors in `<Response><Errors>`).
    Ec2,
    /// The query protocol of Auto Scaling, SNS, IAM, CloudFormation (`<ErrorResponse>`).
    Query,
    /// awsJson 1.0 / 1.1 (SSM, DynamoDB, ECS, Secrets Manager): the action is in `X-Amz-Target`.
    Json,
}

impl AwsRequest {
    fn read(headers: &HeaderMap, body: &[u8]) -> AwsRequest {
        if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            return AwsRequest {
                action: target.rsplit('.').next().map(str::to_string),
                protocol: Protocol::Json,
                params: BTreeMap::new(),
            };
        }
        let params = parse_form(body);
        // EC2 is the one query service whose API version is 2016-11-15.
        let protocol = if params.get("Version").map(String::as_str) == Some("2016-11-15") {
            Protocol::Ec2
        } else {
            Protocol::Query
        };
        AwsRequest {
            action: params.get("Action").cloned(),
            protocol,
            params,
        }
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = AwsRequest::read(&headers, &body);
    let replay = launched_token(&shared, &request);
    let fault = decide(&shared, &request, replay);
    match fault {
        Some(AwsFault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(AwsFault::LoseResponse) | None => {}
        Some(other) => return error_response(request.protocol, &other),
    }
    if request.action.as_deref() == Some("TerminateInstances") {
        let ids = request
            .params
            .iter()
            .filter(|(name, _)| name.starts_with("InstanceId."))
            .map(|(_, id)| id.clone());
        shared.lock().terminated.extend(ids);
    }
    if request.action.as_deref() == Some("RunInstances") {
        return run_instances(&shared, &request, fault, method, uri, headers, body).await;
    }
    let answer = forward(&shared, method, &uri, &headers, body).await;
    let answer = match (request.action.as_deref(), answer) {
        (Some("DescribeInstances"), Ok(response)) => {
            Ok(hide_young_instances(&shared, response).await)
        }
        (_, answer) => answer,
    };
    match (fault, answer) {
        (Some(AwsFault::LoseResponse), _) => {
            error_response(request.protocol, &AwsFault::LoseResponse)
        }
        (_, Ok(response)) => response,
        (_, Err(response)) => response,
    }
}

/// A `RunInstances` whose token already launched: EC2 answers it from its record of that
/// launch, without looking for capacity again.
fn launched_token(shared: &Shared, request: &AwsRequest) -> bool {
    request.action.as_deref() == Some("RunInstances")
        && request.params.get("ClientToken").is_some_and(|token| {
            shared
                .lock()
                .tokens
                .get(token)
                .is_some_and(|entry| entry.answer.is_some())
        })
}

/// Counts the request and picks the first matching rule's fault, using up one of its requests.
/// A replayed launch (`replay`) is never refused for capacity: there is none to find.
fn decide(shared: &Shared, request: &AwsRequest, replay: bool) -> Option<AwsFault> {
    let mut state = shared.lock();
    let action = request.action.clone().unwrap_or_else(|| "?".to_string());
    *state.stats.requests.entry(action).or_default() += 1;
    let rule = state.rules.iter_mut().find(|rule| {
        rule.matches(request) && !(replay && rule.fault == AwsFault::InsufficientCapacity)
    })?;
    if let Some(remaining) = rule.remaining.as_mut() {
        *remaining -= 1;
    }
    let fault = rule.fault.clone();
    *state
        .stats
        .faults
        .entry(fault.kind().to_string())
        .or_default() += 1;
    Some(fault)
}

/// `RunInstances` with EC2's idempotency: a known token replays its answer (or fails on other
/// parameters); a new token is forwarded and its answer kept.
async fn run_instances(
    shared: &Shared,
    request: &AwsRequest,
    fault: Option<AwsFault>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = request.params.get("ClientToken").cloned();
    let mut params = request.params.clone();
    params.remove("ClientToken");
    if let Some(token) = &token {
        let mut state = shared.lock();
        match state.tokens.get(token) {
            Some(entry) if entry.params != params => {
                state.stats.idempotency_mismatches += 1;
                return ec2_error(
                    StatusCode::BAD_REQUEST,
                    "IdempotentParameterMismatch",
                    "The client token you have provided is associated with a resource that is already deleted or has different parameters.",
                );
            }
            Some(TokenEntry {
                answer: Some((_, body)),
                ..
            }) if instance_ids(&String::from_utf8_lossy(body))
                .iter()
                .any(|id| state.terminated.contains(id)) =>
            {
                return ec2_error(
                    StatusCode::BAD_REQUEST,
                    "IdempotentInstanceTerminated",
                    "The client token you have provided is associated with an instance that is already terminated.",
                );
            }
            Some(TokenEntry {
                answer: Some((status, body)),
                ..
            }) => {
                let (status, body) = (*status, body.clone());
                state.stats.idempotent_replays += 1;
                drop(state);
                return if fault == Some(AwsFault::LoseResponse) {
                    error_response(Protocol::Ec2, &AwsFault::LoseResponse)
                } else {
                    xml_response(status, body)
                };
            }
            // A request with this token is in flight: EC2 answers IdempotentInstanceTerminated
            // or waits; keeping it simple, the caller is told to retry.
            Some(_) => return error_response(Protocol::Ec2, &AwsFault::ServerError),
            None => {
                state.tokens.insert(
                    token.clone(),
                    TokenEntry {
                        params,
                        answer: None,
                    },
                );
            }
        }
    }
    shared.lock().stats.launches_forwarded += 1;
    // EC2 completes a launch whether or not its caller is still there for the answer: the
    // launch runs in a task of its own, which records the answer under the token even when
    // the caller gave up (a tick cut off at its deadline). Had it run in this handler, a
    // dropped connection would have left the token "in flight" for good, every retry answered
    // 500, and the job waiting forever (chaos seed 342, under load).
    let launch = tokio::spawn(forward_and_record(
        shared.clone(),
        token,
        method,
        uri,
        headers,
        body,
    ));
    let response = match launch.await {
        Ok(response) => response,
        Err(err) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("aws proxy: the launch task failed: {err}"),
            )
                .into_response();
        }
    };
    if fault == Some(AwsFault::LoseResponse) {
        return error_response(Protocol::Ec2, &AwsFault::LoseResponse);
    }
    response
}

/// Forwards a `RunInstances` to moto and keeps its answer under its token (a refused or
/// unanswered launch launched nothing: its token is free again).
async fn forward_and_record(
    shared: Shared,
    token: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = forward(&shared, method, &uri, &headers, body).await;
    let response = match answer {
        Ok(response) => response,
        Err(response) => {
            // moto never answered: forget the token so a retry launches.
            if let Some(token) = &token {
                shared.lock().tokens.remove(token);
            }
            return response;
        }
    };
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut state = shared.lock();
    if status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        for id in instance_ids(&text) {
            state.launched_at.insert(id, Instant::now());
        }
    }
    if let Some(token) = &token {
        if status.is_success() {
            if let Some(entry) = state.tokens.get_mut(token) {
                entry.answer = Some((status, bytes.clone()));
            }
        } else {
            // A refused launch launched nothing: the token may be used again.
            state.tokens.remove(token);
        }
    }
    drop(state);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Drops from a DescribeInstances answer the reservations of instances launched less than
/// `hide_new_for` ago.
async fn hide_young_instances(shared: &Shared, response: Response) -> Response {
    let hidden: Vec<String> = {
        let state = shared.lock();
        state
            .launched_at
            .iter()
            .filter(|(_, at)| at.elapsed() < state.hide_new_for)
            .map(|(id, _)| id.clone())
            .collect()
    };
    if hidden.is_empty() || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let kept = without_reservations_of(&text, &hidden);
    Response::from_parts(parts, axum::body::Body::from(kept))
}

/// Every `<instanceId>` in an EC2 answer.
fn instance_ids(xml: &str) -> Vec<String> {
    xml.split("<instanceId>")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once("</instanceId>")
                .map(|(id, _)| id.to_string())
        })
        .collect()
}

/// The answer without the `<reservationSet>` items that hold one of `hidden`. Reservation items
/// are the `<item>` elements directly inside `<reservationSet>`; nested `<item>`s (instances,
/// tags, groups) are skipped by counting depth.
fn without_reservations_of(xml: &str, hidden: &[String]) -> String {
    let Some(set_start) = xml
        .find("<reservationSet>")
        .map(|i| i + "<reservationSet>".len())
    else {
        return xml.to_string();
    };
    let Some(set_end) = xml[set_start..]
        .find("</reservationSet>")
        .map(|i| i + set_start)
    else {
        return xml.to_string();
    };
    let set = &xml[set_start..set_end];
    let mut kept = String::with_capacity(xml.len());
    kept.push_str(&xml[..set_start]);
    let mut rest = set;
    while let Some(open) = rest.find("<item>") {
        kept.push_str(&rest[..open]);
        let mut depth = 0usize;
        let mut end = open;
        let mut cursor = open;
        while let Some(next) = rest[cursor..].find("item>").map(|i| i + cursor) {
            let before = &rest[..next];
            if before.ends_with("</") {
                depth = depth.saturating_sub(1);
            } else if before.ends_with('<') {
                depth += 1;
            } // else another tag that ends in "item>": not ours
            cursor = next + "item>".len();
            if depth == 0 {
                end = cursor;
                break;
            }
        }
        if end == open {
            // Unbalanced: keep the rest as it is.
            kept.push_str(&rest[open..]);
            rest = "";
            break;
        }
        let reservation = &rest[open..end];
        if !hidden
            .iter()
            .any(|id| reservation.contains(&format!("<instanceId>{id}</instanceId>")))
        {
            kept.push_str(reservation);
        }
        rest = &rest[end..];
    }
    kept.push_str(rest);
    kept.push_str(&xml[set_end..]);
    kept
}

/// Sends the request on to moto; a transport failure becomes a 502 for the caller.
async fn forward(
    shared: &Shared,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut outgoing = shared
        .client
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.send().await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("aws proxy: moto did not answer: {e}"),
        )
            .into_response()
    })?;
    let status = answer.status();
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("aws proxy: moto's answer broke off: {e}"),
        )
            .into_response()
    })?;
    response
        .body(axum::body::Body::from(bytes))
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

/// The error a fault stands for, in the request's protocol.
fn error_response(protocol: Protocol, fault: &AwsFault) -> Response {
    let (status, code, message) = match (fault, protocol) {
        (AwsFault::Throttle, Protocol::Ec2) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ),
        (AwsFault::Throttle, Protocol::Query) => {
            (StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded")
        }
        (AwsFault::Throttle, Protocol::Json) => (
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        ),
        (AwsFault::InsufficientCapacity, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient capacity in the Availability Zone you requested.",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occurred",
        ),
    };
    match protocol {
        Protocol::Ec2 => ec2_error(status, code, message),
        Protocol::Query => xml_response(
            status,
            Bytes::from(format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>longshore-proxy</RequestId></ErrorResponse>",
                if status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                }
            )),
        ),
        Protocol::Json => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(axum::body::Body::from(format!(
                r#"{{"__type":"{code}","message":"{message}"}}"#
            )))
            .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()),
    }
}

fn ec2_error(status: StatusCode, code: &str, message: &str) -> Response {
    xml_response(
        status,
        Bytes::from(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>longshore-proxy</RequestID></Response>"#
        )),
    )
}

fn xml_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        body,
    )
        .into_response()
}

/// `application/x-www-form-urlencoded` into name → value (the last value of a repeated name).
pub fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let Ok(text) = std::str::from_utf8(body) else {
        return BTreeMap::new();
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// Percent-decoding of one form field (`+` is a space).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let form = parse_form(b"Action=RunInstances&Version=2016-11-15&TagSpecification.1.Tag.1.Value=a%3Db+c&Odd=%zz");
        assert_eq!(form["Action"], "RunInstances");
        assert_eq!(form["TagSpecification.1.Tag.1.Value"], "a=b c");
        assert_eq!(form["Odd"], "%zz");
    }

    #[test]
    fn hidden_instances_leave_their_whole_reservation_out() {
        let xml = "<R><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-1</instanceId><tagSet><item><key>a</key></item></tagSet></item></instancesSet></item>\
                   <item><reservationId>r-2</reservationId><instancesSet><item><instanceId>i-2</instanceId></item></instancesSet></item></reservationSet></R>";
        let kept = without_reservations_of(xml, &["i-1".to_string()]);
        assert!(!kept.contains("r-1") && !kept.contains("i-1"), "{kept}");
        assert!(kept.contains("<item><reservationId>r-2</reservationId><instancesSet><item><instanceId>i-2</instanceId></item></instancesSet></item></reservationSet></R>"), "{kept}");
        assert_eq!(instance_ids(xml), vec!["i-1", "i-2"]);
        assert_eq!(without_reservations_of(xml, &[]), xml);
    }

    #[test]
    fn rules_match_action_parameter_and_count() {
        let request = AwsRequest {
            action: Some("RunInstances".to_string()),
            protocol: Protocol::Ec2,
            params: [("InstanceType".to_string(), "c6i.large".to_string())].into(),
        };
        assert!(FaultRule::on("RunInstances", AwsFault::Throttle).matches(&request));
        assert!(!FaultRule::on("DescribeInstances", AwsFault::Throttle).matches(&request));
        let typed = FaultRule::on("RunInstances", AwsFault::InsufficientCapacity);
        assert!(
            typed
                .clone()
                .with_param("InstanceType", "c6i.large")
                .matches(&request)
        );
        assert!(
            !typed
                .with_param("InstanceType", "m6i.large")
                .matches(&request)
        );
        assert!(
            !FaultRule::on("RunInstances", AwsFault::Throttle)
                .times(0)
                .matches(&request)
        );
    }
}
