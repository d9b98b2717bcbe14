//! A corpus of malformed GGUF files, generated (never committed as blobs): a small well-formed
//! model file, and that file broken in every way a header can lie. Shared by the GGUF reader's unit
//! tests (`#[path]`), the library's integration tests and the fuzz targets' seeds; std only.

/// A GGUF file under construction: metadata entries and tensors, written with correct counts,
/// contiguous aligned offsets and zeroed tensor data unless a case overrides them.
#[derive(Clone)]
pub struct Gguf {
    pub version: u32,
    pub kv: Vec<(String, u32, Vec<u8>)>,
    pub tensors: Vec<Tensor>,
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
}

#[derive(Clone)]
pub struct Tensor {
    pub name: String,
    pub extents: Vec<i64>,
    pub ty: u32,
    /// The offset written, when not the one that follows the previous tensor.
    pub offset: Option<u64>,
}

const ALIGN: u64 = 32;

fn string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

impl Gguf {
    /// A well-formed header of the `llama` architecture with three tensors of three types.
    pub fn valid() -> Self {
        let mut g = Gguf { version: 3, kv: Vec::new(), tensors: Vec::new(), tensor_count: None, kv_count: None };
        g.set_str("general.architecture", "llama");
        g.set_str("general.name", "corpus");
        g.set_u32("llama.context_length", 2048);
        g.set_u32("llama.block_count", 1);
        g.set_u32("general.file_type", 15);
        let t =
            |name: &str, extents: &[i64], ty| Tensor { name: name.into(), extents: extents.to_vec(), ty, offset: None };
        g.tensors = vec![
            t("token_embd.weight", &[256, 8], 12),  // Q4_K
            t("blk.0.attn_norm.weight", &[256], 0), // F32
            t("output_norm.weight", &[256], 1),     // F16
        ];
        g
    }

    pub fn set(&mut self, key: &str, ty: u32, payload: Vec<u8>) {
        self.kv.retain(|(k, _, _)| k != key);
        self.kv.push((key.into(), ty, payload));
    }

    pub fn set_str(&mut self, key: &str, value: &str) {
        self.set(key, 8, string(value));
    }

    pub fn set_u32(&mut self, key: &str, value: u32) {
        self.set(key, 4, value.to_le_bytes().to_vec());
    }

    fn tensor_bytes(t: &Tensor) -> u64 {
        let (block, size) = match t.ty {
            0 => (1, 4),
            1 => (1, 2),
            12 => (256, 144),
            _ => (1, 1),
        };
        let elements = t.extents.iter().try_fold(1i64, |a, n| a.checked_mul(*n)).unwrap_or(0).max(0) as u64;
        (elements / block).saturating_mul(size).next_multiple_of(ALIGN)
    }

    /// The file: header, padding to the alignment, then the tensors' (zeroed) data.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.tensor_count.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&self.kv_count.unwrap_or(self.kv.len() as u64).to_le_bytes());
        for (key, ty, payload) in &self.kv {
            b.extend_from_slice(&string(key));
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(payload);
        }
        let mut data = 0u64;
        for t in &self.tensors {
            b.extend_from_slice(&string(&t.name));
            b.extend_from_slice(&(t.extents.len() as u32).to_le_bytes());
            for n in &t.extents {
                b.extend_from_slice(&n.to_le_bytes());
            }
            b.extend_from_slice(&t.ty.to_le_bytes());
            b.extend_from_slice(&t.offset.unwrap_or(data).to_le_bytes());
            data = data.saturating_add(Self::tensor_bytes(t));
        }
        b.resize((b.len() as u64).next_multiple_of(ALIGN) as usize, 0);
        // Data a lying table claims beyond 1 MiB is not written (the file is short of it).
        b.resize(b.len() + data.min(1 << 20) as usize, 0);
        b
    }
}

/// One malformed file: a name for it, its bytes, and words the refusal must contain.
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub says: &'static str,
}

