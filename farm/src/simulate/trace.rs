//! The simulator's inputs: a list of builds (when queued, how long, which label).
//!
//! Three sources: seeded synthetic traces on two labels (steady, bursty commit waves, a
//! nightly batch, long-tail durations), the real run histories in `../shared/traces` (read in
//! place, never copied), and a user CSV `queued_at,duration_s,label` exported from one's own
//! Jenkins (see the README). Times are milliseconds from the trace's first arrival.

use std::collections::BTreeSet;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One build of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// When it enters the queue, ms from the trace's start.
    pub queued_ms: i64,
    /// How long it runs once on an executor, ms (at least 1).
    pub duration_ms: i64,
    /// Index into [`Trace::labels`].
    pub label: usize,
}

/// A named list of builds, sorted by queue time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub name: String,
    pub labels: Vec<String>,
    pub jobs: Vec<Job>,
}

/// A trace that could not be read, with where.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Content { path: String, problem: String },
}

/// The synthetic traces' labels: most builds are small, some need a large agent.
pub const SYNTHETIC_LABELS: [&str; 2] = ["docker", "docker-large"];

impl Trace {
    /// Builds a trace from `(queued_ms, duration_ms, label)` rows: labels are numbered in
    /// sorted order, times shifted so the first arrival is 0, rows sorted by arrival.
    pub fn from_rows(name: &str, rows: Vec<(i64, i64, String)>) -> Trace {
        let labels: Vec<String> = rows
            .iter()
            .map(|r| r.2.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let start = rows.iter().map(|r| r.0).min().unwrap_or(0);
        let mut jobs: Vec<Job> = rows
            .into_iter()
            .map(|(queued, duration, label)| Job {
                queued_ms: queued - start,
                duration_ms: duration.max(1),
                // The label was collected into `labels` above.
                label: labels.binary_search(&label).unwrap_or(0),
            })
            .collect();
        jobs.sort_by_key(|j| (j.queued_ms, j.label, j.duration_ms));
        Trace {
            name: name.to_string(),
            labels,
            jobs,
        }
    }

    /// The most builds running at once if every build started when queued.
    pub fn peak_concurrency(&self, label: usize) -> usize {
        let mut edges: Vec<(i64, i32)> = self
            .jobs
            .iter()
            .filter(|j| j.label == label)
            .flat_map(|j| [(j.queued_ms, 1), (j.queued_ms + j.duration_ms, -1)])
            .collect();
        edges.sort(); // ends (-1) before starts (+1) at the same instant
        let mut now = 0i32;
        let mut peak = 0i32;
        for (_, delta) in edges {
            now += delta;
            peak = peak.max(now);
        }
        peak as usize
    }
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The standard synthetic traces for one seed.
pub fn synthetic_all(seed: u64) -> Vec<Trace> {
    vec![steady(seed), bursty(seed), nightly(seed), long_tail(seed)]
}

/// An exponential inter-arrival time with the given mean.
fn exponential(rng: &mut StdRng, mean_ms: f64) -> i64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-u.ln() * mean_ms) as i64
}

/// A log-normal duration with the given median and shape.
fn log_normal(rng: &mut StdRng, median_ms: f64, sigma: f64) -> i64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (median_ms * (sigma * normal).exp()) as i64
}

/// 70 % small, 30 % large.
fn label(rng: &mut StdRng) -> String {
    SYNTHETIC_LABELS[usize::from(rng.random_range(0..10) >= 7)].to_string()
}

/// Poisson arrivals, one every 40 s on average for 4 h; builds of about 6 min.
pub fn steady(seed: u64) -> Trace {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    let mut at = 0;
    while at < 4 * HOUR {
        let duration = log_normal(&mut rng, 6.0 * MINUTE as f64, 0.5);
        rows.push((at, duration, label(&mut rng)));
        at += exponential(&mut rng, 40_000.0);
    }
    Trace::from_rows("steady", rows)
}

/// Commit waves: every 30–60 min a merge train queues 15–40 builds within 2 min; little in
/// between. 8 h.
pub fn bursty(seed: u64) -> Trace {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xB0B5);
    let mut rows = Vec::new();
    let mut wave = 5 * MINUTE;
    while wave < 8 * HOUR {
        for _ in 0..rng.random_range(15..=40) {
            let at = wave + rng.random_range(0..2 * MINUTE);
            rows.push((
                at,
                log_normal(&mut rng, 8.0 * MINUTE as f64, 0.4),
                label(&mut rng),
            ));
        }
        // A trickle between waves.
        for _ in 0..rng.random_range(0..4) {
            let at = wave + rng.random_range(5 * MINUTE..30 * MINUTE);
            rows.push((
                at,
                log_normal(&mut rng, 5.0 * MINUTE as f64, 0.4),
                label(&mut rng),
            ));
        }
        wave += rng.random_range(30 * MINUTE..60 * MINUTE);
    }
    Trace::from_rows("bursty", rows)
}

