//! SNS adapter: recovery's alerts, published to the stack's alert topic (operators subscribe
//! e-mail, chat or a pager to it).

use crate::error::AwsError;

/// The IAM actions [`SnsAlerts`] calls (the template's roles are checked against it).
pub const IAM_ACTIONS: &[&str] = &["sns:Publish"];

/// SNS limits a subject to 100 printable ASCII characters on one line.
const SUBJECT_MAX: usize = 100;

/// Publishes alerts to one topic.
#[derive(Debug, Clone)]
pub struct SnsAlerts {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsAlerts {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: &str) -> SnsAlerts {
        SnsAlerts {
            client,
            topic_arn: topic_arn.to_string(),
        }
    }

    /// Publishes one alert; returns SNS's message ID.
    pub async fn publish(&self, subject: &str, message: &str) -> Result<String, AwsError> {
        let output = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(sns_subject(subject))
            .message(message)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("Publish", &err))?;
        Ok(output.message_id.unwrap_or_default())
    }
}

/// The subject cut to what SNS accepts: printable ASCII, one line, at most 100 characters
/// (the full text is in the message).
pub fn sns_subject(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    let clean = clean.trim();
    if clean.len() <= SUBJECT_MAX {
        return clean.to_string();
    }
    // ASCII only, so every byte index is a char boundary.
    format!("{}...", &clean[..SUBJECT_MAX - 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_sns() {
        assert_eq!(sns_subject("master a\nstopped é"), "master a stopped");
        let long = sns_subject(&"x".repeat(300));
        assert_eq!(long.len(), 100);
        assert!(long.ends_with("..."));
    }
}
