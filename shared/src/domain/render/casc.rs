//! Jenkins Configuration-as-Code for each master, rendered from the resolved configuration.
//!
//! `infra/jenkins-master/casc/jenkins.yaml` is the one copy of the layout (compiled in). Its
//! `${Name}` placeholders are filled with [`super::fn_sub`], each value written as a quoted
//! YAML string (a JSON string literal is a valid YAML double-quoted scalar), so no value can
//! break out of its field. `${!ADMIN_PASSWORD}` comes out as `${ADMIN_PASSWORD}`, which CasC
//! resolves from the master's environment: the secret itself never passes through here.

use crate::domain::custom_resource::{Master, Resolved};

use super::fn_sub;

/// The CasC layout with its placeholders, as shipped.
pub const CASC_TEMPLATE: &str = include_str!("../../../../infra/jenkins-master/casc/jenkins.yaml");

/// The environment variable CasC reads the admin password from (set from a secret by the
/// master's task definition).
pub const ADMIN_PASSWORD_VARIABLE: &str = "ADMIN_PASSWORD";

/// A value as a double-quoted YAML scalar.
fn quoted(value: &str) -> String {
    // Serializing a &str to JSON cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_string())
}

/// One master's CasC YAML.
pub fn master_casc(resolved: &Resolved, master: &Master) -> String {
    let message = format!(
        "longshore master {} of stack {}: agents are started on demand",
        master.name, resolved.stack
    );
    fn_sub(CASC_TEMPLATE, |name| match name {
        "SystemMessage" => Some(quoted(&message)),
        "AdminUser" => Some(quoted(&resolved.admin_user)),
        "StackName" => Some(quoted(&resolved.stack)),
        "MasterName" => Some(quoted(&master.name)),
        "MasterUrl" => Some(quoted(&master.url)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fleet::LaunchTemplate;
    use crate::domain::render::fn_sub_placeholders;

    fn resolved(url: &str) -> Resolved {
        Resolved {
            stack: "ci".into(),
            launch_template: LaunchTemplate {
                id: "lt-1".into(),
                version: "$Default".into(),
            },
            vpc_id: "vpc-1".into(),
            subnets: vec![],
            security_groups: vec![],
            instance_profile_arn: "arn".into(),
            masters: vec![Master {
                name: "master-a".into(),
                url: url.into(),
            }],
            admin_user: "admin".into(),
            max_agents: 1,
            boot_timeout_secs: 600,
            labels: vec![],
        }
    }

    #[test]
    fn the_template_knows_only_our_placeholders() {
        let mut names = fn_sub_placeholders(CASC_TEMPLATE);
        names.sort();
        names.dedup();
        assert_eq!(
            names,
            [
                "AdminUser",
                "MasterName",
                "MasterUrl",
                "StackName",
                "SystemMessage"
            ]
        );
    }

    #[test]
    fn rendered_casc_is_yaml_with_the_required_settings() {
        let r = resolved("https://ci.example.com/\"evil: 1");
        let text = master_casc(&r, &r.masters[0]);
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let jenkins = &doc["jenkins"];
        assert_eq!(jenkins["numExecutors"], serde_yaml::Value::from(0));
        assert_eq!(jenkins["slaveAgentPort"], serde_yaml::Value::from(-1));
        assert!(jenkins["crumbIssuer"]["standard"].is_mapping());
        assert_eq!(
            jenkins["authorizationStrategy"]["loggedInUsersCanDoAnything"]["allowAnonymousRead"],
            serde_yaml::Value::from(false)
        );
        let user = &jenkins["securityRealm"]["local"]["users"][0];
        assert_eq!(
            user["password"],
            serde_yaml::Value::from("${ADMIN_PASSWORD}")
        );
        assert_eq!(
            doc["unclassified"]["location"]["url"],
            serde_yaml::Value::from("https://ci.example.com/\"evil: 1")
        );
        assert!(
            fn_sub_placeholders(&text)
                .iter()
                .all(|n| n == ADMIN_PASSWORD_VARIABLE)
        );
    }
}
