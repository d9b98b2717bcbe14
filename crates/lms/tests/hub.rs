//! Issue 14, item 2: `lms get publisher/repo[@QUANT]` against a server on loopback that answers
//! as the Hugging Face hub does (the tree API, `resolve` downloads with Range), serving the real
//! default model: a transfer cut mid-way resumes, a wrong checksum is refused, split files come
//! whole, an unknown repository is a 404.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lms_test_support::LmsServer;
use sha2::{Digest, Sha256};

struct Hub {
    model: PathBuf,
    sha256: String,
    /// An embedding model, served as its own repository ([`EMBEDDING_REPO`]).
    embedding: PathBuf,
    embedding_sha256: String,
    /// The next model download is cut half-way.
    cut_next: AtomicBool,
}

impl Hub {
    fn files(&self, repo: &str) -> Option<Vec<(String, String)>> {
        let good = self.sha256.clone();
        match repo {
            "ok/Model-GGUF" => Some(vec![("m-Q8_0.gguf".into(), good.clone()), ("m-Q4_K_M.gguf".into(), good)]),
            "bad/Model-GGUF" => Some(vec![("m-Q4_K_M.gguf".into(), "0".repeat(64))]),
            "split/Model-GGUF" => Some(vec![
                ("m-Q4_K_M-00001-of-00002.gguf".into(), good.clone()),
                ("m-Q4_K_M-00002-of-00002.gguf".into(), good),
            ]),
            // Named as the real repository names its files: quantization after a dot.
            EMBEDDING_REPO => Some(vec![
                ("nomic-embed-text-v1.5.f16.gguf".into(), self.embedding_sha256.clone()),
                ("nomic-embed-text-v1.5.Q4_K_M.gguf".into(), self.embedding_sha256.clone()),
            ]),
            _ => None,
        }
    }

    /// The file a repository's downloads serve.
    fn served(&self, repo: &str) -> &Path {
        if repo == EMBEDDING_REPO {
            &self.embedding
        } else {
            &self.model
        }
    }

