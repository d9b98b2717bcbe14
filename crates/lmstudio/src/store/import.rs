//! `lms import`: a GGUF file from anywhere placed in the store's layout, checked before anything
//! is placed (header, tensor table, architecture: what loading would refuse, refused here).

use std::path::{Path, PathBuf};

use super::gguf::GgufHeader;
use super::models::{key_from_file_name, ModelStore, StoredModel};
use crate::types::error::{Error, Result};

/// How [`ModelStore::import`] places the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Copy it (through a temporary name, so that a half-copied file never shows).
    Copy,
    /// Move it (a copy and a removal across file systems).
    Move,
    /// A hard link: no second copy on disk (same file system only).
    HardLink,
    /// A symbolic link to the file where it is (by its absolute path): nothing copied, and the
    /// model is gone from the store if the file moves (Unix only).
    Symlink,
}

/// The publisher folder of imports that name none.
pub const LOCAL_PUBLISHER: &str = "local";

impl ModelStore {
    /// Places the GGUF `file` at `<publisher>/<model>/<file name>` (the model folder is the file
    /// name without its quantization tag) and returns its entry, whose key names it from now on.
    /// An invalid file, a publisher that is not one plain folder name, or a destination that
    /// exists are refused before anything is written.
    pub fn import(&self, file: &Path, publisher: Option<&str>, mode: ImportMode) -> Result<StoredModel> {
        let invalid = |reason: String| Error::InvalidModelFile { path: file.to_owned(), reason };
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.to_ascii_lowercase().ends_with(".gguf") {
            return Err(invalid("not a .gguf file".into()));
        }
        GgufHeader::read(file).map_err(|e| invalid(e.to_string()))?;
        let publisher = publisher.unwrap_or(LOCAL_PUBLISHER);
        if !plain_folder_name(publisher) {
            return Err(Error::InvalidConfig(format!("publisher {publisher:?} must be one folder name")));
        }
        let folder = model_folder(&name);
        let dest = self.root().join(publisher).join(&folder).join(&name);
        if dest.exists() {
            let what = format!("{} is already in the models directory", dest.display());
            return Err(Error::Io(std::sync::Arc::new(std::io::Error::new(std::io::ErrorKind::AlreadyExists, what))));
        }
        std::fs::create_dir_all(dest.parent().unwrap_or(self.root()))?;
        place(file, &dest, mode)?;
        let stored = self.describe(dest);
        stored.valid_info()?;
        Ok(stored)
    }
}

/// `Gemma-3-270M-Q4_K_M.gguf` goes to the folder `Gemma-3-270M-GGUF`.
fn model_folder(file_name: &str) -> String {
    let stem = &file_name[..file_name.len() - ".gguf".len()];
    let base = &stem[..key_from_file_name(Path::new(file_name)).len().min(stem.len())];
    format!("{}-GGUF", if base.is_empty() { stem } else { base })
}

fn plain_folder_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

fn place(file: &Path, dest: &Path, mode: ImportMode) -> Result<()> {
    match mode {
        ImportMode::HardLink => std::fs::hard_link(file, dest)?,
        #[cfg(unix)]
        ImportMode::Symlink => std::os::unix::fs::symlink(file.canonicalize()?, dest)?,
        #[cfg(not(unix))]
        ImportMode::Symlink => return Err(Error::InvalidConfig("symbolic links need a Unix system".into())),
        ImportMode::Move if std::fs::rename(file, dest).is_ok() => {}
        ImportMode::Copy | ImportMode::Move => {
            let partial = PathBuf::from(format!("{}.partial", dest.display()));
            let copied = std::fs::copy(file, &partial).and_then(|_| std::fs::rename(&partial, dest));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&partial);
                return Err(e.into());
            }
            if mode == ImportMode::Move {
                std::fs::remove_file(file)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_drop_the_quantization_tag() {
        assert_eq!(model_folder("Gemma-3-270M-Q4_K_M.gguf"), "Gemma-3-270M-GGUF");
        assert_eq!(model_folder("tiny.gguf"), "tiny-GGUF");
        assert!(!plain_folder_name("../etc") && !plain_folder_name("a/b") && plain_folder_name("me"));
    }
}
