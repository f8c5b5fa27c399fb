//! The scaling decision: one snapshot of the farm in, one plan out.
//!
//! `plan` is pure and deterministic: the same snapshot and configuration always give the same
//! plan (the Lambda, the local farm and the policy simulator all run this very function). It
//! never proposes to retire a node with a busy executor, never exceeds a cap, and proposes
//! nothing for a master it could not read beyond keeping its agents.
//!
//! How demand is read: Jenkins does not export a queued item's label, only its `why`
//! ([`crate::domain::queue_why`]). When a label has exactly one node, Jenkins names the node
//! instead of the label (`Queue.BuildableItem.getCauseOfBlockage`), and when no agent exists at
//! all it names neither. longshore therefore keeps one *standby node* per agent template on
//! every master (`longshore-standby-<template>`, never connected): every template's labels then
//! always have a node, a `why` naming a standby node maps to its template, and a `why` naming
//! one of our agents means an item pinned to that agent, which no new agent can serve.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::domain::fleet::{FleetConfig, LabelTemplate, SpotPolicy};
use crate::domain::labels;
use crate::domain::queue_why::Why;

/// Prefix of the standby nodes' names; the rest is the template name.
pub const STANDBY_PREFIX: &str = "longshore-standby-";

/// The farm as observed at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub now_ms: i64,
    /// Every master that exists now (found through ECS, or the static list).
    pub masters: Vec<MasterSnapshot>,
    /// The stack's instances that are pending or running, including those this process
    /// launched that DescribeInstances does not list yet (EC2 is eventually consistent: a node
    /// whose fresh instance is missing here would be taken for an orphan). Instances another
    /// invocation launched that EC2 does not list yet are found through their nodes'
    /// [`Registration`]s.
    pub instances: Vec<Instance>,
}

/// One master: its name, and what it said if it could be read this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterSnapshot {
    pub name: String,
    /// `None` when the master could not be read or answered nonsense: then nothing of it is
    /// retired or cleaned up this tick.
    pub view: Option<MasterView>,
}

/// What a readable master reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterView {
    /// Buildable queue items.
    pub waiting: Vec<WaitingItem>,
    pub nodes: Vec<Node>,
}

/// A buildable queue item and what its `why` says it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingItem {
    pub id: u64,
    pub why: Why,
    /// Since when it has been buildable (epoch milliseconds), for the oldest-wait metric.
    pub waiting_since_ms: i64,
}

/// A node as the scaler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub executors: u32,
    pub busy: u32,
    /// Connected (Jenkins' `offline` is false).
    pub online: bool,
    /// Marked offline on purpose (by a retirement in progress or an operator).
    pub temporarily_offline: bool,
    /// Since when the node has had no busy executor, as tracked by the scaler.
    pub idle_since_ms: Option<i64>,
    /// What the scaler wrote into the node's description when it registered the agent
    /// ([`agent_description`]); `None` for nodes it did not make.
    pub registration: Option<Registration>,
}

/// The template and launch time of an agent, kept in its node's description so that any
/// invocation can tell a freshly launched agent from a node whose instance is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub template: String,
    pub launched_at_ms: i64,
}

/// An instance of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub master: Option<String>,
    /// The agent template it was launched for (the `longshore:label` tag).
    pub template: Option<String>,
    pub subnet_id: Option<String>,
    pub launched_at_ms: i64,
}

/// What to do this tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub launches: Vec<Launch>,
    pub retirements: Vec<Retirement>,
    /// Instances to terminate (and their nodes and secrets to remove), with the reason.
    pub orphan_instances: Vec<OrphanInstance>,
    /// Nodes to delete whose instance is gone.
    pub orphan_nodes: Vec<OrphanNode>,
    /// Standby nodes to create.
    pub standby_nodes: Vec<StandbyNode>,
    /// Young instances of ours whose master has no node for them: their launch took effect but
    /// its answer was lost, so no node or secret was made. Registering them now lets them boot
    /// instead of waiting out the boot timeout as orphans.
    pub unregistered: Vec<Unregistered>,
    /// Queue items the plan could not attribute to a template, for the logs.
    pub ignored: Vec<IgnoredItem>,
}

/// One agent to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub master: String,
    pub template: String,
    /// Where to try, in order: the next one is tried when AWS has no capacity. Launches
    /// that try the same places in the same order share one list.
    pub candidates: Arc<[Candidate]>,
    /// The RunInstances `ClientToken`: derived from the plan's inputs, so a retried tick
    /// sends the same token and EC2 starts no second instance.
    pub client_token: String,
    /// Why: the queue items it is for (empty for a warm-minimum launch).
    pub for_items: Vec<u64>,
}

/// An instance type, subnet and market to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub instance_type: String,
    pub subnet_id: String,
    pub spot: bool,
}

/// An idle agent to retire safely (offline, re-check, then delete and terminate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    pub master: String,
    pub node: String,
}

/// An instance to remove and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanInstance {
    pub instance_id: String,
    pub master: Option<String>,
    pub reason: OrphanReason,
}

/// Why an instance is an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanReason {
    /// No connected node after the boot timeout (never booted, or lost and not back).
    NotConnected,
    /// Its master no longer exists.
    MasterGone,
    /// It carries no master or template tag longshore understands.
    Untagged,
}

/// An instance to give its node and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unregistered {
    pub master: String,
    pub template: String,
    pub instance_id: String,
    pub launched_at_ms: i64,
}

/// A node to delete because its instance is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanNode {
    pub master: String,
    pub node: String,
}

/// A standby node to create on a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyNode {
    pub master: String,
    pub template: String,
}

/// A queue item no template was found for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredItem {
    pub master: String,
    pub item: u64,
    pub reason: String,
}

/// The standby node name of a template.
pub fn standby_node_name(template: &str) -> String {
    format!("{STANDBY_PREFIX}{template}")
}

