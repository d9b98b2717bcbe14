//! A reader for GGUF file headers: metadata and tensor shapes, without loading any weights.
//!
//! It reads only the header, validates every length against the file size, and fails with a typed
//! error on anything malformed, so that a truncated or random file never reaches llama.cpp (whose
//! loader aborts the process on some malformed inputs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

/// Why a file is not a readable GGUF model.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with the GGUF magic bytes.
    #[error("not a GGUF file (bad magic bytes)")]
    BadMagic,
    /// The GGUF version is not one this reader knows.
    #[error("unsupported GGUF version {0}")]
    UnsupportedVersion(u32),
    /// The header is inconsistent or points past the end of the file.
    #[error("malformed GGUF header: {0}")]
    Malformed(String),
    /// `general.architecture` names an architecture llama.cpp cannot run (or none at all).
    #[error("architecture {0:?} is not one llama.cpp knows")]
    UnknownArchitecture(String),
}

/// One metadata value; arrays keep only their length and, for short ones, their items.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (invalid bytes replaced).
    String(String),
    /// An array: its length, and its items when it holds at most [`MAX_KEPT_ARRAY`] of them.
    Array {
        /// Number of items.
        len: u64,
        /// The items, when the array is short.
        items: Vec<Value>,
    },
}

/// Arrays longer than this (vocabularies) are skipped, not kept.
pub const MAX_KEPT_ARRAY: u64 = 64;
/// No single string in a header is longer than this; a longer one means the file is corrupt.
const MAX_STRING: u64 = 64 << 20;
/// ggml's `GGML_MAX_DIMS` and `GGML_MAX_NAME` (a tensor name is shorter than this, NUL included).
const MAX_DIMS: u32 = 4;
const MAX_NAME: usize = 64;
/// llama.cpp's `LLAMA_MAX_LAYERS` and `LLAMA_MAX_EXPERTS` (llama-hparams.h of the vendored source).
const MAX_LAYERS: u64 = 512;
const MAX_EXPERTS: u64 = 1024;

/// The header of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// GGUF format version.
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Total number of parameters (product of every tensor's dimensions).
    pub parameter_count: u64,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// The tensor data by layer.
    pub weights: WeightLayout,
}

/// The tensor data's bytes by the layer llama.cpp gives each tensor when it offloads: the input
/// layer (the token embeddings, always on the CPU), each block, and the output layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightLayout {
    /// The input layer: every tensor that is neither in a block nor the output layer's.
    pub input: u64,
    /// The blocks' (`blk.N.*`), by N.
    pub blocks: Vec<u64>,
    /// The output layer's (`output.*`, `output_norm.*`).
    pub output: u64,
    /// What llama.cpp copies to the output layer's device when the output has no weight of its own
    /// (tied to the token embeddings, as Gemma's): the embeddings' bytes, else 0.
    pub tied_output: u64,
    /// Rows of the output matrix (the vocabulary): what one token's logits take, in floats.
    pub vocab: u64,
}

/// Where llama.cpp puts a model's tensors with some of its layers offloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloaded {
    /// The bytes on the GPU.
    pub gpu_bytes: u64,
    /// Of those, the bytes that are copies (tied embeddings), on top of the file's.
    pub copied_bytes: u64,
    /// How many of the blocks are on the GPU (the last ones).
    pub blocks: usize,
}

impl WeightLayout {
    /// llama.cpp's placement for `gpu_layers` offloaded layers: the output layer counts as one more
    /// layer, the last, and the last `gpu_layers` of them go to the GPU.
    pub fn offloaded(&self, gpu_layers: u32) -> Offloaded {
        if gpu_layers == 0 {
            return Offloaded { gpu_bytes: 0, copied_bytes: 0, blocks: 0 };
        }
        let n = self.blocks.len();
        let blocks = (gpu_layers as usize - 1).min(n);
        let on_gpu: u64 = self.blocks[n - blocks..].iter().sum();
        Offloaded { gpu_bytes: on_gpu + self.output + self.tied_output, copied_bytes: self.tied_output, blocks }
    }

    fn add(&mut self, name: &str, bytes: u64) {
        let block = name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| (n as u64) < MAX_LAYERS);
        if let Some(n) = block {
            if self.blocks.len() <= n {
                self.blocks.resize(n + 1, 0);
            }
            self.blocks[n] += bytes;
        } else if name.starts_with("output.") || name.starts_with("output_norm.") {
            self.output += bytes;
        } else {
            self.input += bytes;
        }
    }
}

