//! The `Custom::JenkinsConfig` custom resource, pure: its properties (parsed and checked with
//! the failing property named, e.g. `Labels[1].InstanceTypes`), the facts AWS reported about
//! them turned into a [`Resolved`] configuration, the physical-id rules, and the response
//! CloudFormation reads (cut to fit its 4096-byte limit).
//!
//! Physical-id rules. The resource's identity is its stack, its logical id and its set of
//! masters: the id is `longshore.<stack>.<logical-id>.<hash of the master set>`. An Update that
//! keeps them answers the same id (a normal update); one that changes the master set answers a
//! new id, and CloudFormation then sends a Delete for the old one. Every SSM parameter lives
//! under a path derived from the id alone ([`ParameterPaths`]), so the old id's Delete cannot
//! touch the new id's parameters. A Create whose properties cannot be read answers a
//! `…​.failed-<hash of the request id>` id, whose path never holds anything, so the Delete
//! CloudFormation sends on rollback succeeds and removes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::fleet::{LabelTemplate, LaunchTemplate, Placement, SpotPolicy, Subnet};

/// Minutes an agent may stay idle before it is retired, when a label does not say. Chosen with
/// the policy simulator (`longshore-farm simulate`, README "Benchmarks"): at 2 minutes
/// agent-hours stay within 1.02–1.27 × the oracle on the standard traces with the wait p95
/// unchanged (boot + one tick); at 10 minutes they are 1.09–2.03 ×. Teams whose builds gain
/// much from a warm Docker layer cache may want more.
pub const DEFAULT_IDLE_MINUTES: u32 = 2;

/// The resource type the template declares. Requests are judged by their properties, not
/// their type, so a sample request of another type fails naming the first missing property.
pub const RESOURCE_TYPE: &str = "Custom::JenkinsConfig";

/// CloudFormation refuses a response body larger than this (custom resource response objects,
/// AWS CloudFormation User Guide).
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// A property that cannot be used: `path` names it as written in the template
/// (`Labels[1].InstanceTypes[0]`), `problem` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("property {path}: {problem}")]
pub struct PropertyError {
    pub path: String,
    pub problem: String,
}

fn fail<T>(path: impl Into<String>, problem: impl Into<String>) -> Result<T, PropertyError> {
    Err(PropertyError {
        path: path.into(),
        problem: problem.into(),
    })
}

/// A value quoted for an error message, cut so a huge or hostile value cannot fill the reason.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Where a physical ID comes from: written literally, or the physical ID of a resource of
/// another stack (`{Stack, LogicalId}`, e.g. a shared network stack), resolved with
/// CloudFormation `DescribeStackResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    Literal(String),
    StackResource { stack: String, logical_id: String },
}

/// A physical-ID property and where it sits in the properties (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRef {
    pub path: String,
    pub source: IdSource,
}

/// One Jenkins master as the properties name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterProps {
    /// The `longshore:master` tag value; lowercase letters, digits and `-`.
    pub name: String,
    /// Its ECS service (name or ARN), when given; informational.
    pub service: Option<String>,
    /// The master's own URL; defaults to the stack's `JenkinsUrl`.
    pub url: String,
}

/// One label definition as the properties give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelProps {
    pub name: String,
    pub node_labels: Vec<String>,
    pub executors: u32,
    /// Instance types in order of preference.
    pub instance_types: Vec<String>,
    pub max_per_master: u32,
    pub warm_minimum: u32,
    pub idle_secs: u32,
    pub spot: SpotPolicy,
}

/// The properties of `Custom::JenkinsConfig`, parsed and checked on their own (no AWS yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    pub launch_template: IdRef,
    pub launch_template_version: String,
    pub subnets: Vec<IdRef>,
    pub security_groups: Vec<IdRef>,
    pub instance_profile: IdRef,
    pub masters: Vec<MasterProps>,
    /// Ends with `/`, as Jenkins stores its location URL.
    pub jenkins_url: String,
    pub admin_user: String,
    pub max_agents: u32,
    pub boot_timeout_secs: u32,
    pub labels: Vec<LabelProps>,
}

/// Every property name the resource accepts (CloudFormation adds `ServiceToken` and
/// `ServiceTimeout` itself). Anything else is refused by name, so a typo fails the deploy
/// instead of being silently ignored.
const TOP_LEVEL: &[&str] = &[
    "ServiceToken",
    "ServiceTimeout",
    "LaunchTemplate",
    "LaunchTemplateVersion",
    "Subnets",
    "SecurityGroups",
    "InstanceProfile",
    "Masters",
    "JenkinsUrl",
    "AdminUser",
    "MaxAgents",
    "BootTimeoutSeconds",
    "Labels",
];
const MASTER_KEYS: &[&str] = &["Name", "Service", "Url"];
const LABEL_KEYS: &[&str] = &[
    "Name",
    "NodeLabels",
    "Executors",
    "InstanceTypes",
    "MaxPerMaster",
    "WarmMinimum",
    "IdleMinutes",
    "Spot",
];
const REF_KEYS: &[&str] = &["Stack", "LogicalId"];

fn at(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PropertyError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => fail(path, "must be an object"),
    }
}

fn only_known(map: &Map<String, Value>, parent: &str, known: &[&str]) -> Result<(), PropertyError> {
    match map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => fail(
            at(parent, key),
            format!("unknown property (known here: {})", known.join(", ")),
        ),
        None => Ok(()),
    }
}

fn string(
    map: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<String>, PropertyError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => {
            fail(at(parent, key), "must not be empty")
        }
        Some(Value::String(text)) => Ok(Some(text.trim().to_string())),
        Some(_) => fail(at(parent, key), "must be a string"),
    }
}

fn required(map: &Map<String, Value>, parent: &str, key: &str) -> Result<String, PropertyError> {
    string(map, parent, key)?.map_or_else(|| fail(at(parent, key), "is required"), Ok)
}