/// Whether a node name is an EC2 instance ID (`i-` and 8 or 17 hex digits): longshore names
/// its agents' nodes after their instances, and never touches other nodes.
pub fn is_instance_id(name: &str) -> bool {
    name.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// How far in the future a node's recorded launch time may be (clocks of two invocations).
const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The description the scaler gives an agent's node: readable for an operator, and parsed
/// back by [`parse_agent_description`].
pub fn agent_description(registration: &Registration) -> String {
    format!(
        "{AGENT_DESCRIPTION_PREFIX}{}{LAUNCHED_AT}{}",
        registration.template, registration.launched_at_ms
    )
}

const AGENT_DESCRIPTION_PREFIX: &str = "longshore agent of template ";
const LAUNCHED_AT: &str = ", launched at epoch ms ";

/// The registration written by [`agent_description`]; `None` for any other text.
pub fn parse_agent_description(description: &str) -> Option<Registration> {
    let rest = description.strip_prefix(AGENT_DESCRIPTION_PREFIX)?;
    let (template, launched) = rest.rsplit_once(LAUNCHED_AT)?;
    Some(Registration {
        template: template.to_string(),
        launched_at_ms: launched.parse().ok()?,
    })
}

/// The snapshot's instances plus those that only their nodes tell of: a node registered by
/// some invocation less than the boot timeout ago whose instance EC2 does not list yet. They
/// count against the caps and as booting supply like any listed instance; past the boot
/// timeout such a node is an orphan.
fn with_unlisted_instances<'s>(
    snapshot: &'s Snapshot,
    config: &FleetConfig,
    node_maps: &HashMap<&str, BTreeMap<&str, &Node>>,
) -> Cow<'s, [Instance]> {
    let boot_timeout_ms = i64::from(config.boot_timeout_secs) * 1000;
    let listed: HashSet<&str> = snapshot.instances.iter().map(|i| i.id.as_str()).collect();
    let mut unlisted = Vec::new();
    for (master, nodes) in node_maps {
        for (name, node) in nodes {
            let Some(registration) = &node.registration else {
                continue;
            };
            // A launch time from the future (beyond clock skew) or an absurd one is not ours
            // to trust: the node is then treated like any node without its instance.
            let age_ms = snapshot.now_ms.saturating_sub(registration.launched_at_ms);
            if is_instance_id(name)
                && !listed.contains(name)
                && (-MAX_CLOCK_SKEW_MS..boot_timeout_ms).contains(&age_ms)
            {
                unlisted.push(Instance {
                    id: name.to_string(),
                    master: Some(master.to_string()),
                    template: Some(registration.template.clone()),
                    subnet_id: None,
                    launched_at_ms: registration.launched_at_ms,
                });
            }
        }
    }
    if unlisted.is_empty() {
        return Cow::Borrowed(&snapshot.instances);
    }
    // In ID order, like the listed ones, so that the plan does not depend on map order.
    let mut all = snapshot.instances.clone();
    all.extend(unlisted);
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Cow::Owned(all)
}

