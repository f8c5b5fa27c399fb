//! The Jenkins REST client: API-token basic auth (no crumb needed for token-authenticated
//! requests, see ApiCrumbExclusion), small `tree=` queries, and answers checked for being JSON
//! before they are parsed, so a login page or a proxy error is an error, never "no work".

use std::time::Duration;

use reqwest::header::{ACCEPT_LANGUAGE, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::domain::jenkins::{COMPUTER_TREE, ComputerSet, QUEUE_TREE, Queue};
use crate::error::JenkinsError;

/// How long one Jenkins request may take before the master counts as unreadable this tick.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an unexpected body goes into an error message (enough to recognise a page).
const SNIPPET_CHARS: usize = 160;

/// A client for one Jenkins master.
#[derive(Clone)]
pub struct JenkinsClient {
    http: reqwest::Client,
    /// Base URL with a trailing slash, e.g. `http://10.0.1.5:8080/`.
    base: String,
    user: String,
    token: String,
}

impl std::fmt::Debug for JenkinsClient {
    // The token stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JenkinsClient")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a new inbound agent node looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent<'a> {
    pub name: &'a str,
    pub labels: &'a str,
    pub executors: u32,
    pub description: &'a str,
    pub remote_fs: &'a str,
    /// `NORMAL` takes any work its labels allow, including unlabelled items; `EXCLUSIVE` only
    /// items whose label expression names it.
    pub exclusive: bool,
}

impl JenkinsClient {
    /// `base` may be given with or without the trailing slash.
    pub fn new(http: reqwest::Client, base: &str, user: &str, token: &str) -> JenkinsClient {
        let base = if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        JenkinsClient {
            http,
            base,
            user: user.to_string(),
            token: token.to_string(),
        }
    }

    /// An HTTP client suited to Jenkins calls (timeouts, no redirects followed silently).
    pub fn http_client() -> reqwest::Client {
        Self::http_client_builder()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new()) // safe: the builder only fails on TLS backend setup; the default client then reports the same error on first use
    }

    /// The settings of [`JenkinsClient::http_client`], for a caller that adds its own (the
    /// farm's demo resolves the masters' names to its load balancer).
    pub fn http_client_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The build queue, with the `why` texts in English (the scaler reads labels from them).
    pub async fn queue(&self) -> Result<Queue, JenkinsError> {
        self.get_json("queue/api/json", &[("tree", QUEUE_TREE)], "the queue")
            .await
    }

    /// Every computer (node) with its executors and labels.
    pub async fn computers(&self) -> Result<ComputerSet, JenkinsError> {
        self.get_json(
            "computer/api/json",
            &[("tree", COMPUTER_TREE)],
            "the computer set",
        )
        .await
    }

    /// Creates a permanent inbound (WebSocket) agent node, as the "New node" form does.
    pub async fn create_inbound_agent(&self, agent: &NewAgent<'_>) -> Result<(), JenkinsError> {
        let descriptor = json!({
            "name": agent.name,
            "nodeDescription": agent.description,
            "numExecutors": agent.executors,
            "remoteFS": agent.remote_fs,
            "labelString": agent.labels,
            "mode": if agent.exclusive { "EXCLUSIVE" } else { "NORMAL" },
            "type": "hudson.slaves.DumbSlave$DescriptorImpl",
            "retentionStrategy": {"stapler-class": "hudson.slaves.RetentionStrategy$Always"},
            "nodeProperties": {"stapler-class-bag": "true"},
            "launcher": {"stapler-class": "hudson.slaves.JNLPLauncher", "webSocket": true},
        });
        let form = [
            ("name", agent.name.to_string()),
            ("type", "hudson.slaves.DumbSlave$DescriptorImpl".to_string()),
            ("json", descriptor.to_string()),
        ];
        let url = self.url("computer/doCreateItem");
        let response = self
            .authed(self.http.post(&url))
            .form(&form)
            .send()
            .await
            .map_err(|source| JenkinsError::Transport {
                url: url.clone(),
                source,
            })?;
        accept_redirect_or_ok(&url, response).await
    }

    /// The inbound agent's secret, read from its JNLP descriptor (it is not in the JSON API).
    pub async fn agent_secret(&self, node: &str) -> Result<String, JenkinsError> {
        let url = self.url(&format!(
            "computer/{}/jenkins-agent.jnlp",
            encode_segment(node)
        ));
        let response = self
            .authed(self.http.get(&url))
            .send()
            .await
            .map_err(|source| JenkinsError::Transport {
                url: url.clone(),
                source,
            })?;
        let body = checked_body(&url, response).await?;
        first_jnlp_argument(&body).ok_or(JenkinsError::NoSecret { url })
    }

    /// Toggles the node's temporarily-offline flag (Jenkins only offers a toggle: read
    /// `temporarilyOffline` first).
    pub async fn toggle_offline(&self, node: &str, message: &str) -> Result<(), JenkinsError> {
        let url = self.url(&format!("computer/{}/toggleOffline", encode_segment(node)));
        let response = self
            .authed(self.http.post(&url))
            .query(&[("offlineMessage", message)])
            .send()
            .await
            .map_err(|source| JenkinsError::Transport {
                url: url.clone(),
                source,
            })?;
        accept_redirect_or_ok(&url, response).await
    }

    /// Deletes the node.
    pub async fn delete_node(&self, node: &str) -> Result<(), JenkinsError> {
        let url = self.url(&format!("computer/{}/doDelete", encode_segment(node)));
        let response = self
            .authed(self.http.post(&url))
            .send()
            .await
            .map_err(|source| JenkinsError::Transport {
                url: url.clone(),
                source,
            })?;
        accept_redirect_or_ok(&url, response).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .basic_auth(&self.user, Some(&self.token))
            .header(ACCEPT_LANGUAGE, "en")
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &'static str,
    ) -> Result<T, JenkinsError> {
        let url = self.url(path);
        let response = self
            .authed(self.http.get(&url))
            .query(query)
            .send()
            .await
            .map_err(|source| JenkinsError::Transport {
                url: url.clone(),
                source,
            })?;
        let content_type = header_text(&response, CONTENT_TYPE);
        let body = checked_body(&url, response).await?;
        if !content_type.starts_with("application/json") {
            return Err(JenkinsError::NotJson {
                url,
                content_type,
                snippet: snippet(&body),
            });
        }
        serde_json::from_str(&body).map_err(|source| JenkinsError::Malformed { url, what, source })
    }
}

