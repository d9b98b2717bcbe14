//! `lms-dev bench-speculation`: decode speed with n-gram speculation and with the model as its own
//! draft model against without, on text that repeats its context and text that does not; the
//! same greedy requests to llama.cpp's `llama-server` in each of its n-gram modes and with the
//! model as its draft, when it is given; and how often the greedy text is the same
//! (bench/speculation.md).

use anyhow::{Context, Result};
use clap::Args;

use super::loadgen::percentile;

/// Options of `lms-dev bench-speculation`.
#[derive(Args)]
pub struct SpeculationArgs {
    /// The model (default: the default model).
    #[arg(long, short)]
    model: Option<String>,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Runs per case and mode; medians are reported.
    #[arg(long, default_value_t = 3)]
    repetitions: u32,
    /// Greedy prompts compared with and without speculation.
    #[arg(long, default_value_t = 24)]
    prompts: usize,
    /// Write the table to this markdown file (e.g. `bench/speculation.md`).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// llama.cpp's `llama-server` (scripts/build-llama-tools builds it): the greedy cases are
    /// sent to it too, without speculation, in each `--spec-type ngram-*` and with `-md`.
    #[arg(long)]
    llama_server: Option<std::path::PathBuf>,
}

const PARAGRAPH: &str = "The quick brown fox jumps over the lazy dog near the river bank, while the old farmer \
                         watches from his porch and the children play in the golden field behind the red barn.";

/// The seed page's terminal simulator after a few turns: its history is sent again every turn.
fn terminal_history() -> String {
    let mut history = String::new();
    for turn in 0..4 {
        history += "$ ls\nDocuments  Music  notes.txt  todo.md\n$ cat notes.txt\n";
        history += "buy milk\ncall the plumber about the kitchen sink\nfinish the quarterly report\n";
        if turn % 2 == 1 {
            history += "$ cat todo.md\n- water the plants\n- renew the library books\n";
        }
    }
    history + "$ ls\n"
}

struct Case {
    name: &'static str,
    prompt: String,
    config: lmstudio::Config,
}

/// Greedy cases have no repeat penalty, as llama-server's default sampling.
fn cases() -> Vec<Case> {
    let greedy = lmstudio::Config {
        temperature: Some(0.0),
        repeat_penalty: Some(1.0),
        max_tokens: Some(96),
        ..Default::default()
    };
    // Exactly 128 tokens either way (the end of text banned), sampled with a seed.
    let story = lmstudio::Config { max_tokens: Some(128), ignore_eos: Some(true), seed: Some(7), ..Default::default() };
    vec![
        Case {
            name: "copy a paragraph (greedy)",
            prompt: format!("Copy exactly: {PARAGRAPH}\nCopy: {PARAGRAPH}\nCopy:"),
            config: greedy.clone(),
        },
        Case {
            name: "repeat a paragraph with changes (greedy)",
            prompt: format!(
                "Rewrite the paragraph with the fox made a cat and the farmer a baker.\nParagraph: {PARAGRAPH}\n\
                 Rewritten: The quick brown cat jumps over the lazy dog near the river bank, while the old baker"
            ),
            config: greedy.clone(),
        },
        Case { name: "terminal history (greedy)", prompt: terminal_history(), config: greedy },
        Case { name: "a story, not repeating (sampled)", prompt: "Once upon a time".into(), config: story },
    ]
}

fn with(config: &lmstudio::Config, speculation: lmstudio::Speculation) -> lmstudio::Config {
    lmstudio::Config { speculation: Some(speculation), ..config.clone() }
}

fn own_draft(config: &lmstudio::Config, key: &str) -> lmstudio::Config {
    lmstudio::Config { draft_model: Some(key.to_owned()), ..config.clone() }
}

/// llama-server's modes: its arguments and the name the table gives them.
const LLAMA_MODES: &[(&str, &[&str])] = &[
    ("off", &[]),
    ("ngram-simple", &["--spec-type", "ngram-simple"]),
    ("ngram-map-k", &["--spec-type", "ngram-map-k"]),
    ("ngram-mod", &["--spec-type", "ngram-mod"]),
    ("ngram-cache", &["--spec-type", "ngram-cache"]),
    ("draft: the model (-md)", &["-md"]),
];

/// llama-server in each of [`LLAMA_MODES`], all started before the measurements, so that each
/// repetition sends a case to ours and to every mode in turn (this machine's speed drifts).
fn llama_servers(bin: &std::path::Path, model: &std::path::Path, threads: u32) -> Result<Vec<super::load::Server>> {
    LLAMA_MODES
        .iter()
        .map(|(_, args)| {
            let mut extra: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
            if args == &["-md"] {
                extra.push(model.as_os_str());
            }
            super::load::llama_server(bin, model, "model", 1, threads, &extra)
        })
        .collect()
}

