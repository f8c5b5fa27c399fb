//! Secrets where they must never be: the demo generates a fresh Jenkins API token per run and
//! collects every agent secret the masters handed out, then looks for each in the Lambdas'
//! logs. A hit names the secret's kind and the log, never the secret itself.

/// One secret to look for, with what it is (for the report).
pub struct Secret<'a> {
    pub kind: &'a str,
    pub value: &'a str,
}

/// `"<kind> in <log>"` for every secret found in a log; empty when none leaked. Secrets
/// shorter than 16 characters are not looked for: they could match by chance, and neither the
/// generated token nor an agent secret (64 hex digits) is that short.
pub fn leaks(logs: &[(&str, &str)], secrets: &[Secret<'_>]) -> Vec<String> {
    let mut found = Vec::new();
    for (log, text) in logs {
        for secret in secrets.iter().filter(|s| s.value.len() >= 16) {
            if text.contains(secret.value) {
                found.push(format!("{} in {log}", secret.kind));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token like the admin secret's (32 characters).
    fn fresh_token() -> String {
        use rand::Rng;
        let bytes: [u8; 16] = rand::rng().random();
        hex::encode(bytes)
    }

    #[test]
    fn a_planted_secret_is_found_and_named_without_its_value() {
        let token = fresh_token();
        let agent = "a".repeat(64);
        let logs = [
            ("queue-scaler.log", "GET /queue/api/json ok\nlaunched i-1"),
            ("recovery.log", &*format!("oops Authorization: {token}")),
        ];
        let secrets = [
            Secret {
                kind: "the Jenkins API token",
                value: &token,
            },
            Secret {
                kind: "an agent secret",
                value: &agent,
            },
        ];
        let found = leaks(&logs, &secrets);
        assert_eq!(found, vec!["the Jenkins API token in recovery.log"]);
        assert!(!found[0].contains(&token));
    }

    #[test]
    fn short_values_are_not_looked_for() {
        let secrets = [Secret {
            kind: "a short secret",
            value: "admin",
        }];
        assert!(leaks(&[("log", "admin admin")], &secrets).is_empty());
    }
}
