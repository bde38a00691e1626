//! The findings of the structure check and how they are printed: one block per
//! import cycle (`crate: a -> b -> a` and the `file:line` of each edge), one line
//! per file that is too long before its unit tests.

use std::fmt;
use std::path::PathBuf;

use crate::graph::Cycle;

/// A file with more lines before its `#[cfg(test)]` module than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFile {
    pub path: PathBuf,
    pub lines_before_tests: usize,
}

/// Everything the structure check found; empty means the tree keeps its promises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub cycles: Vec<Cycle>,
    pub long_files: Vec<LongFile>,
    pub max_lines: usize,
}

impl Report {
    /// Whether there is nothing to report.
    pub fn is_clean(&self) -> bool {
        self.cycles.is_empty() && self.long_files.is_empty()
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        for module in &self.level {
            write!(f, "::{module}")?;
        }
        write!(f, ": {} -> {}", self.nodes.join(" -> "), self.nodes[0])?;
        for (i, evidence) in self.evidence.iter().enumerate() {
            let next = &self.nodes[(i + 1) % self.nodes.len()];
            let edge = format!("{} -> {next}", self.nodes[i]);
            write!(
                f,
                "\n    {edge:<30} {}:{}",
                evidence.path.display(),
                evidence.line
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return writeln!(
                f,
                "structure check: no import cycles, no file over {} lines before its tests",
                self.max_lines
            );
        }
        if !self.cycles.is_empty() {
            writeln!(
                f,
                "{} import cycle(s) between sibling modules (break each by moving plain \
                 types to a lower module or a function to where it belongs):",
                self.cycles.len()
            )?;
            for cycle in &self.cycles {
                writeln!(f, "  {cycle}")?;
            }
        }
        if !self.long_files.is_empty() {
            writeln!(
                f,
                "{} file(s) over {} lines before their #[cfg(test)] module (split by concern):",
                self.long_files.len(),
                self.max_lines
            )?;
            for file in &self.long_files {
                writeln!(
                    f,
                    "  {:<45} {} lines",
                    file.path.display(),
                    file.lines_before_tests
                )?;
            }
        }
        Ok(())
    }
}
