//! What the workspace's tests share: an `lms server` process on a free loopback port, started the
//! one way ([`LmsServer::start`]) and stopped when dropped. Depends on nothing of the workspace, so
//! that the library's remote-only tests (built without llama.cpp) can use it too.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `lms` binary a test runs: `$LMS_BIN`, else the one in the target directory the test itself
/// was built into (`target/<profile>/lms`, beside the `deps` folder that holds test binaries).
/// Tests of the `lms` crate itself pass `env!("CARGO_BIN_EXE_lms")` instead.
pub fn lms_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LMS_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("lms");
    assert!(bin.exists(), "{} is missing: build it first (cargo build --release -p lms) or set LMS_BIN", bin.display());
    bin
}

/// A running `lms server start --port <port> --no-discovery-port ...`; killed when dropped.
pub struct LmsServer {
    child: Child,
    /// `127.0.0.1:<port>`, as the server said it listens.
    pub addr: String,
    lines: mpsc::Receiver<String>,
    /// Its own prompt cache directory, removed when dropped: prompts one test warmed are never
    /// warm in another's server.
    prompt_cache: PathBuf,
}

impl LmsServer {
    /// `bin server start` on `port` (0: a free one), with `args` after, its stderr read from the
    /// start. `configure` sets anything else of the command (environment variables).
    pub fn start(bin: impl AsRef<OsStr>, port: u16, args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let prompt_cache = std::env::temp_dir().join(format!("lms-test-prompt-cache-{}-{n}", std::process::id()));
        let mut command = Command::new(bin.as_ref());
        command
            .args(["server", "start", "--port", &port.to_string(), "--no-discovery-port"])
            .args(args)
            .env("LMSTUDIO_PROMPT_CACHE_DIR", &prompt_cache)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child =
            command.spawn().unwrap_or_else(|e| panic!("{} runs: {e}", PathBuf::from(bin.as_ref()).display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        // Its stderr is read to the end on a thread of its own (a full pipe would block the
        // server), each line echoed to the test's output and kept for `next_line`.
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                let _ = tx.send(line);
            }
        });
        let mut server = Self { child, addr: String::new(), lines, prompt_cache };
        let addr = std::iter::from_fn(|| server.next_line(Duration::from_secs(120)))
            .find_map(|l| l.strip_prefix("listening on http://").map(str::to_owned));
        server.addr = addr.expect("the server says where it listens");
        server
    }

    /// The next line of the server's stderr, waiting at most `timeout`; `None` when it ended.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The process id (to send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("waits")
    }
}

impl Drop for LmsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prompt_cache);
    }
}

/// Writes a model of random weights at `out` with `scripts/random-gguf.py` (`preset`: `tiny`, a
/// small qwen2; `nomic-bert`, an embedding model; ...), with `args` after (`--chat-template F`,
/// `--control TEXT`). Panics with the script's error if it fails.
pub fn random_gguf(preset: &str, out: &std::path::Path, args: &[&OsStr]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/random-gguf.py");
    std::fs::create_dir_all(out.parent().expect("a file in a folder")).expect("mkdir");
    let made = Command::new("python3").arg(script).arg(preset).arg(out).args(args).output().expect("python3 runs");
    assert!(made.status.success(), "random-gguf.py {preset}: {}", String::from_utf8_lossy(&made.stderr));
}

/// A Python with Selenium, in `target/browser-venv` (made once), for the browser tests; panics
/// with what to install when Debian's headless Chromium and its WebDriver are missing.
pub fn selenium_python() -> PathBuf {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: apt-get install chromium chromium-driver (scripts/test does)"
        );
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-venv");
    let py = venv.join("bin/python");
    if !Command::new(&py).args(["-c", "import selenium"]).status().is_ok_and(|s| s.success()) {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 runs");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "selenium"])
            .status()
            .expect("pip runs");
        assert!(ok.success(), "pip install selenium failed");
    }
    py
}

/// Runs the web app's browser script (`crates/lms/tests/browser/webapp.py`) with `env` set;
/// panics with what it said unless it ends with `ok`.
pub fn browser_script(env: &[(&str, String)]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lms/tests/browser/webapp.py");
    let mut command = Command::new(selenium_python());
    command.arg(script);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("the browser script runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim_end().ends_with("ok"), "{said}");
}
