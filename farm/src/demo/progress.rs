//! Live progress and the closing summary of `make demo`.
//!
//! On a terminal the status line is redrawn in place; otherwise (CI logs, pipes) a line is
//! printed every few seconds so the log stays short.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::DemoReport;
use super::observe::Seen;

/// Seconds between lines when the output is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The live status line and the agent-time integral behind the summary.
pub struct Progress {
    jobs: usize,
    tty: bool,
    last_plain: Option<Duration>,
    last_draw: Duration,
    agent_seconds: f64,
}

impl Progress {
    pub fn new(jobs: usize) -> Progress {
        Progress {
            jobs,
            tty: std::io::stdout().is_terminal(),
            last_plain: None,
            last_draw: Duration::ZERO,
            agent_seconds: 0.0,
        }
    }

    /// Redraws the status from one look at the farm.
    pub fn draw(&mut self, elapsed: Duration, seen: &Seen) {
        self.agent_seconds +=
            seen.live_instances as f64 * elapsed.saturating_sub(self.last_draw).as_secs_f64();
        self.last_draw = elapsed;
        let line = self.status_line(elapsed, seen);
        if self.tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else if self
            .last_plain
            .is_none_or(|last| elapsed.saturating_sub(last) >= PLAIN_EVERY)
        {
            println!("{line}");
            self.last_plain = Some(elapsed);
        }
    }

    /// A fault as it happens, on its own line above the live status.
    pub fn announce(&self, elapsed: Duration, text: &str) {
        if self.tty {
            print!("\r\x1b[2K");
        }
        println!("{:>4}s | FAULT | {text}", elapsed.as_secs());
    }

    /// Ends the live line.
    pub fn finish(&self) {
        if self.tty {
            println!();
        }
    }

    /// Agent-seconds (instance lifetime) accumulated so far.
    pub fn agent_seconds(&self) -> f64 {
        self.agent_seconds
    }

    fn status_line(&self, elapsed: Duration, seen: &Seen) -> String {
        let per_label: Vec<String> = seen
            .labels
            .iter()
            .filter(|(label, _)| !label.is_empty())
            .map(|(label, l)| {
                format!(
                    "{label}: queue {:>2} {} booting {:>2} idle {:>2} busy {:>2}{}",
                    l.queued,
                    bar(l.queued, 10),
                    l.booting,
                    l.idle,
                    l.busy,
                    if l.offline > 0 {
                        format!(" offline {}", l.offline)
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        format!(
            "{:>4}s | {} | instances {:>2} | builds ended {}/{}",
            elapsed.as_secs(),
            per_label.join(" | "),
            seen.live_instances,
            seen.builds_completed,
            self.jobs,
        )
    }
}

/// A small bar for a count (one block per item, capped).
fn bar(count: usize, width: usize) -> String {
    let filled = count.min(width);
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// The closing table.
pub fn print_summary(report: &DemoReport) {
    let e = &report.errors;
    let rows: Vec<(&str, String)> = vec![
        (
            "jobs run",
            format!("{}/{}", report.jobs_completed, report.jobs_submitted),
        ),
        (
            "builds lost to injected faults",
            report.builds_lost_to_faults.to_string(),
        ),
        (
            "builds queued on the killed master",
            report.builds_queued_on_killed_master.to_string(),
        ),
        (
            "builds lost otherwise (must be 0)",
            report.builds_lost_otherwise.to_string(),
        ),
        ("busy agents killed", report.busy_agents_killed.to_string()),
        (
            "wait p50 (trace time)",
            format!("{:.1} s", report.wait_p50_s),
        ),
        (
            "wait p95 (trace time)",
            format!("{:.1} s", report.wait_p95_s),
        ),
        (
            "wait max (trace time)",
            format!("{:.1} s", report.wait_max_s),
        ),
        ("agents launched", report.agents_launched.to_string()),
        (
            "agents retired by the scaler",
            report.agents_retired_by_scaler.to_string(),
        ),
        (
            "agents terminated by faults",
            report.agents_terminated_by_faults.to_string(),
        ),
        (
            "agent-hours (trace time)",
            format!("{:.3} ({:.0} s)", report.agent_hours, report.agent_seconds),
        ),
        (
            "most instances at once",
            report.max_live_instances.to_string(),
        ),
        ("cap overshoots", report.cap_overshoots.to_string()),
        (
            "InsufficientInstanceCapacity answers",
            report.insufficient_capacity_answers.to_string(),
        ),
        (
            "orphans left (inst + nodes + secrets)",
            format!(
                "{} + {} + {}",
                report.orphan_instances, report.orphan_nodes, report.orphan_secrets
            ),
        ),
        (
            "secrets in logs (must be 0)",
            format!(
                "{} of {}",
                report.secrets_in_logs.len(),
                report.secrets_looked_for
            ),
        ),
        (
            "events delivered to recovery",
            report.recovery_events_delivered.to_string(),
        ),
        (
            "errors: scaler / recovery log lines",
            format!("{} / {}", e.scaler_error_lines, e.recovery_error_lines),
        ),
        (
            "errors: recovery failed deliveries",
            e.recovery_failed_deliveries.to_string(),
        ),
        (
            "errors: observer reads failed",
            e.observer_unreadable.to_string(),
        ),
        (
            "load balancer: forwarded / 503 / 502",
            format!(
                "{} / {} / {}",
                report.load_balancer.forwarded,
                report.load_balancer.no_target,
                report.load_balancer.target_failed
            ),
        ),
        ("wall time", format!("{:.1} s", report.wall_s)),
    ];
    println!();
    println!("+----------------------------------------+------------------+");
    println!("| {:<38} | {:>16} |", "longshore demo", "");
    println!("+----------------------------------------+------------------+");
    for (name, value) in rows {
        println!("| {name:<38} | {value:>16} |");
    }
    println!("+----------------------------------------+------------------+");
    for (n, fault) in report.faults.iter().enumerate() {
        let until = fault
            .until_s
            .map(|u| format!("-{u:.0}"))
            .unwrap_or_default();
        println!("F{} {:>4.0}{until} s  {}", n + 1, fault.at_s, fault.detail);
    }
    let verdict = if report.invariants_hold() {
        "all invariants hold"
    } else {
        "AN INVARIANT BROKE"
    };
    println!("{verdict}");
}
