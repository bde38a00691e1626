//! Reads one source file's tokens for what the structure check needs: the `mod x;`
//! declarations that lead to other files, the inline modules, the module paths the
//! code refers to through `crate::`, `super::` and `self::`, and where the unit tests
//! begin. Everything under `#[cfg(test)]` is skipped, because test code may reach
//! anywhere. It must never touch the file system: callers hand it text.

use crate::source::{blank_comments_and_literals, tokenize, Token, TokenKind};

/// A module path inside one crate target, from its root: `["switch", "run"]`.
pub type ModulePath = Vec<String>;

/// What one file says about the module structure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileScan {
    /// `mod x;` declarations outside tests, as full module paths (inline modules
    /// included), in order of appearance.
    pub child_files: Vec<ModulePath>,
    /// `mod x { .. }` blocks outside tests, as full module paths.
    pub inline_modules: Vec<ModulePath>,
    /// Every resolved `crate::`/`super::`/`self::` path outside tests.
    pub references: Vec<Reference>,
    /// Names that `use` declarations bring into a module, so that a path through a
    /// re-export can be followed to where the item lives.
    pub imports: Vec<Import>,
    /// Lines before the first `#[cfg(test)]` module (the whole file without one).
    pub lines_before_tests: usize,
    /// The file is test code throughout (`#![cfg(test)]`).
    pub test_only: bool,
}

/// Module `from` names the absolute path `to` (a module or an item) on `line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub from: ModulePath,
    pub to: Vec<String>,
    pub line: usize,
}

/// `use` in `module` makes `name` stand for `target`: an absolute path when
/// `relative` is false, else a path starting at a child of `module` (`pub use
/// run::Switch;`) or at something outside the crate, which the graph tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub module: ModulePath,
    pub name: String,
    pub target: Vec<String>,
    pub relative: bool,
}

/// One path of a use tree (or a path in code): its segments as written, the line
/// it starts on, and the name it imports (`None` for a glob or a path in code).
#[derive(Debug)]
struct Leaf {
    segments: Vec<String>,
    line: usize,
    name: Option<String>,
}

/// Scans `source`, the file of module `module`.
pub fn scan_file(source: &str, module: &[String]) -> FileScan {
    let tokens = tokenize(&blank_comments_and_literals(source));
    let mut scan = FileScan {
        lines_before_tests: source.lines().count(),
        ..FileScan::default()
    };
    let mut walker = Walker {
        tokens: &tokens,
        module,
        inline: Vec::new(),
        depth: 0,
        scan: &mut scan,
    };
    walker.walk();
    scan
}

struct Walker<'a> {
    tokens: &'a [Token],
    module: &'a [String],
    /// Open inline modules: name and the brace depth outside them.
    inline: Vec<(String, usize)>,
    depth: usize,
    scan: &'a mut FileScan,
}