impl GgufHeader {
    /// Reads and validates the header of the GGUF file at `path`.
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path)?;
        let file_size = file.metadata()?.len();
        Self::parse(BufReader::new(file), file_size)
    }

    /// Reads and validates a whole GGUF file held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GgufError> {
        Self::parse(Cursor::new(bytes), bytes.len() as u64)
    }

    fn parse(inner: impl Read + Seek, file_size: u64) -> Result<Self, GgufError> {
        let header = Reader { inner, file_size }.parse()?;
        header.check_architecture()?;
        header.check_hyperparameters()?;
        Ok(header)
    }

    /// llama.cpp refuses an unknown architecture (with an error, not an abort); refusing it here
    /// too lets `lms ls` say so before anyone loads the file.
    fn check_architecture(&self) -> Result<(), GgufError> {
        match self.architecture() {
            Some(arch) if ARCHITECTURES.contains(&arch) => Ok(()),
            other => Err(GgufError::UnknownArchitecture(other.unwrap_or_default().to_owned())),
        }
    }

    /// The layer and expert counts llama.cpp asserts on while loading (`GGML_ASSERT` aborts the
    /// whole process, so a file that would fail them must never reach it): 1 to 512 layers, at most
    /// 1,024 experts, experts used only with experts, expert groups that divide them.
    fn check_hyperparameters(&self) -> Result<(), GgufError> {
        let arch = self.architecture().unwrap_or_default();
        let key = |k: &str| format!("{arch}.{k}");
        let bad = |what: String| Err(malformed(&what));
        let layers = self.uint(&key("block_count"));
        if let Some(n) = layers.filter(|n| !(1..=MAX_LAYERS).contains(n)) {
            return bad(format!("{arch}.block_count is {n}; llama.cpp takes 1 to {MAX_LAYERS} layers"));
        }
        if let (Some(nextn), Some(n)) = (self.uint(&key("nextn_predict_layers")), layers) {
            if nextn > n {
                return bad(format!("{arch}.nextn_predict_layers ({nextn}) exceeds block_count ({n})"));
            }
        }
        let experts = self.uint(&key("expert_count")).unwrap_or(0);
        if experts > MAX_EXPERTS {
            return bad(format!("{arch}.expert_count is {experts}; llama.cpp takes at most {MAX_EXPERTS}"));
        }
        let used = match self.metadata.get(&key("expert_used_count")) {
            Some(Value::Array { items, .. }) => items.iter().filter_map(as_uint).max().unwrap_or(0),
            _ => self.uint(&key("expert_used_count")).unwrap_or(0),
        };
        let groups = self.uint(&key("expert_group_count")).unwrap_or(0);
        let groups_used = self.uint(&key("expert_group_used_count")).unwrap_or(0);
        let consistent = if experts == 0 {
            used == 0 && groups == 0
        } else {
            used > 0
                && used <= experts
                && groups < experts
                && (groups <= 1 || (experts % groups == 0 && groups_used > 0 && groups_used < groups))
        };
        if !consistent {
            return bad(format!(
                "inconsistent experts: {experts} experts, {used} used, {groups} groups, {groups_used} groups used"
            ));
        }
        Ok(())
    }

    /// A string metadata value.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer metadata value of any integer type.
    pub fn uint(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(as_uint)
    }

    /// `general.architecture`, e.g. `gemma3`.
    pub fn architecture(&self) -> Option<&str> {
        self.str("general.architecture")
    }

    /// The context length the model was trained with (`<arch>.context_length`).
    pub fn context_length(&self) -> Option<u64> {
        self.uint(&format!("{}.context_length", self.architecture()?))
    }

    /// The quantization named by `general.file_type`, e.g. `Q4_K_M`.
    pub fn quantization(&self) -> Option<&'static str> {
        file_type_name(self.uint("general.file_type")?)
    }
}

/// llama.cpp's `llama_ftype` numbers and their usual names.
fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        _ => return None,
    })
}

