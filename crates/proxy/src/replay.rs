//! `fly-replay`: a machine answers with this header to have the proxy send the request
//! somewhere else instead (another region, another machine, another app), and the response it
//! came with is dropped. Syntax, `;`-separated `key=value` pairs:
//!
//! ```text
//! fly-replay: region=ams                     one region, or a quoted comma list, or `any`
//! fly-replay: instance=0ae6e86a132597        exactly this machine
//! fly-replay: prefer_instance=0ae6e86a132597 this machine if it can, else any other of the app
//! fly-replay: app=other-app                  another app of the org
//! fly-replay: elsewhere=true                 any machine but this one
//! fly-replay: region=ams;state=checkout;timeout=5s;fallback=prefer_self
//! ```
//!
//! The replayed request carries `fly-replay-src: instance=<id>;region=<r>;t=<µs>;state=<s>`.

use std::time::Duration;

/// The longest a replayed request may wait for its target (`timeout=`): longer values are
/// refused (a huge one once overflowed the proxy's deadline arithmetic).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// What to do when the replay's target cannot take the request within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Send it back to the machine that asked for the replay.
    ForceSelf,
    /// The same, when that machine can take it.
    PreferSelf,
}

/// A parsed `fly-replay` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Regions to send it to; empty: any region (also what `any` means).
    pub regions: Vec<String>,
    pub instance: Option<String>,
    pub prefer_instance: Option<String>,
    pub app: Option<String>,
    pub state: Option<String>,
    pub elsewhere: bool,
    pub timeout: Option<Duration>,
    pub fallback: Option<Fallback>,
}

/// Parses a `fly-replay` value; the error says what is wrong with it.
pub fn parse(value: &str) -> Result<Replay, String> {
    let mut r = Replay::default();
    let mut has_target = false;
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, raw) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not key=value"))?;
        let key = key.trim().to_ascii_lowercase();
        let v = raw.trim().trim_matches('"').trim();
        if v.is_empty() {
            return Err(format!("`{key}` has no value"));
        }
        match key.as_str() {
            "region" => {
                has_target = true;
                if !v.eq_ignore_ascii_case("any") {
                    r.regions = v
                        .split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
            }
            "instance" => {
                has_target = true;
                r.instance = Some(v.to_string());
            }
            "prefer_instance" => {
                has_target = true;
                r.prefer_instance = Some(v.to_string());
            }
            "app" => {
                has_target = true;
                r.app = Some(v.to_string());
            }
            "elsewhere" => {
                r.elsewhere = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("elsewhere=`{v}`: use true or false")),
                };
                has_target |= r.elsewhere;
            }
            "state" => r.state = Some(v.to_string()),
            "timeout" => {
                let timeout = aloft_types::time::parse_duration(v)
                    .map_err(|e| format!("timeout=`{v}`: {e}"))?;
                if timeout > MAX_TIMEOUT {
                    return Err(format!("timeout=`{v}` is too long: at most 5m"));
                }
                r.timeout = Some(timeout);
            }
            "fallback" => {
                r.fallback = Some(match v {
                    "force_self" => Fallback::ForceSelf,
                    "prefer_self" => Fallback::PreferSelf,
                    _ => return Err(format!("fallback=`{v}`: use force_self or prefer_self")),
                });
            }
            _ => return Err(format!("unknown key `{key}`")),
        }
    }
    if !has_target {
        return Err(
            "it names no target (region, instance, prefer_instance, app or elsewhere)".into(),
        );
    }
    if r.instance.is_some() && r.prefer_instance.is_some() {
        return Err("instance and prefer_instance exclude each other".into());
    }
    Ok(r)
}

/// The `fly-replay-src` value of a request replayed away from `instance` in `region`.
pub fn source(instance: &str, region: &str, now_us: u128, state: Option<&str>) -> String {
    let mut s = format!("instance={instance};region={region};t={now_us}");
    if let Some(state) = state {
        s.push_str(";state=");
        s.push_str(state);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read() {
        let r = parse(r#"region="ams, sjc";state=cart-1;timeout=5s;fallback=prefer_self"#).unwrap();
        assert_eq!(r.regions, ["ams", "sjc"]);
        assert_eq!(r.state.as_deref(), Some("cart-1"));
        assert_eq!(r.timeout, Some(Duration::from_secs(5)));
        assert_eq!(r.fallback, Some(Fallback::PreferSelf));
        let r = parse("instance=0ae6e86a132597").unwrap();
        assert_eq!(r.instance.as_deref(), Some("0ae6e86a132597"));
        let r = parse("app=billing; elsewhere=true").unwrap();
        assert_eq!(r.app.as_deref(), Some("billing"));
        assert!(r.elsewhere);
        assert!(parse("region=any").unwrap().regions.is_empty());
        assert_eq!(parse("REGION=AMS").unwrap().regions, ["ams"]);
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        for (value, why) in [
            ("", "no target"),
            ("state=x", "no target"),
            ("elsewhere=false", "no target"),
            ("region", "not key=value"),
            ("region=", "no value"),
            ("colour=blue", "unknown key"),
            ("region=ams;timeout=soon", "timeout"),
            ("elsewhere=yes", "true or false"),
            ("region=ams;fallback=maybe", "force_self"),
            ("instance=a;prefer_instance=b", "exclude"),
        ] {
            let err = parse(value).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
        }
    }

    #[test]
    fn the_source_header_names_where_the_request_came_from() {
        assert_eq!(
            source("m1", "ams", 17, Some("cart")),
            "instance=m1;region=ams;t=17;state=cart"
        );
        assert_eq!(source("m1", "ams", 17, None), "instance=m1;region=ams;t=17");
    }
}
