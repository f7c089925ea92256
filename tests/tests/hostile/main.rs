//! Hostile plugins and hostile callers against the real `tessera serve` process: each module
//! is one attack, with guest code from `tests/guests/` named after it, and asserts that the
//! host stays up, its memory stays under a stated bound (read from the host process), and
//! other callers keep their latency while it happens.
//!
//! The tests take turns ([`serial`]), so one attack's load never blurs another's figures.

use std::sync::{Mutex, MutexGuard};

/// Held for the whole of each test in this binary: one attack at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

mod budget_kv;
mod budget_logs;
mod budget_output;
mod budget_probe;
mod budget_resources;
mod cpu_slot_hogging;
mod cpu_spinning_guests;
mod manifests;
mod net_policy;
mod retention;
mod slowloris;
