//! What one chaos run saw, and the invariants judged on it. The judging is pure (plain data
//! in, counts and reasons out), so each rule is unit-tested on hand-made observations.
//!
//! - **busy agents killed**: a build lost while its agent was connected, other than on an
//!   agent that died by an injected boot fault, in an injected Jenkins restart, or on an
//!   instance EC2 reclaimed (Spot).
//! - **cap overshoots**: observations (after every tick, read from moto itself) with more
//!   live instances than `max_agents`, or than a template's `max_per_master` on one master.
//! - **orphans**: after the faults stopped, the boots settled and two acting ticks: a live
//!   instance without a connected node on its master, or an agent node without a live instance.
//! - **duplicate launches**: a second instance for one planned launch (one `ClientToken`, its
//!   candidate suffix aside), and instances beyond the bound "one per job, plus one per
//!   instance that was replaced": it never connected, EC2 reclaimed it, or the scaler removed
//!   it as not connected within the boot timeout (an agent that connects late, after that
//!   decision, is still replaced), per master and template.
//! - **jobs never run**: a submitted job that never started.
//! - **custom resource requests unanswered**: a request CloudFormation got no answer for; and
//!   **custom resource wrong answers**: bad properties or a hung resolver answered SUCCESS.

use std::collections::{BTreeMap, BTreeSet};

use longshore::domain::fleet::FleetConfig;
use longshore::domain::scaling::is_instance_id;
use longshore::handlers::queue_scaler::TickReport;
use serde::Serialize;

use super::scenario::MASTERS;
use crate::booter::BootFault;

/// One instance of the stack as moto lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenInstance {
    pub id: String,
    pub master: Option<String>,
    pub label: Option<String>,
    /// Pending or running.
    pub alive: bool,
}

/// Everything a run recorded.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub seed: u64,
    max_agents: usize,
    max_per_master: BTreeMap<String, usize>,
    /// Submitted jobs: master index, label, job name.
    pub jobs: Vec<(usize, String, String)>,
    /// Builds lost by injected restarts: master index and node.
    pub lost_to_restarts: Vec<(usize, String)>,
    /// Instances whose agent was seen connected at least once.
    pub connected: BTreeSet<String>,
    /// Every instance of the run, with the time it was first seen.
    pub all_instances: BTreeMap<String, (SeenInstance, i64)>,
    pub final_instances: Vec<SeenInstance>,
    /// Nodes at the end: master index, name, online.
    pub final_nodes: Vec<(usize, String, bool)>,
    /// Lost builds: master index, node, job.
    pub lost_builds: Vec<(usize, String, String)>,
    /// Started builds: master index, job.
    pub started_jobs: Vec<(usize, String)>,
    /// Agents that died by an injected fault.
    pub dead_agents: BTreeSet<String>,
    /// Instances EC2 reclaimed (Spot): whatever they ran was lost by AWS, not by longshore.
    pub reclaimed: BTreeSet<String>,
    /// Instances and nodes the scaler removed as orphans.
    pub removed_as_orphans: BTreeSet<String>,
    /// Custom resource requests sent: request id, whether it must be answered FAILED.
    pub cr_sent: Vec<(String, bool)>,
    /// Custom resource answers CloudFormation received: request id, status.
    pub cr_answers: Vec<(String, String)>,
    pub boot_faults: BTreeMap<String, BootFault>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    pub idempotent_replays: u64,
    /// Events recovery handled.
    pub events_delivered: u64,
    /// RunInstances ClientToken → the instances it launched.
    pub launches_by_token: BTreeMap<String, Vec<String>>,
    pub cap_overshoots: Vec<String>,
    pub acting_ticks: u64,
    pub observing_ticks: u64,
    pub ticks_cut: u64,
    pub scaler_errors: u64,
    /// Whether every job ran and the farm went quiet before the settle deadline.
    pub settled: bool,
    pub wall_ms: u64,
}

/// The invariant counts of a run (all zero when it passed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Invariants {
    pub busy_agents_killed: u64,
    pub cap_overshoots: u64,
    pub orphans: u64,
    pub duplicate_launches: u64,
    pub jobs_never_run: u64,
    pub custom_resource_unanswered: u64,
    pub custom_resource_wrong_answers: u64,
}

impl Invariants {
    pub fn hold(&self) -> bool {
        *self == Invariants::default()
    }

