//! recovery's handler. For now only the offline half: [`explain`] reads one saved EventBridge
//! event and prints what [`crate::domain::recovery::classify`] makes of it, so an operator can
//! replay a real event (`recovery explain EVENT.json`) without AWS credentials or side effects.
//! The Lambda path still refuses events until the actions are wired in their own issue.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::domain::recovery::{Context, classify};

/// The settings `explain` reads to know the stack's own resources. Each one left unset skips
/// its check, and the classification lists the skipped check under `unchecked`.
pub const ENV_CLUSTER: &str = "LONGSHORE_ECS_CLUSTER";
/// Comma-separated names of the master ECS services.
pub const ENV_MASTER_SERVICES: &str = "LONGSHORE_MASTER_SERVICES";
/// The masters' Auto Scaling group name.
pub const ENV_MASTER_ASG: &str = "LONGSHORE_MASTER_ASG";

/// Why an event file could not be explained: the operator's input, not a bug, so exit 2.
#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("cannot read event file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event file {path} is not JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Builds the [`Context`] from settings read through `get` (the environment in the binary, a
/// map in tests). Blank values count as unset.
pub fn context_from(get: impl Fn(&str) -> Option<String>) -> Context {
    let set = |key: &str| {
        get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Context {
        cluster: set(ENV_CLUSTER),
        master_services: set(ENV_MASTER_SERVICES)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        master_asg: set(ENV_MASTER_ASG),
    }
}

/// Classifies the event saved in `path` and returns it as pretty JSON. A UTF-8 byte order mark
/// is skipped (some published samples start with one).
pub fn explain(path: &Path, ctx: &Context) -> Result<String, ExplainError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExplainError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let event: Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|source| {
            ExplainError::Json {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let classification = classify(&event, ctx);
    // Serializing a derived Serialize of strings and enums into a String cannot fail.
    Ok(serde_json::to_string_pretty(&classification)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_lists_and_treats_blank_as_unset() {
        let ctx = context_from(|k| match k {
            ENV_MASTER_SERVICES => Some(" a, b ,,".to_string()),
            ENV_CLUSTER => Some("  ".to_string()),
            _ => None,
        });
        assert_eq!(ctx.master_services, vec!["a", "b"]);
        assert_eq!(ctx.cluster, None);
        assert_eq!(ctx.master_asg, None);
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = explain(Path::new("/nonexistent/event.json"), &Context::default());
        assert!(matches!(err, Err(ExplainError::Read { .. })));
    }
}
