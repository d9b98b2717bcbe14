//! The remote client against a websocket server of the test's own that misbehaves on purpose:
//! RPCs that are never answered time out with a typed error, and a connection that drops fails
//! every call waiting on it at once. No model and no engine: both builds run these.

use std::net::TcpListener;
use std::time::Duration;

use lmstudio as lms;
use serde_json::{json, Value};

/// A server that authenticates one client, then hands each message it reads to `on_message`
/// (with the count so far) until that returns `false`, and closes the connection.
fn fake_server(mut on_message: impl FnMut(&Value, usize) -> bool + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accepts");
        drop(listener); // a reconnect finds nobody
        let mut ws = tungstenite::accept(tcp).expect("a websocket");
        let auth = ws.read().expect("auth packet");
        assert!(auth.to_text().expect("text").contains("authVersion"));
        ws.send(tungstenite::Message::text(json!({"success": true}).to_string())).expect("sent");
        let mut count = 0;
        while let Ok(message) = ws.read() {
            let Ok(text) = message.to_text() else { continue };
            count += 1;
            let value: Value = serde_json::from_str(text).expect("json");
            if !on_message(&value, count) {
                break;
            }
        }
        // Dropping the socket without a close frame: the connection is simply gone.
    });
    addr
}

#[test]
fn an_unanswered_call_times_out_with_a_typed_error() {
    let addr = fake_server(|_, _| true);
    let options = lms::RemoteOptions { rpc_timeout: Duration::from_millis(300), ..Default::default() };
    let client = lms::Client::connect_with(&addr, options).expect("connects");
    match client.list_loaded() {
        Err(lms::Error::Timeout { call, .. }) => assert_eq!(call, "listLoaded"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_dropped_connection_fails_every_waiting_call_at_once() {
    const CALLS: usize = 3;
    let addr = fake_server(|message, count| {
        assert_eq!(message["type"], "rpcCall");
        count < CALLS // the last call's arrival ends the connection
    });
    // A timeout far beyond the test's own patience: only the drop can end these calls.
    let options = lms::RemoteOptions { rpc_timeout: Duration::from_secs(3600), ..Default::default() };
    let client = lms::Client::connect_with(&addr, options).expect("connects");
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..CALLS {
        let (client, tx) = (client.clone(), tx.clone());
        std::thread::spawn(move || tx.send(client.list_loaded()).expect("reported"));
    }
    for _ in 0..CALLS {
        let outcome = rx.recv_timeout(Duration::from_secs(120)).expect("a waiting call was left hanging");
        assert!(matches!(outcome, Err(lms::Error::Connection(_))), "{outcome:?}");
    }
    // A new call tries a new connection, and the server is gone: it fails at once too.
    assert!(matches!(client.list_loaded(), Err(lms::Error::Connection(_))));
}
