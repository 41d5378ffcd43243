//! Finding, reading and parsing an app's config file: errors and warnings that name the file, the
//! line and the key.

use crate::schema::AppConfig;
use crate::validate;

pub use crate::keypath::{KeyPath, Step};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// The file names looked for, in order, when no path is given.
pub const FILE_NAMES: [&str; 2] = ["fly.toml", "aloft.toml"];

/// A problem at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the place is not in the file (a key that is missing).
    pub line: usize,
    pub column: usize,
    /// Empty for a problem of the file as a whole (a TOML syntax error).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no {} or {} in {}: pass the file with -c PATH, or write one with `aloft launch`", FILE_NAMES[0], FILE_NAMES[1], .0.display())]
    NotFound(PathBuf),
    #[error("reading {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A config read from its file: what it says, and what in it was ignored.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: AppConfig,
    /// Unknown keys (ignored) and the like: printed, never fatal.
    pub warnings: Vec<Problem>,
}

/// The config file: `explicit` (a file, or a directory holding one), else the first of
/// [`FILE_NAMES`] in `dir`.
pub fn find(explicit: Option<&Path>, dir: &Path) -> Result<PathBuf, ConfigError> {
    let dir = match explicit {
        Some(p) if p.is_dir() => p,
        Some(p) => return Ok(p.to_path_buf()),
        None => dir,
    };
    FILE_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ConfigError::NotFound(dir.to_path_buf()))
}

/// Reads, parses and checks the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and checks `text`, the contents of `path`.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let doc = Document { path, text };
    let spans = DeTable::parse(text).map_err(|e| doc.invalid(doc.toml_problem(&e, None)))?;
    let de = toml::de::Deserializer::from(spans.clone());
    let mut unknown = Vec::new();
    let mut note_unknown =
        |p: serde_ignored::Path<'_>| unknown.push(KeyPath::parse(&p.to_string()));
    let ignoring = serde_ignored::Deserializer::new(de, &mut note_unknown);
    let config: AppConfig = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        let key = KeyPath::parse(&e.path().to_string());
        doc.invalid(doc.toml_problem(e.inner(), Some(key)))
    })?;
    let root = spans.get_ref();
    let problems: Vec<Problem> = validate::check(&config)
        .into_iter()
        .map(|(key, message)| doc.problem(root, &key, message))
        .collect();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let mut warnings: Vec<Problem> = unknown
        .iter()
        .map(|key| {
            doc.problem(
                root,
                key,
                "unknown key, ignored (a typo? see the reference's fly.toml keys)".into(),
            )
        })
        .collect();
    warnings.sort_by_key(|w| (w.line, w.column));
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        warnings,
    })
}

/// The file being read, to place problems in it.
struct Document<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Document<'_> {
    fn invalid(&self, problem: Problem) -> ConfigError {
        ConfigError::Invalid(vec![problem])
    }

    /// 1-based line and column of byte `offset`.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    }

    fn at(&self, span: Option<Range<usize>>, key: Option<&KeyPath>, message: String) -> Problem {
        let (line, column) = span.map_or((0, 0), |s| self.line_column(s.start));
        Problem {
            file: self.path.to_path_buf(),
            line,
            column,
            key: key.map(ToString::to_string).unwrap_or_default(),
            message,
        }
    }

    fn toml_problem(&self, e: &toml::de::Error, key: Option<KeyPath>) -> Problem {
        let key = key.filter(|k| !k.0.is_empty());
        self.at(e.span(), key.as_ref(), e.message().trim().to_string())
    }

    /// A problem at `key` (at the nearest enclosing key the file has, when `key` itself is
    /// missing from it).
    fn problem(&self, root: &DeTable<'_>, key: &KeyPath, message: String) -> Problem {
        self.at(locate(root, key), Some(key), message)
    }
}

/// The span of `key` in the document, or of the deepest part of it that is there.
fn locate(root: &DeTable<'_>, key: &KeyPath) -> Option<Range<usize>> {
    let mut found = None;
    let mut table = Some(root);
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for step in &key.0 {
        let value = match (step, table, array) {
            (Step::Key(k), Some(t), _) => {
                let (name, value) = t.get_key_value(k.as_str())?;
                found = Some(name.span());
                value
            }
            (Step::Index(i), _, Some(items)) => {
                let value = items.get(*i)?;
                found = Some(value.span());
                value
            }
            _ => return found,
        };
        match value.get_ref() {
            DeValue::Table(t) => {
                table = Some(t);
                array = None;
            }
            DeValue::Array(items) => {
                table = None;
                array = Some(items);
            }
            _ => {
                table = None;
                array = None;
            }
        }
    }
    found
}

/// `text`, a config file, with its top-level `app` set to `app`: the value replaced where it is
/// (comments and layout kept), or `app = "..."` put first when the file names none. What a deploy
/// records as the app's config (`aloft config save` writes it back).
pub fn set_app(text: &str, app: &str) -> Result<String, String> {
    let spans = DeTable::parse(text).map_err(|e| e.message().trim().to_string())?;
    let quoted = toml::Value::String(app.to_string()).to_string();
    Ok(match spans.get_ref().get_key_value("app") {
        Some((_, value)) => {
            let span = value.span();
            format!("{}{quoted}{}", &text[..span.start], &text[span.end..])
        }
        None => format!("app = {quoted}\n{text}"),
    })
}

#[cfg(test)]
mod set_app_tests {
    use super::*;

    #[test]
    fn the_app_is_replaced_in_place_or_put_first() {
        let text = "# mine\napp = 'old'  # the name\n\n[env]\n  app = \"not this one\"\n";
        assert_eq!(
            set_app(text, "new").unwrap(),
            "# mine\napp = \"new\"  # the name\n\n[env]\n  app = \"not this one\"\n"
        );
        assert_eq!(
            set_app("[env]\nA = \"1\"\n", "web").unwrap(),
            "app = \"web\"\n[env]\nA = \"1\"\n"
        );
        // A name that needs escaping stays one string.
        let odd = set_app("app = \"x\"\n", "a\"b").unwrap();
        assert_eq!(
            toml::from_str::<toml::Table>(&odd).unwrap()["app"].as_str(),
            Some("a\"b")
        );
        assert!(set_app("app = \n", "x").is_err());
    }
}