/// A light daytime load for 16 h, then a nightly batch of 150 builds queued within 5 min,
/// 10–40 min each.
pub fn nightly(seed: u64) -> Trace {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x216E);
    let mut rows = Vec::new();
    let mut at = 0;
    while at < 16 * HOUR {
        rows.push((
            at,
            log_normal(&mut rng, 5.0 * MINUTE as f64, 0.5),
            label(&mut rng),
        ));
        at += exponential(&mut rng, 4.0 * MINUTE as f64);
    }
    for _ in 0..150 {
        let at = 16 * HOUR + rng.random_range(0..5 * MINUTE);
        rows.push((
            at,
            rng.random_range(10 * MINUTE..40 * MINUTE),
            label(&mut rng),
        ));
    }
    Trace::from_rows("nightly", rows)
}

/// Poisson arrivals every 60 s on average for 6 h, Pareto durations (α = 1.3, at least
/// 1 min, capped at 4 h): most builds are short, a few run for hours.
pub fn long_tail(seed: u64) -> Trace {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7A11);
    let mut rows = Vec::new();
    let mut at = 0;
    while at < 6 * HOUR {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let duration = ((MINUTE as f64) / u.powf(1.0 / 1.3)).min(4.0 * HOUR as f64) as i64;
        rows.push((at, duration, label(&mut rng)));
        at += exponential(&mut rng, 60_000.0);
    }
    Trace::from_rows("long-tail", rows)
}

fn read(path: &Path) -> Result<Vec<u8>, TraceError> {
    std::fs::read(path).map_err(|source| TraceError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A user CSV: header `queued_at,duration_s,label`, then one build a line. `queued_at` is
/// epoch seconds or milliseconds (a number) or an RFC 3339 UTC timestamp; `duration_s` is
/// seconds (fractions allowed). A bad line is an error naming it; nothing is guessed.
pub fn from_csv(path: &Path) -> Result<Trace, TraceError> {
    let bytes = read(path)?;
    let shown = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| TraceError::Content {
        path: shown.clone(),
        problem: "not UTF-8 text".to_string(),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "csv".to_string());
    parse_csv(&name, &shown, &text)
}

/// Parses CSV text (see [`from_csv`]); `shown` names the source in errors.
pub fn parse_csv(name: &str, shown: &str, text: &str) -> Result<Trace, TraceError> {
    let mut rows = Vec::new();
    let mut lines = text.lines().enumerate();
    let fail = |line: usize, problem: String| TraceError::Line {
        path: shown.to_string(),
        line: line + 1,
        problem,
    };
    match lines.next() {
        Some((_, header))
            if header
                .split(',')
                .map(str::trim)
                .eq(["queued_at", "duration_s", "label"]) => {}
        Some((n, header)) => {
            return Err(fail(
                n,
                format!("expected the header queued_at,duration_s,label, found {header:?}"),
            ));
        }
        None => return Err(fail(0, "empty file".to_string())),
    }
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [queued, duration, label] = fields[..] else {
            return Err(fail(
                n,
                format!("expected 3 fields, found {}", fields.len()),
            ));
        };
        let queued_ms = parse_time(queued).map_err(|p| fail(n, p))?;
        let duration_s: f64 = duration
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| {
                fail(
                    n,
                    format!("duration_s {duration:?} is not a number of seconds ≥ 0"),
                )
            })?;
        if label.is_empty() {
            return Err(fail(n, "empty label".to_string()));
        }
        rows.push((queued_ms, (duration_s * 1000.0) as i64, label.to_string()));
    }
    if rows.is_empty() {
        return Err(TraceError::Content {
            path: shown.to_string(),
            problem: "no builds after the header".to_string(),
        });
    }
    Ok(Trace::from_rows(name, rows))
}

/// Epoch seconds, epoch milliseconds (≥ 10^11) or `YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)`.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(number) = text.parse::<f64>() {
        if !number.is_finite() || number < 0.0 {
            return Err(format!("queued_at {text:?} is negative or not finite"));
        }
        return Ok(if number >= 1e11 {
            number as i64
        } else {
            (number * 1000.0) as i64
        });
    }
    parse_rfc3339_utc(text).ok_or_else(|| {
        format!("queued_at {text:?} is neither epoch seconds/milliseconds nor an RFC 3339 UTC time")
    })
}

