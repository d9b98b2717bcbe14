//! LM Studio's wire vocabulary: KV config stacks (`llm.prediction.*`, `llm.load.*`) and its error
//! objects. Shared by the server and the remote client so that both speak exactly one dialect.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::config::{Config, GpuOffload, LoadConfig, Structured};
use crate::types::error::Error;
use crate::types::tools::{Tool, ToolChoice};

mod error;
pub mod protocol;
pub use error::{error_from_object, error_object, DisplayData, ErrorObject, PresetSample, QueryName};

/// One `{"key", "value"}` setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvField {
    /// E.g. `llm.prediction.temperature`.
    pub key: String,
    /// Its value, in the key's own shape (plain, or a `{"checked", "value"}` checkbox).
    pub value: Value,
}

/// A set of settings: `{"fields": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KvConfig {
    /// The settings.
    #[serde(default)]
    pub fields: Vec<KvField>,
}

/// One named layer of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvLayer {
    /// E.g. `apiOverride`, `completeModeFormatting`.
    pub layer_name: String,
    /// The layer's settings.
    pub config: KvConfig,
}

/// `{"layers": [...]}`: where two layers set a key, the earlier one wins (the SDK's `apiOverride`
/// comes first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KvStack {
    /// The layers, highest precedence first.
    #[serde(default)]
    pub layers: Vec<KvLayer>,
}

/// The layer the Python SDK adds to make a chat prediction a raw completion.
pub const COMPLETE_MODE_LAYER: &str = "completeModeFormatting";

impl KvStack {
    /// A stack of one layer.
    pub fn of(layer_name: &str, config: KvConfig) -> Self {
        Self { layers: vec![KvLayer { layer_name: layer_name.into(), config }] }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.layers.iter().flat_map(|l| &l.config.fields).find(|f| f.key == key).map(|f| &f.value)
    }

    /// Whether the stack asks for a raw completion (no chat template).
    pub fn is_raw_completion(&self) -> bool {
        self.layers.iter().any(|l| l.layer_name == COMPLETE_MODE_LAYER)
    }

    /// The prediction settings it holds. Known keys with a wrong shape are an
    /// [`Error::InvalidConfig`]; so are LM Studio's settings we cannot honour yet when they ask for
    /// something (tools, log probabilities, a draft model), so
    /// that none is silently ignored. Other keys (UI and template settings) are ignored.
    pub fn prediction_config(&self) -> Result<Config, Error> {
        for (key, asks_for_nothing) in UNSUPPORTED {
            if let Some(v) = self.get(&format!("llm.prediction.{key}")) {
                if !asks_for_nothing(checkbox(v)) {
                    return Err(Error::InvalidConfig(format!("llm.prediction.{key} is not supported yet: {v}")));
                }
            }
        }
        let mut c = Config::default();
        for s in PREDICTION {
            if let Some(v) = self.get(&format!("llm.prediction.{}", s.key)) {
                (s.read)(&mut c, checkbox(v)).map_err(|_| bad(s.key, v))?;
            }
        }
        Ok(c)
    }

    /// `defaults` with the load settings it holds (context length, CPU threads) put over them.
    pub fn load_config(&self, defaults: LoadConfig) -> Result<LoadConfig, Error> {
        let mut c = defaults;
        for s in LOAD {
            // An embedding model's settings come as `embedding.load.*`.
            let key = |prefix| format!("{prefix}.load.{}", s.key);
            if let Some(v) = self.get(&key("llm")).or_else(|| self.get(&key("embedding"))) {
                (s.read)(&mut c, checkbox(v)).map_err(|_| bad(s.key, v))?;
            }
        }
        if let Some(v) = self.get(GPU_SPLIT) {
            let main = main_gpu_of(v).map_err(|why| Error::InvalidConfig(format!("{GPU_SPLIT}: {why}: {v}")))?;
            c.main_gpu = main.or(c.main_gpu);
        }
        Ok(c)
    }
}

