//! Reads the scaler's Jenkins credentials from Secrets Manager, once per cold start.

use crate::error::AwsError;

/// The IAM actions [`jenkins_credentials`] calls (the template's roles are checked against it).
pub const IAM_ACTIONS: &[&str] = &["secretsmanager:GetSecretValue"];

/// A Jenkins user and API token.
#[derive(Clone, PartialEq, Eq)]
pub struct JenkinsCredentials {
    pub user: String,
    pub token: String,
}

impl std::fmt::Debug for JenkinsCredentials {
    // The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JenkinsCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Reads the secret: a JSON object `{"user": …, "token": …}` or a bare token for `default_user`.
pub async fn jenkins_credentials(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    default_user: &str,
) -> Result<JenkinsCredentials, AwsError> {
    let value = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|err| AwsError::from_sdk("GetSecretValue", &err))?
        .secret_string
        .ok_or_else(|| AwsError::missing("GetSecretValue", "secret string"))?;
    parse_credentials(&value, default_user)
        .ok_or_else(|| AwsError::missing("GetSecretValue", "user and token in the secret"))
}

fn parse_credentials(value: &str, default_user: &str) -> Option<JenkinsCredentials> {
    let value = value.trim();
    if value.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(value).ok()?;
        let token = json.get("token")?.as_str()?.to_string();
        let user = json
            .get("user")
            .and_then(|u| u.as_str())
            .unwrap_or(default_user)
            .to_string();
        return (!token.is_empty()).then_some(JenkinsCredentials { user, token });
    }
    (!value.is_empty()).then(|| JenkinsCredentials {
        user: default_user.to_string(),
        token: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_bare_tokens() {
        let json = parse_credentials(r#"{"user":"scaler","token":"t0k"}"#, "x").unwrap();
        assert_eq!((json.user.as_str(), json.token.as_str()), ("scaler", "t0k"));
        let bare = parse_credentials(" t0k\n", "longshore").unwrap();
        assert_eq!(
            (bare.user.as_str(), bare.token.as_str()),
            ("longshore", "t0k")
        );
        assert!(parse_credentials(r#"{"user":"scaler"}"#, "x").is_none());
        assert!(parse_credentials("  ", "x").is_none());
        assert!(!format!("{json:?}").contains("t0k"));
    }
}