    fn serve(&self, mut sock: TcpStream) {
        let mut reader = BufReader::new(sock.try_clone().expect("clone"));
        let mut request_line = String::new();
        let _ = reader.read_line(&mut request_line);
        let mut range = 0u64;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                range = v.trim().trim_end_matches('-').parse().unwrap_or(0);
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if let Some(repo) = path.strip_prefix("/api/models/").and_then(|p| p.split("/tree/").next()) {
            let Some(files) = self.files(repo) else { return not_found(&mut sock) };
            let size = std::fs::metadata(self.served(repo)).expect("model").len();
            let list: Vec<serde_json::Value> = files
                .iter()
                .map(|(name, sha)| serde_json::json!({"type": "file", "path": name, "size": 135, "lfs": {"oid": sha, "size": size, "pointerSize": 135}}))
                .chain(std::iter::once(serde_json::json!({"type": "file", "path": "README.md", "size": 10})))
                .collect();
            let body = serde_json::to_string(&list).expect("json");
            let _ = write!(sock, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            return;
        }
        let Some((repo, _file)) = path.trim_start_matches('/').split_once("/resolve/main/") else {
            return not_found(&mut sock);
        };
        if self.files(repo).is_none() {
            return not_found(&mut sock);
        }
        let size = std::fs::metadata(self.served(repo)).expect("model").len();
        let mut file = std::fs::File::open(self.served(repo)).expect("model");
        file.seek(SeekFrom::Start(range)).expect("seek");
        let status = if range > 0 { "206 Partial Content" } else { "200 OK" };
        let length = size - range;
        let _ = write!(sock, "HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
        let send = if self.cut_next.swap(false, Ordering::SeqCst) { length / 2 } else { length };
        let _ = std::io::copy(&mut file.take(send), &mut sock);
    }
}

fn not_found(sock: &mut TcpStream) {
    let _ = write!(sock, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
}

const EMBEDDING_REPO: &str = "nomic-ai/nomic-embed-text-v1.5-GGUF";

fn sha256(file: &Path) -> String {
    let mut bytes = std::fs::File::open(file).expect("model");
    let mut hasher = Sha256::new();
    std::io::copy(&mut bytes, &mut hasher).expect("hash");
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A hub serving `model`, and a nomic-bert of random weights (in `embedding_dir`) as
/// [`EMBEDDING_REPO`].
fn start_hub(model: PathBuf, embedding_dir: &Path) -> (String, Arc<Hub>) {
    let embedding = embedding_dir.join("nomic-embed.gguf");
    lms_test_support::random_gguf("nomic-bert", &embedding, &[]);
    let (sha256, embedding_sha256) = (sha256(&model), sha256(&embedding));
    let hub = Arc::new(Hub { model, sha256, embedding, embedding_sha256, cut_next: AtomicBool::new(false) });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::clone(&hub);
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let hub = Arc::clone(&served);
            std::thread::spawn(move || hub.serve(sock));
        }
    });
    (format!("http://{addr}"), hub)
}

fn get(endpoint: &str, models: &Path, what: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lms"))
        .args(["get", what])
        .env("HF_ENDPOINT", endpoint)
        .env("LMSTUDIO_MODELS_DIR", models)
        .env_remove("HF_TOKEN")
        .output()
        .expect("lms runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn get_downloads_from_a_hub_resumes_and_checks() {
    let model = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("lms get ran").path;
    let models = tempfile::tempdir().expect("tempdir");
    let served = tempfile::tempdir().expect("tempdir");
    let (endpoint, hub) = start_hub(model.clone(), served.path());

    // Cut half-way: an error that says so, the partial file kept; run again: resumed, checked, placed.
    hub.cut_next.store(true, Ordering::SeqCst);
    let out = get(&endpoint, models.path(), "ok/Model-GGUF");
    assert!(!out.status.success() && text(&out.stderr).contains("resume"), "{}", text(&out.stderr));
    let partial = models.path().join("ok/Model-GGUF/m-Q4_K_M.gguf.partial");
    assert!(partial.metadata().is_ok_and(|m| m.len() > 0), "nothing kept to resume from");
    let out = get(&endpoint, models.path(), "ok/Model-GGUF");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "gemma-3-270m", "the key of what arrived");
    let placed = models.path().join("ok/Model-GGUF/m-Q4_K_M.gguf");
    assert_eq!(std::fs::read(&placed).expect("placed"), std::fs::read(&model).expect("model"), "resumed bytes differ");
    assert!(!partial.exists());

    // The hub's checksum does not match: refused, nothing left behind.
    let out = get(&endpoint, models.path(), "bad/Model-GGUF@Q4_K_M");
    assert!(!out.status.success() && text(&out.stderr).contains("SHA-256"), "{}", text(&out.stderr));
    assert!(!models.path().join("bad/Model-GGUF/m-Q4_K_M.gguf").exists());
    assert!(!models.path().join("bad/Model-GGUF/m-Q4_K_M.gguf.partial").exists());

    // A split file: every part.
    let out = get(&endpoint, models.path(), "split/Model-GGUF");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for part in ["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"] {
        assert!(models.path().join("split/Model-GGUF").join(part).is_file(), "{part}");
    }

    // No such repository; no such quantization.
    let out = get(&endpoint, models.path(), "nobody/Nothing-GGUF");
    assert!(!out.status.success() && text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    let out = get(&endpoint, models.path(), "ok/Model-GGUF@Q2_K");
    assert!(!out.status.success() && text(&out.stderr).contains("m-Q8_0.gguf"), "{}", text(&out.stderr));

    // An embedding model's repository: its Q4_K_M file, listed as an embedding model.
    let out = get(&endpoint, models.path(), EMBEDDING_REPO);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(models.path().join(EMBEDDING_REPO).join("nomic-embed-text-v1.5.Q4_K_M.gguf").is_file());
    let listed = |kind: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_lms"))
            .args(["ls", kind])
            .env("LMSTUDIO_MODELS_DIR", models.path())
            .output()
            .expect("lms runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let key = text(&out.stdout).trim().to_owned();
    assert!(listed("--embedding").contains(&key), "{key} among the embedding models: {}", listed("--embedding"));
    assert!(!listed("--llm").contains(&key), "{key} not among the LLMs");
}

/// `lms server start` with its models directory at `models`, downloading from `endpoint`.
fn server(endpoint: &str, models: &Path) -> LmsServer {
    LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &[], |c| {
        c.env("HF_ENDPOINT", endpoint).env("LMSTUDIO_MODELS_DIR", models).env_remove("HF_TOKEN");
    })
}

/// One HTTP request; the status and the JSON body.
fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut sock = TcpStream::connect(addr).expect("connects");
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writes");
    let mut answer = String::new();
    sock.read_to_string(&mut answer).expect("reads");
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

/// Polls a job's status until it is no longer downloading (a deadline, not a timing check).
fn finished(addr: &str, job: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (code, status) = call(addr, "GET", &format!("/api/v1/models/download/status/{job}"), "");
        assert_eq!(code, 200, "{status}");
        if status["status"] != "downloading" {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "still downloading after two minutes: {status}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Issue 31: the web app's Models page downloads from the hub with a progress bar, and the model
/// appears (a real browser: tests/browser/webapp.py).
#[test]
fn the_web_app_downloads_from_the_hub() {
    let model = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("lms get ran").path;
    let served = tempfile::tempdir().expect("tempdir");
    let (endpoint, _hub) = start_hub(model, served.path());
    let models = tempfile::tempdir().expect("tempdir");
    let server = server(&endpoint, models.path());
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/webapp-screenshots");
    lms_test_support::browser_script(&[
        ("LMS_URL", format!("http://{}", server.addr)),
        ("LMS_DOWNLOAD", "ok/Model-GGUF".to_owned()),
        ("SCREENSHOTS", shots.display().to_string()),
    ]);
    assert!(models.path().join("ok/Model-GGUF/m-Q4_K_M.gguf").is_file());
}

/// Issue 14, item 4: LM Studio's REST download endpoint and its status, over the same hub code.
#[test]
fn rest_download_jobs_fetch_from_the_hub_and_report() {
    let model = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("lms get ran").path;
    let size = std::fs::metadata(&model).expect("model").len();
    let served = tempfile::tempdir().expect("tempdir");
    let (endpoint, _hub) = start_hub(model, served.path());
    let models = tempfile::tempdir().expect("tempdir");
    let server = server(&endpoint, models.path());
    let addr = server.addr.clone();

    let (code, started) =
        call(&addr, "POST", "/api/v1/models/download", r#"{"model": "ok/Model-GGUF", "quantization": "Q8_0"}"#);
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["total_size_bytes"], size, "{started}");
    let job = started["job_id"].as_str().expect("a job id").to_owned();
    let done = finished(&addr, &job);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!((done["downloaded_bytes"].as_u64(), done["total_size_bytes"].as_u64()), (Some(size), Some(size)));
    assert!(done["completed_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{done}");
    assert!(models.path().join("ok/Model-GGUF/m-Q8_0.gguf").is_file());
    // Asked again: there already, no job.
    let (code, again) = call(&addr, "POST", "/api/v1/models/download", r#"{"model": "ok/Model-GGUF@Q8_0"}"#);
    assert_eq!((code, again["status"].as_str(), again.get("job_id")), (200, Some("already_downloaded"), None));
    // The model list has it.
    let (_, list) = call(&addr, "GET", "/api/v1/models", "");
    assert!(list["models"].as_array().is_some_and(|m| m.iter().any(|m| m["key"] == "gemma-3-270m")), "{list}");

    // A wrong checksum: the job fails and says why.
    let (_, bad) = call(&addr, "POST", "/api/v1/models/download", r#"{"model": "bad/Model-GGUF"}"#);
    let failed = finished(&addr, bad["job_id"].as_str().expect("a job id"));
    assert!(
        failed["status"] == "failed" && failed["error"].as_str().is_some_and(|e| e.contains("SHA-256")),
        "{failed}"
    );
    // No such repository, a request that is not one, an unknown job.
    let (code, none) = call(&addr, "POST", "/api/v1/models/download", r#"{"model": "nobody/Nothing-GGUF"}"#);
    assert!(code == 502 && none["error"]["message"].as_str().is_some_and(|m| m.contains("404")), "{code} {none}");
    let (code, _) = call(&addr, "POST", "/api/v1/models/download", r#"{"model": "../../etc"}"#);
    assert_eq!(code, 400);
    let (code, _) = call(&addr, "POST", "/api/v1/models/download", r#"{"model": "ok/Model-GGUF", "mirror": "x"}"#);
    assert_eq!(code, 400, "an unknown field is refused by name");
    assert_eq!(call(&addr, "GET", "/api/v1/models/download/status/job_nope", "").0, 404);
}
