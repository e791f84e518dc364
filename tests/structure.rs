//! The shape of the code, pinned down: the decision is a pure core that imports nothing else of
//! the crate, and no file imports another that imports it back (a pair that needs each other is
//! one thing split in two, or two things tangled). Read from the source text: every `crate::…`,
//! `super::…` and (in a `mod.rs`) child-module path outside comments and test modules, resolved to
//! the file that defines what it names (a `pub use` re-export is followed to its origin).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

struct Source {
    module: Module,
    /// Whether the file is its module's root (`mod.rs`, `lib.rs`): `super` then names its parent.
    root: bool,
    code: String,
}

fn sources() -> Vec<Source> {
    let mut out = vec![];
    let mut dirs = vec![PathBuf::from("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file is readable");
                out.push(source(&path, &text));
            }
        }
    }
    out
}

fn source(path: &Path, text: &str) -> Source {
    let relative = path.strip_prefix("src").expect("under src").with_extension("");
    let mut module: Module = relative.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let root = matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main"));
    if root {
        module.pop();
    }
    Source { module, root, code: without_comments_and_tests(text) }
}

/// The code a build without tests compiles: comments and `#[cfg(test)] mod tests { … }` removed.
fn without_comments_and_tests(text: &str) -> String {
    let code: String = text
        .lines()
        .map(|line| match line.find("//") {
            // Not inside a string literal that happens to hold `//` (a URL): good enough here,
            // since a path after `//` on the same line as code is never an import.
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    match code.find("#[cfg(test)]\nmod tests") {
        Some(i) => code[..i].to_string(),
        None => code,
    }
}

/// Each `a::b::c` path in `code` (identifiers joined by `::`), with its first segment.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut segments = vec![];
        let mut j = i;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segments.push(code[s..j].to_string());
            if code[j..].starts_with("::") && code[j + 2..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                j += 2;
            } else if code[j..].starts_with("::{") {
                // `use a::{b, c::d}`: each member, prefixed.
                let close = code[j..].find('}').map_or(code.len(), |k| j + k);
                for member in code[j + 3..close].split(',') {
                    let member: Vec<String> =
                        member.trim().split("::").map(|s| s.trim().trim_start_matches("{").to_string()).collect();
                    if member.first().is_some_and(|m| !m.is_empty()) {
                        out.push([segments.clone(), member].concat());
                    }
                }
                j = close;
                break;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            out.push(segments);
        }
        i = j.max(i + 1);
    }
    out
}

struct Crate {
    files: BTreeMap<Module, Source>,
    /// `pub use` re-exports: (module, name) -> the module the name comes from.
    reexports: BTreeMap<(Module, String), Module>,
}

impl Crate {
    fn read() -> Self {
        let files: BTreeMap<Module, Source> = sources().into_iter().map(|s| (s.module.clone(), s)).collect();
        let mut krate = Self { files, reexports: BTreeMap::new() };
        let mut reexports = BTreeMap::new();
        for (module, source) in &krate.files {
            for statement in source.code.split("pub use ").skip(1) {
                let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
                for path in paths(statement) {
                    if let Some(target) = krate.resolve(module, source.root, &path, false) {
                        let name = path.last().expect("a path has segments").clone();
                        reexports.insert((module.clone(), name), target);
                    }
                }
            }
        }
        krate.reexports = reexports;
        krate
    }

