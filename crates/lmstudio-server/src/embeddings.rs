//! OpenAI's `POST /v1/embeddings` (and LM Studio's `POST /api/v0/embeddings`, the same): a string
//! or a list of strings in, a vector each out, as floats or as OpenAI's base64 of little-endian
//! f32s (the `openai` package's default). Inputs may be token ids (one list, or one per input),
//! taken as they are. `dimensions` is refused by name.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::openai::{counted, parse};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    model: Option<String>,
    input: Value,
    encoding_format: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct EmbeddingsOut {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: String,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct EmbeddingOut {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// Floats, or their little-endian bytes in base64.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// What to embed: texts, or OpenAI's token ids (one list, or a list per input).
enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<i32>>),
}

impl EmbeddingsRequest {
    /// The inputs to embed and whether vectors go out as base64, checked.
    fn decode(&self) -> Result<(Inputs, bool), ApiError> {
        for (name, value) in &self.other {
            // An end user's id changes nothing.
            if name == "user" {
                continue;
            }
            return Err(ApiError::bad_request(format!("unsupported field `{name}`: {value}")));
        }
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => return Err(ApiError::bad_request(format!("unsupported `encoding_format`: {other}"))),
        };
        let ids = |v: &Value| -> Option<Vec<i32>> {
            v.as_array()?.iter().map(|x| x.as_i64().and_then(|x| i32::try_from(x).ok())).collect()
        };
        let inputs = match &self.input {
            Value::String(s) => Inputs::Texts(vec![s.clone()]),
            Value::Array(items) if items.is_empty() => return Err(ApiError::bad_request("`input` is empty")),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                Inputs::Texts(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            }
            Value::Array(items) if items.iter().all(Value::is_number) => Inputs::Tokens(vec![
                ids(&self.input).ok_or_else(|| ApiError::bad_request("`input`: token ids are integers"))?
            ]),
            Value::Array(items) if items.iter().all(Value::is_array) => Inputs::Tokens(
                items
                    .iter()
                    .map(ids)
                    .collect::<Option<_>>()
                    .ok_or_else(|| ApiError::bad_request("`input`: token ids are integers"))?,
            ),
            _ => return Err(ApiError::bad_request("`input` is a string, strings, token ids, or lists of token ids")),
        };
        Ok((inputs, base64))
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Response {
    let reply = async {
        let req = parse(body)?;
        let (inputs, base64) = req.decode()?;
        let model = state.embedding_model(req.model.as_deref()).await?;
        let out = match inputs {
            Inputs::Texts(texts) => model.embed_async(&texts).await?,
            Inputs::Tokens(ids) => model.embed_tokens_async(ids).await?,
        };
        let data = out
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    Vector::Floats(v)
                };
                EmbeddingOut { object: "embedding", index, embedding }
            })
            .collect();
        let usage = Usage { prompt_tokens: out.prompt_tokens, total_tokens: out.prompt_tokens };
        Ok(Json(EmbeddingsOut { object: "list", data, model: model.identifier().to_owned(), usage }).into_response())
    };
    counted(&state, reply).await.unwrap_or_else(ApiError::into_response)
}
