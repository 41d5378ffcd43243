//! What commands print: aligned tables and key/value blocks for people, JSON for scripts.

use anyhow::Result;
use serde::Serialize;

/// A table with a header row; columns are as wide as their widest cell, separated by two spaces.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are left empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, without trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(columns).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 < columns {
                    line.push_str(&format!("{cell:<width$}  "));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render());
        }
    }
}

/// Prints `key  value` lines with the keys aligned.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        println!("  {k:<width$}  {v}");
    }
}

/// Prints a value as pretty JSON.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The JSON name of a unit enum value (`EventType::Launch` -> `launch`).
pub fn json_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `-` for an empty string, so tables have no holes.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Megabytes (10^6 bytes) with one decimal, as pull progress and image sizes show them: `12.1`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// Asks `question` on the terminal (`[y/N]`); without one (a script), refuses with `refusal`,
/// which names `--yes`. Whether the answer was yes.
pub fn confirm(question: &str, refusal: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!("{refusal}");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(megabytes(0), "0.0");
        assert_eq!(megabytes(12_149_999), "12.1");
        assert_eq!(megabytes(40_300_000), "40.3");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["ID", "STATE", "REGION"]);
        t.row(vec!["abc".into(), "started".into(), "local".into()]);
        t.row(vec!["a".into(), "s".into()]);
        assert_eq!(
            t.render(),
            "ID   STATE    REGION\nabc  started  local\na    s\n"
        );
    }
}
