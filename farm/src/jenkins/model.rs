//! The exported beans: which properties each Jenkins class exports, with which visibility and
//! `_class`, written straight from [`State`]. Property sets follow the `@Exported` annotations
//! of jenkinsci/jenkins (ff9430ee) `Queue.java`, `Computer.java`, `SlaveComputer.java`,
//! `ComputerSet.java`, `Label.java`, `LabelAtom.java`, `Jenkins.java`, `Node.java`,
//! `LoadStatistics.java`, `Executor.java`, and workflow-durable-task-step's
//! `ExecutorStepExecution.PlaceholderTask`; shapes were checked against the recordings in
//! `shared/fixtures/jenkins`. Where the recordings (older Jenkins) differ from current core,
//! current core wins: `assignedLabels`, `description` and `absoluteRemotePath` on computers.
//! Node monitor values keep the recorded keys (current core adds a `timestamp`).

use std::cell::RefCell;
use std::collections::HashMap;

use longshore::domain::labels::LabelExpr;

use super::messages as msg;
use super::state::{ItemState, JobKind, Left, Node, QItem, State, Task};
use super::tree::{Obj, VIS, VIS_ALL, VIS2, Val};

/// Rendering context: the state, the time, and a cache of `why` texts per label (the text of a
/// buildable item depends only on its label, so a 10,000-item queue needs few computations).
pub(crate) struct Ctx<'a> {
    pub st: &'a State,
    pub now_ms: u64,
    why_cache: RefCell<HashMap<Option<LabelExpr>, String>>,
}

impl<'a> Ctx<'a> {
    pub fn new(st: &'a State, now_ms: u64) -> Self {
        Ctx {
            st,
            now_ms,
            why_cache: RefCell::new(HashMap::new()),
        }
    }

    fn root(&self) -> &str {
        &self.st.root_url
    }

    fn why(&self, item: &QItem) -> String {
        if item.state != ItemState::Buildable {
            return self.st.why(item, self.now_ms);
        }
        let mut cache = self.why_cache.borrow_mut();
        if let Some(w) = cache.get(&item.label) {
            return w.clone();
        }
        let w = self.st.why_buildable(item.label.as_ref());
        cache.insert(item.label.clone(), w.clone());
        w
    }
}

fn item_class(state: ItemState) -> &'static str {
    match state {
        ItemState::Waiting => "hudson.model.Queue$WaitingItem",
        ItemState::Blocked => "hudson.model.Queue$BlockedItem",
        ItemState::Buildable => "hudson.model.Queue$BuildableItem",
    }
}

/// `GET /api/json` (`hudson.model.Hudson`).
pub(crate) fn root(o: &mut Obj<'_, '_>, cx: &Ctx<'_>) {
    let st = cx.st;
    let builtin = st.nodes.get("");
    if let Some(v) = o.prop("assignedLabels", VIS) {
        v.list(builtin.into_iter().flat_map(|n| n.labels.iter()), |v, l| {
            v.obj(None, |o| o.str("name", VIS2, l))
        });
    }
    o.str("mode", VIS, builtin.map_or("NORMAL", |n| n.mode.as_str()));
    o.str("nodeDescription", VIS, msg::BUILT_IN_DESCRIPTION);
    o.str("nodeName", VIS_ALL, "");
    o.int("numExecutors", VIS, 0);
    o.opt_str("description", VIS, None);
    if let Some(v) = o.prop("jobs", VIS) {
        v.list(st.jobs.values(), |v, j| {
            v.obj(Some(j.class()), |o| {
                o.str("name", VIS_ALL, &j.name);
                o.str("url", VIS_ALL, &format!("{}job/{}/", cx.root(), j.name));
                o.str("color", VIS2, &j.color());
            })
        });
    }
    if let Some(v) = o.prop("overallLoad", VIS) {
        v.obj(None, |o| overall_load(o, cx));
    }
    if let Some(v) = o.prop("primaryView", VIS) {
        v.obj(Some("hudson.model.AllView"), |o| all_view(o, cx));
    }
    o.opt_str("quietDownReason", VIS, None);
    o.bool("quietingDown", VIS, false);
    o.int("slaveAgentPort", VIS, -1);
    if let Some(v) = o.prop("unlabeledLoad", VIS) {
        v.obj(Some("jenkins.model.UnlabeledLoadStatistics"), |_| {});
    }
    o.str("url", VIS, cx.root());
    o.bool("useCrumbs", VIS, true);
    o.bool("useSecurity", VIS, true);
    if let Some(v) = o.prop("views", VIS) {
        v.list([()], |v, ()| {
            v.obj(Some("hudson.model.AllView"), |o| all_view(o, cx))
        });
    }
}

