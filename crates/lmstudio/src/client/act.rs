//! LM Studio's `model.act(chat, tools)`: the model answers, its calls run as Rust functions, their
//! results go back, and again, until it answers without calling or the round limit is reached.

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Llm;
use crate::types::config::Config;
use crate::types::error::{Error, Result};
use crate::types::result::{Chat, ChatMessage, Fragment, PredictionResult};
use crate::types::tools::{Tool, ToolCall, ToolChoice};

/// What a tool's implementation gives back: its result as text for the model, or why it failed
/// (the model reads that too: `Error: ...`).
pub type ToolOutcome = std::result::Result<String, String>;

type Implementation = Arc<dyn Fn(&str) -> ToolOutcome + Send + Sync>;

/// A [`Tool`] with the Rust function that runs it.
#[derive(Clone)]
pub struct FunctionTool {
    /// What the model is told of it.
    pub tool: Tool,
    run: Implementation,
}

impl std::fmt::Debug for FunctionTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionTool").field("tool", &self.tool).finish_non_exhaustive()
    }
}

impl FunctionTool {
    /// `tool`, run by `run` with its arguments as JSON text.
    pub fn new(tool: Tool, run: impl Fn(&str) -> ToolOutcome + Send + Sync + 'static) -> Self {
        Self { tool, run: Arc::new(run) }
    }

    /// `tool`, run by `run` with its arguments read into `A`; the result is written as JSON
    /// (a `String` as it is). Arguments that do not read as `A` are an error the model is told.
    pub fn typed<A, R>(tool: Tool, run: impl Fn(A) -> std::result::Result<R, String> + Send + Sync + 'static) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        Self::new(tool, move |arguments| {
            let arguments = serde_json::from_str(arguments).map_err(|e| format!("the arguments do not fit: {e}"))?;
            let result = run(arguments)?;
            match serde_json::to_value(result).map_err(|e| e.to_string())? {
                serde_json::Value::String(s) => Ok(s),
                other => Ok(other.to_string()),
            }
        })
    }

    /// Runs it on a call's arguments; a panic in it is an error like any other.
    fn call(&self, arguments: &str) -> ToolOutcome {
        let run = Arc::clone(&self.run);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(arguments)))
            .unwrap_or_else(|_| Err("the tool panicked".to_owned()))
    }
}

/// What [`Act::run`] did.
#[derive(Debug, Clone)]
pub struct ActResult {
    /// Predictions made.
    pub rounds: u32,
    /// The chat with everything the rounds added: the model's messages (with their calls) and the
    /// tools' results.
    pub chat: Chat,
    /// The last prediction.
    pub last: PredictionResult,
    /// Seconds the whole took.
    pub total_execution_time_seconds: f64,
}

type OnMessage<'a> = Box<dyn FnMut(&ChatMessage) + 'a>;
type OnRound<'a> = Box<dyn FnMut(u32) + 'a>;
type OnFragment<'a> = Box<dyn FnMut(u32, &Fragment) + 'a>;

/// A run of rounds, set up by [`Llm::act`]; [`Act::run`] runs it on the caller's thread.
pub struct Act<'a> {
    llm: &'a Llm,
    chat: Chat,
    tools: Vec<FunctionTool>,
    config: Config,
    max_rounds: u32,
    on_message: Option<OnMessage<'a>>,
    on_round_start: Option<OnRound<'a>>,
    on_round_end: Option<OnRound<'a>>,
    on_fragment: Option<OnFragment<'a>>,
}

impl Llm {
    /// LM Studio's `model.act(chat, tools)`: rounds of the model answering `chat`, each call it
    /// makes run by its [`FunctionTool`] and the result put back, until it answers without a call
    /// or [`Act::max_rounds`] predictions were made. Set it up, then [`Act::run`].
    pub fn act(&self, chat: &Chat, tools: Vec<FunctionTool>) -> Act<'_> {
        Act {
            llm: self,
            chat: chat.clone(),
            tools,
            config: Config::default(),
            max_rounds: 8,
            on_message: None,
            on_round_start: None,
            on_round_end: None,
            on_fragment: None,
        }
    }
}

impl<'a> Act<'a> {
    /// The prediction settings of every round. Its `tool_choice` holds for the first round (say,
    /// a call that must be made); later rounds choose freely (`auto`). Its `tools` are replaced by
    /// the act's.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Predictions made at most (default 8, at least 1).
    pub fn max_rounds(mut self, rounds: u32) -> Self {
        self.max_rounds = rounds;
        self
    }

    /// Called with each message the rounds add to the chat: the model's, then each tool result.
    pub fn on_message(mut self, f: impl FnMut(&ChatMessage) + 'a) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Called with the round's number (from 0) before its prediction starts.
    pub fn on_round_start(mut self, f: impl FnMut(u32) + 'a) -> Self {
        self.on_round_start = Some(Box::new(f));
        self
    }

    /// Called with the round's number once its calls have run.
    pub fn on_round_end(mut self, f: impl FnMut(u32) + 'a) -> Self {
        self.on_round_end = Some(Box::new(f));
        self
    }

    /// Called with the round's number and each fragment of its text (never call syntax).
    pub fn on_prediction_fragment(mut self, f: impl FnMut(u32, &Fragment) + 'a) -> Self {
        self.on_fragment = Some(Box::new(f));
        self
    }

    /// Runs the rounds.
    pub fn run(mut self) -> Result<ActResult> {
        if self.max_rounds == 0 {
            return Err(Error::InvalidConfig("act needs at least one round".into()));
        }
        if self.tools.is_empty() {
            return Err(Error::InvalidConfig("act needs tools".into()));
        }
        let started = Instant::now();
        let base = Config { tools: self.tools.iter().map(|t| t.tool.clone()).collect(), ..self.config.clone() };
        let mut round = 0;
        loop {
            let choice = if round == 0 { base.tool_choice.clone() } else { Some(ToolChoice::Auto) };
            let config = Config { tool_choice: choice, ..base.clone() };
            if let Some(f) = &mut self.on_round_start {
                f(round);
            }
            let mut stream = self.llm.respond_stream(&self.chat, config)?;
            for fragment in stream.by_ref() {
                let fragment = fragment?;
                if let Some(f) = &mut self.on_fragment {
                    f(round, &fragment);
                }
            }
            let last = stream.result()?;
            let calls = last.tool_calls.clone();
            self.add(ChatMessage::tool_calls(last.content.clone(), calls.clone()));
            for call in &calls {
                let result = self.call(call);
                self.add(ChatMessage::tool_result(&call.id, result));
            }
            if let Some(f) = &mut self.on_round_end {
                f(round);
            }
            round += 1;
            if calls.is_empty() || round >= self.max_rounds {
                return Ok(ActResult {
                    rounds: round,
                    chat: self.chat,
                    last,
                    total_execution_time_seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
    }

    fn add(&mut self, message: ChatMessage) {
        if let Some(f) = &mut self.on_message {
            f(&message);
        }
        self.chat.push(message);
    }

    /// A call's result as the model reads it: the tool's text, or `Error: ...`.
    fn call(&self, call: &ToolCall) -> String {
        let outcome = match self.tools.iter().find(|t| t.tool.name == call.name) {
            Some(tool) => tool.call(&call.arguments),
            None => Err(format!("there is no tool called {:?}", call.name)),
        };
        outcome.unwrap_or_else(|why| format!("Error: {why}"))
    }
}
