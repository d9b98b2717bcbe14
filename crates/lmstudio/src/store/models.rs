//! The catalogue of a models directory: the store, the files it finds, their metadata (read
//! without loading weights), and the resolution of a user's name to exactly one file inside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::gguf::{self, GgufHeader};
use crate::types::error::{Error, Result};
use crate::types::result::{ModelInfo, Quantization, EMBEDDING, LLM};

/// How deep below the models directory model files are looked for (`publisher/model/file.gguf`).
const MAX_DEPTH: usize = 4;

/// A models directory laid out as LM Studio's: `<publisher>/<model>/<file>.gguf`.
///
/// Clones share a cache of the headers read, keyed by path, size and modification time, so that
/// listing many models reads only the files that changed.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    headers: Arc<Mutex<HashMap<PathBuf, Cached>>>,
}

/// What a file's header said, and the size and mtime it had then.
#[derive(Debug)]
struct Cached {
    len: u64,
    modified: Option<SystemTime>,
    model: StoredModel,
}

/// One model file found in the store.
#[derive(Debug, Clone)]
pub struct StoredModel {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// The model's key.
    pub key: String,
    /// Its info, or why its header could not be read.
    pub info: std::result::Result<ModelInfo, String>,
    /// The sliding attention window in tokens, for models that have one (Gemma 3: 512).
    pub sliding_window: Option<u32>,
    /// Bytes of KV cache one token of context takes (f16 keys and values, every layer), from the
    /// header's attention shape; `None` when the header does not say.
    pub kv_bytes_per_token: Option<u64>,
    /// Its layers (`block_count`), when the header says.
    pub layers: Option<u32>,
    /// Bytes of llama.cpp's compute buffer per token of a batch, for an embedding model that
    /// decodes its whole context at once: (4 x feed-forward width + 2 x width) floats (nomic-bert:
    /// 110.5 MiB at 2,048 tokens, measured; this says 108). `None` when the header does not say.
    pub activation_bytes_per_token: Option<u64>,
    /// Its tensor data by layer (for what offloading puts on the GPU), when the header is valid.
    pub weights: Option<gguf::WeightLayout>,
}

impl StoredModel {
    /// Its info, or [`Error::InvalidModelFile`] naming the file and why its header is unusable.
    pub fn valid_info(&self) -> Result<ModelInfo> {
        self.info.clone().map_err(|reason| Error::InvalidModelFile { path: self.path.clone(), reason })
    }
}

impl ModelStore {
    /// The store at `$LMSTUDIO_MODELS_DIR`, else the platform data dir (`.../lmstudio-rs/models`).
    pub fn from_env() -> Self {
        Self::new(dir_from_env("LMSTUDIO_MODELS_DIR", "models"))
    }

    /// The store rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), headers: Arc::default() }
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every `.gguf` file in the store, sorted by path. Files whose header is invalid are listed
    /// with the reason, so that asking for them gives a clear error.
    pub fn list(&self) -> Result<Vec<StoredModel>> {
        let mut files = Vec::new();
        if self.root.is_dir() {
            collect_gguf(&self.root, MAX_DEPTH, &mut files)?;
        }
        files.sort();
        Ok(files.into_iter().map(|path| self.describe(path)).collect())
    }