/// Reads the body of a 2xx answer; anything else becomes a status error with a snippet.
async fn checked_body(url: &str, response: reqwest::Response) -> Result<String, JenkinsError> {
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|source| JenkinsError::Transport {
            url: url.to_string(),
            source,
        })?;
    if !status.is_success() {
        return Err(JenkinsError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            snippet: snippet(&body),
        });
    }
    Ok(body)
}

/// Jenkins answers form posts with a redirect (302/303) to the object's page.
async fn accept_redirect_or_ok(url: &str, response: reqwest::Response) -> Result<(), JenkinsError> {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(JenkinsError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        snippet: snippet(&body),
    })
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn snippet(body: &str) -> String {
    body.chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Node names are instance IDs in longshore, but encode anyway so no name can change the path.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The JNLP descriptor lists the secret as its first `<argument>` (jenkins-agent.jnlp.jelly).
fn first_jnlp_argument(xml: &str) -> Option<String> {
    let start = xml.find("<argument>")? + "<argument>".len();
    let end = start + xml[start..].find("</argument>")?;
    let secret = xml[start..end].trim();
    (!secret.is_empty()).then(|| secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_the_first_jnlp_argument() {
        let xml = "<jnlp><application-desc><argument>abc123</argument><argument>i-1</argument>\
                   <argument>-webSocket</argument></application-desc></jnlp>";
        assert_eq!(first_jnlp_argument(xml).as_deref(), Some("abc123"));
        assert_eq!(first_jnlp_argument("<jnlp/>"), None);
        assert_eq!(first_jnlp_argument("<argument></argument>"), None);
        assert_eq!(first_jnlp_argument("<argument>unterminated"), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("i-0abc"), "i-0abc");
        assert_eq!(encode_segment("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let client =
            JenkinsClient::new(reqwest::Client::new(), "http://m", "admin", "s3cret-token");
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cret-token"));
        assert!(shown.contains("http://m/"));
    }
}
