//! A key's path in a config document (`services[0].ports[1].port`): what problems are about.
//!
//! Its own module, below both `load` (which places problems in the file) and `validate` (which
//! finds them), so that neither imports the other's module for it; `load` re-exports it where it
//! always was (`aloft_appconfig::load::KeyPath`).

use std::fmt;

/// One step of a key's path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A key's path in the document, e.g. `services[0].ports[1].port`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Step>);

impl KeyPath {
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Step::Key(key.to_string()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Step::Index(index));
        self
    }

    /// Parses `a.b[2].c` (the form serde_path_to_error prints).
    pub(crate) fn parse(s: &str) -> Self {
        let mut steps = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty() && *p != "?") {
            let mut rest = part;
            if let Some(i) = rest.find('[') {
                steps.push(Step::Key(rest[..i].to_string()));
                rest = &rest[i..];
                while let Some(end) = rest.find(']') {
                    if let Ok(n) = rest[1..end].parse() {
                        steps.push(Step::Index(n));
                    }
                    rest = &rest[end + 1..];
                }
            } else {
                steps.push(Step::Key(rest.to_string()));
            }
        }
        Self(steps)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}
