//! config-resolver's handler: one CloudFormation custom resource request in, one response PUT
//! to its ResponseURL out: parse → resolve → render → store → respond.
//!
//! It always answers (also on bad properties, AWS errors and malformed requests), before the
//! Lambda deadline: the work runs under a timeout that leaves `answer_margin` for the PUT, and
//! a timeout answers FAILED with the reason. What it answers is decided by the pure rules in
//! [`crate::domain::custom_resource`] (physical ids, parameter paths, the 4 KB response).
//! Nothing secret passes through: properties carry IDs and ARNs only, Data carries parameter
//! names, versions and hashes, and logs name the ResponseURL's host, never its signature.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::adapters::cfn_response::url_host;
use crate::domain::custom_resource::{
    Facts, IdRef, IdSource, OwnId, Properties, PropertyError, Response, Status,
    instance_profile_name, looks_like_id, parse_properties, resolve, stack_name,
};
use crate::domain::render::casc::master_casc;
use crate::domain::render::fleet::{fleet_config, fleet_json};
use crate::handlers::events::CloudFormationCustomResourceRequest;
use crate::ports::{CfnResponder, Lookups, Params};

/// How many SSM parameters are written at once.
const PARALLEL_WRITES: usize = 3;

/// How long before the deadline the work is cut off so the answer still goes out.
pub const DEFAULT_ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// What the handler works with, built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps<L, P, R> {
    pub lookups: L,
    pub params: P,
    pub responder: R,
    /// Time kept back from the deadline for the response PUT (at most half the time left).
    pub answer_margin: Duration,
}

impl<L, P, R> Deps<L, P, R> {
    /// Dependencies with the default answer margin.
    pub fn new(lookups: L, params: P, responder: R) -> Self {
        Deps {
            lookups,
            params,
            responder,
            answer_margin: DEFAULT_ANSWER_MARGIN,
        }
    }
}

/// An event that cannot be answered at all (no ResponseURL to answer to): the only case the
/// handler returns an error, so the invocation shows as failed in the Lambda's metrics.
#[derive(Debug, Error)]
pub enum ConfigResolverError {
    #[error("not a CloudFormation custom resource request (cannot answer it): {0}")]
    Unanswerable(String),
}

impl From<ConfigResolverError> for lambda_runtime::Diagnostic {
    fn from(err: ConfigResolverError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "Unanswerable".to_string(),
            error_message: err.to_string(),
        }
    }
}

/// Time left until the Lambda context's deadline (epoch milliseconds).
pub fn remaining_until(deadline_ms: u64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
    Delete,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "Create",
            Kind::Update => "Update",
            Kind::Delete => "Delete",
        }
    }
}

/// The fields of a request the handler uses.
#[derive(Debug, Clone)]
struct Request {
    kind: Kind,
    request_id: String,
    stack_id: String,
    logical_id: String,
    response_url: String,
    physical_id: Option<String>,
    properties: Value,
}

/// Reads the typed request; a request that does not parse but still says where to answer is
/// answered FAILED with the parse error instead of leaving the stack waiting for an hour.
fn read_request(event: Value) -> Result<Result<Request, (Request, String)>, ConfigResolverError> {
    match serde_json::from_value::<CloudFormationCustomResourceRequest>(event.clone()) {
        Ok(CloudFormationCustomResourceRequest::Create(r)) => Ok(Ok(Request {
            kind: Kind::Create,
            request_id: r.request_id,
            stack_id: r.stack_id,
            logical_id: r.logical_resource_id,
            response_url: r.response_url,
            physical_id: None,
            properties: r.resource_properties,
        })),
        Ok(CloudFormationCustomResourceRequest::Update(r)) => Ok(Ok(Request {
            kind: Kind::Update,
            request_id: r.request_id,
            stack_id: r.stack_id,
            logical_id: r.logical_resource_id,
            response_url: r.response_url,
            physical_id: Some(r.physical_resource_id),
            properties: r.resource_properties,
        })),
        Ok(CloudFormationCustomResourceRequest::Delete(r)) => Ok(Ok(Request {
            kind: Kind::Delete,
            request_id: r.request_id,
            stack_id: r.stack_id,
            logical_id: r.logical_resource_id,
            response_url: r.response_url,
            physical_id: Some(r.physical_resource_id),
            properties: r.resource_properties,
        })),
        Ok(_) => answerable_anyway(&event, "unknown RequestType".to_string()),
        Err(err) => answerable_anyway(&event, err.to_string()),
    }
}

