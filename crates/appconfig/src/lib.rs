//! An app's config as its users write it: `fly.toml` (or `aloft.toml`, the same schema), read
//! unchanged from the reference platform's.
//!
//! - [`find`] picks the file (`-c PATH`, else `./fly.toml`, else `./aloft.toml`);
//! - [`load`] parses it into an [`AppConfig`] ([`schema`]): every section and key of the reference,
//!   values written either way it allows ([`values`]: `"1gb"` or `1024`, `"15s"` or `15`, commands
//!   as strings or lists, `[mounts]` or `[[mounts]]`);
//! - errors name the file, line, column and key, and the values allowed; checks across keys
//!   ([`validate`]: port clashes, checks on ports nothing serves, unknown process groups,
//!   strategies that cannot work) report every problem at once; unknown keys are warnings;
//! - [`AppConfig::machine_config`] ([`machines`]) turns it into the Machines API's config for the
//!   machines of each process group.

mod keypath;
pub mod load;
pub mod machines;
pub mod schema;
pub mod validate;
pub mod values;

pub use load::{ConfigError, FILE_NAMES, Loaded, Problem, find, load, parse};
pub use schema::AppConfig;
