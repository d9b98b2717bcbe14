//! The host prompt cache on disk ([`crate::LoadConfig::prompt_cache_dir`]): written when the
//! instance unloads and, as prompts are made, when the engine has been idle a moment (what is
//! already on disk is not written again), read back when the same model file loads again, so a
//! warm prompt stays warm across a restart, even one the process did not live to see.
//!
//! The directory holds at most a byte budget ([`crate::LoadConfig::prompt_cache_disk_mib`]) and
//! [`MODELS_KEPT`] models: a model's least recently used prompts are left out past it, and the
//! folders of the models written or restored longest ago go first.
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
//! (`rules::Chunks::save_point`) and restored only there.

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
    /// Bytes the whole cache directory may hold.
    budget: u64,
}

impl DiskCache {
    /// The folder for the model file at `model` under `root`, run with flash attention or without
    /// (the KV cache's layout differs); `None` when the file cannot be read.
    pub(crate) fn for_model(root: &Path, model: &Path, flash_attention: bool, budget: u64) -> Option<Self> {
        let meta = std::fs::metadata(model).ok()?;
        let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        let mut hasher = Sha256::new();
        hasher.update(meta.len().to_le_bytes());
        hasher.update(modified.to_le_bytes());
        std::io::copy(&mut std::fs::File::open(model).ok()?.take(IDENTITY_BYTES), &mut hasher).ok()?;
        if flash_attention {
            hasher.update(b"flash attention");
        }
        Some(Self { dir: root.join(&hex(&hasher.finalize())[..24]), budget })
    }

