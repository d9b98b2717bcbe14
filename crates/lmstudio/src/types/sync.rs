//! Locking that survives a panic elsewhere: the one helper every layer uses.

use std::sync::{Mutex, MutexGuard};

/// Locks `m` even if a panic poisoned it: the data behind our mutexes (lists of loaded models,
/// routing tables) is never left half-updated, so taking it is safe.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
