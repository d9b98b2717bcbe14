//! Tools a model may call: the functions a prediction offers ([`Tool`]), whether it must call one
//! ([`ToolChoice`]), and the calls it made ([`ToolCall`]).

use serde::{Deserialize, Serialize};

/// A function the model may call: its name, what it does, and a JSON Schema of its arguments
/// (an object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The name the model calls it by: letters, digits, `_` and `-`, at most 64.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The JSON Schema of the arguments: an object schema (`{}`: no arguments known).
    #[serde(default = "any_object")]
    pub parameters: serde_json::Value,
}

fn any_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl Tool {
    /// A tool called `name` that does `description`, its arguments described by `parameters`.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: serde_json::Value) -> Self {
        Self { name: name.into(), description: description.into(), parameters }
    }
}

/// Whether the model must call a tool (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    /// The model answers or calls, as it chooses (the default with tools).
    Auto,
    /// The tools are not offered.
    None,
    /// The model calls one or more of the tools (constrained by a grammar).
    Required,
    /// The model calls this tool (constrained by a grammar).
    Function(String),
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Names the call, so that its result can answer it (`call_...`).
    pub id: String,
    /// The tool called.
    pub name: String,
    /// Its arguments, as JSON text (an object).
    pub arguments: String,
}
