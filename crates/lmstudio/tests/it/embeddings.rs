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
    let gap = alone.vectors[0].iter().zip(&all.vectors[1]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
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
    let gap = alone.vectors[0].iter().zip(&both.vectors[1]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
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
    assert_eq!(embedder.embed(&texts[..1]).expect("embeds").vectors[0], both.vectors[0]);
}
