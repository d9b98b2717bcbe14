//! Issue 31: the web app `lms server` serves at `/`, in a real browser. Headless Chromium from
//! Debian (`chromium`, `chromium-driver`; `scripts/test` installs them), driven by Selenium (from
//! PyPI, into `target/browser-venv`), clicks through chat, the completion playground and the models
//! page against a real server with the default model, then the chat across a server restart
//! (tests/browser/webapp.py says each step).
//! Screenshots land in `target/webapp-screenshots`.

use std::path::{Path, PathBuf};
use std::process::Command;

use lms_test_support::LmsServer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One GET; the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(addr).expect("connects");
    write!(sock, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("sends");
    let mut reply = String::new();
    sock.read_to_string(&mut reply).expect("reads");
    let status = reply.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

#[test]
fn the_web_app_works_in_a_real_browser() {
    let server = LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &["--parallel", "2"], |_| {});
    // Every load refused by the guardrail, on any machine: a prompt cache of 1 TiB counts.
    let guarded = LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &["--prompt-cache-mib", "1048576"], |_| {});
    let (status, page) = get(&server.addr, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/app.js\">"), "{page}");
    let shots = root().join("target/webapp-screenshots");
    lms_test_support::browser_script(&[
        ("LMS_URL", format!("http://{}", server.addr)),
        ("LMS_GUARDED_URL", format!("http://{}", guarded.addr)),
        ("SCREENSHOTS", shots.display().to_string()),
    ]);
    for page in [
        "chat",
        "complete",
        "models",
        "models-refused",
        "chat-dark",
        "logs",
        "chat-narrow",
        "complete-narrow",
        "models-narrow",
        "logs-narrow",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
    drop((server, guarded));

    // A server that goes away mid-session and comes back on its port: the chat says so, keeps the
    // turn, reconnects by itself, and Regenerate answers, the model loaded on demand with its load
    // in the answer's stats (the script's `reconnect` runs that server itself). In this test, not
    // one of its own: two servers' engines on two cores at once slow each other tenfold.
    lms_test_support::browser_script(&[
        ("LMS_RECONNECT", "1".to_owned()),
        ("LMS_BIN", env!("CARGO_BIN_EXE_lms").to_owned()),
        ("SCREENSHOTS", shots.display().to_string()),
    ]);
}

/// `--no-web-app`: nothing at `/`; with an API key, the page is served (it holds nothing) while the
/// APIs it calls still want the key.
#[test]
fn the_web_app_is_off_by_flag_and_its_apis_keep_their_key() {
    let off = LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &["--no-web-app"], |_| {});
    assert_eq!(get(&off.addr, "/").0, 404);
    assert_eq!(get(&off.addr, "/app.js").0, 404);
    let keyed = LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &["--api-key", "sesame"], |_| {});
    assert_eq!(get(&keyed.addr, "/").0, 200);
    assert_eq!(get(&keyed.addr, "/app.css").0, 200);
    assert_eq!(get(&keyed.addr, "/api/v1/models").0, 401);
}

/// A `lms log stream` process with `args` against `addr`; its stdout lines, read on a thread.
fn log_stream(addr: &str, args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lms"))
        .args(["log", "stream"])
        .args(args)
        .env("LMSTUDIO_HOST", addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lms log stream runs");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Listening once it says so on stderr.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped"));
    let mut said = String::new();
    stderr.read_line(&mut said).expect("reads");
    assert!(said.starts_with("streaming"), "{said}");
    (child, rx)
}

/// Lines from `rx` until one contains `needle` (or 60 s pass).
fn until(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return seen;
        }
    }
    panic!("no {needle:?} in {seen:?}");
}

/// `lms log stream`, as LM Studio's CLI: the prompt as the model reads it (`--filter input`, the
/// default), the answer with `--stats`, the server's lines with `--source server`, `--json`.
#[test]
fn lms_log_stream_shows_prompts_answers_and_server_lines() {
    let server = LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &["--parallel", "1"], |_| {});
    let (mut model, model_lines) = log_stream(&server.addr, &["--filter", "input,output", "--stats"]);
    let (mut server_log, server_lines) = log_stream(&server.addr, &["--source", "server", "--json"]);
    let body = r#"{"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}"#;
    let mut sock = std::net::TcpStream::connect(&server.addr).expect("connects");
    std::io::Write::write_all(
        &mut sock,
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        )
        .as_bytes(),
    )
    .expect("sends");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut sock, &mut reply).expect("reads");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = until(&model_lines, "<start_of_turn>user").join("\n");
    assert!(seen.contains("gemma-3-270m input:"), "{seen}");
    let seen = until(&model_lines, "(stats:").join("\n");
    assert!(seen.contains("gemma-3-270m output:") && seen.contains(" predicted, "), "{seen}");
    let line = until(&server_lines, "/v1/chat/completions").pop().expect("a line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(event["data"]["type"], "server.log");
    assert!(
        event["data"]["content"].as_str().is_some_and(|c| c.starts_with("POST /v1/chat/completions 200")),
        "{event}"
    );
    assert!(event["timestamp"].as_u64().is_some(), "{event}");
    for child in [&mut model, &mut server_log] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