impl Walker<'_> {
    fn at(&self, i: usize) -> Option<&Token> {
        self.tokens.get(i)
    }

    fn punct_at(&self, i: usize, c: char) -> bool {
        self.at(i).is_some_and(|t| t.is_punct(c))
    }

    fn ident_at(&self, i: usize, word: &str) -> bool {
        self.at(i).is_some_and(|t| t.is_ident(word))
    }

    fn current_module(&self) -> ModulePath {
        let mut path = self.module.to_vec();
        path.extend(self.inline.iter().map(|(name, _)| name.clone()));
        path
    }

    fn walk(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            if let Some(after) = self.cfg_test_attribute(i) {
                if self.punct_at(i + 1, '!') {
                    self.scan.test_only = true;
                    self.scan.lines_before_tests = 0;
                    return;
                }
                i = self.skip_test_item(i, after);
                continue;
            }
            let token = &self.tokens[i];
            if token.is_punct('{') {
                self.depth += 1;
            } else if token.is_punct('}') {
                self.depth = self.depth.saturating_sub(1);
                if self.inline.last().is_some_and(|&(_, d)| d == self.depth) {
                    self.inline.pop();
                }
            } else if token.is_ident("mod") && !self.preceded_by_path_sep(i) {
                if let Some(name) = self.at(i + 1).and_then(Token::ident).map(str::to_owned) {
                    let mut path = self.current_module();
                    path.push(name.clone());
                    if self.punct_at(i + 2, ';') {
                        self.scan.child_files.push(path);
                        i += 3;
                        continue;
                    }
                    if self.punct_at(i + 2, '{') {
                        self.scan.inline_modules.push(path);
                        self.inline.push((name, self.depth));
                        self.depth += 1;
                        i += 3;
                        continue;
                    }
                }
            } else if token.is_ident("use") && !self.preceded_by_path_sep(i) {
                i = self.record_paths(i + 1, true);
                continue;
            } else if self.starts_module_path(i) {
                i = self.record_paths(i, false);
                continue;
            }
            i += 1;
        }
    }

    /// Reads the path or use tree at `i`, records its references (and imports, for
    /// a `use`), and returns the index after it.
    fn record_paths(&mut self, i: usize, is_use: bool) -> usize {
        let mut leaves = Vec::new();
        let next = self.path_tree(i, Vec::new(), &mut leaves);
        let from = self.current_module();
        for leaf in leaves {
            let anchored = matches!(leaf.segments[0].as_str(), "crate" | "super" | "self");
            let target = if anchored {
                let Some(to) = resolve(&from, &leaf.segments) else {
                    continue;
                };
                self.scan.references.push(Reference {
                    from: from.clone(),
                    to: to.clone(),
                    line: leaf.line,
                });
                to
            } else {
                leaf.segments
            };
            if let (true, Some(name)) = (is_use, leaf.name) {
                self.scan.imports.push(Import {
                    module: from.clone(),
                    name,
                    target,
                    relative: !anchored,
                });
            }
        }
        next
    }

    fn preceded_by_path_sep(&self, i: usize) -> bool {
        i > 0 && self.tokens[i - 1].kind == TokenKind::PathSep
    }

    /// `crate::`, `super::` or `self::` that starts a path (not `$crate::`, not the
    /// middle of another path, not a visibility `pub(in crate::x)`).
    fn starts_module_path(&self, i: usize) -> bool {
        let token = &self.tokens[i];
        let anchor = token.is_ident("crate") || token.is_ident("super") || token.is_ident("self");
        if !anchor || self.at(i + 1).map(|t| &t.kind) != Some(&TokenKind::PathSep) {
            return false;
        }
        if i > 0 && (self.preceded_by_path_sep(i) || self.tokens[i - 1].is_punct('$')) {
            return false;
        }
        let visibility = i >= 2 && self.ident_at(i - 1, "in") && self.punct_at(i - 2, '(');
        !visibility
    }

    /// Reads a path or use tree at `i` below `prefix`; pushes each leaf path with
    /// its line and returns the index after the tree.
    fn path_tree(&self, mut i: usize, mut prefix: Vec<String>, leaves: &mut Vec<Leaf>) -> usize {
        let line = self.at(i).map_or(0, |t| t.line);
        loop {
            let Some(name) = self.at(i).and_then(Token::ident) else {
                if !prefix.is_empty() {
                    leaves.push(Leaf {
                        segments: prefix,
                        line,
                        name: None,
                    });
                }
                return i;
            };
            prefix.push(name.to_owned());
            i += 1;
            if self.at(i).map(|t| &t.kind) != Some(&TokenKind::PathSep) {
                let mut name = match prefix.as_slice() {
                    [.., parent, last] if last == "self" => Some(parent.clone()),
                    [.., last] => Some(last.clone()),
                    [] => None,
                };
                if self.ident_at(i, "as") {
                    name = self.at(i + 1).and_then(Token::ident).map(str::to_owned);
                    i += 2;
                }
                leaves.push(Leaf {
                    segments: prefix,
                    line,
                    name: name.filter(|n| n != "_"),
                });
                return i;
            }
            i += 1;
            if self.punct_at(i, '{') {
                i += 1;
                while i < self.tokens.len() && !self.punct_at(i, '}') {
                    if self.punct_at(i, ',') {
                        i += 1;
                        continue;
                    }
                    let before = i;
                    i = self.path_tree(i, prefix.clone(), leaves);
                    // `*` and anything unexpected: step over it.
                    if i == before {
                        i += 1;
                    }
                    while i < self.tokens.len() && !self.punct_at(i, ',') && !self.punct_at(i, '}')
                    {
                        i += 1;
                    }
                }
                return i + 1;
            }
        }
    }

    /// If a `#[cfg(test)]` or `#![cfg(test)]` attribute starts at `i`, the index
    /// just after it.
    fn cfg_test_attribute(&self, i: usize) -> Option<usize> {
        if !self.punct_at(i, '#') {
            return None;
        }
        let open = if self.punct_at(i + 1, '!') {
            i + 2
        } else {
            i + 1
        };
        let shape = self.punct_at(open, '[')
            && self.ident_at(open + 1, "cfg")
            && self.punct_at(open + 2, '(')
            && self.ident_at(open + 3, "test")
            && self.punct_at(open + 4, ')')
            && self.punct_at(open + 5, ']');
        shape.then_some(open + 6)
    }

    /// Skips the item a `#[cfg(test)]` at `attribute` annotates (its other
    /// attributes and visibility included); returns the index after it.
    fn skip_test_item(&mut self, attribute: usize, mut i: usize) -> usize {
        while self.punct_at(i, '#') && self.punct_at(i + 1, '[') {
            i = self.after_group(i + 1);
        }
        if self.ident_at(i, "pub") {
            i += 1;
            if self.punct_at(i, '(') {
                i = self.after_group(i);
            }
        }
        if self.ident_at(i, "mod") {
            let line = self.tokens[attribute].line;
            let before = line.saturating_sub(1);
            self.scan.lines_before_tests = self.scan.lines_before_tests.min(before);
        }
        while i < self.tokens.len() {
            if self.punct_at(i, ';') {
                return i + 1;
            }
            if self.punct_at(i, '{') {
                return self.after_group(i);
            }
            i += 1;
        }
        i
    }

    /// The index just past the bracket group (`(`, `[` or `{`) opening at `open`.
    fn after_group(&self, open: usize) -> usize {
        let mut depth = 0usize;
        let mut i = open;
        while i < self.tokens.len() {
            match &self.tokens[i].kind {
                TokenKind::Punct('(' | '[' | '{') => depth += 1,
                TokenKind::Punct(')' | ']' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    }
}

/// Turns a path written in module `from` (starting with `crate`, `super` or `self`)
/// into an absolute one; `None` if it climbs above the crate root.
fn resolve(from: &[String], segments: &[String]) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    let mut path = match first.as_str() {
        "crate" => Vec::new(),
        "super" => from.get(..from.len().checked_sub(1)?)?.to_vec(),
        _ => from.to_vec(),
    };
    for segment in rest {
        match segment.as_str() {
            "super" => {
                path.pop()?;
            }
            "self" => {}
            name => path.push(name.to_owned()),
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str) -> ModulePath {
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn targets(scan: &FileScan) -> Vec<String> {
        scan.references.iter().map(|r| r.to.join("::")).collect()
    }

    #[test]
    fn use_trees_and_code_paths_are_resolved() {
        let source = "use crate::{a::B, c::{self, d::E as F}, g::*};\n\
                      fn f() { crate::h::i(); super::j::K::new(); self::l::m(); }\n";
        let scan = scan_file(source, &module("x::y"));
        assert_eq!(
            targets(&scan),
            [
                "a::B",
                "c",
                "c::d::E",
                "g",
                "h::i",
                "x::j::K::new",
                "x::y::l::m"
            ]
        );
        assert_eq!(scan.references[3].line, 1);
        assert_eq!(scan.references[4].line, 2);
    }

    #[test]
    fn super_chains_climb_and_stop_at_the_root() {
        let scan = scan_file(
            "use super::super::a; use super::super::super::b;",
            &module("x::y"),
        );
        assert_eq!(targets(&scan), ["a"]);
    }

    #[test]
    fn test_modules_and_test_items_are_skipped() {
        let source = "use crate::a;\n\
                      #[cfg(test)]\nuse crate::b;\n\
                      #[cfg(test)]\n#[allow(dead_code)]\nfn helper() { crate::c::f(); }\n\
                      #[cfg(test)]\nmod tests { use crate::d; mod inner { use crate::e; } }\n\
                      #[cfg(test)]\nmod more;\n\
                      use crate::f;\n";
        let scan = scan_file(source, &[]);
        assert_eq!(targets(&scan), ["a", "f"]);
        assert!(scan.child_files.is_empty());
        assert!(scan.inline_modules.is_empty());
        assert_eq!(scan.lines_before_tests, 6);
    }

    #[test]
    fn whole_file_test_attribute_marks_it_test_only() {
        let scan = scan_file("#![cfg(test)]\nuse crate::a;", &[]);
        assert!(scan.test_only);
        assert!(scan.references.is_empty());
    }

    #[test]
    fn comments_strings_visibility_and_macros_are_not_references() {
        let source = "// use crate::a;\nconst S: &str = \"crate::b::c\";\n\
                      pub(in crate::d) fn f() {}\nmacro_rules! m { () => { $crate::e::f() } }\n\
                      pub(crate) fn g() {}\n";
        assert!(scan_file(source, &[]).references.is_empty());
    }

    #[test]
    fn inline_modules_nest_paths_and_child_files() {
        let source = "mod a;\npub mod b {\n    mod c;\n    use super::a::X;\n}\nuse self::b::Y;\n";
        let scan = scan_file(source, &module("m"));
        assert_eq!(scan.child_files, [module("m::a"), module("m::b::c")]);
        assert_eq!(scan.inline_modules, [module("m::b")]);
        assert_eq!(scan.references[0].from, module("m::b"));
        assert_eq!(targets(&scan), ["m::a::X", "m::b::Y"]);
        assert_eq!(scan.references[1].from, module("m"));
    }
}
