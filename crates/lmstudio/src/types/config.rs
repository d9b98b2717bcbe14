//! Prediction and load settings with LM Studio's names, and their validation.
//!
//! [`Config`] is what callers write (every field optional, camelCase in JSON as LM Studio's SDK
//! sends it); [`Config::validate`] turns it into a [`ValidConfig`] with every default filled in
//! before any work is queued, so bad values fail early with [`Error::InvalidConfig`].

use serde::{Deserialize, Deserializer, Serialize};

use super::error::{Error, Result};
use super::tools::{Tool, ToolChoice};

/// Settings of one prediction. `Default` leaves everything at LM Studio's defaults.
///
/// Deserializes from LM Studio's camelCase JSON: `{"maxTokens": 100, "temperature": 0.6,
/// "stopStrings": ["$"]}`. Unknown keys are an error, so a typo never goes unnoticed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Most tokens to predict; `None` (or `false`/`-1` in JSON) runs until end of text or context.
    #[serde(default, deserialize_with = "de_max_tokens", skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, `0` for greedy. Default 0.8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Generation stops before any of these strings; the result never contains them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_strings: Vec<String>,
    /// Keep only the `k` most likely tokens (`0` disables). Default 40.
    #[serde(default, alias = "topKSampling", deserialize_with = "de_opt_int", skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Nucleus sampling threshold in `(0, 1]`. Default 0.95.
    #[serde(default, alias = "topPSampling", skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than `min_p` times the best one, in `[0, 1]`. Default 0.05.
    #[serde(default, alias = "minPSampling", skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Penalty for repeating recent tokens, `1` disables. Default 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// OpenAI-style presence penalty in `[-2, 2]`. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// OpenAI-style frequency penalty in `[-2, 2]`. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Seed of the random sampler; the same seed, prompt and config give the same text.
    #[serde(default, deserialize_with = "de_opt_int", skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// CPU threads for evaluation. The engine switches to this count when it is otherwise idle.
    #[serde(default, deserialize_with = "de_opt_int", skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<u32>,
    /// What to do with a prompt longer than the context. Default: truncate the middle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_overflow_policy: Option<ContextOverflowPolicy>,
    /// Never predict an end-of-generation token (llama.cpp's `ignore_eos`, for benchmarks).
    /// Not one of LM Studio's fields. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// A preset (LM Studio's `preset`: a `*.preset.json` by identifier, name or file name) whose
    /// settings fill in what this config leaves unset. Unknown: [`Error::PresetNotFound`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Report each predicted token's log probability with this many most likely alternatives
    /// (0 to 20; 0: the token's own alone). See [`crate::TokenLogprob`]. Default: off.
    #[serde(default, deserialize_with = "de_opt_int", skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// Constrain the output to JSON of a schema or to a grammar's language (LM Studio's
    /// `structured`: `{"type": "json", "jsonSchema": {...}}`, `{"type": "gbnf", "gbnfGrammar":
    /// "..."}`; `{"type": "none"}` is `None`). Default: unconstrained.
    #[serde(
        default,
        deserialize_with = "de_structured",
        serialize_with = "ser_structured",
        skip_serializing_if = "Option::is_none"
    )]
    pub structured: Option<Structured>,
    /// Speculative decoding: `ngram` drafts tokens from what the context already holds (prompt
    /// lookup) and checks them in one batch; the text is what it would be without (the same
    /// draws, see ARCHITECTURE.md), only sooner when it repeats. Not one of LM Studio's fields
    /// (our key `lmstudioRs.speculation`). Default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculation: Option<Speculation>,
    /// Speculative decoding with a draft model (LM Studio's `draftModel`): the key of a smaller
    /// model with the same vocabulary, loaded with the first prediction that names it, guesses
    /// tokens greedily for this model to check. The text is what it would be without (the same
    /// draws). A model whose vocabulary differs: [`Error::IncompatibleDraftModel`]. `""` is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_model: Option<String>,
    /// With a draft model: draft exactly this many tokens each step (1 to 64), however unsure
    /// the draft model is. Default: up to 16, while it is sure enough.
    #[serde(default, deserialize_with = "de_opt_int", skip_serializing_if = "Option::is_none")]
    pub speculative_decoding_num_draft_tokens_exact: Option<u32>,
    /// With a draft model: drafts shorter than this are not checked. Default 0.
    #[serde(default, deserialize_with = "de_opt_int", skip_serializing_if = "Option::is_none")]
    pub speculative_decoding_min_draft_length_to_consider: Option<u32>,
    /// With a draft model: drafting stops at a token the draft model gives less than this
    /// probability, in `[0, 1]`. Default 0.75.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative_decoding_min_continue_drafting_probability: Option<f32>,
    /// Functions the model may call, for a chat ([`crate::Llm::respond`]): the model's chat
    /// template shows them, and the calls it makes come back in
    /// [`crate::PredictionResult::tool_calls`] (stop reason `toolCalls`), never as text. A raw
    /// completion takes none. Embedded only for now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Whether the model must call one of [`Config::tools`]. Default: `auto` with tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may make several calls in one answer. Default true; false holds it to
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// How a chat's reasoning is told from its answer. Default: on, `<think>` and `</think>`, as
    /// LM Studio's; off, reasoning is answer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_parsing: Option<ReasoningParsing>,
    /// Whether a model that can think before it answers does (its chat template's
    /// `enable_thinking`, as Qwen3's reads it; LM Studio's `reasoning.enableThinking`). Default:
    /// as the template decides. A model whose template has no such switch is not changed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
}

