//! LM Studio's SDK protocol as types, one vocabulary for both ends: the remote client writes what
//! the server reads with the same structs, and the other way round.
//!
//! Three levels, as the protocol has them: the envelope of every websocket frame
//! ([`ClientMessage`], [`ServerMessage`]); the parameter and result of each RPC endpoint (an
//! [`Rpc`] type per endpoint); and the creation parameter and messages of each channel endpoint
//! ([`PredictParameter`] / [`PredictMessage`], [`GetOrLoadParameter`] / [`LoadModelParameter`] /
//! [`LoadMessage`]). The envelope carries the inner levels as JSON values, decoded by whichever
//! end knows which endpoint a call or channel belongs to. A decode failure names the message and
//! the field ([`decode`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{KvConfig, KvStack};
use crate::types::result::{ChatMessage, Fragment, ModelInfo, ReasoningType, Stats};
use crate::types::tools::ToolCall;

/// The first frame on every socket: who the client is and its passkey (the server's API key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// Always 1.
    pub auth_version: i64,
    /// The client's own id.
    pub client_identifier: String,
    /// The server's API key where it has one, else anything.
    pub client_passkey: String,
}

/// The server's answer to [`Auth`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthReply {
    /// Whether the client may go on.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// Calls an [`Rpc`] endpoint; answered by one `rpcResult` or `rpcError` of the same id.
    RpcCall {
        /// The endpoint's name ([`Rpc::ENDPOINT`]).
        endpoint: String,
        /// The client's id of this call.
        call_id: i64,
        /// [`Rpc::Parameter`]; absent where the endpoint takes none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameter: Option<Value>,
    },
    /// Opens a channel (a prediction, a load).
    ChannelCreate {
        /// `predict`, `getOrLoad`, `loadModel`.
        endpoint: String,
        /// The client's id of this channel.
        channel_id: i64,
        /// The endpoint's creation parameter ([`PredictParameter`]...).
        #[serde(default)]
        creation_parameter: Value,
    },
    /// A message into an open channel ([`ChannelInput`]).
    ChannelSend {
        /// The channel.
        channel_id: i64,
        /// The message.
        message: Value,
        /// Asks for a `channelAck` (the SDKs never need one from us).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ack_id: Option<i64>,
    },
    /// The client closes a channel.
    ChannelClose {
        /// The channel.
        channel_id: i64,
    },
    /// Acknowledges a server message.
    ChannelAck {
        /// The channel.
        channel_id: i64,
        /// What it acknowledges.
        ack_id: i64,
    },
    /// The client could not take a message of ours.
    CommunicationWarning {
        /// What it says.
        warning: String,
    },
    /// Answered by `keepAliveAck`.
    KeepAlive,
    /// Subscribes to a signal (we have none: answered by `signalError`).
    SignalSubscribe {
        /// The signal.
        endpoint: String,
        /// The client's id of the subscription.
        subscribe_id: i64,
    },
    /// Subscribes to a writable signal (we have none: answered by `writableSignalError`).
    WritableSignalSubscribe {
        /// The signal.
        endpoint: String,
        /// The client's id of the subscription.
        subscribe_id: i64,
    },
    /// Ends a subscription.
    SignalUnsubscribe {
        /// The subscription.
        subscribe_id: i64,
    },
    /// Ends a writable subscription.
    WritableSignalUnsubscribe {
        /// The subscription.
        subscribe_id: i64,
    },
    /// Writes a writable signal.
    WritableSignalUpdate {
        /// The subscription.
        subscribe_id: i64,
    },
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    /// An RPC's result ([`Rpc::Result`]); absent where there is none.
    RpcResult {
        /// The call.
        call_id: i64,
        /// The result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
    },
    /// An RPC failed.
    RpcError {
        /// The call.
        call_id: i64,
        /// LM Studio's error object ([`super::error_object`]).
        error: super::ErrorObject,
    },
    /// A message of an open channel ([`PredictMessage`], [`LoadMessage`]).
    ChannelSend {
        /// The channel.
        channel_id: i64,
        /// The message.
        message: Value,
    },
    /// The channel ends (after its last message).
    ChannelClose {
        /// The channel.
        channel_id: i64,
    },
    /// The channel failed.
    ChannelError {
        /// The channel.
        channel_id: i64,
        /// LM Studio's error object.
        error: super::ErrorObject,
    },
    /// The server could not take a message of the client's.
    CommunicationWarning {
        /// What it says.
        warning: String,
    },
    /// Answers `keepAlive`.
    KeepAliveAck,
    /// A subscription was refused.
    SignalError {
        /// The subscription.
        subscribe_id: i64,
        /// LM Studio's error object.
        error: super::ErrorObject,
    },
    /// A writable subscription was refused.
    WritableSignalError {
        /// The subscription.
        subscribe_id: i64,
        /// LM Studio's error object.
        error: super::ErrorObject,
    },
    /// What this vocabulary does not know (LM Studio's signal updates...): ignored by a client.
    #[serde(other)]
    Unknown,
}

