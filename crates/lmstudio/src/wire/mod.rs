//! LM Studio's wire vocabulary: KV config stacks (`llm.prediction.*`, `llm.load.*`) and its error
//! objects. Shared by the server and the remote client so that both speak exactly one dialect.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::types::config::{Config, ContextOverflowPolicy, LoadConfig};
use crate::types::error::Error;

mod error;
pub use error::{error_from_object, error_object};

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
    fn get(&self, key: &str) -> Option<&Value> {
        self.layers.iter().flat_map(|l| &l.config.fields).find(|f| f.key == key).map(|f| &f.value)
    }

    /// Whether the stack asks for a raw completion (no chat template).
    pub fn is_raw_completion(&self) -> bool {
        self.layers.iter().any(|l| l.layer_name == COMPLETE_MODE_LAYER)
    }

    /// The prediction settings it holds; unknown keys are ignored, known keys with a wrong shape
    /// are an [`Error::InvalidConfig`].
    pub fn prediction_config(&self) -> Result<Config, Error> {
        let mut c = Config::default();
        let p = "llm.prediction.";
        if let Some(v) = self.get(&format!("{p}maxPredictedTokens")) {
            c.max_tokens = match checkbox(v) {
                None | Some(Value::Bool(false)) => None,
                Some(Value::Number(n)) if n.as_i64() == Some(-1) => None,
                Some(other) => Some(uint("maxPredictedTokens", other)?),
            };
        }
        c.temperature = self.float(&format!("{p}temperature"))?;
        if let Some(v) = self.get(&format!("{p}stopStrings")) {
            c.stop_strings = serde_json::from_value(v.clone()).map_err(|_| bad("stopStrings", v))?;
        }
        c.top_k = match self.get(&format!("{p}topKSampling")) {
            Some(v) => Some(uint("topKSampling", v)?),
            None => None,
        };
        c.top_p = self.checkbox_float(&format!("{p}topPSampling"), 1.0)?;
        c.min_p = self.checkbox_float(&format!("{p}minPSampling"), 0.0)?;
        c.repeat_penalty = self.checkbox_float(&format!("{p}repeatPenalty"), 1.0)?;
        c.presence_penalty = self.checkbox_float(&format!("{p}llama.presencePenalty"), 0.0)?;
        c.frequency_penalty = self.checkbox_float(&format!("{p}llama.frequencyPenalty"), 0.0)?;
        if let Some(v) = self.get(&format!("{p}seed")) {
            c.seed = match checkbox(v) {
                Some(Value::Number(n)) if n.as_i64() == Some(-1) => None,
                Some(v) => Some(uint("seed", v)?),
                None => None,
            };
        }
        if let Some(v) = self.get(&format!("{p}llama.cpuThreads")) {
            c.cpu_threads = Some(uint("cpuThreads", v)?);
        }
        if let Some(v) = self.get(&format!("{p}contextOverflowPolicy")) {
            c.context_overflow_policy = Some(
                serde_json::from_value::<ContextOverflowPolicy>(v.clone())
                    .map_err(|_| bad("contextOverflowPolicy", v))?,
            );
        }
        Ok(c)
    }

    /// `defaults` with the load settings it holds (context length, CPU threads) put over them.
    pub fn load_config(&self, defaults: LoadConfig) -> Result<LoadConfig, Error> {
        let mut c = defaults;
        if let Some(v) = self.get("llm.load.contextLength") {
            c.context_length = Some(uint("contextLength", v)?);
        }
        if let Some(v) = self.get("llm.load.llama.cpuThreadPoolSize") {
            c.cpu_threads = Some(uint("cpuThreadPoolSize", v)?);
        }
        Ok(c)
    }

    fn float(&self, key: &str) -> Result<Option<f32>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| bad(key, v)),
        }
    }

    /// A checkbox setting: unchecked means the feature is off, which is `off` for this key.
    fn checkbox_float(&self, key: &str, off: f32) -> Result<Option<f32>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match checkbox(v) {
                None => Ok(Some(off)),
                Some(inner) => inner.as_f64().map(|f| Some(f as f32)).ok_or_else(|| bad(key, v)),
            },
        }
    }
}

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

fn uint(name: &str, v: &Value) -> Result<u32, Error> {
    v.as_f64()
        .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
        .map(|f| f as u32)
        .ok_or_else(|| bad(name, v))
}

fn bad(name: &str, v: &Value) -> Error {
    Error::InvalidConfig(format!("{name}: unexpected value {v}"))
}

