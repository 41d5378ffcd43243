//! Fuzzing internal DNS with what a hostile machine (or anything reaching fdaa::3) can send:
//! valid queries for every kind of `.internal` name, then mutated (bytes overwritten, cut short,
//! extended, header counts and flags changed), through the server's whole answer path
//! ([`Dns::handle`]: parse, name lookup, response writing). Properties:
//!
//! - nothing panics;
//! - a message that parses as a query gets a well-formed response: same id, QR set, the question
//!   echoed byte for byte, records that walk to exactly the end, no larger than the client's
//!   UDP size;
//! - a message that does not parse gets a bare error (or nothing, for a response or a message
//!   too short to carry an id);
//! - names round-trip: a query written for a name is read back as that name in lowercase.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use aloft_dns::names::Entry;
use aloft_dns::server::{Directory, Dns};
use aloft_dns::wire::{self, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_OPT, TYPE_TXT};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

struct Fixed(Arc<Vec<Entry>>);

impl Directory for Fixed {
    fn entries(&self) -> Arc<Vec<Entry>> {
        self.0.clone()
    }

    fn rtt_ms(&self, region: &str) -> Option<u64> {
        region
            .len()
            .is_multiple_of(2)
            .then_some(region.len() as u64 * 7)
    }
}

/// Org 1 runs many machines (so that TXT and AAAA answers outgrow a UDP response); org 2 one.
fn dns() -> Dns {
    let mut entries = Vec::new();
    for i in 0..120u32 {
        entries.push(Entry {
            id: format!("{:014x}", u64::from(i) * 0x1234_5678_9abc),
            app: if i % 3 == 0 { "api" } else { "web" }.into(),
            region: ["ams", "sjc", "local", "syd"][i as usize % 4].into(),
            ip: aloft_types::sixpn::machine_address(1, i % 5, i),
        });
    }
    entries.push(Entry {
        id: "other000000001".into(),
        app: "web".into(),
        region: "local".into(),
        ip: aloft_types::sixpn::machine_address(2, 0, 1),
    });
    Dns::new(
        Arc::new(Fixed(Arc::new(entries))),
        Vec::new(),
        "local".into(),
    )
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
}

fn query(id: u16, flags: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend(id.to_be_bytes());
    q.extend(flags.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    q.extend([0, 0, 0, 0]);
    q.extend(u16::from(edns.is_some()).to_be_bytes());
    write_name(&mut q, name);
    q.extend(qtype.to_be_bytes());
    q.extend(wire::CLASS_IN.to_be_bytes());
    if let Some(size) = edns {
        q.push(0);
        q.extend(TYPE_OPT.to_be_bytes());
        q.extend(size.to_be_bytes());
        q.extend([0, 0, 0, 0, 0, 0]);
    }
    q
}

/// A label: real app, region and machine names, the special ones, and odd ones.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_string()),
        Just("api".to_string()),
        Just("WeB".to_string()),
        Just("internal".to_string()),
        Just("vm".to_string()),
        Just("vms".to_string()),
        Just("regions".to_string()),
        Just("_apps".to_string()),
        Just("global".to_string()),
        Just("nearest".to_string()),
        Just("of".to_string()),
        Just("ams".to_string()),
        Just("sjc".to_string()),
        Just("00000000000000".to_string()),
        "top[0-9]{1,25}",
        "[a-z0-9_-]{1,12}",
        "[!-~]{1,63}",
        "x{60,63}",
    ]
}

/// A name: an `.internal` one most of the time, of 0 to 6 labels, sometimes very long.
fn name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(label(), 0..6),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(mut labels, internal)| {
            if internal {
                labels.push("internal".into());
            }
            labels.join(".")
        })
}

/// One change to a valid query.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    /// A header word (id, flags, the four counts) replaced.
    Word(usize, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..300, any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (0usize..300).prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Append),
        (0usize..6, any::<u16>()).prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

fn mutate(mut msg: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match m {
            Mutation::Set(i, b) => {
                if let Some(slot) = msg.get_mut(*i) {
                    *slot = *b;
                }
            }
            Mutation::Truncate(n) => msg.truncate(*n),
            Mutation::Append(bytes) => msg.extend(bytes),
            Mutation::Word(i, w) => {
                if msg.len() >= 2 * i + 2 {
                    msg[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
                }
            }
        }
    }
    msg
}

fn asker() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..5, 0u32..200)
            .prop_map(|(h, m)| IpAddr::V6(aloft_types::sixpn::machine_address(1, h, m))),
        Just(IpAddr::V6(aloft_types::sixpn::machine_address(2, 0, 1))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
    ]
}