    /// The file's entry, from the cache while its size and mtime are unchanged.
    pub(super) fn describe(&self, path: PathBuf) -> StoredModel {
        let meta = std::fs::metadata(&path).ok();
        let (len, modified) = (meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()));
        if let Some(c) = crate::types::sync::lock(&self.headers).get(&path) {
            if c.len == len && c.modified == modified {
                return c.model.clone();
            }
        }
        let model = self.read(path.clone());
        crate::types::sync::lock(&self.headers).insert(path, Cached { len, modified, model: model.clone() });
        model
    }

    fn read(&self, path: PathBuf) -> StoredModel {
        let rel = path.strip_prefix(&self.root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        match GgufHeader::read(&path) {
            Ok(header) => {
                let info = model_info(&header, &path, rel);
                let sliding_window = header
                    .architecture()
                    .and_then(|a| header.uint(&format!("{a}.attention.sliding_window")))
                    .and_then(|w| u32::try_from(w).ok());
                let kv_bytes_per_token = kv_bytes_per_token(&header);
                let layers = header
                    .architecture()
                    .and_then(|a| header.uint(&format!("{a}.block_count")))
                    .and_then(|n| u32::try_from(n).ok());
                let key = info.model_key.clone();
                let activation_bytes_per_token = activation_bytes_per_token(&header);
                let weights = Some(header.weights);
                StoredModel {
                    path,
                    key,
                    info: Ok(info),
                    sliding_window,
                    kv_bytes_per_token,
                    layers,
                    activation_bytes_per_token,
                    weights,
                }
            }
            Err(e) => StoredModel {
                key: key_from_file_name(&path),
                path,
                info: Err(e.to_string()),
                sliding_window: None,
                kv_bytes_per_token: None,
                layers: None,
                activation_bytes_per_token: None,
                weights: None,
            },
        }
    }

    /// Resolves `query` to one model file: an exact model key, then a path inside the store, then a
    /// unique case-insensitive match on key or path. Never returns a file outside the store.
    pub fn resolve(&self, query: &str) -> Result<StoredModel> {
        let query = query.trim();
        let all = self.list()?;
        let not_found = |all: &[StoredModel]| Error::ModelNotFound {
            query: query.to_owned(),
            candidates: dedup(all.iter().map(|m| m.key.clone())),
        };
        if query.is_empty() {
            return Err(not_found(&all));
        }
        let exact: Vec<&StoredModel> = all.iter().filter(|m| m.key == query).collect();
        if let Some(found) = pick(query, &exact)? {
            return usable(found.clone());
        }
        if let Some(path) = self.inside(query) {
            if let Some(found) = all.iter().find(|m| m.path == path) {
                return usable(found.clone());
            }
        }
        let lower = query.to_lowercase();
        let same_key: Vec<&StoredModel> = all.iter().filter(|m| m.key.to_lowercase() == lower).collect();
        if let Some(found) = pick(query, &same_key)? {
            return usable(found.clone());
        }
        let partial: Vec<&StoredModel> = all
            .iter()
            .filter(|m| m.key.to_lowercase().contains(&lower) || self.rel(&m.path).to_lowercase().contains(&lower))
            .collect();
        match pick(query, &partial)? {
            Some(found) => usable(found.clone()),
            None => Err(not_found(&all)),
        }
    }

    /// `query` as a path inside the store, if it names an existing file there.
    fn inside(&self, query: &str) -> Option<PathBuf> {
        let root = self.root.canonicalize().ok()?;
        let candidate = root.join(query).canonicalize().ok()?;
        candidate.starts_with(&root).then_some(candidate)
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned()
    }
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of what `reader` gives, in lowercase hex (hub downloads, the prompt cache on disk).
#[cfg(any(feature = "hub", feature = "embedded"))]
pub(crate) fn sha256_hex(reader: &mut impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(reader, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// `$var` when set, else `<data dir>/lmstudio-rs/<name>` (else `<name>` in the working directory).
pub(crate) fn dir_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("lmstudio-rs").join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Where `lms server` keeps its prompt cache across restarts unless told otherwise:
/// `$LMSTUDIO_PROMPT_CACHE_DIR`, else the platform's cache directory
/// (`~/.cache/lmstudio-rs/prompt-cache` on Linux).
pub fn default_prompt_cache_dir() -> PathBuf {
    std::env::var_os("LMSTUDIO_PROMPT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("lmstudio-rs").join("prompt-cache")))
        .unwrap_or_else(|| PathBuf::from("prompt-cache"))
}

/// One match is the answer, none means keep looking, several are ambiguous.
fn pick<'a>(query: &str, matches: &[&'a StoredModel]) -> Result<Option<&'a StoredModel>> {
    match matches {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(Error::AmbiguousModel {
            query: query.to_owned(),
            candidates: many.iter().map(|m| m.path.display().to_string()).collect(),
        }),
    }
}

fn usable(model: StoredModel) -> Result<StoredModel> {
    match &model.info {
        Ok(_) => Ok(model),
        Err(reason) => Err(Error::InvalidModelFile { path: model.path.clone(), reason: reason.clone() }),
    }
}

fn dedup(keys: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = keys.collect();
    v.sort();
    v.dedup();
    v
}

fn collect_gguf(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        // A symbolic link counts when it leads to a file (`lms import --symlink`); linked folders
        // are not walked (no loops).
        let file = ty.is_file() || ty.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        if ty.is_dir() && depth > 1 {
            collect_gguf(&path, depth - 1, out)?;
        } else if file && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            out.push(path);
        }
    }
    Ok(())
}

/// KV cache bytes per token of context: layers x KV heads x (key + value width) x 2 bytes (f16),
/// the head widths defaulting to embedding / heads as llama.cpp's do. Every layer counts the whole
/// context, so for sliding-window models (whose window layers keep less) this is an upper bound.
fn kv_bytes_per_token(h: &GgufHeader) -> Option<u64> {
    let arch = h.architecture()?;
    if keeps_no_kv_cache(arch) {
        return Some(0);
    }
    let key = |k: &str| h.uint(&format!("{arch}.{k}"));
    let layers = key("block_count")?;
    let heads = key("attention.head_count").filter(|&n| n > 0)?;
    let kv_heads = key("attention.head_count_kv").unwrap_or(heads);
    let width = key("embedding_length")? / heads;
    let (k, v) = (key("attention.key_length").unwrap_or(width), key("attention.value_length").unwrap_or(width));
    layers.checked_mul(kv_heads)?.checked_mul(k.checked_add(v)?)?.checked_mul(2)
}

