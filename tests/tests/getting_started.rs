//! docs/getting-started.md, path B, run as written: the guide's first shell block starts
//! the local cluster (`scripts/local-cluster.sh`), and every later shell block of that
//! path is fed to the shell it opens, in order, stopping at the first failing command.
//! The guide's own `kubectl wait` commands are what shows the HPA scaling 1 → 5 → 1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const SECTION: &str = "## B. On this repository's local cluster";
const ENTRY: &str = "bash scripts/local-cluster.sh";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sh` blocks of path B, in order.
fn path_b_blocks() -> Vec<String> {
    let guide = std::fs::read_to_string(root().join("docs/getting-started.md"))
        .expect("docs/getting-started.md");
    let section = guide
        .split_once(SECTION)
        .unwrap_or_else(|| panic!("docs/getting-started.md has no {SECTION:?}"))
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in section.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(language) = trimmed.strip_prefix("```") {
                    let indent = line.len() - trimmed.len();
                    current = Some((language.to_string(), " ".repeat(indent)));
                    blocks.push((language.to_string(), String::new()));
                }
            }
            Some((_, indent)) => {
                if trimmed == "```" {
                    current = None;
                } else {
                    let text = line.strip_prefix(indent.as_str()).unwrap_or(line);
                    let block = &mut blocks.last_mut().expect("an open block").1;
                    block.push_str(text);
                    block.push('\n');
                }
            }
        }
    }
    blocks
        .into_iter()
        .filter(|(language, _)| language == "sh")
        .map(|(_, text)| text)
        .collect()
}

/// The command that starts the cluster, and the script its shell runs.
fn path_b() -> (String, String) {
    let blocks = path_b_blocks();
    let (entry, rest) = blocks.split_first().expect("path B has shell blocks");
    let mut script = String::from("set -euxo pipefail\n");
    for block in rest {
        script.push_str(block);
    }
    (entry.trim().to_string(), script)
}

#[test]
fn path_b_is_a_script_that_ends_in_a_scaled_deployment() {
    let (entry, script) = path_b();
    assert_eq!(entry, ENTRY);
    for step in [
        "helm install metrics-registry charts/metrics-registry",
        "kind: ServiceMetric",
        "kind: HorizontalPodAutoscaler",
        "echo 50 > \"$DEMO_QUEUE_FILE\"",
        "--for=jsonpath='{.status.desiredReplicas}'=5",
        "--for=jsonpath='{.status.readyReplicas}'=5",
        "echo 0 > \"$DEMO_QUEUE_FILE\"",
        "--for=jsonpath='{.status.desiredReplicas}'=1",
        "--for=jsonpath='{.status.currentReplicas}'=1",
    ] {
        assert!(script.contains(step), "path B lost {step:?}:\n{script}");
    }
    // Every wait is bounded, so a broken step fails instead of hanging.
    let joined = script.replace("\\\n", "");
    for line in joined.lines().filter(|l| l.starts_with("kubectl wait")) {
        assert!(line.contains("--timeout="), "{line}");
    }
}

#[tokio::test]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn a_newcomer_following_path_b_reaches_a_scaling_hpa() {
    let (entry, script) = path_b();
    // Inside the test namespace nothing can be built from the network: kubectl must be there.
    if let Some(dir) = std::env::var_os("K8S_BIN_DIR") {
        let kubectl = Path::new(&dir).join("kubectl");
        assert!(
            kubectl.is_file(),
            "{} is missing: run scripts/build-kubectl.sh before the tests",
            kubectl.display()
        );
    }
    println!("$ {entry}\n{script}");
    let mut command = tokio::process::Command::new("bash");
    command
        .arg("-c")
        .arg(&entry)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The cluster's processes are in this group, so a timeout can stop them all.
        .process_group(0)
        .kill_on_drop(true);
    // What the scripts need, and nothing cargo sets for a test.
    metrics_registry_tests::control_plane::keep_only_build_env(
        &mut command,
        &[
            "K8S_BIN_DIR",
            "METRICS_REGISTRY_IMAGE_ARCHIVE",
            "METRICS_REGISTRY_TEST_NETNS",
        ],
    );
    // Inside the test namespace nothing can be downloaded; everything is built before.
    command.env("CARGO_NET_OFFLINE", "true");
    let mut child = command.spawn().expect("bash");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, script.as_bytes())
        .await
        .expect("the script is written");
    drop(stdin);
    let pid = child.id().expect("a pid") as i32;
    let output =
        match tokio::time::timeout(Duration::from_secs(900), child.wait_with_output()).await {
            Ok(output) => output.expect("bash ran"),
            Err(_) => {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &format!("-{pid}")])
                    .status();
                panic!("path B did not finish within 15 minutes");
            }
        };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(output.status.success(), "path B failed: {}", output.status);
    // The guide's waits printed their success: metrics read, 5 replicas wanted and Ready,
    // back to 1.
    assert_eq!(
        stdout
            .matches("horizontalpodautoscaler.autoscaling/worker condition met")
            .count(),
        4,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("deployment.apps/worker condition met")
            .count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("\"value\":\"0\""), "{stdout}");
    assert!(stderr.contains("stopping the local cluster"), "{stderr}");
}