/// A message a client sends into a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ChannelInput {
    /// Stop the prediction or load.
    Cancel,
    /// Stop a log stream (`diagnostics` / `streamLogs`): what the function that the JS SDK's
    /// `unstable_streamLogs` returns sends.
    Stop,
    /// Anything else (ignored).
    #[serde(other)]
    Other,
}

/// How a request names a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ModelSpecifier {
    /// A query: an identifier or a path; neither means any loaded model.
    Query {
        /// What to look for.
        query: ModelQuery,
    },
    /// One load of a model: once it is unloaded, the handle is unloaded for good.
    #[serde(rename_all = "camelCase")]
    InstanceReference {
        /// The instance's reference.
        instance_reference: String,
    },
}

/// The query of a [`ModelSpecifier::Query`] (other fields of LM Studio's queries are ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelQuery {
    /// An instance identifier or a model key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// A model's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ModelSpecifier {
    /// A query by identifier.
    pub fn identifier(identifier: &str) -> Self {
        Self::Query { query: ModelQuery { identifier: Some(identifier.to_owned()), path: None } }
    }

    /// The name it gives, if any: the reference, else the identifier, else the path.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::InstanceReference { instance_reference } => Some(instance_reference),
            Self::Query { query } => query.identifier.as_deref().or(query.path.as_deref()),
        }
    }
}

/// A chat as LM Studio's SDKs send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatHistory {
    /// The messages, oldest first.
    pub messages: Vec<HistoryMessage>,
}

/// One message of a [`ChatHistory`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMessage {
    /// `system`, `user`, `assistant`.
    pub role: String,
    /// Its content.
    pub content: MessageContent,
}

/// A message's content: a string, or parts (the SDKs' form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts, of which the text ones are read.
    Parts(Vec<ContentPart>),
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An assistant's call of a tool.
    ToolCallRequest {
        /// The call.
        tool_call_request: ToolCallRequest,
    },
    /// A tool's result (in a `tool` message).
    ToolCallResult {
        /// What the tool returned.
        content: String,
        /// The call it answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
    },
    /// Files and what else the SDKs send (not read).
    #[serde(other)]
    Other,
}

/// A call of a tool as LM Studio's SDKs write it: its arguments an object, not text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool called.
    pub name: String,
    /// Names the call, for its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Map<String, Value>>,
}

impl From<&ToolCall> for ToolCallRequest {
    fn from(call: &ToolCall) -> Self {
        // The engine's arguments are always a JSON object; anything else would be no arguments.
        let arguments = serde_json::from_str(&call.arguments).ok();
        Self { kind: "function".into(), name: call.name.clone(), id: Some(call.id.clone()), arguments }
    }
}

impl From<ToolCallRequest> for ToolCall {
    fn from(call: ToolCallRequest) -> Self {
        let arguments = Value::Object(call.arguments.unwrap_or_default()).to_string();
        Self { id: call.id.unwrap_or_default(), name: call.name, arguments }
    }
}

