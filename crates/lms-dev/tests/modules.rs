//! No crate of the workspace has a cycle between its modules: each module (a file) imports only
//! from modules that never import it back, directly or through others. The edges are what a file
//! names: `crate::a::b`, `super::x`, `self::c`, `use` trees of those, and its child modules by
//! name (`worker::run`, `pub use store::ModelStore` at a crate's root); comments and a file's
//! `#[cfg(test)] mod tests` do not count. A path resolves to the longest module it starts with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the crate whose sources are in `src`, by path (`"engine::worker"`; the root is
/// `"crate"`), with its code.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, src, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("inside src").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            let name = if parts.is_empty() { "crate".to_owned() } else { parts.join("::") };
            out.insert(name, std::fs::read_to_string(&path).expect("a source file"));
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The code without comments and without the file's test module.
fn code(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let mut out = String::new();
    for line in source.lines() {
        let mut in_string = false;
        let mut end = line.len();
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            match bytes[i] {
                b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The items of a `use` tree's braces (`a, b::{c, d}, e as f`), each as a path.
fn expand(prefix: &str, body: &str, out: &mut Vec<String>) {
    let (mut depth, mut item) = (0, String::new());
    let mut items = Vec::new();
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        match item.split_once("::{") {
            Some((head, rest)) => expand(&format!("{prefix}::{head}"), rest.strip_suffix('}').unwrap_or(rest), out),
            None => out.push(format!("{prefix}::{}", item.split(" as ").next().unwrap_or(item))),
        }
    }
}

/// The paths a file's code names that start with `crate`, `super` or `self`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':');
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        let head = ["crate::", "super::", "self::"].into_iter().find(|h| rest.starts_with(h));
        let Some(head) = head.filter(|_| boundary) else {
            i += 1;
            continue;
        };
        // The path: identifiers and `::`, possibly ending in a brace group.
        let start = i;
        let mut j = i + head.len();
        while j < chars.len() && (is_ident(chars[j]) || (chars[j] == ':' && chars.get(j + 1) == Some(&':'))) {
            j += if chars[j] == ':' { 2 } else { 1 };
        }
        let path: String = chars[start..j].iter().collect();
        if chars.get(j) == Some(&'{') {
            let mut depth = 0;
            let mut k = j;
            while k < chars.len() {
                match chars[k] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            let body: String = chars[j + 1..k.min(chars.len())].iter().collect();
            expand(path.trim_end_matches("::"), &body, &mut out);
            i = k;
        } else {
            out.push(path.trim_end_matches("::").to_owned());
            i = j;
        }
    }
    out
}

/// The modules `name` uses.
fn uses(name: &str, source: &str, modules: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = code(source);
    let here: Vec<&str> = if name == "crate" { Vec::new() } else { name.split("::").collect() };
    let mut out = BTreeSet::new();
    for path in paths(&code) {
        let mut segments: Vec<&str> = path.split("::").collect();
        let mut base: Vec<&str> = match segments.first() {
            Some(&"crate") => Vec::new(),
            _ => here.clone(),
        };
        while let Some(&head) = segments.first() {
            match head {
                "crate" | "self" => {}
                "super" => {
                    base.pop();
                }
                _ => break,
            }
            segments.remove(0);
        }
        base.extend(segments);
        let target = (1..=base.len())
            .rev()
            .map(|n| base[..n].join("::"))
            .find(|m| modules.contains_key(m))
            .unwrap_or_else(|| "crate".to_owned());
        out.insert(target);
    }
    // Child modules named without `self::` (`worker::run`, `pub use store::ModelStore`).
    let prefix = if name == "crate" { String::new() } else { format!("{name}::") };
    for child in modules.keys().filter_map(|m| m.strip_prefix(&prefix)).filter(|c| !c.contains("::")) {
        if child == "crate" {
            continue;
        }
        let needle = format!("{child}::");
        let named = code.match_indices(&needle).any(|(at, _)| {
            let before = code[..at].chars().next_back();
            !before.is_some_and(|c| is_ident(c) || c == ':')
        });
        if named {
            out.insert(format!("{prefix}{child}"));
        }
    }
    out.remove(name);
    out
}

/// The cycles of the graph: its strongly connected components of more than one module.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w.as_str()]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w.as_str()) {
                    let low = self.low[v].min(self.index[w.as_str()]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().rposition(|s| *s == v).expect("on the stack");
                let component: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

fn check(krate: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
    let modules = modules(&src);
    assert!(modules.len() > 1, "no modules found in {}", src.display());
    let graph: BTreeMap<String, BTreeSet<String>> =
        modules.iter().map(|(name, source)| (name.clone(), uses(name, source, &modules))).collect();
    let report: Vec<String> = cycles(&graph)
        .iter()
        .map(|component| {
            let edges: Vec<String> = component
                .iter()
                .map(|m| {
                    let into: Vec<&str> =
                        graph[m].iter().filter(|t| component.contains(t)).map(String::as_str).collect();
                    format!("  {m} -> {}", into.join(", "))
                })
                .collect();
            format!("a cycle among {}:\n{}", component.join(", "), edges.join("\n"))
        })
        .collect();
    assert!(report.is_empty(), "{krate}:\n{}", report.join("\n"));
}

#[test]
fn the_library_has_no_module_cycles() {
    check("lmstudio");
}

#[test]
fn the_server_has_no_module_cycles() {
    check("lmstudio-server");
}

#[test]
fn the_cli_has_no_module_cycles() {
    check("lms");
    check("lms-dev");
}

/// The check finds a cycle where there is one: a parent that uses its child, which uses it back.
#[test]
fn a_cycle_is_found() {
    let modules: BTreeMap<String, String> = [
        ("crate".to_owned(), "mod a;\nmod b;\nuse a::X;\n".to_owned()),
        ("a".to_owned(), "use crate::b::{Y, self};\n// crate::c is a comment\n".to_owned()),
        ("b".to_owned(), "fn f() { super::a::X::new(); }\n".to_owned()),
        ("c".to_owned(), "use crate::{a::{X}, b as bee};\n".to_owned()),
    ]
    .into_iter()
    .collect();
    let graph: BTreeMap<String, BTreeSet<String>> =
        modules.iter().map(|(name, source)| (name.clone(), uses(name, source, &modules))).collect();
    assert_eq!(graph["crate"], ["a".to_owned()].into());
    assert_eq!(graph["a"], ["b".to_owned()].into());
    assert_eq!(graph["c"], ["a".to_owned(), "b".to_owned()].into());
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let mut cycle = found[0].clone();
    cycle.sort();
    assert_eq!(cycle, ["a", "b"]);
}

/// The workspace denies `unsafe`; one file, the engine's calls into llama.cpp that llama-cpp-2
/// does not wrap, allows it. No other file of any crate does.
#[test]
fn unsafe_code_is_allowed_in_one_file() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut allowing = Vec::new();
    for krate in std::fs::read_dir(&crates).expect("the crates folder") {
        let krate = krate.expect("an entry").path();
        for dir in ["src", "tests", "benches", "examples"].into_iter().filter(|d| krate.join(d).is_dir()) {
            for (name, source) in modules(&krate.join(dir)) {
                // Split, so that this file does not find itself.
                if code(&source).contains(concat!("allow(", "unsafe_code)")) {
                    let krate = krate.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    allowing.push(format!("{krate}/{dir}: {name}"));
                }
            }
        }
    }
    assert_eq!(allowing, ["lmstudio/src: engine::ffi"]);
}