/// The markers between which a model reasons before it answers (LM Studio's
/// `llm.prediction.reasoning.parsing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningParsing {
    /// Whether reasoning is split out at all.
    pub enabled: bool,
    /// The marker that opens the reasoning.
    pub start_string: String,
    /// The marker that closes it.
    pub end_string: String,
}

impl Default for ReasoningParsing {
    fn default() -> Self {
        Self { enabled: true, start_string: "<think>".into(), end_string: "</think>".into() }
    }
}

/// A draft model and how to draft with it ([`ValidConfig::draft`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DraftSettings {
    /// The draft model's key (as asked; the client resolves it).
    pub model: String,
    /// Tokens drafted each step, when fixed.
    pub num_draft_tokens_exact: Option<u32>,
    /// Shortest draft checked.
    pub min_draft_length_to_consider: u32,
    /// Least probability at which drafting goes on.
    pub min_continue_drafting_probability: f32,
}

/// The most tokens [`Config::speculative_decoding_num_draft_tokens_exact`] takes.
pub const MAX_DRAFT_TOKENS: u32 = 64;

/// How a prediction drafts tokens ahead ([`Config::speculation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Speculation {
    /// No drafts: one token per step.
    Off,
    /// Drafts from the context: the tokens that followed the latest earlier occurrence of the
    /// last few tokens.
    Ngram,
}

impl std::str::FromStr for Speculation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "ngram" => Ok(Self::Ngram),
            other => Err(format!("speculation is ngram or off, not {other:?}")),
        }
    }
}

/// Output constrained token by token to a formal language, so that it always parses: only
/// tokens that keep the text a prefix of a sentence of the language are sampled, and the end of
/// text only when it is a whole one. A prediction cut by `maxTokens` or a stop string may still
/// end early; its stop reason says so.
#[derive(Debug, Clone, PartialEq)]
pub enum Structured {
    /// JSON that validates against this JSON Schema (`{}`: any JSON value). The schema features
    /// llama.cpp's converter knows: types, properties (in their order), required, enum, const,
    /// items, min/max items and lengths, patterns, `$ref` to `$defs`, anyOf/oneOf/allOf.
    Json(serde_json::Value),
    /// Text in the language of this GBNF grammar (llama.cpp's format; the start rule is `root`).
    Gbnf(String),
}

impl Structured {
    /// Checks what can be checked without the engine: a schema is an object (`true` is `{}`), a
    /// grammar is not empty.
    fn validate(&self) -> Result<Self> {
        use serde_json::Value;
        let bad = |why: String| Err(Error::InvalidConfig(format!("structured: {why}")));
        match self {
            Self::Json(Value::Bool(true)) => Ok(Self::Json(Value::Object(Default::default()))),
            Self::Json(Value::Bool(false)) => bad("the JSON schema `false` matches nothing".into()),
            Self::Json(Value::Object(_)) => Ok(self.clone()),
            Self::Json(other) => bad(format!("a JSON schema is an object, got {other}")),
            Self::Gbnf(g) if g.trim().is_empty() => bad("the GBNF grammar is empty".into()),
            Self::Gbnf(_) => Ok(self.clone()),
        }
    }
}

/// [`Structured`]'s JSON form, LM Studio's `structured` setting: `{"type": "json", "jsonSchema"?}`
/// (no schema: any JSON), `{"type": "gbnf", "gbnfGrammar"}`; `{"type": "none"}` is no constraint.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
enum StructuredForm {
    None,
    Json {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_schema: Option<serde_json::Value>,
    },
    Gbnf {
        gbnf_grammar: String,
    },
}