/// A checked checkbox setting: the writing side of [`checkbox`].
fn checked(value: impl Serialize) -> Value {
    json!({"checked": true, "value": value})
}

/// The prediction settings as LM Studio's KV fields (for `success.predictionConfig`).
pub fn prediction_fields(c: &Config) -> KvConfig {
    let mut fields = Vec::new();
    let mut push = |key: &str, value: Value| fields.push(KvField { key: format!("llm.prediction.{key}"), value });
    if let Some(m) = c.max_tokens {
        push("maxPredictedTokens", checked(m));
    }
    if let Some(t) = c.temperature {
        push("temperature", json!(t));
    }
    if !c.stop_strings.is_empty() {
        push("stopStrings", json!(c.stop_strings));
    }
    if let Some(k) = c.top_k {
        push("topKSampling", json!(k));
    }
    if let Some(p) = c.top_p {
        push("topPSampling", checked(p));
    }
    if let Some(p) = c.min_p {
        push("minPSampling", checked(p));
    }
    if let Some(r) = c.repeat_penalty {
        push("repeatPenalty", checked(r));
    }
    if let Some(p) = c.presence_penalty {
        push("llama.presencePenalty", checked(p));
    }
    if let Some(f) = c.frequency_penalty {
        push("llama.frequencyPenalty", checked(f));
    }
    if let Some(seed) = c.seed {
        push("seed", checked(seed));
    }
    if let Some(t) = c.cpu_threads {
        push("llama.cpuThreads", json!(t));
    }
    if let Some(p) = c.context_overflow_policy {
        push("contextOverflowPolicy", json!(p));
    }
    KvConfig { fields }
}

/// A load config as the `loadConfigStack` of `getOrLoad` / `loadModel` (the inverse of
/// [`KvStack::load_config`]).
pub fn load_stack(c: &LoadConfig) -> Value {
    let mut fields = Vec::new();
    if let Some(n) = c.context_length {
        fields.push(json!({"key": "llm.load.contextLength", "value": n}));
    }
    if let Some(t) = c.cpu_threads {
        fields.push(json!({"key": "llm.load.llama.cpuThreadPoolSize", "value": t}));
    }
    json!({"layers": [{"layerName": "apiOverride", "config": {"fields": fields}}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(fields: Value, raw: bool) -> KvStack {
        let mut layers = vec![json!({"layerName": "apiOverride", "config": {"fields": fields}})];
        if raw {
            layers.push(json!({"layerName": COMPLETE_MODE_LAYER, "config": {"fields": [
                {"key": "llm.prediction.promptTemplate", "value": {"type": "jinja"}}]}}));
        }
        serde_json::from_value(json!({ "layers": layers })).expect("valid stack")
    }

    #[test]
    fn reads_the_python_sdks_prediction_stack() {
        let s = stack(
            json!([
                {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": true, "value": 100}},
                {"key": "llm.prediction.stopStrings", "value": ["\n\n"]},
                {"key": "llm.prediction.temperature", "value": 0.6},
                {"key": "llm.prediction.topKSampling", "value": 40.0},
                {"key": "llm.prediction.minPSampling", "value": {"checked": false, "value": 0.05}},
                {"key": "llm.prediction.someFutureKey", "value": 1}
            ]),
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
        for v in [json!({"checked": true, "value": false}), json!({"checked": false, "value": 10}), json!(-1)] {
            let s = stack(json!([{"key": "llm.prediction.maxPredictedTokens", "value": v}]), false);
            assert_eq!(s.prediction_config().expect("valid").max_tokens, None);
        }
    }

    #[test]
    fn wrong_shapes_are_invalid_config() {
        let s = stack(json!([{"key": "llm.prediction.temperature", "value": "hot"}]), false);
        assert!(matches!(s.prediction_config(), Err(Error::InvalidConfig(_))));
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
            ignore_eos: None, // not one of LM Studio's fields: not on the wire
        };
        let stack =
            KvStack { layers: vec![KvLayer { layer_name: "apiOverride".into(), config: prediction_fields(&c) }] };
        assert_eq!(stack.prediction_config().expect("valid"), c);
    }

    #[test]
    fn load_stack_round_trips() {
        let c = LoadConfig { context_length: Some(1024), cpu_threads: Some(2), ..Default::default() };
        let stack: KvStack = serde_json::from_value(load_stack(&c)).expect("valid stack");
        let back = stack.load_config(LoadConfig::default()).expect("valid");
        assert_eq!((back.context_length, back.cpu_threads), (Some(1024), Some(2)));
    }
}
