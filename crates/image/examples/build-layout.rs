//! Writes an image into an OCI layout with no network (what `aloft image build` will wrap):
//!
//! ```text
//! cargo run --release -p aloft-image --example build-layout -- \
//!     --out DIR --tag TAG [--busybox] [--layer-dir DIR]... [--zstd]
//! ```
//!
//! `--busybox` puts Debian's static busybox (package `busybox-static`) in the first layer, with
//! `Entrypoint ["/bin/sh"]`; each `--layer-dir` adds one layer with that directory's content.
//! Prints the manifest digest.

use aloft_image::Compression;
use aloft_image::oci_layout::{LayoutBuilder, busybox_config, busybox_entries};

const USAGE: &str =
    "usage: build-layout --out DIR --tag TAG [--busybox] [--layer-dir DIR]... [--zstd]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = None;
    let mut tag = None;
    let mut builder = LayoutBuilder::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--out" => out = Some(value()?),
            "--tag" => tag = Some(value()?),
            "--busybox" => {
                builder = builder.layer(busybox_entries()?).config(busybox_config());
            }
            "--layer-dir" => builder = builder.layer_from_dir(value()?),
            "--zstd" => builder = builder.compression(Compression::Zstd),
            _ => return Err(format!("unknown argument `{flag}`; {USAGE}").into()),
        }
    }
    let (out, tag) = (out.ok_or(USAGE)?, tag.ok_or(USAGE)?);
    let image = builder.write(std::path::Path::new(&out), &tag)?;
    println!("{}", image.manifest_digest);
    Ok(())
}