impl ChatHistory {
    /// A history of `messages`: text as one text part, calls as call parts after it, a tool's
    /// result as a result part.
    pub fn of(messages: &[ChatMessage]) -> Self {
        let parts = |m: &ChatMessage| {
            if m.role == "tool" {
                let result =
                    ContentPart::ToolCallResult { content: m.content.clone(), tool_call_id: m.tool_call_id.clone() };
                return vec![result];
            }
            let text = (!m.content.is_empty() || m.tool_calls.is_empty())
                .then(|| ContentPart::Text { text: m.content.clone() });
            let calls = m.tool_calls.iter().map(|c| ContentPart::ToolCallRequest { tool_call_request: c.into() });
            text.into_iter().chain(calls).collect()
        };
        let messages = messages
            .iter()
            .map(|m| HistoryMessage { role: m.role.clone(), content: MessageContent::Parts(parts(m)) })
            .collect();
        Self { messages }
    }

    /// The messages: text parts joined, calls and a tool's result read (a `tool` message of
    /// several results is one message a result).
    pub fn chat_messages(&self) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let parts = match &m.content {
                MessageContent::Text(text) => {
                    out.push(ChatMessage::new(&m.role, text.clone()));
                    continue;
                }
                MessageContent::Parts(parts) => parts,
            };
            let mut message = ChatMessage::new(&m.role, String::new());
            let mut results = Vec::new();
            for part in parts {
                match part {
                    ContentPart::Text { text } => message.content.push_str(text),
                    ContentPart::ToolCallRequest { tool_call_request } => {
                        message.tool_calls.push(tool_call_request.clone().into());
                    }
                    ContentPart::ToolCallResult { content, tool_call_id } => results.push(ChatMessage {
                        tool_call_id: tool_call_id.clone(),
                        ..ChatMessage::new(&m.role, content.clone())
                    }),
                    ContentPart::Other => {}
                }
            }
            if results.is_empty() || !message.content.is_empty() || !message.tool_calls.is_empty() {
                out.push(message);
            }
            out.append(&mut results);
        }
        out
    }
}

/// An RPC endpoint: its name, what it takes and what it returns.
pub trait Rpc {
    /// The endpoint's name in `rpcCall`.
    const ENDPOINT: &'static str;
    /// What it takes (`()`: nothing, the `parameter` key left out).
    type Parameter: Serialize + DeserializeOwned;
    /// What it returns ([`Nothing`], or an `Option`'s `None`: an `rpcResult` without `result`).
    type Result: Serialize + DeserializeOwned;
}

macro_rules! rpc {
    ($(#[$doc:meta])* $name:ident, $endpoint:literal, $parameter:ty => $result:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Rpc for $name {
            const ENDPOINT: &'static str = $endpoint;
            type Parameter = $parameter;
            type Result = $result;
        }
    };
}

rpc!(
    /// `llm/listLoaded` (and `embedding/listLoaded`): the loaded instances.
    ListLoaded, "listLoaded", Nothing => Vec<ModelInfo>
);
rpc!(
    /// `system/listDownloadedModels`: the models in the store.
    ListDownloadedModels, "listDownloadedModels", Nothing => Vec<ModelInfo>
);
rpc!(
    /// `system/version`.
    Version, "version", Nothing => VersionResult
);
rpc!(
    /// `llm/getModelInfo`: a loaded instance's info; nothing when not found and not asked to throw.
    GetModelInfo, "getModelInfo", GetModelInfoParameter => Option<ModelInfo>
);
rpc!(
    /// `llm/tokenize`.
    Tokenize, "tokenize", TextParameter => TokenizeResult
);
rpc!(
    /// `llm/countTokens`.
    CountTokens, "countTokens", TextParameter => CountTokensResult
);
rpc!(
    /// `llm/getLoadConfig`: an instance's load settings.
    GetLoadConfig, "getLoadConfig", SpecifierParameter => KvConfig
);
rpc!(
    /// `llm/applyPromptTemplate`: a chat formatted by the model's template.
    ApplyPromptTemplate, "applyPromptTemplate", ApplyPromptTemplateParameter => ApplyPromptTemplateResult
);
rpc!(
    /// `llm/unloadModel`.
    UnloadModel, "unloadModel", UnloadModelParameter => Nothing
);
rpc!(
    /// `embedding/embedString`: the vector of one text.
    EmbedString, "embedString", EmbedStringParameter => EmbedStringResult
);

/// The parameter of an endpoint that takes none, or the result of one that returns none: written
/// as nothing (the key left out), and whatever the other end sends is taken (some send `{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nothing;