/// Every malformed file of the corpus.
pub fn malformed() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, says: &'static str| {
        cases.push(Case { name: name.into(), bytes, says });
    };
    let with = |f: &dyn Fn(&mut Gguf)| {
        let mut g = Gguf::valid();
        f(&mut g);
        g.bytes()
    };
    let valid = Gguf::valid().bytes();

    // The first bytes.
    let mut b = valid.clone();
    b[..4].copy_from_slice(b"GGUG");
    add("wrong-magic", b, "bad magic");
    add("gguf-v1", with(&|g| g.version = 1), "unsupported GGUF version 1");
    add("gguf-v4", with(&|g| g.version = 4), "unsupported GGUF version 4");
    // Truncated anywhere: inside the header, inside the padding, inside the tensor data.
    for len in [0, 3, 4, 7, 8, 15, 16, 23, 24, 30, 60, 100, 200, valid.len() / 2, valid.len() - 1] {
        add(&format!("truncated-at-{len}"), valid[..len].to_vec(), "");
    }
    // Lying counts.
    add("tensor-count-plus-one", with(&|g| g.tensor_count = Some(4)), "");
    add("tensor-count-absurd", with(&|g| g.tensor_count = Some(u64::MAX)), "entry counts exceed the file size");
    add("kv-count-plus-one", with(&|g| g.kv_count = Some(g.kv.len() as u64 + 1)), "");
    add("kv-count-minus-one", with(&|g| g.kv_count = Some(g.kv.len() as u64 - 1)), "");
    add("kv-count-absurd", with(&|g| g.kv_count = Some(1 << 62)), "entry counts exceed the file size");
    // Absurd lengths.
    let mut b = valid.clone();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // the first key's length
    add("key-length-absurd", b, "string longer than the file");
    let mut b = valid.clone();
    b[24..32].copy_from_slice(&(valid.len() as u64 - 20).to_le_bytes());
    add("key-length-past-the-end", b, "");
    add(
        "string-value-length-absurd",
        with(&|g| g.set("general.name", 8, (1u64 << 40).to_le_bytes().to_vec())),
        "string longer than the file",
    );
    let array = |item_ty: u32, len: u64| {
        let mut p = item_ty.to_le_bytes().to_vec();
        p.extend_from_slice(&len.to_le_bytes());
        p
    };
    add("array-length-absurd", with(&|g| g.set("llama.list", 9, array(4, u64::MAX / 2))), "array longer than the file");
    add("array-length-past-the-end", with(&|g| g.set("llama.list", 9, array(4, 700))), "");
    add(
        "string-array-length-absurd",
        with(&|g| g.set("tokenizer.ggml.tokens", 9, array(8, 1 << 50))),
        "array longer than the file",
    );
    // A vocabulary (longer than the reader keeps, so its strings are passed over) with a lying
    // string in the middle.
    let vocabulary = |absurd_at: usize| {
        let mut p = array(8, 100);
        for i in 0..100 {
            match i == absurd_at {
                true => p.extend_from_slice(&(1u64 << 40).to_le_bytes()),
                false => p.extend_from_slice(&string(&format!("tok{i}"))),
            }
        }
        p
    };
    add(
        "vocabulary-string-length-absurd",
        with(&|g| g.set("tokenizer.ggml.tokens", 9, vocabulary(70))),
        "string longer than the file",
    );
    let mut nested = Vec::new();
    for _ in 0..8 {
        nested.extend_from_slice(&array(9, 1));
    }
    add("arrays-nested-deeply", with(&|g| g.set("llama.nested", 9, nested.clone())), "nested too deeply");
    // Unknown types.
    add("unknown-metadata-type", with(&|g| g.set("llama.odd", 13, vec![0; 8])), "unknown metadata type 13");
    add("unknown-array-item-type", with(&|g| g.set("llama.odd", 9, array(99, 2))), "unknown metadata type 99");
    for ty in [4u32, 5, 31, 36, 43, 1000, u32::MAX] {
        add(&format!("tensor-type-{ty}"), with(&|g| g.tensors[1].ty = ty), "unknown type");
    }
    // Keys.
    add("empty-key", with(&|g| g.set("", 4, vec![0; 4])), "key is empty");
    let mut dup = Gguf::valid();
    dup.kv.push(("general.name".into(), 8, string("again")));
    add("duplicate-key", dup.bytes(), "appears twice");
    add("alignment-not-a-power-of-two", with(&|g| g.set_u32("general.alignment", 48)), "not a power of two");
    add("alignment-zero", with(&|g| g.set_u32("general.alignment", 0)), "not a power of two");
    add("alignment-not-u32", with(&|g| g.set("general.alignment", 10, 32u64.to_le_bytes().to_vec())), "not a u32");
    // The tensor table.
    add("tensor-zero-dimensions", with(&|g| g.tensors[0].extents.clear()), "0 dimensions");
    add("tensor-five-dimensions", with(&|g| g.tensors[1].extents = vec![256, 1, 1, 1, 1]), "5 dimensions");
    add("tensor-negative-extent", with(&|g| g.tensors[1].extents = vec![256, -1]), "negative extent");
    add("tensor-extent-overflow", with(&|g| g.tensors[1].extents = vec![1 << 40, 1 << 40]), "more elements");
    add("tensor-row-not-whole-blocks", with(&|g| g.tensors[0].extents = vec![100, 8]), "not a multiple");
    add("tensor-offset-misaligned", with(&|g| g.tensors[1].offset = Some(1152 + 16)), "starts at offset");
    add("tensor-offset-overlaps", with(&|g| g.tensors[1].offset = Some(0)), "starts at offset");
    add("tensor-offset-gap", with(&|g| g.tensors[2].offset = Some(1 << 20)), "starts at offset");
    add("tensor-offset-past-the-end", with(&|g| g.tensors[2].offset = Some(u64::MAX - 7)), "starts at offset");
    add("tensor-duplicate-name", with(&|g| g.tensors[2].name = g.tensors[1].name.clone()), "appears twice");
    add("tensor-name-too-long", with(&|g| g.tensors[1].name = "n".repeat(64)), "longer than 63 bytes");
    add("tensor-huge", with(&|g| g.tensors[0].extents = vec![1 << 30, 1 << 30]), "past the end of the file");
    let mut b = valid.clone();
    b.truncate(valid.len() - 32);
    add("tensor-data-cut", b, "past the end of the file");
    // What llama.cpp asserts on or cannot run.
    add("unknown-architecture", with(&|g| g.set_str("general.architecture", "no-such-arch")), "\"no-such-arch\"");
    add("no-architecture", with(&|g| g.kv.retain(|(k, _, _)| k != "general.architecture")), "architecture \"\"");
    add("vision-projector", with(&|g| g.set_str("general.architecture", "clip")), "\"clip\"");
    add("zero-layers", with(&|g| g.set_u32("llama.block_count", 0)), "block_count is 0");
    add("too-many-layers", with(&|g| g.set_u32("llama.block_count", 513)), "block_count is 513");
    add("experts-without-count", with(&|g| g.set_u32("llama.expert_used_count", 2)), "inconsistent experts");
    cases
}
