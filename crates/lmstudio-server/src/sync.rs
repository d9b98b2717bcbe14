//! Locking that survives a panic elsewhere.

/// Locks `m` even if a panic poisoned it (what our mutexes guard is never left half-updated).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
