//! The library's layers, checked on its source: every `crate::` and `super::`
//! path in `src/` is read as an arrow from the file that writes it to the file
//! that defines the module it names, and
//! - no two files reach each other through arrows (no file cycle),
//! - at every level of the module tree, no two sibling modules reach each other
//!   (no module cycle: `agent` and `commands`, `xmpp/router.rs` and
//!   `xmpp/session.rs`),
//! - a top-level module only imports the modules of its own layer or below, as
//!   listed in [`LAYERS`] (the table of `docs/architecture.md`).
//!
//! Code under `#[cfg(test)]` is left out: a unit test may reach up for its
//! scaffolding. Paths inside strings and comments are not arrows.
//!
//! This is a reading of the source, not of the compiler's name resolution: a
//! name re-exported by a `mod.rs` counts as an arrow to that `mod.rs`, while a
//! `mod.rs` naming its own children by relative paths (`pub use client::X`, the
//! face of a folder) draws no arrow. The simulator's crate is checked for cycles
//! too (it has no layers: it is one product of its own).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, from the bottom up. A module may use the modules of its own layer
/// (without a cycle) and of the layers below; never those above.
const LAYERS: &[(&str, &[&str])] = &[
    ("model and codec", &["quoalise"]),
    ("foundations", &["time", "metrics", "systemd"]),
    ("configuration", &["config"]),
    ("operations plumbing", &["logging", "health"]),
    ("durable state", &["store"]),
    ("Enedis upstream", &["upstream"]),
    ("XMPP plumbing", &["xmpp"]),
    ("the request path", &["agent"]),
    (
        "what peers, consumers and the clock see",
        &["commands", "web", "push"],
    ),
    ("the running agent and its command line", &["daemon", "cli"]),
    ("binaries", &["bin"]),
];

fn layer_of(layers: &[(&'static str, &[&str])], module: &str) -> Option<(usize, &'static str)> {
    layers
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(rank, (name, _))| (rank, *name))
}

/// A module path inside the library: `["xmpp", "router"]`; the crate root is `[]`.
type ModPath = Vec<String>;

struct Source {
    root: PathBuf,
    /// Every file of the library, by its module path.
    files: BTreeMap<ModPath, PathBuf>,
}

impl Source {
    fn read(root: &Path) -> Source {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.insert(module_path(root, &path), path);
                }
            }
        }
        Source {
            root: root.to_path_buf(),
            files,
        }
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.root.parent().unwrap_or(&self.root))
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The file that defines the longest module prefix of `path`.
    fn resolve(&self, path: &[String]) -> Option<&ModPath> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.files.get_key_value(&path[..n]).map(|(k, _)| k))
    }
}