fn all_view(o: &mut Obj<'_, '_>, cx: &Ctx<'_>) {
    o.str("name", VIS2, "all");
    o.str("url", VIS2, cx.root());
}

/// `GET /crumbIssuer/api/json` (`hudson.security.csrf.DefaultCrumbIssuer`).
pub(crate) fn crumb_issuer(o: &mut Obj<'_, '_>, crumb: &str) {
    o.str("crumb", VIS, crumb);
    o.str("crumbRequestField", VIS, "Jenkins-Crumb");
}

/// `GET /queue/api/json` (`hudson.model.Queue`): waiting, blocked, then buildable items newest
/// first (`Queue.getItems`).
pub(crate) fn queue(o: &mut Obj<'_, '_>, cx: &Ctx<'_>) {
    o.empty_list("discoverableItems", VIS);
    if let Some(v) = o.prop_inline("items", VIS) {
        let q = &cx.st.queue;
        let waiting = q.values().filter(|i| i.state == ItemState::Waiting);
        let blocked = q.values().filter(|i| i.state == ItemState::Blocked);
        let buildable = q.values().rev().filter(|i| i.state == ItemState::Buildable);
        v.list(waiting.chain(blocked).chain(buildable), |v, item| {
            v.obj(Some(item_class(item.state)), |o| queue_item(o, cx, item))
        });
    }
}

fn actions(v: Val<'_, '_>, item: &QItem) {
    // A ParametersAction only when the build has parameters, then the CauseAction.
    let kinds: &[bool] = if item.params.is_empty() {
        &[false]
    } else {
        &[true, false]
    };
    v.list(kinds.iter().copied(), |v, parameters| {
        if !parameters {
            return v.obj(Some("hudson.model.CauseAction"), |o| causes(o, item));
        }
        v.obj(Some("hudson.model.ParametersAction"), |o| {
            if let Some(v) = o.prop("parameters", VIS_ALL) {
                v.list(&item.params, |v, (k, val)| {
                    v.obj(Some("hudson.model.StringParameterValue"), |o| {
                        o.str("name", VIS_ALL, k);
                        o.str("value", VIS_ALL, val);
                    })
                });
            }
        })
    });
}

fn causes(o: &mut Obj<'_, '_>, item: &QItem) {
    if let Some(v) = o.prop("causes", VIS_ALL) {
        v.list([()], |v, ()| {
            v.obj(Some("hudson.model.Cause$UserIdCause"), |o| {
                o.str(
                    "shortDescription",
                    VIS_ALL,
                    &msg::started_by_user(&item.user),
                );
                o.str("userId", VIS_ALL, &item.user);
                o.str("userName", VIS_ALL, &item.user);
            })
        });
    }
}

fn params_text(item: &QItem) -> String {
    // Queue.Item.getParams: "\nname=value" per parameter.
    item.params
        .iter()
        .map(|(k, v)| format!("\n{k}={v}"))
        .collect()
}

fn task(o: &mut Obj<'_, '_>, cx: &Ctx<'_>, t: &Task) {
    match t {
        Task::Job(job) => {
            let color = cx.st.jobs.get(job).map(|j| j.color()).unwrap_or_default();
            o.str("name", VIS_ALL, job);
            o.str("url", VIS_ALL, &format!("{}job/{job}/", cx.root()));
            o.str("color", VIS2, &color);
        }
        Task::Placeholder { job, run } => {
            // PlaceholderTask exports url, name, fullDisplayName with the default visibility:
            // at the default depth the nested task is only its `_class`.
            o.str(
                "fullDisplayName",
                VIS,
                &msg::placeholder_display_name(&format!("{job} #{run}")),
            );
            o.str(
                "name",
                VIS,
                &msg::placeholder_display_name(&format!("{job} #{run}")),
            );
            o.str("url", VIS, &format!("job/{job}/{run}/"));
        }
    }
}