    /// Fills `saved` from the folder, through sequence `scratch` (empty before and after).
    pub(super) fn restore(&self, ctx: &mut LlamaContext, saved: &mut PromptCache, scratch: i32, max_tokens: usize) {
        let Ok(manifest) = std::fs::read_to_string(self.dir.join("manifest")) else { return };
        // Used now: the last of the folders to go.
        if let Ok(file) = std::fs::File::options().append(true).open(self.dir.join("manifest")) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        let mut restored = 0;
        for line in manifest.lines() {
            let Some((name, sha)) = line.split_once(' ') else { continue };
            let file = self.dir.join(name);
            if name.contains(['/', '\\']) {
                continue;
            }
            if sha256_of(&file).as_deref() != Some(sha) {
                tracing::warn!(file = %file.display(), "prompt cache file ignored: not the bytes that were saved");
                // Gone, so that the next write puts the prompt's state there again.
                let _ = std::fs::remove_file(&file);
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

    /// Writes what `saved` holds, replacing what the folder held, through sequence `scratch`
    /// (emptied when it was used: returns whether it was); then drops the folders of
    /// models written longest ago.
    pub(super) fn persist(&self, ctx: &mut LlamaContext, saved: &PromptCache, scratch: i32) -> bool {
        let written = self.write(ctx, saved, scratch).unwrap_or_else(|e| {
            tracing::warn!(dir = %self.dir.display(), "prompt cache not saved: {e}");
            true
        });
        if let Some(root) = self.dir.parent() {
            evict_old_models(root, &self.dir, self.budget);
        }
        written
    }

    /// Makes the folder hold what `saved` holds, within the budget: a prompt already on disk (its
    /// file is named by its tokens) is not written again, files no longer listed are removed.
    /// Returns whether `scratch` was used to write a prompt (emptied then, written or not).
    fn write(&self, ctx: &mut LlamaContext, saved: &PromptCache, scratch: i32) -> std::io::Result<bool> {
        if saved.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return Ok(false);
        }
        std::fs::create_dir_all(&self.dir)?;
        let before = std::fs::read_to_string(self.dir.join("manifest")).unwrap_or_default();
        let on_disk: std::collections::HashMap<&str, &str> = before.lines().filter_map(|l| l.split_once(' ')).collect();
        // The most recently used prompts that fit the budget, listed least recently used first
        // (the order restore brings them back in).
        let entries: Vec<_> = saved.entries().collect();
        let mut bytes = 0u64;
        let fit = entries
            .iter()
            .rev()
            .take_while(|(_, state)| {
                bytes += state.byte_len() as u64;
                bytes <= self.budget
            })
            .count();
        let kept = entries.len() - fit;
        // Whether `scratch` was used (its cache then holds another prompt, or nothing).
        let (mut manifest, mut written, mut touched) = (String::new(), 0, false);
        for (tokens, state) in entries.into_iter().skip(kept) {
            let name = state_file_name(tokens);
            let file = self.dir.join(&name);
            if let Some(sha) = on_disk.get(name.as_str()).filter(|_| file.exists()) {
                manifest += &format!("{name} {sha}\n");
                continue;
            }
            touched = true;
            let _ = ctx.kv_cache_seq_rm(scratch, None, None);
            let ok =
                ctx.state_seq_set(state, scratch).is_ok() && ctx.state_seq_save_file(&file, scratch, tokens).is_ok();
            if let (true, Some(sha)) = (ok, sha256_of(&file)) {
                manifest += &format!("{name} {sha}\n");
                written += 1;
            }
        }
        if touched {
            let _ = ctx.kv_cache_seq_rm(scratch, None, None);
        }
        // The manifest last, through a temporary name: a crash mid-way leaves no manifest naming a
        // file that is not whole.
        let partial = self.dir.join("manifest.partial");
        std::fs::File::create(&partial)?.write_all(manifest.as_bytes())?;
        std::fs::rename(partial, self.dir.join("manifest"))?;
        let listed: std::collections::HashSet<&str> = manifest.lines().filter_map(|l| l.split(' ').next()).collect();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "manifest" && !listed.contains(name.as_str()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        tracing::info!(dir = %self.dir.display(), bytes = saved.bytes(), written, "saved the prompt cache to disk");
        Ok(touched)
    }
}

/// The file of a saved prompt: named by its tokens, so a prompt on disk is known again.
fn state_file_name(tokens: &[llama_cpp_2::token::LlamaToken]) -> String {
    let mut hasher = Sha256::new();
    for t in tokens {
        hasher.update(t.0.to_le_bytes());
    }
    format!("{}.state", &hex(&hasher.finalize())[..32])
}

/// Keeps at most [`MODELS_KEPT`] model folders and `budget` bytes under `root`: the folders whose
/// manifests were written or restored longest ago go first; `current` (just written) stays.
fn evict_old_models(root: &Path, current: &Path, budget: u64) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut folders: Vec<(bool, std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let used = e.path().join("manifest").metadata().and_then(|m| m.modified()).ok()?;
            let bytes =
                std::fs::read_dir(e.path()).ok()?.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
            Some((e.path() == current, used, bytes, e.path()))
        })
        .collect();
    // The current folder first (it stays), then from the most recently used on.
    folders.sort_by_key(|f| std::cmp::Reverse((f.0, f.1)));
    let mut total = 0u64;
    for (n, (is_current, _, bytes, dir)) in folders.into_iter().enumerate() {
        total += bytes;
        if !is_current && (n >= MODELS_KEPT || total > budget) {
            tracing::info!(dir = %dir.display(), bytes, "prompt cache of a model used longer ago removed (disk budget)");
            let _ = std::fs::remove_dir_all(dir);
            total -= bytes;
        }
    }
}

fn sha256_of(file: &Path) -> Option<String> {
    sha256_hex(&mut std::fs::File::open(file).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the budget, the folders used longest ago go; the one just written stays, however old.
    #[test]
    fn the_models_used_longest_ago_leave_the_budget_first() {
        let root = tempfile::tempdir().expect("tempdir");
        let now = std::time::SystemTime::now();
        let folder = |name: &str, minutes_ago: u64| {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).expect("creates");
            std::fs::write(dir.join("0.state"), vec![0u8; 1000]).expect("writes");
            let manifest = std::fs::File::create(dir.join("manifest")).expect("creates");
            manifest.set_modified(now - std::time::Duration::from_secs(60 * minutes_ago)).expect("dates");
            dir
        };
        let (oldest, middle, newest) = (folder("a", 30), folder("b", 20), folder("c", 10));
        evict_old_models(root.path(), &oldest, 2500);
        assert!(oldest.exists() && newest.exists(), "the current and the most recent stay");
        assert!(!middle.exists(), "over the budget: the least recently used other one goes");
        evict_old_models(root.path(), &newest, 100_000);
        assert!(oldest.exists() && newest.exists(), "within the budget nothing goes");
    }
}
