//! Calls into llama.cpp that llama-cpp-2 does not wrap, or wraps only unsafely: its RPC backend's
//! server and client (ggml-rpc, reached through the backend registry as llama.cpp's own tools
//! reach it), ggml's abort callback, a sequence's state as bytes, and `madvise` for huge pages
//! under llama.cpp's buffers (`huge_pages`). All of the workspace's `unsafe` is in this file (the
//! lints deny it elsewhere, and lms-dev's modules test checks that no other file allows it); each
//! block says why it holds.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::io::Write;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::LlamaStateSeqFlags;
use llama_cpp_sys_2 as sys;

use crate::types::error::{Error, Result};

/// Serves llama.cpp's RPC protocol on `endpoint` (`host:port`) with the devices at `devices`
/// (indices among llama.cpp's), `threads` CPU threads, and large tensors kept in `cache_dir`.
/// Returns only when llama.cpp cannot serve (it says why on stdout or stderr).
pub(super) fn start_server(endpoint: &str, cache_dir: Option<&str>, threads: usize, devices: &[usize]) -> Result<()> {
    let count = device_count();
    if devices.is_empty() || devices.iter().any(|&i| i >= count) {
        return Err(Error::Engine(format!("no device to serve among llama.cpp's {count}")));
    }
    // SAFETY: each index is below `ggml_backend_dev_count()` (checked above; devices are never
    // removed), and the handles live as long as the process.
    let mut handles: Vec<sys::ggml_backend_dev_t> =
        devices.iter().map(|&i| unsafe { sys::ggml_backend_dev_get(i) }).collect();
    let endpoint = c_string(endpoint)?;
    let cache = cache_dir.map(c_string).transpose()?;
    let start = rpc_function(c"ggml_backend_rpc_start_server")?;
    type StartServer = unsafe extern "C" fn(*const c_char, *const c_char, usize, usize, *mut sys::ggml_backend_dev_t);
    // SAFETY: llama.cpp's RPC registry returns this name's address as the function
    // `void ggml_backend_rpc_start_server(const char *, const char *, size_t, size_t,
    // ggml_backend_dev_t *)` (ggml-rpc.h), the type transmuted to here.
    let start: StartServer = unsafe { std::mem::transmute::<*mut c_void, StartServer>(start) };
    // SAFETY: the strings are NUL-terminated and outlive the call (it returns only when the
    // server stops); `handles` holds `len` live device handles.
    unsafe {
        start(
            endpoint.as_ptr(),
            cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            threads,
            handles.len(),
            handles.as_mut_ptr(),
        )
    };
    Ok(())
}

/// Makes the worker at `endpoint` (`host:port`) a backend of llama.cpp with its devices, as
/// llama.cpp's `--rpc` does. llama.cpp aborts the process if the worker does not answer: probe it
/// first.
pub(super) fn add_server(endpoint: &str) -> Result<()> {
    let add = rpc_function(c"ggml_backend_rpc_add_server")?;
    type AddServer = unsafe extern "C" fn(*const c_char) -> sys::ggml_backend_reg_t;
    // SAFETY: llama.cpp's RPC registry returns this name's address as the function
    // `ggml_backend_reg_t ggml_backend_rpc_add_server(const char *)` (ggml-rpc.h).
    let add: AddServer = unsafe { std::mem::transmute::<*mut c_void, AddServer>(add) };
    let c_endpoint = c_string(endpoint)?;
    // SAFETY: the string is NUL-terminated and lives through the call (llama.cpp copies it).
    let reg = unsafe { add(c_endpoint.as_ptr()) };
    if reg.is_null() {
        return Err(Error::RpcWorker { endpoint: endpoint.to_owned(), reason: "it has no devices".into() });
    }
    // SAFETY: `reg` is the registry entry llama.cpp just made for this endpoint (or made before
    // for it: registering one twice is a no-op); it lives as long as the process.
    unsafe { sys::ggml_backend_register(reg) };
    Ok(())
}

fn device_count() -> usize {
    // SAFETY: a plain read of llama.cpp's device registry.
    unsafe { sys::ggml_backend_dev_count() }
}