impl Serialize for Nothing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Nothing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Self)
    }
}

/// [`Version`]'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResult {
    /// The server's version.
    pub version: String,
    /// Its build number.
    pub build: u64,
}

/// A parameter that names an instance and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecifierParameter {
    /// The instance.
    pub specifier: ModelSpecifier,
}

/// [`GetModelInfo`]'s parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetModelInfoParameter {
    /// The instance.
    pub specifier: ModelSpecifier,
    /// `false`: no result instead of an error when nothing is loaded under that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throw_if_not_found: Option<bool>,
}

/// [`Tokenize`]'s and [`CountTokens`]' parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextParameter {
    /// The instance.
    pub specifier: ModelSpecifier,
    /// The text.
    pub input_string: String,
}

/// [`EmbedString`]'s parameter (the instance under `modelSpecifier`, not `specifier`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedStringParameter {
    /// The instance.
    pub model_specifier: ModelSpecifier,
    /// The text.
    pub input_string: String,
}

/// [`EmbedString`]'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedStringResult {
    /// The text's vector.
    pub embedding: Vec<f32>,
}

/// [`Tokenize`]'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeResult {
    /// The token ids.
    pub tokens: Vec<i32>,
}

/// [`CountTokens`]' result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensResult {
    /// How many tokens.
    pub token_count: usize,
}

/// [`ApplyPromptTemplate`]'s parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyPromptTemplateParameter {
    /// The instance.
    pub specifier: ModelSpecifier,
    /// The chat.
    pub history: ChatHistory,
    /// Settings (the template's; not read).
    #[serde(default)]
    pub prediction_config_stack: KvStack,
    /// Options (BOS/EOS omission, tool definitions; not read).
    #[serde(default)]
    pub opts: Value,
}

/// [`ApplyPromptTemplate`]'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPromptTemplateResult {
    /// The prompt.
    pub formatted: String,
}

/// [`UnloadModel`]'s parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadModelParameter {
    /// The instance.
    pub identifier: String,
}

/// The creation parameter of a `getOrLoad` channel: the instance an identifier names, else the
/// model it names loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrLoadParameter {
    /// An instance identifier or a model key.
    pub identifier: String,
    /// Load settings for a load.
    #[serde(default)]
    pub load_config_stack: KvStack,
    /// Unload after this long idle (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ttl_ms: Option<f64>,
}

/// The creation parameter of a `loadModel` channel: a new instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadModelParameter {
    /// The model.
    pub model_key: String,
    /// The identifier the instance is to answer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Load settings.
    #[serde(default)]
    pub load_config_stack: KvStack,
    /// Unload after this long idle (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<f64>,
}

/// What a load channel (`getOrLoad`, `loadModel`) sends. Terminal: `alreadyLoaded`,
/// `loadSuccess` (getOrLoad), `success` (loadModel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum LoadMessage {
    /// `loadModel` found the model.
    Resolved {
        /// The model.
        info: Box<ModelInfo>,
    },
    /// `getOrLoad` starts loading.
    StartLoading {
        /// The model's key.
        identifier: String,
        /// The model.
        info: Box<ModelInfo>,
    },
    /// `loadModel`'s progress in `0.0..=1.0`.
    Progress {
        /// How far.
        progress: f32,
    },
    /// `getOrLoad`'s progress in `0.0..=1.0`.
    LoadProgress {
        /// How far.
        progress: f32,
    },
    /// A load on demand first unloads an instance an earlier one made.
    #[serde(rename = "unloadingOtherJITModel")]
    UnloadingOtherJitModel {
        /// That instance.
        info: Box<ModelInfo>,
    },
    /// `getOrLoad` found the instance loaded.
    AlreadyLoaded {
        /// The instance.
        info: Box<ModelInfo>,
    },
    /// `getOrLoad` loaded it.
    LoadSuccess {
        /// The instance.
        info: Box<ModelInfo>,
    },
    /// `loadModel` loaded it.
    Success {
        /// The instance.
        info: Box<ModelInfo>,
    },
    /// What this vocabulary does not know (ignored by a client).
    #[serde(other)]
    Unknown,
}

