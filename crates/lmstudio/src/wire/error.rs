//! Errors on the wire: LM Studio's error object (`SerializedLMSExtendedError`) both ways. LM Studio's
//! SDKs read `title` and, for an unknown model, `displayData.code`; our own variant travels in
//! `errorData`, so that a remote caller gets the same [`Error`] variant, with the same fields, as an
//! embedded one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::error::Error;

/// [`Error`] as plain data: one row per variant, the same names both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    RpcWorker { endpoint: String, reason: String },
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
            Error::RpcWorker { endpoint, reason } => {
                Self::RpcWorker { endpoint: endpoint.clone(), reason: reason.clone() }
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
            Wire::RpcWorker { endpoint, reason } => Self::RpcWorker { endpoint, reason },
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

/// LM Studio's error object (`SerializedLMSExtendedError`): what `rpcError`, `channelError` and
/// the signal errors carry. Every field may be missing, and what does not read as ours is left out
/// rather than failing the message it came in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorObject {
    /// What went wrong, on one line.
    pub title: String,
    /// The title of the first error in the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_title: Option<String>,
    /// Data for programs; ours holds the [`Error`] itself.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    error_data: Option<ErrorData>,
    /// What the user might do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// What LM Studio's SDKs show for errors they know by `code`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub display_data: Option<DisplayData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ErrorData {
    /// Ours (LM Studio's SDKs leave unknown keys alone).
    #[serde(rename = "lmstudioRs")]
    ours: Wire,
}

/// The `displayData` LM Studio's SDKs know, by `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum DisplayData {
    /// No model matches the query.
    #[serde(rename = "generic.noModelMatchingQuery", rename_all = "camelCase")]
    NoModelMatchingQuery {
        /// What was asked for.
        query: QueryName,
        /// Some of the models there are.
        loaded_models_sample: Vec<String>,
        /// How many there are.
        total_loaded_models: usize,
    },
    /// No preset matches the identifier.
    #[serde(rename = "generic.presetNotFound", rename_all = "camelCase")]
    PresetNotFound {
        /// What was asked for.
        specified_fuzzy_preset_identifier: String,
        /// Some of the presets there are.
        available_presets_sample: Vec<PresetSample>,
        /// How many there are.
        total_available_presets: usize,
    },
    /// A code of LM Studio's this vocabulary does not know.
    #[serde(other)]
    Other,
}

/// The name a query in [`DisplayData::NoModelMatchingQuery`] gave (its other fields are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryName {
    /// An instance identifier or a model key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
}

/// A preset in [`DisplayData::PresetNotFound`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetSample {
    /// The preset's identifier.
    pub identifier: String,
    /// Its name.
    pub name: String,
}

/// `T` if the value reads as one, else `None` (never an error).
fn lenient<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// LM Studio's error object for `e`.
pub fn error_object(e: &Error) -> ErrorObject {
    let title = e.to_string();
    let mut object = ErrorObject { title: title.clone(), root_title: Some(title), ..Default::default() };
    if let Error::IdentifierInUse { .. } = e {
        // LM Studio's clients (and its test suite) match this one by its text on one line, which
        // the Python SDK writes only for an error that has nothing but its title.
        return object;
    }
    object.error_data = Some(ErrorData { ours: Wire::from(e) });
    if let Error::PresetNotFound { query, available } = e {
        object.display_data = Some(DisplayData::PresetNotFound {
            specified_fuzzy_preset_identifier: query.clone(),
            available_presets_sample: available
                .iter()
                .map(|(identifier, name)| PresetSample { identifier: identifier.clone(), name: name.clone() })
                .collect(),
            total_available_presets: available.len(),
        });
    }
    if let Error::ModelNotFound { query, candidates } = e {
        object.suggestion = Some(if candidates.is_empty() {
            "Download a model first (lms get)".to_owned()
        } else {
            format!("Available: {}", candidates.join(", "))
        });
        object.display_data = Some(DisplayData::NoModelMatchingQuery {
            query: QueryName { identifier: Some(query.clone()) },
            loaded_models_sample: candidates.clone(),
            total_loaded_models: candidates.len(),
        });
    }
    object
}

/// The [`Error`] an error object stands for: our own variant when the server is lmstudio-rs, an
/// unknown model by LM Studio's code, else [`Error::Server`] with the title.
pub fn error_from_object(e: &ErrorObject) -> Error {
    if let Some(data) = &e.error_data {
        return data.ours.clone().into();
    }
    if let Some(DisplayData::NoModelMatchingQuery { query, loaded_models_sample, .. }) = &e.display_data {
        let query = query.identifier.clone().unwrap_or_default();
        return Error::ModelNotFound { query, candidates: loaded_models_sample.clone() };
    }
    Error::Server(if e.title.is_empty() { "unknown error".to_owned() } else { e.title.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::result::MemoryEstimate;

    #[test]
    fn model_not_found_has_the_sdk_code() {
        let e = Error::ModelNotFound { query: "x".into(), candidates: vec![] };
        let v = serde_json::to_value(error_object(&e)).expect("writes");
        assert_eq!(v["displayData"]["code"], "generic.noModelMatchingQuery");
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
            Error::RpcWorker { endpoint: "10.0.0.2:50052".into(), reason: "no answer".into() },
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
        let object = r#"{"title": "Something broke", "rootTitle": "Something broke", "cause": "x",
            "errorData": {"lmstudioRs": {"kind": "fromTheFuture"}}, "displayData": {"code": "generic.other"}}"#;
        let e = error_from_object(&serde_json::from_str(object).expect("reads"));
        assert!(matches!(e, Error::Server(t) if t == "Something broke"));
    }
}
