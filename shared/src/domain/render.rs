//! Rendering of the files longshore hands to other programs: the agents' cloud-init user data
//! (here), and the masters' CasC YAML and the scaler's fleet configuration (added beside it).
//!
//! Agent user data: `infra/agent/user-data.yaml` is the one copy of the agent boot. The stack's
//! launch template embeds it through `Fn::Sub`; the local farm has no CloudFormation, so
//! [`agent_user_data`] substitutes the placeholders exactly as `Fn::Sub` would, and
//! [`parse_agent_user_data`] reads it back the way an instance (or the farm's booter) gets it.
//! Everything here is pure: no I/O, no clock.

pub mod casc;
pub mod fleet;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

/// The agent user data as written, with its `Fn::Sub` placeholders (`${AWS::Region}`,
/// `${AWS::StackName}`). Compiled in, so the farm boots agents from the same file the stack
/// ships.
pub const AGENT_USER_DATA_TEMPLATE: &str = include_str!("../../../infra/agent/user-data.yaml");

/// Where the user data puts the boot settings (a `KEY=value` file).
pub const AGENT_ENV_PATH: &str = "/etc/longshore/agent.env";
/// Where the user data puts the boot script.
pub const AGENT_BOOT_SCRIPT_PATH: &str = "/usr/local/bin/longshore-agent-boot";
/// Where the user data puts the systemd unit that runs the boot script.
pub const AGENT_SERVICE_PATH: &str = "/etc/systemd/system/longshore-agent.service";

/// EC2 accepts at most 16 KiB of user data; cloud-init gunzips it. A bound well above both
/// keeps a hostile gzip from inflating without limit.
const MAX_USER_DATA_BYTES: u64 = 1024 * 1024;

/// The values CloudFormation fills into the agent user data's placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBootParams {
    /// `${AWS::Region}`: where the instance reads its secret from SSM.
    pub region: String,
    /// `${AWS::StackName}`: names the secret prefix `/longshore/<stack>/agents`.
    pub stack_name: String,
}

/// The agent user data with its placeholders filled in, byte for byte what the launch template
/// would hand to EC2 for a stack with these parameters.
pub fn agent_user_data(params: &AgentBootParams) -> String {
    fn_sub(AGENT_USER_DATA_TEMPLATE, |name| match name {
        "AWS::Region" => Some(params.region.clone()),
        "AWS::StackName" => Some(params.stack_name.clone()),
        _ => None,
    })
}

/// CloudFormation's `Fn::Sub` over one string: `${Name}` becomes `lookup(Name)`, `${!Text}`
/// becomes the literal `${Text}`. A name `lookup` does not know is left as written
/// (CloudFormation would refuse the template; the tests keep our file free of such names).
pub fn fn_sub(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str("${");
            out.push_str(literal);
            out.push('}');
        } else if let Some(value) = lookup(name) {
            out.push_str(&value);
        } else {
            out.push_str(&rest[start..start + 2 + end + 1]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The `${Name}` placeholders a template still holds (not the `${!literal}` escapes).
pub fn fn_sub_placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            names.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    names
}

/// What an agent's user data tells it (and the farm's booter) to do at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBootSettings {
    /// The region of the stack (SSM is read there).
    pub region: String,
    /// The stack name.
    pub stack: String,
    /// SSM path under which the scaler writes each agent's secret (`<prefix>/<instance-id>`).
    pub secret_prefix: String,
    /// How long an instance waits for its secret before the boot fails.
    pub secret_wait: Duration,
    /// The agent's work directory (`-workDir`).
    pub work_dir: String,
    /// The instance metadata service to ask (the real one, or a fake in tests).
    pub imds_endpoint: String,
    /// The tag naming the agent's master.
    pub master_tag: String,
    /// The tag holding the URL of the agent's master task (ends with `/`).
    pub master_url_tag: String,
    /// The settings file's text (`KEY=value` lines), as written to the instance.
    pub env_file: String,
    /// The boot script's text, as written to the instance.
    pub boot_script: String,
    /// The systemd unit's text, as written to the instance.
    pub service_unit: String,
}

