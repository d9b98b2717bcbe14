//! One thread computes every llama.cpp graph in the process.
//!
//! llama.cpp's CPU backend (built with OpenMP) runs a graph in an OpenMP team that belongs to the
//! thread calling `llama_decode`, and keeps the team's threads for that caller's life. With each
//! engine (a model, a draft model, an embedding model) calling from its own thread, a process that
//! has run two engines holds more OpenMP threads than there are cores; libgomp then all but stops
//! spinning at its barriers (a hundred spins, then a futex sleep), and every model decodes about a
//! third slower, even while the other is idle (`lms-dev bench`'s "two models in one process").
//! So every decode goes through [`decode`]: one thread and one team, whichever engine asks.
//! Engines take turns a batch at a time, as they would take the cores anyway.

use std::sync::{Mutex, OnceLock, PoisonError};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::DecodeError;

/// The name of the compute thread and, inherited, of its OpenMP team's threads.
pub(super) const THREAD_NAME: &str = "lms-compute";

/// Held while a batch is decoded; `true` once the process is exiting.
static EXITING: Mutex<bool> = Mutex::new(false);

/// At exit: waits for a decode in flight, and no other starts. The static destructors that run
/// next (llama.cpp's backends) must not pull its state from under a graph being computed; a test
/// binary, or a process that exits without unloading, may end with a prediction running.
extern "C" fn on_exit() {
    *EXITING.lock().unwrap_or_else(PoisonError::into_inner) = true;
}

/// Decodes `batch` in `ctx` on the compute thread; the caller waits. A panic comes back to it.
/// Once the process is exiting, the caller waits for good.
pub(super) fn decode(ctx: &mut LlamaContext, batch: &mut LlamaBatch) -> Result<(), DecodeError> {
    static POOL: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        if !super::ffi::at_exit(on_exit) {
            tracing::warn!("could not register the compute thread's exit handler");
        }
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| THREAD_NAME.into())
            .build()
            .map_err(|e| tracing::warn!("no compute thread ({e}): each engine computes on its own"))
            .ok()
    });
    let mut run = move || {
        let exiting = EXITING.lock().unwrap_or_else(PoisonError::into_inner);
        if *exiting {
            drop(exiting);
            loop {
                std::thread::park();
            }
        }
        ctx.decode(batch)
    };
    match pool {
        Some(pool) => pool.install(run),
        None => run(),
    }
}