impl Structured {
    /// Reads the JSON form; `null` and `{"type": "none"}` are no constraint.
    pub(crate) fn read(v: &serde_json::Value) -> std::result::Result<Option<Self>, serde_json::Error> {
        de_structured(v)
    }

    /// The JSON form.
    pub(crate) fn write(&self) -> serde_json::Value {
        serde_json::to_value(self.form()).unwrap_or_default()
    }

    fn form(&self) -> StructuredForm {
        match self {
            Self::Json(schema) => StructuredForm::Json { json_schema: Some(schema.clone()) },
            Self::Gbnf(grammar) => StructuredForm::Gbnf { gbnf_grammar: grammar.clone() },
        }
    }
}

fn de_structured<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Structured>, D::Error> {
    Ok(match Option::<StructuredForm>::deserialize(d)? {
        None | Some(StructuredForm::None) => None,
        Some(StructuredForm::Json { json_schema }) => {
            Some(Structured::Json(json_schema.unwrap_or_else(|| serde_json::Value::Object(Default::default()))))
        }
        Some(StructuredForm::Gbnf { gbnf_grammar }) => Some(Structured::Gbnf(gbnf_grammar)),
    })
}

fn ser_structured<S: serde::Serializer>(s: &Option<Structured>, ser: S) -> std::result::Result<S::Ok, S::Error> {
    s.as_ref().map(Structured::form).serialize(ser)
}

/// What happens to a prompt that does not fit in the context (LM Studio's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContextOverflowPolicy {
    /// Refuse the prompt with [`Error::ContextOverflow`].
    StopAtLimit,
    /// Keep the start and the end of the prompt, drop the middle.
    TruncateMiddle,
    /// Keep the end of the prompt.
    RollingWindow,
}

/// A [`Config`] with every default filled in and every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig {
    /// Most tokens to predict, if limited.
    pub max_tokens: Option<u32>,
    /// Temperature (0 = greedy).
    pub temperature: f32,
    /// Stop strings, none empty.
    pub stop_strings: Vec<String>,
    /// Top-k (0 = off).
    pub top_k: u32,
    /// Top-p.
    pub top_p: f32,
    /// Min-p.
    pub min_p: f32,
    /// Repeat penalty (1 = off).
    pub repeat_penalty: f32,
    /// Presence penalty.
    pub presence_penalty: f32,
    /// Frequency penalty.
    pub frequency_penalty: f32,
    /// Sampler seed, if fixed.
    pub seed: Option<u32>,
    /// CPU threads asked for.
    pub cpu_threads: Option<u32>,
    /// Overflow policy.
    pub context_overflow_policy: ContextOverflowPolicy,
    /// End-of-generation tokens are never predicted.
    pub ignore_eos: bool,
    /// Log probabilities wanted, with this many alternatives.
    pub logprobs: Option<u32>,
    /// The language the output is constrained to.
    pub structured: Option<Structured>,
    /// When set, the output is constrained only from where this text first appears in it (the
    /// grammar's sentence starts with it): a tool call that a model may or may not make.
    pub structured_trigger: Option<String>,
    /// Whether tokens are drafted from the context.
    pub ngram_speculation: bool,
    /// The draft model, when one drafts.
    pub draft: Option<DraftSettings>,
}

impl Config {
    /// This config, with what it leaves unset taken from `base` (a preset's settings).
    pub fn over(self, base: Config) -> Config {
        Config {
            max_tokens: self.max_tokens.or(base.max_tokens),
            temperature: self.temperature.or(base.temperature),
            stop_strings: if self.stop_strings.is_empty() { base.stop_strings } else { self.stop_strings },
            top_k: self.top_k.or(base.top_k),
            top_p: self.top_p.or(base.top_p),
            min_p: self.min_p.or(base.min_p),
            repeat_penalty: self.repeat_penalty.or(base.repeat_penalty),
            presence_penalty: self.presence_penalty.or(base.presence_penalty),
            frequency_penalty: self.frequency_penalty.or(base.frequency_penalty),
            seed: self.seed.or(base.seed),
            cpu_threads: self.cpu_threads.or(base.cpu_threads),
            context_overflow_policy: self.context_overflow_policy.or(base.context_overflow_policy),
            ignore_eos: self.ignore_eos.or(base.ignore_eos),
            preset: self.preset.or(base.preset),
            logprobs: self.logprobs.or(base.logprobs),
            structured: self.structured.or(base.structured),
            speculation: self.speculation.or(base.speculation),
            draft_model: self.draft_model.or(base.draft_model),
            speculative_decoding_num_draft_tokens_exact: self
                .speculative_decoding_num_draft_tokens_exact
                .or(base.speculative_decoding_num_draft_tokens_exact),
            speculative_decoding_min_draft_length_to_consider: self
                .speculative_decoding_min_draft_length_to_consider
                .or(base.speculative_decoding_min_draft_length_to_consider),
            speculative_decoding_min_continue_drafting_probability: self
                .speculative_decoding_min_continue_drafting_probability
                .or(base.speculative_decoding_min_continue_drafting_probability),
            tools: if self.tools.is_empty() { base.tools } else { self.tools },
            tool_choice: self.tool_choice.or(base.tool_choice),
            parallel_tool_calls: self.parallel_tool_calls.or(base.parallel_tool_calls),
            reasoning_parsing: self.reasoning_parsing.or(base.reasoning_parsing),
            enable_thinking: self.enable_thinking.or(base.enable_thinking),
        }
    }

