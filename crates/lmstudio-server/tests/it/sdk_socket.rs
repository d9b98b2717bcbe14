//! LM Studio's SDK protocol spoken by hand over a raw websocket, for what no SDK would send.

use std::net::TcpStream;

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::{lms_client, start_server};

type Socket = WebSocket<TcpStream>;

fn connect(addr: std::net::SocketAddr) -> Socket {
    let tcp = TcpStream::connect(addr).expect("connects");
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/llm"), tcp).expect("upgrades");
    send(&mut ws, json!({"authVersion": 1, "clientIdentifier": "raw", "clientPasskey": "raw"}));
    assert_eq!(receive(&mut ws)["success"], true);
    ws
}

fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).expect("sends");
}

fn receive(ws: &mut Socket) -> Value {
    loop {
        if let Message::Text(t) = ws.read().expect("reads") {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// A raw completion of 200 tokens that cannot end early, on channel `id`.
fn predict(id: i64) -> Value {
    let fields = json!([
        {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": true, "value": 200}},
        {"key": "llm.prediction.temperature", "value": 0},
        {"key": "llm.prediction.lmstudioRs.ignoreEos", "value": true},
    ]);
    json!({"type": "channelCreate", "endpoint": "predict", "channelId": id, "creationParameter": {
        "modelSpecifier": {"type": "query", "query": {"identifier": "gemma-3-270m"}},
        "history": {"messages": [{"role": "user", "content": [{"type": "text", "text": "Once upon a time"}]}]},
        "predictionConfigStack": {"layers": [
            {"layerName": "apiOverride", "config": {"fields": fields}},
            {"layerName": "completeModeFormatting", "config": {"fields": []}},
        ]},
    }})
}

/// Issue 12, D7: a second `channelCreate` with an id that is open is refused with a warning; the
/// open channel goes on under its id alone, and is cancelled by it.
#[test]
fn a_duplicate_channel_id_is_refused_and_the_open_channel_goes_on() {
    let addr = start_server(lms_client(2), None);
    let mut ws = connect(addr);
    send(&mut ws, predict(1));
    let fragment = |m: &Value| m["type"] == "channelSend" && m["message"]["type"] == "fragment";
    while !fragment(&receive(&mut ws)) {}
    send(&mut ws, predict(1));
    let mut warned = false;
    let mut fragments_after = 0;
    let result = loop {
        let m = receive(&mut ws);
        assert_ne!(m["type"], "channelError", "{m}");
        if m["type"] == "communicationWarning" {
            assert!(m["warning"].as_str().is_some_and(|w| w.contains("already open")), "{m}");
            warned = true;
        } else if fragment(&m) {
            fragments_after += 1;
            if warned && fragments_after == 3 {
                send(&mut ws, json!({"type": "channelSend", "channelId": 1, "message": {"type": "cancel"}}));
            }
        } else if m["type"] == "channelSend" && m["message"]["type"] == "success" {
            break m["message"].clone();
        }
    };
    assert!(warned, "no warning for the duplicate id");
    assert_eq!(result["stats"]["stopReason"], "userStopped", "{result}");
    // One prediction ran under the id, not two interleaved.
    assert!(result["stats"]["predictedTokensCount"].as_u64().is_some_and(|n| n < 200), "{result}");
}

/// Issue 12, item 6: a websocket message over the size limit ends the connection (a protocol
/// error), and the server goes on: a new socket is served.
#[test]
fn an_oversized_message_ends_the_socket_and_the_server_goes_on() {
    let config = lmstudio_server::ServerConfig { max_body_bytes: 64 << 10, ..crate::test_config() };
    let addr = crate::start_server_with(lms_client(1), config);
    let mut ws = connect(addr);
    let huge = json!({"type": "rpcCall", "callId": 1, "endpoint": "version", "parameter": "x".repeat(100 << 10)});
    let _ = ws.send(Message::text(huge.to_string()));
    let ended = loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(Message::Text(t)) if t.contains("rpcResult") => break false,
            Ok(_) => {}
        }
    };
    assert!(ended, "a message over the limit was taken");
    let mut again = connect(addr);
    send(&mut again, json!({"type": "rpcCall", "callId": 2, "endpoint": "listLoaded"}));
    assert_eq!(receive(&mut again)["type"], "rpcResult");
}

/// Issue 12, item 6: a socket cannot open unbounded channels: past 256 open ones, each new one is
/// refused with a channel error, and the socket still answers calls.
#[test]
fn channels_beyond_the_cap_are_refused() {
    // The server's cap (`sdk::MAX_OPEN_CHANNELS`).
    const CAP: i64 = 256;
    // One slot and room to queue them all: every prediction stays open, waiting behind the first
    // (200 tokens that cannot end early), while the rest arrive.
    let load =
        lmstudio::LoadConfig { parallel: Some(1), max_queued: 512, context_length: Some(1024), ..Default::default() };
    let addr = start_server(crate::lms_client_with(load), None);
    let mut ws = connect(addr);
    // Without a cap nothing would ever answer: a read that waits this long fails the test.
    ws.get_mut().set_read_timeout(Some(std::time::Duration::from_secs(300))).expect("timeout set");
    for id in 0..CAP + 44 {
        send(&mut ws, predict(id));
    }
    // Refusals are sent as the creates are read, so all of them come before this call's result.
    send(&mut ws, json!({"type": "rpcCall", "callId": 7, "endpoint": "listLoaded"}));
    let mut refused = Vec::new();
    loop {
        let m = receive(&mut ws);
        if m["type"] == "rpcResult" {
            break;
        }
        if m["type"] == "channelError" {
            assert!(m["error"]["title"].as_str().is_some_and(|t| t.contains("channels open")), "{m}");
            refused.push(m["channelId"].as_i64().expect("an id"));
        }
    }
    assert_eq!(refused, (CAP..CAP + 44).collect::<Vec<_>>(), "exactly the channels past the cap are refused");
}

/// Issue 27, item 2: what a `predict` channel says, message by message, as a snapshot: the wire
/// format shows in review diffs. A greedy count that any machine continues the same way.
#[test]
fn a_predict_channel_transcript() {
    let addr = start_server(lms_client(1), None);
    let mut ws = connect(addr);
    let fields = json!([
        {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": true, "value": 6}},
        {"key": "llm.prediction.temperature", "value": 0},
        {"key": "llm.prediction.repeatPenalty", "value": {"checked": true, "value": 1}},
    ]);
    send(
        &mut ws,
        json!({"type": "channelCreate", "endpoint": "predict", "channelId": 1, "creationParameter": {
            "modelSpecifier": {"type": "query", "query": {"identifier": "gemma-3-270m"}},
            "history": {"messages": [{"role": "user", "content": [{"type": "text", "text": "1, 2, 3, 4,"}]}]},
            "predictionConfigStack": {"layers": [
                {"layerName": "apiOverride", "config": {"fields": fields}},
                {"layerName": "completeModeFormatting", "config": {"fields": []}},
            ]},
        }}),
    );
    let mut transcript = Vec::new();
    loop {
        let mut m = receive(&mut ws);
        crate::scrub(&mut m);
        let closed = m["type"] == "channelClose";
        // Of prompt progress only the end: how a prompt is cut into chunks is the engine's choice.
        if m["message"]["type"] != "promptProcessingProgress" || m["message"]["progress"] == 1.0 {
            transcript.push(m);
        }
        if closed {
            break;
        }
    }
    insta::assert_json_snapshot!(transcript);
}

/// Issue 27, item 2: an error reply (a call for a model that is not loaded), as a snapshot.
#[test]
fn an_error_reply() {
    let addr = start_server(lms_client(1), None);
    let mut ws = connect(addr);
    send(
        &mut ws,
        json!({"type": "rpcCall", "callId": 1, "endpoint": "tokenize", "parameter": {
            "specifier": {"type": "query", "query": {"identifier": "no-such-model"}}, "inputString": "Hi"}}),
    );
    insta::assert_json_snapshot!(receive(&mut ws));
    send(&mut ws, json!({"type": "rpcCall", "callId": 2, "endpoint": "tokenize", "parameter": {"inputString": 7}}));
    insta::assert_json_snapshot!(receive(&mut ws));
}

/// Issue 27, item 3: a client that sends and never reads cannot grow the server's memory: once
/// its unwritten replies pass the limit, it is disconnected and counted.
#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let client = lms_client(1);
    client.llm(lmstudio::DEFAULT_MODEL_KEY).expect("loads");
    let config = lmstudio_server::ServerConfig { max_socket_queue_bytes: 1 << 20, ..crate::test_config() };
    let addr = crate::start_server_with(client, config);
    let mut ws = connect(addr);
    // Each reply is the token ids of 192 KiB of text: about a megabyte of JSON.
    let text = "a ".repeat(96 << 10);
    for call_id in 0..40 {
        let call = json!({"type": "rpcCall", "callId": call_id, "endpoint": "tokenize", "parameter": {
            "specifier": {"type": "query", "query": {"identifier": "gemma-3-270m"}}, "inputString": text}});
        if ws.send(Message::text(call.to_string())).is_err() {
            break; // already disconnected
        }
    }
    // Not reading; the server's metrics say when it gave up on this socket.
    let disconnected = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        metrics(addr).contains("lms_slow_clients_disconnected_total 1")
    });
    assert!(disconnected, "the server kept queueing for a client that does not read");
    // What was already in flight drains, then the socket ends.
    ws.get_mut().set_read_timeout(Some(std::time::Duration::from_secs(120))).expect("timeout set");
    let mut replies = 0;
    let ended = loop {
        match ws.read() {
            Ok(Message::Text(_)) => replies += 1,
            Ok(Message::Close(_)) => break true,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    assert!(ended, "the socket stayed open");
    assert!(replies < 40, "every reply was delivered: nothing was cut");
}

/// `GET /metrics` on a plain socket.
fn metrics(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect(addr).expect("connects");
    write!(tcp, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("writes");
    let mut body = String::new();
    tcp.read_to_string(&mut body).expect("reads");
    body
}
