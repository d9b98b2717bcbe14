//! llama.cpp's RPC backend (ggml-rpc), which llama-cpp-2 does not wrap: a model's layers on
//! `lms rpc-worker` processes, on this machine or others, and the worker itself (the calls into
//! llama.cpp are in [`super::ffi`]).
//!
//! What the protocol is (llama.cpp's `tools/rpc/README.md`): plain TCP with no
//! authentication and no encryption; a worker serves one client at a time; client and worker must
//! speak the same protocol version (the handshake checks it: use one build on both sides); and a
//! worker lost while a model uses it makes llama.cpp abort the client process (GGML_ABORT). So a
//! worker is probed here, with timeouts, before llama.cpp is given it: one that does not answer is
//! a typed error, not an abort.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::backend::backend;
use super::ffi;
use crate::types::error::{Error, Result};

/// The protocol version this build speaks (`RPC_PROTO_MAJOR_VERSION` and `_MINOR_` of the vendored
/// `ggml-rpc.h`): a worker must have this major version and at most this minor one.
const PROTO_MAJOR: u8 = 7;
const PROTO_MINOR: u8 = 0;
/// Commands of the protocol (`enum rpc_cmd`), and the size of the transport's capability block
/// that its handshake carries (`RPC_CONN_CAPS_SIZE`).
const CMD_HELLO: u8 = 14;
const CMD_DEVICE_COUNT: u8 = 15;
const CONN_CAPS: usize = 24;
/// How long a probe waits to connect and for each answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The name llama.cpp's registry knows the RPC backend by (also its devices' backend name).
pub(crate) const BACKEND: &str = "RPC";

/// `lms rpc-worker`: llama.cpp's RPC worker, serving this process's devices.
#[derive(Debug, Clone)]
pub struct RpcWorker {
    /// The address to listen on. Default `127.0.0.1`.
    pub host: String,
    /// The port. Default 50052 (llama.cpp's `rpc-server`'s).
    pub port: u16,
    /// CPU threads for the computations it is sent. Default: the machine's cores.
    pub threads: Option<u32>,
    /// A directory where large tensors a client sends are kept by hash, so that loading the same
    /// model again sends only the hashes. Default: none.
    pub cache_dir: Option<PathBuf>,
    /// Listen on an address other than loopback. The protocol has no authentication and no
    /// encryption: anyone who reaches the port can run computations on this machine and read
    /// what it holds. Only on a network you trust.
    pub allow_remote: bool,
}

impl Default for RpcWorker {
    fn default() -> Self {
        Self { host: "127.0.0.1".into(), port: 50052, threads: None, cache_dir: None, allow_remote: false }
    }
}

impl RpcWorker {
    /// Whether its address is other than loopback (what [`RpcWorker::allow_remote`] must allow).
    pub fn is_remote(&self) -> bool {
        !self.host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Serves until the process ends. Returns only with what kept it from serving: an address
    /// that is not loopback without [`RpcWorker::allow_remote`], a port in use, a device llama.cpp
    /// cannot start.
    pub fn serve(&self) -> Result<()> {
        if self.host.parse::<Ipv4Addr>().is_err() {
            return Err(Error::InvalidConfig(format!(
                "host {:?}: llama.cpp's RPC worker listens on an IPv4 address (127.0.0.1, 0.0.0.0, ...)",
                self.host
            )));
        }
        if self.is_remote() && !self.allow_remote {
            return Err(Error::InvalidConfig(format!(
                "an RPC worker listens on loopback unless allowed otherwise ({} is not loopback): the protocol has no \
                 authentication and no encryption, so anyone who reaches the port can use this machine",
                self.host
            )));
        }
        // llama.cpp reports a port in use on stdout and returns: find out first, with a reason.
        drop(TcpListener::bind((self.host.as_str(), self.port))?);
        backend()?;
        let devices = serving_devices();
        let threads =
            self.threads.map_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()), |t| t as usize);
        let cache = match &self.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Some(dir.to_str().ok_or_else(|| Error::InvalidConfig("the cache directory is not UTF-8".into()))?)
            }
            None => None,
        };
        ffi::start_server(&format!("{}:{}", self.host, self.port), cache, threads, &devices)?;
        Err(Error::Engine(format!("the RPC worker on {}:{} stopped (llama.cpp says why above)", self.host, self.port)))
    }
}

/// The devices a worker serves (indices among llama.cpp's): this build's GPUs, else the CPU (as
/// llama.cpp's `rpc-server` chooses).
fn serving_devices() -> Vec<usize> {
    use llama_cpp_2::LlamaBackendDeviceType as T;
    let listed = llama_cpp_2::list_llama_ggml_backend_devices();
    let gpus: Vec<usize> = listed
        .iter()
        .enumerate()
        .filter(|(_, d)| d.backend != BACKEND && matches!(d.device_type, T::Gpu))
        .map(|(i, _)| i)
        .collect();
    if gpus.is_empty() {
        listed.iter().position(|d| matches!(d.device_type, T::Cpu)).into_iter().collect()
    } else {
        gpus
    }
}