/// A whole number; CloudFormation passes every property value as a string, so `"5"` and `5`
/// (moto, hand-built requests) are both read.
fn number(
    map: &Map<String, Value>,
    parent: &str,
    key: &str,
    default: Option<u32>,
    range: (u32, u32),
) -> Result<u32, PropertyError> {
    let path = at(parent, key);
    let value = match map.get(key) {
        None | Some(Value::Null) => match default {
            Some(value) => value,
            None => return fail(path, "is required"),
        },
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => return fail(path, format!("must be a whole number, found {n}")),
        },
        Some(Value::String(text)) => match text.trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                return fail(
                    path,
                    format!("must be a whole number, found {}", shown(text)),
                );
            }
        },
        Some(_) => return fail(path, "must be a whole number"),
    };
    let (min, max) = range;
    if value < min || value > max {
        return fail(
            path,
            format!("must be between {min} and {max}, found {value}"),
        );
    }
    Ok(value)
}

fn list<'a>(
    map: &'a Map<String, Value>,
    parent: &str,
    key: &str,
    what: &str,
    max: usize,
) -> Result<Vec<(String, &'a Value)>, PropertyError> {
    let path = at(parent, key);
    let items = match map.get(key) {
        None | Some(Value::Null) => return fail(path, "is required"),
        Some(Value::Array(items)) => items,
        // CloudFormation passes a CommaDelimitedList parameter `Ref`'d into a property as a
        // list; a single string here is a template mistake worth naming.
        Some(_) => return fail(path, format!("must be a list of {what}")),
    };
    if items.is_empty() {
        return fail(path, format!("must list at least one {what}"));
    }
    if items.len() > max {
        return fail(
            path,
            format!("lists {} {what}, at most {max} allowed", items.len()),
        );
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, item)| (format!("{path}[{index}]"), item))
        .collect())
}

fn item_string(value: &Value, path: &str) -> Result<String, PropertyError> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Value::String(_) => fail(path, "must not be empty"),
        _ => fail(path, "must be a string"),
    }
}

fn id_ref(value: &Value, path: &str, prefix: &str, what: &str) -> Result<IdRef, PropertyError> {
    let source = match value {
        Value::Object(map) => {
            only_known(map, path, REF_KEYS)?;
            let stack = required(map, path, "Stack")?;
            let logical_id = required(map, path, "LogicalId")?;
            if !is_stack_name(&stack) && !stack.starts_with("arn:") {
                return fail(
                    at(path, "Stack"),
                    format!("{} is not a stack name or ID", shown(&stack)),
                );
            }
            IdSource::StackResource { stack, logical_id }
        }
        _ => {
            let id = item_string(value, path)?;
            if !prefix.is_empty() && !looks_like_id(&id, prefix) {
                return fail(
                    path,
                    format!("{} is not a {what} ID ({prefix}…)", shown(&id)),
                );
            }
            IdSource::Literal(id)
        }
    };
    Ok(IdRef {
        path: path.to_string(),
        source,
    })
}

