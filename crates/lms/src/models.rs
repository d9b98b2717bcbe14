//! The models directory and the runtime: `lms get`, `ls`, `import`, `preset ls`, `runtime ls`.

use std::io::IsTerminal;

use anyhow::Result;

/// `lms get MODEL`.
pub fn get(model: &str) -> Result<()> {
    let store = lmstudio::ModelStore::from_env();
    if model == lmstudio::DEFAULT_MODEL_KEY {
        let path = store.ensure_default_model(&mut |line| eprintln!("{line}"))?;
        println!("{}", path.display());
        return Ok(());
    }
    let request = lmstudio::store::hub::HubRequest::parse(model)?;
    let bar = indicatif::ProgressBar::hidden();
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("valid template"),
    );
    let stored = store.download_from_hub(&request, &mut |p| match p {
        lmstudio::store::hub::Progress::File { name, size, resumed_from } => {
            bar.set_length(size);
            bar.set_position(resumed_from);
            bar.set_message(name.to_owned());
            if resumed_from > 0 {
                bar.println(format!("resuming {name} at {resumed_from} of {size} bytes"));
            }
        }
        lmstudio::store::hub::Progress::Bytes(n) => bar.set_position(n),
        lmstudio::store::hub::Progress::Verifying(name) => bar.set_message(format!("checking {name}")),
    });
    bar.finish_and_clear();
    let stored = stored?;
    eprintln!("saved {}", stored.path.display());
    println!("{}", stored.key);
    Ok(())
}

/// `lms ls`, of one kind of model (`llm`, `embedding`) or of all.
pub fn ls(json: bool, kind: Option<&str>) -> Result<()> {
    let store = lmstudio::ModelStore::from_env();
    let mut models = store.list()?;
    if let Some(kind) = kind {
        models.retain(|m| m.info.as_ref().is_ok_and(|i| i.kind == kind));
    }
    if json {
        let infos: Vec<_> = models.iter().filter_map(|m| m.info.as_ref().ok()).collect();
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    if models.is_empty() {
        eprintln!("no models in {} (hint: `lms get`)", store.root().display());
    }
    for m in models {
        match m.info {
            Ok(i) => println!(
                "{:<24} {:<9} {:<8} {:<8} {:>8} MB  ctx {:<6} {}",
                i.model_key,
                i.kind,
                i.params_string.unwrap_or_default(),
                i.quantization.map(|q| q.name).unwrap_or_default(),
                i.size_bytes / 1_000_000,
                i.max_context_length,
                i.path
            ),
            Err(reason) => println!("{:<24} invalid: {reason} ({})", m.key, m.path.display()),
        }
    }
    Ok(())
}

/// `lms preset ls`.
pub fn preset_ls() -> Result<()> {
    let store = lmstudio::PresetStore::from_env();
    let presets = store.list()?;
    if presets.is_empty() {
        eprintln!("no presets in {} (hint: put LM Studio's *.preset.json files there)", store.root().display());
    }
    for p in presets {
        let sets: Vec<String> = p
            .fields
            .fields
            .iter()
            .map(|f| format!("{}={}", f.key.trim_start_matches("llm.prediction."), f.value))
            .collect();
        println!("{:<28} {:<20} {}", p.identifier, p.name, sets.join(" "));
        let ignored = p.ignored_keys();
        if !ignored.is_empty() {
            println!("{:<28} ignored (not read here): {}", "", ignored.join(", "));
        }
    }
    Ok(())
}

/// The backends this build has (llama.cpp's CPU backend always; CUDA and Vulkan with their
/// features, or as loadable libraries) and the devices they find.
pub fn runtime_ls(json: bool, rpc: &[String]) -> Result<()> {
    lmstudio::attach_rpc_workers(rpc)?;
    let devices = lmstudio::devices()?;
    // With loadable backends (`dynamic-backends`), a GPU backend is there when its library lies
    // beside `lms` (or in $LMS_BACKENDS_DIR) and loads: its devices show it.
    let loadable = cfg!(feature = "dynamic-backends");
    let backends = [
        ("CPU", true),
        ("CUDA", cfg!(feature = "cuda") || loadable),
        ("Vulkan", cfg!(feature = "vulkan") || loadable),
        ("RPC", true),
    ];
    if json {
        /// `lms runtime ls --json`.
        #[derive(serde::Serialize)]
        struct Runtimes<'a> {
            backends: Vec<Backend>,
            devices: &'a [lmstudio::Device],
        }
        #[derive(serde::Serialize)]
        struct Backend {
            name: &'static str,
            built: bool,
            /// How many devices it found.
            devices: usize,
        }
        let backends = backends
            .iter()
            .map(|&(name, built)| Backend {
                name,
                built,
                devices: devices.iter().filter(|d| d.backend == name).count(),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&Runtimes { backends, devices: &devices })?);
        return Ok(());
    }
    for (name, built) in &backends {
        let found = devices.iter().filter(|d| d.backend == *name).count();
        let state = match (built, found) {
            (false, _) => {
                format!("not in this build (cargo build --release -p lms --features {})", name.to_lowercase())
            }
            (true, 0) if loadable && *name != "CPU" => {
                "not loaded: no device found, or its library is missing or failed to load (RUST_LOG=info says why)"
                    .to_owned()
            }
            (true, 0) if *name == "RPC" => "built in; no worker reached (--rpc host:port)".to_owned(),
            (true, 0) => "built in; no device found".to_owned(),
            (true, n) => format!("built in; {n} device(s)"),
        };
        println!("{name}: {state}");
    }
    for d in &devices {
        println!(
            "  {} ({}, {}): {}, {} MiB total, {} MiB free",
            d.name, d.backend, d.kind, d.description, d.memory_total_mib, d.memory_free_mib
        );
    }
    Ok(())
}

/// `lms import FILE`: checked, then placed as `mode` says; prints the key it answers to.
pub fn import(file: &std::path::Path, publisher: Option<&str>, mode: lmstudio::ImportMode) -> Result<()> {
    let stored = lmstudio::ModelStore::from_env().import(file, publisher, mode)?;
    eprintln!("imported {} as {}", file.display(), stored.path.display());
    println!("{}", stored.key);
    Ok(())
}