    /// The file `path`, written in `module`, names; `None` outside the crate.
    fn resolve(&self, module: &Module, root: bool, path: &[String], follow: bool) -> Option<Module> {
        let (mut base, rest) = match path.first()?.as_str() {
            "crate" => (vec![], &path[1..]),
            "super" => {
                let mut parent = module.clone();
                parent.pop();
                let _ = root;
                (parent, &path[1..])
            }
            "self" => (module.clone(), &path[1..]),
            first if root && self.files.contains_key(&[module.clone(), vec![first.to_string()]].concat()) => {
                (module.clone(), path)
            }
            _ => return None,
        };
        let mut rest = rest.to_vec();
        // `super::super::x`
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest.remove(0);
        }
        let mut found = None;
        for n in (0..=rest.len()).rev() {
            let candidate = [base.clone(), rest[..n].to_vec()].concat();
            if self.files.contains_key(&candidate) {
                found = Some((candidate, rest.get(n).cloned()));
                break;
            }
        }
        let (target, item) = found?;
        if follow
            && let Some(item) = item
            && let Some(origin) = self.reexports.get(&(target.clone(), item))
        {
            return Some(origin.clone());
        }
        Some(target)
    }

    /// Who imports whom: each file's module and the modules whose items it uses.
    fn imports(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (module, source) in &self.files {
            let code: String = source
                .code
                .split('\n')
                .filter(|line| !line.trim_start().starts_with("pub use ") && !line.trim_start().starts_with("pub mod "))
                .collect::<Vec<_>>()
                .join("\n");
            for path in paths(&code) {
                if let Some(target) = self.resolve(module, source.root, &path, true)
                    && &target != module
                {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        edges
    }
}

fn name(module: &Module) -> String {
    if module.is_empty() { "crate root".into() } else { module.join("::") }
}

#[test]
fn the_decision_imports_nothing_else_of_the_crate() {
    let krate = Crate::read();
    let in_decision = |m: &Module| m.first().is_some_and(|m| m == "decision");
    assert!(krate.files.keys().filter(|m| in_decision(m)).count() >= 5, "the decision's files are read");
    let imports = krate.imports();
    let decision: Vec<_> = imports.iter().filter(|(m, _)| in_decision(m)).collect();
    assert!(!decision.is_empty(), "the decision's imports are read");
    let outside: Vec<String> = decision
        .iter()
        .flat_map(|(m, targets)| {
            targets
                .iter()
                .filter(|t| t.first().is_none_or(|t| t != "decision"))
                .map(move |t| format!("{} imports {}", name(m), name(t)))
        })
        .collect();
    assert!(outside.is_empty(), "decision/ must stay pure: {outside:#?}");
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let imports = Crate::read().imports();
    assert!(imports.len() > 50, "the crate's files are read: {}", imports.len());
    let mut pairs = vec![];
    for (a, targets) in &imports {
        for b in targets {
            if a < b && imports.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push(format!("{} <-> {}", name(a), name(b)));
            }
        }
    }
    assert!(pairs.is_empty(), "files that import each other: {pairs:#?}");
}

#[test]
fn the_reader_sees_an_import_cycle_when_there_is_one() {
    // The check itself can fail: two files naming each other are found, through a re-export too.
    let mut krate = Crate { files: BTreeMap::new(), reexports: BTreeMap::new() };
    let file = |module: &[&str], root: bool, code: &str| Source {
        module: module.iter().map(|s| s.to_string()).collect(),
        root,
        code: without_comments_and_tests(code),
    };
    for s in [
        file(&["a"], true, "pub mod b;\npub use b::Thing;\npub struct Other;\n"),
        file(&["a", "b"], false, "use super::Other;\npub struct Thing;\n"),
        file(&["c"], false, "use crate::a::Thing;\n"),
        file(&["a", "d"], false, "fn f() -> crate::a::Thing { todo!() } // crate::c::X\n"),
    ] {
        krate.files.insert(s.module.clone(), s);
    }
    krate.reexports.insert((vec!["a".into()], "Thing".into()), vec!["a".into(), "b".into()]);
    let imports = krate.imports();
    let m = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Module>();
    assert_eq!(imports[&m(&["c"])], BTreeSet::from([m(&["a", "b"])]), "a re-export is followed to its origin");
    assert_eq!(imports[&m(&["a", "b"])], BTreeSet::from([m(&["a"])]));
    assert!(!imports.contains_key(&m(&["a"])), "a `pub use` is not a use: {imports:?}");
    assert_eq!(imports[&m(&["a", "d"])], BTreeSet::from([m(&["a", "b"])]), "comments are not code");
}