fn answerable_anyway(
    event: &Value,
    problem: String,
) -> Result<Result<Request, (Request, String)>, ConfigResolverError> {
    let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_string);
    match (
        text("ResponseURL"),
        text("StackId"),
        text("RequestId"),
        text("LogicalResourceId"),
    ) {
        (Some(response_url), Some(stack_id), Some(request_id), Some(logical_id)) => {
            let kind = match text("RequestType").as_deref() {
                Some("Update") => Kind::Update,
                Some("Delete") => Kind::Delete,
                _ => Kind::Create,
            };
            Ok(Err((
                Request {
                    kind,
                    request_id,
                    stack_id,
                    logical_id,
                    response_url,
                    physical_id: text("PhysicalResourceId"),
                    properties: Value::Null,
                },
                format!("malformed custom resource request: {problem}"),
            )))
        }
        _ => Err(ConfigResolverError::Unanswerable(problem)),
    }
}

/// What one request comes to, before it is turned into the response.
#[derive(Debug)]
struct Outcome {
    status: Status,
    reason: Option<String>,
    physical_id: String,
    data: BTreeMap<String, String>,
}

impl Outcome {
    fn failed(physical_id: String, reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Failed,
            reason: Some(reason.into()),
            physical_id,
            data: BTreeMap::new(),
        }
    }
}

/// Handles one request: works out the answer within the time left, PUTs it to the
/// ResponseURL, and returns it. Fails only for an event that names nowhere to answer.
pub async fn handle<L, P, R>(
    deps: &Deps<L, P, R>,
    event: Value,
    remaining: Duration,
) -> Result<Response, ConfigResolverError>
where
    L: Lookups + Sync,
    P: Params + Sync,
    R: CfnResponder + Sync,
{
    let (request, malformed) = match read_request(event)? {
        Ok(request) => (request, None),
        Err((request, problem)) => (request, Some(problem)),
    };
    let stack = stack_name(&request.stack_id)
        .unwrap_or("unknown")
        .to_string();
    let fallback_id = answer_id_on_failure(&request, &stack);
    let margin = deps.answer_margin.min(remaining / 2);
    let budget = remaining.saturating_sub(margin);
    let started = std::time::Instant::now();

    // Parameters are filed under the stack's name: no name, no writes (a Delete still
    // succeeds, as it only ever removes what a readable id owns).
    let malformed = malformed.or_else(|| {
        (stack_name(&request.stack_id).is_none() && request.kind != Kind::Delete).then(|| {
            format!(
                "StackId {:?} does not name a CloudFormation stack",
                request.stack_id.chars().take(200).collect::<String>()
            )
        })
    });
    let outcome = match malformed {
        Some(problem) => Outcome::failed(fallback_id, problem),
        None => match tokio::time::timeout(budget, process(deps, &request, &stack, &fallback_id))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failed(
                fallback_id,
                format!(
                    "timed out resolving the {} request after {} ms (an AWS call did not answer before the Lambda deadline); the work was stopped there",
                    request.kind.as_str(),
                    started.elapsed().as_millis()
                ),
            ),
        },
    };

    let response = Response {
        status: outcome.status,
        reason: outcome.reason,
        physical_resource_id: outcome.physical_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_id.clone(),
        no_echo: false,
        data: outcome.data,
    };
    tracing::info!(
        request_type = request.kind.as_str(),
        request_id = %request.request_id,
        logical_id = %request.logical_id,
        physical_id = %response.physical_resource_id,
        status = ?response.status,
        reason = response.reason.as_deref().unwrap_or(""),
        "custom resource request handled"
    );
    let body = response.to_body();
    let host = url_host(&request.response_url);
    match tokio::time::timeout(margin, deps.responder.respond(&request.response_url, &body)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::error!(error = %err, request_id = %request.request_id, "custom resource response not delivered: CloudFormation will wait until its timeout");
        }
        Err(_) => {
            tracing::error!(host = %host, request_id = %request.request_id, "custom resource response not delivered before the Lambda deadline");
        }
    }
    Ok(response)
}

/// The physical id answered when the request fails: Update and Delete keep the id they were
/// sent; a Create answers its identity id when the properties are readable (so the rollback
/// Delete removes whatever was written), else a per-request id that owns nothing.
fn answer_id_on_failure(request: &Request, stack: &str) -> String {
    match (&request.physical_id, request.kind) {
        (Some(id), Kind::Update | Kind::Delete) if !id.is_empty() => id.clone(),
        _ => match parse_properties(&request.properties) {
            Ok(props) if request.kind == Kind::Create => {
                identity(stack, &request.logical_id, &props).physical_id()
            }
            _ => OwnId::for_failed_create(stack, &request.logical_id, &request.request_id)
                .physical_id(),
        },
    }
}

fn identity(stack: &str, logical_id: &str, props: &Properties) -> OwnId {
    let masters: Vec<String> = props.masters.iter().map(|m| m.name.clone()).collect();
    OwnId::for_identity(stack, logical_id, &masters)
}

