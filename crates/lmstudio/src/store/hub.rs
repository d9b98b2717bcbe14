//! `lms get publisher/repo[@QUANT]`: a GGUF from a Hugging Face repository. The file list comes
//! from the hub's API (`$HF_ENDPOINT` overrides the host; `$HF_TOKEN` is sent when set), the
//! quantization picks the file (Q4_K_M by default, as llama.cpp's `-hf`; every part of a split
//! file), each part downloads to `<name>.partial` (resumed with an HTTP Range request), its
//! SHA-256 is checked against the one the hub publishes, and only then is it renamed into place
//! at `<publisher>/<repo>/<file>`.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::models::{ModelStore, StoredModel};
use crate::types::error::{Error, Result};

/// The quantization picked when the request names none.
pub const DEFAULT_QUANT: &str = "Q4_K_M";

/// What `lms get` names: a repository and maybe a quantization, or a file's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRequest {
    /// `publisher/repo`.
    pub repo: String,
    /// A quantization tag (`Q8_0`), or a file name in the repository.
    pub pick: Option<String>,
}

impl HubRequest {
    /// `publisher/repo`, `publisher/repo@Q8_0`, or `https://<host>/publisher/repo[/resolve/<rev>/<file>]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig(format!("{spec:?} is not publisher/repo[@QUANT] or a Hugging Face URL"));
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix("https://").or_else(|| spec.strip_prefix("http://")) {
            let mut parts = rest.split('/').skip(1);
            let (publisher, repo) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
            let file = match (parts.next(), parts.next(), parts.next()) {
                (Some("resolve" | "blob"), Some(_rev), Some(file)) => {
                    Some(file.split('?').next().unwrap_or(file).to_owned())
                }
                (None, ..) => None,
                _ => return Err(bad()),
            };
            return Self::checked(format!("{publisher}/{repo}"), file).ok_or_else(bad);
        }
        let (repo, pick) = match spec.split_once('@') {
            Some((repo, quant)) => (repo, Some(quant.to_owned())),
            None => (spec, None),
        };
        Self::checked(repo.to_owned(), pick).ok_or_else(bad)
    }

    fn checked(repo: String, pick: Option<String>) -> Option<Self> {
        let mut parts = repo.split('/');
        let ok = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']);
        let fine = matches!((parts.next(), parts.next(), parts.next()), (Some(p), Some(r), None) if ok(p) && ok(r));
        (fine && pick.as_deref().is_none_or(|p| !p.is_empty() && ok(p))).then_some(Self { repo, pick })
    }
}

/// One file of the repository, as the hub's tree API lists it.
#[derive(Debug, Clone, Deserialize)]
struct HubFile {
    path: String,
    #[serde(default)]
    size: u64,
    lfs: Option<Lfs>,
}

#[derive(Debug, Clone, Deserialize)]
struct Lfs {
    /// The SHA-256 of the content.
    oid: String,
    size: u64,
}

/// What a download reports as it goes.
pub enum Progress<'a> {
    /// A file starts.
    File {
        /// Its name.
        name: &'a str,
        /// Its size in bytes.
        size: u64,
        /// Bytes already there from an earlier, cut download.
        resumed_from: u64,
    },
    /// Bytes of the current file so far.
    Bytes(u64),
    /// Checking what arrived.
    Verifying(&'a str),
}

/// What a download of a request takes: its files, as the hub lists them, and where they go.
#[derive(Debug, Clone)]
pub struct HubPlan {
    endpoint: String,
    repo: String,
    files: Vec<(HubFile, PathBuf)>,
}

impl HubPlan {
    /// Bytes of every file.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(f, _)| f.size()).sum()
    }

    /// Bytes of the files in place already.
    pub fn bytes_in_place(&self) -> u64 {
        self.files.iter().filter(|(f, target)| in_place(f, target)).map(|(f, _)| f.size()).sum()
    }

    /// Whether every file is in place already (nothing to fetch).
    pub fn complete(&self) -> bool {
        self.files.iter().all(|(f, target)| in_place(f, target))
    }

    /// Where the model's entry is (the first part of a split file).
    pub fn first_file(&self) -> &Path {
        &self.files[0].1
    }
}

impl HubFile {
    fn size(&self) -> u64 {
        self.lfs.as_ref().map_or(self.size, |l| l.size)
    }
}

fn in_place(file: &HubFile, target: &Path) -> bool {
    target.metadata().is_ok_and(|m| m.len() == file.size())
}

