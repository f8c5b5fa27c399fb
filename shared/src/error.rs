//! Error types, one enum per concern, so a caller can tell a bad setting from a Jenkins that
//! answered HTML from an AWS call that failed, and log or retry accordingly.

use thiserror::Error;

/// A setting read from the environment at cold start is missing or malformed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("setting {name} is missing")]
    Missing { name: &'static str },
    #[error("setting {name} has the invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// A Jenkins master could not be read or refused an action.
#[derive(Debug, Error)]
pub enum JenkinsError {
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}: {snippet}")]
    Status {
        url: String,
        status: u16,
        snippet: String,
    },
    #[error(
        "{url} answered {content_type:?} instead of JSON (a login page or a proxy?): {snippet}"
    )]
    NotJson {
        url: String,
        content_type: String,
        snippet: String,
    },
    #[error("{url} answered JSON that does not fit {what}: {source}")]
    Malformed {
        url: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url} answered an agent descriptor without a secret")]
    NoSecret { url: String },
}

/// An AWS call failed. The SDK's own error is kept as text plus its error code, because the
/// callers decide on the code (capacity, throttling, not found) and log the rest.
#[derive(Debug, Error)]
#[error("{operation} failed ({code}): {message}")]
pub struct AwsError {
    pub operation: &'static str,
    /// The AWS error code, e.g. `InsufficientInstanceCapacity`; "unknown" when the call
    /// failed before AWS answered (timeout, connection refused).
    pub code: String,
    pub message: String,
}

impl AwsError {
    /// Builds the error from any SDK error, keeping the AWS code that callers branch on.
    pub fn from_sdk<E>(operation: &'static str, err: &aws_sdk_ec2::error::SdkError<E>) -> AwsError
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_sdk_ec2::error::ProvideErrorMetadata;
        let code = err.code().unwrap_or("unknown").to_string();
        let message = match err.message() {
            Some(message) => message.to_string(),
            None => aws_sdk_ec2::error::DisplayErrorContext(err).to_string(),
        };
        AwsError {
            operation,
            code,
            message,
        }
    }

    /// Builds an error for an answer AWS gave that lacks something the caller needs.
    pub fn missing(operation: &'static str, what: &str) -> AwsError {
        AwsError {
            operation,
            code: "MissingField".to_string(),
            message: format!("the answer has no {what}"),
        }
    }
}
