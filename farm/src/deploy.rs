//! `make deploy-local`: `infra/template.yaml` deployed into moto the way `make deploy` deploys
//! it into AWS, as far as moto allows (../shared/MOTO.md "CloudFormation").
//!
//! 1. Pre-create what the stack expects to exist: a VPC with DNS hostnames and two subnets in
//!    two AZs ([`MotoServer::prepare_network`]), the hosted zone, the artifact bucket.
//! 2. Stage the three Lambda binaries where the template's `Code` paths point and run the real
//!    `aws cloudformation package` (the venv's awscli) against moto's S3.
//! 3. `CreateStack` with the packaged template and the parameters file (`Key=Value` lines,
//!    the same file `make deploy` passes), network values replaced by the pre-created ones.
//! 4. moto cannot invoke the custom resource's function (no Docker) and does not expose the
//!    request it meant to send, so the Create request is built from the template here (the
//!    `JenkinsConfig` properties evaluated against the stack's physical IDs, every scalar a
//!    string as CloudFormation sends them) and the REAL config-resolver binary answers it under
//!    the Lambda harness, PUTting to moto's `cfnresponse` URL. The stack becomes
//!    `CREATE_COMPLETE` and the `!GetAtt JenkinsConfig.*` outputs resolve.
//!
//! The template is read with [`template_json`]: YAML with CloudFormation's short tags (`!Ref`,
//! `!Sub`, …) turned into their JSON form, which the tests also walk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::lambda::{FunctionSpec, Invocation, LambdaFarm, binary_path};
use crate::moto::{MotoServer, REGION, venv_dir};

/// moto's account.
pub const ACCOUNT_ID: &str = "123456789012";
/// The artifact bucket `aws cloudformation package` uploads the Lambdas' code to.
pub const ARTIFACT_BUCKET: &str = "longshore-artifacts";
/// The Lambdas the template packages, by binary name.
pub const FUNCTIONS: [&str; 3] = ["config-resolver", "queue-scaler", "recovery"];
/// The custom resource's logical id in the template.
pub const CUSTOM_RESOURCE: &str = "JenkinsConfig";

/// The workspace root (where `infra/` lives).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `infra/template.yaml`.
pub fn template_path() -> PathBuf {
    workspace_dir().join("infra").join("template.yaml")
}

/// Why a local deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("template: {0}")]
    Template(String),
    #[error("parameters: {0}")]
    Parameters(String),
    #[error("aws {command}: {detail}")]
    Cli { command: String, detail: String },
    #[error("{call}: {detail}")]
    Aws { call: &'static str, detail: String },
    #[error("moto: {0}")]
    Moto(#[from] crate::moto::MotoError),
    #[error("config-resolver: {0}")]
    Lambda(#[from] crate::lambda::LambdaError),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

// ---------------------------------------------------------------------------------------------
// The template as JSON
// ---------------------------------------------------------------------------------------------

/// Parses a CloudFormation YAML template into its JSON form: `!Ref X` → `{"Ref": "X"}`,
/// `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Condition C` → `{"Condition": "C"}`, every
/// other short tag `!Name v` → `{"Fn::Name": v}`.
pub fn template_json(yaml: &str) -> Result<Value, String> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    yaml_to_json(value)
}

fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| format!("number {n}: {e}"))?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    other => return Err(format!("a mapping key is not a string: {other:?}")),
                };
                out.insert(key, yaml_to_json(value)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            let (key, inner) = match name {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                "GetAtt" => {
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((resource, attribute)) => json!([resource, attribute]),
                            None => {
                                return Err(format!("!GetAtt {s}: expected Resource.Attribute"));
                            }
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), inner)
                }
                other => (format!("Fn::{other}"), inner),
            };
            json!({ key: inner })
        }
    })
}

/// The template's resources: logical id → `(type, definition)`.
pub fn resources(template: &Value) -> BTreeMap<String, (String, Value)> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, def)| {
            let kind = def["Type"].as_str().unwrap_or_default().to_string();
            (id.clone(), (kind, def.clone()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// Reads a parameters file: `Key=Value` lines, `#` comments and blank lines ignored.
pub fn parse_parameters(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected Key=Value, got {line:?}",
                number + 1
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "line {}: {key:?} is not a parameter name",
                number + 1
            ));
        }
        if out
            .insert(key.to_string(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("line {}: {key} is given twice", number + 1));
        }
    }
    Ok(out)
}

