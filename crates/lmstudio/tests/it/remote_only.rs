//! The library built without the `embedded` feature (no llama.cpp) is the remote client alone: it
//! passes the shared checks against a real `lms server` process on loopback (the `lms` that
//! `scripts/test` builds first; `$LMS_BIN` names another).

use lms_test_support::{lms_bin, LmsServer};
use lmstudio as lms;

#[test]
fn the_remote_client_alone_passes_the_shared_checks() {
    crate::store();
    let server = LmsServer::start(lms_bin(), 0, &["--parallel", "2", "--context-length", "2048"], |_| ());
    let client = lms::Client::connect(&server.addr).expect("connects");
    crate::backends::completes_alike("remote-only", &client);
    crate::backends::calls_tools_alike("remote-only", &client);
    crate::backends::embeds_alike("remote-only", &client);
}
