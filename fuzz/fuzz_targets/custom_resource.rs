//! `Custom::JenkinsConfig` requests: any JSON as the resource's properties (or as a whole
//! CloudFormation request), the stack ID and physical ID readers, and for properties that
//! parse, `resolve` against facts in which everything exists, then the renderers. Never
//! panics; the rendered fleet config reads back equal, and every master's CasC is YAML.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use longshore::domain::custom_resource::{
    Facts, IdRef, IdSource, OwnId, Properties, SecurityGroupFact, SubnetFact, parse_properties,
    resolve, stack_name,
};
use longshore::domain::fleet::FleetConfig;
use longshore::domain::render::{casc, fleet};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        ids(text);
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // A whole request carries the properties, its stack ID and (after Create) its physical ID.
    let mut stack = "ci".to_string();
    if let Some(request) = value.as_object() {
        for key in ["StackId", "PhysicalResourceId"] {
            if let Some(text) = request.get(key).and_then(Value::as_str) {
                ids(text);
            }
        }
        if let Some(name) = request
            .get("StackId")
            .and_then(Value::as_str)
            .and_then(stack_name)
        {
            stack = name.to_string();
        }
    }
    let props = value.get("ResourceProperties").unwrap_or(&value);
    let Ok(props) = parse_properties(props) else {
        return;
    };
    let Ok(resolved) = resolve(&stack, &props, &facts(&props)) else {
        return;
    };
    for master in &resolved.masters {
        let yaml = casc::master_casc(&resolved, master);
        if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(&yaml) {
            panic!("CasC of {} is not YAML ({e}):\n{yaml}", master.name);
        }
    }
    if let Ok(config) = fleet::fleet_config(&resolved) {
        let back = FleetConfig::from_json(&fleet::fleet_json(&config));
        assert_eq!(back.as_ref(), Ok(&config));
    }
});

/// The readers of stack IDs and physical IDs; an ID that parses prints back the same.
fn ids(text: &str) {
    if let Some(name) = stack_name(text) {
        assert!(text.contains(name));
    }
    if let Some(own) = OwnId::parse(text) {
        assert_eq!(own.physical_id(), text);
        assert_eq!(OwnId::parse(&own.physical_id()).as_ref(), Some(&own));
        let paths = own.paths();
        let _ = (paths.fleet(), paths.casc("master"));
    }
}

/// Facts in which everything the properties name exists in one VPC, the subnets alternate
/// between two zones, and every instance type is offered in both.
fn facts(props: &Properties) -> Facts {
    let id = |r: &IdRef| match &r.source {
        IdSource::Literal(id) => id.clone(),
        IdSource::StackResource { stack, logical_id } => format!("{stack}-{logical_id}"),
    };
    let subnet_ids: Vec<String> = props.subnets.iter().map(id).collect();
    let security_group_ids: Vec<String> = props.security_groups.iter().map(id).collect();
    let zones = ["az-a", "az-b"];
    let offerings: BTreeSet<(String, String)> = props
        .labels
        .iter()
        .flat_map(|l| &l.instance_types)
        .flat_map(|t| zones.map(|z| (t.clone(), z.to_string())))
        .collect();
    Facts {
        launch_template_id: id(&props.launch_template),
        subnets: subnet_ids
            .iter()
            .enumerate()
            .map(|(i, s)| SubnetFact {
                id: s.clone(),
                availability_zone: zones[i % 2].to_string(),
                vpc_id: "vpc-1".to_string(),
            })
            .collect(),
        security_groups: security_group_ids
            .iter()
            .map(|g| SecurityGroupFact {
                id: g.clone(),
                vpc_id: "vpc-1".to_string(),
            })
            .collect(),
        subnet_ids,
        security_group_ids,
        instance_profile: id(&props.instance_profile),
        launch_template_exists: true,
        instance_profile_arn: Some("arn:aws:iam::123456789012:instance-profile/agent".to_string()),
        offerings,
    }
}
