//! The library built without the `embedded` feature (no llama.cpp) is the remote client alone: it
//! passes the shared checks against a real `lms server` process on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use lmstudio as lms;

/// `lms server start` on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts the `lms` binary that `scripts/test` builds first (`$LMS_BIN` names another).
    fn start() -> Self {
        let bin = std::env::var("LMS_BIN")
            .unwrap_or_else(|_| format!("{}/../../target/release/lms", env!("CARGO_MANIFEST_DIR")));
        let mut child = Command::new(&bin)
            .args(["server", "start", "--port", "0", "--no-discovery-port", "--parallel", "2"])
            .args(["--context-length", "2048"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} runs (cargo build --release -p lms first): {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on http://").map(str::to_owned))
            .expect("the server says where it listens");
        // Keep draining stderr so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_remote_client_alone_passes_the_shared_checks() {
    crate::store();
    let server = Server::start();
    let client = lms::Client::connect(&server.addr).expect("connects");
    crate::backends::completes_alike("remote-only", &client);
}