/// Computes the plan for one snapshot.
pub fn plan(snapshot: &Snapshot, config: &FleetConfig) -> Plan {
    let mut plan = Plan::default();
    // Every readable master's nodes by name, built once: the plan looks nodes up a lot.
    let node_maps: HashMap<&str, BTreeMap<&str, &Node>> = snapshot
        .masters
        .iter()
        .filter_map(|m| {
            let view = m.view.as_ref()?;
            Some((
                m.name.as_str(),
                view.nodes.iter().map(|n| (n.name.as_str(), n)).collect(),
            ))
        })
        .collect();
    let all_instances = with_unlisted_instances(snapshot, config, &node_maps);
    let mut total_instances = all_instances.len();
    reconcile_instances(snapshot, &all_instances, config, &node_maps, &mut plan);
    // Orphans are about to go: they do not count against the stack-wide cap.
    total_instances = total_instances.saturating_sub(plan.orphan_instances.len());
    let orphan_ids: HashSet<&str> = plan
        .orphan_instances
        .iter()
        .map(|o| o.instance_id.as_str())
        .collect();
    // Nodes of orphan instances go with their instance, so every instance counts here.
    let instance_ids: HashSet<&str> = all_instances.iter().map(|i| i.id.as_str()).collect();
    let mut by_master: HashMap<&str, Vec<&Instance>> = HashMap::new();
    for instance in all_instances
        .iter()
        .filter(|i| !orphan_ids.contains(i.id.as_str()))
    {
        if let Some(master) = instance.master.as_deref() {
            by_master.entry(master).or_default().push(instance);
        }
    }

    for master in &snapshot.masters {
        let Some(view) = &master.view else { continue };
        let Some(nodes) = node_maps.get(master.name.as_str()) else {
            continue;
        };
        let instances = by_master.remove(master.name.as_str()).unwrap_or_default();

        for template in &config.labels {
            let name = standby_node_name(&template.name);
            if !nodes.contains_key(name.as_str()) {
                plan.standby_nodes.push(StandbyNode {
                    master: master.name.clone(),
                    template: template.name.clone(),
                });
            }
        }
        for node in view.nodes.iter().filter(|n| is_instance_id(&n.name)) {
            if !instance_ids.contains(node.name.as_str()) && node.busy == 0 {
                plan.orphan_nodes.push(OrphanNode {
                    master: master.name.clone(),
                    node: node.name.clone(),
                });
            }
        }

        // Until the standby nodes exist Jenkins may name no label at all ("pointless to talk
        // about nodes" when a master has no agent): those texts are not taken at their word.
        let standby_complete = !plan.standby_nodes.iter().any(|s| s.master == master.name);
        let demand = demand_per_template(
            &master.name,
            view,
            nodes,
            config,
            standby_complete,
            &mut plan.ignored,
        );
        for template in &config.labels {
            let ours: Vec<&Instance> = instances
                .iter()
                .copied()
                .filter(|i| i.template.as_deref() == Some(template.name.as_str()))
                .collect();
            let items = demand
                .get(template.name.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let launches = launches_for(
                config,
                &master.name,
                template,
                &ours,
                nodes,
                items,
                total_instances,
            );
            total_instances += launches.len();
            plan.launches.extend(launches);
            plan.retirements.extend(retirements_for(
                snapshot.now_ms,
                &master.name,
                template,
                &ours,
                nodes,
                items.len(),
            ));
        }
    }
    plan
}

/// Instances that must go regardless of demand: their master is gone, they carry no usable
/// tags, or their node has not connected within the boot timeout.
fn reconcile_instances(
    snapshot: &Snapshot,
    instances: &[Instance],
    config: &FleetConfig,
    node_maps: &HashMap<&str, BTreeMap<&str, &Node>>,
    plan: &mut Plan,
) {
    let known: HashSet<&str> = snapshot.masters.iter().map(|m| m.name.as_str()).collect();
    let boot_timeout_ms = i64::from(config.boot_timeout_secs) * 1000;
    for instance in instances {
        let reason = match (&instance.master, &instance.template) {
            (Some(master), Some(template)) => {
                if !known.contains(master.as_str()) {
                    Some(OrphanReason::MasterGone)
                } else if !config.labels.iter().any(|t| &t.name == template) {
                    Some(OrphanReason::Untagged)
                } else {
                    let nodes = node_maps.get(master.as_str());
                    if nodes.is_some_and(|n| !n.contains_key(instance.id.as_str()))
                        && snapshot.now_ms - instance.launched_at_ms < boot_timeout_ms
                    {
                        plan.unregistered.push(Unregistered {
                            master: master.clone(),
                            template: template.clone(),
                            instance_id: instance.id.clone(),
                            launched_at_ms: instance.launched_at_ms,
                        });
                    }
                    not_connected(snapshot.now_ms, nodes, instance, boot_timeout_ms)
                }
            }
            _ if snapshot.now_ms - instance.launched_at_ms >= boot_timeout_ms => {
                Some(OrphanReason::Untagged)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            plan.orphan_instances.push(OrphanInstance {
                instance_id: instance.id.clone(),
                master: instance.master.clone(),
                reason,
            });
        }
    }
}

/// An instance past its boot timeout whose node is not connected, on a master that could be
/// read (an unreadable master's agents are left alone).
fn not_connected(
    now_ms: i64,
    nodes: Option<&BTreeMap<&str, &Node>>,
    instance: &Instance,
    timeout_ms: i64,
) -> Option<OrphanReason> {
    let nodes = nodes?; // an unreadable master: its agents are left alone
    if now_ms - instance.launched_at_ms < timeout_ms {
        return None;
    }
    match nodes.get(instance.id.as_str()) {
        Some(node) if node.online || node.busy > 0 => None,
        _ => Some(OrphanReason::NotConnected),
    }
}

/// Waiting items per template name; items no template can serve are recorded as ignored.
fn demand_per_template<'c>(
    master: &str,
    view: &MasterView,
    nodes: &BTreeMap<&str, &Node>,
    config: &'c FleetConfig,
    standby_complete: bool,
    ignored: &mut Vec<IgnoredItem>,
) -> BTreeMap<&'c str, Vec<u64>> {
    let mut demand: BTreeMap<&'c str, Vec<u64>> = BTreeMap::new();
    // Thousands of items share a few texts: attribute each text once.
    let mut attributed: HashMap<&Why, Result<Option<&str>, String>> = HashMap::new();
    for item in &view.waiting {
        if item.why == Why::AnyExecutor && !standby_complete {
            ignored.push(IgnoredItem {
                master: master.to_string(),
                item: item.id,
                reason: "no label shown while the master has no agent node yet".to_string(),
            });
            continue;
        }
        let attribution = attributed
            .entry(&item.why)
            .or_insert_with(|| template_for(&item.why, nodes, config));
        match attribution.clone() {
            Ok(Some(template)) => demand.entry(template).or_default().push(item.id),
            Ok(None) => {}
            Err(reason) => ignored.push(IgnoredItem {
                master: master.to_string(),
                item: item.id,
                reason,
            }),
        }
    }
    demand
}

/// The template whose agents would serve an item, if any (for metrics and logs).
pub fn template_of<'c>(
    why: &Why,
    nodes: &BTreeMap<&str, &Node>,
    config: &'c FleetConfig,
) -> Option<&'c str> {
    template_for(why, nodes, config).ok().flatten()
}

/// The template that serves an item: `Ok(None)` when no new agent would help (a blocked build,
/// an item pinned to one agent), `Err` when the text cannot be attributed (logged, not counted).
fn template_for<'c>(
    why: &Why,
    nodes: &BTreeMap<&str, &Node>,
    config: &'c FleetConfig,
) -> Result<Option<&'c str>, String> {
    let text = match why {
        Why::NotForAgents => return Ok(None),
        Why::Unknown => return Err("unknown queue text".to_string()),
        // Unlabelled work goes to the first template (agents take any work: mode NORMAL).
        Why::AnyExecutor => return Ok(config.labels.first().map(|t| t.name.as_str())),
        Why::Label(text) => text,
    };
    if let Some(template) = text.strip_prefix(STANDBY_PREFIX) {
        return match config.labels.iter().find(|t| t.name == template) {
            Some(t) => Ok(Some(t.name.as_str())),
            None => Err(format!("standby node of an unknown template {template:?}")),
        };
    }
    if nodes.contains_key(text.as_str()) && is_instance_id(text) {
        return Ok(None); // pinned to one agent: another agent would not take it
    }
    let expression =
        labels::parse(text).map_err(|err| format!("label expression {text:?}: {err}"))?;
    config
        .labels
        .iter()
        .find(|t| expression.matches_with(&|label| t.node_labels.iter().any(|l| l == label)))
        .map(|t| Some(t.name.as_str()))
        .ok_or_else(|| format!("no agent template provides \u{2018}{text}\u{2019}"))
}

