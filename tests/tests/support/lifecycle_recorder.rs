//! A stand-in for the Auto Scaling endpoint at the wire, for the two calls moto answers with
//! HTTP 500 (RecordLifecycleActionHeartbeat, CompleteLifecycleAction): the real
//! aws-sdk-autoscaling client (in the test or in the recovery binary, through
//! `AWS_ENDPOINT_URL_AUTO_SCALING`) sends its real query-protocol request here; the recorder
//! keeps each request's form fields and answers with the XML shape AWS answers with
//! (`<XResponse><XResult/><ResponseMetadata>…`), or with AWS's `ValidationError` for an action
//! that is no longer pending when told to.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use longshore_farm::aws_proxy::percent_decode;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// One request as the recorder saw it: the decoded form fields, in order.
pub type Fields = Vec<(String, String)>;

/// Looks a field up.
pub fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Clone, Default)]
pub struct Recorder {
    requests: Arc<Mutex<Vec<Fields>>>,
    not_pending: Arc<Mutex<bool>>,
    url: String,
}

impl Recorder {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let recorder = Recorder {
            url,
            ..Recorder::default()
        };
        let shared = recorder.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move { shared.serve(stream).await });
            }
        });
        recorder
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Fields> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests of one `Action`.
    pub fn calls(&self, action: &str) -> Vec<Fields> {
        self.requests()
            .into_iter()
            .filter(|f| field(f, "Action") == Some(action))
            .collect()
    }

    /// From now on answer as AWS does for an action that is not pending any more.
    pub fn answer_not_pending(&self) {
        *self.not_pending.lock().unwrap() = true;
    }

    /// Serves one keep-alive connection.
    async fn serve(&self, mut stream: tokio::net::TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let Some(end) = find(&buffer, b"\r\n\r\n") else {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).to_string();
            buffer.drain(..end + 4 + length);
            let fields = decode_form(&body);
            let action = field(&fields, "Action").unwrap_or("").to_string();
            self.requests.lock().unwrap().push(fields);
            let (status, xml) = if *self.not_pending.lock().unwrap() {
                (
                    "400 Bad Request",
                    format!(
                        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type>\
                         <Code>ValidationError</Code><Message>No active Lifecycle Action found \
                         with token</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
                    ),
                )
            } else {
                (
                    "200 OK",
                    format!(
                        "<{action}Response xmlns=\"{NS}\"><{action}Result/><ResponseMetadata>\
                         <RequestId>r-1</RequestId></ResponseMetadata></{action}Response>"
                    ),
                )
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                xml.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `application/x-www-form-urlencoded` into pairs, in order.
fn decode_form(body: &str) -> Fields {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}
