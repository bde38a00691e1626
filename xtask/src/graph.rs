//! The dependency graph a reader sees: a reference from module `x::y` to `x::z::w`
//! is an edge `y -> z` among the siblings under `x`, and nothing at other levels.
//! Cycles are the strongly connected components of each level's graph (Tarjan),
//! reported as a set of simple cycles that together use every edge inside the
//! component, each edge with one `file:line` where it is made.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use crate::scan::ModulePath;
use crate::workspace::Target;

/// Where an edge is made: the first reference in path and line order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Evidence {
    pub path: PathBuf,
    pub line: usize,
}

/// The edges among the children of one module: `(from, to)` to its evidence.
pub type LevelEdges = BTreeMap<(String, String), Evidence>;

/// A cycle among the children of `level` in crate target `target`: each node
/// uses the next, the last uses the first; `evidence[i]` is for the edge leaving
/// `nodes[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub target: String,
    pub level: ModulePath,
    pub nodes: Vec<String>,
    pub evidence: Vec<Evidence>,
}

/// Every module path of the target, file modules and inline ones.
fn known_modules(target: &Target) -> BTreeSet<ModulePath> {
    let mut modules = BTreeSet::new();
    for file in &target.files {
        modules.insert(file.module.clone());
        modules.extend(file.scan.inline_modules.iter().cloned());
    }
    modules
}

/// What each `use` makes a name in a module stand for, as absolute paths; a
/// relative `use` counts only when it starts at a child module.
type Aliases = BTreeMap<(ModulePath, String), Vec<String>>;

fn aliases(target: &Target, modules: &BTreeSet<ModulePath>) -> Aliases {
    let mut aliases = Aliases::new();
    for import in target.files.iter().flat_map(|f| &f.scan.imports) {
        let target = if import.relative {
            let mut absolute = import.module.clone();
            absolute.extend(import.target.iter().cloned());
            if !modules.contains(&absolute[..=import.module.len()]) {
                continue; // another crate's path, such as `std::fmt`
            }
            absolute
        } else {
            import.target.clone()
        };
        aliases.insert((import.module.clone(), import.name.clone()), target);
    }
    aliases
}

/// Follows re-exports: while a module on the way names an imported item, the
/// path continues where the import points (`crate::switch::Frame` becomes
/// `crate::switch::output::Frame` if `switch` has `pub use output::Frame`).
fn follow_imports(
    path: &[String],
    aliases: &Aliases,
    modules: &BTreeSet<ModulePath>,
) -> Vec<String> {
    let mut path = path.to_vec();
    // A bound on re-exports of re-exports, which also stops an import loop.
    for _ in 0..8 {
        let step = (0..path.len())
            .take_while(|&i| modules.contains(&path[..i]))
            .find_map(|i| {
                let target = aliases.get(&(path[..i].to_vec(), path[i].clone()))?;
                let mut followed = target.clone();
                followed.extend_from_slice(&path[i + 1..]);
                (followed != path).then_some(followed)
            });
        match step {
            Some(followed) => path = followed,
            None => break,
        }
    }
    path
}

/// The sibling edges of a target, grouped by the module whose children they join.
pub fn sibling_edges(target: &Target) -> BTreeMap<ModulePath, LevelEdges> {
    let modules = known_modules(target);
    let aliases = aliases(target, &modules);
    let mut levels: BTreeMap<ModulePath, LevelEdges> = BTreeMap::new();
    for file in &target.files {
        for reference in &file.scan.references {
            let from = &reference.from;
            let to = &follow_imports(&reference.to, &aliases, &modules);
            let shared = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if shared >= from.len() || shared >= to.len() {
                continue; // a use of an ancestor, of itself or of a descendant
            }
            // `to` may end in an item: only a sibling that is a module is a node.
            if !modules.contains(&to[..=shared]) {
                continue;
            }
            let evidence = Evidence {
                path: file.path.clone(),
                line: reference.line,
            };
            let key = (from[shared].clone(), to[shared].clone());
            let edges = levels.entry(from[..shared].to_vec()).or_default();
            match edges.get_mut(&key) {
                Some(known) if *known <= evidence => {}
                Some(known) => *known = evidence,
                None => {
                    edges.insert(key, evidence);
                }
            }
        }
    }
    levels
}