impl AgentBootSettings {
    /// The SSM parameter holding the secret of `instance_id`.
    pub fn secret_parameter(&self, instance_id: &str) -> String {
        format!(
            "{}/{}",
            self.secret_prefix.trim_end_matches('/'),
            instance_id
        )
    }
}

/// Why user data is not a longshore agent boot the booter can follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootDataError {
    /// Empty user data (an instance launched without any).
    #[error("the user data is empty")]
    Empty,
    /// Larger than any user data EC2 accepts, even decompressed.
    #[error("the user data is larger than {MAX_USER_DATA_BYTES} bytes")]
    TooLarge,
    /// Starts like gzip but does not decompress.
    #[error("the user data looks gzip-compressed but does not decompress: {0}")]
    BadGzip(String),
    /// Not text.
    #[error("the user data is not UTF-8 text")]
    NotText,
    /// Text, but not a cloud-config document (cloud-init needs the `#cloud-config` first line).
    #[error("the user data is not a #cloud-config document (first line {0:?})")]
    NotCloudConfig(String),
    /// A cloud-config document that is not valid YAML of the expected shape.
    #[error("the cloud-config document is not valid: {0}")]
    Yaml(String),
    /// A cloud-config document, but not ours: a file of the agent boot is missing.
    #[error("not a longshore agent boot: no {0} in write_files")]
    MissingFile(&'static str),
    /// A `write_files` entry uses an encoding we do not read.
    #[error("write_files entry {path} has unsupported encoding {encoding:?}")]
    UnsupportedEncoding {
        /// The file.
        path: String,
        /// Its declared encoding.
        encoding: String,
    },
    /// A setting the boot needs is not in the settings file.
    #[error("setting {0} is missing from {AGENT_ENV_PATH}")]
    MissingSetting(&'static str),
    /// A setting has a value the boot cannot use.
    #[error("setting {name} has a bad value {value:?}: {reason}")]
    BadSetting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// A placeholder was never substituted (the raw template was launched without `Fn::Sub`).
    #[error("setting {name} still holds a Fn::Sub placeholder: {value:?}")]
    Unrendered {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// Reads user data bytes as cloud-init receives them from EC2 (base64 already decoded):
/// plain text or gzip-compressed text.
pub fn parse_agent_user_data_bytes(data: &[u8]) -> Result<AgentBootSettings, BootDataError> {
    if data.is_empty() {
        return Err(BootDataError::Empty);
    }
    if data.len() as u64 > MAX_USER_DATA_BYTES {
        return Err(BootDataError::TooLarge);
    }
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(data)
            .take(MAX_USER_DATA_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| BootDataError::BadGzip(e.to_string()))?;
        if text.len() as u64 > MAX_USER_DATA_BYTES {
            return Err(BootDataError::TooLarge);
        }
        let text = String::from_utf8(text).map_err(|_| BootDataError::NotText)?;
        return parse_agent_user_data(&text);
    }
    let text = std::str::from_utf8(data).map_err(|_| BootDataError::NotText)?;
    parse_agent_user_data(text)
}

#[derive(Deserialize)]
struct CloudConfig {
    #[serde(default)]
    write_files: Vec<WriteFile>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    encoding: Option<String>,
}

/// Reads rendered agent user data (text) into the settings the boot follows. Refuses anything
/// that is not a longshore agent boot, with the reason.
pub fn parse_agent_user_data(text: &str) -> Result<AgentBootSettings, BootDataError> {
    if text.trim().is_empty() {
        return Err(BootDataError::Empty);
    }
    let first = text.lines().next().unwrap_or_default().trim_end();
    if first != "#cloud-config" {
        let shown: String = first.chars().take(40).collect();
        return Err(BootDataError::NotCloudConfig(shown));
    }
    let doc: CloudConfig =
        serde_yaml::from_str(text).map_err(|e| BootDataError::Yaml(e.to_string()))?;
    let mut files = BTreeMap::new();
    for file in doc.write_files {
        match file.encoding.as_deref() {
            None | Some("text/plain") => {}
            Some(other) => {
                return Err(BootDataError::UnsupportedEncoding {
                    path: file.path,
                    encoding: other.to_string(),
                });
            }
        }
        files.insert(file.path, file.content);
    }
    let env = files
        .get(AGENT_ENV_PATH)
        .ok_or(BootDataError::MissingFile(AGENT_ENV_PATH))?;
    let boot_script = files
        .get(AGENT_BOOT_SCRIPT_PATH)
        .ok_or(BootDataError::MissingFile(AGENT_BOOT_SCRIPT_PATH))?
        .clone();
    let service_unit = files
        .get(AGENT_SERVICE_PATH)
        .ok_or(BootDataError::MissingFile(AGENT_SERVICE_PATH))?
        .clone();
    let vars = parse_env_file(env);
    let get = |name: &'static str| -> Result<String, BootDataError> {
        let value = vars.get(name).ok_or(BootDataError::MissingSetting(name))?;
        if value.is_empty() {
            return Err(BootDataError::BadSetting {
                name,
                value: value.clone(),
                reason: "empty",
            });
        }
        if !fn_sub_placeholders(value).is_empty() {
            return Err(BootDataError::Unrendered {
                name,
                value: value.clone(),
            });
        }
        Ok(value.clone())
    };
    let wait_text = get("LONGSHORE_SECRET_WAIT_SECONDS")?;
    let secret_wait = wait_text
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| BootDataError::BadSetting {
            name: "LONGSHORE_SECRET_WAIT_SECONDS",
            value: wait_text.clone(),
            reason: "not a whole number of seconds",
        })?;
    let imds_endpoint = get("LONGSHORE_IMDS_ENDPOINT")?;
    if !imds_endpoint.starts_with("http://") && !imds_endpoint.starts_with("https://") {
        return Err(BootDataError::BadSetting {
            name: "LONGSHORE_IMDS_ENDPOINT",
            value: imds_endpoint,
            reason: "not an http(s) URL",
        });
    }
    let secret_prefix = get("LONGSHORE_SECRET_PREFIX")?;
    if !secret_prefix.starts_with('/') {
        return Err(BootDataError::BadSetting {
            name: "LONGSHORE_SECRET_PREFIX",
            value: secret_prefix,
            reason: "an SSM path must start with /",
        });
    }
    Ok(AgentBootSettings {
        region: get("LONGSHORE_REGION")?,
        stack: get("LONGSHORE_STACK")?,
        secret_prefix,
        secret_wait,
        work_dir: get("LONGSHORE_WORK_DIR")?,
        imds_endpoint,
        master_tag: get("LONGSHORE_MASTER_TAG")?,
        master_url_tag: get("LONGSHORE_MASTER_URL_TAG")?,
        env_file: env.clone(),
        boot_script,
        service_unit,
    })
}