/// Launches for one template on one master: demand not covered by idle or booting executors,
/// topped up to the warm minimum, within the per-master and stack-wide caps.
#[allow(clippy::too_many_arguments)] // reason: the inputs of one decision, all read-only
fn launches_for(
    config: &FleetConfig,
    master: &str,
    template: &LabelTemplate,
    ours: &[&Instance],
    nodes: &BTreeMap<&str, &Node>,
    items: &[u64],
    total_instances: usize,
) -> Vec<Launch> {
    let executors = template.executors.max(1) as usize;
    let supply: usize = ours
        .iter()
        .map(|instance| match nodes.get(instance.id.as_str()) {
            Some(node) if node.online && !node.temporarily_offline => {
                node.executors.saturating_sub(node.busy) as usize
            }
            Some(node) if node.online => 0, // being retired or held offline by an operator
            _ => executors,                 // still booting: its executors are on the way
        })
        .sum();
    let for_demand = items.len().saturating_sub(supply).div_ceil(executors);
    let for_warm = (template.warm_minimum as usize).saturating_sub(ours.len());
    let wanted = for_demand.max(for_warm);
    let room_master = (template.max_per_master as usize).saturating_sub(ours.len());
    let room_stack = (config.max_agents as usize).saturating_sub(total_instances);
    let count = wanted.min(room_master).min(room_stack);

    // The items not covered by current supply, in queue order, split among the new agents.
    let uncovered = &items[items.len().min(supply)..];
    let token_base = token_hasher(&config.stack, master, &template.name, ours);
    // Agents per subnet, counting this tick's launches as they are planned, so new agents
    // spread over the zones too.
    let mut load: HashMap<&str, usize> = HashMap::new();
    for subnet in ours.iter().filter_map(|i| i.subnet_id.as_deref()) {
        *load.entry(subnet).or_default() += 1;
    }
    // A tick may plan thousands of launches over a handful of subnet orders: build each
    // order's candidate list once.
    let mut lists: HashMap<Vec<usize>, Arc<[Candidate]>> = HashMap::new();
    (0..count)
        .map(|n| {
            let for_items: Vec<u64> = uncovered
                .iter()
                .skip(n * executors)
                .take(executors)
                .copied()
                .collect();
            let order = subnet_order(template, &load, n);
            let candidates = lists
                .entry(order)
                .or_insert_with_key(|order| candidates(template, order))
                .clone();
            if let Some(first) = template
                .placements
                .iter()
                .flat_map(|p| &p.subnets)
                .find(|s| candidates.first().is_some_and(|c| c.subnet_id == s.id))
            {
                *load.entry(first.id.as_str()).or_default() += 1;
            }
            Launch {
                master: master.to_string(),
                template: template.name.clone(),
                candidates,
                client_token: client_token(token_base.clone(), &for_items, n),
                for_items,
            }
        })
        .collect()
}

/// Idle agents beyond the warm minimum, idle longer than the template's idle time, while no
/// item waits for the template. Only idle, connected, not temporarily offline nodes qualify.
fn retirements_for(
    now_ms: i64,
    master: &str,
    template: &LabelTemplate,
    ours: &[&Instance],
    nodes: &BTreeMap<&str, &Node>,
    waiting: usize,
) -> Vec<Retirement> {
    if waiting > 0 {
        return Vec::new();
    }
    let idle_ms = i64::from(template.idle_secs) * 1000;
    let mut candidates: Vec<(&Node, i64)> = ours
        .iter()
        .filter_map(|instance| nodes.get(instance.id.as_str()).copied())
        .filter(|node| node.online && !node.temporarily_offline && node.busy == 0)
        .filter_map(|node| node.idle_since_ms.map(|since| (node, since)))
        .filter(|(_, since)| now_ms - since >= idle_ms)
        .collect();
    // The longest idle go first; ties broken by name for determinism.
    candidates.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.name.cmp(&b.0.name)));
    let spare = ours.len().saturating_sub(template.warm_minimum as usize);
    candidates
        .into_iter()
        .take(spare)
        .map(|(node, _)| Retirement {
            master: master.to_string(),
            node: node.name.clone(),
        })
        .collect()
}

/// The order to try each placement's subnets in, as indexes into them, placement after
/// placement: the least loaded subnet first, ties broken by rotating with the launch's place
/// in the tick (so a burst spreads over the zones even from an empty start).
fn subnet_order(
    template: &LabelTemplate,
    load: &HashMap<&str, usize>,
    offset: usize,
) -> Vec<usize> {
    let per_subnet = |subnet: &str| load.get(subnet).copied().unwrap_or(0);
    let mut order = Vec::with_capacity(template.placements.iter().map(|p| p.subnets.len()).sum());
    for placement in &template.placements {
        let count = placement.subnets.len();
        let start = order.len();
        order.extend(0..count);
        order[start..].sort_unstable_by_key(|&index| {
            (
                per_subnet(&placement.subnets[index].id),
                (index + count - offset % count) % count,
            )
        });
    }
    order
}

/// The candidates for one subnet order: every placement's subnets in that order, on spot
/// first, on demand only, or spot only, as the template's spot policy says.
fn candidates(template: &LabelTemplate, order: &[usize]) -> Arc<[Candidate]> {
    let mut indexes = order.iter();
    let mut on_demand = Vec::with_capacity(order.len());
    for placement in &template.placements {
        for &index in indexes.by_ref().take(placement.subnets.len()) {
            on_demand.push(Candidate {
                instance_type: placement.instance_type.clone(),
                subnet_id: placement.subnets[index].id.clone(),
                spot: false,
            });
        }
    }
    let spot = || {
        on_demand.iter().map(|c| Candidate {
            spot: true,
            ..c.clone()
        })
    };
    match template.spot {
        SpotPolicy::Never => on_demand.into(),
        SpotPolicy::Only => spot().collect(),
        SpotPolicy::Prefer => spot().chain(on_demand.iter().cloned()).collect(),
    }
}

/// The idempotency token of a launch, from everything that made the plan want it: the
/// template's current instances, the items it is for and its place in this tick's launches.
/// A re-planned tick that has not yet seen its own launch (EC2's eventual consistency, or a
/// tick cut off mid-act) computes the same token, and EC2 starts nothing new; once the
/// instance set changes, so does the token. At most 64 ASCII characters, as EC2 requires.
fn token_hasher(stack: &str, master: &str, template: &str, ours: &[&Instance]) -> Sha256 {
    let mut hash = Sha256::new();
    for part in [stack, master, template] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let mut instance_ids: Vec<&str> = ours.iter().map(|i| i.id.as_str()).collect();
    instance_ids.sort_unstable();
    for id in instance_ids {
        hash.update(id.as_bytes());
        hash.update([0]);
    }
    hash
}