struct Reader<R> {
    inner: R,
    file_size: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn parse(&mut self) -> Result<GgufHeader, GgufError> {
        let mut magic = [0u8; 4];
        self.inner.read_exact(&mut magic).map_err(|_| GgufError::BadMagic)?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic);
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = self.u64()?;
        let kv_count = self.u64()?;
        // Every entry takes at least 8 bytes, so counts beyond the file size are corrupt.
        if tensor_count > self.file_size / 8 || kv_count > self.file_size / 8 {
            return Err(malformed("entry counts exceed the file size"));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = self.string()?;
            if key.is_empty() {
                return Err(malformed("a metadata key is empty"));
            }
            let ty = self.u32()?;
            if key == "general.alignment" && ty != 4 {
                return Err(malformed("general.alignment is not a u32"));
            }
            let value = self.value(ty, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(malformed(&format!("metadata key {key:?} appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            Some(Value::Uint(a)) if *a > 0 && a.is_power_of_two() => *a,
            Some(_) => return Err(malformed("general.alignment is not a power of two")),
            None => 32,
        };
        // The checks of ggml's own reader (gguf.cpp), so that llama.cpp never meets a table it
        // would refuse or misread: each tensor's data follows the previous one's, padded to the
        // alignment, and all of it lies inside the file.
        let mut parameter_count: u64 = 0;
        let mut data_size: u64 = 0;
        let mut names = std::collections::HashSet::new();
        let mut weights = WeightLayout::default();
        let (mut output_weight, mut token_embd) = (false, 0);
        for _ in 0..tensor_count {
            let name = self.string()?;
            if name.len() >= MAX_NAME {
                return Err(malformed(&format!("tensor name {name:?} is longer than {} bytes", MAX_NAME - 1)));
            }
            let bad = |what: String| malformed(&format!("tensor {name:?} {what}"));
            let dims = self.u32()?;
            if dims == 0 || dims > MAX_DIMS {
                return Err(bad(format!("has {dims} dimensions; ggml takes 1 to {MAX_DIMS}")));
            }
            let mut extents = Vec::new();
            for _ in 0..dims {
                extents.push(i64::from_le_bytes(self.bytes()?));
            }
            if let Some(n) = extents.iter().find(|n| **n < 0) {
                return Err(bad(format!("has a negative extent ({n})")));
            }
            let elements = extents
                .iter()
                .try_fold(1i64, |acc, n| acc.checked_mul(*n))
                .ok_or_else(|| bad("has more elements than an i64 holds".into()))? as u64;
            let ty = self.u32()?;
            let Some((block, type_size)) = tensor_type(ty) else {
                return Err(bad(format!("has unknown type {ty}")));
            };
            if extents[0] as u64 % block != 0 {
                return Err(bad(format!(
                    "has rows of {} elements, not a multiple of its type's block ({block})",
                    extents[0]
                )));
            }
            let offset = self.u64()?;
            if offset != data_size {
                return Err(bad(format!("starts at offset {offset}; the tensors before it end at {data_size}")));
            }
            let bytes = (elements / block)
                .checked_mul(type_size)
                .and_then(|b| b.checked_next_multiple_of(alignment))
                .ok_or_else(|| bad("is larger than a file can be".into()))?;
            data_size = data_size.checked_add(bytes).ok_or_else(|| bad("ends past any file size".into()))?;
            if !names.insert(name.clone()) {
                return Err(bad("appears twice".into()));
            }
            weights.add(&name, bytes);
            if name == "output.weight" || (name == "token_embd.weight" && !output_weight) {
                weights.vocab = extents.get(1).map_or(0, |&n| n as u64);
            }
            output_weight |= name == "output.weight";
            if name == "token_embd.weight" {
                token_embd = bytes;
            }
            parameter_count = parameter_count.saturating_add(elements);
        }
        let header_end = self.inner.stream_position()?;
        let data_start = header_end.div_ceil(alignment) * alignment;
        if data_start.saturating_add(data_size) > self.file_size {
            return Err(malformed(&format!(
                "tensor data ends at byte {}, past the end of the file ({} bytes; truncated download?)",
                data_start.saturating_add(data_size),
                self.file_size
            )));
        }
        if !output_weight {
            weights.tied_output = token_embd;
        }
        Ok(GgufHeader { version, metadata, parameter_count, tensor_count, file_size: self.file_size, weights })
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::Uint(self.bytes::<1>()?[0].into()),
            1 => Value::Int(i8::from_le_bytes(self.bytes()?).into()),
            2 => Value::Uint(u16::from_le_bytes(self.bytes()?).into()),
            3 => Value::Int(i16::from_le_bytes(self.bytes()?).into()),
            4 => Value::Uint(self.u32()?.into()),
            5 => Value::Int(i32::from_le_bytes(self.bytes()?).into()),
            6 => Value::Float(f32::from_le_bytes(self.bytes()?).into()),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(malformed("arrays nested too deeply"));
                }
                let item_ty = self.u32()?;
                let len = self.u64()?;
                if len > self.file_size {
                    return Err(malformed("array longer than the file"));
                }
                let mut items = Vec::new();
                match fixed_size(item_ty) {
                    Some(size) if len > MAX_KEPT_ARRAY => {
                        let skip = len
                            .checked_mul(size)
                            .and_then(|s| i64::try_from(s).ok())
                            .ok_or_else(|| malformed("array size overflows"))?;
                        self.inner.seek(SeekFrom::Current(skip))?;
                    }
                    // A vocabulary's strings: their lengths are checked, their bytes passed over.
                    None if item_ty == 8 && len > MAX_KEPT_ARRAY => {
                        for _ in 0..len {
                            self.skip_string()?;
                        }
                    }
                    _ => {
                        for _ in 0..len {
                            let item = self.value(item_ty, depth + 1)?;
                            if len <= MAX_KEPT_ARRAY {
                                items.push(item);
                            }
                        }
                    }
                }
                Value::Array { len, items }
            }
            10 => Value::Uint(self.u64()?),
            11 => Value::Int(i64::from_le_bytes(self.bytes()?)),
            12 => Value::Float(f64::from_le_bytes(self.bytes()?)),
            other => return Err(malformed(&format!("unknown metadata type {other}"))),
        })
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > MAX_STRING || len > self.file_size {
            return Err(malformed("string longer than the file"));
        }
        let mut buf = Vec::new();
        (&mut self.inner).take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(malformed("file ends inside the header"));
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// [`Reader::string`] without keeping it.
    fn skip_string(&mut self) -> Result<(), GgufError> {
        let len = self.u64()?;
        if len > MAX_STRING || len > self.file_size {
            return Err(malformed("string longer than the file"));
        }
        let mut buf = [0u8; 256];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.exact(&mut buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.exact(&mut buf)?;
        Ok(buf)
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => malformed("file ends inside the header"),
            _ => GgufError::Io(e),
        })
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
}

