//! llama-server's `POST /tokenize` and `POST /detokenize`, with its field names, for the model a
//! request names (else any loaded model, else the default model). Any other field is refused.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::openai::parse;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenizeRequest {
    model: Option<String>,
    content: String,
    /// The model's BOS (and EOS) around the text; default false, as llama-server's.
    #[serde(default)]
    add_special: bool,
    /// Special tokens' texts read as those tokens; default true.
    #[serde(default = "yes")]
    parse_special: bool,
    /// Each token with its text.
    #[serde(default)]
    with_pieces: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<i32>,
}

/// `/tokenize`'s answer.
#[derive(Debug, Serialize)]
struct Tokenized {
    tokens: Vec<TokenOut>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum TokenOut {
    Id(i32),
    WithPiece { id: i32, piece: Piece },
}

/// A token's text: a string, or its bytes where they are not whole UTF-8 (as llama-server writes).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Piece {
    Text(String),
    Bytes(Vec<u8>),
}

/// `/detokenize`'s answer.
#[derive(Debug, Serialize)]
struct Detokenized {
    content: String,
}

/// `POST /tokenize`: `{"tokens": [ids]}`, or `[{"id", "piece"}]` with `with_pieces`.
pub(crate) async fn tokenize(
    State(state): State<AppState>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Response {
    let reply = async {
        let req = parse(body)?;
        let llm = state.llm(req.model.as_deref()).await?;
        let ids = llm.tokenize_with_async(&req.content, req.add_special, req.parse_special).await?;
        let tokens = if req.with_pieces {
            let pieces = llm.token_pieces_async(&ids).await?;
            ids.iter()
                .zip(pieces)
                .map(|(&id, bytes)| {
                    let piece = String::from_utf8(bytes).map_or_else(|e| Piece::Bytes(e.into_bytes()), Piece::Text);
                    TokenOut::WithPiece { id, piece }
                })
                .collect()
        } else {
            ids.into_iter().map(TokenOut::Id).collect()
        };
        Ok::<_, ApiError>(Json(Tokenized { tokens }).into_response())
    };
    reply.await.unwrap_or_else(ApiError::into_response)
}

/// `POST /detokenize`: `{"content": text}`.
pub(crate) async fn detokenize(
    State(state): State<AppState>,
    body: Result<Json<DetokenizeRequest>, JsonRejection>,
) -> Response {
    let reply = async {
        let req = parse(body)?;
        let llm = state.llm(req.model.as_deref()).await?;
        let content = llm.detokenize_async(&req.tokens).await?;
        Ok::<_, ApiError>(Json(Detokenized { content }).into_response())
    };
    reply.await.unwrap_or_else(ApiError::into_response)
}
