//! LM Studio's presets: named prediction settings in `*.preset.json` files, applied under a
//! request's own config (what the request sets wins; the preset fills in the rest).
//!
//! A preset file as LM Studio writes it:
//! `{"identifier": "@local:creative", "name": "Creative", "operation": {"fields": [{"key":
//! "llm.prediction.temperature", "value": 1.1}]}, "load": {"fields": []}}`. The prediction keys
//! we know (those of [`crate::wire::KvStack::prediction_config`]) apply; the others are listed
//! by [`Preset::ignored_keys`] (`lms preset ls` shows them).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::types::config::Config;
use crate::types::error::{Error, Result};
use crate::wire::{KvConfig, KvStack};

/// One preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// LM Studio's identifier, e.g. `@local:creative` (the file name when the file has none).
    pub identifier: String,
    /// Its display name.
    pub name: String,
    /// The prediction settings it holds (the file's `operation`).
    pub fields: KvConfig,
    /// The file.
    pub path: PathBuf,
}

#[derive(Deserialize)]
struct PresetFile {
    identifier: Option<String>,
    name: Option<String>,
    #[serde(default)]
    operation: KvConfig,
}

impl Preset {
    /// The preset's settings as a config; an unusable value of a known key is an error naming it.
    pub fn config(&self) -> Result<Config> {
        KvStack::of("preset", self.fields.clone()).prediction_config().map_err(|e| match e {
            Error::InvalidConfig(m) => Error::InvalidConfig(format!("preset {}: {m}", self.identifier)),
            other => other,
        })
    }

    /// `config` with what it leaves unset taken from this preset.
    pub fn under(&self, config: Config) -> Result<Config> {
        Ok(config.over(self.config()?))
    }

    /// The keys of the file that no setting of ours reads.
    pub fn ignored_keys(&self) -> Vec<String> {
        self.fields.fields.iter().map(|f| f.key.clone()).filter(|k| !crate::wire::is_prediction_key(k)).collect()
    }

    /// Whether `query` names this preset: its identifier, its name (any case), or its file name.
    fn answers_to(&self, query: &str) -> bool {
        let stem = self.path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".preset.json"));
        self.identifier == query
            || self.identifier.rsplit(':').next() == Some(query)
            || self.name.eq_ignore_ascii_case(query)
            || stem == Some(query)
    }
}

/// A directory of `*.preset.json` files (`$LMSTUDIO_PRESETS_DIR`, else the platform data dir's
/// `lmstudio-rs/presets`).
#[derive(Debug, Clone)]
pub struct PresetStore {
    root: PathBuf,
}

impl PresetStore {
    /// The store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store at `$LMSTUDIO_PRESETS_DIR`, else `.../lmstudio-rs/presets` in the data dir.
    pub fn from_env() -> Self {
        Self::new(crate::store::dir_from_env("LMSTUDIO_PRESETS_DIR", "presets"))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every preset, sorted by identifier; a file that is not a preset is an error naming it.
    pub fn list(&self) -> Result<Vec<Preset>> {
        let mut presets = Vec::new();
        if !self.root.is_dir() {
            return Ok(presets);
        }
        for entry in std::fs::read_dir(&self.root)? {
            let path = entry?.path();
            let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".preset.json"))
            else {
                continue;
            };
            let bad = |why: String| Error::InvalidConfig(format!("preset file {}: {why}", path.display()));
            let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
            let file: PresetFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            presets.push(Preset {
                identifier: file.identifier.unwrap_or_else(|| format!("@local:{stem}")),
                name: file.name.unwrap_or_else(|| stem.to_owned()),
                fields: file.operation,
                path: path.clone(),
            });
        }
        presets.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        Ok(presets)
    }

    /// The preset `query` names, or [`Error::PresetNotFound`] with the ones there are.
    pub fn find(&self, query: &str) -> Result<Preset> {
        let presets = self.list()?;
        if let Some(p) = presets.iter().find(|p| p.answers_to(query)) {
            return Ok(p.clone());
        }
        Err(Error::PresetNotFound {
            query: query.to_owned(),
            available: presets.into_iter().map(|p| (p.identifier, p.name)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PresetStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let store = PresetStore::new(dir.path());
        (dir, store)
    }

    const CREATIVE: &str = r#"{"identifier": "@local:creative", "name": "Creative", "changed": false,
        "operation": {"fields": [
            {"key": "llm.prediction.temperature", "value": 1.25},
            {"key": "llm.prediction.topKSampling", "value": 80},
            {"key": "llm.prediction.stopStrings", "value": ["END"]},
            {"key": "llm.prediction.systemPrompt", "value": "Be creative."}]},
        "load": {"fields": []}}"#;

    #[test]
    fn a_preset_fills_in_what_the_request_leaves_unset() {
        let (_dir, store) = store_with(&[("creative.preset.json", CREATIVE), ("notes.txt", "not a preset")]);
        let presets = store.list().expect("lists");
        assert_eq!(presets.len(), 1);
        for query in ["@local:creative", "creative", "CREATIVE"] {
            assert_eq!(store.find(query).expect("found").identifier, "@local:creative", "{query}");
        }
        let preset = store.find("creative").expect("found");
        let own = Config { temperature: Some(0.5), max_tokens: Some(3), ..Default::default() };
        let merged = preset.under(own).expect("valid");
        assert_eq!(merged.temperature, Some(0.5), "the request's own value wins");
        assert_eq!((merged.top_k, merged.max_tokens), (Some(80), Some(3)));
        assert_eq!(merged.stop_strings, vec!["END".to_owned()]);
        assert_eq!(preset.ignored_keys(), vec!["llm.prediction.systemPrompt".to_owned()]);
    }

    #[test]
    fn an_unknown_preset_lists_the_ones_there_are() {
        let (_dir, store) = store_with(&[("creative.preset.json", CREATIVE)]);
        match store.find("No such preset") {
            Err(Error::PresetNotFound { query, available }) => {
                assert_eq!(query, "No such preset");
                assert_eq!(available, vec![("@local:creative".to_owned(), "Creative".to_owned())]);
            }
            other => panic!("expected PresetNotFound, got {other:?}"),
        }
        let (_dir, broken) = store_with(&[("bad.preset.json", "{ not json")]);
        assert!(matches!(broken.list(), Err(Error::InvalidConfig(m)) if m.contains("bad.preset.json")));
    }
}
