//! The masters' load balancer in the farm: one listener that routes by `Host`, as the stack's
//! ALB does with its two host-header rules (`master-a.<domain>` and `master-b.<domain>`, see
//! `MasterATargetRule` in `infra/template.yaml`), so that both masters answer behind one name.
//!
//! What it does as the ALB does:
//! - a request for a host no rule names gets the listener's default action, a fixed 404
//!   "no such master";
//! - a rule whose target group has no registered target (its master's task is being
//!   replaced) answers 503;
//! - a target that refuses the connection answers 502, one that does not answer in time 504;
//! - the target's status, headers and body go back as they came.
//!
//! What it does not: TLS, health checks (a target is registered or not, the farm says which),
//! WebSockets. As in the stack, only people and the demo's observer come through it: the
//! Lambdas and the agents reach each master at its task's own address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a target may take to answer (the ALB's idle timeout is 60 s; the farm's masters
/// answer in milliseconds).
const TARGET_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that belong to one hop and are not passed on (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Requests the front answered, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrontStats {
    pub forwarded: u64,
    /// 404: no rule for the host.
    pub no_such_master: u64,
    /// 503: the rule's target group is empty.
    pub no_target: u64,
    /// 502 or 504: the target refused or did not answer.
    pub target_failed: u64,
}

/// host (lower case, no port) → the registered target's base URL, if any.
type Routes = BTreeMap<String, Option<String>>;

struct Shared {
    routes: Mutex<Routes>,
    stats: Mutex<FrontStats>,
    client: reqwest::Client,
}

/// The running front.
pub struct Front {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Front {
    /// Listens on a free local port, with no rule yet.
    pub async fn start() -> std::io::Result<Front> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .timeout(TARGET_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes::new()),
            stats: Mutex::new(FrontStats::default()),
            client,
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(err) = serve.await {
                tracing::warn!(error = %err, "the masters' front stopped");
            }
        });
        Ok(Front {
            addr,
            shared,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The listener's address: every master's name resolves to it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `host` through the front (`http://<host>:<port>/`).
    pub fn url_of(&self, host: &str) -> String {
        format!("http://{host}:{}/", self.addr.port())
    }

    /// Adds or replaces the rule for `host`, with `target` (a base URL) registered.
    pub fn register(&self, host: &str, target: &str) {
        self.routes()
            .insert(host.to_ascii_lowercase(), Some(target.to_string()));
    }

    /// Takes `host`'s target out (its task stopped); the rule stays and answers 503.
    pub fn deregister(&self, host: &str) {
        if let Some(target) = self.routes().get_mut(&host.to_ascii_lowercase()) {
            *target = None;
        }
    }

    pub fn stats(&self) -> FrontStats {
        *lock(&self.shared.stats)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        lock(&self.shared.routes)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A poisoned lock only means another request panicked mid-update of plain data: use it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request's host, lower case, without its port.
fn host_of(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    Some(name.to_ascii_lowercase())
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = host_of(&headers).and_then(|host| lock(&shared.routes).get(&host).cloned());
    let target = match route {
        None => {
            lock(&shared.stats).no_such_master += 1;
            return (StatusCode::NOT_FOUND, "no such master").into_response();
        }
        Some(None) => {
            lock(&shared.stats).no_target += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Temporarily Unavailable",
            )
                .into_response();
        }
        Some(Some(target)) => target,
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", target.trim_end_matches('/'), path);
    let mut request = shared.client.request(method, &url).body(body);
    for (name, value) in &headers {
        // The target sees the name the client asked for, as behind the ALB.
        if !HOP_BY_HOP.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(err) => {
            lock(&shared.stats).target_failed += 1;
            let status = if err.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return (status, status.to_string()).into_response();
        }
    };
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            out_headers.append(name.clone(), value.clone());
        }
    }
    match answer.bytes().await {
        Ok(bytes) => {
            lock(&shared.stats).forwarded += 1;
            (status, out_headers, bytes).into_response()
        }
        Err(_) => {
            lock(&shared.stats).target_failed += 1;
            (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that says who it is and echoes what it got.
    async fn target(name: &'static str) -> (String, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (
                    StatusCode::CREATED,
                    [("x-target", name)],
                    format!(
                        "{name} {method} {uri} host={host} body={}",
                        String::from_utf8_lossy(&body)
                    ),
                )
            },
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, server)
    }

    /// A client that resolves every name to the front, as DNS does for the stack's names.
    fn client_for(front: &Front, hosts: &[&str]) -> reqwest::Client {
        hosts
            .iter()
            .fold(reqwest::Client::builder(), |builder, host| {
                builder.resolve(host, front.addr())
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn routes_by_host_and_answers_as_the_alb_does() {
        let front = Front::start().await.unwrap();
        let (a, _a) = target("a").await;
        let (b, _b) = target("b").await;
        front.register("master-a.ci.localhost", &a);
        front.register("Master-B.ci.localhost", &b);
        let hosts = [
            "master-a.ci.localhost",
            "master-b.ci.localhost",
            "master-c.ci.localhost",
        ];
        let client = client_for(&front, &hosts);

        let answer = client
            .post(format!(
                "{}queue/api/json?tree=items[id]",
                front.url_of(hosts[0])
            ))
            .body("x=1")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(answer.headers()["x-target"], "a");
        let port = front.addr().port();
        assert_eq!(
            answer.text().await.unwrap(),
            format!(
                "a POST /queue/api/json?tree=items[id] host=master-a.ci.localhost:{port} body=x=1"
            )
        );
        let answer = client.get(front.url_of(hosts[1])).send().await.unwrap();
        assert!(answer.text().await.unwrap().starts_with("b GET /"));

        let unknown = client.get(front.url_of(hosts[2])).send().await.unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.text().await.unwrap(), "no such master");

        front.deregister(hosts[1]);
        let replacing = client.get(front.url_of(hosts[1])).send().await.unwrap();
        assert_eq!(replacing.status(), StatusCode::SERVICE_UNAVAILABLE);

        assert_eq!(
            front.stats(),
            FrontStats {
                forwarded: 2,
                no_such_master: 1,
                no_target: 1,
                target_failed: 0,
            }
        );
    }

    #[tokio::test]
    async fn a_target_that_is_gone_is_a_bad_gateway() {
        let front = Front::start().await.unwrap();
        let (a, server) = target("a").await;
        server.abort();
        let _ = server.await;
        front.register("master-a.ci.localhost", &a);
        let client = client_for(&front, &["master-a.ci.localhost"]);
        let answer = client
            .get(front.url_of("master-a.ci.localhost"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(front.stats().target_failed, 1);
    }
}
