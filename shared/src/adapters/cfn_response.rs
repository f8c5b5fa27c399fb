//! Answers CloudFormation: PUTs the custom resource response JSON to the request's pre-signed
//! ResponseURL, with bounded retries.
//!
//! The body goes with an empty `Content-Type` header: the URL is a pre-signed S3 PUT whose
//! signature covers the content type CloudFormation signed (none), the way AWS's own
//! `cfn-response` module sends it. Connection errors, timeouts, 429 and 5xx are retried with
//! doubling backoff; any other answer is final (a 403 from an expired URL will not improve).
//! The URL's query string is a signature: it is never logged, only the host.

use std::time::Duration;

/// A response that could not be delivered, after every attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("response to {host} not delivered after {attempts} attempt(s): {last}")]
pub struct ResponseError {
    /// The URL's host (never the signed query).
    pub host: String,
    pub attempts: u32,
    pub last: String,
}

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    /// Per attempt (connect + send + answer).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling backoff (3 s of waiting in all), 5 s per attempt.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// PUTs responses to pre-signed URLs.
#[derive(Debug, Clone)]
pub struct HttpResponder {
    client: reqwest::Client,
    policy: RetryPolicy,
}

/// The host of a URL, for logs (the rest of a pre-signed URL is a signature).
pub fn url_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| "(unparsable URL)".to_string())
}

impl HttpResponder {
    /// A responder with its own HTTP client (built once per cold start).
    pub fn new(policy: RetryPolicy) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(policy.attempt_timeout)
            .connect_timeout(policy.attempt_timeout)
            .build()?;
        Ok(HttpResponder { client, policy })
    }

    /// PUTs `body` to `url`, retrying transient failures.
    pub async fn put(&self, url: &str, body: &str) -> Result<(), ResponseError> {
        let host = url_host(url);
        let mut backoff = self.policy.first_backoff;
        let mut last = String::from("not attempted");
        let attempts = self.policy.attempts.max(1);
        for attempt in 1..=attempts {
            let sent = self
                .client
                .put(url)
                .header(reqwest::header::CONTENT_TYPE, "")
                .body(body.to_string())
                .send()
                .await;
            let retry = match sent {
                Ok(answer) if answer.status().is_success() => {
                    tracing::info!(host = %host, attempt, status = answer.status().as_u16(), "custom resource response delivered");
                    return Ok(());
                }
                Ok(answer) => {
                    let status = answer.status();
                    last = format!("HTTP {}", status.as_u16());
                    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(err) => {
                    // reqwest's error text names the URL; keep only what kind of failure it was.
                    last = if err.is_timeout() {
                        "timed out".to_string()
                    } else if err.is_connect() {
                        "could not connect".to_string()
                    } else {
                        "request failed".to_string()
                    };
                    true
                }
            };
            tracing::warn!(host = %host, attempt, error = %last, "custom resource response not delivered");
            if !retry {
                return Err(ResponseError {
                    host,
                    attempts: attempt,
                    last,
                });
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        Err(ResponseError {
            host,
            attempts,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_hide_the_signature() {
        assert_eq!(
            url_host("https://b.s3.amazonaws.com/key?X-Amz-Signature=secret"),
            "b.s3.amazonaws.com"
        );
        assert_eq!(url_host("http://127.0.0.1:8080/x?sig=s"), "127.0.0.1:8080");
        assert_eq!(url_host("nonsense"), "(unparsable URL)");
    }
}
