//! The `lms` binary as a user runs it: stdout carries the text, stderr the stats and errors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use lms_test_support::LmsServer;

fn lms(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lms"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lms runs");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("lms finishes")
}

/// `lms args` with one environment variable set; waits for it.
fn lms_env(args: &[&str], var: &str, value: impl AsRef<std::ffi::OsStr>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lms")).args(args).env(var, value).output().expect("lms runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn complete_streams_text_to_stdout_and_stats_to_stderr() {
    let out =
        lms(&["complete", "--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "6", "1, 2, 3, 4,"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), " 5, 6,\n");
    let err = text(&out.stderr);
    // Issue 27, item 2: the stats line as a snapshot, times and rates filtered.
    let filters =
        vec![(r"time to first token: \d+\.\d+s", "time to first token: [ttft]"), (r"\d+\.\d+ tok/s", "[rate] tok/s")];
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("complete_stderr", err);
    });
    for field in [
        "Gemma 3 270m",
        "prompt tokens: 12",
        "predicted tokens: 6",
        "time to first token",
        "tok/s",
        "maxPredictedTokensReached",
    ] {
        assert!(err.contains(field), "stderr lacks {field:?}: {err}");
    }
}

#[test]
fn prompt_from_stdin_and_stop_string() {
    let out = lms(
        &["complete", "--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "12", "--stop", " 7", "-"],
        Some("1, 2, 3, 4,"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), " 5, 6,\n");
    assert!(text(&out.stderr).contains("stopStringFound"));
}

#[test]
fn json_output_uses_lm_studio_field_names() {
    let out = lms(&["complete", "--json", "--temperature", "0", "--max-tokens", "3", "My name is"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(v["content"].is_string());
    assert_eq!(v["modelInfo"]["modelKey"], "gemma-3-270m");
    assert_eq!(v["modelInfo"]["displayName"], "Gemma 3 270m");
    assert_eq!(v["stats"]["stopReason"], "maxPredictedTokensReached");
    assert_eq!(v["stats"]["predictedTokensCount"], 3);
    assert!(v["stats"]["timeToFirstTokenSec"].is_f64());
}

#[test]
fn errors_are_one_line_with_a_hint_and_nonzero_exit() {
    let out = lms(&["complete", "--model", "no-such-model", "Hello"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.starts_with("error: no model matches \"no-such-model\""), "{err}");
    assert!(err.contains("hint: "), "{err}");
    assert!(out.stdout.is_empty());
    let out = lms(&["complete", "--temperature", "-1", "Hello"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("temperature is out of range"));
    let out = lms(&["complete", ""], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the prompt is empty"));
}

#[test]
fn ls_lists_the_default_model() {
    let out = lms(&["ls", "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v.as_array().expect("array").iter().any(|m| m["modelKey"] == "gemma-3-270m"));
}

/// `lms server` on `port` (0: any free one) with one slot, over the models directory `models`.
fn spawn_server_on(port: u16, models: &std::path::Path) -> LmsServer {
    LmsServer::start(env!("CARGO_BIN_EXE_lms"), port, &["--parallel", "1"], |c| {
        c.env("LMSTUDIO_MODELS_DIR", models);
    })
}

/// [`spawn_server_on`] the default models directory.
fn spawn_server(port: u16) -> LmsServer {
    spawn_server_on(port, lmstudio::ModelStore::from_env().root())
}

/// POSTs `body` to `/v1/completions` at `addr`; returns the response's lines, as they come.
fn post(addr: &str, body: &str) -> impl Iterator<Item = String> {
    use std::io::BufRead;
    let mut sock = std::net::TcpStream::connect(addr).expect("connects");
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("sends");
    std::io::BufReader::new(sock).lines().map_while(Result::ok)
}

/// A stream that cannot end by itself for a while: 2,000 tokens with end-of-text banned.
const ENDLESS: &str = r#"{"model":"gemma-3-270m","prompt":"Once upon a time","max_tokens":2000,"temperature":0,"ignore_eos":true,"stream":true}"#;

/// Issue 12, D3: SIGTERM shuts the server down in order: a stream in flight ends with an error
/// event that says why, and the process exits 0.
#[test]
fn sigterm_ends_streams_with_a_reason_and_exits_0() {
    let mut server = spawn_server(0);
    let mut events = post(&server.addr, ENDLESS).filter(|l| l.starts_with("data: "));
    assert!(events.next().is_some(), "the stream started");
    let killed = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let rest: Vec<String> = events.collect();
    assert!(rest.iter().any(|e| e.contains("error") && e.contains("unloaded")), "{rest:?}");
    let status = server.wait();
    assert!(status.success(), "{status:?}");
    let mut said = std::iter::from_fn(|| server.next_line(std::time::Duration::from_secs(5)));
    assert!(said.any(|l| l.contains("shutting down")));
}

/// Issue 12, item 5: a server killed with SIGKILL mid-prediction leaves nothing behind: a new one
/// binds the same port at once and serves.
#[test]
fn a_server_killed_mid_prediction_restarts_on_the_same_port() {
    let first = spawn_server(0);
    let addr = first.addr.clone();
    let mut events = post(&addr, ENDLESS).filter(|l| l.starts_with("data: "));
    assert!(events.next().is_some(), "the stream started");
    drop(first); // SIGKILL
    let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let second = spawn_server(port);
    assert_eq!(second.addr, addr, "the new server took the same port");
    let body = r#"{"model":"gemma-3-270m","prompt":"1, 2, 3,","max_tokens":4,"temperature":0}"#;
    let response = post(&second.addr, body).collect::<Vec<_>>().join("\n");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"finish_reason\""), "{response}");
}

/// Issue 13, item 4: `--preset` applies a preset file's settings under the command line's own;
/// `lms preset ls` lists it; an unknown preset is an error naming the ones there are.
#[test]
fn presets_apply_under_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let preset = r#"{"identifier": "@local:counting", "name": "Counting", "operation": {"fields": [
        {"key": "llm.prediction.temperature", "value": 0},
        {"key": "llm.prediction.repeatPenalty", "value": {"checked": false, "value": 1.1}},
        {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": true, "value": 6}}]}}"#;
    std::fs::write(dir.path().join("counting.preset.json"), preset).expect("writes");
    let run = |args: &[&str]| lms_env(args, "LMSTUDIO_PRESETS_DIR", dir.path());
    let out = run(&["complete", "--preset", "counting", "1, 2, 3,"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim_end_matches('\n'), " 4, 5,");
    // The command line's own value wins: 2 tokens, not the preset's 6.
    let out = run(&["complete", "--preset", "counting", "--max-tokens", "2", "1, 2, 3,"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("predicted tokens: 2 |"), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim_end_matches('\n'), " 4");
    let listed = run(&["preset", "ls"]);
    assert!(text(&listed.stdout).contains("@local:counting"), "{}", text(&listed.stdout));
    let missing = run(&["complete", "--preset", "nope", "Hi"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("@local:counting"), "{}", text(&missing.stderr));
}

/// Issue 13, item 7: `lms chat` keeps the history, takes `/system` and `/reset`, and Ctrl-C stops
/// the answer being generated, not the program (which goes on to the next question, then ends at
/// end of input with exit 0).
#[test]
fn chat_streams_answers_and_ctrl_c_stops_only_the_answer() {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_lms"))
        .args(["chat", "--temperature", "0", "--max-tokens", "400"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lms runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("chatting with") {
        line.clear();
        assert!(stderr.read_line(&mut line).expect("reads") > 0, "lms chat ended early");
    }
    writeln!(stdin, "/system You tell very long stories.").expect("writes");
    writeln!(stdin, "Tell me a long story about a lighthouse.").expect("writes");
    // Wait for the answer to stream, then interrupt it.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("the answer streams");
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(interrupted.success());
    let mut seen = String::new();
    while !seen.contains("[stopped]") {
        line.clear();
        assert!(stderr.read_line(&mut line).expect("reads") > 0, "no [stopped]: {seen}");
        seen += &line;
    }
    writeln!(stdin, "/reset").expect("writes");
    writeln!(stdin, "/frobnicate").expect("writes");
    drop(stdin);
    let status = child.wait().expect("exits");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("reads");
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.contains("(history cleared)") && rest.contains("unknown command /frobnicate"), "{rest}");
}

#[test]
fn schema_and_grammar_files_constrain_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = dir.path().join("answer.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": false}"#,
    )
    .expect("write");
    let out = lms(&["complete", "--schema", schema.to_str().expect("utf-8"), "--seed", "1", "Is it? As JSON:"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON on stdout");
    assert!(value["answer"] == "yes" || value["answer"] == "no", "{value}");

    let grammar = dir.path().join("digits.gbnf");
    std::fs::write(&grammar, "root ::= [0-9]{3}\n").expect("write");
    let out = lms(&["complete", "--grammar", grammar.to_str().expect("utf-8"), "--seed", "2", "A number:"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let digits = text(&out.stdout);
    assert!(digits.trim_end().len() == 3 && digits.trim_end().bytes().all(|b| b.is_ascii_digit()), "{digits:?}");

    std::fs::write(&grammar, "root ::= nowhere\n").expect("write");
    let out = lms(&["complete", "--grammar", grammar.to_str().expect("utf-8"), "x"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("structured"), "{}", text(&out.stderr));
}

/// Issue 14, item 1: `lms import` checks the file before placing it, and the key it prints loads.
#[test]
fn import_places_a_valid_gguf_and_refuses_the_rest() {
    let models = tempfile::tempdir().expect("tempdir");
    let source = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("lms get ran").path;
    let staged = tempfile::tempdir().expect("tempdir");
    let file = staged.path().join("My-Model-Q4_K_M.gguf");
    std::fs::hard_link(&source, &file).or_else(|_| std::fs::copy(&source, &file).map(drop)).expect("stage");
    let import = |args: &[&str]| lms_env(args, "LMSTUDIO_MODELS_DIR", models.path());
    let out = import(&["import", file.to_str().expect("utf-8"), "--publisher", "me"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "gemma-3-270m", "the key comes from the file's metadata");
    assert!(models.path().join("me/My-Model-GGUF/My-Model-Q4_K_M.gguf").is_file());
    // The same again: already there. A bad publisher, a file that is not GGUF: refused, nothing placed.
    assert!(!import(&["import", file.to_str().expect("utf-8"), "--publisher", "me"]).status.success());
    assert!(!import(&["import", file.to_str().expect("utf-8"), "--publisher", "../x"]).status.success());
    let junk = staged.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF but not really").expect("write");
    let out = import(&["import", junk.to_str().expect("utf-8")]);
    assert!(!out.status.success() && text(&out.stderr).contains("not a valid model file"), "{}", text(&out.stderr));
    assert!(!models.path().join("local").exists(), "a refused file left something behind");
    // A symbolic link to the file where it is: listed, loadable by its key, no second copy.
    let out = import(&["import", file.to_str().expect("utf-8"), "--publisher", "linked", "--symlink"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let link = models.path().join("linked/My-Model-GGUF/My-Model-Q4_K_M.gguf");
    assert!(link.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()));
    let listed = text(&import(&["ls"]).stdout);
    assert!(listed.contains("linked/My-Model-GGUF/My-Model-Q4_K_M.gguf"), "{listed}");
    let two = import(&["import", file.to_str().expect("utf-8"), "--move", "--symlink"]);
    assert!(!two.status.success(), "two ways at once");
}

/// Issue 14, item 3: the CLI manages a running server's models (found at $LMSTUDIO_HOST).
#[test]
fn ps_load_and_unload_manage_a_running_server() {
    let server = spawn_server(0);
    let addr = server.addr.clone();
    let run = |args: &[&str]| lms_env(args, "LMSTUDIO_HOST", &addr);
    assert!(text(&run(&["server", "status"]).stdout).contains("0 model instance(s)"));
    let load = ["load", "gemma-3-270m", "--identifier", "mine", "--context-length", "512", "--parallel", "2"];
    let out = run(&[&load[..], &["--ttl", "600"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "mine");
    let out = run(&["ps", "--json"]);
    let loaded: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(loaded[0]["identifier"], "mine", "{loaded}");
    assert_eq!(loaded[0]["contextLength"], 512, "{loaded}");
    // How it is loaded and what it does now: slots, predictions, TTL, memory.
    let state = &loaded[0]["state"];
    assert_eq!((state["slots"].as_u64(), state["running"].as_u64()), (Some(2), Some(0)), "{state}");
    assert_eq!((state["ttlMs"].as_u64(), state["jit"].as_bool()), (Some(600_000), Some(false)), "{state}");
    assert!(state["ttlLeftMs"].as_u64().is_some_and(|ms| ms > 0 && ms <= 600_000), "{state}");
    // The weights alone are over 200 MiB; the estimate of 512 x 2 tokens is under 400.
    assert!(state["memoryMib"].as_u64().is_some_and(|m| (200..400).contains(&m)), "{state}");
    let table = text(&run(&["ps"]).stdout);
    // Issue 27, item 2: the table as a snapshot, the time left filtered.
    insta::with_settings!({filters => vec![(r"\b(\d+h \d+m|\d+m \d+s|\d+s)\b", "[ttl]")]}, {
        insta::assert_snapshot!("ps_table", table);
    });
    assert!(
        table.contains("TTL LEFT") && table.lines().any(|l| l.starts_with("mine ") && l.contains("MiB")),
        "{table}"
    );
    assert!(!run(&["load", "gemma-3-270m", "--identifier", "mine"]).status.success(), "a duplicate identifier");
    // The default build has no GPU backend: a share of the layers is refused (max would run on the CPU).
    let gpu = run(&["load", "gemma-3-270m", "--gpu", "0.5"]);
    assert!(!gpu.status.success() && text(&gpu.stderr).contains("no GPU device"), "{}", text(&gpu.stderr));
    assert!(run(&["unload", "--all"]).status.success());
    assert!(text(&run(&["ps"]).stderr).contains("no models loaded"));
    drop(server);
    // No server: a clear hint.
    let out = run(&["ps"]);
    assert!(!out.status.success() && text(&out.stderr).contains("lms server start"), "{}", text(&out.stderr));
}

/// Issue 14, item 3: a name that matches two models is refused with both named; `-y` loads the
/// first.
#[test]
fn load_yes_takes_the_first_of_several_matches() {
    let models = tempfile::tempdir().expect("tempdir");
    let source = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("lms get ran").path;
    for publisher in ["b", "a"] {
        let dir = models.path().join(publisher).join("gemma-GGUF");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("gemma-3-270m-Q4_K_M.gguf");
        std::fs::hard_link(&source, &file).or_else(|_| std::fs::copy(&source, &file).map(drop)).expect("stage");
    }
    let server = spawn_server_on(0, models.path());
    let run = |args: &[&str]| lms_env(args, "LMSTUDIO_HOST", &server.addr);
    let out = run(&["load", "gemma-3-270m", "--context-length", "256"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("a/gemma-GGUF") && err.contains("b/gemma-GGUF"), "{err}");
    let out = run(&["load", "gemma-3-270m", "--context-length", "256", "-y"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let loaded: serde_json::Value = serde_json::from_slice(&run(&["ps", "--json"]).stdout).expect("JSON");
    assert_eq!(loaded[0]["path"], "a/gemma-GGUF/gemma-3-270m-Q4_K_M.gguf", "{loaded}");
}

/// Issue 14, item 3: `lms server stop` ends the server started on that port, in order (exit 0).
#[test]
fn server_stop_ends_the_server_in_order() {
    let mut server = spawn_server(0);
    let out = lms_env(&["server", "stop"], "LMSTUDIO_HOST", &server.addr);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(server.wait().success(), "SIGTERM is an orderly shutdown");
    let again = lms_env(&["server", "stop"], "LMSTUDIO_HOST", &server.addr);
    assert!(!again.status.success(), "nothing left to stop");
}

/// Issue 32: two engines in one process compute on one thread, so llama.cpp's OpenMP keeps one
/// team: the engine threads start no OpenMP threads of their own (a thread takes its creator's
/// name), and the compute thread's team is no larger than the threads asked for. Two teams made
/// more OpenMP threads than cores, and libgomp then sleeps at its barriers: a third slower.
#[cfg(target_os = "linux")]
#[test]
fn two_engines_compute_on_one_thread() {
    let server = LmsServer::start(env!("CARGO_BIN_EXE_lms"), 0, &["--parallel", "1", "--threads", "2"], |_| {});
    for identifier in ["first", "second"] {
        let out = lms_env(&["load", "gemma-3-270m", "--identifier", identifier], "LMSTUDIO_HOST", &server.addr);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for model in ["first", "second", "first"] {
        let body = format!(r#"{{"model":"{model}","prompt":"Once upon a time","max_tokens":4,"temperature":0}}"#);
        let reply: String = post(&server.addr, &body).collect();
        assert!(reply.contains("text_completion"), "{reply}");
    }
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .expect("the server's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    let count = |prefix: &str| names.iter().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(count("lms-engine"), 2, "one thread per engine, no OpenMP team of its own: {names:?}");
    assert!((1..=2).contains(&count("lms-compute")), "one compute thread and its team of 2: {names:?}");
}

/// `lms runtime ls`: the CPU backend and its device, always; a GPU backend that is not built in
/// says how to build it.
#[test]
fn runtime_ls_lists_backends_and_devices() {
    let out = lms(&["runtime", "ls", "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let cpu = v["devices"].as_array().expect("devices").iter().find(|d| d["kind"] == "cpu").expect("a CPU device");
    assert_eq!(cpu["backend"], "CPU");
    assert!(cpu["memoryTotalMib"].as_u64().is_some(), "{cpu}");
    assert!(v["backends"].as_array().expect("backends").iter().any(|b| b["name"] == "CPU" && b["built"] == true));
    let out = lms(&["runtime", "ls"], None);
    assert!(text(&out.stdout).starts_with("CPU: built in"), "{}", text(&out.stdout));
}