/// A valid query (any flags, type and EDNS size), then mutated.
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        prop_oneof![Just(0x0100u16), Just(0), any::<u16>()],
        name(),
        prop_oneof![
            Just(TYPE_AAAA),
            Just(TYPE_TXT),
            Just(TYPE_ANY),
            Just(TYPE_A),
            any::<u16>()
        ],
        prop_oneof![Just(None), any::<u16>().prop_map(Some)],
        prop::collection::vec(mutation(), 0..4),
    )
        .prop_map(|(id, flags, name, qtype, edns, mutations)| {
            mutate(query(id, flags, &name, qtype, edns), &mutations)
        })
}

/// Walks a response: header, the question (uncompressed), answers (named by a pointer to the
/// question) and an OPT record if any; returns the question's bytes.
fn walk_response(r: &[u8]) -> &[u8] {
    let count = |i: usize| usize::from(u16::from_be_bytes([r[i], r[i + 1]]));
    assert!(r.len() >= 12, "a response has a header");
    assert_eq!(count(4), 1, "one question");
    assert_eq!(count(8), 0, "no authority records");
    let mut at = 12;
    while r[at] != 0 {
        at += 1 + usize::from(r[at]);
    }
    at += 5; // root label, type, class
    let question = &r[12..at];
    for _ in 0..count(6) {
        assert_eq!(&r[at..at + 2], &[0xc0, 12], "answers name the question");
        let rdlength = count(at + 10);
        at += 12 + rdlength;
    }
    for _ in 0..count(10) {
        assert_eq!(&r[at..at + 3], &[0, 0, 41], "the additional record is OPT");
        at += 11;
    }
    assert_eq!(at, r.len(), "the records end where the message does");
    question
}

fn check(dns: &Dns, rt: &tokio::runtime::Runtime, msg: &[u8], from: IpAddr) {
    let answer = rt.block_on(dns.handle(msg, from));
    match wire::parse_query(msg) {
        Ok(q) => {
            let r = answer.expect("a query gets an answer");
            assert_eq!(&r[0..2], &q.id.to_be_bytes());
            assert_eq!(r[2] & 0x80, 0x80, "QR set");
            assert!(r.len() <= q.udp_size, "{} > {}", r.len(), q.udp_size);
            let question = walk_response(&r);
            assert_eq!(question, &msg[12..12 + question.len()], "question echoed");
            assert!(q.name.len() <= 253 && !q.name.contains(".."));
        }
        Err(wire::WireError::NotAQuery) if msg[2] & 0x80 != 0 => {
            assert!(answer.is_none(), "a response is not answered");
        }
        Err(_) if msg.len() < 2 => assert!(answer.is_none(), "no id, no answer"),
        Err(_) => {
            let r = answer.expect("a malformed query gets an error");
            assert_eq!(r.len(), 12);
            assert_eq!(&r[0..2], &msg[0..2]);
            assert_ne!(r[3] & 0x0f, 0, "an error rcode");
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #[test]
    fn fuzz_dns_mutated_queries(msg in message(), from in asker()) {
        check(&dns(), &runtime(), &msg, from);
    }

    #[test]
    fn fuzz_dns_random_bytes(msg in prop::collection::vec(any::<u8>(), 0..600), from in asker()) {
        check(&dns(), &runtime(), &msg, from);
    }

    #[test]
    fn fuzz_dns_names_round_trip(labels in prop::collection::vec("[!-~&&[^.]]{1,20}", 1..8)) {
        let name = labels.join(".");
        let q = wire::parse_query(&query(1, 0, &name, TYPE_AAAA, None)).expect("parses");
        prop_assert_eq!(q.name, name.to_ascii_lowercase());
    }
}

/// Every kind of `.internal` name, asked with a UDP size too small for the answer: the
/// response is cut at a record boundary and marked truncated.
#[test]
fn fuzz_dns_large_answers_are_truncated_well_formed() {
    let (dns, rt) = (dns(), runtime());
    let asker = IpAddr::V6(aloft_types::sixpn::machine_address(1, 0, 3));
    for name in [
        "web.internal",
        "vms.web.internal",
        "regions.web.internal",
        "_apps.internal",
        "top99.nearest.of.web.internal",
        "global.api.internal",
    ] {
        for (qtype, edns) in [
            (TYPE_AAAA, None),
            (TYPE_ANY, Some(0)),
            (TYPE_TXT, Some(600)),
        ] {
            let msg = query(9, 0x0100, name, qtype, edns);
            check(&dns, &rt, &msg, asker);
        }
    }
}