/// A ggml tensor type's block: elements per block and bytes per block (ggml.c's `type_traits`,
/// the sizes of ggml-common.h's block structs, as vendored by llama-cpp-sys-2 0.1.161). Numbers
/// ggml has retired (4, 5, 31 to 33, 36 to 38) are unknown.
fn tensor_type(ty: u32) -> Option<(u64, u64)> {
    Some(match ty {
        0 => (1, 4),           // F32
        1 | 30 => (1, 2),      // F16, BF16
        2 | 20 => (32, 18),    // Q4_0, IQ4_NL
        3 => (32, 20),         // Q4_1
        6 => (32, 22),         // Q5_0
        7 => (32, 24),         // Q5_1
        8 => (32, 34),         // Q8_0
        9 => (32, 36),         // Q8_1
        10 => (256, 84),       // Q2_K
        11 | 21 => (256, 110), // Q3_K, IQ3_S
        12 => (256, 144),      // Q4_K
        13 => (256, 176),      // Q5_K
        14 => (256, 210),      // Q6_K
        15 => (256, 292),      // Q8_K
        16 | 35 => (256, 66),  // IQ2_XXS, TQ2_0
        17 => (256, 74),       // IQ2_XS
        18 => (256, 98),       // IQ3_XXS
        19 => (256, 50),       // IQ1_S
        22 => (256, 82),       // IQ2_S
        23 => (256, 136),      // IQ4_XS
        24 => (1, 1),          // I8
        25 => (1, 2),          // I16
        26 => (1, 4),          // I32
        27 | 28 => (1, 8),     // I64, F64
        29 => (256, 56),       // IQ1_M
        34 => (256, 54),       // TQ1_0
        39 => (32, 17),        // MXFP4
        40 => (64, 36),        // NVFP4
        41 => (128, 18),       // Q1_0
        42 => (64, 18),        // Q2_0
        _ => return None,
    })
}