async fn process<L, P, R>(
    deps: &Deps<L, P, R>,
    request: &Request,
    stack: &str,
    fallback_id: &str,
) -> Outcome
where
    L: Lookups + Sync,
    P: Params + Sync,
    R: CfnResponder + Sync,
{
    match request.kind {
        Kind::Create | Kind::Update => {
            let props = match parse_properties(&request.properties) {
                Ok(props) => props,
                Err(err) => return Outcome::failed(fallback_id.to_string(), err.to_string()),
            };
            let id = identity(stack, &request.logical_id, &props);
            match apply(deps, stack, &props, &id).await {
                Ok(data) => Outcome {
                    status: Status::Success,
                    reason: None,
                    physical_id: id.physical_id(),
                    data,
                },
                Err(reason) => {
                    // Nothing is cleaned up here: an Update that moved to a new id may be the
                    // rollback of an earlier replacement, whose "new" path is the one still in
                    // use. A parameter left behind is harmless; a wrong delete breaks masters.
                    Outcome::failed(fallback_id.to_string(), reason)
                }
            }
        }
        Kind::Delete => {
            let physical_id = fallback_id.to_string();
            match OwnId::parse(&physical_id) {
                Some(own) if own.stack == stack && own.logical_id == request.logical_id => {
                    match deps.params.delete_under(&own.paths().root).await {
                        Ok(names) => {
                            tracing::info!(physical_id = %physical_id, deleted = names.len(), "parameters deleted");
                            Outcome {
                                status: Status::Success,
                                reason: None,
                                physical_id,
                                data: BTreeMap::new(),
                            }
                        }
                        Err(err) => Outcome::failed(
                            physical_id,
                            format!("deleting the parameters failed: {err}"),
                        ),
                    }
                }
                _ => {
                    tracing::info!(physical_id = %physical_id, "not a physical id of this resource: nothing to delete");
                    Outcome {
                        status: Status::Success,
                        reason: None,
                        physical_id,
                        data: BTreeMap::new(),
                    }
                }
            }
        }
    }
}

