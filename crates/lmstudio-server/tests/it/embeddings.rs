//! `/v1/embeddings` (issue 29) driven by the `openai` package: base64 (its default) and floats
//! alike, an input the same alone or in a list, token ids as their text, refusals by name.

use crate::{lms_client, run_python, start_server};

const EMBEDDINGS: &str = r#"
import os
import openai
from openai import OpenAI

c = OpenAI(base_url=f"http://{os.environ['HOST']}/v1", api_key="unused")
model = "gemma-3-270m"
texts = ["The cat sat on the mat.", "Quantum chromodynamics describes the strong force."]
r = c.embeddings.create(model=model, input=texts)
assert [d.index for d in r.data] == [0, 1] and r.model == model, r
v = r.data[0].embedding
assert abs(sum(x * x for x in v) - 1) < 1e-4, "unit vectors"
f = c.embeddings.create(model=model, input=texts, encoding_format="float")
assert all(abs(a - b) < 1e-6 for a, b in zip(f.data[1].embedding, r.data[1].embedding)), "base64 and floats agree"
one = c.embeddings.create(model=model, input=texts[1], encoding_format="float")
assert max(abs(a - b) for a, b in zip(one.data[0].embedding, f.data[1].embedding)) < 1e-5, "alone as in a list"
assert r.usage.prompt_tokens == f.usage.prompt_tokens > one.usage.prompt_tokens > 0, r.usage
# Token ids, as /tokenize gives them with the BOS the text input gets: the same vector.
import json, urllib.request
req = urllib.request.Request(f"http://{os.environ['HOST']}/tokenize", method="POST",
    data=json.dumps({"content": texts[1], "add_special": True}).encode(), headers={"Content-Type": "application/json"})
ids = json.load(urllib.request.urlopen(req))["tokens"]
by_ids = c.embeddings.create(model=model, input=[ids, ids[:3]], encoding_format="float")
assert len(by_ids.data) == 2 and by_ids.usage.prompt_tokens == len(ids) + 3, by_ids.usage
assert max(abs(a - b) for a, b in zip(by_ids.data[0].embedding, f.data[1].embedding)) < 1e-6, "ids as the text"
one_list = c.embeddings.create(model=model, input=ids, encoding_format="float")
assert one_list.data[0].embedding == by_ids.data[0].embedding, "one list of ids is one input"
for bad, name in [({"dimensions": 8}, "dimensions"), ({"input": [[1, 2, 10**8]]}, "not in the vocabulary")]:
    try:
        c.embeddings.create(**{"model": model, "input": texts, "encoding_format": "float", **bad})
        raise AssertionError(f"{name} was taken")
    except openai.BadRequestError as e:
        assert name in str(e), e
print("EMBEDDINGS OK", len(v))
"#;

#[test]
fn openai_package_embeds() {
    let out = run_python(EMBEDDINGS, start_server(lms_client(1), None));
    assert!(out.contains("EMBEDDINGS OK"), "{out}");
}

/// LM Studio's Python SDK over the `embedding` namespace, with the default model (a decoder LLM,
/// mean-pooled): the vectors it gets are the ones `/v1/embeddings` gives, and the namespace lists
/// embedding models only (LM Studio's own suite runs its embedding tests on a nomic-bert).
const SDK_EMBEDDINGS: &str = r#"
import os
import lmstudio as lms
from openai import OpenAI

host = os.environ["HOST"]
texts = ["The cat sat on the mat.", "Quantum chromodynamics describes the strong force."]
with lms.Client(host) as client:
    model = client.embedding.model("gemma-3-270m")
    info = model.get_info()
    assert info.type == "embedding" and info.identifier == "gemma-3-270m", info
    one = model.embed(texts[0])
    both = model.embed(texts)
    assert len(both) == 2 and len(one) == len(both[0]) > 0
    assert max(abs(a - b) for a, b in zip(one, both[0])) < 1e-6, "one call or a list"
    assert model.count_tokens(texts[0]) + 1 == len(model.tokenize(texts[0])), "the BOS token"
    assert [m.identifier for m in client.embedding.list_loaded()] == [], "an LLM is no embedding model"
    assert [m.identifier for m in client.llm.list_loaded()] == ["gemma-3-270m"]
openai = OpenAI(base_url=f"http://{host}/v1", api_key="unused")
r = openai.embeddings.create(model="gemma-3-270m", input=texts, encoding_format="float")
for sdk, http in zip(both, r.data):
    assert max(abs(a - b) for a, b in zip(sdk, http.embedding)) < 1e-6, "the SDK and HTTP agree"
print("SDK EMBEDDINGS OK", len(one))
"#;

#[test]
fn python_sdk_embeds() {
    let out = run_python(SDK_EMBEDDINGS, start_server(lms_client(1), None));
    assert!(out.contains("SDK EMBEDDINGS OK"), "{out}");
}