/// The hub's host (`$HF_ENDPOINT`, else huggingface.co) and a GET with `$HF_TOKEN` when set.
fn hub() -> (String, impl Fn(&str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody>) {
    let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
    let endpoint = endpoint.as_deref().unwrap_or("https://huggingface.co").trim_end_matches('/').to_owned();
    let agent = ureq::Agent::new_with_defaults();
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let get = move |url: &str| {
        let mut req = agent.get(url);
        if let Some(t) = &token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req
    };
    (endpoint, get)
}

impl ModelStore {
    /// Downloads what `request` names into `<publisher>/<repo>/`; returns the model's entry (its
    /// first part for a split file). Files already in place are not fetched again.
    pub fn download_from_hub(
        &self,
        request: &HubRequest,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<StoredModel> {
        let plan = self.plan_hub_download(request)?;
        self.fetch_hub_plan(&plan, progress)
    }

    /// Asks the hub which files `request` names (its file list; nothing is downloaded).
    pub fn plan_hub_download(&self, request: &HubRequest) -> Result<HubPlan> {
        let (endpoint, get) = hub();
        let tree = format!("{endpoint}/api/models/{}/tree/main?recursive=true", request.repo);
        let files: Vec<HubFile> = get(&tree)
            .call()
            .map_err(|e| download_error(&tree, e))?
            .body_mut()
            .read_json()
            .map_err(|e| Error::Download(format!("{tree}: not the hub's file list: {e}")))?;
        let dir = self.root().join(&request.repo);
        let files = pick(&files, request)?
            .into_iter()
            .map(|f| {
                let target = dir.join(f.path.rsplit('/').next().unwrap_or(&f.path));
                (f, target)
            })
            .collect();
        Ok(HubPlan { endpoint, repo: request.repo.clone(), files })
    }

    /// Downloads the files of `plan` that are not in place; returns the model's entry.
    pub fn fetch_hub_plan(&self, plan: &HubPlan, progress: &mut dyn FnMut(Progress<'_>)) -> Result<StoredModel> {
        let (_, get) = hub();
        std::fs::create_dir_all(self.root().join(&plan.repo))?;
        for (file, target) in &plan.files {
            if !in_place(file, target) {
                let url = format!("{}/{}/resolve/main/{}", plan.endpoint, plan.repo, file.path);
                fetch(&url, &get, file, target, progress)?;
            }
        }
        let stored = self.describe(plan.first_file().to_owned());
        stored.valid_info()?;
        Ok(stored)
    }
}

/// The GGUF files the request names: the quantization's (every part of a split file), or the one
/// file named.
fn pick(files: &[HubFile], request: &HubRequest) -> Result<Vec<HubFile>> {
    let ggufs: Vec<&HubFile> = files.iter().filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf")).collect();
    if ggufs.is_empty() {
        return Err(Error::Download(format!("{} has no GGUF file", request.repo)));
    }
    let wanted = request.pick.clone().unwrap_or_else(|| DEFAULT_QUANT.into()).to_ascii_lowercase();
    // A file named exactly (its path, or its name in its folder), else a quantization tag.
    let named = |f: &&HubFile| {
        f.path.eq_ignore_ascii_case(&wanted)
            || f.path.rsplit('/').next().is_some_and(|n| n.eq_ignore_ascii_case(&wanted))
    };
    let by_name: Vec<&HubFile> = ggufs.iter().copied().filter(named).collect();
    let mut chosen: Vec<&HubFile> = if by_name.len() == 1 {
        by_name
    } else {
        let tagged =
            |f: &&HubFile| contains_tag(&f.path.rsplit('/').next().unwrap_or(&f.path).to_ascii_lowercase(), &wanted);
        ggufs.iter().copied().filter(tagged).collect()
    };
    if chosen.is_empty() && request.pick.is_none() && ggufs.len() == 1 {
        chosen = ggufs.clone();
    }
    // A split file's parts: one group only.
    if let Some(first) = chosen.first() {
        let group = split_base(&first.path).to_owned();
        chosen.retain(|f| split_base(&f.path) == group);
    }
    if chosen.is_empty() {
        let names: Vec<&str> = ggufs.iter().map(|f| f.path.as_str()).collect();
        return Err(Error::Download(format!("{} has no {wanted} file; it has: {}", request.repo, names.join(", "))));
    }
    chosen.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(chosen.into_iter().cloned().collect())
}

/// Whether `name` carries the quantization `tag` as a whole word (`q4_k_m` in `model-q4_k_m.gguf`,
/// not in `model-q4_k_m_l.gguf`).
fn contains_tag(name: &str, tag: &str) -> bool {
    name.match_indices(tag).any(|(i, _)| {
        let before = name[..i].chars().last();
        let after = name[i + tag.len()..].chars().next();
        before.is_none_or(|c| !c.is_ascii_alphanumeric()) && after.is_none_or(|c| c == '.' || c == '-')
    })
}

/// `m-Q4_K_M-00001-of-00003.gguf` and its other parts share `m-Q4_K_M`.
fn split_base(path: &str) -> &str {
    let stem = path.strip_suffix(".gguf").unwrap_or(path);
    match stem.rsplit_once("-of-").and_then(|(head, _)| head.rsplit_once('-')) {
        Some((base, n)) if n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => stem,
    }
}

/// Downloads one file to `<target>.partial`, resuming what is there, checks its size and SHA-256,
/// then renames it to `target`.
fn fetch(
    url: &str,
    get: &dyn Fn(&str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    file: &HubFile,
    target: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<()> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let size = file.size();
    let partial = PathBuf::from(format!("{}.partial", target.display()));
    let mut out = OpenOptions::new().create(true).read(true).append(true).open(&partial)?;
    let mut have = out.metadata()?.len();
    if have > size {
        out.set_len(0)?;
        have = 0;
    }
    progress(Progress::File { name: &name, size, resumed_from: have });
    if have < size {
        let mut req = get(url);
        if have > 0 {
            req = req.header("Range", &format!("bytes={have}-"));
        }
        let mut response = req.call().map_err(|e| download_error(url, e))?;
        if have > 0 && response.status() != 206 {
            // The server sent the whole file: start over.
            out.set_len(0)?;
            have = 0;
        }
        let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                // What arrived stays in the partial file: the next `lms get` resumes there.
                Err(e) => {
                    return Err(Error::Download(format!(
                        "{url}: cut after {have} of {size} bytes ({e}); run it again to resume"
                    )))
                }
            };
            out.write_all(&buf[..n])?;
            have += n as u64;
            progress(Progress::Bytes(have));
        }
        out.sync_all()?;
    }
    if have != size {
        return Err(Error::Download(format!(
            "{url}: {have} bytes arrived, the hub lists {size}; run it again to resume"
        )));
    }
    progress(Progress::Verifying(&name));
    if let Some(lfs) = &file.lfs {
        out.rewind()?;
        let got = super::models::sha256_hex(&mut out)?;
        if !got.eq_ignore_ascii_case(&lfs.oid) {
            drop(out);
            std::fs::remove_file(&partial)?;
            return Err(Error::Download(format!(
                "{name}: SHA-256 {got} is not the hub's {}; the download was removed",
                lfs.oid
            )));
        }
    }
    std::fs::rename(&partial, target)?;
    Ok(())
}

fn download_error(url: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::StatusCode(404) => Error::Download(format!("{url}: not found (404): no such repository or file")),
        ureq::Error::StatusCode(401 | 403) => {
            Error::Download(format!("{url}: refused ({e}); a gated or private repository needs HF_TOKEN"))
        }
        e => Error::Download(format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let r = HubRequest::parse("lmstudio-community/Qwen2.5-7B-Instruct-GGUF@Q8_0").expect("parses");
        assert_eq!((r.repo.as_str(), r.pick.as_deref()), ("lmstudio-community/Qwen2.5-7B-Instruct-GGUF", Some("Q8_0")));
        let url =
            HubRequest::parse("https://huggingface.co/a/b/resolve/main/m-Q4_K_M.gguf?download=true").expect("parses");
        assert_eq!((url.repo.as_str(), url.pick.as_deref()), ("a/b", Some("m-Q4_K_M.gguf")));
        for bad in ["a", "a/b/c", "../b", "a/b@", "https://huggingface.co/a"] {
            assert!(HubRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_the_quantization_and_every_part() {
        let files: Vec<HubFile> = [
            "m-Q4_K_M.gguf",
            "m-Q4_K_M_L.gguf",
            "m-Q8_0-00001-of-00002.gguf",
            "m-Q8_0-00002-of-00002.gguf",
            "README.md",
        ]
        .iter()
        .map(|p| HubFile { path: (*p).into(), size: 1, lfs: None })
        .collect();
        let names = |r: &HubRequest| pick(&files, r).map(|v| v.into_iter().map(|f| f.path).collect::<Vec<_>>());
        let default = HubRequest { repo: "a/b".into(), pick: None };
        assert_eq!(names(&default).expect("picks"), ["m-Q4_K_M.gguf"]);
        let q8 = HubRequest { repo: "a/b".into(), pick: Some("q8_0".into()) };
        assert_eq!(names(&q8).expect("picks"), ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf"]);
        let exact = HubRequest { repo: "a/b".into(), pick: Some("M-Q4_K_M_L.gguf".into()) };
        assert_eq!(names(&exact).expect("picks"), ["m-Q4_K_M_L.gguf"]);
        let none = HubRequest { repo: "a/b".into(), pick: Some("Q2_K".into()) };
        assert!(matches!(names(&none), Err(Error::Download(m)) if m.contains("m-Q4_K_M.gguf")));
    }
}