/// Completes [`token_hasher`]'s hash with what one launch is for.
fn client_token(mut hash: Sha256, items: &[u64], sequence: usize) -> String {
    for item in items {
        hash.update(item.to_be_bytes());
    }
    hash.update((sequence as u64).to_be_bytes());
    let digest = hash.finalize();
    let mut hex = [0u8; 40];
    // 20 bytes always fit 40 hex digits: the buffer is sized for exactly that.
    hex::encode_to_slice(&digest[..20], &mut hex).expect("40 hex digits for 20 bytes");
    let mut token = String::with_capacity(43);
    token.push_str("ls-");
    token.extend(hex.iter().map(|&b| b as char));
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fleet::{FLEET_CONFIG_SCHEMA, LaunchTemplate, Placement, Subnet};
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000_000;

    fn template(name: &str, labels: &[&str], executors: u32, max: u32, warm: u32) -> LabelTemplate {
        LabelTemplate {
            name: name.to_string(),
            node_labels: labels.iter().map(|l| l.to_string()).collect(),
            executors,
            placements: vec![
                Placement {
                    instance_type: "c6i.large".to_string(),
                    subnets: vec![
                        subnet("subnet-a", "us-east-1a"),
                        subnet("subnet-b", "us-east-1b"),
                    ],
                },
                Placement {
                    instance_type: "m6i.large".to_string(),
                    subnets: vec![subnet("subnet-a", "us-east-1a")],
                },
            ],
            max_per_master: max,
            warm_minimum: warm,
            idle_secs: 60,
            spot: SpotPolicy::Never,
        }
    }

    fn subnet(id: &str, az: &str) -> Subnet {
        Subnet {
            id: id.to_string(),
            availability_zone: az.to_string(),
        }
    }

    fn config() -> FleetConfig {
        FleetConfig {
            schema: FLEET_CONFIG_SCHEMA,
            stack: "ci".to_string(),
            launch_template: LaunchTemplate {
                id: "lt-1".to_string(),
                version: "1".to_string(),
            },
            max_agents: 10,
            boot_timeout_secs: 300,
            masters: vec!["a".to_string(), "b".to_string()],
            labels: vec![
                template("docker", &["docker", "linux"], 2, 4, 0),
                template("large", &["docker-large", "linux"], 1, 2, 0),
            ],
        }
    }

    fn standbys() -> Vec<Node> {
        ["docker", "large"]
            .iter()
            .map(|t| node(&standby_node_name(t), 1, 0, false))
            .collect()
    }

    fn node(name: &str, executors: u32, busy: u32, online: bool) -> Node {
        Node {
            name: name.to_string(),
            executors,
            busy,
            online,
            temporarily_offline: false,
            idle_since_ms: (busy == 0 && online).then_some(NOW - 120_000),
            registration: None,
        }
    }

    fn instance(id: &str, master: &str, template: &str, age_ms: i64) -> Instance {
        Instance {
            id: id.to_string(),
            master: Some(master.to_string()),
            template: Some(template.to_string()),
            subnet_id: Some("subnet-a".to_string()),
            launched_at_ms: NOW - age_ms,
        }
    }

    fn waiting(ids: std::ops::Range<u64>, label: &str) -> Vec<WaitingItem> {
        ids.map(|id| WaitingItem {
            id,
            why: Why::Label(label.to_string()),
            waiting_since_ms: NOW,
        })
        .collect()
    }

    fn snapshot(view: MasterView, instances: Vec<Instance>) -> Snapshot {
        Snapshot {
            now_ms: NOW,
            masters: vec![MasterSnapshot {
                name: "a".to_string(),
                view: Some(view),
            }],
            instances,
        }
    }

    #[test]
    fn waiting_items_launch_agents_by_executor_count() {
        let view = MasterView {
            waiting: waiting(1..6, "docker"),
            nodes: standbys(),
        };
        let plan = plan(&snapshot(view, vec![]), &config());
        assert_eq!(plan.launches.len(), 3, "5 items / 2 executors");
        assert!(
            plan.launches
                .iter()
                .all(|l| l.template == "docker" && l.master == "a")
        );
        assert_eq!(plan.launches[0].for_items, vec![1, 2]);
        assert_eq!(plan.launches[2].for_items, vec![5]);
        assert!(plan.retirements.is_empty() && plan.orphan_instances.is_empty());
    }

    #[test]
    fn booting_and_idle_executors_are_supply() {
        let mut nodes = standbys();
        nodes.push(node("i-00000001", 2, 1, true)); // one idle executor
        let view = MasterView {
            waiting: waiting(1..5, "docker"),
            nodes,
        };
        let instances = vec![
            instance("i-00000001", "a", "docker", 60_000),
            instance("i-00000002", "a", "docker", 5_000),
        ];
        // 4 waiting - 1 idle - 2 booting = 1 uncovered → 1 launch.
        let plan = plan(&snapshot(view, instances), &config());
        assert_eq!(plan.launches.len(), 1);
        assert_eq!(plan.launches[0].for_items, vec![4]);
    }

    #[test]
    fn expressions_standby_names_and_unlabelled_items_map_to_templates() {
        let mut items = waiting(1..2, "docker&&linux");
        items.push(WaitingItem {
            id: 2,
            why: Why::Label(standby_node_name("large")),
            waiting_since_ms: NOW,
        });
        items.push(WaitingItem {
            id: 3,
            why: Why::AnyExecutor,
            waiting_since_ms: NOW,
        });
        items.push(WaitingItem {
            id: 4,
            why: Why::Label("windows".to_string()),
            waiting_since_ms: NOW,
        });
        items.push(WaitingItem {
            id: 5,
            why: Why::Unknown,
            waiting_since_ms: NOW,
        });
        items.push(WaitingItem {
            id: 6,
            why: Why::NotForAgents,
            waiting_since_ms: NOW,
        });
        let view = MasterView {
            waiting: items,
            nodes: standbys(),
        };
        let plan = plan(&snapshot(view, vec![]), &config());
        let docker: Vec<&Launch> = plan
            .launches
            .iter()
            .filter(|l| l.template == "docker")
            .collect();
        let large: Vec<&Launch> = plan
            .launches
            .iter()
            .filter(|l| l.template == "large")
            .collect();
        assert_eq!(docker.len(), 1, "items 1 and 3 share one 2-executor agent");
        assert_eq!(docker[0].for_items, vec![1, 3]);
        assert_eq!(large.len(), 1);
        let ignored: Vec<u64> = plan.ignored.iter().map(|i| i.item).collect();
        assert_eq!(ignored, vec![4, 5]);
        assert!(
            plan.ignored[0]
                .reason
                .contains("no agent template provides")
        );
    }

    #[test]
    fn item_pinned_to_one_agent_launches_nothing() {
        let mut nodes = standbys();
        nodes.push(node("i-00000001", 2, 2, true));
        let view = MasterView {
            waiting: waiting(1..3, "i-00000001"),
            nodes,
        };
        let plan = plan(
            &snapshot(view, vec![instance("i-00000001", "a", "docker", 60_000)]),
            &config(),
        );
        assert!(plan.launches.is_empty());
        assert!(plan.ignored.is_empty());
    }

    #[test]
    fn per_master_and_stack_caps_hold() {
        let view = MasterView {
            waiting: waiting(1..100, "docker"),
            nodes: standbys(),
        };
        let plan_a = plan(&snapshot(view.clone(), vec![]), &config());
        assert_eq!(plan_a.launches.len(), 4, "max_per_master");
        let mut cfg = config();
        cfg.max_agents = 3;
        let existing = vec![instance("i-00000009", "a", "large", 1_000)];
        assert_eq!(
            plan(&snapshot(view, existing), &cfg).launches.len(),
            2,
            "stack cap counts every instance"
        );
    }

    #[test]
    fn warm_minimum_is_kept_and_not_retired() {
        let mut cfg = config();
        cfg.labels[0].warm_minimum = 1;
        let view = MasterView {
            waiting: vec![],
            nodes: standbys(),
        };
        let plan_empty = plan(&snapshot(view, vec![]), &cfg);
        assert_eq!(plan_empty.launches.len(), 1);
        assert!(plan_empty.launches[0].for_items.is_empty());

        let mut nodes = standbys();
        nodes.push(node("i-00000001", 2, 0, true));
        let view = MasterView {
            waiting: vec![],
            nodes,
        };
        let plan_one = plan(
            &snapshot(view, vec![instance("i-00000001", "a", "docker", 600_000)]),
            &cfg,
        );
        assert!(plan_one.retirements.is_empty() && plan_one.launches.is_empty());
    }

    #[test]
    fn idle_agents_retire_after_idle_time_only_when_nothing_waits() {
        let mut nodes = standbys();
        nodes.push(node("i-00000001", 2, 0, true));
        let mut fresh = node("i-00000002", 2, 0, true);
        fresh.idle_since_ms = Some(NOW - 10_000);
        nodes.push(fresh);
        nodes.push(node("i-00000003", 2, 1, true));
        let instances = vec![
            instance("i-00000001", "a", "docker", 600_000),
            instance("i-00000002", "a", "docker", 600_000),
            instance("i-00000003", "a", "docker", 600_000),
        ];
        let view = MasterView {
            waiting: vec![],
            nodes: nodes.clone(),
        };
        let plan_idle = plan(&snapshot(view, instances.clone()), &config());
        assert_eq!(
            plan_idle.retirements,
            vec![Retirement {
                master: "a".to_string(),
                node: "i-00000001".to_string()
            }]
        );

        let view = MasterView {
            waiting: waiting(1..2, "docker"),
            nodes,
        };
        assert!(
            plan(&snapshot(view, instances), &config())
                .retirements
                .is_empty()
        );
    }

    #[test]
    fn orphans_of_each_kind() {
        let mut nodes = standbys();
        nodes.push(node("i-0000000a", 2, 0, false)); // never connected, past boot timeout
        nodes.push(node("i-0000000b", 2, 0, true)); // instance gone
        nodes.push(node("i-0000000c", 2, 1, true)); // instance gone but busy: left alone
        let instances = vec![
            instance("i-0000000a", "a", "docker", 400_000),
            instance("i-0000000d", "a", "docker", 10_000), // booting, within timeout
            instance("i-0000000e", "gone-master", "docker", 10_000),
        ];
        let plan = plan(
            &snapshot(
                MasterView {
                    waiting: vec![],
                    nodes,
                },
                instances,
            ),
            &config(),
        );
        let orphans: Vec<(&str, OrphanReason)> = plan
            .orphan_instances
            .iter()
            .map(|o| (o.instance_id.as_str(), o.reason))
            .collect();
        assert_eq!(
            orphans,
            vec![
                ("i-0000000a", OrphanReason::NotConnected),
                ("i-0000000e", OrphanReason::MasterGone)
            ]
        );
        assert_eq!(
            plan.orphan_nodes,
            vec![OrphanNode {
                master: "a".to_string(),
                node: "i-0000000b".to_string()
            }]
        );
        // The booting instance has no node yet: it is registered, not taken for an orphan.
        let unregistered: Vec<&str> = plan
            .unregistered
            .iter()
            .map(|u| u.instance_id.as_str())
            .collect();
        assert_eq!(unregistered, vec!["i-0000000d"]);
    }

    fn registered(name: &str, template: &str, age_ms: i64, online: bool) -> Node {
        Node {
            registration: Some(Registration {
                template: template.to_string(),
                launched_at_ms: NOW - age_ms,
            }),
            ..node(name, 1, 0, online)
        }
    }

    #[test]
    fn young_agents_ec2_does_not_list_yet_count_against_the_cap() {
        // Another invocation launched both "large" agents (cap 2) seconds ago; EC2 lists
        // neither yet. Their nodes say so: nothing is launched and no node is removed.
        let mut nodes = standbys();
        nodes.push(registered("i-0000000a", "large", 5_000, true));
        nodes.push(registered("i-0000000b", "large", 2_000, false));
        let mut waiting_items = waiting(1..3, "docker-large");
        waiting_items.extend(waiting(3..4, "docker-large&&linux"));
        let view = MasterView {
            waiting: waiting_items,
            nodes: nodes.clone(),
        };
        let young = plan(&snapshot(view.clone(), vec![]), &config());
        assert!(young.launches.is_empty(), "{:?}", young.launches);
        assert!(young.orphan_nodes.is_empty() && young.unregistered.is_empty());
        // Past the boot timeout an unlisted node is an orphan after all, and the cap is free.
        let mut old_view = view;
        for node in &mut old_view.nodes {
            if let Some(r) = &mut node.registration {
                r.launched_at_ms -= 300_000;
            }
        }
        let old = plan(&snapshot(old_view, vec![]), &config());
        let orphans: Vec<&str> = old.orphan_nodes.iter().map(|o| o.node.as_str()).collect();
        assert_eq!(orphans, vec!["i-0000000a", "i-0000000b"]);
        assert_eq!(old.launches.len(), 2);
    }

    #[test]
    fn absurd_launch_times_are_not_trusted() {
        for launched_at_ms in [i64::MIN, i64::MAX, NOW + 3_600_000] {
            let mut nodes = standbys();
            nodes.push(Node {
                registration: Some(Registration {
                    template: "large".to_string(),
                    launched_at_ms,
                }),
                ..node("i-0000000a", 1, 0, false)
            });
            let view = MasterView {
                waiting: waiting(1..2, "docker-large"),
                nodes,
            };
            let plan = plan(&snapshot(view, vec![]), &config());
            assert_eq!(plan.orphan_nodes.len(), 1, "{launched_at_ms}");
            assert_eq!(plan.launches.len(), 1, "{launched_at_ms}");
        }
    }

    #[test]
    fn agent_descriptions_round_trip_and_other_texts_are_not_registrations() {
        let registration = Registration {
            template: "docker, large".to_string(),
            launched_at_ms: 1_764_294_861_000,
        };
        let text = agent_description(&registration);
        assert_eq!(parse_agent_description(&text), Some(registration));
        for other in [
            "",
            "longshore agent",
            "longshore agent of template x, launched at epoch ms soon",
            "a hand-made node",
        ] {
            assert_eq!(parse_agent_description(other), None, "{other}");
        }
    }

    #[test]
    fn a_launch_whose_answer_was_lost_is_registered_not_launched_again() {
        let view = MasterView {
            waiting: waiting(1..2, "docker"),
            nodes: standbys(),
        };
        let young = instance("i-0000000f", "a", "docker", 5_000);
        let fresh = plan(&snapshot(view.clone(), vec![young]), &config());
        assert!(fresh.launches.is_empty(), "its executors are on the way");
        assert_eq!(
            fresh.unregistered,
            vec![Unregistered {
                master: "a".to_string(),
                template: "docker".to_string(),
                instance_id: "i-0000000f".to_string(),
                launched_at_ms: NOW - 5_000,
            }]
        );
        // Past the boot timeout it is an orphan instead, and an unreadable master's
        // instances are left alone.
        let old = instance("i-0000000f", "a", "docker", 400_000);
        let plan_old = plan(&snapshot(view, vec![old.clone()]), &config());
        assert!(plan_old.unregistered.is_empty());
        assert_eq!(plan_old.orphan_instances.len(), 1);
        let unreadable = Snapshot {
            now_ms: NOW,
            masters: vec![MasterSnapshot {
                name: "a".to_string(),
                view: None,
            }],
            instances: vec![instance("i-0000000f", "a", "docker", 5_000)],
        };
        assert!(plan(&unreadable, &config()).unregistered.is_empty());
    }

    #[test]
    fn unreadable_master_gets_nothing_but_keeps_its_agents() {
        let snap = Snapshot {
            now_ms: NOW,
            masters: vec![MasterSnapshot {
                name: "a".to_string(),
                view: None,
            }],
            instances: vec![instance("i-0000000a", "a", "docker", 900_000)],
        };
        let plan = plan(&snap, &config());
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn malformed_label_expressions_are_ignored_with_the_parse_error() {
        let view = MasterView {
            waiting: waiting(1..3, "docker&&"),
            nodes: standbys(),
        };
        let plan = plan(&snapshot(view, vec![]), &config());
        assert!(plan.launches.is_empty(), "no action on a guess");
        assert_eq!(plan.ignored.len(), 2);
        assert!(
            plan.ignored[0]
                .reason
                .starts_with("label expression \"docker&&\""),
            "{}",
            plan.ignored[0].reason
        );
    }

    #[test]
    fn unlabelled_texts_wait_for_the_standby_nodes() {
        let view = MasterView {
            waiting: vec![WaitingItem {
                id: 1,
                why: Why::AnyExecutor,
                waiting_since_ms: NOW,
            }],
            nodes: vec![],
        };
        let plan = plan(&snapshot(view, vec![]), &config());
        assert!(plan.launches.is_empty());
        assert_eq!(plan.ignored.len(), 1);
    }

    #[test]
    fn missing_standby_nodes_are_created() {
        let plan = plan(&snapshot(MasterView::default(), vec![]), &config());
        assert_eq!(plan.standby_nodes.len(), 2);
    }

    #[test]
    fn candidates_spread_and_fall_back() {
        let mut cfg = config();
        cfg.labels[0].spot = SpotPolicy::Prefer;
        let view = MasterView {
            waiting: waiting(1..5, "docker"),
            nodes: standbys(),
        };
        let existing = vec![instance("i-00000001", "a", "docker", 1_000)]; // booting in subnet-a
        let plan = plan(&snapshot(view, existing), &cfg);
        let first = &plan.launches[0].candidates;
        assert_eq!(first.len(), 6, "3 type/subnet pairs, spot then on-demand");
        assert!(first[..3].iter().all(|c| c.spot) && first[3..].iter().all(|c| !c.spot));
        assert_eq!(first[0].subnet_id, "subnet-b", "the emptier zone first");
        assert_eq!(first[2].instance_type, "m6i.large");
    }

    #[test]
    fn tokens_are_stable_for_the_same_situation_and_change_with_it() {
        let view = MasterView {
            waiting: waiting(1..3, "docker"),
            nodes: standbys(),
        };
        let one = plan(&snapshot(view.clone(), vec![]), &config());
        let again = plan(&snapshot(view.clone(), vec![]), &config());
        assert_eq!(one.launches[0].client_token, again.launches[0].client_token);
        assert!(one.launches[0].client_token.len() <= 64);
        let other = MasterView {
            waiting: waiting(3..5, "docker"),
            ..view
        };
        assert_ne!(
            plan(&snapshot(other, vec![]), &config()).launches[0].client_token,
            one.launches[0].client_token
        );
    }

    #[test]
    fn instance_ids_are_recognised() {
        assert!(is_instance_id("i-0123abcd"));
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(!is_instance_id("i-0123ABCD"));
        assert!(!is_instance_id("longshore-standby-docker"));
        assert!(!is_instance_id("i-123"));
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        let node = (
            0u32..8,
            1u32..4,
            0u32..4,
            any::<bool>(),
            any::<bool>(),
            0i64..400_000,
        );
        let master = (
            prop::collection::vec(node, 0..8),
            prop::collection::vec((0u8..4, 0u64..50), 0..30),
            any::<bool>(),
        );
        prop::collection::vec(master, 1..3).prop_map(|masters| {
            let mut instances = Vec::new();
            let mut snapshots = Vec::new();
            for (m, (nodes, items, readable)) in masters.into_iter().enumerate() {
                let name = ["a", "b"][m].to_string();
                let mut view = MasterView {
                    waiting: Vec::new(),
                    nodes: standbys(),
                };
                for (n, executors, busy, online, temp, age) in nodes {
                    let id = format!("i-{m}{n:07}");
                    if view.nodes.iter().any(|x| x.name == id) {
                        continue;
                    }
                    let busy = busy.min(executors) * u32::from(online);
                    view.nodes.push(Node {
                        name: id.clone(),
                        executors,
                        busy,
                        online,
                        temporarily_offline: temp && online,
                        idle_since_ms: (busy == 0).then_some(NOW - age),
                        registration: None,
                    });
                    let template = if n % 2 == 0 { "docker" } else { "large" };
                    instances.push(instance(&id, &name, template, age));
                }
                for (label, id) in items {
                    let why = match label {
                        0 => Why::Label("docker".to_string()),
                        1 => Why::Label("docker-large&&linux".to_string()),
                        2 => Why::AnyExecutor,
                        _ => Why::Unknown,
                    };
                    view.waiting.push(WaitingItem {
                        id,
                        why,
                        waiting_since_ms: NOW,
                    });
                }
                snapshots.push(MasterSnapshot {
                    name,
                    view: readable.then_some(view),
                });
            }
            Snapshot {
                now_ms: NOW,
                masters: snapshots,
                instances,
            }
        })
    }

    proptest! {
        #[test]
        fn caps_are_never_exceeded(snap in arb_snapshot(), max_agents in 1u32..12) {
            let mut cfg = config();
            cfg.max_agents = max_agents;
            let plan = plan(&snap, &cfg);
            let kept = snap.instances.len() - plan.orphan_instances.len();
            prop_assert!(plan.launches.is_empty() || kept + plan.launches.len() <= max_agents as usize);
            for t in &cfg.labels {
                for m in &snap.masters {
                    let ours = snap.instances.iter().filter(|i| i.master.as_deref() == Some(&m.name) && i.template.as_deref() == Some(&t.name) && !plan.orphan_instances.iter().any(|o| o.instance_id == i.id)).count();
                    let new = plan.launches.iter().filter(|l| l.master == m.name && l.template == t.name).count();
                    prop_assert!(new == 0 || ours + new <= t.max_per_master as usize);
                }
            }
        }

        #[test]
        fn busy_or_offline_agents_are_never_retired(snap in arb_snapshot()) {
            let plan = plan(&snap, &config());
            for retirement in &plan.retirements {
                let master = snap.masters.iter().find(|m| m.name == retirement.master).unwrap();
                let view = master.view.as_ref().expect("retirements only for readable masters");
                let node = view.nodes.iter().find(|n| n.name == retirement.node).unwrap();
                prop_assert_eq!(node.busy, 0);
                prop_assert!(node.online && !node.temporarily_offline);
            }
            for orphan in &plan.orphan_nodes {
                let view = snap.masters.iter().find(|m| m.name == orphan.master).unwrap().view.as_ref().unwrap();
                prop_assert_eq!(view.nodes.iter().find(|n| n.name == orphan.node).unwrap().busy, 0);
            }
        }

        #[test]
        fn unreadable_masters_lose_nothing(snap in arb_snapshot()) {
            let plan = plan(&snap, &config());
            for m in snap.masters.iter().filter(|m| m.view.is_none()) {
                prop_assert!(plan.retirements.iter().all(|r| r.master != m.name));
                prop_assert!(plan.orphan_nodes.iter().all(|r| r.master != m.name));
                prop_assert!(plan.orphan_instances.iter().all(|o| o.master.as_deref() != Some(&m.name)));
                prop_assert!(plan.launches.iter().all(|l| l.master != m.name));
            }
        }

        #[test]
        fn the_same_snapshot_gives_the_same_plan(snap in arb_snapshot()) {
            prop_assert_eq!(plan(&snap, &config()), plan(&snap, &config()));
        }

        #[test]
        fn client_tokens_are_unique_within_a_plan(snap in arb_snapshot()) {
            let plan = plan(&snap, &config());
            let tokens: std::collections::BTreeSet<&str> = plan.launches.iter().map(|l| l.client_token.as_str()).collect();
            prop_assert_eq!(tokens.len(), plan.launches.len());
        }
    }
}
