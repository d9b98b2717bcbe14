//! Errors on the wire: LM Studio's error object (`SerializedLMSExtendedError`) both ways. LM Studio's
//! SDKs read `title` and, for an unknown model, `displayData.code`; our own variant travels in
//! `errorData`, so that a remote caller gets the same [`Error`] variant, with the same fields, as an
//! embedded one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::types::error::Error;

/// Where our variant sits inside `errorData` (LM Studio's SDKs leave unknown keys alone).
const KEY: &str = "lmstudioRs";

/// [`Error`] as plain data: one row per variant, the same names both ways.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum Wire {
    ModelNotFound { query: String, candidates: Vec<String> },
    AmbiguousModel { query: String, candidates: Vec<String> },
    InvalidModelFile { path: PathBuf, reason: String },
    InvalidConfig { message: String },
    InvalidRequest { message: String },
    InvalidPrompt { message: String },
    ContextOverflow { prompt_tokens: usize, context_length: usize },
    Load { path: PathBuf, reason: String },
    InsufficientMemory { estimate: crate::types::result::MemoryEstimate, available_mib: u64 },
    InsufficientGpuMemory { estimate: crate::types::result::MemoryEstimate, free_mib: u64 },
    IdentifierInUse { identifier: String },
    IncompatibleDraftModel { draft: String, path: PathBuf, reason: String },
    PresetNotFound { query: String, available: Vec<(String, String)> },
    Overloaded { queued: usize },
    NotFinished,
    ModelUnloaded,
    Engine { message: String },
    Download { message: String },
    Server { message: String },
    Connection { message: String },
    Timeout { call: String, seconds: u64 },
    Unsupported { message: String },
    Io { message: String },
}

impl From<&Error> for Wire {
    fn from(e: &Error) -> Self {
        let message = |m: &String| m.clone();
        match e {
            Error::ModelNotFound { query, candidates } => {
                Self::ModelNotFound { query: query.clone(), candidates: candidates.clone() }
            }
            Error::AmbiguousModel { query, candidates } => {
                Self::AmbiguousModel { query: query.clone(), candidates: candidates.clone() }
            }
            Error::InvalidModelFile { path, reason } => {
                Self::InvalidModelFile { path: path.clone(), reason: reason.clone() }
            }
            Error::InvalidConfig(m) => Self::InvalidConfig { message: message(m) },
            Error::InvalidRequest(m) => Self::InvalidRequest { message: message(m) },
            Error::InvalidPrompt(m) => Self::InvalidPrompt { message: message(m) },
            Error::ContextOverflow { prompt_tokens, context_length } => {
                Self::ContextOverflow { prompt_tokens: *prompt_tokens, context_length: *context_length }
            }
            Error::Load { path, reason } => Self::Load { path: path.clone(), reason: reason.clone() },
            Error::InsufficientMemory { estimate, available_mib } => {
                Self::InsufficientMemory { estimate: *estimate, available_mib: *available_mib }
            }
            Error::InsufficientGpuMemory { estimate, free_mib } => {
                Self::InsufficientGpuMemory { estimate: *estimate, free_mib: *free_mib }
            }
            Error::IdentifierInUse { identifier } => Self::IdentifierInUse { identifier: identifier.clone() },
            Error::IncompatibleDraftModel { draft, path, reason } => {
                Self::IncompatibleDraftModel { draft: draft.clone(), path: path.clone(), reason: reason.clone() }
            }
            Error::PresetNotFound { query, available } => {
                Self::PresetNotFound { query: query.clone(), available: available.clone() }
            }
            Error::Overloaded { queued } => Self::Overloaded { queued: *queued },
            Error::NotFinished => Self::NotFinished,
            Error::ModelUnloaded => Self::ModelUnloaded,
            Error::Engine(m) => Self::Engine { message: message(m) },
            Error::Download(m) => Self::Download { message: message(m) },
            Error::Server(m) => Self::Server { message: message(m) },
            Error::Connection(m) => Self::Connection { message: message(m) },
            Error::Timeout { call, seconds } => Self::Timeout { call: call.clone(), seconds: *seconds },
            Error::Unsupported(m) => Self::Unsupported { message: message(m) },
            Error::Io(e) => Self::Io { message: e.to_string() },
        }
    }
}

impl From<Wire> for Error {
    fn from(w: Wire) -> Self {
        match w {
            Wire::ModelNotFound { query, candidates } => Self::ModelNotFound { query, candidates },
            Wire::AmbiguousModel { query, candidates } => Self::AmbiguousModel { query, candidates },
            Wire::InvalidModelFile { path, reason } => Self::InvalidModelFile { path, reason },
            Wire::InvalidConfig { message } => Self::InvalidConfig(message),
            Wire::InvalidRequest { message } => Self::InvalidRequest(message),
            Wire::InvalidPrompt { message } => Self::InvalidPrompt(message),
            Wire::ContextOverflow { prompt_tokens, context_length } => {
                Self::ContextOverflow { prompt_tokens, context_length }
            }
            Wire::Load { path, reason } => Self::Load { path, reason },
            Wire::InsufficientMemory { estimate, available_mib } => {
                Self::InsufficientMemory { estimate, available_mib }
            }
            Wire::InsufficientGpuMemory { estimate, free_mib } => Self::InsufficientGpuMemory { estimate, free_mib },
            Wire::IdentifierInUse { identifier } => Self::IdentifierInUse { identifier },
            Wire::IncompatibleDraftModel { draft, path, reason } => {
                Self::IncompatibleDraftModel { draft, path, reason }
            }
            Wire::PresetNotFound { query, available } => Self::PresetNotFound { query, available },
            Wire::Overloaded { queued } => Self::Overloaded { queued },
            Wire::NotFinished => Self::NotFinished,
            Wire::ModelUnloaded => Self::ModelUnloaded,
            Wire::Engine { message } => Self::Engine(message),
            Wire::Download { message } => Self::Download(message),
            Wire::Server { message } => Self::Server(message),
            Wire::Connection { message } => Self::Connection(message),
            Wire::Timeout { call, seconds } => Self::Timeout { call, seconds },
            Wire::Unsupported { message } => Self::Unsupported(message),
            Wire::Io { message } => Self::Io(std::sync::Arc::new(std::io::Error::other(message))),
        }
    }
}

