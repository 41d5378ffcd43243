//! Signals by name or number, as the API accepts them (`"SIGTERM"`, `"TERM"`, `15`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use utoipa::ToSchema;

/// The signals a machine's process may be sent.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGABRT", 6),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGTERM", 15),
    ("SIGSTOP", 19),
    ("SIGWINCH", 28),
];

/// A POSIX signal. Serialized as its name (`"SIGTERM"`); deserialized from a name with or without
/// the `SIG` prefix, in any case, or from its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

/// What [`Signal::parse`] takes, as the OpenAPI document says it: a name (with or without
/// `SIG`, any case) or a number, as a string, or a number.
impl utoipa::PartialSchema for Signal {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let either_case = |s: &str| -> String {
            s.chars()
                .map(|c| match c.is_ascii_alphabetic() {
                    true => format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()),
                    false => c.to_string(),
                })
                .collect()
        };
        let names: Vec<String> = SIGNALS
            .iter()
            .map(|(n, _)| either_case(n.trim_start_matches("SIG")))
            .collect();
        let numbers: Vec<String> = SIGNALS.iter().map(|(_, n)| n.to_string()).collect();
        let pattern = format!(
            "^\\s*(({})?({})|{})\\s*$",
            either_case("SIG"),
            names.join("|"),
            numbers.join("|")
        );
        let name = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some("A signal's name (`SIGTERM`, `term`) or number"));
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some(SIGNALS.iter().map(|(_, n)| *n)));
        OneOfBuilder::new().item(name).item(number).into()
    }
}

impl ToSchema for Signal {}

impl Signal {
    pub const TERM: Signal = Signal(15);
    pub const KILL: Signal = Signal(9);
    pub const INT: Signal = Signal(2);

    pub fn number(self) -> i32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        SIGNALS
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
            .unwrap_or("SIGTERM")
    }

    /// Parses `SIGTERM`, `term` or `15`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i32>() {
            return Self::from_number(n);
        }
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        SIGNALS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, num)| Signal(*num))
            .ok_or_else(|| format!("unknown signal `{s}`; use one of {}", Self::allowed()))
    }

    pub fn from_number(n: i32) -> Result<Self, String> {
        SIGNALS
            .iter()
            .any(|(_, num)| *num == n)
            .then_some(Signal(n))
            .ok_or_else(|| format!("unknown signal {n}; use one of {}", Self::allowed()))
    }

    /// The accepted names, for error messages.
    pub fn allowed() -> String {
        SIGNALS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i32),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Signal::from_number(n),
            Raw::Name(s) => Signal::parse(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(Signal::parse("SIGTERM").unwrap(), Signal::TERM);
        assert_eq!(Signal::parse("kill").unwrap(), Signal::KILL);
        assert_eq!(Signal::parse("2").unwrap(), Signal::INT);
        assert!(Signal::parse("SIGFOO").unwrap_err().contains("SIGTERM"));
        let s: Signal = serde_json::from_str("9").unwrap();
        assert_eq!(s, Signal::KILL);
        assert_eq!(serde_json::to_string(&Signal::TERM).unwrap(), "\"SIGTERM\"");
    }
}