/// `subnet-0abc…`: the prefix and then lowercase hex.
pub fn looks_like_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        (8..=32).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// CloudFormation stack names: a letter, then letters, digits and `-`, at most 128.
pub fn is_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_master_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_token(text: &str, extra: &str) -> bool {
    text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn is_instance_type(name: &str) -> bool {
    match name.split_once('.') {
        Some((family, size)) => {
            let ok = |part: &str| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            ok(family) && ok(size) && name.len() <= 40
        }
        None => false,
    }
}

fn http_url(text: &str, path: &str) -> Result<String, PropertyError> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    let Some(rest) = rest else {
        return fail(path, format!("{} is not an http(s) URL", shown(text)));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty()
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
        || text.len() > 2048
    {
        return fail(
            path,
            format!("{} is not a usable URL (a host, no spaces)", shown(text)),
        );
    }
    if text.contains(['?', '#']) {
        return fail(path, "must not carry a query or fragment");
    }
    if rest.contains('@') && host.contains('@') {
        return fail(path, "must not carry credentials");
    }
    Ok(if text.ends_with('/') {
        text.to_string()
    } else {
        format!("{text}/")
    })
}

/// Parses and checks the resource's properties on their own. Every error names the property.
pub fn parse_properties(value: &Value) -> Result<Properties, PropertyError> {
    let map = match value {
        Value::Object(map) => map,
        _ => return fail("ResourceProperties", "must be an object"),
    };

    let launch_template = match map.get("LaunchTemplate") {
        None | Some(Value::Null) => return fail("LaunchTemplate", "is required"),
        Some(value) => id_ref(value, "LaunchTemplate", "lt-", "launch template")?,
    };
    let launch_template_version = match string(map, "", "LaunchTemplateVersion")? {
        None => "$Default".to_string(),
        Some(v) if v == "$Latest" || v == "$Default" => v,
        Some(v) if v.parse::<u64>().is_ok_and(|n| n >= 1) => v,
        Some(v) => {
            return fail(
                "LaunchTemplateVersion",
                format!("{} is not a version number, $Latest or $Default", shown(&v)),
            );
        }
    };

    let subnets = id_list(map, "Subnets", "subnet-", "subnet", 16)?;
    let security_groups = id_list(map, "SecurityGroups", "sg-", "security group", 5)?;
    let instance_profile = match map.get("InstanceProfile") {
        None | Some(Value::Null) => return fail("InstanceProfile", "is required"),
        Some(value) => id_ref(value, "InstanceProfile", "", "instance profile")?,
    };
    if let IdSource::Literal(name) = &instance_profile.source
        && instance_profile_name(name).is_none()
    {
        return fail(
            "InstanceProfile",
            format!("{} is not an instance profile name or ARN", shown(name)),
        );
    }

    let jenkins_url = http_url(&required(map, "", "JenkinsUrl")?, "JenkinsUrl")?;
    let admin_user = string(map, "", "AdminUser")?.unwrap_or_else(|| "admin".to_string());
    if !is_token(&admin_user, "_.-") {
        return fail(
            "AdminUser",
            format!(
                "{} may hold only letters, digits, _ . -",
                shown(&admin_user)
            ),
        );
    }

    let mut masters: Vec<MasterProps> = Vec::new();
    for (path, item) in list(map, "", "Masters", "master", 20)? {
        let entry = object(item, &path)?;
        only_known(entry, &path, MASTER_KEYS)?;
        let name = required(entry, &path, "Name")?;
        if !is_master_name(&name) {
            return fail(
                at(&path, "Name"),
                format!(
                    "{} must be lowercase letters, digits and -, starting with a letter, at most 32",
                    shown(&name)
                ),
            );
        }
        if masters.iter().any(|m| m.name == name) {
            return fail(
                at(&path, "Name"),
                format!("{} is named twice", shown(&name)),
            );
        }
        let service = string(entry, &path, "Service")?;
        let url = match string(entry, &path, "Url")? {
            Some(url) => http_url(&url, &at(&path, "Url"))?,
            None => jenkins_url.clone(),
        };
        masters.push(MasterProps { name, service, url });
    }

    let max_agents = number(map, "", "MaxAgents", None, (1, 1000))?;
    let boot_timeout_secs = number(map, "", "BootTimeoutSeconds", Some(600), (60, 3600))?;

    let mut labels: Vec<LabelProps> = Vec::new();
    for (path, item) in list(map, "", "Labels", "label", 50)? {
        let label = parse_label(item, &path)?;
        if labels.iter().any(|l| l.name == label.name) {
            return fail(
                at(&path, "Name"),
                format!("{} is defined twice", shown(&label.name)),
            );
        }
        if label.max_per_master > max_agents {
            return fail(
                at(&path, "MaxPerMaster"),
                format!(
                    "{} is more than MaxAgents ({max_agents})",
                    label.max_per_master
                ),
            );
        }
        labels.push(label);
    }
    let warm: u64 = labels
        .iter()
        .map(|l| u64::from(l.warm_minimum))
        .sum::<u64>()
        * masters.len() as u64;
    if warm > u64::from(max_agents) {
        return fail(
            "MaxAgents",
            format!(
                "{max_agents} cannot hold the warm minimums of all labels on {} masters ({warm} agents)",
                masters.len()
            ),
        );
    }

    // Unknown names last, so a request missing everything (a sample request) names the first
    // required property rather than the first stranger.
    only_known(map, "", TOP_LEVEL)?;
    Ok(Properties {
        launch_template,
        launch_template_version,
        subnets,
        security_groups,
        instance_profile,
        masters,
        jenkins_url,
        admin_user,
        max_agents,
        boot_timeout_secs,
        labels,
    })
}

fn id_list(
    map: &Map<String, Value>,
    key: &str,
    prefix: &str,
    what: &str,
    max: usize,
) -> Result<Vec<IdRef>, PropertyError> {
    let mut refs: Vec<IdRef> = Vec::new();
    for (path, item) in list(map, "", key, what, max)? {
        let id = id_ref(item, &path, prefix, what)?;
        if refs.iter().any(|other| other.source == id.source) {
            return fail(path, format!("{what} is listed twice"));
        }
        refs.push(id);
    }
    Ok(refs)
}

fn parse_label(item: &Value, path: &str) -> Result<LabelProps, PropertyError> {
    let entry = object(item, path)?;
    only_known(entry, path, LABEL_KEYS)?;
    let name = required(entry, path, "Name")?;
    if !is_token(&name, "_.-") {
        return fail(
            at(path, "Name"),
            format!(
                "{} may hold only letters, digits, _ . - (at most 64)",
                shown(&name)
            ),
        );
    }
    let node_labels = match entry.get("NodeLabels") {
        None | Some(Value::Null) => vec![name.clone()],
        Some(_) => {
            let mut labels = Vec::new();
            for (item_path, item) in list(entry, path, "NodeLabels", "node label", 20)? {
                let label = item_string(item, &item_path)?;
                if label.chars().any(char::is_whitespace) || !is_token(&label, "_.-:") {
                    return fail(
                        item_path,
                        format!("{} is not a single Jenkins label", shown(&label)),
                    );
                }
                labels.push(label);
            }
            labels
        }
    };
    let executors = number(entry, path, "Executors", Some(1), (1, 64))?;
    let mut instance_types: Vec<String> = Vec::new();
    for (item_path, item) in list(entry, path, "InstanceTypes", "instance type", 20)? {
        let instance_type = item_string(item, &item_path)?;
        if !is_instance_type(&instance_type) {
            return fail(
                item_path,
                format!(
                    "{} is not an EC2 instance type (family.size)",
                    shown(&instance_type)
                ),
            );
        }
        if instance_types.contains(&instance_type) {
            return fail(
                item_path,
                format!("{} is listed twice", shown(&instance_type)),
            );
        }
        instance_types.push(instance_type);
    }
    let max_per_master = number(entry, path, "MaxPerMaster", None, (1, 1000))?;
    let warm_minimum = number(entry, path, "WarmMinimum", Some(0), (0, 1000))?;
    if warm_minimum > max_per_master {
        return fail(
            at(path, "WarmMinimum"),
            format!("{warm_minimum} is more than MaxPerMaster ({max_per_master})"),
        );
    }
    let idle_minutes = number(
        entry,
        path,
        "IdleMinutes",
        Some(DEFAULT_IDLE_MINUTES),
        (1, 1440),
    )?;
    let spot = match string(entry, path, "Spot")?.as_deref() {
        None | Some("never") => SpotPolicy::Never,
        Some("prefer") => SpotPolicy::Prefer,
        Some("only") => SpotPolicy::Only,
        Some(other) => {
            return fail(
                at(path, "Spot"),
                format!("{} is not one of never, prefer, only", shown(other)),
            );
        }
    };
    Ok(LabelProps {
        name,
        node_labels,
        executors,
        instance_types,
        max_per_master,
        warm_minimum,
        idle_secs: idle_minutes * 60,
        spot,
    })
}

/// The name of an instance profile given as a name or an ARN
/// (`arn:aws:iam::123456789012:instance-profile/path/name`); `None` when it is neither.
pub fn instance_profile_name(text: &str) -> Option<&str> {
    let name = if text.starts_with("arn:") {
        let (_, resource) = text.split_once(":instance-profile/")?;
        resource.rsplit('/').next()?
    } else {
        text
    };
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    ok.then_some(name)
}

// ---------------------------------------------------------------------------------------------
// Facts from AWS and the resolved configuration
// ---------------------------------------------------------------------------------------------

/// A subnet as `DescribeSubnets` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetFact {
    pub id: String,
    pub availability_zone: String,
    pub vpc_id: String,
}