/// LM Studio's error object for `e`.
pub fn error_object(e: &Error) -> Value {
    let title = e.to_string();
    if let Error::IdentifierInUse { .. } = e {
        // LM Studio's clients (and its test suite) match this one by its text on one line, which
        // the Python SDK writes only for an error that has nothing but its title.
        return json!({"title": title, "rootTitle": title});
    }
    let mut object = json!({"title": title, "rootTitle": title, "errorData": {KEY: Wire::from(e)}});
    if let Error::PresetNotFound { query, available } = e {
        let sample: Vec<Value> = available.iter().map(|(id, name)| json!({"identifier": id, "name": name})).collect();
        object["displayData"] = json!({
            "code": "generic.presetNotFound",
            "specifiedFuzzyPresetIdentifier": query,
            "availablePresetsSample": sample,
            "totalAvailablePresets": available.len(),
        });
    }
    if let Error::ModelNotFound { query, candidates } = e {
        object["suggestion"] = json!(if candidates.is_empty() {
            "Download a model first (lms get)".to_owned()
        } else {
            format!("Available: {}", candidates.join(", "))
        });
        object["displayData"] = json!({
            "code": "generic.noModelMatchingQuery",
            "query": {"identifier": query},
            "loadedModelsSample": candidates,
            "totalLoadedModels": candidates.len(),
        });
    }
    object
}

/// The [`Error`] an error object stands for: our own variant when the server is lmstudio-rs, an
/// unknown model by LM Studio's code, else [`Error::Server`] with the title.
pub fn error_from_object(e: &Value) -> Error {
    if let Ok(wire) = serde_json::from_value::<Wire>(e["errorData"][KEY].clone()) {
        return wire.into();
    }
    let title = e["title"].as_str().unwrap_or("unknown error").to_owned();
    if e["displayData"]["code"] == "generic.noModelMatchingQuery" {
        let query = e["displayData"]["query"]["identifier"].as_str().unwrap_or_default().to_owned();
        let candidates = serde_json::from_value(e["displayData"]["loadedModelsSample"].clone()).unwrap_or_default();
        return Error::ModelNotFound { query, candidates };
    }
    Error::Server(title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::result::MemoryEstimate;

    #[test]
    fn model_not_found_has_the_sdk_code() {
        let e = Error::ModelNotFound { query: "x".into(), candidates: vec![] };
        assert_eq!(error_object(&e)["displayData"]["code"], "generic.noModelMatchingQuery");
    }

    /// Every variant comes back as itself, with the same fields (compared through Display and Debug).
    #[test]
    fn every_variant_survives_the_round_trip() {
        let all = [
            Error::ModelNotFound { query: "q".into(), candidates: vec!["a".into(), "b".into()] },
            Error::AmbiguousModel { query: "q".into(), candidates: vec!["a".into()] },
            Error::InvalidModelFile { path: "/m/x.gguf".into(), reason: "truncated".into() },
            Error::InvalidConfig("temperature".into()),
            Error::InvalidPrompt("empty".into()),
            Error::InvalidRequest("predict parameter: history: missing field `messages`".into()),
            Error::ContextOverflow { prompt_tokens: 5000, context_length: 4096 },
            Error::Load { path: "/m/y.gguf".into(), reason: "no memory".into() },
            Error::Overloaded { queued: 64 },
            Error::InsufficientMemory {
                estimate: MemoryEstimate { weights_mib: 1, total_mib: 3, ..Default::default() },
                available_mib: 2,
            },
            Error::InsufficientGpuMemory {
                estimate: MemoryEstimate { weights_mib: 4, gpu_mib: 5, ..Default::default() },
                free_mib: 4,
            },
            Error::IncompatibleDraftModel { draft: "d".into(), path: "/m/d.gguf".into(), reason: "token 5".into() },
            Error::NotFinished,
            Error::ModelUnloaded,
            Error::Engine("decode".into()),
            Error::Download("offline".into()),
            Error::Server("boom".into()),
            Error::Connection("lost".into()),
            Error::Timeout { call: "tokenize".into(), seconds: 5 },
            Error::Unsupported("that".into()),
        ];
        for e in all {
            let back = error_from_object(&error_object(&e));
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
        let io = Error::from(std::io::Error::other("disk full"));
        assert_eq!(error_from_object(&error_object(&io)).to_string(), io.to_string());
    }

    #[test]
    fn a_plain_lm_studio_error_is_a_server_error_with_its_title() {
        let e = error_from_object(&json!({"title": "Something broke", "rootTitle": "Something broke"}));
        assert!(matches!(e, Error::Server(t) if t == "Something broke"));
    }
}