/// The architectures llama.cpp loads (`LLM_ARCH_NAMES` in llama-arch.cpp of llama-cpp-sys-2
/// 0.1.161), less `clip`, which names a vision projector, not a language model.
const ARCHITECTURES: &[&str] = &[
    "llama",
    "llama4",
    "deci",
    "falcon",
    "grok",
    "gpt2",
    "gptj",
    "gptneox",
    "mpt",
    "baichuan",
    "starcoder",
    "refact",
    "bert",
    "modern-bert",
    "nomic-bert",
    "nomic-bert-moe",
    "neo-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "eurobert",
    "bloom",
    "stablelm",
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen2vl",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "clef",
    "qwen4exp",
    "phi2",
    "phi3",
    "phimoe",
    "plamo",
    "plamo2",
    "plamo3",
    "codeshell",
    "orion",
    "internlm2",
    "minicpm",
    "minicpm3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4-assistant",
    "gemma-embedding",
    "starcoder2",
    "mamba",
    "mamba2",
    "maple",
    "jamba",
    "falcon-h1",
    "xverse",
    "command-r",
    "cohere2",
    "cohere2moe",
    "dbrx",
    "olmo",
    "olmo2",
    "olmoe",
    "muse-glimmer",
    "openelm",
    "arctic",
    "deepseek",
    "deepseek2",
    "deepseek2-ocr",
    "deepseek32",
    "deepseek4",
    "chatglm",
    "glm4",
    "glm4moe",
    "glm-dsa",
    "bitnet",
    "t5",
    "t5encoder",
    "jais",
    "jais2",
    "nemotron",
    "nemotron_h",
    "nemotron_h_moe",
    "exaone",
    "exaone4",
    "exaone-moe",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "granite",
    "granitemoe",
    "granitehybrid",
    "graniteswitch",
    "granite_swa",
    "chameleon",
    "wavtokenizer-dec",
    "plm",
    "bailingmoe",
    "bailingmoe2",
    "bailingmoe3",
    "dots1",
    "dots3note",
    "arcee",
    "afmoe",
    "laguna",
    "ernie4_5",
    "ernie4_5-moe",
    "hunyuan-moe",
    "hunyuan-dense",
    "hunyuan_vl",
    "hy_v3",
    "hy_v4",
    "smollm3",
    "gpt-oss",
    "lfm2",
    "lfm2moe",
    "dream",
    "smallthinker",
    "llada",
    "llada-moe",
    "seed_oss",
    "grovemoe",
    "apertus",
    "minimax-01",
    "hrm_text",
    "minimax-m2",
    "minimax-m3",
    "cogvlm",
    "rnd1",
    "pangu-embedded",
    "mistral3",
    "eagle3",
    "dflash",
    "mistral4",
    "paddleocr",
    "mimo2",
    "step35",
    "spark2_5",
    "llama-embed",
    "maincoder",
    "kimi-linear",
    "kimi-k3",
    "glm5-next",
    "talkie",
    "mellum",
    "nanbeige",
    "qwen3tts",
    "pockettts",
];