/// The cycles of a target, level by level.
pub fn target_cycles(target: &Target) -> Vec<Cycle> {
    let mut cycles = Vec::new();
    for (level, edges) in sibling_edges(target) {
        for nodes in cycles_covering_components(&edges) {
            let evidence = (0..nodes.len())
                .map(|i| {
                    let key = (nodes[i].clone(), nodes[(i + 1) % nodes.len()].clone());
                    edges[&key].clone()
                })
                .collect();
            cycles.push(Cycle {
                target: target.label.clone(),
                level: level.clone(),
                nodes,
                evidence,
            });
        }
    }
    cycles
}

/// For each strongly connected component with more than one node, shortest
/// cycles through its edges until every edge inside it is on one.
pub fn cycles_covering_components(edges: &LevelEdges) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().insert(to);
        graph.entry(to).or_default();
    }
    let mut cycles = Vec::new();
    for component in strongly_connected_components(&graph) {
        if component.len() < 2 {
            continue;
        }
        let inside = |node: &str| component.contains(node);
        let mut covered: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (&from, targets) in graph.iter().filter(|(n, _)| inside(n)) {
            for &to in targets.iter().filter(|n| inside(n)) {
                if covered.contains(&(from, to)) {
                    continue;
                }
                let Some(back) = shortest_path(&graph, &component, to, from) else {
                    continue;
                };
                let mut cycle = vec![from];
                cycle.extend(&back[..back.len() - 1]);
                for i in 0..cycle.len() {
                    covered.insert((cycle[i], cycle[(i + 1) % cycle.len()]));
                }
                cycles.push(cycle.into_iter().map(str::to_owned).collect());
            }
        }
    }
    cycles
}

/// Breadth-first path `start ..= goal` inside `component`.
fn shortest_path<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    component: &BTreeSet<&'a str>,
    start: &'a str,
    goal: &'a str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        if node == goal {
            let mut path = vec![goal];
            while let Some(&previous) = came_from.get(path[path.len() - 1]) {
                path.push(previous);
            }
            path.reverse();
            return Some(path);
        }
        for &next in &graph[node] {
            if component.contains(next) && next != start && !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Tarjan's algorithm; components come out in reverse topological order.
fn strongly_connected_components<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
) -> Vec<BTreeSet<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<&'a str>>,
    }
    fn visit<'a>(node: &'a str, graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let index = s.index.len();
        s.index.insert(node, index);
        s.low.insert(node, index);
        s.stack.push(node);
        s.on_stack.insert(node);
        for &next in &graph[node] {
            if !s.index.contains_key(next) {
                visit(next, graph, s);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = BTreeSet::new();
            while let Some(member) = s.stack.pop() {
                s.on_stack.remove(member);
                component.insert(member);
                if member == node {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.components
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> LevelEdges {
        pairs
            .iter()
            .enumerate()
            .map(|(line, (a, b))| {
                let evidence = Evidence {
                    path: PathBuf::from("f.rs"),
                    line,
                };
                (((*a).to_owned(), (*b).to_owned()), evidence)
            })
            .collect()
    }

    #[test]
    fn acyclic_levels_have_no_cycles() {
        let dag = edges(&[("a", "b"), ("b", "c"), ("a", "c")]);
        assert!(cycles_covering_components(&dag).is_empty());
    }

    #[test]
    fn every_edge_of_a_component_is_on_a_reported_cycle() {
        let graph = edges(&[
            ("a", "b"),
            ("b", "a"),
            ("a", "c"),
            ("c", "a"),
            ("b", "d"),
            ("d", "e"),
            ("e", "b"),
            ("e", "f"),
        ]);
        let cycles = cycles_covering_components(&graph);
        let printed: Vec<String> = cycles.iter().map(|c| c.join(" -> ")).collect();
        assert_eq!(printed, ["a -> b", "a -> c", "b -> d -> e"]);
    }
}
