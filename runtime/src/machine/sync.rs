//! Locking shared state that a panicking thread may have held.

use std::sync::{Mutex, MutexGuard};

/// Locks `m` even if a thread panicked while holding it: the state Provium keeps behind mutexes
/// (process registries, counters, lists of paths) is valid after any single update, and
/// cleaning up after a panic needs it most.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