/// A function of llama.cpp's RPC backend, by name, from its registry entry.
fn rpc_function(name: &CStr) -> Result<*mut c_void> {
    // SAFETY: a NUL-terminated name (the RPC backend's); the registry returns null for a backend
    // not built in.
    let reg = unsafe { sys::ggml_backend_reg_by_name(c"RPC".as_ptr()) };
    if reg.is_null() {
        return Err(Error::Unsupported("this build has no RPC backend (llama.cpp built without GGML_RPC)".into()));
    }
    // SAFETY: `reg` is a live registry entry; the name is NUL-terminated; null when unknown.
    let f = unsafe { sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr()) };
    if f.is_null() {
        return Err(Error::Unsupported(format!("llama.cpp's RPC backend has no {name:?}")));
    }
    Ok(f)
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidConfig(format!("{s:?} contains a NUL byte")))
}

/// Installs ggml's abort callback: llama.cpp aborts the process on what it cannot recover from (a
/// lost RPC worker among them); the callback says so in words, on stderr and in the log, before
/// ggml aborts.
pub(super) fn report_aborts() {
    // SAFETY: the callback is a plain function that lives as long as the process.
    unsafe { sys::ggml_set_abort_callback(Some(on_abort)) };
}

unsafe extern "C" fn on_abort(message: *const c_char) {
    let message = if message.is_null() {
        String::new()
    } else {
        // SAFETY: ggml passes its NUL-terminated message buffer, alive during the call.
        unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
    };
    let what = if message.contains("RPC") || message.contains("Remote") {
        "an RPC worker was lost; llama.cpp cannot go on without it, and the process ends (run `lms server` under a \
         supervisor, such as deploy/systemd/lms-server.service, to have it restarted)"
    } else {
        "llama.cpp cannot go on, and the process ends"
    };
    tracing::error!(%message, "{what}");
    // stderr may be closed: nothing more to do then.
    let _ = writeln!(std::io::stderr(), "lms: {what}: {}", message.trim_end());
}

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
}

/// Has `f` run when the process exits (C's `atexit`): before the static destructors of what was
/// set up earlier (llama.cpp's backends, once a model is loaded), as handlers run in reverse.
/// Returns whether it was registered.
pub(super) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a function without arguments and with C's calling convention, as `atexit`
    // takes; a function lives as long as the process.
    unsafe { atexit(f) == 0 }
}

/// Puts the window-layer cells of sequence `seq` of a sliding-window model, just restored from a
/// saved state of positions `0..`, where a cold run of the same tokens keeps them (`seq_state`),
/// through a state of at most `max_bytes`. Returns whether they are there; false leaves the
/// sequence as restored.
pub(super) fn place_window_cells(ctx: &mut LlamaContext, seq: i32, max_bytes: usize) -> bool {
    let flags = LlamaStateSeqFlags::PARTIAL_ONLY;
    // 0: llama.cpp could not measure it (and would write past an empty buffer).
    let size = ctx.state_seq_get_size_ext(seq, flags);
    if size == 0 || size > max_bytes {
        return false;
    }
    let mut window = vec![0u8; size];
    // SAFETY: `window` holds the `size` bytes llama.cpp just measured for this sequence and these
    // flags, and nothing changed the context since (it is borrowed mutably).
    let written = unsafe { ctx.state_seq_get_data_ext(window.as_mut_ptr(), seq, flags) };
    if written != size {
        return false;
    }
    let Some(placed) = super::seq_state::with_earlier_cells(&window, 0, max_bytes) else { return false };
    // SAFETY: `placed` is the state llama.cpp wrote with cells added in its own layout; its reader
    // checks counts, types and sizes against the context and fails rather than read past the end.
    placed.len() == size || unsafe { ctx.state_seq_set_data_ext(&placed, seq, flags) }
}

/// Advises the `len` bytes at address `start` (whole huge pages of an anonymous mapping of this
/// process) `MADV_HUGEPAGE`: whether the kernel took it.
#[cfg(target_os = "linux")]
pub(super) fn advise_huge_pages(start: usize, len: usize) -> bool {
    // SAFETY: the advice only changes which pages back the range, never its contents; the kernel
    // checks that the range is mapped (an error otherwise, returned as false).
    unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_HUGEPAGE) == 0 }
}

/// Moves the `len` bytes at address `start` (whole huge pages, advised as above) into huge pages
/// now (`MADV_COLLAPSE`, Linux 6.1, which the libc crate may not name): whether it did.
#[cfg(target_os = "linux")]
pub(super) fn collapse_huge_pages(start: usize, len: usize) -> bool {
    const MADV_COLLAPSE: libc::c_int = 25;
    // SAFETY: as `advise_huge_pages`: the contents stay; the range may even be unmapped by now
    // (an error, returned as false).
    unsafe { libc::madvise(start as *mut c_void, len, MADV_COLLAPSE) == 0 }
}