fn task_class(cx: &Ctx<'_>, t: &Task) -> &'static str {
    match t {
        Task::Job(job) => match cx.st.jobs.get(job).map(|j| j.kind) {
            Some(JobKind::Pipeline) => "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            _ => "hudson.model.FreeStyleProject",
        },
        Task::Placeholder { .. } => {
            "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask"
        }
    }
}

fn item_common(o: &mut Obj<'_, '_>, cx: &Ctx<'_>, item: &QItem, state: Option<ItemState>) {
    if let Some(v) = o.prop("actions", VIS) {
        actions(v, item);
    }
    o.bool("blocked", VIS_ALL, state == Some(ItemState::Blocked));
    o.bool("buildable", VIS_ALL, state == Some(ItemState::Buildable));
    o.int("id", VIS_ALL, item.id as i64);
    o.int("inQueueSince", VIS_ALL, item.in_queue_since as i64);
    if let Some(v) = o.prop("params", VIS_ALL) {
        v.str(&params_text(item));
    }
    if let Some(v) = o.prop("stuck", VIS_ALL) {
        v.bool(state.is_some() && cx.st.stuck(item, cx.now_ms));
    }
    if let Some(v) = o.prop("task", VIS_ALL) {
        v.obj(Some(task_class(cx, &item.task)), |o| {
            task(o, cx, &item.task)
        });
    }
    if let Some(v) = o.prop("url", VIS_ALL) {
        v.str(&format!("queue/item/{}/", item.id));
    }
    if let Some(v) = o.prop("why", VIS_ALL) {
        match state {
            Some(_) => v.str(&cx.why(item)),
            None => v.null(),
        }
    }
}

/// A queued item (`Queue$WaitingItem`, `$BlockedItem`, `$BuildableItem`).
pub(crate) fn queue_item(o: &mut Obj<'_, '_>, cx: &Ctx<'_>, item: &QItem) {
    item_common(o, cx, item, Some(item.state));
    match item.state {
        ItemState::Waiting => o.int("timestamp", VIS_ALL, item.due_ms as i64),
        ItemState::Blocked | ItemState::Buildable => {
            let since = item.buildable_since.unwrap_or(item.in_queue_since);
            o.int("buildableStartMilliseconds", VIS_ALL, since as i64);
            if item.state == ItemState::Buildable {
                o.bool("pending", VIS_ALL, false);
            }
        }
    }
}

/// An item that left the queue (`Queue$LeftItem`).
pub(crate) fn left_item(o: &mut Obj<'_, '_>, cx: &Ctx<'_>, left: &Left) {
    item_common(o, cx, &left.item, None);
    o.bool("cancelled", VIS_ALL, left.cancelled);
    if let Some(v) = o.prop("executable", VIS_ALL) {
        match left.executable {
            None => v.null(),
            Some((class, number)) => v.obj(Some(class), |o| {
                let job = left.item.task.job();
                let url = format!("{}job/{job}/{number}/", cx.root());
                let vis = if matches!(left.item.task, Task::Placeholder { .. }) {
                    VIS
                } else {
                    VIS2
                };
                o.int("number", vis, i64::from(number));
                o.str("url", vis, &url);
            }),
        }
    }
}

fn computer_class(n: &Node) -> &'static str {
    if n.builtin {
        "hudson.model.Hudson$MasterComputer"
    } else {
        "hudson.slaves.SlaveComputer"
    }
}

