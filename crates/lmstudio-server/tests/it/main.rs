//! Server tests: the router without sockets, then the real server on loopback driven by real
//! clients (LM Studio's Python SDK and the `openai` package, installed into a venv by the tests).

// The checks every backend passes alike, shared with the library's own tests.
mod agents;
mod anthropic;
#[path = "../../../lmstudio/tests/it/backends.rs"]
mod backends;
mod clients;
mod embeddings;
#[cfg(feature = "fault-injection")]
mod faults;
mod http;
mod jit;
mod js_sdk;
mod lmstudio_suite;
mod reasoning;
mod remote;
mod responses;
mod rest_chat;
mod sdk_socket;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A client on the real models directory (default model fetched if missing), loading models with
/// `parallel` slots of 2,048 tokens.
pub fn lms_client(parallel: u32) -> lmstudio::Client {
    lms_client_with(lmstudio::LoadConfig { parallel: Some(parallel), context_length: Some(2048), ..Default::default() })
}

/// [`lms_client`] loading models with `load`.
pub fn lms_client_with(load: lmstudio::LoadConfig) -> lmstudio::Client {
    static FETCHED: OnceLock<()> = OnceLock::new();
    let store = lmstudio::ModelStore::from_env();
    FETCHED.get_or_init(|| {
        store.ensure_default_model(&mut |l| eprintln!("{l}")).expect("the default model can be fetched");
    });
    lmstudio::Client::with_load_config(store, load)
}

/// Starts a server on a free loopback port, in a background thread; returns its address.
pub fn start_server(client: lmstudio::Client, api_key: Option<&str>) -> SocketAddr {
    start_server_with(client, lmstudio_server::ServerConfig { api_key: api_key.map(str::to_owned), ..test_config() })
}

/// The config of [`start_server`]: a free loopback port, no discovery port.
pub fn test_config() -> lmstudio_server::ServerConfig {
    lmstudio_server::ServerConfig { host: "127.0.0.1".into(), port: 0, discovery_port: false, ..Default::default() }
}

/// [`start_server`] with a config of the test's own.
pub fn start_server_with(client: lmstudio::Client, config: lmstudio_server::ServerConfig) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(lmstudio_server::serve(
            client,
            config,
            |addrs| tx.send(addrs[0]).expect("send"),
            std::future::pending(),
        ))
        .expect("serves");
    });
    rx.recv().expect("the server starts")
}

/// A Python with LM Studio's SDK, the openai and anthropic packages and jsonschema, in `target/py-venv` (made
/// once).
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/py-venv");
        let py = venv.join("bin/python");
        let ready = Command::new(&py)
            .args(["-c", "import lmstudio, openai, anthropic, jsonschema"])
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 runs").success();
            assert!(ok, "python3 -m venv failed");
            let ok = Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "lmstudio>=1.5.0",
                    "openai",
                    "anthropic",
                    "jsonschema",
                ])
                .status()
                .expect("pip runs")
                .success();
            assert!(ok, "pip install lmstudio openai anthropic jsonschema failed");
        }
        py
    })
    .clone()
}

/// LM Studio's JavaScript SDK (`@lmstudio/sdk` from npm) in `target/js-sdk` (installed once);
/// returns that folder, where scripts find it.
pub fn js_sdk() -> PathBuf {
    static JS: OnceLock<PathBuf> = OnceLock::new();
    JS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/js-sdk");
        if !dir.join("node_modules/@lmstudio/sdk/package.json").exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            let ok = Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(format!("@lmstudio/sdk@{JS_SDK_VERSION}"))
                .status()
                .expect("npm runs (scripts/setup installs it)")
                .success();
            assert!(ok, "npm install @lmstudio/sdk failed");
        }
        dir
    })
    .clone()
}

/// The JavaScript SDK's version the tests hold the server to (LM Studio's app ships it).
pub const JS_SDK_VERSION: &str = "1.5.0";

/// Runs a Node.js script (CommonJS) next to the JS SDK with `BASE_URL` set to `ws://addr`;
/// panics with its output unless it exits 0.
pub fn run_node(script: &str, addr: SocketAddr) -> String {
    let dir = js_sdk();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("script-{}-{n}.js", std::process::id()));
    std::fs::write(&file, script).expect("writes the script");
    let out = Command::new("node")
        .arg(&file)
        .current_dir(&dir)
        .env("BASE_URL", format!("ws://{addr}"))
        .output()
        .expect("node runs");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs a Python script with `HOST` set to `addr`; panics with its output unless it exits 0.
pub fn run_python(script: &str, addr: SocketAddr) -> String {
    let out = Command::new(python()).args(["-c", script]).env("HOST", addr.to_string()).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// `v` with what changes from run to run (times, rates, ids, timestamps, instance references)
/// replaced by a placeholder, so that a snapshot shows the wire format and nothing else.
pub fn scrub(v: &mut serde_json::Value) {
    const VOLATILE: &[&str] = &[
        "tokensPerSecond",
        "timeToFirstTokenSec",
        "instanceReference",
        "id",
        "created",
        "system_fingerprint",
        "tokens_per_second",
        "time_to_first_token",
        "generation_time",
        "time_to_first_token_seconds",
        "load_time_seconds",
        "model_load_time_seconds",
        "response_id",
        "created_at",
        "item_id",
        // What earlier tests left in the prompt cache of the client they share.
        "cached_tokens",
    ];
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if VOLATILE.contains(&key.as_str()) && !value.is_null() {
                    *value = serde_json::Value::String(format!("[{key}]"));
                } else {
                    scrub(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// The JSON events of a server-sent-event body, scrubbed; `[DONE]` kept as a string.
pub fn sse_events(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|data| {
            let mut v = serde_json::from_str(data).unwrap_or_else(|_| serde_json::Value::String(data.to_owned()));
            scrub(&mut v);
            v
        })
        .collect()
}

/// A counter or gauge of the server's `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut sock = TcpStream::connect(addr).expect("connects");
    write!(sock, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("sends");
    let mut text = String::new();
    sock.read_to_string(&mut text).expect("reads");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}
