//! LM Studio's REST API v1 downloads: `POST /api/v1/models/download` starts a job that fetches a
//! model from the Hugging Face hub into the server's models directory (resumed, SHA-256 checked:
//! `lmstudio::store::hub`), `GET /api/v1/models/download/status/{job_id}` says how it goes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lmstudio::store::hub::{HubPlan, Progress};
use serde::Serialize;

use crate::sync::lock;

/// The server's download jobs, by id; finished ones stay listed.
#[derive(Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    next: AtomicU64,
}

pub(crate) struct Job {
    id: String,
    /// The model's first file: one job per file at a time.
    target: PathBuf,
    total_bytes: u64,
    started_at: SystemTime,
    started: Instant,
    /// Bytes in place when the job began (earlier files, a partial file resumed).
    bytes_at_start: AtomicU64,
    state: Mutex<JobState>,
}

#[derive(Clone)]
struct JobState {
    downloaded_bytes: u64,
    outcome: Option<Result<SystemTime, String>>,
}

/// What `GET /api/v1/models/download/status/{id}` says of a job (and `POST .../download` of the
/// job it started), with LM Studio's field names.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    job_id: String,
    total_size_bytes: u64,
    downloaded_bytes: u64,
    started_at: String,
    /// `downloading`, `completed` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_completion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Job {
    /// How it goes.
    pub(crate) fn status(&self) -> Status {
        let state = lock(&self.state).clone();
        let mut status = Status {
            job_id: self.id.clone(),
            total_size_bytes: self.total_bytes,
            downloaded_bytes: state.downloaded_bytes,
            started_at: iso8601(self.started_at),
            status: "downloading",
            bytes_per_second: None,
            estimated_completion: None,
            completed_at: None,
            error: None,
        };
        match state.outcome {
            None => {
                let fetched = state.downloaded_bytes.saturating_sub(self.bytes_at_start.load(Ordering::SeqCst));
                let rate = fetched as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
                status.bytes_per_second = Some(rate);
                if rate > 0.0 {
                    let left = self.total_bytes.saturating_sub(state.downloaded_bytes) as f64 / rate;
                    let eta = SystemTime::now() + std::time::Duration::from_secs_f64(left.min(1e9));
                    status.estimated_completion = Some(iso8601(eta));
                }
            }
            Some(Ok(at)) => {
                status.status = "completed";
                status.completed_at = Some(iso8601(at));
            }
            Some(Err(why)) => {
                status.status = "failed";
                status.error = Some(why);
            }
        }
        status
    }

    fn running(&self) -> bool {
        lock(&self.state).outcome.is_none()
    }
}

/// The body of `POST /api/v1/models/download`.
impl Jobs {
    /// The job of that id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.jobs).get(id).cloned()
    }

    /// A job fetching `plan` on a thread of its own; the running one if that file is already
    /// being fetched (two writers of one partial file would corrupt it).
    pub(crate) fn start(&self, store: lmstudio::ModelStore, plan: HubPlan) -> Arc<Job> {
        let mut jobs = lock(&self.jobs);
        let target = plan.first_file().to_owned();
        if let Some(running) = jobs.values().find(|j| j.target == target && j.running()) {
            return Arc::clone(running);
        }
        let in_place = plan.bytes_in_place();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let job = Arc::new(Job {
            id: format!("job_{n:04x}{nanos:08x}"),
            target,
            total_bytes: plan.total_bytes(),
            started_at: SystemTime::now(),
            started: Instant::now(),
            bytes_at_start: AtomicU64::new(in_place),
            state: Mutex::new(JobState { downloaded_bytes: in_place, outcome: None }),
        });
        jobs.insert(job.id.clone(), Arc::clone(&job));
        let worker = Arc::clone(&job);
        let spawned = std::thread::Builder::new().name("lms-download".into()).spawn(move || {
            let outcome = fetch(&store, &plan, in_place, &worker);
            if let Err(e) = &outcome {
                tracing::warn!(job = worker.id, "download failed: {e}");
            }
            lock(&worker.state).outcome = Some(outcome.map(|_| SystemTime::now()).map_err(|e| e.to_string()));
        });
        if let Err(e) = spawned {
            lock(&job.state).outcome = Some(Err(format!("no download thread: {e}")));
        }
        job
    }
}

/// Fetches `plan`, counting its bytes into `job` as they arrive (`in_place`: those of the files
/// already there, which are not fetched).
fn fetch(store: &lmstudio::ModelStore, plan: &HubPlan, in_place: u64, job: &Job) -> lmstudio::Result<()> {
    // Bytes of the files before the current one (those in place count from the start).
    let mut before = in_place;
    let mut current = 0u64;
    store.fetch_hub_plan(plan, &mut |p| match p {
        Progress::File { size, resumed_from, .. } => {
            before += current;
            current = size;
            if resumed_from > 0 {
                job.bytes_at_start.fetch_add(resumed_from, Ordering::SeqCst);
            }
            lock(&job.state).downloaded_bytes = before + resumed_from;
        }
        Progress::Bytes(n) => lock(&job.state).downloaded_bytes = before + n,
        Progress::Verifying(_) => {}
    })?;
    Ok(())
}

/// `2025-10-03T15:33:23.496Z`.
fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = (d.as_secs() / 86_400, d.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_759_505_603_496);
        assert_eq!(iso8601(t), "2025-10-03T15:33:23.496Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }
}