/// See [`StoredModel::activation_bytes_per_token`].
fn activation_bytes_per_token(h: &GgufHeader) -> Option<u64> {
    let arch = h.architecture()?;
    let width = h.uint(&format!("{arch}.embedding_length"))?;
    let ff = h.uint(&format!("{arch}.feed_forward_length")).unwrap_or(4 * width);
    ff.checked_mul(4)?.checked_add(width.checked_mul(2)?)?.checked_mul(4)
}

/// The info of a model file, from its header alone.
pub fn model_info(header: &GgufHeader, path: &Path, rel_path: String) -> ModelInfo {
    let key = model_key(header, path);
    let display_name = header.str("general.name").map(str::to_owned).unwrap_or_else(|| key.clone());
    let params_string = header
        .str("general.size_label")
        .map(str::to_owned)
        .or_else(|| (header.parameter_count > 0).then(|| params_string(header.parameter_count)));
    ModelInfo {
        kind: model_kind(header).into(),
        model_key: key,
        format: "gguf".into(),
        display_name,
        path: rel_path,
        size_bytes: header.file_size,
        params_string,
        architecture: header.architecture().map(str::to_owned),
        quantization: header.quantization().map(Quantization::from_name),
        vision: false,
        trained_for_tool_use: false,
        max_context_length: header.context_length().unwrap_or(2048),
        identifier: None,
        instance_reference: None,
        context_length: None,
        num_gpu_layers: None,
        state: None,
    }
}

/// BERT and its kin: encoders llama.cpp keeps no KV cache for (a decode sees an input whole).
const BERT_FAMILY: [&str; 8] =
    ["bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "jina-bert-v3", "modern-bert", "eurobert"];

/// Whether llama.cpp keeps no KV cache for `arch` (`llama_model::create_memory`).
fn keeps_no_kv_cache(arch: &str) -> bool {
    BERT_FAMILY.contains(&arch) || arch == "gemma-embedding"
}

/// Whether `arch` is one of llama.cpp's encoder-only architectures: they make vectors (or
/// scores), never text.
fn is_encoder(arch: &str) -> bool {
    BERT_FAMILY.contains(&arch) || arch == "t5encoder"
}

/// LM Studio's type of a model file: [`EMBEDDING`] for an encoder, or a file that names how its
/// outputs are pooled (a decoder trained for embeddings, such as Qwen3-Embedding), else [`LLM`].
fn model_kind(header: &GgufHeader) -> &'static str {
    let Some(arch) = header.architecture() else { return LLM };
    let pooled = header.uint(&format!("{arch}.pooling_type")).is_some_and(|p| p > 0);
    if is_encoder(arch) || pooled {
        EMBEDDING
    } else {
        LLM
    }
}

/// `basename-sizelabel` from the metadata (`gemma-3-270m`), else the file name without quantization.
fn model_key(header: &GgufHeader, path: &Path) -> String {
    match (header.str("general.basename"), header.str("general.size_label")) {
        (Some(base), Some(size)) if !base.is_empty() => format!("{base}-{size}").to_lowercase(),
        _ => key_from_file_name(path),
    }
}

pub(super) fn key_from_file_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    // Drop a trailing quantization tag: `gemma-3-270m-q4_k_m` -> `gemma-3-270m`.
    match stem.rfind(['-', '.']) {
        Some(i) if is_quant_tag(&stem[i + 1..]) => stem[..i].to_owned(),
        _ => stem,
    }
}

fn is_quant_tag(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    ["q2", "q3", "q4", "q5", "q6", "q8", "iq", "f16", "f32", "bf16", "mxfp4", "tq"].iter().any(|p| s.starts_with(p))
}

fn params_string(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.0}B", n as f64 / 1e9),
        n => format!("{:.0}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_MODEL_PATH;

    #[test]
    pub(super) fn key_from_file_name_drops_quantization() {
        assert_eq!(key_from_file_name(Path::new("a/Gemma-3-270M-Q4_K_M.gguf")), "gemma-3-270m");
        assert_eq!(key_from_file_name(Path::new("a/tiny.gguf")), "tiny");
    }

    /// A file that changes after it was listed is read again: the header cache is keyed by size
    /// and modification time, not by path alone.
    #[test]
    fn a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a/m/m.gguf");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"not a model").expect("write");
        let store = ModelStore::new(dir.path());
        let first = store.list().expect("lists");
        assert!(first[0].info.is_err());
        // Now the real default model (`lms get` fetched it): a new size, and a valid header.
        let real = ModelStore::from_env().root().join(DEFAULT_MODEL_PATH);
        std::fs::copy(real, &file).expect("the default model is needed: run `lms get` first");
        let again = store.clone().list().expect("lists");
        assert_eq!(again[0].info.as_ref().map(|i| i.architecture.clone()), Ok(Some("gemma3".into())));
        assert_eq!(again[0].sliding_window, Some(512));
    }
}
