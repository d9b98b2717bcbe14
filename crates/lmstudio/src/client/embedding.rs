//! Embedding models, as LM Studio's SDKs have them (`client.embedding_model(name).embed(...)`): a
//! loaded model used for its vectors. Any model file llama.cpp can embed with serves (a decoder
//! LLM is mean-pooled, as `llama-server --embeddings` does).

use super::{off_thread, Client, Llm, LlmInner};
use crate::types::error::{Error, Result};
use crate::types::result::ModelInfo;

/// A loaded model used for embeddings. Cloning is cheap.
#[derive(Clone)]
pub struct EmbeddingModel {
    llm: Llm,
}

/// The vectors of some inputs, in their order, and how many tokens the inputs were.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One L2-normalized vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all the inputs together.
    pub prompt_tokens: usize,
}

/// A reranker's scores of documents for a query, in the documents' order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// One score per document: higher is more relevant (the classifier's raw output, not a
    /// probability).
    pub scores: Vec<f32>,
    /// Tokens of all the query-document pairs together.
    pub prompt_tokens: usize,
}

impl Client {
    /// The model `query` names, for embeddings: a loaded instance, else the model loaded with the
    /// default [`crate::LoadConfig`] (LM Studio's `embedding_model`).
    ///
    /// The client's default context length is per prediction slot, for LLMs: an embedding model
    /// loaded here takes its trained context, as LM Studio loads one ([`Client::load`] with a
    /// context length sets another).
    pub fn embedding_model(&self, query: &str) -> Result<EmbeddingModel> {
        self.get_or_load(query, &self.embedding_load_config()).map(|(llm, _)| EmbeddingModel { llm })
    }

    /// The async form of [`Client::embedding_model`].
    pub async fn embedding_model_async(&self, query: &str) -> Result<EmbeddingModel> {
        let (client, query) = (self.clone(), query.to_owned());
        off_thread(move || client.embedding_model(&query)).await
    }

    /// The default load config less its context length, for embedding models (see
    /// [`Client::embedding_model`]).
    pub fn embedding_load_config(&self) -> crate::LoadConfig {
        crate::LoadConfig { context_length: None, ..self.default_load_config() }
    }
}

/// A loaded model's handle, used for its vectors.
impl From<Llm> for EmbeddingModel {
    fn from(llm: Llm) -> Self {
        Self { llm }
    }
}

impl EmbeddingModel {
    /// The instance's identifier.
    pub fn identifier(&self) -> &str {
        self.llm.identifier()
    }

    /// The model file and how it is loaded.
    pub fn info(&self) -> &ModelInfo {
        self.llm.info()
    }

    /// The vector of each of `inputs`, each evaluated alone (the same vector whatever it is sent
    /// with). An input longer than the model's context is an [`Error::InvalidRequest`] naming it.
    /// Over LM Studio's protocol (`Client::connect`), one `embedString` call per input.
    pub fn embed(&self, inputs: &[impl AsRef<str>]) -> Result<Embeddings> {
        match &self.llm.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => {
                let texts: Vec<&str> = inputs.iter().map(AsRef::as_ref).collect();
                let (vectors, prompt_tokens) = l.engine.embed(&texts)?;
                Ok(Embeddings { vectors, prompt_tokens })
            }
            // LM Studio's protocol embeds one string a call.
            LlmInner::Remote { remote, .. } => {
                let spec = self.llm.specifier();
                let vectors = inputs
                    .iter()
                    .map(|text| remote.embed_string(spec.clone(), text.as_ref()))
                    .collect::<Result<Vec<_>>>()?;
                let prompt_tokens =
                    inputs.iter().map(|t| self.llm.tokenize(t.as_ref()).map(|t| t.len())).sum::<Result<usize>>()?;
                Ok(Embeddings { vectors, prompt_tokens })
            }
        }
    }

    /// [`EmbeddingModel::embed`] of inputs given as token ids (OpenAI's token-array input), taken
    /// as they are: no BOS is added. An id outside the vocabulary is an [`Error::InvalidRequest`].
    pub fn embed_tokens(&self, inputs: &[Vec<i32>]) -> Result<Embeddings> {
        match &self.llm.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => {
                let (vectors, prompt_tokens) = l.engine.embed_tokens(inputs)?;
                Ok(Embeddings { vectors, prompt_tokens })
            }
            LlmInner::Remote { .. } => {
                let _ = inputs;
                Err(Error::Unsupported("embedding token ids over LM Studio's SDK protocol (it has none)".into()))
            }
        }
    }

    /// The async form of [`EmbeddingModel::embed_tokens`].
    pub async fn embed_tokens_async(&self, inputs: Vec<Vec<i32>>) -> Result<Embeddings> {
        let model = self.clone();
        off_thread(move || model.embed_tokens(&inputs)).await
    }

    /// A reranker's score of `query` with each of `documents` (a model whose file names rank
    /// pooling: BGE-reranker, Jina reranker...); an [`Error::InvalidRequest`] for a model that only
    /// embeds, or a pair longer than the context (naming it). Embedded backend only for now.
    pub fn rerank(&self, query: &str, documents: &[impl AsRef<str>]) -> Result<Ranking> {
        match &self.llm.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => {
                let documents: Vec<&str> = documents.iter().map(AsRef::as_ref).collect();
                let (scores, prompt_tokens) = l.engine.rerank(query, &documents)?;
                Ok(Ranking { scores, prompt_tokens })
            }
            LlmInner::Remote { .. } => {
                let _ = (query, documents);
                Err(Error::Unsupported("reranking over LM Studio's SDK protocol (it has none)".into()))
            }
        }
    }

    /// The async form of [`EmbeddingModel::rerank`].
    pub async fn rerank_async(&self, query: &str, documents: &[impl AsRef<str>]) -> Result<Ranking> {
        let (model, query) = (self.clone(), query.to_owned());
        let documents: Vec<String> = documents.iter().map(|d| d.as_ref().to_owned()).collect();
        off_thread(move || model.rerank(&query, &documents)).await
    }

    /// The async form of [`EmbeddingModel::embed`].
    pub async fn embed_async(&self, inputs: &[impl AsRef<str>]) -> Result<Embeddings> {
        let (model, inputs) = (self.clone(), inputs.iter().map(|i| i.as_ref().to_owned()).collect::<Vec<_>>());
        off_thread(move || model.embed(&inputs)).await
    }
}
