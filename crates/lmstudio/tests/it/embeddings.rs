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