/// A security group as `DescribeSecurityGroups` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupFact {
    pub id: String,
    pub vpc_id: String,
}

/// What AWS said about the properties' physical IDs (after `{Stack, LogicalId}` references were
/// replaced by the IDs they stand for, index for index).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The literal IDs, in property order.
    pub launch_template_id: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub instance_profile: String,
    /// Whether the launch template exists.
    pub launch_template_exists: bool,
    /// The subnets that exist.
    pub subnets: Vec<SubnetFact>,
    /// The security groups that exist.
    pub security_groups: Vec<SecurityGroupFact>,
    /// The instance profile's ARN, when it exists.
    pub instance_profile_arn: Option<String>,
    /// `(instance type, availability zone)` pairs EC2 offers.
    pub offerings: BTreeSet<(String, String)>,
}

/// A master with what its configuration needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Master {
    pub name: String,
    pub url: String,
}

/// The checked, resolved configuration the renderers turn into CasC and the fleet config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub stack: String,
    pub launch_template: LaunchTemplate,
    pub vpc_id: String,
    pub subnets: Vec<Subnet>,
    pub security_groups: Vec<String>,
    pub instance_profile_arn: String,
    pub masters: Vec<Master>,
    pub admin_user: String,
    pub max_agents: u32,
    pub boot_timeout_secs: u32,
    pub labels: Vec<LabelTemplate>,
}

