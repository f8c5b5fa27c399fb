//! `recovery explain` end to end: the built binary over every AWS fixture (exit 0, a JSON
//! classification or an ignored reason) and over garbage (exit 2, a message, no panic).

use std::path::{Path, PathBuf};
use std::process::Command;

use longshore_farm::lambda::binary_path;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/aws");

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn recovery() -> Command {
    let bin = binary_path("recovery");
    assert!(
        bin.exists(),
        "{} missing: run cargo build --workspace --all-targets",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    for key in [
        "LONGSHORE_ECS_CLUSTER",
        "LONGSHORE_MASTER_SERVICES",
        "LONGSHORE_MASTER_ASG",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

#[test]
fn explains_every_fixture() {
    let mut files = Vec::new();
    walk(Path::new(FIXTURES), &mut files);
    assert!(files.len() > 10);
    for file in files {
        let out = recovery().arg("explain").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", file.display());
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        match json["outcome"].as_str() {
            Some("act") => assert!(json["cause"].is_string() && json["actions"].is_array()),
            Some("ignored") => assert!(json["reason"].as_str().is_some_and(|r| !r.is_empty())),
            other => panic!("{}: outcome {other:?}", file.display()),
        }
    }
}

#[test]
fn kx_stop_with_context_alerts_and_retires() {
    let file = Path::new(FIXTURES)
        .join("ecs-task-state-change/kx-kotlin-stopped-service-scheduler-elb-healthcheck.json");
    let out = recovery()
        .env("LONGSHORE_ECS_CLUSTER", "sin-web_cluster-dev")
        .env("LONGSHORE_MASTER_SERVICES", "other, sin-web_service-dev")
        .arg("explain")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "master_task_stopped");
    assert_eq!(json["stop"]["cause"], "elb_health_check");
    assert!(json.get("unchecked").is_none());
}

#[test]
fn garbage_and_missing_files_exit_2_with_a_message() {
    let dir = std::env::temp_dir().join(format!("recovery-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, b"{\"detail-type\": \x00\xff not json").unwrap();
    for (args, needle) in [
        (vec![garbage.to_string_lossy().to_string()], "garbage.json"),
        (
            vec![dir.join("missing.json").to_string_lossy().to_string()],
            "missing.json",
        ),
        (vec![], "usage"),
    ] {
        let out = recovery().arg("explain").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
