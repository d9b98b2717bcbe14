//! Issue 30, item 5: the deployment files in `deploy/` are what their tools take. The systemd
//! unit passes `systemd-analyze verify` (every line parsed, the command executable) with
//! `ExecStart` pointing at the `lms` just built.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/lms-server.service");
    let text = std::fs::read_to_string(&unit).expect("the unit");
    assert!(text.contains("ExecStart=/usr/local/bin/lms server start"), "the unit runs lms server");
    let dir = tempfile::tempdir().expect("a temp dir");
    let local = dir.path().join("lms-server.service");
    std::fs::write(&local, text.replace("/usr/local/bin/lms", env!("CARGO_BIN_EXE_lms"))).expect("writes");
    let out = Command::new("systemd-analyze").arg("verify").arg(&local).output();
    let out = out.expect("systemd-analyze is missing: apt-get install systemd (scripts/test does)");
    let said = String::from_utf8_lossy(&out.stderr);
    // Lines it cannot parse are warnings on stderr, not a failed status.
    let own: Vec<&str> = said.lines().filter(|l| l.contains("lms-server.service")).collect();
    assert!(out.status.success() && own.is_empty(), "{said}");
}

/// A Python with helm-python-sdk (Helm's Go SDK: templates rendered and linted offline, no helm
/// binary) and kubernetes-validate (Kubernetes' schemas), in `target/helm-venv` (made once).
fn helm_python() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/helm-venv");
    let py = venv.join("bin/python");
    let ready = Command::new(&py).args(["-c", "import helm_python, kubernetes_validate, yaml"]).status();
    if !ready.is_ok_and(|s| s.success()) {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 runs");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(["helm-python-sdk", "kubernetes-validate", "pyyaml"])
            .status()
            .expect("pip runs");
        assert!(ok.success(), "pip install helm-python-sdk kubernetes-validate failed");
    }
    py
}

/// The Helm chart renders, lints strictly and validates against Kubernetes' schemas
/// (deploy/helm/check-chart.py); the server's command line in it is one `lms` takes; probes are
/// on /health; with RPC workers, the server is given each worker's stable name.
#[test]
fn the_helm_chart_renders_to_valid_manifests() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/check-chart.py");
    let out = Command::new(helm_python()).arg(script).output().expect("the check runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let kinds = |case: &str| -> Vec<String> {
        let mut k: Vec<String> = rendered[case]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds("default"), ["Deployment", "PersistentVolumeClaim", "Service"]);
    assert_eq!(
        kinds("rpc"),
        ["Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Service", "Service", "StatefulSet"]
    );
    let find = |case: &str, kind: &str| -> serde_json::Value {
        rendered[case].as_array().expect("manifests").iter().find(|m| m["kind"] == kind).cloned().expect(kind)
    };
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lms")).args(args).arg("--help").output().expect("lms runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let server_help = help(&["server", "start"]);
    let worker_help = help(&["rpc-worker"]);
    for case in ["default", "rpc"] {
        let pod = &find(case, "Deployment")["spec"]["template"]["spec"];
        let server = &pod["containers"][0];
        assert_eq!(server["command"], serde_json::json!(["/usr/local/bin/lms", "server", "start"]));
        for arg in server["args"].as_array().expect("args") {
            let flag = arg.as_str().expect("a string").split('=').next().expect("a flag");
            assert!(
                server_help.contains(&format!("{flag} ")) || server_help.contains(&format!("{flag}\n")),
                "lms server start has no {flag}"
            );
        }
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(server[probe]["httpGet"]["path"], "/health", "{probe}");
        }
        let annotations = &find(case, "Deployment")["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
    }
    let args = find("rpc", "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    let workers = "demo-lms-server-rpc-0.demo-lms-server-rpc.llm.svc:50052,demo-lms-server-rpc-1.demo-lms-server-rpc.llm.svc:50052";
    assert!(args.contains(&format!("--rpc={workers}")), "{args}");
    let worker = &find("rpc", "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    for arg in worker["args"].as_array().expect("args") {
        let flag = arg.as_str().expect("a string").split('=').next().expect("a flag");
        assert!(worker_help.contains(flag), "lms rpc-worker has no {flag}");
    }
    assert!(worker["args"].to_string().contains("--allow-remote"), "a worker beyond loopback says so");
}