/// `GET /computer/api/json` (`hudson.model.ComputerSet`).
pub(crate) fn computer_set(o: &mut Obj<'_, '_>, cx: &Ctx<'_>) {
    let online = cx.st.nodes.values().filter(|n| !n.offline());
    let busy: usize = online.clone().map(Node::busy_slots).sum();
    let total: usize = online.map(|n| n.executors.len()).sum();
    o.int("busyExecutors", VIS, busy as i64);
    if let Some(v) = o.prop_inline("computer", VIS) {
        v.list(cx.st.nodes.values(), |v, n| {
            v.obj(Some(computer_class(n)), |o| computer(o, cx, n))
        });
    }
    o.str("displayName", VIS, "Nodes");
    o.int("totalExecutors", VIS, total as i64);
}

/// `GET /computer/<name>/api/json`.
pub(crate) fn computer(o: &mut Obj<'_, '_>, cx: &Ctx<'_>, n: &Node) {
    let st = cx.st;
    o.empty_list("actions", VIS);
    if let Some(v) = o.prop("assignedLabels", VIS) {
        v.list(&n.labels, |v, l| v.obj(None, |o| o.str("name", VIS2, l)));
    }
    // `Computer.getDescription` is the node's own description.
    o.str("description", VIS, &n.description);
    o.str("displayName", VIS, n.display_name());
    if let Some(v) = o.prop("executors", VIS) {
        v.list(n.executors.iter().enumerate(), |v, (i, slot)| {
            v.obj(None, |o| {
                let run = slot.and_then(|k| st.running.get(&k));
                if let Some(v) = o.prop("currentExecutable", VIS) {
                    match run {
                        None => v.null(),
                        Some(r) => {
                            let class = st
                                .jobs
                                .get(r.task.job())
                                .map_or("hudson.model.FreeStyleBuild", |j| j.run_class());
                            v.obj(Some(class), |o| {
                                o.int("number", VIS2, i64::from(r.number));
                                let url =
                                    format!("{}job/{}/{}/", cx.root(), r.task.job(), r.number);
                                o.str("url", VIS2, &url);
                            })
                        }
                    }
                }
                o.bool("idle", VIS, run.is_none());
                o.bool("likelyStuck", VIS, false);
                o.int("number", VIS, i as i64);
                let progress = run.map_or(-1, |r| {
                    let est = st
                        .jobs
                        .get(r.task.job())
                        .map_or(-1, |j| j.estimated_duration_ms());
                    if est <= 0 {
                        -1
                    } else {
                        let elapsed = cx.now_ms.saturating_sub(r.started_ms) as i64;
                        (elapsed * 100 / est).min(99)
                    }
                });
                o.int("progress", VIS, progress);
            })
        });
    }
    let icon = if n.temp_offline.is_some() {
        "symbol-computer-disconnected"
    } else if n.offline() {
        "symbol-computer-offline"
    } else {
        "symbol-computer"
    };
    o.str("icon", VIS, icon);
    o.str("iconClassName", VIS, icon);
    o.bool("idle", VIS, n.busy_slots() == 0);
    o.bool("jnlpAgent", VIS, !n.builtin);
    o.bool("launchSupported", VIS, n.builtin);
    if let Some(v) = o.prop("loadStatistics", VIS) {
        v.obj(Some("hudson.model.Label$1"), |_| {});
    }
    o.bool("manualLaunchAllowed", VIS, true);
    if let Some(v) = o.prop_inline("monitorData", VIS) {
        monitor_data(v, n);
    }
    o.int("numExecutors", VIS, n.executors.len() as i64);
    o.bool("offline", VIS, n.offline());
    if let Some(v) = o.prop("offlineCause", VIS) {
        if let Some(t) = &n.temp_offline {
            let text = format!(
                "Disconnected by {}{}",
                t.user,
                t.message
                    .as_ref()
                    .map(|m| format!(" : {m}"))
                    .unwrap_or_default()
            );
            v.obj(Some("hudson.slaves.OfflineCause$UserCause"), |o| {
                o.str("description", VIS, &text);
                o.int("timestamp", VIS, t.timestamp as i64);
            });
        } else if let (Some(ts), false) = (n.channel_terminated, n.connected()) {
            v.obj(Some("hudson.slaves.OfflineCause$ChannelTermination"), |o| {
                o.int("timestamp", VIS, ts as i64)
            });
        } else {
            v.null();
        }
    }
    // IComputer.getOfflineCauseReason: the user's message, "Connection was broken", or "".
    let reason = match (&n.temp_offline, n.channel_terminated, n.connected()) {
        (Some(t), _, _) => t.message.clone().unwrap_or_default(),
        (None, Some(_), false) => msg::CONNECTION_WAS_BROKEN.to_owned(),
        _ => String::new(),
    };
    o.str("offlineCauseReason", VIS, &reason);
    o.empty_list("oneOffExecutors", VIS);
    o.bool("temporarilyOffline", VIS, n.temp_offline.is_some());
    if !n.builtin
        && let Some(v) = o.prop("absoluteRemotePath", VIS)
    {
        v.opt_str(n.connected().then_some(n.remote_fs.as_str()));
    }
}