/// One greedy case on a llama-server: its decode tok/s (its own `predicted_per_second`) and text.
fn on_llama_server(server: &super::load::Server, case: &Case) -> Result<(f64, String)> {
    let body = serde_json::json!({
        "prompt": case.prompt, "n_predict": case.config.max_tokens, "temperature": 0.0,
        "repeat_penalty": 1.0, "cache_prompt": true,
    });
    let v = super::loadgen::post_json(server.addr(), "/completion", &body)?;
    let tps = v["timings"]["predicted_per_second"].as_f64().context("no predicted_per_second")?;
    Ok((tps, v["content"].as_str().unwrap_or_default().to_owned()))
}

pub fn run(args: SpeculationArgs) -> Result<()> {
    let store = lmstudio::ModelStore::from_env();
    let model = super::load_one_slot(&store, args.model.as_deref(), args.threads, None)?;
    let key = model.info().model_key.clone();
    let mut md = format!(
        "# Speculative decoding\n\nWritten by `lms-dev bench-speculation --repetitions {reps}{server} --out \
         bench/speculation.md`: model {key}, {threads} threads, one slot, medians of {reps} runs after one \
         unmeasured round on each side; decode tok/s (from the first token to the last). Greedy cases: temperature 0, no repeat penalty. \
         \"own draft\": the model as its own draft model (`draftModel`), which shows the checking, not a \
         gain: a draft model pays off only when it is much faster than the model.\n\n\
         | case | tokens | tok/s off | tok/s ngram | ngram speed-up | drafted | accepted | tok/s own draft | \
         own draft speed-up | same text |\n|---|---|---|---|---|---|---|---|---|---|\n",
        reps = args.repetitions,
        server = if args.llama_server.is_some() { " --llama-server target/llama-tools/bin/llama-server" } else { "" },
        threads = args.threads,
    );
    let cases = cases();
    let servers = match &args.llama_server {
        Some(bin) => llama_servers(bin, &store.root().join(&model.info().path), args.threads)?,
        None => Vec::new(),
    };
    let mut ours_off = Vec::new();
    // For each greedy case, each llama-server mode's speeds and last text.
    let mut theirs: Vec<Vec<(Vec<f64>, String)>> = Vec::new();
    let mut measured = Vec::new();
    for case in &cases {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        let (mut same, mut last) = (true, None);
        let greedy = case.config.temperature == Some(0.0);
        let mut modes = vec![(Vec::new(), String::new()); if greedy { servers.len() } else { 0 }];
        // A first round unmeasured, on both sides: a process's first steps with more rows of
        // logits than any before grow llama.cpp's logits buffer (fresh pages, ~0.1 s on a VM).
        for round in 0..=args.repetitions {
            let measure = round > 0;
            for (server, (tps, text)) in servers.iter().zip(modes.iter_mut()) {
                let (t, content) = on_llama_server(server, case)?;
                if measure {
                    tps.push(t);
                    *text = content;
                }
            }
            let plain = model.complete(&case.prompt, with(&case.config, lmstudio::Speculation::Off))?;
            let fast = model.complete(&case.prompt, with(&case.config, lmstudio::Speculation::Ngram))?;
            if !measure {
                continue;
            }
            off.push(plain.stats.tokens_per_second.context("no tokens per second")?);
            on.push(fast.stats.tokens_per_second.context("no tokens per second")?);
            same &= plain.content == fast.content;
            last = Some((plain, fast));
        }
        measured.push((off, on, same, last.context("no runs")?));
        if greedy {
            theirs.push(modes);
        }
    }
    for server in servers {
        server.stop();
    }
    // The model as its own draft last: once a draft model has run in a process, the main model
    // decodes slower there (measured: about a third, with or without drafts; not understood yet),
    // which would count against every later figure.
    for (case, (off, on, same, (plain, fast))) in cases.iter().zip(measured) {
        let mut drafted = Vec::new();
        let mut same = same;
        for _ in 0..args.repetitions {
            let own = model.complete(&case.prompt, own_draft(&case.config, &key))?;
            drafted.push(own.stats.tokens_per_second.context("no tokens per second")?);
            same &= plain.content == own.content;
        }
        let drafts = fast.stats.drafts.clone().unwrap_or_default();
        let (off, on, own) = (percentile(off, 0.5), percentile(on, 0.5), percentile(drafted, 0.5));
        eprintln!("{}: {off:.1} -> {on:.1} tok/s (own draft {own:.1}), {drafts:?}", case.name);
        md += &format!(
            "| {} | {} | {off:.1} | {on:.1} | {:.2} | {} | {} | {own:.1} | {:.2} | {} |\n",
            case.name,
            plain.stats.predicted_tokens_count.unwrap_or(0),
            on / off,
            drafts.total_draft_tokens_count,
            drafts.accepted_draft_tokens_count,
            own / off,
            if same { "yes" } else { "no" },
        );
        ours_off.push((off, on, own, plain.content));
    }

    if args.llama_server.is_some() {
        let greedy: Vec<&Case> = cases.iter().filter(|c| c.config.temperature == Some(0.0)).collect();
        let speeds: Vec<Vec<(f64, String)>> = (0..LLAMA_MODES.len())
            .map(|m| theirs.iter().map(|modes| (percentile(modes[m].0.clone(), 0.5), modes[m].1.clone())).collect())
            .collect();
        md += "\nThe same greedy requests to llama.cpp's `llama-server` (llama.cpp 0c1e570, built by \
               `scripts/build-llama-tools`, one slot, the same threads; every mode's server started first, and each repetition sends the \
               case to ours and to each mode in turn), decode tok/s by its own timings; \
               \"same text\": as ours without speculation.\n\n| case | llama-server mode | tok/s | same text |\n\
               |---|---|---|---|\n";
        for (c, case) in greedy.iter().enumerate() {
            for (m, (mode, _)) in LLAMA_MODES.iter().enumerate() {
                let (tps, content) = &speeds[m][c];
                let same = if *content == ours_off[c].3 { "yes" } else { "no" };
                md += &format!("| {} | {mode} | {tps:.1} | {same} |\n", case.name);
            }
        }
        md += "\n| case | ours ngram vs llama-server's best n-gram mode | ours off vs llama-server off | \
               ours own draft vs llama-server -md |\n|---|---|---|---|\n";
        for (c, case) in greedy.iter().enumerate() {
            let ngram_modes = 1..LLAMA_MODES.len() - 1;
            let (best, mode) =
                ngram_modes
                    .map(|m| (speeds[m][c].0, LLAMA_MODES[m].0))
                    .fold((0.0, ""), |b, x| if x.0 > b.0 { x } else { b });
            let (off, on, own, _) = &ours_off[c];
            md += &format!(
                "| {} | {:.2} ({mode}: {best:.1} tok/s) | {:.2} | {:.2} |\n",
                case.name,
                on / best,
                off / speeds[0][c].0,
                own / speeds[LLAMA_MODES.len() - 1][c].0,
            );
        }
    }

    // Greedy text with and without, over many prompts: where batch numerics flip a near-tie, the
    // two part ways from that token on.
    let starts = [
        "The history of the city",
        "My favourite recipe is",
        "In the beginning",
        "Dear Sir,",
        "The results show",
        "Step 1:",
        "Once upon a time",
        "The weather today",
        "def fibonacci(n):",
        "Q: What is the capital of France?\nA:",
        "The meeting was",
        "Breaking news:",
    ];
    let (mut identical, mut total, mut agreed_tokens, mut all_tokens) = (0, 0, 0usize, 0usize);
    for i in 0..args.prompts {
        let base = starts[i % starts.len()];
        let prompt = if i < starts.len() { base.to_owned() } else { format!("{base} {PARAGRAPH} {base}") };
        let config = lmstudio::Config { temperature: Some(0.0), max_tokens: Some(64), ..Default::default() };
        let plain = model.complete(&prompt, with(&config, lmstudio::Speculation::Off))?.content;
        let fast = model.complete(&prompt, with(&config, lmstudio::Speculation::Ngram))?.content;
        total += 1;
        identical += usize::from(plain == fast);
        let common = plain.chars().zip(fast.chars()).take_while(|(a, b)| a == b).count();
        agreed_tokens += common;
        all_tokens += plain.chars().count().max(fast.chars().count());
    }
    md += &format!(
        "\nGreedy text (64 tokens) with and without speculation over {total} prompts: {identical} identical; \
         {:.1}% of characters before the first difference. A difference is llama.cpp's CPU kernels rounding a \
         batch of several tokens otherwise than one token (a near-tie flips; measured: 0.13 nat in the paragraph \
         case), not a wrong draft: a draft is only kept where the model's own draw produced it.\n",
        100.0 * agreed_tokens as f64 / all_tokens.max(1) as f64
    );
    println!("{md}");
    if let Some(out) = args.out {
        std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