    pub fn add(&mut self, other: &Invariants) {
        self.busy_agents_killed += other.busy_agents_killed;
        self.cap_overshoots += other.cap_overshoots;
        self.orphans += other.orphans;
        self.duplicate_launches += other.duplicate_launches;
        self.jobs_never_run += other.jobs_never_run;
        self.custom_resource_unanswered += other.custom_resource_unanswered;
        self.custom_resource_wrong_answers += other.custom_resource_wrong_answers;
    }
}

/// The judgement of one run: counts, and one line per broken rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub invariants: Invariants,
    pub reasons: Vec<String>,
}

impl Observations {
    pub fn new(seed: u64, config: &FleetConfig) -> Observations {
        Observations {
            seed,
            max_agents: config.max_agents as usize,
            max_per_master: config
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.max_per_master as usize))
                .collect(),
            ..Observations::default()
        }
    }

    pub fn count_fault(&mut self, kind: &str) {
        *self.faults.entry(kind.to_string()).or_default() += 1;
    }

    pub fn record_step(
        &mut self,
        acted: bool,
        observed: bool,
        cut: bool,
        report: Option<&TickReport>,
    ) {
        self.acting_ticks += u64::from(acted);
        self.observing_ticks += u64::from(observed);
        if cut {
            self.ticks_cut += 1;
            self.count_fault("tick_cut_off");
        }
        if let Some(report) = report {
            self.scaler_errors += report.errors.len() as u64;
            self.removed_as_orphans
                .extend(report.orphans_removed.iter().cloned());
        }
    }

    /// Remembers the instances and checks the caps on what is alive now.
    pub fn record_instances(&mut self, now_ms: i64, instances: &[SeenInstance]) {
        for instance in instances {
            self.all_instances
                .entry(instance.id.clone())
                .or_insert_with(|| (instance.clone(), now_ms));
        }
        let alive: Vec<&SeenInstance> = instances.iter().filter(|i| i.alive).collect();
        if alive.len() > self.max_agents {
            self.cap_overshoots.push(format!(
                "{} live instances, max_agents {}",
                alive.len(),
                self.max_agents
            ));
        }
        let mut per: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for instance in &alive {
            if let (Some(master), Some(label)) = (&instance.master, &instance.label) {
                *per.entry((master, label)).or_default() += 1;
            }
        }
        for ((master, label), count) in per {
            let cap = self.max_per_master.get(label).copied().unwrap_or(0);
            if count > cap {
                self.cap_overshoots.push(format!(
                    "{count} live {label} instances on {master}, max_per_master {cap}"
                ));
            }
        }
    }

    /// When the newest instance was first seen (epoch ms; 0 without instances).
    pub fn last_launch_ms(&self) -> i64 {
        self.all_instances
            .values()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or(0)
    }

    /// Judges the run.
    pub fn verdict(&self) -> Verdict {
        let mut verdict = Verdict::default();
        self.busy_agents_killed(&mut verdict);
        verdict.invariants.cap_overshoots = self.cap_overshoots.len() as u64;
        if let Some(first) = self.cap_overshoots.first() {
            verdict.reasons.push(format!(
                "cap overshoot in {} observations, first: {first}",
                self.cap_overshoots.len()
            ));
        }
        self.orphans(&mut verdict);
        self.duplicate_launches(&mut verdict);
        let started: BTreeSet<(usize, &str)> = self
            .started_jobs
            .iter()
            .map(|(m, job)| (*m, job.as_str()))
            .collect();
        for (master, _, job) in &self.jobs {
            if !started.contains(&(*master, job.as_str())) {
                verdict.invariants.jobs_never_run += 1;
                verdict
                    .reasons
                    .push(format!("job {job} on {} never ran", MASTERS[*master]));
            }
        }
        self.custom_resources(&mut verdict);
        verdict
    }

    fn custom_resources(&self, verdict: &mut Verdict) {
        for (request, must_fail) in &self.cr_sent {
            let statuses: Vec<&str> = self
                .cr_answers
                .iter()
                .filter(|(id, _)| id == request)
                .map(|(_, status)| status.as_str())
                .collect();
            if statuses.is_empty() {
                verdict.invariants.custom_resource_unanswered += 1;
                verdict
                    .reasons
                    .push(format!("custom resource request {request} got no answer"));
            } else if *must_fail && statuses.contains(&"SUCCESS") {
                verdict.invariants.custom_resource_wrong_answers += 1;
                verdict.reasons.push(format!(
                    "custom resource request {request} (bad properties or a hung resolver) answered SUCCESS"
                ));
            }
        }
    }

    fn busy_agents_killed(&self, verdict: &mut Verdict) {
        let mut restarts = self.lost_to_restarts.clone();
        for (master, node, job) in &self.lost_builds {
            if let Some(at) = restarts.iter().position(|(m, n)| m == master && n == node) {
                restarts.remove(at);
                continue;
            }
            if self.dead_agents.contains(node) || self.reclaimed.contains(node) {
                continue; // it died under the build by an injected fault, or EC2 took it
            }
            verdict.invariants.busy_agents_killed += 1;
            verdict.reasons.push(format!(
                "build of {job} lost on {node} ({}), not by an injected fault",
                MASTERS[*master]
            ));
        }
    }

    fn orphans(&self, verdict: &mut Verdict) {
        let online: BTreeSet<(usize, &str)> = self
            .final_nodes
            .iter()
            .filter(|(_, _, online)| *online)
            .map(|(m, name, _)| (*m, name.as_str()))
            .collect();
        let alive: BTreeSet<&str> = self
            .final_instances
            .iter()
            .filter(|i| i.alive)
            .map(|i| i.id.as_str())
            .collect();
        for instance in self.final_instances.iter().filter(|i| i.alive) {
            let master = instance
                .master
                .as_deref()
                .and_then(|name| MASTERS.iter().position(|m| *m == name));
            if !master.is_some_and(|m| online.contains(&(m, instance.id.as_str()))) {
                verdict.invariants.orphans += 1;
                verdict.reasons.push(format!(
                    "orphan instance {} ({:?}/{:?}, boot fault {:?}): no connected node",
                    instance.id,
                    instance.master,
                    instance.label,
                    self.boot_faults.get(&instance.id)
                ));
            }
        }
        for (master, node, _) in &self.final_nodes {
            if is_instance_id(node) && !alive.contains(node.as_str()) {
                verdict.invariants.orphans += 1;
                verdict.reasons.push(format!(
                    "orphan node {node} on {}: no live instance",
                    MASTERS[*master]
                ));
            }
        }
    }

    fn duplicate_launches(&self, verdict: &mut Verdict) {
        // One planned launch = one token, whichever candidate took it. A follow-up token
        // (`-r<n>`) is a launch of its own: the scaler sends it only after EC2 answered
        // `IdempotentInstanceTerminated`, i.e. once the previous launch's instance was gone.
        // The bound below catches a launch planned twice under two tokens.
        for (base, ids) in self
            .launches_by_token
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
        {
            verdict.invariants.duplicate_launches += ids.len() as u64 - 1;
            verdict.reasons.push(format!(
                "launch {base} started {} instances: {ids:?}",
                ids.len()
            ));
        }
        let mut launched: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for (instance, _) in self.all_instances.values() {
            if let (Some(master), Some(label)) = (&instance.master, &instance.label) {
                let entry = launched.entry((master, label)).or_default();
                entry.0 += 1;
                let replaced = !self.connected.contains(&instance.id)
                    || self.reclaimed.contains(&instance.id)
                    || self.removed_as_orphans.contains(&instance.id);
                entry.1 += u64::from(replaced);
            }
        }
        for ((master, label), (count, replaced)) in launched {
            let jobs = self
                .jobs
                .iter()
                .filter(|(m, l, _)| MASTERS[*m] == master && l == label)
                .count() as u64;
            let bound = jobs + replaced;
            if count > bound {
                verdict.invariants.duplicate_launches += count - bound;
                verdict.reasons.push(format!(
                    "{count} {label} instances on {master} for {jobs} jobs and {replaced} replaced (never connected, reclaimed, or removed as not connected in time)"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Observations {
        Observations {
            max_agents: 2,
            max_per_master: [("docker".to_string(), 1)].into(),
            jobs: vec![(0, "docker".to_string(), "job-0".to_string())],
            started_jobs: vec![(0, "job-0".to_string())],
            ..Observations::default()
        }
    }

    fn instance(id: &str, alive: bool) -> SeenInstance {
        SeenInstance {
            id: id.to_string(),
            master: Some("master-a".to_string()),
            label: Some("docker".to_string()),
            alive,
        }
    }

    #[test]
    fn a_clean_run_holds() {
        let mut seen = base();
        seen.record_instances(1, &[instance("i-0000000a", true)]);
        seen.connected.insert("i-0000000a".to_string());
        seen.final_instances = vec![instance("i-0000000a", true)];
        seen.final_nodes = vec![(0, "i-0000000a".to_string(), true)];
        seen.launches_by_token = [("ls-1-0".to_string(), vec!["i-0000000a".to_string()])].into();
        let verdict = seen.verdict();
        assert!(verdict.invariants.hold(), "{verdict:?}");
    }

    #[test]
    fn lost_builds_count_unless_a_fault_explains_them() {
        let mut seen = base();
        seen.lost_builds = vec![
            (0, "i-0000000a".to_string(), "job-0".to_string()),
            (0, "i-0000000b".to_string(), "job-1".to_string()),
            (1, "i-0000000c".to_string(), "job-2".to_string()),
            (1, "i-0000000c".to_string(), "job-3".to_string()),
        ];
        seen.dead_agents.insert("i-0000000a".to_string());
        seen.lost_to_restarts = vec![(1, "i-0000000c".to_string())];
        let verdict = seen.verdict();
        assert_eq!(verdict.invariants.busy_agents_killed, 2, "{verdict:?}");
    }

    #[test]
    fn custom_resource_requests_need_one_answer_and_bad_ones_must_fail() {
        let mut seen = base();
        seen.cr_sent = vec![
            ("good".to_string(), false),
            ("bad".to_string(), true),
            ("lost".to_string(), false),
            ("hung".to_string(), true),
        ];
        seen.cr_answers = vec![
            ("good".to_string(), "SUCCESS".to_string()),
            ("bad".to_string(), "FAILED".to_string()),
            ("hung".to_string(), "SUCCESS".to_string()),
        ];
        let invariants = seen.verdict().invariants;
        assert_eq!(invariants.custom_resource_unanswered, 1);
        assert_eq!(invariants.custom_resource_wrong_answers, 1);
    }

    #[test]
    fn a_build_lost_on_a_reclaimed_instance_is_not_longshore_s_kill() {
        let mut seen = base();
        seen.lost_builds = vec![(0, "i-0000000a".to_string(), "job-0".to_string())];
        assert_eq!(seen.verdict().invariants.busy_agents_killed, 1);
        seen.reclaimed.insert("i-0000000a".to_string());
        assert_eq!(seen.verdict().invariants.busy_agents_killed, 0);
    }

    #[test]
    fn caps_are_checked_on_every_observation() {
        let mut seen = base();
        seen.record_instances(
            1,
            &[instance("i-0000000a", true), instance("i-0000000b", false)],
        );
        assert!(seen.cap_overshoots.is_empty());
        seen.record_instances(
            2,
            &[
                instance("i-0000000a", true),
                instance("i-0000000b", true),
                instance("i-0000000c", true),
            ],
        );
        assert_eq!(seen.cap_overshoots.len(), 2, "{:?}", seen.cap_overshoots);
    }

    #[test]
    fn orphans_of_both_kinds_and_jobs_never_run() {
        let mut seen = base();
        seen.started_jobs.clear();
        seen.final_instances = vec![instance("i-0000000a", true), instance("i-0000000b", false)];
        seen.final_nodes = vec![
            (0, "i-0000000a".to_string(), false),
            (0, "i-0000000b".to_string(), true),
            (0, "longshore-standby-docker".to_string(), false),
        ];
        let verdict = seen.verdict();
        assert_eq!(verdict.invariants.orphans, 2, "{verdict:?}");
        assert_eq!(verdict.invariants.jobs_never_run, 1);
    }

    #[test]
    fn two_instances_for_one_launch_or_beyond_the_bound_are_duplicates() {
        let mut seen = base();
        seen.launches_by_token = [(
            "ls-1".to_string(),
            vec!["i-0000000a".to_string(), "i-0000000b".to_string()],
        )]
        .into();
        for id in ["i-0000000a", "i-0000000b"] {
            seen.all_instances
                .insert(id.to_string(), (instance(id, false), 1));
            seen.connected.insert(id.to_string());
        }
        let verdict = seen.verdict();
        // One token twice, and two connected instances for one job.
        assert_eq!(verdict.invariants.duplicate_launches, 2, "{verdict:?}");
    }

    #[test]
    fn a_late_agent_the_scaler_had_removed_counts_as_replaced() {
        let mut seen = base();
        for id in ["i-0000000a", "i-0000000b"] {
            seen.all_instances
                .insert(id.to_string(), (instance(id, false), 1));
            seen.connected.insert(id.to_string());
        }
        assert_eq!(seen.verdict().invariants.duplicate_launches, 1);
        // The first connected only after the scaler had removed it as not connected in time.
        let report = TickReport {
            orphans_removed: vec!["i-0000000a".to_string()],
            ..TickReport::default()
        };
        seen.record_step(true, false, false, Some(&report));
        assert_eq!(seen.verdict().invariants.duplicate_launches, 0);
    }
}