    /// Whether a prediction with it offers tools: some are given and `none` is not chosen.
    pub fn offers_tools(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != Some(ToolChoice::None)
    }

    /// Parses LM Studio's camelCase JSON config.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::InvalidConfig(e.to_string()))
    }

    /// Fills in defaults and checks every value's range.
    pub fn validate(&self) -> Result<ValidConfig> {
        let temperature = check("temperature", self.temperature, 0.8, |t| (0.0..=100.0).contains(&t))?;
        let top_p = check("topP", self.top_p, 0.95, |p| p > 0.0 && p <= 1.0)?;
        let min_p = check("minP", self.min_p, 0.05, |p| (0.0..=1.0).contains(&p))?;
        let repeat_penalty = check("repeatPenalty", self.repeat_penalty, 1.1, |r| r > 0.0 && r <= 10.0)?;
        let presence_penalty = check("presencePenalty", self.presence_penalty, 0.0, |p| (-2.0..=2.0).contains(&p))?;
        let frequency_penalty = check("frequencyPenalty", self.frequency_penalty, 0.0, |p| (-2.0..=2.0).contains(&p))?;
        if let Some(i) = self.stop_strings.iter().position(String::is_empty) {
            return Err(Error::InvalidConfig(format!("stopStrings[{i}] is empty")));
        }
        if self.max_tokens == Some(0) {
            return Err(Error::InvalidConfig("maxTokens must be at least 1".into()));
        }
        if let Some(t) = self.cpu_threads {
            if !(1..=1024).contains(&t) {
                return Err(Error::InvalidConfig(format!("cpuThreads must be in 1..=1024, got {t}")));
            }
        }
        if let Some(n) = self.logprobs.filter(|&n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::InvalidConfig(format!(
                "logprobs asks for {n} alternatives; at most {MAX_TOP_LOGPROBS}"
            )));
        }
        validate_tools(&self.tools, self.tool_choice.as_ref())?;
        if self.offers_tools() && self.structured.is_some() {
            return Err(Error::InvalidConfig("structured output and tools exclude each other".into()));
        }
        if let Some(p) = self.reasoning_parsing.as_ref().filter(|p| p.enabled) {
            if p.start_string.is_empty() || p.end_string.is_empty() {
                return Err(Error::InvalidConfig("reasoning parsing needs a start and an end string".into()));
            }
        }
        let top_k = self.top_k.unwrap_or(40);
        if top_k > i32::MAX as u32 {
            return Err(Error::InvalidConfig(format!("topK is too large: {top_k}")));
        }
        Ok(ValidConfig {
            max_tokens: self.max_tokens,
            temperature,
            stop_strings: self.stop_strings.clone(),
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            seed: self.seed,
            cpu_threads: self.cpu_threads,
            context_overflow_policy: self.context_overflow_policy.unwrap_or(ContextOverflowPolicy::TruncateMiddle),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            logprobs: self.logprobs,
            structured: self.structured.as_ref().map(Structured::validate).transpose()?,
            structured_trigger: None,
            ngram_speculation: self.speculation == Some(Speculation::Ngram),
            draft: self.draft_settings()?,
        })
    }

    /// The draft model's settings, checked; `None` without a draft model (its knobs alone are
    /// refused: they would do nothing).
    fn draft_settings(&self) -> Result<Option<DraftSettings>> {
        let model = self.draft_model.as_deref().map(str::trim).filter(|m| !m.is_empty());
        let Some(model) = model else {
            let knob = [
                ("speculativeDecodingNumDraftTokensExact", self.speculative_decoding_num_draft_tokens_exact.is_some()),
                (
                    "speculativeDecodingMinDraftLengthToConsider",
                    self.speculative_decoding_min_draft_length_to_consider.is_some(),
                ),
                (
                    "speculativeDecodingMinContinueDraftingProbability",
                    self.speculative_decoding_min_continue_drafting_probability.is_some(),
                ),
            ]
            .into_iter()
            .find(|(_, set)| *set);
            return match knob {
                Some((name, _)) => Err(Error::InvalidConfig(format!("{name} needs draftModel"))),
                None => Ok(None),
            };
        };
        if self.speculation == Some(Speculation::Ngram) {
            return Err(Error::InvalidConfig("draftModel and n-gram speculation exclude each other".into()));
        }
        let exact = self.speculative_decoding_num_draft_tokens_exact;
        if let Some(n) = exact.filter(|n| !(1..=MAX_DRAFT_TOKENS).contains(n)) {
            return Err(Error::InvalidConfig(format!(
                "speculativeDecodingNumDraftTokensExact must be in 1..={MAX_DRAFT_TOKENS}, got {n}"
            )));
        }
        let min_len = self.speculative_decoding_min_draft_length_to_consider.unwrap_or(0);
        if min_len > MAX_DRAFT_TOKENS {
            return Err(Error::InvalidConfig(format!(
                "speculativeDecodingMinDraftLengthToConsider must be at most {MAX_DRAFT_TOKENS}, got {min_len}"
            )));
        }
        let min_p = check(
            "speculativeDecodingMinContinueDraftingProbability",
            self.speculative_decoding_min_continue_drafting_probability,
            0.75,
            |p| (0.0..=1.0).contains(&p),
        )?;
        Ok(Some(DraftSettings {
            model: model.to_owned(),
            num_draft_tokens_exact: exact,
            min_draft_length_to_consider: min_len,
            min_continue_drafting_probability: min_p,
        }))
    }
}

