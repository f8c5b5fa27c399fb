//! The parts of Jenkins' JSON that longshore reads, as plain types.
//!
//! Every field that some Jenkins version omits is optional (`_class` is missing before Jenkins
//! 2.x exported it, `assignedLabels` needs a tree or depth), so an older master parses instead of
//! failing; what the scaler cannot do without is required, so a half-written answer fails to
//! parse rather than being read as "nothing queued". Wire format: ../shared/JENKINS_API.md.

use serde::{Deserialize, Serialize};

/// The `tree=` of the queue request: only what the scaler uses, to keep answers small.
pub const QUEUE_TREE: &str = "items[_class,id,why,buildable,blocked,stuck,inQueueSince,buildableStartMilliseconds,pending,task[name,url]]";

/// The `tree=` of the computer request.
pub const COMPUTER_TREE: &str = "computer[_class,displayName,description,offline,temporarilyOffline,idle,numExecutors,offlineCauseReason,assignedLabels[name],executors[idle]]";

/// `GET /queue/api/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    pub items: Vec<QueueItem>,
}

/// One item of the build queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueItem {
    #[serde(rename = "_class", default)]
    pub class: Option<String>,
    pub id: u64,
    /// Why the item waits, in the master's language (we ask for English); the only place
    /// Jenkins says which label an item waits for.
    #[serde(default)]
    pub why: Option<String>,
    #[serde(default)]
    pub buildable: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub stuck: bool,
    /// A buildable item already handed to an executor that has not started it yet
    /// (`Queue.getItems()` lists `pendings` too); that executor is busy meanwhile.
    #[serde(default)]
    pub pending: bool,
    /// Epoch milliseconds when the item entered the queue.
    pub in_queue_since: i64,
    #[serde(default)]
    pub buildable_start_milliseconds: Option<i64>,
    #[serde(default)]
    pub task: Option<Task>,
}

/// The job (or pipeline step) a queue item would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `GET /computer/api/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputerSet {
    pub computer: Vec<Computer>,
}

/// One node as its computer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Computer {
    #[serde(rename = "_class", default)]
    pub class: Option<String>,
    pub display_name: String,
    /// The node's description (`Computer.getDescription`); the scaler keeps its agents'
    /// template and launch time there.
    #[serde(default)]
    pub description: Option<String>,
    pub offline: bool,
    #[serde(default)]
    pub temporarily_offline: bool,
    pub idle: bool,
    pub num_executors: u32,
    #[serde(default)]
    pub offline_cause_reason: Option<String>,
    #[serde(default)]
    pub assigned_labels: Vec<LabelRef>,
    #[serde(default)]
    pub executors: Vec<Executor>,
}

impl Computer {
    /// Executors running a build. Read from the executor list when the tree carried it,
    /// otherwise from `idle` (all or nothing), which is all older answers allow.
    pub fn busy_executors(&self) -> u32 {
        if self.executors.is_empty() || self.executors.iter().any(|e| e.idle.is_none()) {
            return if self.idle { 0 } else { self.num_executors };
        }
        self.executors
            .iter()
            .filter(|e| e.idle == Some(false))
            .count() as u32
    }
}

/// A label reference inside a computer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRef {
    pub name: String,
}

/// One executor slot of a computer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executor {
    /// Absent at the default depth (executors show as `{}`), present with a tree.
    #[serde(default)]
    pub idle: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/jenkins");

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()
    }

    #[test]
    fn recorded_queue_parses() {
        let queue: Queue =
            serde_json::from_str(&fixture("queue/cdancy-queue-buildable-items.json")).unwrap();
        assert_eq!(queue.items.len(), 2);
        assert!(queue.items.iter().all(|item| item.buildable));
        assert_eq!(
            queue.items[0].why.as_deref(),
            Some("Waiting for next available executor")
        );
    }

    #[test]
    fn recorded_computers_parse() {
        let set: ComputerSet =
            serde_json::from_str(&fixture("computer/cdancy-computer-set.json")).unwrap();
        assert_eq!(set.computer.len(), 10);
        assert!(set.computer.iter().any(|c| c.offline));
    }

    #[test]
    fn half_written_queue_is_an_error_not_an_empty_queue() {
        let text = fixture("queue/cdancy-queue-buildable-items.json");
        let half = &text[..text.len() / 2];
        assert!(serde_json::from_str::<Queue>(half).is_err());
        assert!(serde_json::from_str::<Queue>("{}").is_err());
    }

    #[test]
    fn busy_executors_prefers_the_executor_list() {
        let computer: Computer = serde_json::from_value(serde_json::json!({
            "displayName": "i-1", "offline": false, "idle": false, "numExecutors": 2,
            "executors": [{"idle": true}, {"idle": false}]
        }))
        .unwrap();
        assert_eq!(computer.busy_executors(), 1);
    }
}
