//! The models directory: finding GGUF files, reading their metadata without loading weights,
//! resolving a user's name for a model to exactly one file inside the directory, fetching the
//! default model, importing files and downloading from the hub.

mod default_model;
pub mod gguf;
#[cfg(feature = "hub")]
pub mod hub;
mod import;
mod models;

pub use default_model::{DEFAULT_MODEL_KEY, DEFAULT_MODEL_PATH};
pub use import::{ImportMode, LOCAL_PUBLISHER};
pub(crate) use models::dir_from_env;
pub use models::{default_prompt_cache_dir, model_info, ModelStore, StoredModel};
#[cfg(feature = "embedded")]
pub(crate) use models::{hex, sha256_hex};