/// The most alternatives [`Config::logprobs`] takes (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

fn check(name: &str, value: Option<f32>, default: f32, ok: impl Fn(f32) -> bool) -> Result<f32> {
    let v = value.unwrap_or(default);
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(Error::InvalidConfig(format!("{name} is out of range: {v}")))
    }
}

/// `maxTokens` in LM Studio's JSON config: see [`Config::token_limit`].
fn de_max_tokens<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Config::token_limit(v.as_ref()).map_err(serde::de::Error::custom)
}

impl Config {
    /// LM Studio's forms of a token limit, the one rule for JSON configs, KV configs and OpenAI
    /// bodies: a whole number is the limit; `false`, `-1` or nothing means no limit.
    pub fn token_limit(v: Option<&serde_json::Value>) -> Result<Option<u32>> {
        use serde_json::Value;
        match v {
            None | Some(Value::Null | Value::Bool(false)) => Ok(None),
            Some(v) if v.as_f64() == Some(-1.0) => Ok(None),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("expected a number, false or -1, got {v}"))
                .and_then(int_from)
                .map(Some)
                .map_err(|e| Error::InvalidConfig(format!("maxTokens: {e}"))),
        }
    }
}

/// An integer that may arrive as a float with no fraction (LM Studio sends `topKSampling: 40.0`).
fn de_opt_int<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(n) => int_from(n).map(Some).map_err(serde::de::Error::custom),
    }
}

