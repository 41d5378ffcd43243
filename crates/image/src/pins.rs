//! What pulls in progress use, so that a prune removes nothing a pull needs without pulls and
//! prunes waiting on each other. A pull pins the digests it works with (its image, its layers)
//! before it checks whether they are on the host; a prune removes an image or a layer only
//! when it is not pinned, moving it aside while it holds the table (a rename), and deletes it
//! after. So a pull either pinned first and finds its files kept, or pinned after and finds
//! them gone and downloads them again; a slow pull holds nothing but its own pins, and a
//! prune stalls no start.
//!
//! State: one `parking_lot` mutex over a count per digest, held only to count or to rename.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// The digests pulls use now.
#[derive(Default)]
pub(crate) struct Pins {
    held: Mutex<HashMap<String, usize>>,
}

/// Digests pinned until this is dropped: a prune keeps them.
pub struct Pinned {
    pins: Arc<Pins>,
    digests: Vec<String>,
}

impl Pins {
    /// Pins `digests` until the result is dropped.
    pub(crate) fn pin(self: &Arc<Self>, digests: impl IntoIterator<Item = String>) -> Pinned {
        let digests: Vec<String> = digests.into_iter().collect();
        let mut held = self.held.lock();
        for d in &digests {
            *held.entry(d.clone()).or_default() += 1;
        }
        Pinned {
            pins: self.clone(),
            digests,
        }
    }

    /// Runs `f` unless `digest` is pinned, with the table held so that nobody pins it
    /// meanwhile: `f` must be quick (a rename).
    pub(crate) fn unless_pinned<T>(&self, digest: &str, f: impl FnOnce() -> T) -> Option<T> {
        let held = self.held.lock();
        (!held.contains_key(digest)).then(f)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut held = self.pins.held.lock();
        for d in &self.digests {
            if let Some(n) = held.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    held.remove(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_digest_is_kept_until_its_last_pin_goes() {
        let pins = Arc::new(Pins::default());
        let a = pins.pin(["sha256:aa".to_string()]);
        let b = pins.pin(["sha256:aa".to_string(), "sha256:bb".to_string()]);
        assert_eq!(pins.unless_pinned("sha256:aa", || ()), None);
        drop(a);
        assert_eq!(pins.unless_pinned("sha256:aa", || ()), None);
        drop(b);
        assert_eq!(pins.unless_pinned("sha256:aa", || 1), Some(1));
        assert_eq!(pins.unless_pinned("sha256:bb", || 2), Some(2));
    }
}