/// Checks the facts against the properties: everything exists, everything sits in one VPC,
/// and each label keeps only the (instance type, subnet) pairs whose zone offers the type.
pub fn resolve(stack: &str, props: &Properties, facts: &Facts) -> Result<Resolved, PropertyError> {
    if !facts.launch_template_exists {
        return fail(
            &props.launch_template.path,
            format!(
                "launch template {} does not exist",
                shown(&facts.launch_template_id)
            ),
        );
    }
    let mut subnets: Vec<Subnet> = Vec::new();
    let mut vpc: Option<(String, String)> = None;
    for (index, id) in facts.subnet_ids.iter().enumerate() {
        let path = format!("Subnets[{index}]");
        let Some(fact) = facts.subnets.iter().find(|s| &s.id == id) else {
            return fail(path, format!("subnet {} does not exist", shown(id)));
        };
        if subnets.iter().any(|s| &s.id == id) {
            return fail(
                path,
                format!("subnet {id} is listed twice (after resolving references)"),
            );
        }
        match &vpc {
            None => vpc = Some((fact.vpc_id.clone(), path)),
            Some((first, first_path)) if first != &fact.vpc_id => {
                return fail(
                    path,
                    format!(
                        "subnet {id} is in {}, but {first_path} is in {first}",
                        fact.vpc_id
                    ),
                );
            }
            Some(_) => {}
        }
        subnets.push(Subnet {
            id: id.clone(),
            availability_zone: fact.availability_zone.clone(),
        });
    }
    let Some((vpc_id, _)) = vpc else {
        return fail("Subnets", "must list at least one subnet");
    };
    for (index, id) in facts.security_group_ids.iter().enumerate() {
        let path = format!("SecurityGroups[{index}]");
        let Some(fact) = facts.security_groups.iter().find(|g| &g.id == id) else {
            return fail(path, format!("security group {} does not exist", shown(id)));
        };
        if fact.vpc_id != vpc_id {
            return fail(
                path,
                format!(
                    "security group {id} is in {}, not in the subnets' {vpc_id}",
                    fact.vpc_id
                ),
            );
        }
    }
    let Some(instance_profile_arn) = facts.instance_profile_arn.clone() else {
        return fail(
            &props.instance_profile.path,
            format!(
                "instance profile {} does not exist",
                shown(&facts.instance_profile)
            ),
        );
    };

    let zones: BTreeSet<&str> = subnets
        .iter()
        .map(|s| s.availability_zone.as_str())
        .collect();
    let mut labels = Vec::new();
    for (index, label) in props.labels.iter().enumerate() {
        let placements: Vec<Placement> = label
            .instance_types
            .iter()
            .filter_map(|instance_type| {
                let usable: Vec<Subnet> = subnets
                    .iter()
                    .filter(|s| {
                        facts
                            .offerings
                            .contains(&(instance_type.clone(), s.availability_zone.clone()))
                    })
                    .cloned()
                    .collect();
                (!usable.is_empty()).then(|| Placement {
                    instance_type: instance_type.clone(),
                    subnets: usable,
                })
            })
            .collect();
        if placements.is_empty() {
            return fail(
                format!("Labels[{index}].InstanceTypes"),
                format!(
                    "none of {} is offered in the subnets' availability zones ({})",
                    label.instance_types.join(", "),
                    zones.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        labels.push(LabelTemplate {
            name: label.name.clone(),
            node_labels: label.node_labels.clone(),
            executors: label.executors,
            placements,
            max_per_master: label.max_per_master,
            warm_minimum: label.warm_minimum,
            idle_secs: label.idle_secs,
            spot: label.spot,
        });
    }

    Ok(Resolved {
        stack: stack.to_string(),
        launch_template: LaunchTemplate {
            id: facts.launch_template_id.clone(),
            version: props.launch_template_version.clone(),
        },
        vpc_id,
        subnets,
        security_groups: facts.security_group_ids.clone(),
        instance_profile_arn,
        masters: props
            .masters
            .iter()
            .map(|m| Master {
                name: m.name.clone(),
                url: m.url.clone(),
            })
            .collect(),
        admin_user: props.admin_user.clone(),
        max_agents: props.max_agents,
        boot_timeout_secs: props.boot_timeout_secs,
        labels,
    })
}

// ---------------------------------------------------------------------------------------------
// Physical ids and parameter names
// ---------------------------------------------------------------------------------------------

/// The stack name inside a stack ID (`arn:aws:cloudformation:<region>:<account>:stack/<name>/<guid>`).
/// Falls back to the second-to-last `/` segment for the placeholder IDs some samples carry.
pub fn stack_name(stack_id: &str) -> Option<&str> {
    let segments: Vec<&str> = stack_id.split('/').collect();
    let name = if segments.len() >= 3 {
        segments[segments.len() - 2]
    } else {
        stack_id
    };
    is_stack_name(name).then_some(name)
}

fn is_logical_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

fn short_hash(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hex::encode(hash.finalize())[..12].to_string()
}

/// A physical id longshore issued, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnId {
    pub stack: String,
    pub logical_id: String,
    /// 12 hex digits of the identity hash, or `failed-<12 hex>`.
    pub tag: String,
}

impl OwnId {
    /// The identity id: same stack, logical id and master set (in any order) give the same id.
    pub fn for_identity(stack: &str, logical_id: &str, masters: &[String]) -> OwnId {
        let mut sorted: Vec<&str> = masters.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut parts = vec![stack, logical_id];
        parts.extend(sorted);
        OwnId {
            stack: stack.to_string(),
            logical_id: logical_id.to_string(),
            tag: short_hash(&parts),
        }
    }

    /// The id a Create answers when its properties cannot be read: deterministic per request,
    /// so a repeated delivery answers the same, and never the path of a working resource.
    pub fn for_failed_create(stack: &str, logical_id: &str, request_id: &str) -> OwnId {
        OwnId {
            stack: stack.to_string(),
            logical_id: logical_id.to_string(),
            tag: format!("failed-{}", short_hash(&[request_id])),
        }
    }

    /// Reads an id longshore issued; `None` for anything else (nothing of ours to delete).
    pub fn parse(id: &str) -> Option<OwnId> {
        let mut parts = id.split('.');
        let (Some("longshore"), Some(stack), Some(logical_id), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let hex12 = |t: &str| t.len() == 12 && t.bytes().all(|b| b.is_ascii_hexdigit());
        let tag_ok = hex12(tag) || tag.strip_prefix("failed-").is_some_and(hex12);
        (is_stack_name(stack) && is_logical_id(logical_id) && tag_ok).then(|| OwnId {
            stack: stack.to_string(),
            logical_id: logical_id.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The physical id as CloudFormation stores it.
    pub fn physical_id(&self) -> String {
        format!("longshore.{}.{}.{}", self.stack, self.logical_id, self.tag)
    }

    /// Where this id's parameters live.
    pub fn paths(&self) -> ParameterPaths {
        ParameterPaths {
            root: format!(
                "/longshore/{}/config/{}-{}/",
                self.stack, self.logical_id, self.tag
            ),
        }
    }
}

/// The SSM parameter names of one physical id: `/longshore/<stack>/config/<logical>-<tag>/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterPaths {
    /// Ends with `/`; everything under it belongs to this id alone.
    pub root: String,
}

impl ParameterPaths {
    /// The fleet configuration the queue-scaler reads.
    pub fn fleet(&self) -> String {
        format!("{}fleet", self.root)
    }

    /// One master's CasC YAML.
    pub fn casc(&self, master: &str) -> String {
        format!("{}casc/{master}", self.root)
    }
}

// ---------------------------------------------------------------------------------------------
// The response
// ---------------------------------------------------------------------------------------------

/// SUCCESS or FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Success,
    Failed,
}

/// The JSON body PUT to the ResponseURL (custom resource response objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// Always false: Data holds only parameter names, versions and hashes.
    pub no_echo: bool,
    pub data: BTreeMap<String, String>,
}

impl Response {
    /// The body as sent: JSON, at most [`MAX_RESPONSE_BYTES`]; a long Reason is cut (on a
    /// character boundary, marked with `…`) and, should Data alone be too large, Data is dropped
    /// and the response turned FAILED with a reason saying so.
    pub fn to_body(&self) -> String {
        let mut response = self.clone();
        loop {
            // Serializing a struct of strings and a string map cannot fail.
            let body = serde_json::to_string(&response).unwrap_or_default();
            if body.len() <= MAX_RESPONSE_BYTES {
                return body;
            }
            let excess = body.len() - MAX_RESPONSE_BYTES;
            match response.reason.as_mut() {
                Some(reason) if reason.len() > excess + 8 => {
                    // JSON escaping can make a character cost more than its UTF-8 length; cut at
                    // least the excess plus room for the marker, and loop until it fits.
                    let mut keep = reason.len().saturating_sub(excess + 8);
                    while !reason.is_char_boundary(keep) {
                        keep -= 1;
                    }
                    reason.truncate(keep);
                    reason.push('…');
                }
                _ if !response.data.is_empty() => {
                    response.data.clear();
                    response.status = Status::Failed;
                    response.reason = Some(
                        "the response data did not fit CloudFormation's 4096-byte limit".into(),
                    );
                }
                _ => {
                    response.reason = Some("failed (reason too long to send)".into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn good() -> Value {
        json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:config-resolver",
            "LaunchTemplate": "lt-0123456789abcdef0",
            "LaunchTemplateVersion": "3",
            "Subnets": ["subnet-0123456789abcdef0", {"Stack": "network", "LogicalId": "SubnetB"}],
            "SecurityGroups": ["sg-0123456789abcdef0"],
            "InstanceProfile": "arn:aws:iam::123456789012:instance-profile/ci/agent-profile",
            "Masters": [{"Name": "master-a", "Service": "ci-master-a"}, {"Name": "master-b"}],
            "JenkinsUrl": "https://jenkins.example.com",
            "MaxAgents": "20",
            "Labels": [
                {"Name": "docker", "NodeLabels": ["docker", "linux"], "Executors": "2",
                 "InstanceTypes": ["c6i.large", "c5.large"], "MaxPerMaster": "5",
                 "WarmMinimum": "1", "IdleMinutes": "10", "Spot": "prefer"},
                {"Name": "small", "InstanceTypes": ["t3.micro"], "MaxPerMaster": 3}
            ]
        })
    }

    #[test]
    fn good_properties_parse_with_defaults() {
        let props = parse_properties(&good()).unwrap();
        assert_eq!(props.jenkins_url, "https://jenkins.example.com/");
        assert_eq!(props.boot_timeout_secs, 600);
        assert_eq!(props.admin_user, "admin");
        assert_eq!(props.labels[1].node_labels, ["small"]);
        assert_eq!(props.labels[1].spot, SpotPolicy::Never);
        assert_eq!(props.labels[0].idle_secs, 600);
        assert_eq!(props.labels[1].idle_secs, DEFAULT_IDLE_MINUTES * 60);
        assert_eq!(
            props.subnets[1].source,
            IdSource::StackResource {
                stack: "network".into(),
                logical_id: "SubnetB".into()
            }
        );
        assert_eq!(props.masters[1].url, "https://jenkins.example.com/");
    }

    /// Each case breaks one thing; the error must name the property path.
    #[test]
    fn bad_properties_are_named() {
        // (what the case breaks, how, the property path the error must name)
        type Case = (&'static str, fn(&mut Value), &'static str);
        let cases: Vec<Case> = vec![
            ("not an object", |v| *v = json!("x"), "ResourceProperties"),
            ("typo", |v| v["Subnet"] = json!([]), "Subnet"),
            (
                "no LaunchTemplate",
                |v| {
                    v.as_object_mut().unwrap().remove("LaunchTemplate");
                },
                "LaunchTemplate",
            ),
            (
                "LaunchTemplate not lt-",
                |v| v["LaunchTemplate"] = json!("ami-123"),
                "LaunchTemplate",
            ),
            (
                "bad LT version",
                |v| v["LaunchTemplateVersion"] = json!("latest"),
                "LaunchTemplateVersion",
            ),
            (
                "Subnets missing",
                |v| {
                    v.as_object_mut().unwrap().remove("Subnets");
                },
                "Subnets",
            ),
            ("Subnets empty", |v| v["Subnets"] = json!([]), "Subnets"),
            (
                "Subnets string",
                |v| v["Subnets"] = json!("subnet-0123456789abcdef0"),
                "Subnets",
            ),
            (
                "Subnets[1] not subnet",
                |v| v["Subnets"][1] = json!("sg-0123456789abcdef0"),
                "Subnets[1]",
            ),
            (
                "Subnets twice",
                |v| v["Subnets"][1] = json!("subnet-0123456789abcdef0"),
                "Subnets[1]",
            ),
            (
                "ref without LogicalId",
                |v| v["Subnets"][1] = json!({"Stack": "network"}),
                "Subnets[1].LogicalId",
            ),
            (
                "ref with extra key",
                |v| v["Subnets"][1]["Output"] = json!("x"),
                "Subnets[1].Output",
            ),
            (
                "SecurityGroups[0]",
                |v| v["SecurityGroups"][0] = json!(7),
                "SecurityGroups[0]",
            ),
            (
                "too many groups",
                |v| {
                    v["SecurityGroups"] = json!([
                        "sg-00000001",
                        "sg-00000002",
                        "sg-00000003",
                        "sg-00000004",
                        "sg-00000005",
                        "sg-00000006"
                    ])
                },
                "SecurityGroups",
            ),
            (
                "InstanceProfile bad",
                |v| v["InstanceProfile"] = json!("has spaces in it"),
                "InstanceProfile",
            ),
            (
                "InstanceProfile missing",
                |v| {
                    v.as_object_mut().unwrap().remove("InstanceProfile");
                },
                "InstanceProfile",
            ),
            (
                "JenkinsUrl ftp",
                |v| v["JenkinsUrl"] = json!("ftp://x"),
                "JenkinsUrl",
            ),
            (
                "JenkinsUrl empty",
                |v| v["JenkinsUrl"] = json!(" "),
                "JenkinsUrl",
            ),
            (
                "JenkinsUrl query",
                |v| v["JenkinsUrl"] = json!("https://x/?a=1"),
                "JenkinsUrl",
            ),
            ("AdminUser", |v| v["AdminUser"] = json!("a b"), "AdminUser"),
            ("Masters empty", |v| v["Masters"] = json!([]), "Masters"),
            (
                "Masters[1].Name twice",
                |v| v["Masters"][1]["Name"] = json!("master-a"),
                "Masters[1].Name",
            ),
            (
                "Masters[0].Name upper",
                |v| v["Masters"][0]["Name"] = json!("Master_A"),
                "Masters[0].Name",
            ),
            (
                "Masters[0] string",
                |v| v["Masters"][0] = json!("master-a"),
                "Masters[0]",
            ),
            (
                "Masters[1].Url",
                |v| v["Masters"][1]["Url"] = json!("nope"),
                "Masters[1].Url",
            ),
            (
                "MaxAgents zero",
                |v| v["MaxAgents"] = json!("0"),
                "MaxAgents",
            ),
            (
                "MaxAgents text",
                |v| v["MaxAgents"] = json!("many"),
                "MaxAgents",
            ),
            (
                "MaxAgents negative",
                |v| v["MaxAgents"] = json!(-1),
                "MaxAgents",
            ),
            (
                "BootTimeoutSeconds",
                |v| v["BootTimeoutSeconds"] = json!("5"),
                "BootTimeoutSeconds",
            ),
            ("Labels empty", |v| v["Labels"] = json!([]), "Labels"),
            (
                "Labels[1].Name twice",
                |v| v["Labels"][1]["Name"] = json!("docker"),
                "Labels[1].Name",
            ),
            (
                "Labels[1].Name missing",
                |v| {
                    v["Labels"][1].as_object_mut().unwrap().remove("Name");
                },
                "Labels[1].Name",
            ),
            (
                "Labels[1].InstanceTypes empty",
                |v| v["Labels"][1]["InstanceTypes"] = json!([]),
                "Labels[1].InstanceTypes",
            ),
            (
                "Labels[0].InstanceTypes[1] bad",
                |v| v["Labels"][0]["InstanceTypes"][1] = json!("large"),
                "Labels[0].InstanceTypes[1]",
            ),
            (
                "Labels[0].InstanceTypes[1] twice",
                |v| v["Labels"][0]["InstanceTypes"][1] = json!("c6i.large"),
                "Labels[0].InstanceTypes[1]",
            ),
            (
                "Labels[0].MaxPerMaster zero",
                |v| v["Labels"][0]["MaxPerMaster"] = json!("0"),
                "Labels[0].MaxPerMaster",
            ),
            (
                "Labels[0].MaxPerMaster > MaxAgents",
                |v| v["Labels"][0]["MaxPerMaster"] = json!("21"),
                "Labels[0].MaxPerMaster",
            ),
            (
                "Labels[0].WarmMinimum",
                |v| v["Labels"][0]["WarmMinimum"] = json!("6"),
                "Labels[0].WarmMinimum",
            ),
            (
                "Labels[0].IdleMinutes",
                |v| v["Labels"][0]["IdleMinutes"] = json!("0"),
                "Labels[0].IdleMinutes",
            ),
            (
                "Labels[0].Spot",
                |v| v["Labels"][0]["Spot"] = json!("sometimes"),
                "Labels[0].Spot",
            ),
            (
                "Labels[0].Executors",
                |v| v["Labels"][0]["Executors"] = json!("0"),
                "Labels[0].Executors",
            ),
            (
                "Labels[0].NodeLabels[0]",
                |v| v["Labels"][0]["NodeLabels"][0] = json!("two words"),
                "Labels[0].NodeLabels[0]",
            ),
            (
                "Labels[1].Extra",
                |v| v["Labels"][1]["Ami"] = json!("ami-1"),
                "Labels[1].Ami",
            ),
            (
                "warm minimums exceed MaxAgents",
                |v| {
                    v["MaxAgents"] = json!("5");
                    v["Labels"][0]["MaxPerMaster"] = json!("5");
                    v["Labels"][0]["WarmMinimum"] = json!("3");
                    v["Labels"][1]["MaxPerMaster"] = json!("1");
                },
                "MaxAgents",
            ),
        ];
        assert!(cases.len() >= 20);
        for (name, breaks, path) in cases {
            let mut value = good();
            breaks(&mut value);
            let err = parse_properties(&value).expect_err(name);
            assert_eq!(err.path, path, "{name}: {err}");
            assert!(
                err.to_string().starts_with(&format!("property {path}: ")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn identity_ids_depend_on_the_master_set_only() {
        let a = OwnId::for_identity("ci", "JenkinsConfig", &["m-a".into(), "m-b".into()]);
        let b = OwnId::for_identity("ci", "JenkinsConfig", &["m-b".into(), "m-a".into()]);
        let c = OwnId::for_identity("ci", "JenkinsConfig", &["m-a".into()]);
        assert_eq!(a, b);
        assert_ne!(a.physical_id(), c.physical_id());
        assert_eq!(OwnId::parse(&a.physical_id()), Some(a.clone()));
        assert!(
            !a.paths().root.starts_with(&c.paths().root)
                && !c.paths().root.starts_with(&a.paths().root)
        );
        let failed = OwnId::for_failed_create("ci", "JenkinsConfig", "req-1");
        assert_eq!(OwnId::parse(&failed.physical_id()), Some(failed.clone()));
        assert_eq!(
            failed,
            OwnId::for_failed_create("ci", "JenkinsConfig", "req-1")
        );
        assert_eq!(OwnId::parse("custom-resource-f4bd5382"), None);
        assert_eq!(OwnId::parse("longshore.ci.X.nothex"), None);
    }

    #[test]
    fn stack_names_come_out_of_stack_ids() {
        assert_eq!(
            stack_name(
                "arn:aws:cloudformation:us-east-1:123456789012:stack/stack-name/16580499-7622"
            ),
            Some("stack-name")
        );
        assert_eq!(
            stack_name("arn:aws:cloudformation:us-west-2:EXAMPLE/stack-name/guid"),
            Some("stack-name")
        );
        assert_eq!(stack_name("not/a stack/x"), None);
    }

    #[test]
    fn long_reasons_are_cut_to_fit() {
        let response = Response {
            status: Status::Failed,
            reason: Some("é\"x".repeat(3000)),
            physical_resource_id: "p".into(),
            stack_id: "s".into(),
            request_id: "r".into(),
            logical_resource_id: "l".into(),
            no_echo: false,
            data: BTreeMap::new(),
        };
        let body = response.to_body();
        assert!(body.len() <= MAX_RESPONSE_BYTES, "{}", body.len());
        let back: Value = serde_json::from_str(&body).unwrap();
        assert!(back["Reason"].as_str().unwrap().ends_with('…'));
        assert_eq!(back["Status"], "FAILED");
    }

    #[test]
    fn offerings_drop_unusable_pairs_and_fail_empty_labels() {
        let props = parse_properties(&good()).unwrap();
        let mut facts = Facts {
            launch_template_id: "lt-0123456789abcdef0".into(),
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            security_group_ids: vec!["sg-1".into()],
            instance_profile: "agent-profile".into(),
            launch_template_exists: true,
            subnets: vec![
                SubnetFact {
                    id: "subnet-a".into(),
                    availability_zone: "az-a".into(),
                    vpc_id: "vpc-1".into(),
                },
                SubnetFact {
                    id: "subnet-b".into(),
                    availability_zone: "az-b".into(),
                    vpc_id: "vpc-1".into(),
                },
            ],
            security_groups: vec![SecurityGroupFact {
                id: "sg-1".into(),
                vpc_id: "vpc-1".into(),
            }],
            instance_profile_arn: Some("arn:aws:iam::1:instance-profile/agent-profile".into()),
            offerings: [
                ("c6i.large", "az-a"),
                ("c5.large", "az-a"),
                ("c5.large", "az-b"),
                ("t3.micro", "az-b"),
            ]
            .into_iter()
            .map(|(t, z)| (t.to_string(), z.to_string()))
            .collect(),
        };
        let resolved = resolve("ci", &props, &facts).unwrap();
        let docker = &resolved.labels[0];
        assert_eq!(docker.placements.len(), 2);
        assert_eq!(docker.placements[0].subnets.len(), 1);
        assert_eq!(docker.placements[1].subnets.len(), 2);

        facts
            .offerings
            .remove(&("t3.micro".to_string(), "az-b".to_string()));
        assert_eq!(
            resolve("ci", &props, &facts).unwrap_err().path,
            "Labels[1].InstanceTypes"
        );

        facts.security_groups[0].vpc_id = "vpc-2".into();
        assert_eq!(
            resolve("ci", &props, &facts).unwrap_err().path,
            "SecurityGroups[0]"
        );
        facts.subnets[1].vpc_id = "vpc-2".into();
        assert_eq!(
            resolve("ci", &props, &facts).unwrap_err().path,
            "Subnets[1]"
        );
        facts.subnets.pop();
        assert_eq!(
            resolve("ci", &props, &facts).unwrap_err().path,
            "Subnets[1]"
        );
        facts.launch_template_exists = false;
        assert_eq!(
            resolve("ci", &props, &facts).unwrap_err().path,
            "LaunchTemplate"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn stack() -> impl Strategy<Value = String> {
            "[a-zA-Z][a-zA-Z0-9-]{0,40}"
        }

        fn logical() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9]{1,40}"
        }

        proptest! {
            #[test]
            fn issued_ids_read_back_to_themselves(
                stack in stack(),
                logical in logical(),
                masters in prop::collection::vec("[a-z][a-z0-9-]{0,12}", 0..5),
                request in ".{0,60}",
            ) {
                for id in [
                    OwnId::for_identity(&stack, &logical, &masters),
                    OwnId::for_failed_create(&stack, &logical, &request),
                ] {
                    prop_assert_eq!(OwnId::parse(&id.physical_id()), Some(id.clone()));
                    // Every parameter of an id lives under its own root, and no other id's
                    // root is a prefix of it.
                    prop_assert!(id.paths().fleet().starts_with(&id.paths().root));
                }
            }

            #[test]
            fn the_identity_ignores_master_order_and_repeats_but_not_the_set(
                stack in stack(),
                logical in logical(),
                mut masters in prop::collection::vec("[a-z]{1,8}", 1..5),
                extra in "[A-Z]{1,8}",
            ) {
                let id = OwnId::for_identity(&stack, &logical, &masters);
                let mut shuffled = masters.clone();
                shuffled.reverse();
                shuffled.push(masters[0].clone());
                prop_assert_eq!(&OwnId::for_identity(&stack, &logical, &shuffled), &id);
                masters.push(extra);
                prop_assert_ne!(OwnId::for_identity(&stack, &logical, &masters).tag, id.tag);
            }

            #[test]
            fn a_failed_create_never_takes_a_working_id(
                stack in stack(),
                logical in logical(),
                masters in prop::collection::vec("[a-z]{1,8}", 0..4),
                request in ".{0,60}",
            ) {
                let failed = OwnId::for_failed_create(&stack, &logical, &request);
                let working = OwnId::for_identity(&stack, &logical, &masters);
                prop_assert_ne!(failed.physical_id(), working.physical_id());
                prop_assert!(!failed.paths().root.starts_with(&working.paths().root));
                prop_assert!(!working.paths().root.starts_with(&failed.paths().root));
            }

            #[test]
            fn foreign_ids_are_not_ours(id in ".{0,80}") {
                if let Some(own) = OwnId::parse(&id) {
                    prop_assert_eq!(own.physical_id(), id);
                }
            }

            #[test]
            fn every_response_fits_and_stays_json(
                reason in ".{0,6000}",
                data in prop::collection::btree_map("[A-Za-z]{1,20}", ".{0,400}", 0..20),
            ) {
                let response = Response {
                    status: Status::Success,
                    reason: Some(reason),
                    physical_resource_id: "longshore.ci.JenkinsConfig.0123456789ab".to_string(),
                    stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/ci/guid".to_string(),
                    request_id: "r".to_string(),
                    logical_resource_id: "JenkinsConfig".to_string(),
                    no_echo: false,
                    data,
                };
                let body = response.to_body();
                prop_assert!(body.len() <= MAX_RESPONSE_BYTES, "{} bytes", body.len());
                prop_assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
            }
        }
    }
}