fn int_from(n: f64) -> std::result::Result<u32, String> {
    if n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&n) {
        Ok(n as u32)
    } else {
        Err(format!("expected a non-negative integer, got {n}"))
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LoadConfig {
    /// Tokens of context per prediction slot. Default 4096, capped at the model's trained length.
    pub context_length: Option<u32>,
    /// Predictions that run at once (continuous batching). Default [`DEFAULT_PARALLEL`], like LM
    /// Studio; through a server, unset leaves it to the server (`lms server start --parallel`).
    pub parallel: Option<u32>,
    /// CPU threads. Default: all available cores.
    pub cpu_threads: Option<u32>,
    /// Predictions that may wait for a free slot before new ones get [`Error::Overloaded`].
    pub max_queued: u32,
    /// The name the loaded instance answers to. Default: the model key.
    pub identifier: Option<String>,
    /// Host memory for prompts that no slot holds any more, restored into any slot when a later
    /// prompt shares their prefix (MiB; 0: off). Default 512.
    pub prompt_cache_mib: u32,
    /// Map the model file into memory instead of reading it (LM Studio's `tryMmap`). Off by
    /// default: a mapped file that is truncated or rewritten on disk while loaded (a re-download,
    /// say) kills the process with SIGBUS at the next access to its weights; a read one cannot.
    /// On, instances of one file share its pages (and the page cache). Default false.
    pub try_mmap: bool,
    /// Unload the instance after this many seconds without a prediction (LM Studio's `ttl`;
    /// a prediction, or a `get_or_load` that finds it, starts the count again). Default: never.
    pub ttl: Option<u64>,
    /// How the memory check before the load counts. Default: strict.
    pub guardrail: Guardrail,
    /// A directory where the host prompt cache is written when the instance unloads and read
    /// back when the same model file loads again (a hash of its size, time and header names it),
    /// so prompts that were warm before a restart are warm after it. Files that are not what was
    /// written are ignored. Default: none (not kept).
    pub prompt_cache_dir: Option<std::path::PathBuf>,
    /// The most [`LoadConfig::prompt_cache_dir`] holds, for all models together (MiB): a
    /// model's least recently used prompts are not written past it, and the caches of the models
    /// used longest ago are removed first. Default 4096.
    pub prompt_cache_disk_mib: u32,
    /// GPU offload (LM Studio's `gpu.ratio`): `"off"`, `"max"` or the share of layers in
    /// `[0, 1]` (JSON: the string or the number). Without a GPU device (this build's backends
    /// see none: `lms runtime ls`), `max` runs on the CPU and a share above 0 is refused.
    /// Default: the layers that fit in the GPU's free memory (all of them where the model fits,
    /// as LM Studio offloads by default; none without a GPU).
    pub gpu: Option<GpuOffload>,
    /// The GPU device that holds the model (LM Studio's `gpu.mainGpu`): an index among the GPU
    /// devices; set, the model is not split across devices. Default: split across all.
    pub main_gpu: Option<u32>,
    /// LM Studio's `flashAttention`. Default on where the model runs on the CPU, off with layers on
    /// a GPU. On, attention skips the cells a sequence does not see (faster decoding, most with
    /// several predictions at once and with a long context, where a sliding-window model's window
    /// layers otherwise attend over every cell: bench/README.md, bench/profile.md); prompts longer
    /// than a few thousand tokens evaluate a little slower. Either way the prefix cache keeps its
    /// contract (prompt chunks of at least 64 rows take its tiled path: ARCHITECTURE.md,
    /// "Deterministic prefix cache").
    pub flash_attention: Option<bool>,
    /// LM Studio's `offloadKVCacheToGpu`: the KV cache of offloaded layers on the GPU with them.
    /// Default on.
    pub offload_kv_cache_to_gpu: Option<bool>,
    /// How an embedding's token outputs become one vector (llama-server's `--pooling`). Default:
    /// what the model file names, mean where it names none (a decoder LLM).
    pub pooling: Option<Pooling>,
    /// llama.cpp RPC workers (`lms rpc-worker`), as `host:port`, that take the model's offloaded
    /// layers (llama.cpp splits them by the workers' free memory; [`LoadConfig::gpu`] says how
    /// many go, all by default). Each is checked before anything loads: one that does not
    /// answer is an [`Error::RpcWorker`]. The protocol has no authentication or encryption, and a
    /// worker lost while the model is loaded ends this process (llama.cpp aborts). Default: none.
    pub rpc: Vec<String>,
}

/// How the outputs of an input's tokens become its vector ([`LoadConfig::pooling`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean of every token's output.
    Mean,
    /// The first token's output (BERT's `[CLS]`).
    Cls,
    /// The last token's output.
    Last,
    /// A reranker's score of a query and a document together, from the model's classifier head;
    /// only for files that name it.
    Rank,
}

impl Pooling {
    /// Its name, as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
            Pooling::Rank => "rank",
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "last" => Ok(Pooling::Last),
            "rank" => Ok(Pooling::Rank),
            other => Err(Error::InvalidConfig(format!("pooling {other:?}: expected mean, cls, last or rank"))),
        }
    }
}

/// How much of a model runs on the GPU ([`LoadConfig::gpu`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpuOffload {
    /// The CPU alone.
    Off,
    /// Every layer, where there is a GPU.
    Max,
    /// This share of the layers, in `[0, 1]`.
    Ratio(f32),
}

impl std::str::FromStr for GpuOffload {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "max" => Ok(Self::Max),
            _ => match s.parse::<f32>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(Self::Ratio(r)),
                _ => Err(format!("gpu offload is off, max or a share in 0..1, not {s:?}")),
            },
        }
    }
}

