//! Fault injection: the ways a real master (or what stands in front of it) misbehaves that the
//! scaler must survive. Injected in-process with [`super::Simulator::inject`] or over HTTP with
//! `POST /__sim/faults` and a JSON body such as `{"kind":"server_error","status":503,
//! "requests":3}`; `DELETE /__sim/faults` clears the HTTP faults. HTTP faults apply to every
//! Jenkins endpoint except `/wsagents/` and `/__sim/`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long an HTTP fault lasts: for a number of requests, for a time, or (neither given) until
/// cleared. When both are given, whichever runs out first ends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Number of requests the fault applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    /// Milliseconds the fault lasts from its injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

impl Budget {
    /// For `n` requests.
    pub fn requests(n: u32) -> Self {
        Budget {
            requests: Some(n),
            for_ms: None,
        }
    }

    /// For a duration.
    pub fn for_duration(d: Duration) -> Self {
        Budget {
            requests: None,
            for_ms: Some(d.as_millis() as u64),
        }
    }
}

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this 5xx status (an HTML error page, as a proxy or an overloaded Jetty does).
    ServerError {
        /// HTTP status, e.g. 500, 502, 503.
        status: u16,
        /// How long.
        #[serde(flatten)]
        budget: Budget,
    },
    /// Delay answers.
    Slow {
        /// Added latency in milliseconds.
        delay_ms: u64,
        /// How long.
        #[serde(flatten)]
        budget: Budget,
    },
    /// Answer `200 text/html` with a login form instead of the resource, as a reverse proxy's
    /// single sign-on does.
    LoginPage {
        /// How long.
        #[serde(flatten)]
        budget: Budget,
    },
    /// Cut JSON bodies in half (the connection died mid-answer).
    TruncatedJson {
        /// How long.
        #[serde(flatten)]
        budget: Budget,
    },
    /// Close the WebSocket connections of these agents (all connected agents when `None`) at
    /// once, as a network partition or an agent crash does.
    DropAgents {
        /// Node names.
        #[serde(default)]
        names: Option<Vec<String>>,
    },
    /// A controller restart: every agent connection closes, running builds are lost, the
    /// left-items cache and web sessions are gone; nodes and queued items stay (Jenkins keeps
    /// them in `config.xml`/`queue.xml`). During `down_ms` every request gets the 503 "Jenkins
    /// is getting ready to work" page and agents cannot connect.
    Restart {
        /// How long the controller is unavailable.
        #[serde(default)]
        down_ms: Option<u64>,
    },
}

/// An HTTP fault with its remaining budget.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
    until: Option<Instant>,
}

/// What the HTTP layer must do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    pub delay: Option<Duration>,
    pub status: Option<u16>,
    pub login_page: bool,
    pub truncate_json: bool,
}

impl ActiveFault {
    pub fn new(fault: Fault, now: Instant) -> Self {
        let budget = match &fault {
            Fault::ServerError { budget, .. }
            | Fault::Slow { budget, .. }
            | Fault::LoginPage { budget }
            | Fault::TruncatedJson { budget } => *budget,
            Fault::DropAgents { .. } | Fault::Restart { .. } => Budget::default(),
        };
        ActiveFault {
            fault,
            remaining: budget.requests,
            until: budget.for_ms.map(|ms| now + Duration::from_millis(ms)),
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.remaining != Some(0) && self.until.is_none_or(|u| now < u)
    }
}

/// Applies the active faults to one request, spending their budgets, and drops the spent ones.
pub(crate) fn effects(faults: &mut Vec<ActiveFault>, now: Instant) -> Effects {
    faults.retain(|f| f.live(now));
    let mut e = Effects::default();
    for f in faults.iter_mut() {
        match &f.fault {
            Fault::ServerError { status, .. } => e.status = e.status.or(Some(*status)),
            Fault::Slow { delay_ms, .. } => {
                let d = Duration::from_millis(*delay_ms);
                e.delay = Some(e.delay.map_or(d, |x| x.max(d)));
            }
            Fault::LoginPage { .. } => e.login_page = true,
            Fault::TruncatedJson { .. } => e.truncate_json = true,
            Fault::DropAgents { .. } | Fault::Restart { .. } => {}
        }
        if let Some(n) = f.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
    }
    faults.retain(|f| f.live(now));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_round_trips() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"server_error","status":503,"requests":2}"#).unwrap();
        assert_eq!(
            f,
            Fault::ServerError {
                status: 503,
                budget: Budget::requests(2)
            }
        );
        let f: Fault = serde_json::from_str(r#"{"kind":"restart"}"#).unwrap();
        assert_eq!(f, Fault::Restart { down_ms: None });
        let f: Fault = serde_json::from_str(r#"{"kind":"drop_agents","names":["a"]}"#).unwrap();
        assert_eq!(
            f,
            Fault::DropAgents {
                names: Some(vec!["a".into()])
            }
        );
    }

    #[test]
    fn budgets_run_out() {
        let now = Instant::now();
        let mut faults = vec![ActiveFault::new(
            Fault::ServerError {
                status: 502,
                budget: Budget::requests(2),
            },
            now,
        )];
        assert_eq!(effects(&mut faults, now).status, Some(502));
        assert_eq!(effects(&mut faults, now).status, Some(502));
        assert_eq!(effects(&mut faults, now).status, None);
        let mut faults = vec![ActiveFault::new(
            Fault::LoginPage {
                budget: Budget::for_duration(Duration::from_millis(10)),
            },
            now,
        )];
        assert!(effects(&mut faults, now).login_page);
        assert!(!effects(&mut faults, now + Duration::from_millis(11)).login_page);
    }
}
