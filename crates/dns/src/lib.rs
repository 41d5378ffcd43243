//! Internal DNS, the reference's `fdaa::3`: every host answers its machines' queries for the
//! `.internal` names of their own org ([`names`]) and forwards every other name to the host's
//! upstream resolvers ([`server`]). The wire format is the small part of RFC 1035 this needs
//! ([`wire`]): one question per query, AAAA and TXT answers, EDNS's UDP size honoured.
//!
//! Who asks decides what is seen: the asker's source address is its 6PN address, whose /48 is
//! its org's network, and only machines in that /48 are answered. Only started machines are.

pub mod names;
pub mod server;
pub mod wire;

pub use aloft_types::sixpn::INTERNAL_DNS;