impl GpuOffload {
    /// LM Studio's JSON form: `"off"`, `"max"` or the number.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Self::Off => "off".into(),
            Self::Max => "max".into(),
            Self::Ratio(r) => r.into(),
        }
    }

    /// Reads LM Studio's JSON form.
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<Self, String> {
        match v {
            serde_json::Value::String(s) => s.parse(),
            serde_json::Value::Number(n) => n.as_f64().map(|r| r.to_string()).unwrap_or_default().parse(),
            other => Err(format!("gpu offload is off, max or a share in 0..1, not {other}")),
        }
    }
}

impl Serialize for GpuOffload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for GpuOffload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::from_json(&serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The memory check before a load (LM Studio's model loading guardrails): the estimate against
/// what the machine has available (`MemAvailable`, or the cgroup's limit when lower).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Guardrail {
    /// Everything counts: weights, KV cache, compute buffers and the full host prompt cache.
    #[default]
    Strict,
    /// The prompt cache does not count (it fills only as prompts are pushed out of the slots).
    Relaxed,
    /// No check: the load may push the machine into swap.
    Off,
}

impl std::str::FromStr for Guardrail {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "strict" => Ok(Self::Strict),
            "relaxed" => Ok(Self::Relaxed),
            "off" => Ok(Self::Off),
            other => Err(format!("guardrail is strict, relaxed or off, not {other:?}")),
        }
    }
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            context_length: None,
            parallel: None,
            cpu_threads: None,
            max_queued: 64,
            identifier: None,
            prompt_cache_mib: 512,
            try_mmap: false,
            ttl: None,
            guardrail: Guardrail::Strict,
            prompt_cache_dir: None,
            prompt_cache_disk_mib: 4096,
            gpu: None,
            main_gpu: None,
            flash_attention: None,
            offload_kv_cache_to_gpu: None,
            pooling: None,
            rpc: Vec::new(),
        }
    }
}

/// Predictions an instance runs at once when its [`LoadConfig::parallel`] is unset.
pub const DEFAULT_PARALLEL: u32 = 4;

impl LoadConfig {
    /// The slots it asks for: [`LoadConfig::parallel`], else [`DEFAULT_PARALLEL`].
    pub fn parallel(&self) -> u32 {
        self.parallel.unwrap_or(DEFAULT_PARALLEL)
    }

    /// Checks the values that do not depend on the model.
    pub fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.parallel()) {
            return Err(Error::InvalidConfig(format!("parallel must be in 1..=64, got {}", self.parallel())));
        }
        if self.prompt_cache_mib > 1 << 20 {
            let mib = self.prompt_cache_mib;
            return Err(Error::InvalidConfig(format!("promptCacheMib must be at most 1048576, got {mib}")));
        }
        if let Some(c) = self.context_length {
            if c < 16 {
                return Err(Error::InvalidConfig(format!("contextLength must be at least 16, got {c}")));
            }
        }
        if let Some(t) = self.cpu_threads {
            if !(1..=1024).contains(&t) {
                return Err(Error::InvalidConfig(format!("cpuThreads must be in 1..=1024, got {t}")));
            }
        }
        if self.ttl == Some(0) {
            return Err(Error::InvalidConfig("ttl must be at least 1 second".into()));
        }
        if let Some(GpuOffload::Ratio(r)) = self.gpu {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::InvalidConfig(format!("gpu ratio must be in 0..1, got {r}")));
            }
        }
        if let Some(bad) = self
            .rpc
            .iter()
            .find(|e| !e.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()))
        {
            return Err(Error::InvalidConfig(format!("rpc worker {bad:?}: expected host:port")));
        }
        Ok(())
    }
}