/// One setting of a config `C` on the wire: its key (after `llm.prediction.` or `llm.load.`), how
/// a field's value goes into `C`, and what `C` writes. The tables below are the codec, both ways.
struct Setting<C> {
    key: &'static str,
    /// Takes the value with any checkbox unwrapped; `None` is an unchecked checkbox.
    read: fn(&mut C, Option<&Value>) -> Result<(), ()>,
    /// The field's value, or `None` to leave the key out.
    write: fn(&C) -> Option<Value>,
}

/// `llm.prediction.tools` (the SDKs' `rawTools`).
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ToolsSetting {
    None,
    ToolArray {
        #[serde(default)]
        tools: Vec<LlmTool>,
        /// A call is required.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        force: Option<bool>,
    },
}

/// `llm.prediction.toolChoice`: `{"type": "generic", "mode": "auto"}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum GenericToolChoice {
    Generic { mode: ToolChoice },
}

/// A tool as LM Studio's SDKs send it: `{"type": "function", "function": {...}}`.
#[derive(Serialize, Deserialize)]
struct LlmTool {
    #[serde(rename = "type")]
    kind: FunctionKind,
    function: LlmFunction,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum FunctionKind {
    Function,
}

#[derive(Serialize, Deserialize)]
struct LlmFunction {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

impl From<LlmTool> for Tool {
    fn from(t: LlmTool) -> Self {
        let f = t.function;
        Tool::new(
            f.name,
            f.description.unwrap_or_default(),
            f.parameters.unwrap_or_else(|| Value::Object(Default::default())),
        )
    }
}

impl From<&Tool> for LlmTool {
    fn from(t: &Tool) -> Self {
        let function = LlmFunction {
            name: t.name.clone(),
            description: (!t.description.is_empty()).then(|| t.description.clone()),
            parameters: Some(t.parameters.clone()),
        };
        Self { kind: FunctionKind::Function, function }
    }
}

/// Whether a setting's value (its checkbox unwrapped) asks for nothing.
type AsksForNothing = fn(Option<&Value>) -> bool;

/// LM Studio's prediction settings that are refused unless they ask for nothing (`{"type":
/// "none"}`, an unchecked checkbox, an empty value).
const UNSUPPORTED: &[(&str, AsksForNothing)] = &[
    ("toolCallStopStrings", |v| v.is_none_or(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))),
    // Our tools' names are letters, digits, `_` and `-` already; case changes would rename them.
    ("toolNaming", |v| v.is_none_or(|v| v.is_null() || v == "passThrough" || v == "removeSpecial")),
    ("logProbs", |v| v.is_none_or(|v| v.is_null() || v == false || v == 0)),
    // A thinking budget would cut reasoning short; nothing here counts it.
    ("reasoning.budgetTokens", |v| v.is_none_or(Value::is_null)),
];

/// LM Studio's prediction keys, plus ours (`lmstudioRs.*`) for what LM Studio has no key for.
const PREDICTION: &[Setting<Config>] = &[
    Setting {
        key: "tools",
        read: |c, v| {
            let setting: Option<ToolsSetting> =
                v.map(|v| serde_json::from_value(v.clone()).map_err(drop)).transpose()?;
            (c.tools, c.tool_choice) = match setting {
                None | Some(ToolsSetting::None) => (Vec::new(), None),
                Some(ToolsSetting::ToolArray { tools, force }) => (
                    tools.into_iter().map(Tool::from).collect(),
                    force.unwrap_or(false).then_some(ToolChoice::Required),
                ),
            };
            Ok(())
        },
        write: |c| {
            (!c.tools.is_empty()).then(|| {
                plain(ToolsSetting::ToolArray {
                    tools: c.tools.iter().map(LlmTool::from).collect(),
                    force: (c.tool_choice == Some(ToolChoice::Required)).then_some(true),
                })
            })
        },
    },
    // After `tools`, whose `force` it overrides: LM Studio's `none`, `auto` or `required`.
    Setting {
        key: "toolChoice",
        read: |c, v| {
            if let Some(v) = v {
                let GenericToolChoice::Generic { mode } = serde_json::from_value(v.clone()).map_err(drop)?;
                c.tool_choice = Some(mode);
            }
            Ok(())
        },
        write: |c| match &c.tool_choice {
            Some(mode @ (ToolChoice::Auto | ToolChoice::None | ToolChoice::Required)) => {
                Some(plain(GenericToolChoice::Generic { mode: mode.clone() }))
            }
            _ => None,
        },
    },
    // A named tool, which LM Studio cannot say.
    Setting {
        key: "lmstudioRs.toolChoice",
        read: |c, v| {
            if let Some(v) = v {
                c.tool_choice = Some(ToolChoice::Function(v.as_str().ok_or(())?.to_owned()));
            }
            Ok(())
        },
        write: |c| match &c.tool_choice {
            Some(ToolChoice::Function(name)) => Some(plain(name)),
            _ => None,
        },
    },
    Setting {
        key: "lmstudioRs.parallelToolCalls",
        read: |c, v| {
            c.parallel_tool_calls = v.map(|v| v.as_bool().ok_or(())).transpose()?;
            Ok(())
        },
        write: |c| c.parallel_tool_calls.map(plain),
    },
    Setting {
        key: "reasoning.parsing",
        read: |c, v| {
            c.reasoning_parsing = v.map(|v| serde_json::from_value(v.clone()).map_err(drop)).transpose()?;
            Ok(())
        },
        write: |c| c.reasoning_parsing.as_ref().map(plain),
    },
    Setting {
        key: "reasoning.enableThinking",
        read: |c, v| {
            c.enable_thinking = v.map(|v| v.as_bool().ok_or(())).transpose()?;
            Ok(())
        },
        write: |c| c.enable_thinking.map(plain),
    },
    Setting {
        key: "structured",
        read: |c, v| {
            c.structured = v.map(Structured::read).transpose().map_err(drop)?.flatten();
            Ok(())
        },
        write: |c| c.structured.as_ref().map(Structured::write),
    },
    Setting {
        key: "maxPredictedTokens",
        read: |c, v| {
            c.max_tokens = Config::token_limit(v).map_err(drop)?;
            Ok(())
        },
        write: |c| c.max_tokens.map(checked),
    },
    Setting {
        key: "temperature",
        read: |c, v| {
            c.temperature = v.map(float).transpose()?;
            Ok(())
        },
        write: |c| c.temperature.map(plain),
    },
    Setting {
        key: "stopStrings",
        read: |c, v| {
            c.stop_strings =
                v.map(|v| serde_json::from_value(v.clone()).map_err(drop)).transpose()?.unwrap_or_default();
            Ok(())
        },
        write: |c| (!c.stop_strings.is_empty()).then(|| plain(&c.stop_strings)),
    },
    Setting {
        key: "topKSampling",
        read: |c, v| {
            c.top_k = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.top_k.map(plain),
    },
    Setting {
        key: "topPSampling",
        read: |c, v| {
            c.top_p = Some(v.map_or(Ok(1.0), float)?);
            Ok(())
        },
        write: |c| c.top_p.map(checked),
    },
    Setting {
        key: "minPSampling",
        read: |c, v| {
            c.min_p = Some(v.map_or(Ok(0.0), float)?);
            Ok(())
        },
        write: |c| c.min_p.map(checked),
    },
    Setting {
        key: "repeatPenalty",
        read: |c, v| {
            c.repeat_penalty = Some(v.map_or(Ok(1.0), float)?);
            Ok(())
        },
        write: |c| c.repeat_penalty.map(checked),
    },
    Setting {
        key: "llama.presencePenalty",
        read: |c, v| {
            c.presence_penalty = Some(v.map_or(Ok(0.0), float)?);
            Ok(())
        },
        write: |c| c.presence_penalty.map(checked),
    },
    Setting {
        key: "llama.frequencyPenalty",
        read: |c, v| {
            c.frequency_penalty = Some(v.map_or(Ok(0.0), float)?);
            Ok(())
        },
        write: |c| c.frequency_penalty.map(checked),
    },
    Setting {
        key: "seed",
        // -1 and unchecked: a random seed.
        read: |c, v| {
            c.seed = v.filter(|v| v.as_i64() != Some(-1)).map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.seed.map(checked),
    },
    Setting {
        key: "llama.cpuThreads",
        read: |c, v| {
            c.cpu_threads = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.cpu_threads.map(plain),
    },
    Setting {
        key: "contextOverflowPolicy",
        read: |c, v| {
            c.context_overflow_policy = v.map(|v| serde_json::from_value(v.clone()).map_err(drop)).transpose()?;
            Ok(())
        },
        write: |c| c.context_overflow_policy.map(plain),
    },
    Setting {
        key: "lmstudioRs.ignoreEos",
        read: |c, v| {
            c.ignore_eos = v.map(|v| v.as_bool().ok_or(())).transpose()?;
            Ok(())
        },
        write: |c| c.ignore_eos.map(plain),
    },
    Setting {
        key: "lmstudioRs.speculation",
        read: |c, v| {
            c.speculation = v.map(|v| serde_json::from_value(v.clone()).map_err(drop)).transpose()?;
            Ok(())
        },
        write: |c| c.speculation.map(plain),
    },
    Setting {
        key: "speculativeDecoding.draftModel",
        read: |c, v| {
            c.draft_model = v.filter(|v| !v.is_null()).map(|v| v.as_str().map(str::to_owned).ok_or(())).transpose()?;
            Ok(())
        },
        write: |c| c.draft_model.as_ref().map(plain),
    },
    Setting {
        key: "speculativeDecoding.numDraftTokensExact",
        read: |c, v| {
            c.speculative_decoding_num_draft_tokens_exact = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.speculative_decoding_num_draft_tokens_exact.map(plain),
    },
    Setting {
        key: "speculativeDecoding.minDraftLengthToConsider",
        read: |c, v| {
            c.speculative_decoding_min_draft_length_to_consider = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.speculative_decoding_min_draft_length_to_consider.map(plain),
    },
    Setting {
        key: "speculativeDecoding.minContinueDraftingProbability",
        read: |c, v| {
            c.speculative_decoding_min_continue_drafting_probability = v.map(float).transpose()?;
            Ok(())
        },
        write: |c| c.speculative_decoding_min_continue_drafting_probability.map(plain),
    },
];

/// LM Studio's load keys, plus ours (`lmstudioRs.*`) for what LM Studio has no key for.
const LOAD: &[Setting<LoadConfig>] = &[
    Setting {
        key: "lmstudioRs.parallel",
        read: |c, v| {
            c.parallel = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.parallel.map(plain),
    },
    Setting {
        key: "contextLength",
        read: |c, v| {
            c.context_length = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.context_length.map(plain),
    },
    Setting {
        key: "llama.cpuThreadPoolSize",
        read: |c, v| {
            c.cpu_threads = v.map(uint).transpose()?;
            Ok(())
        },
        write: |c| c.cpu_threads.map(plain),
    },
    Setting {
        key: "llama.tryMmap",
        read: |c, v| {
            c.try_mmap = v.map(|b| b.as_bool().ok_or(())).transpose()?.unwrap_or(false);
            Ok(())
        },
        write: |c| c.try_mmap.then(|| plain(true)),
    },
    Setting {
        key: "llama.acceleration.offloadRatio",
        read: |c, v| {
            c.gpu = v.map(GpuOffload::from_json).transpose().map_err(drop)?;
            Ok(())
        },
        write: |c| c.gpu.map(GpuOffload::to_json),
    },
    Setting {
        key: "llama.flashAttention",
        read: |c, v| {
            c.flash_attention = v.map(|b| b.as_bool().ok_or(())).transpose()?;
            Ok(())
        },
        write: |c| c.flash_attention.map(plain),
    },
    Setting {
        key: "offloadKVCacheToGpu",
        read: |c, v| {
            c.offload_kv_cache_to_gpu = v.map(|b| b.as_bool().ok_or(())).transpose()?;
            Ok(())
        },
        write: |c| c.offload_kv_cache_to_gpu.map(plain),
    },
    Setting {
        key: "lmstudioRs.pooling",
        read: |c, v| {
            c.pooling = v.map(|v| serde_json::from_value(v.clone()).map_err(drop)).transpose()?;
            Ok(())
        },
        write: |c| c.pooling.map(plain),
    },
    Setting {
        // An array of `host:port`, or one comma-separated string (as `--rpc` takes them).
        key: "lmstudioRs.rpc",
        read: |c, v| {
            c.rpc = match v {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => {
                    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Into::into).collect()
                }
                Some(v) => serde_json::from_value(v.clone()).map_err(drop)?,
            };
            Ok(())
        },
        write: |c| (!c.rpc.is_empty()).then(|| plain(&c.rpc)),
    },
];

/// LM Studio's GPU split (`load.gpuSplitConfig`, outside `llm.load.`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GpuSplit {
    /// `evenly` or `priorityOrder`.
    strategy: Option<String>,
    disabled_gpus: Vec<u32>,
    priority: Vec<u32>,
    custom_ratio: Vec<f64>,
}

/// The main GPU a split names, if any. Only what one main GPU says is taken: `evenly` over all
/// GPUs, or `priorityOrder` with none disabled.
fn main_gpu_of(v: &Value) -> Result<Option<u32>, String> {
    let split = GpuSplit::deserialize(v).map_err(|e| e.to_string())?;
    if !split.disabled_gpus.is_empty() || !split.custom_ratio.is_empty() {
        return Err("disabled GPUs and custom ratios are not supported".into());
    }
    match split.strategy.as_deref() {
        Some("evenly") | None => Ok(None),
        Some("priorityOrder") => Ok(split.priority.first().copied()),
        Some(other) => Err(format!("strategy {other:?} is not supported")),
    }
}

const GPU_SPLIT: &str = "load.gpuSplitConfig";

/// `{"checked": true, "value": x}` gives `Some(x)`, unchecked gives `None`; a plain value is itself.
fn checkbox(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(o) if o.contains_key("checked") => {
            if o.get("checked").and_then(Value::as_bool) == Some(true) {
                o.get("value")
            } else {
                None
            }
        }
        other => Some(other),
    }
}

/// LM Studio's checkbox setting: a value that applies only when checked.
#[derive(Serialize)]
struct Checkbox<T> {
    checked: bool,
    value: T,
}

/// A checked checkbox setting: the writing side of [`checkbox`].
fn checked(value: impl Serialize) -> Value {
    plain(Checkbox { checked: true, value })
}

/// A setting's value as it is.
fn plain(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn float(v: &Value) -> Result<f32, ()> {
    v.as_f64().map(|f| f as f32).ok_or(())
}

fn uint(v: &Value) -> Result<u32, ()> {
    v.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f)).map(|f| f as u32).ok_or(())
}

fn bad(name: &str, v: &Value) -> Error {
    Error::InvalidConfig(format!("{name}: unexpected value {v}"))
}

fn fields<C>(table: &[Setting<C>], prefix: &str, c: &C) -> KvConfig {
    let fields = table
        .iter()
        .filter_map(|s| Some(KvField { key: format!("{prefix}{}", s.key), value: (s.write)(c)? }))
        .collect();
    KvConfig { fields }
}

/// The prediction settings as LM Studio's KV fields (a predict's `apiOverride` layer and
/// `success.predictionConfig`; the inverse of [`KvStack::prediction_config`]).
pub fn prediction_fields(c: &Config) -> KvConfig {
    fields(PREDICTION, "llm.prediction.", c)
}

/// Whether `key` is a prediction setting we read (`llm.prediction.temperature`...).
pub fn is_prediction_key(key: &str) -> bool {
    key.strip_prefix("llm.prediction.").is_some_and(|k| PREDICTION.iter().any(|s| s.key == k))
}

/// A load config as the `loadConfigStack` of `getOrLoad` / `loadModel` (the inverse of
/// [`KvStack::load_config`]).
pub fn load_stack(c: &LoadConfig) -> KvStack {
    let mut config = fields(LOAD, "llm.load.", c);
    if let Some(main) = c.main_gpu {
        let split = GpuSplit { strategy: Some("priorityOrder".into()), priority: vec![main], ..Default::default() };
        config.fields.push(KvField { key: GPU_SPLIT.into(), value: plain(split) });
    }
    KvStack::of("apiOverride", config)
}

/// LM Studio's `llm.prediction.promptTemplate`, as the remote client writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PromptTemplate {
    #[serde(rename = "type")]
    kind: &'static str,
    stop_strings: Vec<String>,
    jinja_prompt_template: JinjaTemplate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JinjaTemplate {
    template: &'static str,
    bos_token: &'static str,
    eos_token: &'static str,
}

/// The stack of a raw completion's prediction: `config`'s settings, then the layer that makes a
/// chat of one message its text alone (a template that writes the content and nothing else).
pub fn raw_completion_stack(config: &Config) -> KvStack {
    let template = PromptTemplate {
        kind: "jinja",
        stop_strings: vec![],
        jinja_prompt_template: JinjaTemplate {
            template: "{% for message in messages %}{{ message['content'] }}{% endfor %}",
            bos_token: "",
            eos_token: "",
        },
    };
    let raw =
        KvConfig { fields: vec![KvField { key: "llm.prediction.promptTemplate".into(), value: plain(template) }] };
    let mut stack = KvStack::of("apiOverride", prediction_fields(config));
    stack.layers.push(KvLayer { layer_name: COMPLETE_MODE_LAYER.into(), config: raw });
    stack
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::config::ContextOverflowPolicy;

    /// JSON as an SDK sends it.
    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON")
    }

    /// A stack of the fields `fields` (a JSON array), and the Python SDK's raw-completion layer.
    fn stack(fields: &str, raw: bool) -> KvStack {
        let raw_layer = r#", {"layerName": "completeModeFormatting", "config": {"fields": [
            {"key": "llm.prediction.promptTemplate", "value": {"type": "jinja"}}]}}"#;
        let layers = format!(
            r#"{{"layers": [{{"layerName": "apiOverride", "config": {{"fields": {fields}}}}}{}]}}"#,
            if raw { raw_layer } else { "" }
        );
        serde_json::from_str(&layers).expect("valid stack")
    }