/// Makes the workers at `endpoints` (`host:port`) devices of llama.cpp, after checking that each
/// answers as a worker of this protocol version, and returns the indices of their devices among
/// all of llama.cpp's devices, in the order given. A worker already added is not added again.
pub(crate) fn attach(endpoints: &[String]) -> Result<Vec<usize>> {
    if endpoints.is_empty() {
        return Ok(Vec::new());
    }
    backend()?;
    let mut indices = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        if endpoints[..i].contains(endpoint) {
            return Err(Error::InvalidConfig(format!("RPC worker {endpoint} is named twice")));
        }
        if !attached(endpoint) {
            probe(endpoint).map_err(|reason| Error::RpcWorker { endpoint: endpoint.clone(), reason })?;
            ffi::add_server(endpoint)?;
        }
        let found: Vec<usize> = llama_cpp_2::list_llama_ggml_backend_devices()
            .iter()
            .enumerate()
            .filter(|(_, d)| d.backend == BACKEND && d.description == *endpoint)
            .map(|(i, _)| i)
            .collect();
        indices.extend(found);
    }
    Ok(indices)
}

/// Whether `endpoint`'s devices are among llama.cpp's.
fn attached(endpoint: &str) -> bool {
    llama_cpp_2::list_llama_ggml_backend_devices().iter().any(|d| d.backend == BACKEND && d.description == endpoint)
}

/// Whether any worker's devices are among llama.cpp's: then every load names its devices, since
/// llama.cpp's own choice would put any model first on the workers.
pub(crate) fn any_attached() -> bool {
    llama_cpp_2::list_llama_ggml_backend_devices().iter().any(|d| d.backend == BACKEND)
}

/// This machine's GPUs alone (for a draft model, which stays off the workers), as indices among
/// llama.cpp's devices: `None` while no RPC worker is known to the process (llama.cpp's own choice).
pub(crate) fn local_devices() -> Option<Vec<usize>> {
    use llama_cpp_2::LlamaBackendDeviceType as T;
    let listed = llama_cpp_2::list_llama_ggml_backend_devices();
    listed.iter().any(|d| d.backend == BACKEND).then(|| {
        listed
            .iter()
            .enumerate()
            .filter(|(_, d)| d.backend != BACKEND && matches!(d.device_type, T::Gpu | T::IntegratedGpu))
            .map(|(i, _)| i)
            .collect()
    })
}

/// Connects to `endpoint` as llama.cpp's client would, and asks for the handshake and the number
/// of devices; every step with a timeout. The reason it cannot be used, if it cannot.
fn probe(endpoint: &str) -> std::result::Result<u32, String> {
    let (host, port) = endpoint.rsplit_once(':').ok_or("expected host:port")?;
    if host.is_empty() || host.contains(':') {
        return Err("expected host:port with an IPv4 address or a name".into());
    }
    let port: u16 = port.parse().map_err(|_| format!("{port:?} is not a port"))?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect: {e} (is `lms rpc-worker` running there?)"))?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    let silent = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "no answer within {} s (a worker serves one client at a time: is another process using it?)",
            PROBE_TIMEOUT.as_secs()
        ),
        _ => format!("the connection failed: {e} (not an RPC worker?)"),
    };
    let hello = call(&mut stream, CMD_HELLO, &[0; CONN_CAPS]).map_err(silent)?;
    let [major, minor, patch, ..] = hello[..] else {
        return Err(format!("a handshake of {} bytes (not an RPC worker?)", hello.len()));
    };
    if major != PROTO_MAJOR || minor > PROTO_MINOR {
        return Err(format!(
            "it speaks RPC protocol {major}.{minor}.{patch}, this build {PROTO_MAJOR}.{PROTO_MINOR}: run the same \
             build of lms on both sides"
        ));
    }
    let count = call(&mut stream, CMD_DEVICE_COUNT, &[]).map_err(silent)?;
    let count: [u8; 4] = count[..].try_into().map_err(|_| "a malformed device count".to_owned())?;
    Ok(u32::from_le_bytes(count))
}

/// One command of the protocol: `cmd`, the input's size (u64) and the input; the answer's size
/// (u64) and the answer (at most 4 KiB: the probe's answers are a few bytes). Little-endian, as
/// on every host llama.cpp's RPC runs on.
fn call(stream: &mut TcpStream, cmd: u8, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut request = vec![cmd];
    request.extend_from_slice(&(input.len() as u64).to_le_bytes());
    request.extend_from_slice(input);
    stream.write_all(&request)?;
    let mut size = [0; 8];
    stream.read_exact(&mut size)?;
    let size = u64::from_le_bytes(size);
    if size > 4096 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("an answer of {size} bytes")));
    }
    let mut answer = vec![0; size as usize];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}