fn monitor_data(v: Val<'_, '_>, n: &Node) {
    const MONITORS: [&str; 6] = [
        "hudson.node_monitors.SwapSpaceMonitor",
        "hudson.node_monitors.ArchitectureMonitor",
        "hudson.node_monitors.ResponseTimeMonitor",
        "hudson.node_monitors.TemporarySpaceMonitor",
        "hudson.node_monitors.DiskSpaceMonitor",
        "hudson.node_monitors.ClockMonitor",
    ];
    let online = n.connected();
    v.map(MONITORS.iter().enumerate().map(|(i, k)| (*k, i)), |v, i| {
        if !online && i != 2 {
            return v.null();
        }
        match i {
            0 => v.obj(
                Some("hudson.node_monitors.SwapSpaceMonitor$MemoryUsage2"),
                |o| {
                    o.int("availablePhysicalMemory", VIS, 6_442_450_944);
                    o.int("availableSwapSpace", VIS, 0);
                    o.int("totalPhysicalMemory", VIS, 8_589_934_592);
                    o.int("totalSwapSpace", VIS, 0);
                },
            ),
            1 => v.str("Linux (amd64)"),
            2 => v.obj(Some("hudson.node_monitors.ResponseTimeMonitor$Data"), |o| {
                o.int("average", VIS, if online { 12 } else { 5000 })
            }),
            3 => v.obj(
                Some("hudson.node_monitors.DiskSpaceMonitorDescriptor$DiskSpace"),
                |o| {
                    o.str("path", VIS, "/tmp");
                    o.int("size", VIS, 10_737_418_240);
                },
            ),
            4 => v.obj(
                Some("hudson.node_monitors.DiskSpaceMonitorDescriptor$DiskSpace"),
                |o| {
                    o.str("path", VIS, &n.remote_fs);
                    o.int("size", VIS, 53_687_091_200);
                },
            ),
            _ => v.obj(Some("hudson.util.ClockDifference"), |o| {
                o.int("diff", VIS, 0)
            }),
        }
    });
}

/// The Java class of a label (`LabelAtom` or a `LabelExpression` subclass).
pub(crate) fn label_class(l: &LabelExpr) -> &'static str {
    match l {
        LabelExpr::Atom(_) => "hudson.model.labels.LabelAtom",
        LabelExpr::Not(_) => "hudson.model.labels.LabelExpression$Not",
        LabelExpr::Paren(_) => "hudson.model.labels.LabelExpression$Paren",
        LabelExpr::And(..) => "hudson.model.labels.LabelExpression$And",
        LabelExpr::Or(..) => "hudson.model.labels.LabelExpression$Or",
        LabelExpr::Implies(..) => "hudson.model.labels.LabelExpression$Implies",
        LabelExpr::Iff(..) => "hudson.model.labels.LabelExpression$Iff",
    }
}

