//! Structured output: a JSON schema or a GBNF grammar compiled into llama.cpp's grammar sampler,
//! used by our own sampler as a filter on its candidates (see `Sampler::sample_allowed`).
//!
//! A compiled grammar is kept per model, keyed by its text, so that a schema sent with every
//! request is parsed once; each prediction takes a clone (llama.cpp copies the parsed rules and
//! starts a fresh parse state).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::GrammarError;
use rustc_hash::FxHashMap;

use super::sampler::Filter;
use crate::types::config::Structured;
use crate::types::error::{Error, Result};
use crate::types::sync::lock;

/// Compiled grammars a model keeps; past this many, the cache starts over.
const CACHED_GRAMMARS: usize = 64;

/// Candidate lists this long are checked through the vocabulary's prefix tree.
const TREE_FROM: usize = 2048;

/// One prediction's grammar: which tokens may come next, and the text so far.
pub(crate) struct Grammar {
    sampler: LlamaSampler,
    tree: Arc<PrefixTree>,
    /// Reused: which tokens the last tree walk allowed.
    marks: Vec<bool>,
    /// A lazy grammar's trigger, until the output holds it: the text before it is free.
    waiting: Option<Waiting>,
}

struct Waiting {
    trigger: Vec<u8>,
    /// The end of the output so far, as long as the trigger.
    tail: Vec<u8>,
}

impl Grammar {
    /// Whether the output is still free: a lazy grammar's trigger has not come yet (llama.cpp's
    /// lazy sampler then allows every token, so none need checking).
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Walks the vocabulary's prefix tree from its roots (see the [`Filter`] impl): `self.marks`
    /// marks, and `out` lists, every token the grammar allows next.
    fn walk(&mut self, out: &mut Vec<i32>) {
        let tree = Arc::clone(&self.tree);
        out.clear();
        self.marks.clear();
        self.marks.resize(tree.child_start.len(), false);
        let mut frontier: Vec<(i32, f32)> = tree.roots.iter().map(|&t| (t, 0.0)).collect();
        while !frontier.is_empty() {
            self.check(&mut frontier);
            let mut next = Vec::new();
            for &(t, _) in &frontier {
                self.marks[t as usize] = true;
                out.push(t);
                next.extend(tree.children(t).iter().map(|&c| (c, 0.0)));
            }
            frontier = next;
        }
    }

    fn check(&mut self, candidates: &mut Vec<(i32, f32)>) {
        let data = candidates.iter().map(|&(t, l)| LlamaTokenData::new(LlamaToken(t), l, 0.0)).collect();
        let mut array = LlamaTokenDataArray::new(data, false);
        self.sampler.apply(&mut array);
        candidates.clear();
        candidates.extend(array.data.iter().filter(|d| d.logit() > f32::NEG_INFINITY).map(|d| (d.id().0, d.logit())));
    }

    /// Advances past a sampled token (one the grammar allowed, as a [`Filter`]).
    pub(crate) fn accept(&mut self, token: i32) {
        self.sampler.accept(LlamaToken(token));
    }

    /// Advances past a token sampled while [`Grammar::waiting`], whose text (special tokens
    /// rendered) is `piece`: the trigger may be in it.
    pub(crate) fn accept_waiting(&mut self, token: i32, piece: &[u8]) {
        self.sampler.accept(LlamaToken(token));
        if let Some(w) = &mut self.waiting {
            w.tail.extend_from_slice(piece);
            if w.tail.windows(w.trigger.len()).any(|window| window == w.trigger.as_slice()) {
                self.waiting = None;
            } else {
                let keep = w.trigger.len().saturating_sub(1);
                let drop = w.tail.len().saturating_sub(keep);
                w.tail.drain(..drop);
            }
        }
    }
}

/// Keeps the tokens whose text the grammar allows next (an end-of-generation token only when the
/// text so far is a whole sentence of the language).
///
/// llama.cpp checks token by token, about 45 ms over Gemma's 262,144 tokens; a long list, or the
/// whole vocabulary, is instead found by walking the vocabulary's prefix tree from its roots,
/// checking a token's children only when the grammar allows the token: a text whose prefix is
/// refused is refused whole, so the walk finds exactly what the full check would, in a few
/// hundred checks where the grammar allows little.
impl Filter for Grammar {
    fn retain(&mut self, candidates: &mut Vec<(i32, f32)>) {
        if candidates.len() < TREE_FROM {
            self.check(candidates);
            return;
        }
        self.walk(&mut Vec::new());
        candidates.retain(|c| self.marks.get(c.0 as usize).copied().unwrap_or(false));
    }

