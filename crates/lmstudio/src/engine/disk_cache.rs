//! The host prompt cache on disk ([`crate::LoadConfig::prompt_cache_dir`]): written when the
//! instance unloads, read back when the same model file loads again, so a warm prompt stays warm
//! across a restart.
//!
//! Each model file has a folder of its own, named by a hash of its size, modification time and
//! first 8 MiB (the header): a file replaced under the same name is another model. Each saved
//! prefix is one llama.cpp sequence-state file; `manifest` lists them with their SHA-256, and a
//! file whose bytes are not those (cut, corrupted, written by something else) is ignored with a
//! warning before llama.cpp reads it. llama.cpp's own reader then refuses a state of another
//! shape (another context size). Restored states are the bytes that were saved, so results are
//! those of a cold run (the prefix-cache invariance, `worker.rs`).
//!
//! A sequence state of a sliding-window model (Gemma 3) keeps only the window's last cells of its
//! window layers, so such a prompt is saved where the same prompt sent again continues from
//! (`rules::save_point`) and restored only there.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use llama_cpp_2::context::LlamaContext;
use sha2::{Digest, Sha256};

use super::prompt_cache::PromptCache;
use crate::store::{hex, sha256_hex};

/// Models whose caches are kept on disk, at most (the least recently written go first).
const MODELS_KEPT: usize = 8;
/// Bytes of a model file hashed for its identity.
const IDENTITY_BYTES: u64 = 8 << 20;

/// A model's folder in the cache directory.
#[derive(Debug, Clone)]
pub(crate) struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// The folder for the model file at `model` under `root`; `None` when the file cannot be read.
    pub(crate) fn for_model(root: &Path, model: &Path) -> Option<Self> {
        let meta = std::fs::metadata(model).ok()?;
        let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        let mut hasher = Sha256::new();
        hasher.update(meta.len().to_le_bytes());
        hasher.update(modified.to_le_bytes());
        std::io::copy(&mut std::fs::File::open(model).ok()?.take(IDENTITY_BYTES), &mut hasher).ok()?;
        Some(Self { dir: root.join(&hex(&hasher.finalize())[..24]) })
    }

    /// Fills `saved` from the folder, through sequence `scratch` (empty before and after).
    pub(super) fn restore(&self, ctx: &mut LlamaContext, saved: &mut PromptCache, scratch: i32, max_tokens: usize) {
        let Ok(manifest) = std::fs::read_to_string(self.dir.join("manifest")) else { return };
        let mut restored = 0;
        for line in manifest.lines() {
            let Some((name, sha)) = line.split_once(' ') else { continue };
            let file = self.dir.join(name);
            if name.contains(['/', '\\']) || sha256_of(&file).as_deref() != Some(sha) {
                tracing::warn!(file = %file.display(), "prompt cache file ignored: not the bytes that were saved");
                continue;
            }
            let _ = ctx.kv_cache_seq_rm(scratch, None, None);
            match ctx.state_seq_load_file(&file, scratch, max_tokens) {
                Ok((tokens, _)) if !tokens.is_empty() => {
                    saved.save(ctx, scratch, &tokens);
                    restored += 1;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(file = %file.display(), "prompt cache file ignored: {e}"),
            }
        }
        let _ = ctx.kv_cache_seq_rm(scratch, None, None);
        if restored > 0 {
            tracing::info!(prompts = restored, bytes = saved.bytes(), "restored the prompt cache from disk");
        }
    }

    /// Writes what `saved` holds, through sequence `scratch` (its contents are lost), replacing
    /// what the folder held; then drops the folders of models written longest ago.
    pub(super) fn persist(&self, ctx: &mut LlamaContext, saved: &PromptCache, scratch: i32) {
        if let Err(e) = self.write(ctx, saved, scratch) {
            tracing::warn!(dir = %self.dir.display(), "prompt cache not saved: {e}");
        }
        if let Some(root) = self.dir.parent() {
            evict_old_models(root);
        }
    }

    fn write(&self, ctx: &mut LlamaContext, saved: &PromptCache, scratch: i32) -> std::io::Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        if saved.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut manifest = String::new();
        for (n, (tokens, state)) in saved.entries().enumerate() {
            let _ = ctx.kv_cache_seq_rm(scratch, None, None);
            let name = format!("{n}.state");
            let file = self.dir.join(&name);
            let written =
                ctx.state_seq_set(state, scratch).is_ok() && ctx.state_seq_save_file(&file, scratch, tokens).is_ok();
            if let (true, Some(sha)) = (written, sha256_of(&file)) {
                manifest += &format!("{name} {sha}\n");
            }
        }
        let _ = ctx.kv_cache_seq_rm(scratch, None, None);
        // The manifest last, through a temporary name: a crash mid-way leaves no manifest naming a
        // file that is not whole.
        let partial = self.dir.join("manifest.partial");
        std::fs::File::create(&partial)?.write_all(manifest.as_bytes())?;
        std::fs::rename(partial, self.dir.join("manifest"))?;
        tracing::info!(dir = %self.dir.display(), bytes = saved.bytes(), "saved the prompt cache to disk");
        Ok(())
    }
}

/// Keeps the [`MODELS_KEPT`] model folders whose manifests were written last.
fn evict_old_models(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut folders: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let written = e.path().join("manifest").metadata().and_then(|m| m.modified()).ok()?;
            Some((written, e.path()))
        })
        .collect();
    folders.sort();
    let excess = folders.len().saturating_sub(MODELS_KEPT);
    for (_, dir) in folders.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn sha256_of(file: &Path) -> Option<String> {
    sha256_hex(&mut std::fs::File::open(file).ok()?).ok()
}
