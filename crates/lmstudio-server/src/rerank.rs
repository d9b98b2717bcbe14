//! `POST /v1/rerank` (also `/rerank`, `/v1/reranking`), as llama-server serves it: Jina's shape
//! (`query`, `documents`, `top_n`; `results` of `index` and `relevance_score`, best first) and, when
//! the documents come as `texts`, Hugging Face TEI's (a bare list of `index` and `score`). For
//! reranker models (rank pooling: a classifier head that scores a query with a document).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::openai::{counted, parse};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RerankRequest {
    model: Option<String>,
    query: String,
    /// Jina's (and Cohere's) documents: strings, or objects with a `text`.
    documents: Option<Vec<Document>>,
    /// TEI's documents.
    texts: Option<Vec<String>>,
    top_n: Option<usize>,
    /// Jina: each result carries its document.
    return_documents: Option<bool>,
    /// TEI: each result carries its text.
    return_text: Option<bool>,
    /// TEI's truncation of long pairs: only `false` (a pair too long is refused) is honoured.
    truncate: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Document {
    Text(String),
    Object { text: String },
}

#[derive(Debug, Serialize)]
struct RerankOut {
    model: String,
    object: &'static str,
    usage: Usage,
    results: Vec<Ranked>,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Debug, Serialize)]
struct Ranked {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    relevance_score: Option<f32>,
    /// TEI's name for the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<DocumentOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[derive(Debug, Serialize)]
struct DocumentOut {
    text: String,
}

/// `POST /v1/rerank`.
pub(crate) async fn rerank(
    State(state): State<AppState>,
    body: Result<Json<RerankRequest>, JsonRejection>,
) -> Response {
    let reply = async {
        let req = parse(body)?;
        if req.truncate == Some(true) {
            return Err(ApiError::bad_request(
                "unsupported `truncate`: true (a pair longer than the context is refused)",
            ));
        }
        let (documents, tei): (Vec<String>, bool) = match (req.documents, req.texts) {
            (Some(docs), None) => (
                docs.into_iter()
                    .map(|d| match d {
                        Document::Text(t) | Document::Object { text: t } => t,
                    })
                    .collect(),
                false,
            ),
            (None, Some(texts)) => (texts, true),
            (Some(_), Some(_)) => return Err(ApiError::bad_request("send `documents` or `texts`, not both")),
            (None, None) => return Err(ApiError::bad_request("`documents` is required")),
        };
        if documents.is_empty() {
            return Err(ApiError::bad_request("`documents` is empty"));
        }
        let model = state.embedding_model(req.model.as_deref()).await?;
        let ranking = model.rerank_async(&req.query, &documents).await?;
        let mut order: Vec<usize> = (0..documents.len()).collect();
        order.sort_by(|&a, &b| ranking.scores[b].total_cmp(&ranking.scores[a]));
        order.truncate(req.top_n.unwrap_or(documents.len()));
        let with_text = if tei { req.return_text } else { req.return_documents }.unwrap_or(false);
        let results: Vec<Ranked> = order
            .into_iter()
            .map(|index| {
                let (score, text) = (ranking.scores[index], with_text.then(|| documents[index].clone()));
                Ranked {
                    index,
                    relevance_score: (!tei).then_some(score),
                    score: tei.then_some(score),
                    document: text.clone().filter(|_| !tei).map(|text| DocumentOut { text }),
                    text: text.filter(|_| tei),
                }
            })
            .collect();
        if tei {
            return Ok(Json(results).into_response());
        }
        let usage = Usage { prompt_tokens: ranking.prompt_tokens, total_tokens: ranking.prompt_tokens };
        let out = RerankOut { model: model.identifier().to_owned(), object: "list", usage, results };
        Ok(Json(out).into_response())
    };
    counted(&state, reply).await.unwrap_or_else(ApiError::into_response)
}