    fn allowed(&mut self, _n: usize, out: &mut Vec<i32>) {
        self.walk(out);
    }
}

/// A vocabulary as a tree of texts: a token's parent is the token whose text is the longest
/// proper prefix of its own (texts as the grammar sees them: special tokens rendered, byte
/// tokens as their byte). Roots: tokens with no such prefix, and the end-of-generation tokens.
/// Tokens with no text are left out (the grammar refuses them).
struct PrefixTree {
    roots: Vec<i32>,
    /// Children of token `t`: `children[child_start[t]..child_start[t + 1]]`.
    child_start: Vec<u32>,
    children: Vec<i32>,
}

impl PrefixTree {
    fn of(model: &LlamaModel) -> Self {
        let vocab = model.vocab();
        let n = model.n_vocab().max(0) as usize;
        // Every token's text in one buffer (token `t`'s is `text[start[t]..start[t + 1]]`), and
        // whether it has one the grammar can see: a few allocations, not one per token.
        let (mut text, mut start, mut seen) = (Vec::new(), Vec::with_capacity(n + 1), Vec::with_capacity(n));
        let mut piece = Vec::new();
        for t in 0..n {
            let token = LlamaToken(t as i32);
            start.push(text.len());
            // End tokens have a text too, but the grammar judges them by what they are.
            if vocab.is_eog(token) {
                seen.push(true);
                continue;
            }
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, true, None);
            seen.push(!piece.is_empty() && piece[0] != 0);
            if seen[t] {
                text.extend_from_slice(&piece);
            }
        }
        start.push(text.len());
        let piece_of = |t: usize| seen[t].then(|| &text[start[t]..start[t + 1]]);
        let mut by_text: FxHashMap<&[u8], i32> = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for t in 0..n {
            if let Some(p) = piece_of(t).filter(|p| !p.is_empty()) {
                by_text.entry(p).or_insert(t as i32);
            }
        }
        let mut parent = vec![-1i32; n];
        let mut roots = Vec::new();
        for (t, parent) in parent.iter_mut().enumerate() {
            let Some(p) = piece_of(t) else { continue };
            match (1..p.len()).rev().find_map(|len| by_text.get(&p[..len])) {
                Some(&q) => *parent = q,
                None => roots.push(t as i32),
            }
        }
        let mut counts = vec![0u32; n + 1];
        for &q in parent.iter().filter(|&&q| q >= 0) {
            counts[q as usize + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let child_start = counts;
        let mut fill = child_start.clone();
        let mut children = vec![0i32; *child_start.last().unwrap_or(&0) as usize];
        for (t, &q) in parent.iter().enumerate().filter(|(_, &q)| q >= 0) {
            children[fill[q as usize] as usize] = t as i32;
            fill[q as usize] += 1;
        }
        Self { roots, child_start, children }
    }

    fn children(&self, t: i32) -> &[i32] {
        let t = t as usize;
        match (self.child_start.get(t), self.child_start.get(t + 1)) {
            (Some(&a), Some(&b)) => &self.children[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// A model's compiled grammars, by the text they were compiled from, and its vocabulary's tree.
#[derive(Default)]
pub(crate) struct Grammars {
    compiled: Mutex<HashMap<String, LlamaSampler>>,
    tree: OnceLock<Arc<PrefixTree>>,
}

impl Grammars {
    /// The grammar of `structured` for `model`, compiled on first use; lazy, when `trigger` is
    /// given: it constrains the output from where the trigger first appears.
    pub(crate) fn get(&self, model: &LlamaModel, structured: &Structured, trigger: Option<&str>) -> Result<Grammar> {
        let key = match structured {
            Structured::Json(schema) => format!("json:{schema}"),
            Structured::Gbnf(grammar) => format!("gbnf:{grammar}"),
        };
        let key = match trigger {
            Some(t) => format!("lazy:{t}:{key}"),
            None => key,
        };
        let waiting = || trigger.map(|t| Waiting { trigger: t.as_bytes().to_vec(), tail: Vec::new() });
        let started = std::time::Instant::now();
        let tree = Arc::clone(self.tree.get_or_init(|| Arc::new(PrefixTree::of(model))));
        if let Some(compiled) = lock(&self.compiled).get(&key) {
            return Ok(Grammar { sampler: compiled.clone(), tree, marks: Vec::new(), waiting: waiting() });
        }
        let gbnf = match structured {
            Structured::Json(schema) => json_schema_grammar(schema)?,
            Structured::Gbnf(grammar) => grammar.clone(),
        };
        let compiled = match trigger {
            None => LlamaSampler::grammar(model, &gbnf, "root"),
            Some(t) => {
                // The trigger as a token too, where the vocabulary has it as one (a control token).
                let tokens = match model.vocab().tokenize(t.as_bytes(), false, true)[..] {
                    [token] => vec![token],
                    _ => Vec::new(),
                };
                LlamaSampler::grammar_lazy(model, &gbnf, "root", [t], &tokens)
            }
        };
        let compiled = compiled.map_err(|e| {
            let what = match structured {
                Structured::Json(_) => "the grammar of the JSON schema",
                Structured::Gbnf(_) => "the GBNF grammar",
            };
            let why = match e {
                GrammarError::RootNotFound => "has no rule `root`",
                GrammarError::GrammarNullBytes => "contains a NUL character",
                _ => "does not parse (llama.cpp's log says where), or a rule is undefined or left-recursive",
            };
            Error::InvalidConfig(format!("structured: {what} {why}"))
        })?;
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, rules = gbnf.lines().count(), "grammar compiled");
        let mut cache = lock(&self.compiled);
        if cache.len() >= CACHED_GRAMMARS {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        Ok(Grammar { sampler: compiled, tree, marks: Vec::new(), waiting: waiting() })
    }
}

/// llama.cpp's JSON-schema-to-GBNF converter (its `common` library, as llama-server uses), with
/// a string's characters held to Unicode's: llama.cpp's grammar decodes `F5`-`F7` lead bytes as
/// code points past U+10FFFF, which no UTF-8 decoder takes. A random-weight model wrote one into
/// a `maxLength` 12 string: one character to the grammar, four U+FFFD to everyone else, and a
/// 15-character string that broke its schema.
pub(crate) fn json_schema_grammar(schema: &serde_json::Value) -> Result<String> {
    let gbnf = llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|_| {
        Error::InvalidConfig(
            "structured: the JSON schema uses what llama.cpp's converter does not support (an unknown `$ref`, \
             a `pattern` it cannot translate, or a wrong type for a keyword)"
                .into(),
        )
    })?;
    Ok(gbnf.replace(STRING_CHAR, UNICODE_STRING_CHAR))
}

/// The class of a JSON string's plain characters in llama.cpp's converter's output.
const STRING_CHAR: &str = r#"[^"\\\x7F\x00-\x1F]"#;
/// The same, without the values past U+10FFFF that llama.cpp's UTF-8 decoding admits.
const UNICODE_STRING_CHAR: &str = r#"[^"\\\x7F\x00-\x1F\U00110000-\U7FFFFFFF]"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schemas_become_gbnf_with_a_root_rule() {
        let g = json_schema_grammar(&serde_json::json!({
            "type": "object", "properties": {"b": {"type": "integer"}, "a": {"enum": ["x", "y"]}},
            "required": ["b", "a"], "additionalProperties": false
        }))
        .expect("converts");
        let root = g.lines().find(|l| l.starts_with("root ::=")).unwrap_or_else(|| panic!("no root rule: {g}"));
        // Properties keep the schema's order.
        assert!(root.find("b-kv") < root.find("a-kv") && root.contains("a-kv"), "{g}");
        // A string's characters stop at U+10FFFF (the converter's class is still the one replaced).
        let g = json_schema_grammar(&serde_json::json!({"type": "string", "maxLength": 12})).expect("converts");
        assert!(g.contains(UNICODE_STRING_CHAR) && !g.contains(STRING_CHAR), "{g}");
        let bad = json_schema_grammar(&serde_json::json!({"$ref": "#/$defs/missing"}));
        assert!(matches!(bad, Err(Error::InvalidConfig(_))), "{bad:?}");
    }
}