fn short(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// Resolves, renders and stores; returns the response Data or the reason it failed.
async fn apply<L, P, R>(
    deps: &Deps<L, P, R>,
    stack: &str,
    props: &Properties,
    id: &OwnId,
) -> Result<BTreeMap<String, String>, String>
where
    L: Lookups + Sync,
    P: Params + Sync,
    R: CfnResponder + Sync,
{
    let facts = gather(&deps.lookups, props).await?;
    let resolved = resolve(stack, props, &facts).map_err(|e| e.to_string())?;
    let fleet = fleet_config(&resolved)
        .map_err(|e| format!("the rendered fleet configuration is invalid: {e}"))?;
    let fleet_text = fleet_json(&fleet);
    let paths = id.paths();
    let mut data = BTreeMap::new();
    let mut all = Sha256::new();

    // The fleet configuration and each master's CasC, written a few at once (Parameter Store's
    // default throughput is meant for low volume); errors count in that order.
    let casc: Vec<(String, String)> = resolved
        .masters
        .iter()
        .map(|master| (master.name.clone(), master_casc(&resolved, master)))
        .collect();
    let casc_writes = stream::iter(&casc)
        .map(|(name, text)| {
            let name = paths.casc(name);
            async move { store(&deps.params, &name, text).await }
        })
        .buffered(PARALLEL_WRITES - 1)
        .collect::<Vec<_>>();
    let fleet_parameter = paths.fleet();
    let (version, casc_versions) = tokio::join!(
        store(&deps.params, &fleet_parameter, &fleet_text),
        casc_writes
    );

    let version = version?;
    all.update(fleet_text.as_bytes());
    data.insert("FleetParameter".to_string(), fleet_parameter);
    data.insert("FleetParameterVersion".to_string(), version.to_string());
    data.insert("FleetHash".to_string(), short(&fleet_text));
    data.insert(
        "CascParameterPrefix".to_string(),
        format!("{}casc/", paths.root),
    );
    for (index, ((name, text), version)) in casc.iter().zip(casc_versions).enumerate() {
        let version = version?;
        all.update([0u8]);
        all.update(name.as_bytes());
        all.update([0u8]);
        all.update(text.as_bytes());
        data.insert(format!("Master{index}CascVersion"), version.to_string());
        data.insert(format!("Master{index}CascHash"), short(text));
    }
    data.insert(
        "ConfigHash".to_string(),
        hex::encode(all.finalize())[..16].to_string(),
    );
    data.insert("VpcId".to_string(), resolved.vpc_id.clone());
    Ok(data)
}

/// Writes a parameter unless it already holds exactly this value (a repeated delivery then
/// changes nothing and answers the same version).
async fn store<P: Params + Sync>(params: &P, name: &str, value: &str) -> Result<i64, String> {
    let existing = params
        .get(name)
        .await
        .map_err(|e| format!("reading {name}: {e}"))?;
    if let Some(existing) = existing
        && existing.value == value
    {
        return Ok(existing.version);
    }
    params
        .put(name, value)
        .await
        .map_err(|e| format!("storing {name}: {e}"))
}

/// One physical-ID property resolved to an ID (a `{Stack, LogicalId}` reference through
/// CloudFormation), checked to be the right kind of ID.
async fn resolve_id<L: Lookups + Sync>(
    lookups: &L,
    id: &IdRef,
    prefix: &str,
    what: &str,
) -> Result<String, String> {
    match &id.source {
        IdSource::Literal(text) => Ok(text.clone()),
        IdSource::StackResource { stack, logical_id } => {
            let found = lookups
                .stack_resource(stack, logical_id)
                .await
                .map_err(|e| {
                    format!("property {}: resolving {stack}/{logical_id}: {e}", id.path)
                })?;
            let Some(found) = found else {
                return Err(PropertyError {
                    path: id.path.clone(),
                    problem: format!("stack {stack} has no resource {logical_id}"),
                }
                .to_string());
            };
            if !prefix.is_empty() && !looks_like_id(&found, prefix) {
                return Err(PropertyError {
                    path: id.path.clone(),
                    problem: format!("{stack}/{logical_id} is {found}, not a {what} ID"),
                }
                .to_string());
            }
            Ok(found)
        }
    }
}

/// A list of physical-ID properties resolved at once; the first error in list order wins.
async fn resolve_ids<L: Lookups + Sync>(
    lookups: &L,
    ids: &[IdRef],
    prefix: &str,
    what: &str,
) -> Result<Vec<String>, String> {
    join_all(ids.iter().map(|id| resolve_id(lookups, id, prefix, what)))
        .await
        .into_iter()
        .collect()
}

/// Every lookup the properties need, in as few calls as possible and in three rounds: the
/// IDs, then what they name, then the offerings in the subnets' zones. The calls of a round
/// run at once (a Create spends its time in these round trips); each round reports its first
/// error in property order, so the answer does not depend on which call returned first.
async fn gather<L: Lookups + Sync>(lookups: &L, props: &Properties) -> Result<Facts, String> {
    let (launch_template_id, subnet_ids, security_group_ids, profile) = tokio::join!(
        resolve_id(lookups, &props.launch_template, "lt-", "launch template"),
        resolve_ids(lookups, &props.subnets, "subnet-", "subnet"),
        resolve_ids(lookups, &props.security_groups, "sg-", "security group"),
        resolve_id(lookups, &props.instance_profile, "", "instance profile"),
    );
    let (launch_template_id, subnet_ids) = (launch_template_id?, subnet_ids?);
    let (security_group_ids, profile) = (security_group_ids?, profile?);
    let Some(profile_name) = instance_profile_name(&profile).map(str::to_string) else {
        return Err(PropertyError {
            path: props.instance_profile.path.clone(),
            problem: format!("{profile} is not an instance profile name or ARN"),
        }
        .to_string());
    };
    let aws = |what: &str| {
        let what = what.to_string();
        move |e: crate::error::AwsError| format!("looking up {what}: {e}")
    };

    let (launch_template_exists, subnets, security_groups, instance_profile_arn) = tokio::join!(
        lookups.launch_template_exists(&launch_template_id),
        lookups.subnets(&subnet_ids),
        lookups.security_groups(&security_group_ids),
        lookups.instance_profile_arn(&profile_name),
    );
    let launch_template_exists = launch_template_exists.map_err(aws("LaunchTemplate"))?;
    let subnets = subnets.map_err(aws("Subnets"))?;
    let security_groups = security_groups.map_err(aws("SecurityGroups"))?;
    let instance_profile_arn = instance_profile_arn.map_err(aws("InstanceProfile"))?;
    let mut zones: Vec<String> = subnets
        .iter()
        .map(|s| s.availability_zone.clone())
        .collect();
    zones.sort();
    zones.dedup();
    let mut types: Vec<String> = props
        .labels
        .iter()
        .flat_map(|l| l.instance_types.clone())
        .collect();
    types.sort();
    types.dedup();
    let offerings = if zones.is_empty() {
        Vec::new()
    } else {
        lookups
            .offerings(&types, &zones)
            .await
            .map_err(aws("instance type offerings"))?
    };
    Ok(Facts {
        launch_template_id,
        subnet_ids,
        security_group_ids,
        instance_profile: profile_name,
        launch_template_exists,
        subnets,
        security_groups,
        instance_profile_arn,
        offerings: offerings.into_iter().collect(),
    })
}
