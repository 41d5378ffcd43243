//! Values `fly.toml` writes in more than one way (`"1gb"` or `1024`, `"15s"` or `15`, a command as a
//! string or a list), each read into one form, with an error that shows the forms accepted.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A TCP/UDP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (an integer from 1 to 65535)")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                u16::try_from(n)
                    .ok()
                    .filter(|p| *p > 0)
                    .map(Port)
                    .ok_or_else(|| E::custom(format!("{n} is not a port: use 1 to 65535")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                match i64::try_from(n) {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!("{n} is not a port: use 1 to 65535"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A duration: `"15s"`, `"1m30s"`, `"500ms"`, or a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl Seconds {
    /// As the Machines API writes durations (`"15s"`, `"500ms"`).
    pub fn to_api(self) -> String {
        humantime::format_duration(self.0).to_string()
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_api())
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"15s\", \"1m30s\" or \"500ms\", or a number of seconds",
                )
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seconds, E> {
                u64::try_from(n)
                    .map(|n| Seconds(Duration::from_secs(n)))
                    .map_err(|_| E::custom(format!("{n} is negative: durations are 0 or more")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(n)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Seconds, E> {
                humantime::parse_duration(s.trim())
                    .map(Seconds)
                    .map_err(|e| E::custom(format!("`{s}` is not a duration ({e}): write e.g. \"15s\", \"1m30s\" or \"500ms\"")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `"512mb"`, `"1gb"`, `"2GB"`, `"1024"` into a count of `unit`-sized units (`unit` in MB),
/// rounding up.
fn parse_size(s: &str, unit_mb: u64) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, mb_per) = if let Some(n) = lower.strip_suffix("gb").or(lower.strip_suffix('g')) {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("mb").or(lower.strip_suffix('m')) {
        (n, 1)
    } else {
        (lower.as_str(), unit_mb)
    };
    let n: u64 = digits.trim().parse().ok()?;
    Some((n * mb_per).div_ceil(unit_mb))
}

/// A memory size in MB: `"512mb"`, `"1gb"` or a number of megabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryMb(pub u32);

impl<'de> Deserialize<'de> for MemoryMb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        size(
            d,
            1,
            "a memory size such as \"512mb\" or \"1gb\", or a number of megabytes",
        )
        .map(MemoryMb)
    }
}

/// A volume size in GB: `"10gb"` or a number of gigabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeGb(pub u32);

impl<'de> Deserialize<'de> for SizeGb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        size(d, 1024, "a size such as \"10gb\", or a number of gigabytes").map(SizeGb)
    }
}

fn size<'de, D: Deserializer<'de>>(
    d: D,
    unit_mb: u64,
    what: &'static str,
) -> Result<u32, D::Error> {
    struct V {
        unit_mb: u64,
        what: &'static str,
    }
    impl Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.what)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u32, E> {
            u32::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| E::custom(format!("{n} is not a size: expected {}", self.what)))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u32, E> {
            parse_size(s, self.unit_mb)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| E::custom(format!("`{s}` is not a size: expected {}", self.what)))
        }
    }
    d.deserialize_any(V { unit_mb, what })
}

/// An `[env]` (or `[build.args]`) value: a string, or a number or boolean written as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EnvValue(pub String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (or a number or true/false)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EnvValue, E> {
                Ok(EnvValue(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<EnvValue, E> {
                Ok(EnvValue(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a list of arguments, or a string split as a shell would (quotes and backslashes;
/// no variables, no globs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Command(pub Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a command: a string such as \"bin/server --port 8080\", or a list of strings",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Command, E> {
                split_command(s).map(Command).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    args.push(arg);
                }
                Ok(Command(args))
            }
        }
        d.deserialize_any(V)
    }
}

/// Splits `s` into arguments as a POSIX shell would, for quotes and backslashes only.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(arg) = current.take() {
                    args.push(arg);
                }
            }
            '\'' => {
                let arg = current.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => arg.push(c),
                        None => return Err(format!("unclosed ' in the command `{s}`")),
                    }
                }
            }
            '"' => {
                let arg = current.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => arg.push(c),
                            Some(c) => {
                                arg.push('\\');
                                arg.push(c);
                            }
                            None => return Err(format!("unclosed \" in the command `{s}`")),
                        },
                        Some(c) => arg.push(c),
                        None => return Err(format!("unclosed \" in the command `{s}`")),
                    }
                }
            }
            '\\' => {
                let arg = current.get_or_insert_with(String::new);
                match chars.next() {
                    Some(c) => arg.push(c),
                    None => return Err(format!("the command `{s}` ends with a backslash")),
                }
            }
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    args.extend(current);
    Ok(args)
}

/// A section the reference accepts both as a table (`[mounts]`) and as an array of tables
/// (`[[mounts]]`).
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table, or an array of tables")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut all = Vec::new();
            while let Some(one) = seq.next_element()? {
                all.push(one);
            }
            Ok(all)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|one| vec![one])
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_for_quotes() {
        assert_eq!(
            split_command(r#"bin/server --name "my app" 'a b' c\ d"#).unwrap(),
            ["bin/server", "--name", "my app", "a b", "c d"]
        );
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_command("''").unwrap(), [""]);
        assert!(split_command("ends\\").unwrap_err().contains("backslash"));
        assert!(
            split_command("echo 'oops")
                .unwrap_err()
                .contains("unclosed '")
        );
    }

    #[test]
    fn sizes_read_every_way_they_are_written() {
        assert_eq!(parse_size("1gb", 1), Some(1024));
        assert_eq!(parse_size("512MB", 1), Some(512));
        assert_eq!(parse_size("2048", 1), Some(2048));
        assert_eq!(parse_size("10gb", 1024), Some(10));
        assert_eq!(parse_size("500mb", 1024), Some(1));
        assert_eq!(parse_size("3", 1024), Some(3));
        assert_eq!(parse_size("lots", 1), None);
    }
}
