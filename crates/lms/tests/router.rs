//! Issue 30, items 4 and 5: two `lms server` replicas behind HAProxy with the configuration in
//! `deploy/haproxy/haproxy.cfg`, unchanged: each tenant's requests (its own long system prompt)
//! land on one replica, where its prefix is cached, so a tenant's second request reuses most of
//! its prompt; and both replicas serve. HAProxy comes from Debian (`scripts/test` installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lms_test_support::LmsServer;

fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg")
}

/// HAProxy with the configuration's variables set; killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(args: &[&str], bind: &str, replicas: &[&str]) -> Command {
    let mut cmd = Command::new("haproxy");
    cmd.args(args)
        .arg("-f")
        .arg(config())
        .env("LMS_HAPROXY_BIND", bind)
        .env("LMS_REPLICA_1", replicas[0])
        .env("LMS_REPLICA_2", replicas[1]);
    cmd
}

/// One HTTP/1.1 request; the status and the body.
fn request(addr: &str, head: &str, body: &str) -> Option<(u16, String)> {
    let mut sock = TcpStream::connect(addr).ok()?;
    write!(sock, "{head} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
    let mut reply = String::new();
    sock.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n")?.1.to_owned()))
}

/// A counter of a replica's `/metrics`.
fn metric(addr: &str, name: &str) -> u64 {
    let (_, text) = request(addr, "GET /metrics", "").expect("metrics");
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).expect("the counter")
}

#[test]
fn haproxy_keeps_each_tenants_prefix_on_one_replica() {
    let ok = Command::new("haproxy").arg("-v").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "haproxy is missing: apt-get install haproxy (scripts/test does)");
    let args = ["--model", lmstudio::DEFAULT_MODEL_KEY, "--parallel", "2", "--context-length", "2048"];
    let replicas: Vec<LmsServer> =
        (0..2).map(|_| LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &args, |_| {})).collect();
    let addrs: Vec<&str> = replicas.iter().map(|r| r.addr.as_str()).collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let bind = format!("127.0.0.1:{port}");
    let checked = haproxy(&["-c"], &bind, &addrs).output().expect("haproxy runs");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
    let child = haproxy(&["-db"], &bind, &addrs).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("starts");
    let _proxy = Haproxy(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&bind, "GET /health", "").is_none_or(|(status, _)| status != 200) {
        assert!(Instant::now() < deadline, "HAProxy never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let tenants = ["billing", "search", "travel", "legal", "garden", "music", "health", "chess"];
    for round in 0..2 {
        // The second round in the other order: round robin would then send each tenant elsewhere.
        let order: Vec<&str> = if round == 0 { tenants.to_vec() } else { tenants.iter().rev().copied().collect() };
        for tenant in order {
            let system = format!("You answer questions for the {tenant} team. ").repeat(30);
            let body = serde_json::json!({"messages": [{"role": "system", "content": system},
                {"role": "user", "content": "Hello"}], "model": lmstudio::DEFAULT_MODEL_KEY, "max_tokens": 1,
                "temperature": 0});
            let (status, reply) = request(&bind, "POST /v1/chat/completions", &body.to_string()).expect("answers");
            assert_eq!(status, 200, "{reply}");
            let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
            let usage = &reply["usage"];
            let (prompt, cached) =
                (usage["prompt_tokens"].as_u64(), usage["prompt_tokens_details"]["cached_tokens"].as_u64());
            let (prompt, cached) = (prompt.expect("prompt tokens"), cached.expect("cached tokens"));
            if round == 1 {
                assert!(cached > prompt / 2, "{tenant}'s second request went where its prefix is not: {usage}");
            }
        }
    }
    // Both replicas took tenants (the hash of these bodies is the same on any machine).
    let served: Vec<u64> = addrs.iter().map(|a| metric(a, "lms_predictions_total")).collect();
    assert_eq!(served.iter().sum::<u64>(), 2 * tenants.len() as u64, "{served:?}");
    assert!(served.iter().all(|&n| n > 0), "one replica took every tenant: {served:?}");
}
