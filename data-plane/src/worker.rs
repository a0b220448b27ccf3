//! The serving worker a thread belongs to, for state kept per worker (upstream idle
//! connections in [`crate::upstream`]). Set by the listeners ([`crate::server::workers`]);
//! a leaf, so the upstream pool can read it without importing the server.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Workers bound so far (1 before any): sizes per-worker state such as upstream idle lists.
static COUNT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's worker index; 0 on every other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// How many workers serve, for state kept per worker (each worker reuses the upstream
/// connections it opened, so an exchange never wakes another thread). Final once the
/// listeners are bound, before any snapshot is compiled.
pub(crate) fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// The index of the worker running on this thread, below [`count`]; 0 off the workers.
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Makes room for `workers` workers (counts only grow: per-worker state already sized
/// for more stays valid).
pub(crate) fn grow_count(workers: usize) {
    COUNT.fetch_max(workers, Ordering::Relaxed);
}

/// Marks this thread as worker `index`.
pub(crate) fn set_current(index: usize) {
    INDEX.with(|i| i.set(index));
}