/// The creation parameter of a `predict` channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictParameter {
    /// The instance (a query loads the model if needed).
    pub model_specifier: ModelSpecifier,
    /// The chat; a raw completion is one message under [`super::COMPLETE_MODE_LAYER`].
    pub history: ChatHistory,
    /// The settings.
    #[serde(default)]
    pub prediction_config_stack: KvStack,
    /// A preset whose settings go under the stack's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzzy_preset_identifier: Option<String>,
}

/// What a `predict` channel sends: progress, fragments, then `success` (or a `channelError`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum PredictMessage {
    /// Prompt processing in `0.0..=1.0`.
    PromptProcessingProgress {
        /// How far.
        progress: f32,
    },
    /// Generated text.
    Fragment {
        /// The fragment.
        fragment: WireFragment,
    },
    /// A call of a tool begins.
    ToolCallGenerationStart {
        /// The call's id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
    },
    /// The called tool's name.
    ToolCallGenerationNameReceived {
        /// The name.
        name: String,
    },
    /// Text of the call's arguments.
    ToolCallGenerationArgumentFragmentGenerated {
        /// The text.
        content: String,
    },
    /// A call, whole.
    ToolCallGenerationEnd {
        /// The call.
        tool_call_request: ToolCallRequest,
    },
    /// The prediction ended.
    Success {
        /// Its stats.
        stats: Box<Stats>,
        /// The instance.
        model_info: Box<ModelInfo>,
        /// The instance's load settings.
        load_model_config: KvConfig,
        /// The settings it ran with.
        prediction_config: KvConfig,
    },
    /// What this vocabulary does not know (tool-call progress...): ignored by a client.
    #[serde(other)]
    Unknown,
}

/// A fragment as LM Studio's SDKs read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFragment {
    /// The text.
    pub content: String,
    /// Tokens it covers.
    pub tokens_count: u32,
    /// Whether drafted tokens are among them.
    #[serde(default)]
    pub contains_drafted: bool,
    /// `none`, `reasoning`, `reasoningStartTag`, `reasoningEndTag`.
    #[serde(default = "no_reasoning")]
    pub reasoning_type: String,
    /// Whether it is structure (tool-call syntax) rather than text.
    #[serde(default)]
    pub is_structural: bool,
}

fn no_reasoning() -> String {
    "none".into()
}

impl From<&Fragment> for WireFragment {
    fn from(f: &Fragment) -> Self {
        Self {
            content: f.content.clone(),
            tokens_count: f.tokens_count,
            contains_drafted: false,
            reasoning_type: f.reasoning.as_str().to_owned(),
            is_structural: false,
        }
    }
}

impl From<WireFragment> for Fragment {
    fn from(f: WireFragment) -> Self {
        let reasoning = ReasoningType::from_name(&f.reasoning_type).unwrap_or_default();
        Self { content: f.content, tokens_count: f.tokens_count, logprobs: Vec::new(), reasoning }
    }
}

/// Why a message could not be read: which message, and what serde says of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The message: its `type` where it has one, else what was expected.
    pub message: String,
    /// What is wrong (the field).
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed {}: {}", self.message, self.reason)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for crate::types::error::Error {
    fn from(e: DecodeError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}

/// Reads `value` as a `T`; `what` names it in the error (`"predict parameter"`), with the
/// message's own `type` where it has one.
pub fn decode<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, DecodeError> {
    let kind = value.get("type").and_then(Value::as_str).map(|t| format!("{what} {t:?}"));
    let message = kind.unwrap_or_else(|| what.to_owned());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        // The path of the field (`history.messages[0].role`), unless the message itself is wrong.
        let reason = if path == "." { reason } else { format!("{path}: {reason}") };
        DecodeError { message, reason }
    })
}

/// Reads one frame's text as a `T`.
pub fn decode_text<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, DecodeError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError { message: what.to_owned(), reason: e.to_string() })?;
    decode(what, value)
}

