//! Embeddings (issue 29, a first slice): the default model, mean-pooled as a decoder LLM is.

use lmstudio as lms;

use crate::{client, model};

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

#[test]
fn embeddings_are_unit_vectors_the_same_alone_or_together() {
    let embedder = client().embedding_model(lms::DEFAULT_MODEL_KEY).expect("the model");
    let texts =
        ["The cat sat on the mat.", "Quantum chromodynamics describes the strong force.", "The cat sat on the mat."];
    let all = embedder.embed(&texts).expect("embeds");
    assert_eq!(all.vectors.len(), texts.len());
    let dim = all.vectors[0].len();
    assert!(dim > 0 && all.vectors.iter().all(|v| v.len() == dim), "one dimension for all");
    for v in &all.vectors {
        assert!((cosine(v, v) - 1.0).abs() < 1e-4, "normalized");
    }
    let tokens: usize = texts.iter().map(|t| model().tokenize(t).expect("tokenizes").len()).sum();
    assert_eq!(all.prompt_tokens, tokens);
    // Alone or among others, an input has the same vector; the same text, the same vector.
    let alone = embedder.embed(&[texts[1]]).expect("embeds");
    let gap = largest_gap(&alone.vectors[0], &all.vectors[1]);
    assert!(gap < 1e-5, "alone vs together: {gap}");
    assert_eq!(all.vectors[0], all.vectors[2]);
    assert!(cosine(&all.vectors[0], &all.vectors[1]) < 0.9999, "different texts, different vectors");
    // Too long for the context: refused, naming the input.
    let long = "word ".repeat(5000);
    match embedder.embed(&["short", long.as_str()]) {
        Err(lms::Error::InvalidRequest(m)) => assert!(m.contains("input 1"), "{m}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

/// A store holding a nomic-bert of random weights (nomic-embed-text-v1.5's width and context), as
/// LM Studio's own suite names it.
pub fn encoder_store(dir: &std::path::Path) -> lms::ModelStore {
    let file = dir.join("nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.f16.gguf");
    lms_test_support::random_gguf("nomic-bert", &file, &[]);
    lms::ModelStore::new(dir)
}

#[test]
fn an_encoder_is_an_embedding_model_that_never_predicts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = lms::Client::with_load_config(encoder_store(dir.path()), lms::LoadConfig::default());
    let stored = client.list_downloaded().expect("lists");
    let info = stored[0].info.as_ref().expect("reads its header");
    assert_eq!((info.kind.as_str(), info.architecture.as_deref()), (lms::EMBEDDING, Some("nomic-bert")));

    let embedder = client.embedding_model("nomic-embed-text-v1.5").expect("loads");
    assert_eq!(embedder.info().context_length, Some(2048));
    let texts = ["Hello, world!", "Goodbye, world!"];
    let both = embedder.embed(&texts).expect("embeds");
    assert!(both.vectors.iter().all(|v| v.len() == 768 && (cosine(v, v) - 1.0).abs() < 1e-4), "768, normalized");
    assert!(cosine(&both.vectors[0], &both.vectors[1]) < 0.9999, "different texts, different vectors");
    let alone = embedder.embed(&texts[1..]).expect("embeds");
    let gap = largest_gap(&alone.vectors[0], &both.vectors[1]);
    assert!(gap < 1e-5, "alone vs together: {gap}");

    // WordPiece: [CLS] ... [SEP] around the text's tokens, which are what the inputs count.
    let llm = client.get_loaded("nomic-embed-text-v1.5").expect("lists").expect("loaded");
    let (with, without) = (
        llm.tokenize_with(texts[0], true, true).expect("tokenizes"),
        llm.tokenize_with(texts[0], false, true).expect("tokenizes"),
    );
    assert_eq!((with.len(), with[0], with[with.len() - 1]), (without.len() + 2, 101, 102));
    assert_eq!(both.prompt_tokens, texts.iter().map(|t| llm.tokenize(t).expect("tokenizes").len()).sum::<usize>());

    // It makes no text: refused by name, and the instance goes on embedding.
    match llm.complete("Hello", lms::Config::default()) {
        Err(lms::Error::InvalidRequest(m)) => assert!(m.contains("embedding model"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let again = embedder.embed(&texts[..1]).expect("embeds");
    assert!(largest_gap(&again.vectors[0], &both.vectors[0]) < 1e-5, "the same vector again");
}

/// llama.cpp's own server, built from the tree the benchmarks' tools come from
/// (`scripts/build-llama-tools server`; `scripts/test` builds it first), serving `model` with
/// `args` on a free loopback port until dropped.
struct LlamaServer {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl LlamaServer {
    fn start(model: &std::path::Path, args: &[&str]) -> Self {
        let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/llama-tools/bin/llama-server");
        assert!(tool.exists(), "{} is missing: run scripts/build-llama-tools server", tool.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let child = std::process::Command::new(tool)
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-c", "512", "-t", "2", "-np", "1"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("llama-server starts");
        let server = Self { child, addr: ([127, 0, 0, 1], port).into() };
        let started = std::time::Instant::now();
        while server.get("/health").is_none_or(|(status, _)| status != 200) {
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "llama-server never became healthy");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    /// One request (HTTP/1.1, the connection closed after it): the status and the body.
    fn request(&self, head: &str, body: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(self.addr).ok()?;
        write!(sock, "{head} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
        let mut reply = String::new();
        sock.read_to_string(&mut reply).ok()?;
        let status = reply.split(' ').nth(1)?.parse().ok()?;
        Some((status, reply.split_once("\r\n\r\n")?.1.to_owned()))
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request(&format!("GET {path}"), "")
    }

    /// POSTs `body` to `path`; the JSON it answers (panics on any other status).
    fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let (status, text) = self.request(&format!("POST {path}"), &body.to_string()).expect("llama-server answers");
        assert_eq!(status, 200, "llama-server {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// llama-server's `/v1/embeddings` vectors of `inputs` on `model` (served with `args`).
fn llama_cpp_vectors(model: &std::path::Path, inputs: &[&str], args: &[&str]) -> Vec<Vec<f32>> {
    let server = LlamaServer::start(model, &[&["--embeddings"], args].concat());
    let reply = server.post("/v1/embeddings", &serde_json::json!({ "input": inputs, "encoding_format": "float" }));
    let data = reply["data"].as_array().expect("data");
    data.iter()
        .map(|d| {
            d["embedding"].as_array().expect("floats").iter().map(|x| x.as_f64().expect("a float") as f32).collect()
        })
        .collect()
}

fn largest_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "the same width ({} and {})", a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const PROMPTS: [&str; 3] = ["Hello, world!", "The cat sat on the mat.", "Rust makes systems programming safe."];

#[test]
fn vectors_equal_llama_cpps_own() {
    // An encoder (nomic-bert, its file's mean pooling) and a decoder LLM (mean-pooled, as
    // `llama-server --embeddings` pools one), each also with the pooling the load config names.
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = encoder_store(dir.path());
    let encoder = store.resolve("nomic-embed-text-v1.5").expect("the encoder").path;
    let client = lms::Client::with_load_config(store, lms::LoadConfig::default());
    let ours = client.embedding_model("nomic-embed-text-v1.5").expect("loads").embed(&PROMPTS).expect("embeds");
    assert_close("nomic-bert", &ours.vectors, &llama_cpp_vectors(&encoder, &PROMPTS, &[]), 1e-4);
    let cls = lms::LoadConfig { pooling: Some(lms::Pooling::Cls), ..client.embedding_load_config() };
    let ours = client.load("nomic-embed-text-v1.5", &cls).map(lms::EmbeddingModel::from).expect("loads");
    let ours = ours.embed(&PROMPTS).expect("embeds");
    let theirs = llama_cpp_vectors(&encoder, &PROMPTS, &["--pooling", "cls"]);
    assert_close("nomic-bert, CLS", &ours.vectors, &theirs, 1e-4);

    // A decoder, with an input of several hundred tokens (one decode, as llama-server's).
    let long = LONG.repeat(12);
    let inputs = [PROMPTS[0], PROMPTS[1], PROMPTS[2], long.as_str()];
    let tokens = crate::model().tokenize(&long).expect("tokenizes").len();
    assert!((256..500).contains(&tokens), "{tokens} tokens");
    let decoder = lms::ModelStore::from_env().resolve(lms::DEFAULT_MODEL_KEY).expect("the default model").path;
    let gemma = crate::client().embedding_model(lms::DEFAULT_MODEL_KEY).expect("loads");
    let ours = gemma.embed(&inputs).expect("embeds");
    assert_close("gemma 3, mean", &ours.vectors, &llama_cpp_vectors(&decoder, &inputs, &["--pooling", "mean"]), 1e-4);
    let last = lms::LoadConfig { pooling: Some(lms::Pooling::Last), context_length: Some(1024), ..Default::default() };
    let client = lms::Client::with_load_config(lms::ModelStore::from_env(), last);
    let ours = client.embedding_model(lms::DEFAULT_MODEL_KEY).expect("loads").embed(&inputs).expect("embeds");
    let theirs = llama_cpp_vectors(&decoder, &inputs, &["--pooling", "last"]);
    assert_close("gemma 3, last", &ours.vectors, &theirs, 1e-4);

    // Longer than llama-server's batch (which it then refuses): decoded in chunks, the outputs
    // pooled across them, as llama-server given a batch for the whole input pools it.
    let longer = LONG.repeat(30);
    assert!(crate::model().tokenize(&longer).expect("tokenizes").len() > 600, "longer than a chunk");
    let ours = gemma.embed(&[longer.as_str()]).expect("embeds");
    let whole = ["--pooling", "mean", "-c", "1024", "-b", "1024", "-ub", "1024"];
    assert_close("gemma 3, chunked", &ours.vectors, &llama_cpp_vectors(&decoder, &[longer.as_str()], &whole), 1e-4);
}

/// About 40 tokens of text, to repeat into an input longer than a decode's chunk.
const LONG: &str = "Rivers carve valleys over millions of years, while glaciers grind mountains into gravel and \
                    sand; the sea then sorts what the rivers bring, layer on layer. ";

/// Each of `ours` within `tolerance` of `theirs`, at every component.
fn assert_close(what: &str, ours: &[Vec<f32>], theirs: &[Vec<f32>], tolerance: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: as many vectors");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let gap = largest_gap(a, b);
        assert!(gap < tolerance, "{what}, input {i}: largest difference {gap}");
    }
}

#[test]
fn rerank_scores_equal_llama_cpps_own() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("test/bge-reranker-GGUF/bge-reranker.f16.gguf");
    lms_test_support::random_gguf("bert-reranker", &file, &[]);
    let client = lms::Client::with_load_config(lms::ModelStore::new(dir.path()), lms::LoadConfig::default());
    let reranker = client.embedding_model("bge-reranker").expect("loads");
    let query = "What is a cat?";
    let ours = reranker.rerank(query, &PROMPTS).expect("ranks");
    assert_eq!(ours.scores.len(), PROMPTS.len());
    let server = LlamaServer::start(&file, &["--reranking"]);
    let theirs = server.post("/v1/rerank", &serde_json::json!({ "query": query, "documents": PROMPTS }));
    let results = theirs["results"].as_array().expect("results");
    assert_eq!(results.len(), PROMPTS.len());
    for r in results {
        let (index, score) =
            (r["index"].as_u64().expect("index") as usize, r["relevance_score"].as_f64().expect("score"));
        let ours = ours.scores[index];
        assert!((f64::from(ours) - score).abs() < 1e-4, "document {index}: ours {ours}, llama-server's {score}");
    }
    assert_eq!(theirs["usage"]["prompt_tokens"].as_u64(), Some(ours.prompt_tokens as u64), "the pairs' tokens");
    // Alone or among others (one decode holds several pairs of an encoder, whose matrix products
    // then take other kernels: 1e-5 apart, measured), a pair has the same score, as llama-server's
    // is; the pair's tokens are counted.
    let alone = reranker.rerank(query, &PROMPTS[1..2]).expect("ranks");
    let (a, b) = (alone.scores[0], ours.scores[1]);
    assert!((a - b).abs() < 1e-4, "alone {a}, together {b}");
    assert!(ours.prompt_tokens > alone.prompt_tokens * 2);
    // A reranker makes no vectors, and an embedding model no scores: refused by name.
    match reranker.embed(&["text"]) {
        Err(lms::Error::InvalidRequest(m)) => assert!(m.contains("reranker"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match crate::client().embedding_model(lms::DEFAULT_MODEL_KEY).expect("loads").rerank(query, &PROMPTS) {
        Err(lms::Error::InvalidRequest(m)) => assert!(m.contains("not a reranker"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Rank pooling needs a classifier head: refused at load for a model without one.
    let rank = lms::LoadConfig { pooling: Some(lms::Pooling::Rank), ..Default::default() };
    match lms::Client::with_load_config(lms::ModelStore::from_env(), rank).llm(lms::DEFAULT_MODEL_KEY) {
        Err(lms::Error::InvalidConfig(m)) => assert!(m.contains("classifier head"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|l| l.identifier().to_owned())),
    }
}
