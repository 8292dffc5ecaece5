//! The modules of `src/runtime` form layers: each may import only the modules
//! listed before it in [`LAYERS`], so there is no cycle among them and a
//! newcomer can read them from the bottom up. A module is a file of
//! `src/runtime/` or a folder of it with everything inside; imports inside one
//! folder are its own business.
//!
//! Reads the source text, not the compiler's view: every path that starts with
//! `crate::runtime::`, `super::` or `self::` (a `use` or an inline path, groups
//! `{a, b}` included), resolved from the file's place, outside comments. Test
//! code counts too. `src/runtime/mod.rs` itself (the shared `Node`, socket
//! helpers) is outside the order: every layer may use it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. A module may import those listed before it, in its own layer
/// or a lower one; never one listed after it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "plain values and helpers that import no other runtime module",
        &[
            "gate",
            "messages",
            "doorbell",
            "conns",
            "state",
            "auth",
            "tls",
            "sealed",
            "protocol_errors",
            "metrics",
            "notify",
            "process",
            "supervisor",
        ],
    ),
    (
        "one shard's way to the other shards of its node",
        &["waiters", "siblings"],
    ),
    (
        "client sockets, and the `watch` log lines sent on them",
        &["uring", "stream", "watch"],
    ),
    (
        "the node's cluster state, and links to other nodes",
        &["cluster"],
    ),
    ("one shard's shared context", &["ctx"]),
    ("one client connection: parse, route, reply", &["conn"]),
    (
        "the shard loop and the control thread",
        &["shard", "control"],
    ),
    ("start-up and joining", &["start", "launch"]),
];

/// The module path of a source file, as `["runtime", "cluster", "peer"]`.
fn module_path(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.strip_suffix(".rs").expect("a .rs file");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source text without `//` comments (doc links name modules too) and with
/// string and character literals emptied, as they could hold anything.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
            }
            // A character literal ('x', '\n'); a lifetime ('a) stays.
            '\'' if chars.get(i + 1) == Some(&'\\') => {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                out.push_str("' '");
            }
            '\'' if chars.get(i + 2) == Some(&'\'') => {
                i += 2;
                out.push_str("' '");
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push(Token::PathSep);
                i += 1;
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            c if c.is_whitespace() => {}
            _ => out.push(Token::Other),
        }
        i += 1;
    }
    out
}

/// Collects the paths that the tree starting at `tokens[*i]` (just after a
/// `::`) names, each as `prefix` plus its first segment.
fn paths_after(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    match tokens.get(*i) {
        Some(Token::Ident(name)) => {
            *i += 1;
            let mut path = prefix.to_vec();
            if name == "super" {
                path.pop();
            } else if name != "self" {
                path.push(name.clone());
            }
            if tokens.get(*i) == Some(&Token::PathSep) && path.len() < 2 {
                // Still above the runtime's modules (`super::super::x`).
                *i += 1;
                paths_after(tokens, i, &path, out);
            } else {
                out.push(path);
            }
        }
        Some(Token::Open) => {
            *i += 1;
            let mut depth = 0;
            let mut at_item = true;
            while *i < tokens.len() {
                match &tokens[*i] {
                    Token::Open => depth += 1,
                    Token::Close if depth == 0 => break,
                    Token::Close => depth -= 1,
                    Token::Comma if depth == 0 => at_item = true,
                    Token::Ident(_) if at_item && depth == 0 => {
                        at_item = false;
                        paths_after(tokens, i, prefix, out);
                        continue;
                    }
                    _ => {}
                }
                *i += 1;
            }
        }
        _ => {}
    }
}

/// The runtime modules (second path segment) that the file at `module` names.
fn imports(module: &[String], code: &str) -> BTreeSet<String> {
    let tokens = tokens(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let start = match &tokens[i] {
            Token::Ident(name) if i == 0 || tokens[i - 1] != Token::PathSep => name.as_str(),
            _ => {
                i += 1;
                continue;
            }
        };
        let prefix: Vec<String> = match start {
            "crate" => Vec::new(),
            "super" => module[..module.len() - 1].to_vec(),
            "self" => module.to_vec(),
            _ => {
                i += 1;
                continue;
            }
        };
        i += 1;
        if tokens.get(i) == Some(&Token::PathSep) {
            i += 1;
            paths_after(&tokens, &mut i, &prefix, &mut paths);
        }
    }
    paths
        .into_iter()
        .filter(|p| p.len() >= 2 && p[0] == "runtime")
        .map(|p| p[1].clone())
        .collect()
}

#[test]
fn runtime_modules_import_only_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order: Vec<&str> = LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let mut files = Vec::new();
    rust_files(&src.join("runtime"), &mut files);
    files.sort();

    let mut modules = BTreeSet::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_path(file, &src);
        let Some(own) = module.get(1) else { continue };
        modules.insert(own.clone());
        let text = std::fs::read_to_string(file).expect("read a source file");
        let own_at = order.iter().position(|m| m == own);
        for import in imports(&module, &code_only(&text)) {
            if &import == own {
                continue;
            }
            let import_at = order.iter().position(|m| *m == import);
            if let (Some(own_at), Some(import_at)) = (own_at, import_at) {
                if import_at > own_at {
                    upward.push(format!(
                        "{} imports runtime::{import}, which LAYERS puts above runtime::{own}",
                        module.join("::"),
                    ));
                }
            }
        }
    }
    let unlisted: Vec<&String> = modules
        .iter()
        .filter(|m| !order.contains(&m.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "runtime modules missing from LAYERS in tests/layering.rs: {unlisted:?}"
    );
    let gone: Vec<&&str> = order.iter().filter(|m| !modules.contains(**m)).collect();
    assert!(
        gone.is_empty(),
        "LAYERS names modules that do not exist: {gone:?}"
    );
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn imports_are_found_in_uses_groups_and_inline_paths() {
    let module: Vec<String> = ["runtime", "cluster", "peer"].map(String::from).to_vec();
    let code = code_only(
        "use super::node::ClusterNode;\n\
         use crate::runtime::{auth::handshake, messages::{Ask, Answer}};\n\
         use super::super::state;\n\
         // use crate::runtime::shard;\n\
         let s = \"crate::runtime::conn\";\n\
         let q = '\"'; crate::runtime::waiters::Wait;\n\
         crate::runtime::uring::with(x);\n",
    );
    let found: Vec<String> = imports(&module, &code).into_iter().collect();
    assert_eq!(
        found,
        ["auth", "cluster", "messages", "state", "uring", "waiters"]
    );
}