/// `KEY=value` lines as bash's `. file` reads our settings file: comments and blank lines
/// skipped, one level of matching single or double quotes removed.
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(open, close)| {
                    value
                        .strip_prefix(*open)
                        .and_then(|v| v.strip_suffix(*close))
                })
                .unwrap_or(value);
            Some((key.trim().to_string(), unquoted.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn params() -> AgentBootParams {
        AgentBootParams {
            region: "eu-west-1".into(),
            stack_name: "ci-farm".into(),
        }
    }

    #[test]
    fn the_template_uses_only_pseudo_parameters() {
        let mut names = fn_sub_placeholders(AGENT_USER_DATA_TEMPLATE);
        names.sort();
        names.dedup();
        assert_eq!(names, ["AWS::Region", "AWS::StackName"]);
    }

    /// EC2 refuses user data over 16 KiB (before base64); leave room for longer stack names.
    #[test]
    fn the_user_data_fits_ec2s_limit() {
        let text = agent_user_data(&AgentBootParams {
            region: "ap-southeast-3".into(),
            stack_name: "x".repeat(128),
        });
        assert!(text.len() < 12 * 1024, "{} bytes", text.len());
    }

    #[test]
    fn rendering_fills_every_placeholder() {
        let text = agent_user_data(&params());
        assert!(fn_sub_placeholders(&text).is_empty(), "{text}");
        assert!(text.contains("LONGSHORE_REGION=eu-west-1\n"));
        assert!(text.contains("LONGSHORE_SECRET_PREFIX=/longshore/ci-farm/agents\n"));
        assert!(text.starts_with("#cloud-config\n"));
    }

    #[test]
    fn the_user_data_holds_no_secret_and_uses_secret_from_a_file() {
        let text = agent_user_data(&params());
        assert!(text.contains("-secret \"@$secret_file\""));
        assert!(!text.contains("set -x"));
    }

    #[test]
    fn rendered_user_data_parses_back() {
        let settings = parse_agent_user_data(&agent_user_data(&params())).unwrap();
        assert_eq!(settings.region, "eu-west-1");
        assert_eq!(settings.stack, "ci-farm");
        assert_eq!(settings.secret_prefix, "/longshore/ci-farm/agents");
        assert_eq!(
            settings.secret_parameter("i-0abc"),
            "/longshore/ci-farm/agents/i-0abc"
        );
        assert_eq!(settings.secret_wait, Duration::from_secs(300));
        assert_eq!(settings.work_dir, "/var/lib/jenkins-agent");
        assert_eq!(settings.imds_endpoint, "http://169.254.169.254");
        assert_eq!(settings.master_tag, "longshore:master");
        assert_eq!(settings.master_url_tag, "longshore:master-url");
        assert!(settings.boot_script.starts_with("#!/bin/bash\n"));
        assert!(settings.boot_script.contains("set -euo pipefail"));
        assert!(settings.service_unit.contains("Restart=always"));
    }

    #[test]
    fn gzip_user_data_parses_like_text() {
        let text = agent_user_data(&params());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(
            parse_agent_user_data_bytes(&bytes).unwrap(),
            parse_agent_user_data(&text).unwrap()
        );
        assert_eq!(
            parse_agent_user_data_bytes(text.as_bytes()).unwrap(),
            parse_agent_user_data(&text).unwrap()
        );
    }

    #[test]
    fn fn_sub_matches_cloudformation() {
        let vars = |n: &str| (n == "X").then(|| "1".to_string());
        assert_eq!(fn_sub("a${X}b", vars), "a1b");
        assert_eq!(fn_sub("a${!X}b", vars), "a${X}b");
        assert_eq!(fn_sub("a${Y}b", vars), "a${Y}b");
        assert_eq!(fn_sub("a${X", vars), "a${X");
        assert_eq!(fn_sub("$X {X}", vars), "$X {X}");
    }

    #[test]
    fn bad_user_data_is_refused_with_a_reason() {
        let rendered = agent_user_data(&params());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (b"#!/bin/bash\necho hi\n".to_vec(), "not a #cloud-config"),
            (b"#cloud-config\nwrite_files: [\n".to_vec(), "not valid"),
            (
                b"#cloud-config\npackages: [git]\n".to_vec(),
                "no /etc/longshore/agent.env",
            ),
            (vec![0x1f, 0x8b, 0, 1, 2], "does not decompress"),
            (vec![0xff, 0xfe, 0x00], "not UTF-8"),
            (AGENT_USER_DATA_TEMPLATE.as_bytes().to_vec(), "placeholder"),
            (
                rendered
                    .replace(
                        "LONGSHORE_SECRET_WAIT_SECONDS=300",
                        "LONGSHORE_SECRET_WAIT_SECONDS=soon",
                    )
                    .into_bytes(),
                "whole number",
            ),
            (
                rendered
                    .replace("      LONGSHORE_STACK=ci-farm\n", "")
                    .into_bytes(),
                "LONGSHORE_STACK is missing",
            ),
            (
                rendered
                    .replace(
                        "path: /usr/local/bin/longshore-agent-boot",
                        "path: /tmp/other",
                    )
                    .into_bytes(),
                "no /usr/local/bin/longshore-agent-boot",
            ),
        ];
        for (bytes, want) in cases {
            let err = parse_agent_user_data_bytes(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn env_file_quotes_and_comments() {
        let vars = parse_env_file("# c\n\nA=1\nexport B=\"two words\"\nC='x'\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x");
    }
}
