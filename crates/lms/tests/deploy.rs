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
