//! The model offloaded to a GPU (builds with `cuda` or `vulkan`): every test here fails where no
//! GPU device is found, so a GPU build never passes on the CPU by falling back. CI runs them in the
//! Vulkan build on Mesa's software Vulkan device (lavapipe, `GGML_VK_VISIBLE_DEVICES=0`): the same
//! shaders a GPU runs, slowly, so the prompts are short. `scripts/test-vulkan` says how.

use lmstudio as lms;

use crate::{exactly, greedy, store};

fn base() -> lms::LoadConfig {
    lms::LoadConfig { context_length: Some(256), parallel: Some(2), ..Default::default() }
}

/// Loads the default model with `config` on a client of its own, checking where its layers went.
fn load(config: lms::LoadConfig, gpu_layers: u32) -> lms::Llm {
    let llm = lms::Client::with_store(store().clone()).load(lms::DEFAULT_MODEL_KEY, &config).expect("loads");
    assert_eq!(llm.info().num_gpu_layers, Some(gpu_layers), "{config:?}");
    llm
}

#[test]
fn a_gpu_device_is_found() {
    let gpus: Vec<_> = lms::devices().expect("devices").into_iter().filter(lms::Device::is_gpu).collect();
    assert!(!gpus.is_empty(), "a GPU build with no GPU device (for lavapipe: GGML_VK_VISIBLE_DEVICES=0)");
    assert!(gpus.iter().all(|d| d.memory_total_mib > 0), "{gpus:?}");
}

/// By default every layer goes to the GPU (Gemma 3 270M: 18 blocks and the output layer), and the
/// greedy text where the model is sure of it is the CPU's: whole, half offloaded, and in a batch
/// of two predictions at once.
#[test]
fn offloaded_greedy_text_is_the_cpus() {
    let cpu = load(lms::LoadConfig { gpu: Some(lms::GpuOffload::Off), ..base() }, 0);
    let all = load(base(), 19);
    let half = load(lms::LoadConfig { gpu: Some(lms::GpuOffload::Ratio(0.5)), ..base() }, 10);
    let expected = cpu.complete("1, 2, 3,", greedy(6)).expect("completes").content;
    assert_eq!(expected, " 4, 5,");
    for llm in [&all, &half] {
        let r = llm.complete("1, 2, 3,", greedy(6)).expect("completes");
        assert_eq!(r.content, expected, "{:?}", llm.info().num_gpu_layers);
        assert_eq!(r.stats.num_gpu_layers, llm.info().num_gpu_layers.map(f64::from));
    }
    let both: Vec<_> = ["1, 2, 3,", "a, b, c,"]
        .map(|p| all.complete_stream(p, greedy(6)).expect("starts"))
        .into_iter()
        .map(|s| s.wait_for_result().expect("completes").content)
        .collect();
    assert_eq!(both[0], expected, "batched");
    assert_eq!(both[1], cpu.complete("a, b, c,", greedy(6)).expect("completes").content, "batched");
}

/// Stop strings and cancel on the GPU, as on the CPU.
#[test]
fn stop_strings_and_cancel_with_the_model_offloaded() {
    let llm = load(base(), 19);
    let stop = lms::Config { stop_strings: vec![" 6".into()], ..greedy(12) };
    let r = llm.complete("1, 2, 3, 4,", stop).expect("completes");
    assert_eq!((r.content.as_str(), r.stats.stop_reason), (" 5,", lms::StopReason::StopStringFound));
    let mut stream = llm.complete_stream("Once upon a time", exactly(200)).expect("starts");
    stream.next().expect("a first fragment").expect("no error");
    stream.cancel();
    let r = stream.wait_for_result().expect("ends");
    assert_eq!(r.stats.stop_reason, lms::StopReason::UserStopped);
}

/// The GPU's kernels give a prompt's rows other bits when it is evaluated in other chunks, so
/// nothing is reused there (ARCHITECTURE.md): the same prompt again is evaluated whole, and the
/// greedy text is the same. On the CPU the same request reuses the cached prefix (a reuse leaves at
/// least one minimum chunk, 64 rows, to evaluate, so the prompt is longer than that).
#[test]
fn prompts_are_not_reused_on_the_gpu() {
    let prompt = "The harbour was quiet at dawn, and the boats lay still on the water. ".repeat(6) + "1, 2, 3,";
    let prompt = prompt.as_str();
    let gpu = load(base(), 19);
    let cpu = load(lms::LoadConfig { gpu: Some(lms::GpuOffload::Off), ..base() }, 0);
    for (llm, reused) in [(&gpu, false), (&cpu, true)] {
        let first = llm.complete(prompt, greedy(4)).expect("completes");
        let again = llm.complete(prompt, greedy(4)).expect("completes");
        assert_eq!(again.content, first.content);
        let cached = again.stats.cached_prompt_tokens_count.expect("counted");
        assert_eq!(cached > 0, reused, "cached {cached} of {:?}", again.stats.prompt_tokens_count);
    }
}

/// The estimate puts the offloaded layers' share on the GPU: all of the model where all of it is
/// offloaded, less where half is, none where it stays on the CPU.
#[test]
fn the_estimate_follows_the_offload() {
    let client = lms::Client::with_store(store().clone());
    let estimate =
        |gpu| client.estimate(lms::DEFAULT_MODEL_KEY, &lms::LoadConfig { gpu, ..base() }).expect("estimates").0;
    let (all, half, off) =
        (estimate(None), estimate(Some(lms::GpuOffload::Ratio(0.5))), estimate(Some(lms::GpuOffload::Off)));
    assert!(all.gpu_mib > half.gpu_mib && half.gpu_mib > 0, "{all} / {half}");
    assert_eq!(off.gpu_mib, 0, "{off}");
    assert!(all.total_mib < off.total_mib, "the host holds less: {all} / {off}");
}
