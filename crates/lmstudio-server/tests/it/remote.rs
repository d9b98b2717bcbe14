//! The same completion checks against both backends: the embedded engine and the remote client
//! (`Client::connect`) talking to our server over LM Studio's websocket protocol.

use futures_util::StreamExt;

use crate::{lms_client, start_server};

fn greedy(n: u32) -> lmstudio::Config {
    lmstudio::Config { max_tokens: Some(n), temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() }
}

fn backends() -> Vec<(&'static str, lmstudio::Client)> {
    let addr = start_server(lms_client(2), None);
    let remote = lmstudio::Client::connect(&addr.to_string()).expect("connects");
    vec![("embedded", lms_client(2)), ("remote", remote)]
}

#[test]
fn completions_agree_across_backends() {
    for (name, client) in backends() {
        crate::backends::completes_alike(name, &client);
        crate::backends::calls_tools_alike(name, &client);
        crate::backends::embeds_alike(name, &client);
    }
}

#[test]
fn async_stream_works_remotely() {
    let addr = start_server(lms_client(2), None);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = lmstudio::Client::connect(&addr.to_string()).expect("connects");
        let model = client.llm_async("gemma-3-270m").await.expect("loads");
        let mut stream = model.complete_stream_async("1, 2, 3,", greedy(6)).await.expect("starts");
        let mut text = String::new();
        while let Some(f) = stream.next().await {
            text += &f.expect("fragment").content;
        }
        assert_eq!(text, " 4, 5,");
        assert_eq!(model.complete_async("1, 2, 3,", greedy(6)).await.expect("completes").content, text);
    });
}