/// `value` as JSON (our types always serialize).
pub fn encode<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `value` as a frame's text.
pub fn encode_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as an SDK sends it.
    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON")
    }

    /// The frames of the protocol reference's transcript read as our types and write back the same.
    #[test]
    fn the_sdks_frames_round_trip() {
        let client = [
            json(r#"{"type": "rpcCall", "endpoint": "listLoaded", "callId": 1}"#),
            json(
                r#"{"type": "channelCreate", "endpoint": "getOrLoad", "channelId": 1, "creationParameter": {"identifier": "q"}}"#,
            ),
            json(r#"{"type": "channelSend", "channelId": 2, "message": {"type": "cancel"}}"#),
            json(r#"{"type": "keepAlive"}"#),
            json(r#"{"type": "signalSubscribe", "endpoint": "x", "subscribeId": 3}"#),
        ];
        for frame in client {
            let typed: ClientMessage = decode("message", frame.clone()).expect("reads");
            assert_eq!(encode(&typed), frame);
        }
        let server = [
            json(r#"{"type": "rpcResult", "callId": 1, "result": []}"#),
            json(r#"{"type": "rpcResult", "callId": 1}"#),
            json(
                r#"{"type": "channelSend", "channelId": 2, "message": {"type": "promptProcessingProgress", "progress": 0.5}}"#,
            ),
            json(r#"{"type": "channelClose", "channelId": 2}"#),
            json(r#"{"type": "keepAliveAck"}"#),
        ];
        for frame in server {
            let typed: ServerMessage = decode("message", frame.clone()).expect("reads");
            assert_eq!(encode(&typed), frame);
        }
        let unknown: ServerMessage = decode("message", json(r#"{"type": "signalUpdate", "x": 1}"#)).expect("reads");
        assert_eq!(unknown, ServerMessage::Unknown);
    }

    /// What the SDKs send into a channel: a prediction's `cancel`, a log stream's `stop` (lmstudio-js'
    /// `unstable_streamLogs`); anything else reads as `Other`.
    #[test]
    fn channel_inputs_read_and_write_as_the_sdks_send_them() {
        for (frame, input) in
            [(r#"{"type": "cancel"}"#, ChannelInput::Cancel), (r#"{"type": "stop"}"#, ChannelInput::Stop)]
        {
            assert_eq!(decode::<ChannelInput>("channel message", json(frame)), Ok(input));
            assert_eq!(encode(&input), json(frame));
        }
        assert_eq!(decode::<ChannelInput>("channel message", json(r#"{"type": "pause"}"#)), Ok(ChannelInput::Other));
    }

    #[test]
    fn a_decode_failure_names_the_message_and_the_field() {
        let e =
            decode::<ClientMessage>("message", json(r#"{"type": "rpcCall", "endpoint": "x"}"#)).expect_err("no callId");
        assert_eq!(e.message, "message \"rpcCall\"");
        assert!(e.reason.contains("callId"), "{}", e.reason);
        let e = decode::<PredictParameter>("predict parameter", json(r#"{"history": {"messages": []}}"#))
            .expect_err("no specifier");
        assert!(e.to_string().contains("predict parameter") && e.reason.contains("modelSpecifier"), "{e}");
        let e = decode::<TextParameter>(
            "tokenize parameter",
            json(r#"{"specifier": {"type": "query", "query": {}}, "inputString": 7}"#),
        )
        .expect_err("a number");
        assert!(e.reason.starts_with("inputString: "), "{e}");
    }

    #[test]
    fn histories_read_strings_and_parts() {
        let history: ChatHistory = decode(
            "history",
            json(r#"{"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "file", "name": "f"}, {"type": "text", "text": "b"}]}
            ]}"#),
        )
        .expect("reads");
        let messages = history.chat_messages();
        assert_eq!(messages, vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "ab")]);
        assert_eq!(ChatHistory::of(&messages).chat_messages(), messages);
    }

    #[test]
    fn specifiers_of_both_forms() {
        let q: ModelSpecifier =
            decode("specifier", json(r#"{"type": "query", "query": {"path": "p/m"}}"#)).expect("reads");
        assert_eq!(q.name(), Some("p/m"));
        let r: ModelSpecifier =
            decode("specifier", json(r#"{"type": "instanceReference", "instanceReference": "r1"}"#)).expect("reads");
        assert_eq!(r.name(), Some("r1"));
        assert_eq!(
            encode(&ModelSpecifier::identifier("m")),
            json(r#"{"type": "query", "query": {"identifier": "m"}}"#)
        );
    }
}
