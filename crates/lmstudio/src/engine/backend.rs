//! llama.cpp's process-wide backend, and the shape of the contexts made on it: the leaf that the
//! engine's loader, its thread and the draft thread share.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;

use super::rules::BATCH;
use crate::types::error::{Error, Result};

/// The process-wide llama.cpp backend; `LlamaBackend::init` may run only once per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            super::ffi::report_aborts();
            #[cfg(feature = "dynamic-backends")]
            load_backends();
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Engine(format!("llama.cpp backend: {e}")))
}

/// With backends as loadable libraries (feature `dynamic-backends`): those in
/// `$LMS_BACKENDS_DIR`, else beside the executable when it has them (a dist layout), else in the
/// build's own folder. One that fails to load is logged (through `tracing`) with ggml's reason.
#[cfg(feature = "dynamic-backends")]
fn load_backends() {
    let beside_exe = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)).filter(|dir| {
        std::fs::read_dir(dir)
            .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libggml-cpu"))))
    });
    match std::env::var_os("LMS_BACKENDS_DIR").map(std::path::PathBuf::from).or(beside_exe) {
        Some(dir) if dir.to_str().is_some() => {
            tracing::info!(dir = %dir.display(), "loading llama.cpp backends");
            llama_cpp_2::llama_backend::load_backends_from_path(&dir);
        }
        _ => llama_cpp_2::llama_backend::load_backends(),
    }
}

/// How a context attends: the load's settings, which a draft model's context takes as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attention {
    /// llama.cpp's flash attention (LM Studio's `flashAttention`).
    pub flash: bool,
    /// The KV cache of offloaded layers on the GPU.
    pub offload_kv_cache: bool,
}

/// A context of `parallel` sequences of `context_length` tokens each (not unified), evaluated in
/// batches of [`BATCH`] on `threads` threads, attending as `attention` says: the main model's and a
/// draft model's shape.
pub(crate) fn context_params(
    context_length: u32,
    parallel: u32,
    threads: u32,
    attention: Attention,
) -> LlamaContextParams {
    let flash = if attention.flash {
        llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
    } else {
        llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
    };
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_length.saturating_mul(parallel)))
        .with_n_batch(BATCH)
        .with_n_ubatch(BATCH)
        .with_n_seq_max(parallel)
        .with_kv_unified(false)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
        .with_flash_attention_policy(flash)
        .with_offload_kqv(attention.offload_kv_cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load's attention settings reach the context made from them (the draft model's too:
    /// llama.cpp's own default, flash attention by the backend, is never left in).
    #[test]
    fn a_context_attends_as_the_load_says() {
        for flash in [false, true] {
            for offload_kv_cache in [false, true] {
                let params = context_params(256, 2, 2, Attention { flash, offload_kv_cache });
                let wanted = if flash {
                    llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
                } else {
                    llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
                };
                assert_eq!(params.flash_attention_policy(), wanted);
                assert_eq!(params.offload_kqv(), offload_kv_cache);
                assert_eq!(params.n_ctx(), NonZeroU32::new(512));
            }
        }
    }
}