/// Checks tools and the choice together: names (unique; letters, digits, `_`, `-`), object
/// schemas, a named choice that names one of them, `required` only with tools.
fn validate_tools(tools: &[Tool], choice: Option<&ToolChoice>) -> Result<()> {
    for (i, tool) in tools.iter().enumerate() {
        let bad = |why: String| Err(Error::InvalidConfig(format!("tool {:?}: {why}", tool.name)));
        let name_ok = !tool.name.is_empty()
            && tool.name.len() <= 64
            && tool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return bad("a name is 1 to 64 letters, digits, `_` or `-`".into());
        }
        if !matches!(&tool.parameters, serde_json::Value::Object(o) if o.get("type").is_none_or(|t| t == "object")) {
            return bad(format!("parameters must be a JSON Schema of an object, got {}", tool.parameters));
        }
        if tools[..i].iter().any(|t| t.name == tool.name) {
            return Err(Error::InvalidConfig(format!("two tools are called {:?}", tool.name)));
        }
    }
    match choice {
        Some(ToolChoice::Required) if tools.is_empty() => {
            Err(Error::InvalidConfig("toolChoice `required` needs tools".into()))
        }
        Some(ToolChoice::Function(name)) if !tools.iter().any(|t| &t.name == name) => {
            Err(Error::InvalidConfig(format!("toolChoice names {name:?}, which is not one of the tools")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_model_settings_are_checked() {
        let draft = |json: &str| Config::from_json(json).expect("parses").validate();
        let d = draft(r#"{"draftModel": "small"}"#).expect("valid").draft.expect("a draft model");
        assert_eq!((d.model.as_str(), d.num_draft_tokens_exact, d.min_draft_length_to_consider), ("small", None, 0));
        assert_eq!(d.min_continue_drafting_probability, 0.75);
        let d = draft(
            r#"{"draftModel": "small", "speculativeDecodingNumDraftTokensExact": 4,
                "speculativeDecodingMinDraftLengthToConsider": 2,
                "speculativeDecodingMinContinueDraftingProbability": 0.5}"#,
        )
        .expect("valid")
        .draft
        .expect("a draft model");
        assert_eq!((d.num_draft_tokens_exact, d.min_draft_length_to_consider), (Some(4), 2));
        assert_eq!(d.min_continue_drafting_probability, 0.5);
        assert!(draft(r#"{"draftModel": ""}"#).expect("valid").draft.is_none(), "empty is none");
        for (json, name) in [
            (r#"{"speculativeDecodingNumDraftTokensExact": 4}"#, "needs draftModel"),
            (r#"{"draftModel": "s", "speculation": "ngram"}"#, "exclude each other"),
            (r#"{"draftModel": "s", "speculativeDecodingNumDraftTokensExact": 0}"#, "1..=64"),
            (r#"{"draftModel": "s", "speculativeDecodingNumDraftTokensExact": 65}"#, "1..=64"),
            (r#"{"draftModel": "s", "speculativeDecodingMinDraftLengthToConsider": 99}"#, "at most 64"),
            (r#"{"draftModel": "s", "speculativeDecodingMinContinueDraftingProbability": 1.5}"#, "out of range"),
        ] {
            match draft(json) {
                Err(Error::InvalidConfig(m)) => assert!(m.contains(name), "{json}: {m}"),
                other => panic!("{json}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn parses_lm_studio_camel_case() {
        let c = Config::from_json(r#"{"maxTokens":100,"temperature":0.6,"stopStrings":["$"],"topKSampling":40.0}"#)
            .expect("valid");
        assert_eq!(c.max_tokens, Some(100));
        assert_eq!(c.temperature, Some(0.6));
        assert_eq!(c.stop_strings, vec!["$"]);
        assert_eq!(c.top_k, Some(40));
    }

    #[test]
    fn max_tokens_false_or_minus_one_means_unlimited() {
        for json in [r#"{"maxTokens":false}"#, r#"{"maxTokens":-1}"#] {
            assert_eq!(Config::from_json(json).expect("valid").max_tokens, None);
        }
    }

    #[test]
    fn rejects_bad_values() {
        for json in [
            r#"{"maxTokens":1.5}"#,
            r#"{"maxTokens":true}"#,
            r#"{"temperature":"hot"}"#,
            r#"{"maxTokenz":3}"#,
            r#"{"contextOverflowPolicy":"explode"}"#,
        ] {
            assert!(matches!(Config::from_json(json), Err(Error::InvalidConfig(_))), "{json} accepted");
        }
        let bad = [
            Config { temperature: Some(-1.0), ..Default::default() },
            Config { temperature: Some(f32::NAN), ..Default::default() },
            Config { top_p: Some(0.0), ..Default::default() },
            Config { min_p: Some(1.5), ..Default::default() },
            Config { repeat_penalty: Some(0.0), ..Default::default() },
            Config { max_tokens: Some(0), ..Default::default() },
            Config { stop_strings: vec![String::new()], ..Default::default() },
            Config { cpu_threads: Some(0), ..Default::default() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(Error::InvalidConfig(_))), "{c:?} accepted");
        }
    }

    #[test]
    fn defaults_are_lm_studios() {
        let v = Config::default().validate().expect("valid");
        assert_eq!((v.temperature, v.top_k, v.top_p, v.min_p, v.repeat_penalty), (0.8, 40, 0.95, 0.05, 1.1));
        assert_eq!(v.context_overflow_policy, ContextOverflowPolicy::TruncateMiddle);
    }
}