/// Every parameter's value: the given ones, else the template's default. Unknown names and
/// missing required ones are refused (as CloudFormation would).
pub fn effective_parameters(
    template: &Value,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let declared = template["Parameters"]
        .as_object()
        .ok_or("the template declares no Parameters")?;
    if let Some(unknown) = given.keys().find(|k| !declared.contains_key(*k)) {
        return Err(format!("{unknown} is not a parameter of the template"));
    }
    let mut out = BTreeMap::new();
    for (name, def) in declared {
        let value = match (given.get(name), &def["Default"]) {
            (Some(value), _) => value.clone(),
            (None, Value::String(s)) => s.clone(),
            (None, Value::Number(n)) => n.to_string(),
            (None, _) => return Err(format!("{name} has no default and is not given")),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Evaluating intrinsic functions (for the custom resource's request)
// ---------------------------------------------------------------------------------------------

/// What intrinsic functions resolve against.
pub struct Scope<'a> {
    pub template: &'a Value,
    pub stack_name: &'a str,
    pub stack_id: &'a str,
    pub parameters: &'a BTreeMap<String, String>,
    /// Logical id → physical id, from DescribeStackResources.
    pub physical: &'a BTreeMap<String, String>,
    /// `"Logical.Attribute"` → value, for the attributes the properties use.
    pub attributes: &'a BTreeMap<String, String>,
}

impl Scope<'_> {
    fn parameter_value(&self, name: &str) -> Option<Value> {
        let value = self.parameters.get(name)?;
        let kind = self.template["Parameters"][name]["Type"]
            .as_str()
            .unwrap_or_default();
        Some(
            if kind.starts_with("List<") || kind == "CommaDelimitedList" {
                Value::Array(
                    value
                        .split(',')
                        .map(|s| Value::String(s.trim().to_string()))
                        .collect(),
                )
            } else {
                Value::String(value.clone())
            },
        )
    }

    fn reference(&self, name: &str) -> Result<Value, String> {
        let pseudo = match name {
            "AWS::StackName" => Some(self.stack_name.to_string()),
            "AWS::StackId" => Some(self.stack_id.to_string()),
            "AWS::Region" => Some(REGION.to_string()),
            "AWS::AccountId" => Some(ACCOUNT_ID.to_string()),
            "AWS::Partition" => Some("aws".to_string()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_string()),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Ok(Value::String(value));
        }
        if let Some(value) = self.parameter_value(name) {
            return Ok(value);
        }
        self.physical
            .get(name)
            .filter(|id| !id.is_empty())
            .map(|id| Value::String(id.clone()))
            .ok_or_else(|| format!("Ref {name}: no parameter, and no physical id in the stack"))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<Value, String> {
        self.attributes
            .get(&format!("{resource}.{attribute}"))
            .map(|v| Value::String(v.clone()))
            .ok_or_else(|| format!("Fn::GetAtt {resource}.{attribute} is not known locally"))
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let def = &self.template["Conditions"][name];
        if def.is_null() {
            return Err(format!("no condition {name}"));
        }
        self.truth(def)
    }

    fn truth(&self, value: &Value) -> Result<bool, String> {
        let Some((key, arg)) = single(value) else {
            return Err(format!("not a condition: {value}"));
        };
        let args = || arg.as_array().ok_or(format!("{key} takes a list"));
        match key {
            "Condition" => self.condition(arg.as_str().unwrap_or_default()),
            "Fn::Not" => Ok(!self.truth(args()?.first().ok_or("Fn::Not of nothing")?)?),
            "Fn::And" => args()?
                .iter()
                .try_fold(true, |acc, v| Ok(acc && self.truth(v)?)),
            "Fn::Or" => args()?
                .iter()
                .try_fold(false, |acc, v| Ok(acc || self.truth(v)?)),
            "Fn::Equals" => {
                let list = args()?;
                if list.len() != 2 {
                    return Err("Fn::Equals takes two values".into());
                }
                Ok(self.eval(&list[0])? == self.eval(&list[1])?)
            }
            other => Err(format!("{other} is not a condition function")),
        }
    }

    /// Evaluates a property value the way CloudFormation would before sending it.
    pub fn eval(&self, value: &Value) -> Result<Value, String> {
        if let Some((key, arg)) = single(value) {
            match key {
                "Ref" => return self.reference(arg.as_str().unwrap_or_default()),
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = arg
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let [resource, attribute] = parts[..] else {
                        return Err(format!("Fn::GetAtt {arg}: expected [Resource, Attribute]"));
                    };
                    return self.attribute(resource, attribute);
                }
                "Fn::Sub" => return self.sub(arg),
                "Fn::If" => {
                    let list = arg
                        .as_array()
                        .filter(|l| l.len() == 3)
                        .ok_or("Fn::If takes three")?;
                    let branch = if self.condition(list[0].as_str().unwrap_or_default())? {
                        &list[1]
                    } else {
                        &list[2]
                    };
                    return self.eval(branch);
                }
                "Fn::Select" => {
                    let list = arg
                        .as_array()
                        .filter(|l| l.len() == 2)
                        .ok_or("Fn::Select takes two")?;
                    let index = match self.eval(&list[0])? {
                        Value::String(s) => s.parse::<usize>().map_err(|e| e.to_string())?,
                        Value::Number(n) => n.as_u64().unwrap_or(u64::MAX) as usize,
                        other => return Err(format!("Fn::Select index {other}")),
                    };
                    let items = self.eval(&list[1])?;
                    return items
                        .get(index)
                        .cloned()
                        .ok_or_else(|| format!("Fn::Select {index} out of range"));
                }
                "Fn::Join" => {
                    let list = arg
                        .as_array()
                        .filter(|l| l.len() == 2)
                        .ok_or("Fn::Join takes two")?;
                    let separator = list[0].as_str().unwrap_or_default();
                    let items = self.eval(&list[1])?;
                    let parts: Vec<String> = items
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(scalar_string)
                        .collect();
                    return Ok(Value::String(parts.join(separator)));
                }
                _ if key.starts_with("Fn::") => {
                    return Err(format!("{key} is not evaluated by the local deploy"));
                }
                _ => {}
            }
        }
        Ok(match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.eval(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.eval(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            // CloudFormation sends every scalar property to a custom resource as a string.
            Value::Number(_) | Value::Bool(_) => Value::String(scalar_string(value)),
            other => other.clone(),
        })
    }

    fn sub(&self, arg: &Value) -> Result<Value, String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), Map::new()),
            Value::Array(list) if list.len() == 2 => (
                list[0].as_str().ok_or("Fn::Sub text")?,
                list[1].as_object().cloned().unwrap_or_default(),
            ),
            other => return Err(format!("Fn::Sub {other}")),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("Fn::Sub: unclosed ${")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = vars.get(name) {
                out.push_str(&scalar_string(&self.eval(value)?));
            } else if let Some((resource, attribute)) =
                name.split_once('.').filter(|_| !name.starts_with("AWS::"))
            {
                out.push_str(&scalar_string(&self.attribute(resource, attribute)?));
            } else {
                out.push_str(&scalar_string(&self.reference(name)?));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }
}

/// `{"Key": arg}` with exactly one key.
fn single(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The AWS CLI (the venv's awscli), pointed at moto
// ---------------------------------------------------------------------------------------------

/// The venv's `aws` command line, every call against one endpoint with test credentials.
#[derive(Debug, Clone)]
pub struct AwsCli {
    endpoint: String,
}

impl AwsCli {
    pub fn new(endpoint: impl Into<String>) -> AwsCli {
        AwsCli {
            endpoint: endpoint.into(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(venv_dir().join("bin").join("aws"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            // `package` uploads with the S3 client, which ignores --endpoint-url (MOTO.md).
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "");
        command
    }

    /// Runs `aws <args> --output json` and parses the answer (`null` for an empty one).
    pub fn json(&self, args: &[&str]) -> Result<Value, DeployError> {
        let output = self
            .command()
            .args(args)
            .args(["--output", "json"])
            .output()?;
        let name = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        if !output.status.success() {
            return Err(DeployError::Cli {
                command: name,
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&output.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| DeployError::Cli {
            command: name,
            detail: format!("answer is not JSON: {e}"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The deploy
// ---------------------------------------------------------------------------------------------

/// What the local deploy needs besides moto.
#[derive(Debug, Clone)]
pub struct LocalDeployOptions {
    pub stack_name: String,
    /// The parameters file's values (network values are replaced).
    pub parameters: BTreeMap<String, String>,
    /// The config-resolver invocation timeout.
    pub resolver_timeout: Duration,
}

impl LocalDeployOptions {
    /// `infra/parameters.example` under the given stack name.
    pub fn example(stack_name: &str) -> Result<LocalDeployOptions, DeployError> {
        let text = std::fs::read_to_string(workspace_dir().join("infra/parameters.example"))?;
        Ok(LocalDeployOptions {
            stack_name: stack_name.to_string(),
            parameters: parse_parameters(&text).map_err(DeployError::Parameters)?,
            resolver_timeout: Duration::from_secs(120),
        })
    }
}

/// One template resource and what moto made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOutcome {
    pub logical_id: String,
    pub kind: String,
    /// The physical id moto reports (empty for resources it skipped or names nothing).
    pub physical_id: String,
    /// Whether the stack lists it under its logical id (moto lists skipped ones nameless).
    pub listed: bool,
    /// Skipped on purpose: its condition is false.
    pub condition_false: bool,
}

/// The result of [`deploy_local`].
#[derive(Debug, Clone)]
pub struct LocalDeployment {
    pub stack_id: String,
    pub status: String,
    pub outputs: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
    pub resources: Vec<ResourceOutcome>,
    /// The custom resource's `Data`, as config-resolver answered it.
    pub custom_data: BTreeMap<String, String>,
    /// The request config-resolver was sent.
    pub custom_request: Value,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub hosted_zone_id: String,
}

/// Deploys `infra/template.yaml` into the given moto (see the module doc).
pub async fn deploy_local(
    moto: &MotoServer,
    options: &LocalDeployOptions,
) -> Result<LocalDeployment, DeployError> {
    let sdk = moto.sdk_config().await;
    let cli = AwsCli::new(moto.endpoint_url());
    let template_text = std::fs::read_to_string(template_path())?;
    let template = template_json(&template_text).map_err(DeployError::Template)?;

    // 1. What the stack expects to exist.
    let network = moto.prepare_network().await?;
    let subnets: Vec<String> = network
        .subnets
        .iter()
        .map(|s| s.subnet_id.clone())
        .collect();
    let domain = options
        .parameters
        .get("DomainName")
        .cloned()
        .unwrap_or_else(|| "ci.example.com".to_string());
    let zone = cli.json(&[
        "route53",
        "create-hosted-zone",
        "--name",
        &domain,
        "--caller-reference",
        &format!("{}-{}", options.stack_name, std::process::id()),
    ])?;
    let hosted_zone_id = zone["HostedZone"]["Id"]
        .as_str()
        .and_then(|id| id.rsplit('/').next())
        .ok_or_else(|| DeployError::Cli {
            command: "route53 create-hosted-zone".into(),
            detail: "no HostedZone.Id in the answer".into(),
        })?
        .to_string();
    cli.json(&["s3api", "create-bucket", "--bucket", ARTIFACT_BUCKET])?;

    // 2. `aws cloudformation package`, with the binaries where the template's Code points.
    let staging = Staging::new()?;
    let packaged = staging.package(&cli)?;

    // 3. CreateStack with the real parameters.
    let mut given = options.parameters.clone();
    given.insert("VpcId".into(), network.vpc_id.clone());
    given.insert("PublicSubnets".into(), subnets.join(","));
    given.insert("PrivateSubnets".into(), subnets.join(","));
    given.insert("HostedZoneId".into(), hosted_zone_id.clone());
    let parameters = effective_parameters(&template, &given).map_err(DeployError::Parameters)?;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let mut create = cfn
        .create_stack()
        .stack_name(&options.stack_name)
        .template_body(packaged)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam);
    for (key, value) in &given {
        create = create.parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build(),
        );
    }
    let stack_id = create
        .send()
        .await
        .map_err(|e| aws_error("CreateStack", e))?
        .stack_id
        .ok_or_else(|| DeployError::Aws {
            call: "CreateStack",
            detail: "no StackId".into(),
        })?;

    // 4. The custom resource, answered by the real config-resolver.
    let physical = stack_resources(&cfn, &stack_id).await?;
    let attributes = attributes(&sdk, &physical).await?;
    let scope = Scope {
        template: &template,
        stack_name: &options.stack_name,
        stack_id: &stack_id,
        parameters: &parameters,
        physical: &physical,
        attributes: &attributes,
    };
    let custom_request =
        custom_resource_request(&scope, &moto.endpoint_url()).map_err(DeployError::Template)?;
    let custom_data = answer_custom_resource(moto, options, &custom_request).await?;

    // What came out.
    let stack = cfn
        .describe_stacks()
        .stack_name(&stack_id)
        .send()
        .await
        .map_err(|e| aws_error("DescribeStacks", e))?;
    let stack = stack.stacks().first().ok_or_else(|| DeployError::Aws {
        call: "DescribeStacks",
        detail: "no stack".into(),
    })?;
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    let status = stack
        .stack_status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let physical = stack_resources(&cfn, &stack_id).await?;
    let resources = outcomes(&scope, &physical);
    Ok(LocalDeployment {
        stack_id,
        status,
        outputs,
        parameters,
        resources,
        custom_data,
        custom_request,
        vpc_id: network.vpc_id,
        subnets,
        hosted_zone_id,
    })
}

fn aws_error<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    call: &'static str,
    err: aws_sdk_cloudformation::error::SdkError<E, R>,
) -> DeployError {
    DeployError::Aws {
        call,
        detail: aws_sdk_cloudformation::error::DisplayErrorContext(err).to_string(),
    }
}

/// Logical id → physical id of every resource the stack lists.
async fn stack_resources(
    cfn: &aws_sdk_cloudformation::Client,
    stack_id: &str,
) -> Result<BTreeMap<String, String>, DeployError> {
    let answer = cfn
        .describe_stack_resources()
        .stack_name(stack_id)
        .send()
        .await
        .map_err(|e| aws_error("DescribeStackResources", e))?;
    Ok(answer
        .stack_resources()
        .iter()
        .filter_map(|r| {
            let logical = r.logical_resource_id().filter(|id| !id.is_empty())?;
            Some((
                logical.to_string(),
                r.physical_resource_id().unwrap_or_default().to_string(),
            ))
        })
        .collect())
}

/// The `Fn::GetAtt` values the custom resource's properties use, read from each service.
async fn attributes(
    sdk: &aws_config::SdkConfig,
    physical: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DeployError> {
    let mut out = BTreeMap::new();
    if let Some(function) = physical.get("ConfigResolverFunction") {
        out.insert(
            "ConfigResolverFunction.Arn".to_string(),
            format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}"),
        );
    }
    if let Some(group) = physical.get("AgentSecurityGroup") {
        out.insert("AgentSecurityGroup.GroupId".to_string(), group.clone());
    }
    if let Some(template) = physical.get("AgentLaunchTemplate") {
        let answer = aws_sdk_ec2::Client::new(sdk)
            .describe_launch_templates()
            .launch_template_ids(template)
            .send()
            .await
            .map_err(|e| DeployError::Aws {
                call: "DescribeLaunchTemplates",
                detail: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
            })?;
        if let Some(version) = answer
            .launch_templates()
            .first()
            .and_then(|t| t.latest_version_number())
        {
            out.insert(
                "AgentLaunchTemplate.LatestVersionNumber".to_string(),
                version.to_string(),
            );
        }
    }
    Ok(out)
}

/// The Create request CloudFormation would send for the custom resource.
pub fn custom_resource_request(scope: &Scope<'_>, moto_endpoint: &str) -> Result<Value, String> {
    let def = &scope.template["Resources"][CUSTOM_RESOURCE];
    let kind = def["Type"].as_str().unwrap_or_default();
    let mut properties = scope.eval(&def["Properties"])?;
    let token = properties
        .as_object_mut()
        .and_then(|p| p.remove("ServiceToken"))
        .ok_or("the custom resource has no ServiceToken")?;
    let mut resource_properties = properties;
    if let Some(map) = resource_properties.as_object_mut() {
        map.insert("ServiceToken".into(), token.clone());
    }
    Ok(json!({
        "RequestType": "Create",
        "ServiceToken": token,
        "ResponseURL": format!(
            "{moto_endpoint}/cloudformation_{REGION}/cfnresponse?stack={}",
            scope.stack_id
        ),
        "StackId": scope.stack_id,
        "RequestId": format!("longshore-deploy-local-{}", std::process::id()),
        "ResourceType": kind,
        "LogicalResourceId": CUSTOM_RESOURCE,
        "ResourceProperties": resource_properties,
    }))
}

/// Runs the real config-resolver under the Lambda harness with the request; it PUTs its
/// response to moto. Returns the `Data` of that response (the function also returns it as its
/// invocation result); a FAILED answer is an error carrying config-resolver's reason.
async fn answer_custom_resource(
    moto: &MotoServer,
    options: &LocalDeployOptions,
    request: &Value,
) -> Result<BTreeMap<String, String>, DeployError> {
    let spec = FunctionSpec::new("config-resolver")
        .env("LONGSHORE_STACK", &options.stack_name)
        .env("AWS_ENDPOINT_URL", moto.endpoint_url())
        .timeout(options.resolver_timeout);
    let farm = LambdaFarm::start(&[spec]).await?;
    let answer = farm.invoke("config-resolver", request).await?;
    let value = match answer {
        Invocation::Ok(value) => value,
        Invocation::Failed {
            error_type,
            error_message,
        } => {
            return Err(DeployError::Template(format!(
                "config-resolver failed: {error_type}: {error_message}"
            )));
        }
    };
    if value["Status"] != "SUCCESS" {
        return Err(DeployError::Template(format!(
            "config-resolver answered {}: {}",
            value["Status"], value["Reason"]
        )));
    }
    Ok(value["Data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), scalar_string(v)))
        .collect())
}

fn outcomes(scope: &Scope<'_>, physical: &BTreeMap<String, String>) -> Vec<ResourceOutcome> {
    resources(scope.template)
        .into_iter()
        .map(|(logical_id, (kind, def))| {
            let condition_false = def["Condition"]
                .as_str()
                .map(|c| !scope.condition(c).unwrap_or(true))
                .unwrap_or(false);
            ResourceOutcome {
                physical_id: physical.get(&logical_id).cloned().unwrap_or_default(),
                listed: physical.contains_key(&logical_id),
                logical_id,
                kind,
                condition_false,
            }
        })
        .collect()
}

/// Resource types of the template moto 5.2.5 does not create, why, and how the farm and the
/// tests cover them (README "Infrastructure / deploy" has the same list).
pub const MOTO_GAPS: &[(&str, &str, &str)] = &[
    (
        "AWS::SecretsManager::Secret",
        "moto's CloudFormation has no Secrets Manager support (a Ref to it resolves to nothing)",
        "the farm creates the scaler's secret with CreateSecret (farm/src/stack.rs); the template test checks it is generated, never given",
    ),
    (
        "AWS::CloudWatch::Alarm",
        "moto's CloudFormation has no CloudWatch alarm support",
        "the template test checks each alarm's metric, dimensions and SNS action",
    ),
    (
        "AWS::SNS::Subscription",
        "not supported by moto's CloudFormation; also only created when AlarmEmail is given",
        "the template test checks it targets the alert topic",
    ),
    (
        "Custom::JenkinsConfig",
        "moto cannot invoke the function (no Docker) and never sends the request",
        "deploy-local builds the Create request from the template and runs the real config-resolver binary, which answers moto",
    ),
];

impl LocalDeployment {
    /// The human-readable summary `make deploy-local` prints.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("stack {} {}\n", self.stack_id, self.status));
        out.push_str(&format!(
            "pre-created: {} with subnets {}, hosted zone {}, bucket {ARTIFACT_BUCKET}\n\ncreated by moto:\n",
            self.vpc_id,
            self.subnets.join(", "),
            self.hosted_zone_id
        ));
        for r in self.resources.iter().filter(|r| r.listed) {
            out.push_str(&format!(
                "  {:<34} {:<44} {}\n",
                r.logical_id, r.kind, r.physical_id
            ));
        }
        out.push_str("\nnot created by moto:\n");
        for r in self.resources.iter().filter(|r| !r.listed) {
            let why = if r.condition_false {
                "its condition is false with these parameters".to_string()
            } else {
                MOTO_GAPS
                    .iter()
                    .find(|(kind, _, _)| *kind == r.kind)
                    .map(|(_, why, how)| format!("{why}; covered: {how}"))
                    .unwrap_or_else(|| "moto skipped it (no reason known)".to_string())
            };
            out.push_str(&format!("  {:<34} {:<30} {why}\n", r.logical_id, r.kind));
        }
        out.push_str("\ncustom resource JenkinsConfig answered by the real config-resolver:\n");
        for (key, value) in &self.custom_data {
            out.push_str(&format!("  {key} = {value}\n"));
        }
        out.push_str("\noutputs:\n");
        for (key, value) in &self.outputs {
            out.push_str(&format!("  {key} = {value}\n"));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Staging and packaging
// ---------------------------------------------------------------------------------------------

/// A private copy of `infra/template.yaml` with `out/lambda/<function>/bootstrap` next to it,
/// so the template's relative `Code` paths resolve; removed when dropped.
struct Staging {
    root: PathBuf,
}

impl Staging {
    fn new() -> Result<Staging, DeployError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let root =
            std::env::temp_dir().join(format!("longshore-deploy-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(root.join("infra"))?;
        let staging = Staging { root };
        std::fs::copy(template_path(), staging.template())?;
        for function in FUNCTIONS {
            let binary = binary_path(function);
            if !binary.is_file() {
                return Err(DeployError::Lambda(
                    crate::lambda::LambdaError::BinaryMissing {
                        function: function.to_string(),
                        path: binary,
                    },
                ));
            }
            let dir = staging.root.join("out/lambda").join(function);
            std::fs::create_dir_all(&dir)?;
            let bootstrap = dir.join("bootstrap");
            // A hard link costs nothing; across file systems, copy.
            if std::fs::hard_link(&binary, &bootstrap).is_err() {
                std::fs::copy(&binary, &bootstrap)?;
            }
        }
        Ok(staging)
    }

    fn template(&self) -> PathBuf {
        self.root.join("infra/template.yaml")
    }

    /// `aws cloudformation package`; returns the packaged template's text.
    fn package(&self, cli: &AwsCli) -> Result<String, DeployError> {
        let packaged = self.root.join("packaged.yaml");
        let template = self.template();
        cli.json(&[
            "cloudformation",
            "package",
            "--template-file",
            &template.to_string_lossy(),
            "--s3-bucket",
            ARTIFACT_BUCKET,
            "--s3-prefix",
            "lambda",
            "--output-template-file",
            &packaged.to_string_lossy(),
        ])
        .or_else(|err| match err {
            // `package` prints a human message, not JSON, on success.
            DeployError::Cli { ref detail, .. } if detail.contains("not JSON") => Ok(Value::Null),
            other => Err(other),
        })?;
        Ok(std::fs::read_to_string(packaged)?)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// `longshore-farm deploy-local`.
#[derive(Debug, clap::Args)]
pub struct DeployLocalArgs {
    /// The stack name (lowercase: it names the ECR repositories).
    #[arg(long, default_value = "longshore-local")]
    pub stack: String,
    /// The parameters file (`Key=Value` lines), as for `make deploy`.
    #[arg(long, default_value = "infra/parameters.example")]
    pub params: PathBuf,
    /// Keep moto running after the deploy (until Ctrl-C), to look around with the aws CLI.
    #[arg(long)]
    pub keep: bool,
}

/// Starts a private moto, deploys, prints the summary.
pub async fn run_cli(args: DeployLocalArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let parameters = match std::fs::read_to_string(&args.params)
        .map_err(|e| e.to_string())
        .and_then(|text| parse_parameters(&text))
    {
        Ok(parameters) => parameters,
        Err(err) => {
            eprintln!("deploy-local: {}: {err}", args.params.display());
            return ExitCode::FAILURE;
        }
    };
    let moto = match MotoServer::start() {
        Ok(moto) => moto,
        Err(err) => {
            eprintln!("deploy-local: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("moto at {}", moto.endpoint_url());
    let options = LocalDeployOptions {
        stack_name: args.stack,
        parameters,
        resolver_timeout: Duration::from_secs(120),
    };
    let code = match deploy_local(&moto, &options).await {
        Ok(deployment) => {
            print!("{}", deployment.summary());
            if deployment.status == "CREATE_COMPLETE" {
                ExitCode::SUCCESS
            } else {
                eprintln!("deploy-local: the stack is {}", deployment.status);
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("deploy-local failed: {err}");
            ExitCode::FAILURE
        }
    };
    if args.keep {
        println!(
            "moto keeps running at {} (AWS_ENDPOINT_URL={0} aws ...); Ctrl-C stops it",
            moto.endpoint_url()
        );
        if let Err(err) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for Ctrl-C: {err}");
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tags_become_intrinsic_functions() {
        let value = template_json(
            "A: !Ref X\nB: !GetAtt R.Arn\nC: !Sub 'x-${Y}'\nD: !If [C, 1, 2]\nE: !Condition C\nF: !Base64 {Fn::Sub: s}\n",
        )
        .unwrap();
        assert_eq!(value["A"], json!({"Ref": "X"}));
        assert_eq!(value["B"], json!({"Fn::GetAtt": ["R", "Arn"]}));
        assert_eq!(value["C"], json!({"Fn::Sub": "x-${Y}"}));
        assert_eq!(value["D"], json!({"Fn::If": ["C", 1, 2]}));
        assert_eq!(value["E"], json!({"Condition": "C"}));
        assert_eq!(value["F"], json!({"Fn::Base64": {"Fn::Sub": "s"}}));
        assert!(template_json("A: !GetAtt NoDot").is_err());
    }

    #[test]
    fn parameters_files_are_read_strictly() {
        let p = parse_parameters("# c\nA=1\n\nB=x,y\nC=\n").unwrap();
        assert_eq!(p["A"], "1");
        assert_eq!(p["B"], "x,y");
        assert_eq!(p["C"], "");
        assert!(parse_parameters("A 1").unwrap_err().contains("line 1"));
        assert!(parse_parameters("A=1\nA=2").unwrap_err().contains("twice"));
        let template =
            json!({"Parameters": {"A": {"Type": "String"}, "B": {"Type": "Number", "Default": 3}}});
        let given = parse_parameters("A=x").unwrap();
        let all = effective_parameters(&template, &given).unwrap();
        assert_eq!(all["B"], "3");
        assert!(effective_parameters(&template, &BTreeMap::new()).is_err());
        let unknown = parse_parameters("A=x\nZ=1").unwrap();
        assert!(
            effective_parameters(&template, &unknown)
                .unwrap_err()
                .contains("Z")
        );
    }

    #[test]
    fn intrinsics_evaluate_like_cloudformation() {
        let template = json!({
            "Parameters": {"Subnets": {"Type": "List<AWS::EC2::Subnet::Id>"}, "Cert": {"Type": "String"}, "N": {"Type": "Number"}},
            "Conditions": {"HasCert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Cert"}, ""]}]}},
        });
        let parameters = BTreeMap::from([
            ("Subnets".to_string(), "subnet-1,subnet-2".to_string()),
            ("Cert".to_string(), String::new()),
            ("N".to_string(), "5".to_string()),
        ]);
        let physical = BTreeMap::from([("Sg".to_string(), "sg-1".to_string())]);
        let attributes = BTreeMap::from([("Lt.LatestVersionNumber".to_string(), "1".to_string())]);
        let scope = Scope {
            template: &template,
            stack_name: "ci",
            stack_id: "arn:stack/ci/1",
            parameters: &parameters,
            physical: &physical,
            attributes: &attributes,
        };
        let value = scope
            .eval(&json!({
                "S": {"Ref": "Subnets"},
                "First": {"Fn::Select": [1, {"Ref": "Subnets"}]},
                "Url": {"Fn::If": ["HasCert", "https", {"Fn::Sub": "http://${AWS::StackName}-${Sg}/${!Keep}"}]},
                "V": {"Fn::GetAtt": ["Lt", "LatestVersionNumber"]},
                "N": {"Ref": "N"},
                "Num": 20,
            }))
            .unwrap();
        assert_eq!(value["S"], json!(["subnet-1", "subnet-2"]));
        assert_eq!(value["First"], "subnet-2");
        assert_eq!(value["Url"], "http://ci-sg-1/${Keep}");
        assert_eq!(value["V"], "1");
        assert_eq!(value["N"], "5");
        assert_eq!(value["Num"], "20");
        assert!(scope.eval(&json!({"Ref": "Nope"})).is_err());
        assert!(scope.eval(&json!({"Fn::GetAtt": ["Sg", "Arn"]})).is_err());
    }
}