    #[test]
    fn reads_the_python_sdks_prediction_stack() {
        let s = stack(
            r#"[
                {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": true, "value": 100}},
                {"key": "llm.prediction.stopStrings", "value": ["\n\n"]},
                {"key": "llm.prediction.temperature", "value": 0.6},
                {"key": "llm.prediction.topKSampling", "value": 40.0},
                {"key": "llm.prediction.minPSampling", "value": {"checked": false, "value": 0.05}},
                {"key": "llm.prediction.someFutureKey", "value": 1}
            ]"#,
            true,
        );
        assert!(s.is_raw_completion());
        let c = s.prediction_config().expect("valid");
        assert_eq!(c.max_tokens, Some(100));
        assert_eq!(c.stop_strings, vec!["\n\n"]);
        assert_eq!(c.temperature, Some(0.6));
        assert_eq!(c.top_k, Some(40));
        assert_eq!(c.min_p, Some(0.0), "unchecked min-p is off");
    }

    #[test]
    fn unlimited_max_tokens_forms() {
        for v in [r#"{"checked": true, "value": false}"#, r#"{"checked": false, "value": 10}"#, "-1"] {
            let s = stack(&format!(r#"[{{"key": "llm.prediction.maxPredictedTokens", "value": {v}}}]"#), false);
            assert_eq!(s.prediction_config().expect("valid").max_tokens, None);
        }
    }

    #[test]
    fn wrong_shapes_are_invalid_config() {
        let s = stack(r#"[{"key": "llm.prediction.temperature", "value": "hot"}]"#, false);
        assert!(matches!(s.prediction_config(), Err(Error::InvalidConfig(_))));
    }

    /// Issue 13, item 8: what we cannot do yet is refused by name, never ignored; the values that
    /// ask for nothing pass.
    #[test]
    fn settings_we_cannot_honour_are_refused_by_name() {
        let stack = |key: &str, value: &str| {
            KvStack::of(
                "apiOverride",
                KvConfig { fields: vec![KvField { key: format!("llm.prediction.{key}"), value: json(value) }] },
            )
        };
        let refused = [
            ("structured", r#"{"type": "regex", "pattern": "a+"}"#),
            ("structured", r#"{"type": "gbnf", "gbnfGrammar": "root ::= x", "extra": 1}"#),
            ("tools", r#"{"type": "toolArray", "tools": [{"type": "other"}]}"#),
            ("toolCallStopStrings", r#"["</call>"]"#),
            ("toolChoice", r#"{"type": "generic", "mode": "sometimes"}"#),
            ("lmstudioRs.toolChoice", r#"{"name": "f"}"#),
            ("toolNaming", r#""camelCase""#),
            ("logProbs", r#"{"checked": true, "value": 3}"#),
            ("reasoning.budgetTokens", r#"{"checked": true, "value": 512}"#),
            ("reasoning.parsing", r#"{"enabled": true}"#),
            ("reasoning.enableThinking", r#""yes""#),
        ];
        for (key, value) in refused {
            match stack(key, value).prediction_config() {
                Err(Error::InvalidConfig(m)) => assert!(m.contains(key), "{m}"),
                other => panic!("{key}: expected InvalidConfig, got {other:?}"),
            }
        }
        let taken = [
            ("structured", r#"{"type": "none"}"#),
            ("structured", r#"{"type": "json"}"#),
            ("tools", r#"{"type": "none"}"#),
            ("tools", r#"{"type": "toolArray", "tools": []}"#),
            ("toolCallStopStrings", r#"[]"#),
            ("toolChoice", r#"{"type": "generic", "mode": "required"}"#),
            ("toolNaming", r#""removeSpecial""#),
            ("logProbs", r#"{"checked": false, "value": 3}"#),
            ("reasoning.budgetTokens", r#"{"checked": false, "value": 512}"#),
            ("reasoning.enableThinking", "false"),
            ("promptTemplate", r#"{"type": "jinja"}"#),
            ("speculativeDecoding.draftModel", r#""""#),
        ];
        for (key, value) in taken {
            assert!(stack(key, value).prediction_config().is_ok(), "{key}");
        }
    }

    #[test]
    fn prediction_fields_round_trip() {
        let c = Config {
            max_tokens: Some(9),
            temperature: Some(0.5),
            stop_strings: vec!["$".into()],
            top_k: Some(7),
            top_p: Some(0.5),
            min_p: Some(0.25),
            repeat_penalty: Some(1.5),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.25),
            seed: Some(3),
            cpu_threads: Some(2),
            context_overflow_policy: Some(ContextOverflowPolicy::RollingWindow),
            ignore_eos: Some(true),
            // Not settings on the wire: `fuzzyPresetIdentifier` of the request; log probabilities
            // are the embedded backend's and OpenAI's only.
            preset: None,
            logprobs: None,
            structured: Some(Structured::Json(json(r#"{"type": "object", "properties": {"b": {}, "a": {}}}"#))),
            speculation: Some(crate::types::config::Speculation::Ngram),
            draft_model: None,
            speculative_decoding_num_draft_tokens_exact: None,
            speculative_decoding_min_draft_length_to_consider: None,
            speculative_decoding_min_continue_drafting_probability: None,
            tools: vec![Tool::new("f", "", json(r#"{"type": "object"}"#)), Tool::new("g", "G", json("{}"))],
            tool_choice: Some(ToolChoice::Function("g".into())),
            parallel_tool_calls: Some(false),
            reasoning_parsing: Some(crate::types::config::ReasoningParsing {
                enabled: true,
                start_string: "<seed:think>".into(),
                end_string: "</seed:think>".into(),
            }),
            enable_thinking: Some(false),
        };
        let stack = KvStack::of("apiOverride", prediction_fields(&c));
        assert_eq!(stack.prediction_config().expect("valid"), c);
        let drafted = Config {
            speculation: None,
            draft_model: Some("gemma-3-270m".into()),
            speculative_decoding_num_draft_tokens_exact: Some(5),
            speculative_decoding_min_draft_length_to_consider: Some(2),
            speculative_decoding_min_continue_drafting_probability: Some(0.5),
            ..c
        };
        let stack = KvStack::of("apiOverride", prediction_fields(&drafted));
        assert_eq!(stack.prediction_config().expect("valid"), drafted);
        // LM Studio's own form of a required call: `force`, which the SDKs' `rawTools` carries.
        let sdk = KvStack::of(
            "apiOverride",
            KvConfig {
                fields: vec![KvField {
                    key: "llm.prediction.tools".into(),
                    value: json(
                        r#"{"type": "toolArray", "force": true, "tools": [{"type": "function",
                            "function": {"name": "add", "parameters": {"type": "object"}}}]}"#,
                    ),
                }],
            },
        );
        let forced = sdk.prediction_config().expect("valid");
        assert_eq!(forced.tools, vec![Tool::new("add", "", json(r#"{"type": "object"}"#))]);
        assert_eq!(forced.tool_choice, Some(ToolChoice::Required));
        let written = prediction_fields(&forced);
        assert_eq!(written.fields[0].value["force"], true, "{written:?}");
        assert_eq!(KvStack::of("apiOverride", written).prediction_config().expect("valid"), forced);
    }

    #[test]
    fn load_stack_round_trips() {
        let c =
            LoadConfig { context_length: Some(1024), cpu_threads: Some(2), parallel: Some(3), ..Default::default() };
        let stack = load_stack(&c);
        let back = stack.load_config(LoadConfig::default()).expect("valid");
        assert_eq!((back.context_length, back.cpu_threads, back.parallel), (Some(1024), Some(2), Some(3)));
        // What a config leaves unset, the receiver's defaults decide (a server's --parallel).
        let gpu = LoadConfig {
            gpu: Some(GpuOffload::Ratio(0.5)),
            main_gpu: Some(1),
            flash_attention: Some(false),
            offload_kv_cache_to_gpu: Some(false),
            pooling: Some(crate::Pooling::Cls),
            rpc: vec!["10.0.0.2:50052".into(), "10.0.0.3:50052".into()],
            ..Default::default()
        };
        let stack = load_stack(&gpu);
        assert_eq!(stack.load_config(LoadConfig::default()).expect("valid"), gpu);
        // `--rpc`'s comma-separated form is taken too.
        let s = KvStack::of(
            "apiOverride",
            KvConfig {
                fields: vec![KvField { key: "llm.load.lmstudioRs.rpc".into(), value: Value::from("a:1, b:2") }],
            },
        );
        assert_eq!(s.load_config(LoadConfig::default()).expect("valid").rpc, ["a:1", "b:2"]);
        for ratio in ["max", "off"] {
            let s = KvStack::of(
                "apiOverride",
                KvConfig {
                    fields: vec![KvField {
                        key: "llm.load.llama.acceleration.offloadRatio".into(),
                        value: Value::from(ratio),
                    }],
                },
            );
            assert_eq!(s.load_config(LoadConfig::default()).expect("valid").gpu, Some(ratio.parse().expect("known")));
        }
        let split = |v: &str| {
            KvStack::of("apiOverride", KvConfig { fields: vec![KvField { key: GPU_SPLIT.into(), value: json(v) }] })
                .load_config(LoadConfig::default())
        };
        assert_eq!(split(r#"{"strategy": "evenly", "disabledGpus": []}"#).expect("valid").main_gpu, None);
        assert!(matches!(split(r#"{"strategy": "evenly", "disabledGpus": [0]}"#), Err(Error::InvalidConfig(_))));
        assert!(matches!(split(r#"{"strategy": "priorityOrder", "priority": ["a"]}"#), Err(Error::InvalidConfig(_))));
        let unset = load_stack(&LoadConfig::default());
        let server = LoadConfig { parallel: Some(1), ..Default::default() };
        assert_eq!(unset.load_config(server).expect("valid").parallel, Some(1));
    }
}