/// `GET /label/<expr>/api/json`.
pub(crate) fn label(o: &mut Obj<'_, '_>, cx: &Ctx<'_>, l: &LabelExpr) {
    let st = cx.st;
    let nodes: Vec<&Node> = st.nodes.values().filter(|n| l.matches(&n.labels)).collect();
    let online = nodes.iter().filter(|n| !n.offline());
    let busy: usize = online.clone().map(|n| n.busy_slots()).sum();
    let idle: usize = online.clone().map(|n| n.idle_slots()).sum();
    let total: usize = online.map(|n| n.executors.len()).sum();
    o.empty_list("actions", VIS);
    o.int("busyExecutors", VIS, busy as i64);
    o.empty_list("clouds", VIS);
    let description = match nodes.as_slice() {
        [] => msg::INVALID_LABEL.to_owned(),
        [one] if one.builtin => msg::BUILT_IN_DESCRIPTION.to_owned(),
        [_] => String::new(),
        many => {
            let mut buf = String::new();
            for (i, n) in many.iter().enumerate() {
                if buf.len() > 80 {
                    buf.push_str(",...");
                    break;
                }
                if i > 0 {
                    buf.push(',');
                }
                buf.push_str(n.display_name());
            }
            msg::group_of(&buf)
        }
    };
    o.str("description", VIS, &description);
    o.int("idleExecutors", VIS, idle as i64);
    if let Some(v) = o.prop("loadStatistics", VIS) {
        v.obj(Some("hudson.model.Label$1"), |_| {});
    }
    o.str("name", VIS2, &l.name());
    if let Some(v) = o.prop("nodes", VIS) {
        v.list(&nodes, |v, n| {
            let class = if n.builtin {
                "hudson.model.Hudson"
            } else {
                "hudson.slaves.DumbSlave"
            };
            v.obj(Some(class), |o| o.str("nodeName", VIS_ALL, &n.name));
        });
    }
    o.bool("offline", VIS, st.label_offline(Some(l)));
    if let Some(v) = o.prop("tiedJobs", VIS) {
        let tied = st.jobs.values().filter(|j| {
            j.kind == JobKind::Freestyle
                && longshore::domain::labels::assigned_label(j.label.as_deref()).as_ref() == Some(l)
        });
        v.list(tied, |v, j| {
            v.obj(Some(j.class()), |o| {
                o.str("name", VIS_ALL, &j.name);
                o.str("url", VIS_ALL, &format!("{}job/{}/", cx.root(), j.name));
                o.str("color", VIS2, &j.color());
            })
        });
    }
    o.int("totalExecutors", VIS, total as i64);
    if matches!(l, LabelExpr::Atom(_)) {
        o.empty_list("propertiesList", VIS);
    }
}

/// `GET /overallLoad/api/json` (`hudson.model.OverallLoadStatistics`); each series is a
/// `MultiStageTimeSeries` (`sec10`, `min`, `hour`, each `{history, latest}`), empty at the
/// default depth.
pub(crate) fn overall_load(o: &mut Obj<'_, '_>, cx: &Ctx<'_>) {
    let st = cx.st;
    let online: Vec<&Node> = st.nodes.values().filter(|n| !n.offline()).collect();
    let defined: usize = st.nodes.values().map(|n| n.executors.len()).sum();
    let online_ex: usize = online.iter().map(|n| n.executors.len()).sum();
    let busy: usize = online.iter().map(|n| n.busy_slots()).sum();
    let idle: usize = online.iter().map(|n| n.idle_slots()).sum();
    let buildable = st
        .queue
        .values()
        .filter(|i| i.state == ItemState::Buildable)
        .count();
    let series: [(&str, usize); 9] = [
        ("availableExecutors", idle),
        ("busyExecutors", busy),
        ("connectingExecutors", 0),
        ("definedExecutors", defined),
        ("idleExecutors", idle),
        ("onlineExecutors", online_ex),
        ("queueLength", buildable),
        ("totalExecutors", online_ex),
        ("totalQueueLength", st.queue.len()),
    ];
    for (name, value) in series {
        if let Some(v) = o.prop(name, VIS) {
            v.obj(None, |o| {
                for stage in ["hour", "min", "sec10"] {
                    if let Some(v) = o.prop(stage, VIS) {
                        v.obj(None, |o| {
                            if let Some(v) = o.prop("history", VIS) {
                                v.list([value], |v, x| v.int(x as i64));
                            }
                            o.int("latest", VIS, value as i64);
                        });
                    }
                }
            });
        }
    }
}