/// Size in bytes of one item of a fixed-size metadata type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn as_uint(v: &Value) -> Option<u64> {
    match v {
        Value::Uint(n) => Some(*n),
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn malformed(what: &str) -> GgufError {
    GgufError::Malformed(what.to_owned())
}

#[cfg(any(test, feature = "fuzzing"))]
#[path = "../../tests/it/gguf_corpus.rs"]
#[allow(missing_docs, dead_code)]
pub(crate) mod corpus;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal valid GGUF: two metadata keys, one 4x2 f32 tensor.
    pub(crate) fn tiny_gguf() -> Vec<u8> {
        gguf_with(&[])
    }

    /// [`tiny_gguf`] with more u32 metadata (`llama.` keys).
    fn gguf_with(extra: &[(&str, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&(2 + extra.len() as u64).to_le_bytes()); // kv
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        s(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        s(&mut b, "llama");
        let mut kv = vec![("context_length", 2048)];
        kv.extend_from_slice(extra);
        for (key, value) in kv {
            s(&mut b, &format!("llama.{key}"));
            b.extend_from_slice(&4u32.to_le_bytes());
            b.extend_from_slice(&value.to_le_bytes());
        }
        s(&mut b, "w");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend_from_slice(&[0u8; 32]);
        b
    }

    fn read(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        GgufHeader::read(f.path())
    }

    #[test]
    fn reads_metadata_and_parameter_count() {
        let h = read(&tiny_gguf()).expect("valid");
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(h.context_length(), Some(2048));
        assert_eq!(h.parameter_count, 8);
    }

    #[test]
    fn weights_are_placed_as_llama_cpp_offloads_them() {
        let mut w = WeightLayout::default();
        for (name, bytes) in [
            ("token_embd.weight", 100),
            ("blk.0.attn_q.weight", 10),
            ("blk.0.ffn_up.weight", 5),
            ("blk.1.attn_q.weight", 20),
            ("output_norm.weight", 1),
            ("rope_freqs.weight", 2),
            ("blk.x.weight", 3),
        ] {
            w.add(name, bytes);
        }
        assert_eq!((w.input, w.blocks.clone(), w.output), (105, vec![15, 20], 1));
        w.tied_output = 100;
        let placed = |layers| {
            let o = w.offloaded(layers);
            (o.gpu_bytes, o.copied_bytes, o.blocks)
        };
        assert_eq!(placed(0), (0, 0, 0));
        assert_eq!(placed(1), (101, 100, 0), "the output layer first, with its copy of the tied embeddings");
        assert_eq!(placed(2), (121, 100, 1), "then the last block");
        assert_eq!(placed(3), (136, 100, 2));
        assert_eq!(placed(99), (136, 100, 2), "no more than there are");
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let full = tiny_gguf();
        for len in 0..full.len() - 32 {
            assert!(read(&full[..len]).is_err(), "truncated at {len} was accepted");
        }
    }

    /// Counts llama.cpp asserts on (it would abort the process) are refused here, with the key.
    #[test]
    fn hyperparameters_llama_cpp_asserts_on_are_checked() {
        for ok in
            [vec![("block_count", 1)], vec![("block_count", 512)], vec![("expert_count", 8), ("expert_used_count", 2)]]
        {
            assert!(read(&gguf_with(&ok)).is_ok(), "{ok:?}");
        }
        let refused: [(&[(&str, u32)], &str); 7] = [
            (&[("block_count", 0)], "block_count is 0"),
            (&[("block_count", 1000)], "block_count is 1000"),
            (&[("block_count", 4), ("nextn_predict_layers", 5)], "nextn_predict_layers"),
            (&[("expert_count", 2000)], "expert_count is 2000"),
            (&[("expert_used_count", 2)], "inconsistent experts"),
            (&[("expert_count", 8), ("expert_used_count", 9)], "inconsistent experts"),
            (&[("expert_count", 8), ("expert_used_count", 2), ("expert_group_count", 3)], "inconsistent experts"),
        ];
        for (kv, says) in refused {
            match read(&gguf_with(kv)) {
                Err(GgufError::Malformed(m)) => assert!(m.contains(says), "{kv:?}: {m}"),
                other => panic!("{kv:?}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_corpus_file_is_valid() {
        let h = GgufHeader::from_bytes(&corpus::Gguf::valid().bytes()).expect("valid");
        assert_eq!(h.parameter_count, 256 * 8 + 256 + 256);
        assert_eq!(h.tensor_count, 3);
    }

    /// Issue 12, item 2: every lie a header can tell is refused here, with words that say which.
    #[test]
    fn every_malformed_file_of_the_corpus_is_refused_with_its_reason() {
        let cases = corpus::malformed();
        assert!(cases.len() > 50, "{}", cases.len());
        eprintln!("{} malformed files refused", cases.len());
        for case in cases {
            match GgufHeader::from_bytes(&case.bytes) {
                Ok(_) => panic!("{}: accepted", case.name),
                Err(e) => assert!(e.to_string().contains(case.says), "{}: {e}", case.name),
            }
        }
        let valid = corpus::Gguf::valid().bytes();
        for len in 0..valid.len() {
            assert!(GgufHeader::from_bytes(&valid[..len]).is_err(), "truncated at {len} was accepted");
        }
    }

    #[test]
    fn random_bytes_are_rejected() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = Vec::new();
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        assert!(matches!(read(&bytes), Err(GgufError::BadMagic)));
        bytes[..4].copy_from_slice(b"GGUF");
        assert!(read(&bytes).is_err());
    }
}