/// `src/xmpp/router.rs` -> `["xmpp", "router"]`, `src/xmpp/mod.rs` -> `["xmpp"]`,
/// `src/main.rs` and `src/bin/x.rs` -> `["bin", …]` (the binaries, one layer).
fn module_path(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        [one] if one == "lib" => return Vec::new(),
        [one] if one == "main" => return vec!["bin".into(), "main".into()],
        _ => {}
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The text of `code` without comments, string and char literals, and without the
/// items under `#[cfg(test)]`.
fn code_only(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    without_test_items(&out)
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Drops each item that follows a `#[cfg(test)]` attribute (a `mod tests { … }`,
/// a `use`, a function): up to its `;` or its matching `}`.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The paths that `code` names: every leaf of every `use` tree, and every
/// `crate::a::b` / `super::a` / `quoalise_agent::a` path elsewhere.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code.to_owned();
    // `use` trees first, then what is left of the code.
    let mut others = String::new();
    while let Some(at) = find_use(&rest) {
        others.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        expand_use_tree(&after[..end], &mut Vec::new(), &mut paths);
        rest = after[end..].to_owned();
    }
    others.push_str(&rest);
    let tokens = tokens(&others);
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let starts = matches!(t, "crate" | "super" | "quoalise_agent");
        let path_before = i > 0 && tokens[i - 1] == "::";
        if starts && !path_before && tokens.get(i + 1).is_some_and(|n| n == "::") {
            let mut path = vec![t.to_owned()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|n| n == "::")
                && tokens.get(j + 1).is_some_and(|n| is_ident(n))
            {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            paths.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    paths
}

/// Where a `use` item starts: the word `use` at the start of a statement.
fn find_use(code: &str) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(k) = code[from..].find("use ") {
        let at = from + k;
        let before = code[..at].trim_end();
        let starts_statement = before.is_empty()
            || before.ends_with(';')
            || before.ends_with('{')
            || before.ends_with('}')
            || before.ends_with(']')
            || before.ends_with("pub")
            || before.ends_with(')');
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if word_start && starts_statement {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// `crate::{a::{B, C}, d::*}` -> `crate::a::B`, `crate::a::C`, `crate::d`.
fn expand_use_tree(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let depth = prefix.len();
        prefix.extend(segments(head));
        let mut level = 0;
        let mut start = 0;
        for (k, ch) in inner.char_indices() {
            match ch {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    expand_use_tree(&inner[start..k], prefix, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand_use_tree(&inner[start..], prefix, out);
        prefix.truncate(depth);
    } else {
        let leaf = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix.clone();
        path.extend(segments(leaf));
        if !path.is_empty() {
            out.push(path);
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
        .map(str::to_owned)
        .collect()
}

/// The library module that `path`, written in the file of module `from`, names.
fn absolute(from: &ModPath, path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    match first.as_str() {
        "crate" | "quoalise_agent" => Some(path[1..].to_vec()),
        "super" => {
            // A file's module path already names its module (`mod.rs` is its
            // folder), so each `super` is one step up from it.
            let mut base = from.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

/// An arrow between two files, with the path that draws it.
struct Arrow {
    from: ModPath,
    to: ModPath,
    named: String,
}

fn arrows(source: &Source) -> Vec<Arrow> {
    let mut out = Vec::new();
    for (module, file) in &source.files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let in_binary = module.first().is_some_and(|m| m == "bin");
        for path in named_paths(&code_only(&text)) {
            // In a binary, `crate::` is the binary itself; the library is `quoalise_agent::`.
            if in_binary && path[0] != "quoalise_agent" {
                continue;
            }
            let Some(target) = absolute(module, &path) else {
                continue;
            };
            let Some(to) = source.resolve(&target) else {
                continue;
            };
            if to != module && !to.is_empty() {
                out.push(Arrow {
                    from: module.clone(),
                    to: to.clone(),
                    named: path.join("::"),
                });
            }
        }
    }
    out
}

/// The cycles of a directed graph (its strongly connected components of two or
/// more nodes), by Tarjan's algorithm.
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct Walk<'a, N: Ord> {
        edges: &'a BTreeMap<N, BTreeSet<N>>,
        index: BTreeMap<&'a N, usize>,
        low: BTreeMap<&'a N, usize>,
        stack: Vec<&'a N>,
        on_stack: BTreeSet<&'a N>,
        found: Vec<Vec<N>>,
    }
    impl<'a, N: Ord + Clone> Walk<'a, N> {
        fn visit(&mut self, n: &'a N) {
            let i = self.index.len();
            self.index.insert(n, i);
            self.low.insert(n, i);
            self.stack.push(n);
            self.on_stack.insert(n);
            if let Some(next) = self.edges.get(n) {
                for m in next {
                    let m = self.edges.get_key_value(m).map(|(k, _)| k).unwrap_or(m);
                    if !self.index.contains_key(m) {
                        self.visit(m);
                        let low = self.low[m].min(self.low[n]);
                        self.low.insert(n, low);
                    } else if self.on_stack.contains(m) {
                        let low = self.index[m].min(self.low[n]);
                        self.low.insert(n, low);
                    }
                }
            }
            if self.low[n] == self.index[n] {
                let mut component = Vec::new();
                while let Some(m) = self.stack.pop() {
                    self.on_stack.remove(m);
                    component.push(m.clone());
                    if m == n {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for n in edges.keys() {
        if !walk.index.contains_key(n) {
            walk.visit(n);
        }
    }
    walk.found
}

fn show(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

/// Every problem of the library's layering, in words; none when it is sound.
fn problems(src: &Path, layers: &[(&'static str, &[&str])]) -> Vec<String> {
    let source = Source::read(src);
    let arrows = arrows(&source);
    let mut problems = Vec::new();

    // At every level of the module tree: the children of one module, each with
    // everything below it, must not reach each other in a circle. The leaves of
    // that tree are the files, so this also finds file cycles.
    let mut levels: BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<ModPath>>> = BTreeMap::new();
    for arrow in &arrows {
        let common = arrow
            .from
            .iter()
            .zip(&arrow.to)
            .take_while(|(a, b)| a == b)
            .count();
        // An arrow to the module's own mod.rs (or from it) is an arrow of the
        // level above, between the module and that mod.rs as a file.
        let parent: ModPath = arrow.from[..common].to_vec();
        let child = |path: &ModPath| -> ModPath {
            if path.len() > common {
                path[..=common].to_vec()
            } else {
                let mut own = path.clone();
                own.push("(mod.rs)".into());
                own
            }
        };
        levels
            .entry(parent)
            .or_default()
            .entry(child(&arrow.from))
            .or_default()
            .insert(child(&arrow.to));
    }
    for (parent, edges) in &levels {
        for circle in cycles(edges) {
            let members: BTreeSet<&ModPath> = circle.iter().collect();
            // The member of this circle that holds a file, if any.
            let member_of = |p: &ModPath| -> Option<ModPath> {
                if !p.starts_with(parent) {
                    return None;
                }
                let child = if p.len() > parent.len() {
                    p[..=parent.len()].to_vec()
                } else {
                    let mut own = p.clone();
                    own.push("(mod.rs)".into());
                    own
                };
                members.contains(&child).then_some(child)
            };
            let mut ties: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
            for a in arrows.iter().filter(
                |a| matches!((member_of(&a.from), member_of(&a.to)), (Some(f), Some(t)) if f != t),
            ) {
                ties.entry((show(&a.from), show(&a.to)))
                    .or_default()
                    .insert(a.named.rsplit("::").next().unwrap_or(&a.named));
            }
            let ties: Vec<String> = ties
                .into_iter()
                .map(|((from, to), names)| {
                    format!(
                        "    {from} -> {to}: {}",
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect();
            problems.push(format!(
                "a cycle inside {}: {} reach each other:\n{}",
                show(parent),
                circle.iter().map(show).collect::<Vec<_>>().join(", "),
                ties.join("\n")
            ));
        }
    }

    // The layers, between top-level modules: one line per file and module above it.
    let mut upward: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for arrow in &arrows {
        let (Some(from), Some(to)) = (arrow.from.first(), arrow.to.first()) else {
            continue;
        };
        if from == to || layers.is_empty() {
            continue;
        }
        match (layer_of(layers, from), layer_of(layers, to)) {
            (Some((f, f_name)), Some((t, t_name))) if t > f => {
                let file = source.relative(&source.files[&arrow.from]);
                upward
                    .entry((
                        file,
                        format!("{to} ({t_name}) stands above {from} ({f_name})"),
                    ))
                    .or_default()
                    .insert(arrow.named.rsplit("::").next().unwrap_or(&arrow.named));
            }
            (None, _) => problems.push(format!("module {from} is in no layer of LAYERS")),
            (_, None) => problems.push(format!("module {to} is in no layer of LAYERS")),
            _ => {}
        }
    }
    for ((file, why), names) in upward {
        let names: Vec<&str> = names.into_iter().collect();
        problems.push(format!("{file} uses {}: {why}", names.join(", ")));
    }
    problems.sort();
    problems.dedup();
    problems
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn assert_sound(src: &Path, layers: &[(&'static str, &[&str])]) {
    let problems = problems(src, layers);
    assert!(
        problems.is_empty(),
        "{} layering problem(s) in {}:\n{}",
        problems.len(),
        src.display(),
        problems.join("\n")
    );
}

#[test]
fn the_agent_s_dependencies_point_down_its_layers() {
    assert_sound(&workspace().join("src"), LAYERS);
}

#[test]
fn the_simulator_has_no_cycle() {
    assert_sound(&workspace().join("crates/enedis-sim/src"), &[]);
}

/// The checker itself finds what it is meant to find: a file cycle, a module
/// cycle and an import up the layers, in a small tree written for the purpose.
#[test]
fn the_check_sees_cycles_and_upward_imports() {
    let dir = std::env::temp_dir().join(format!("layers-check-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().expect("a parent")).expect("a test directory");
        fs::write(file, text).expect("a test file");
    };
    write(
        "lib.rs",
        "pub mod quoalise;\npub mod agent;\npub mod commands;\n",
    );
    write("quoalise/mod.rs", "pub mod a;\npub mod b;\n");
    write(
        "quoalise/a.rs",
        "use super::b::B; // crate::agent in a comment\npub struct A;\n",
    );
    write(
        "quoalise/b.rs",
        "use crate::quoalise::a::A;\nconst S: &str = \"crate::commands\";\npub struct B;\n",
    );
    write("agent.rs", "use crate::{commands::C, quoalise::a::A};\n");
    write(
        "commands.rs",
        "pub struct C;\nfn f() { crate::agent::g(); }\n#[cfg(test)]\nmod tests { use crate::quoalise::b::B; }\n",
    );
    let layers: &[(&'static str, &[&str])] = &[
        ("bottom", &["quoalise"]),
        ("middle", &["agent"]),
        ("top", &["commands"]),
    ];
    let found = problems(&dir, layers);
    let _ = fs::remove_dir_all(&dir);
    let text = found.join("\n");
    assert!(
        text.contains("a cycle inside quoalise: quoalise::a, quoalise::b"),
        "{text}"
    );
    assert!(
        text.contains("a cycle inside crate: agent, commands"),
        "{text}"
    );
    assert!(
        text.contains("agent.rs uses C: commands (top) stands above agent (middle)"),
        "{text}"
    );
    // Comments, strings and test modules draw no arrow.
    assert!(!text.contains("quoalise::a -> agent"), "{text}");
    assert!(!text.contains("quoalise::b -> commands"), "{text}");
    assert!(!text.contains("commands -> quoalise"), "{text}");
    assert_eq!(found.len(), 3, "{text}");
}
