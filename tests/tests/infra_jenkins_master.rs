//! The Jenkins master image's sources (`infra/jenkins-master/`): the base image and every
//! plugin pinned, the CasC layout carrying the security settings, the job-dsl seed creating the
//! sample pipeline, and the entry point writing the rendered CasC where CasC looks for it.
//! Building the image needs Docker and the Jenkins base image (not available here): these
//! tests check the sources and run the entry point script itself.

use std::path::PathBuf;
use std::process::Command;

use longshore_farm::deploy::workspace_dir;

fn master_dir() -> PathBuf {
    workspace_dir().join("infra/jenkins-master")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(master_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_base_image_and_every_plugin_are_pinned() {
    let dockerfile = read("Dockerfile");
    let from: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 1);
    let tag = from[0]
        .strip_prefix("FROM jenkins/jenkins:")
        .expect("the official Jenkins image");
    let version = tag
        .strip_suffix("-lts-jdk21")
        .expect("an LTS tag with JDK 21");
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "an exact LTS version, not a moving tag: {tag}"
    );
    assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{tag}");

    let plugins = read("plugins.txt");
    let mut names = Vec::new();
    for line in plugins.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, version) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("unpinned: {line}"));
        assert!(!version.is_empty(), "{line}");
        assert!(
            !["latest", "experimental"].contains(&version) && !version.contains(' '),
            "{line}: a moving version"
        );
        assert!(version.chars().next().unwrap().is_ascii_digit(), "{line}");
        names.push(name.to_string());
    }
    for required in [
        "configuration-as-code",
        "job-dsl",
        "workflow-aggregator",
        "git",
        "docker-workflow",
        "amazon-ecr",
        "credentials",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} missing");
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a plugin listed twice");
    assert!(
        dockerfile.contains("jenkins-plugin-cli --plugin-file /usr/share/jenkins/ref/plugins.txt")
    );
    // The image's tag in the stack is derived from this base version.
    let template = std::fs::read_to_string(workspace_dir().join("infra/template.yaml")).unwrap();
    assert!(template.contains(&format!("Default: \"{version}-1\"")));
    let makefile = std::fs::read_to_string(workspace_dir().join("Makefile")).unwrap();
    assert!(makefile.contains(&format!("MASTER_IMAGE_TAG ?= {version}-1")));
}

#[test]
fn the_casc_layout_carries_the_security_settings() {
    let casc: serde_yaml::Value = serde_yaml::from_str(&read("casc/jenkins.yaml")).expect("YAML");
    let jenkins = &casc["jenkins"];
    assert_eq!(
        jenkins["numExecutors"].as_i64(),
        Some(0),
        "no executors on the master"
    );
    assert_eq!(
        jenkins["slaveAgentPort"].as_i64(),
        Some(-1),
        "TCP agent port disabled"
    );
    assert!(
        jenkins["crumbIssuer"]["standard"].is_mapping(),
        "CSRF protection"
    );
    let realm = &jenkins["securityRealm"]["local"];
    assert_eq!(realm["allowsSignup"].as_bool(), Some(false));
    assert_eq!(
        realm["users"][0]["password"].as_str(),
        Some("${!ADMIN_PASSWORD}"),
        "the admin password comes from the environment (Secrets Manager), never the file"
    );
    assert_eq!(
        jenkins["authorizationStrategy"]["loggedInUsersCanDoAnything"]["allowAnonymousRead"]
            .as_bool(),
        Some(false)
    );
    assert!(
        casc["unclassified"]["location"]["url"].is_string(),
        "Jenkins URL"
    );
}

#[test]
fn the_seed_job_creates_the_sample_docker_pipeline() {
    let seed: serde_yaml::Value = serde_yaml::from_str(&read("seed/seed.yaml")).expect("YAML");
    let file = seed["jobs"][0]["file"].as_str().expect("a job-dsl file");
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(&format!("seed/sample_pipeline.groovy {file}")));
    let casc_config = dockerfile
        .lines()
        .find_map(|l| {
            l.split_once("CASC_JENKINS_CONFIG=\"")
                .map(|(_, v)| v.trim_end_matches('"'))
        })
        .expect("CASC_JENKINS_CONFIG");
    let sources: Vec<&str> = casc_config.split(',').collect();
    assert_eq!(
        sources,
        vec![
            "/usr/share/jenkins/casc/seed.yaml",
            "/var/jenkins_home/casc/jenkins.yaml"
        ]
    );
    let groovy = read("seed/sample_pipeline.groovy");
    assert!(groovy.contains("pipelineJob('sample-docker-build')"));
    assert!(groovy.contains("agent { label 'docker' }"));
    assert!(groovy.contains("docker build"));
    assert!(groovy.contains("docker push"));
    assert!(groovy.contains("System.getenv('LONGSHORE_BUILD_REPOSITORY')"));
    // The masters are given that repository, and the agents may push to it.
    let template = std::fs::read_to_string(workspace_dir().join("infra/template.yaml")).unwrap();
    assert!(template.contains(
        "{Name: LONGSHORE_BUILD_REPOSITORY, Value: !GetAtt BuildRepository.RepositoryUri}"
    ));
    // No groovy init scripts with sleeps, as the seed had.
    for entry in walk(&master_dir()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !entry.to_string_lossy().contains("init.groovy"),
            "{entry:?}"
        );
        assert!(!text.contains("sleep("), "{entry:?} sleeps");
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn unique_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("longshore-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_entry_point_writes_the_rendered_casc_and_refuses_to_start_without_it() {
    let script = master_dir().join("longshore-master");
    let home = unique_dir("jenkins-home");
    let casc = "jenkins:\n  numExecutors: 0\n";
    // Everything but the final exec of the stock start script (absent here: exit 127).
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("JENKINS_HOME", &home);
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().expect("bash")
    };
    let missing = run(&[("ADMIN_PASSWORD", "x")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("LONGSHORE_CASC is not set"));
    assert!(!home.join("casc/jenkins.yaml").exists());
    let no_password = run(&[("LONGSHORE_CASC", casc)]);
    assert!(String::from_utf8_lossy(&no_password.stderr).contains("ADMIN_PASSWORD is not set"));

    let started = run(&[("LONGSHORE_CASC", casc), ("ADMIN_PASSWORD", "x")]);
    assert_eq!(
        started.status.code(),
        Some(127),
        "reached the exec of jenkins.sh"
    );
    assert!(String::from_utf8_lossy(&started.stderr).contains("/usr/local/bin/jenkins.sh"));
    let written = home.join("casc/jenkins.yaml");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), casc);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = std::fs::remove_dir_all(&home);
}
