//! Fuzz targets of the server's request decoders (see `lmstudio::fuzzing`, whose [`Target`] and
//! mutation run these share): OpenAI / REST request bodies, and the SDK protocol's messages.
//!
//! Not part of the API: compiled for tests and with the `fuzzing` feature only.

use lmstudio::fuzzing::Target;
use lmstudio::wire::protocol::{self, ClientMessage, GetOrLoadParameter, LoadModelParameter};

use crate::openai::{CompletionRequest, Kind};
use crate::sdk::{self, ChannelRequest};

/// The server's targets.
pub const TARGETS: &[Target] = &[
    Target { name: "openai_request", run: openai_request, seeds: openai_seeds },
    Target { name: "sdk_message", run: sdk_message, seeds: sdk_seeds },
];

/// A `/v1/completions` or `/v1/chat/completions` body (the REST `/api/v0` ones are the same), as
/// the handlers decode it before any model is looked up.
pub fn openai_request(data: &[u8]) {
    for kind in [Kind::Text, Kind::Chat] {
        if let Ok(mut req) = serde_json::from_slice::<CompletionRequest>(data) {
            let _ = req.decode(kind);
        }
    }
}

/// An SDK message: the frame as the session decodes it, then what a `channelCreate` asks for
/// (its parameter, config stacks and history) as the channel reads it.
pub fn sdk_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(ClientMessage::ChannelCreate { endpoint, creation_parameter, .. }) = protocol::decode_text("message", text)
    else {
        return;
    };
    match sdk::channel_request(&endpoint, creation_parameter) {
        Ok(Some(ChannelRequest::Predict(p))) => {
            let _ = p.prediction_config_stack.prediction_config().map(|c| c.validate());
            let _ = p.history.chat_messages();
        }
        Ok(Some(ChannelRequest::GetOrLoad(GetOrLoadParameter { load_config_stack: stack, .. })))
        | Ok(Some(ChannelRequest::LoadModel(LoadModelParameter { load_config_stack: stack, .. }))) => {
            let _ = stack.load_config(lmstudio::LoadConfig::default()).map(|c| c.validate());
        }
        Ok(Some(ChannelRequest::StreamLogs(_)) | None) | Err(_) => {}
    }
}

fn openai_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"model":"gemma-3-270m","prompt":"My name is","max_tokens":20,"temperature":0.5,"stop":["\n"],"seed":1,"stream":true}"#.to_vec(),
        br#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],"max_completion_tokens":-1,"top_p":0.9,"top_k":40,"min_p":0.05,"repeat_penalty":1.1,"presence_penalty":0.1,"frequency_penalty":0.2,"ignore_eos":false}"#.to_vec(),
        br#"{"prompt":["a","b"],"stop":"x"}"#.to_vec(),
    ]
}

fn sdk_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"type":"channelCreate","channelId":1,"endpoint":"predict","creationParameter":{"modelSpecifier":{"type":"instanceReference","instanceReference":"abc"},"history":{"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]},"predictionConfigStack":{"layers":[{"layerName":"apiOverride","config":{"fields":[{"key":"llm.prediction.maxPredictedTokens","value":{"checked":true,"value":20}},{"key":"llm.prediction.stopStrings","value":["\n"]}]}}]}}}"#.to_vec(),
        br#"{"type":"channelCreate","channelId":2,"endpoint":"getOrLoad","creationParameter":{"identifier":"gemma-3-270m","loadConfigStack":{"layers":[{"layerName":"apiOverride","config":{"fields":[{"key":"llm.load.contextLength","value":2048}]}}]}}}"#.to_vec(),
        br#"{"type":"rpcCall","callId":3,"endpoint":"applyPromptTemplate","parameter":{"specifier":{"type":"query","query":{"identifier":"gemma"}},"history":{"messages":[{"role":"user","content":"Hi"}]}}}"#.to_vec(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI version of the fuzzing (see `lmstudio::fuzzing`).
    #[test]
    fn every_target_survives_a_short_mutation_run() {
        for target in TARGETS {
            lmstudio::fuzzing::mutate(target, 20_000, 0x5eed);
        }
    }

    #[test]
    fn the_seeds_decode() {
        let mut req: CompletionRequest = serde_json::from_slice(&openai_seeds()[0]).expect("a request");
        assert!(req.decode(Kind::Text).is_ok());
        let mut req: CompletionRequest = serde_json::from_slice(&openai_seeds()[1]).expect("a request");
        assert!(req.decode(Kind::Chat).is_ok());
        let seeds = sdk_seeds();
        let text = std::str::from_utf8(&seeds[0]).expect("text");
        let Ok(ClientMessage::ChannelCreate { endpoint, creation_parameter, .. }) =
            protocol::decode_text("message", text)
        else {
            panic!("a channelCreate");
        };
        let Ok(Some(ChannelRequest::Predict(p))) = sdk::channel_request(&endpoint, creation_parameter) else {
            panic!("a predict request");
        };
        assert_eq!(p.model_specifier.name(), Some("abc"));
        assert_eq!(p.prediction_config_stack.prediction_config().expect("config").max_tokens, Some(20));
        assert_eq!(p.history.chat_messages()[0].content, "Hi");
    }
}