/// `/v1/rerank` on a BERT cross-encoder of random weights: Jina's shape (best first, `top_n`,
/// documents on request) and TEI's (`texts`), the same scores in both; refusals by name. (That the
/// scores are llama-server's own is the library's test, `rerank_scores_equal_llama_cpps_own`.)
#[tokio::test]
async fn rerank_in_jina_and_tei_shapes() {
    use crate::http::{call, json_of, post};
    use axum::http::StatusCode;
    use serde_json::json;

    let dir = tempfile::tempdir().expect("a temp dir");
    lms_test_support::random_gguf(
        "bert-reranker",
        &dir.path().join("test/bge-reranker-GGUF/bge-reranker.f16.gguf"),
        &[],
    );
    let client = lmstudio::Client::with_load_config(lmstudio::ModelStore::new(dir.path()), Default::default());
    let state = lmstudio_server::AppState::new(client, None);
    let documents = ["A cat is a small feline.", "Paris is in France.", "Cats purr.", "Rust is a language."];
    let query = "What is a cat?";

    let body = json!({"model": "bge-reranker", "query": query, "documents": documents});
    let (status, text) = call(state.clone(), post("/v1/rerank", body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let all = json_of(&text);
    assert_eq!((all["object"].as_str(), all["model"].as_str()), (Some("list"), Some("bge-reranker")));
    assert!(all["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 0), "{all}");
    let scores: Vec<(u64, f64)> = all["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["index"].as_u64().expect("index"), r["relevance_score"].as_f64().expect("score")))
        .collect();
    assert_eq!(scores.len(), documents.len());
    assert!(scores.windows(2).all(|w| w[0].1 >= w[1].1), "best first: {scores:?}");
    let mut seen: Vec<u64> = scores.iter().map(|s| s.0).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3], "each document once");

    let body =
        json!({"model": "bge-reranker", "query": query, "documents": documents, "top_n": 2, "return_documents": true});
    let (_, text) = call(state.clone(), post("/v1/rerank", body.to_string())).await;
    let top = json_of(&text)["results"].as_array().expect("results").clone();
    assert_eq!(top.len(), 2, "top_n");
    for (r, (index, score)) in top.iter().zip(&scores) {
        assert_eq!((r["index"].as_u64(), r["relevance_score"].as_f64()), (Some(*index), Some(*score)));
        assert_eq!(r["document"]["text"], documents[*index as usize]);
    }

    let body = json!({"model": "bge-reranker", "query": query, "texts": documents, "return_text": true});
    let (status, text) = call(state.clone(), post("/rerank", body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let tei = json_of(&text);
    for (r, (index, score)) in tei.as_array().expect("TEI answers a list").iter().zip(&scores) {
        assert_eq!((r["index"].as_u64(), r["score"].as_f64()), (Some(*index), Some(*score)));
        assert_eq!(r["text"], documents[*index as usize]);
    }

    // The shapes, as a snapshot: what depends on the random weights (the order, the scores, so
    // the texts) is masked.
    let body =
        json!({"model": "bge-reranker", "query": query, "documents": documents, "top_n": 2, "return_documents": true});
    let top = json_of(&call(state.clone(), post("/v1/rerank", body.to_string())).await.1);
    let mut shapes = vec![all.clone(), top, tei.clone()];
    for shape in &mut shapes {
        // Jina's results are under `results`; TEI answers the list itself.
        let results = if shape.is_array() { shape } else { &mut shape["results"] };
        for r in results.as_array_mut().expect("results") {
            for (key, mask) in
                [("index", "[index]"), ("relevance_score", "[score]"), ("score", "[score]"), ("text", "[text]")]
            {
                if r.get(key).is_some() {
                    r[key] = json!(mask);
                }
            }
            if r.get("document").is_some() {
                r["document"]["text"] = json!("[text]");
            }
        }
    }
    insta::assert_json_snapshot!(shapes);

    for (path, body, named) in [
        ("/v1/embeddings", json!({"model": "bge-reranker", "input": "text"}), "reranker"),
        (
            "/v1/rerank",
            json!({"model": "bge-reranker", "query": query, "documents": documents, "rank_fields": ["x"]}),
            "rank_fields",
        ),
        ("/v1/rerank", json!({"model": "bge-reranker", "query": query, "documents": []}), "empty"),
        (
            "/v1/rerank",
            json!({"model": "bge-reranker", "query": query, "texts": documents, "truncate": true}),
            "truncate",
        ),
    ] {
        let (status, text) = call(state.clone(), post(path, body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {text}");
        assert!(text.contains(named), "{path}: {text}");
    }
}

/// `/v1/embeddings`' answer, floats and base64, as a snapshot (the vectors by their size), and
/// `/tokenize`'s of the same text.
#[tokio::test]
async fn embeddings_and_tokenize_snapshot() {
    use crate::http::{call, json_of, post};
    use serde_json::json;

    let state = lmstudio_server::AppState::new(crate::lms_client(1), None);
    let mut shapes = Vec::new();
    for (format, input) in [("float", json!(["Hello, world!", "Goodbye!"])), ("base64", json!([[2, 9259]]))] {
        let body = json!({"model": "gemma-3-270m", "input": input, "encoding_format": format});
        let (status, text) = call(state.clone(), post("/v1/embeddings", body.to_string())).await;
        assert_eq!(status, axum::http::StatusCode::OK, "{text}");
        let mut shape = json_of(&text);
        for d in shape["data"].as_array_mut().expect("data") {
            let size = match &d["embedding"] {
                serde_json::Value::Array(v) => format!("[{} floats]", v.len()),
                serde_json::Value::String(b) => format!("[{} base64 characters]", b.len()),
                other => panic!("an embedding is floats or base64: {other}"),
            };
            d["embedding"] = json!(size);
        }
        shapes.push(shape);
    }
    let body = json!({"content": "Hello, world!", "add_special": true, "with_pieces": true});
    shapes.push(json_of(&call(state.clone(), post("/tokenize", body.to_string())).await.1));
    insta::assert_json_snapshot!(shapes);
}