/// A UTC RFC 3339 timestamp to epoch ms (offsets other than Z / +00:00 are refused).
fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let millis = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(3).collect();
        format!("{digits:0<3}").parse::<i64>().ok()?
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Autoware `build-and-test` run history (JSON Lines): arrival `created_at`, service time
/// `duration`; one label (`ros-build`), all 470 runs. Rows with duration 0 are kept as 1 ms.
pub fn autoware(path: &Path) -> Result<Trace, TraceError> {
    let shown = path.display().to_string();
    let text = String::from_utf8_lossy(&read(path)?).into_owned();
    let mut rows = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fail = |problem: String| TraceError::Line {
            path: shown.clone(),
            line: n + 1,
            problem,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
        let created = value["created_at"]
            .as_str()
            .and_then(parse_rfc3339_utc)
            .ok_or_else(|| fail("created_at missing or not a UTC timestamp".to_string()))?;
        let duration = value["duration"]
            .as_f64()
            .filter(|d| *d >= 0.0)
            .ok_or_else(|| fail("duration missing or negative".to_string()))?;
        rows.push((created, (duration * 1000.0) as i64, "ros-build".to_string()));
    }
    Ok(Trace::from_rows("autoware", rows))
}

/// The window of the Bitcoin Core job history replayed: its three busiest full days,
/// 2025-10-13 00:00 to 2025-10-16 00:00 UTC (the file thins out after that, see SOURCES.md).
const BITCOIN_WINDOW_S: (i64, i64) = (1_760_313_600, 1_760_572_800);

/// The Bitcoin Core per-job history (gzip JSON array): arrival `creationTimestamp` (the
/// run's creation, so jobs arrive in bursts), service time `duration`, jobs with
/// `duration > 0` only; label from the job name: `macos`, `windows` or `linux`.
pub fn bitcoin(path: &Path) -> Result<Trace, TraceError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let bytes = read(path)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .map_err(|e| TraceError::Content {
            path: shown.clone(),
            problem: format!("not gzip JSON: {e}"),
        })?;
    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| TraceError::Content {
            path: shown.clone(),
            problem: e.to_string(),
        })?;
    let mut rows = Vec::new();
    for task in &tasks {
        let (Some(created), Some(duration), Some(name)) = (
            task["creationTimestamp"].as_i64(),
            task["duration"].as_i64(),
            task["name"].as_str(),
        ) else {
            continue; // a record without these fields is not a job we can replay
        };
        if duration <= 0 || created < BITCOIN_WINDOW_S.0 || created >= BITCOIN_WINDOW_S.1 {
            continue;
        }
        let label = if name.contains("macOS") {
            "macos"
        } else if name.contains("Windows") {
            "windows"
        } else {
            "linux"
        };
        rows.push((created * 1000, duration * 1000, label.to_string()));
    }
    if rows.is_empty() {
        return Err(TraceError::Content {
            path: shown,
            problem: "no jobs in the replay window".to_string(),
        });
    }
    Ok(Trace::from_rows("bitcoin", rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_traces_are_seeded_sorted_and_use_both_labels() {
        assert_eq!(synthetic_all(3), synthetic_all(3));
        assert_ne!(synthetic_all(3), synthetic_all(4));
        for trace in synthetic_all(3) {
            assert!(
                trace
                    .jobs
                    .windows(2)
                    .all(|p| p[0].queued_ms <= p[1].queued_ms)
            );
            assert_eq!(trace.labels, SYNTHETIC_LABELS);
            assert!(
                trace.jobs.iter().any(|j| j.label == 1) && trace.jobs.iter().any(|j| j.label == 0)
            );
        }
    }

    #[test]
    fn csv_accepts_epoch_and_rfc3339_and_shifts_to_zero() {
        let text =
            "queued_at,duration_s,label\n1700000010,60,linux\n2023-11-14T22:13:20Z,1.5,win\n";
        let trace = parse_csv("t", "t.csv", text).unwrap();
        assert_eq!(trace.labels, ["linux", "win"]);
        assert_eq!(
            trace.jobs,
            vec![
                Job {
                    queued_ms: 0,
                    duration_ms: 1500,
                    label: 1
                },
                Job {
                    queued_ms: 10_000,
                    duration_ms: 60_000,
                    label: 0
                },
            ]
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        let bad = [
            ("when,duration_s,label\n", "line 1"),
            (
                "queued_at,duration_s,label\n1,2,a\nsoon,3,b\n",
                "line 3: queued_at \"soon\"",
            ),
            ("queued_at,duration_s,label\n1,-2,a\n", "line 2: duration_s"),
            (
                "queued_at,duration_s,label\n1,2\n",
                "line 2: expected 3 fields",
            ),
            ("queued_at,duration_s,label\n1,2,\n", "line 2: empty label"),
        ];
        for (text, expected) in bad {
            let err = parse_csv("t", "t.csv", text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn rfc3339_matches_known_epochs() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2026-01-23T00:09:29+00:00"),
            Some(1_769_126_969_000)
        );
        assert_eq!(parse_rfc3339_utc("2026-01-23T00:09:29+02:00"), None);
    }

    #[test]
    fn peak_concurrency_counts_overlaps() {
        let trace = Trace::from_rows(
            "p",
            vec![
                (0, 10, "a".into()),
                (5, 10, "a".into()),
                (10, 5, "a".into()),
                (20, 1, "a".into()),
            ],
        );
        assert_eq!(trace.peak_concurrency(0), 2);
    }
}
