//! DNS messages on the wire (RFC 1035, with RFC 6891's OPT record for the UDP size): parsing a
//! query with one question, and writing its answer.

use std::fmt;
use std::net::Ipv6Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

/// The UDP payload every DNS client accepts (RFC 1035); larger with EDNS.
pub const CLASSIC_UDP: usize = 512;

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// Why a message is not a query this server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header, or a name or question running past its end.
    Truncated,
    /// Not a standard query with exactly one question.
    NotAQuery,
    /// A name too long, a label too long, or a compression pointer in the question.
    BadName,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "the message ends early",
            WireError::NotAQuery => "not a standard query with one question",
            WireError::BadName => "the question's name is malformed",
        })
    }
}

/// A query: its id, whether recursion was asked for, and its one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub recursion_desired: bool,
    /// Lowercase, dot-separated, without the root's trailing dot (`web.internal`).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The largest response the client takes over UDP (its EDNS size, else 512).
    pub udp_size: usize,
    /// The client sent an OPT record (EDNS): the response carries one too (RFC 6891).
    pub edns: bool,
    /// The question as sent (name in the client's own letter case, type, class): echoed back
    /// unchanged, as resolvers that randomise case check.
    question: Vec<u8>,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Aaaa(Ipv6Addr),
    Txt(String),
}

/// The id of a message, if it has one (to answer even a malformed query).
pub fn message_id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

pub fn parse_query(msg: &[u8]) -> Result<Query, WireError> {
    if msg.len() < 12 {
        return Err(WireError::Truncated);
    }
    let word = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let flags = word(2);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if is_response || opcode != 0 || word(4) != 1 {
        return Err(WireError::NotAQuery);
    }
    let (name, mut at) = read_name(msg, 12)?;
    let field = |at: usize| -> Result<u16, WireError> {
        Ok(u16::from_be_bytes([
            *msg.get(at).ok_or(WireError::Truncated)?,
            *msg.get(at + 1).ok_or(WireError::Truncated)?,
        ]))
    };
    let qtype = field(at)?;
    let qclass = field(at + 2)?;
    at += 4;
    // The additional section may hold an OPT record with the client's UDP size; answers and
    // authorities are not expected in a query and are not looked at.
    let question = msg[12..at].to_vec();
    let mut udp_size = CLASSIC_UDP;
    let mut edns = false;
    if word(6) == 0
        && word(8) == 0
        && word(10) == 1
        && msg.get(at) == Some(&0)
        && let (Ok(TYPE_OPT), Ok(size)) = (field(at + 1), field(at + 3))
    {
        udp_size = usize::from(size).clamp(CLASSIC_UDP, 4096);
        edns = true;
    }
    Ok(Query {
        id: word(0),
        recursion_desired: flags & 0x0100 != 0,
        name,
        qtype,
        qclass,
        udp_size,
        edns,
        question,
    })
}

/// The name at `at` (uncompressed, as in a question) and where it ends.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(at).ok_or(WireError::Truncated)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(WireError::BadName);
        }
        let label = msg.get(at..at + len).ok_or(WireError::Truncated)?;
        at += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if b == b'.' || !b.is_ascii_graphic() {
                return Err(WireError::BadName);
            }
            name.push(char::from(b.to_ascii_lowercase()));
        }
        if name.len() > 253 {
            return Err(WireError::BadName);
        }
    }
    Ok((name, at))
}

/// The answer to `q`: `rcode` and `answers` (TTL `ttl`), authoritative, as large as the client
/// takes: answers that do not fit are left out and the message marked truncated.
pub fn response(q: &Query, rcode: Rcode, answers: &[Record], ttl: u32) -> Vec<u8> {
    let mut out = header(q.id, q.recursion_desired, rcode, true);
    out.extend(1u16.to_be_bytes()); // one question
    out.extend([0; 4]); // answers set below; no authority records
    out.extend(u16::from(q.edns).to_be_bytes());
    out.extend(&q.question);
    // Our OPT record: root name, type OPT, our UDP size as class, no extended flags.
    let opt: &[u8] = if q.edns {
        &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]
    } else {
        &[]
    };
    let limit = q.udp_size.saturating_sub(opt.len());
    let mut count: u16 = 0;
    for record in answers {
        let mut rr = vec![0xc0, 12]; // the question's name
        let (rtype, rdata) = match record {
            Record::Aaaa(ip) => (TYPE_AAAA, ip.octets().to_vec()),
            Record::Txt(text) => (TYPE_TXT, txt_rdata(text)),
        };
        rr.extend(rtype.to_be_bytes());
        rr.extend(CLASS_IN.to_be_bytes());
        rr.extend(ttl.to_be_bytes());
        rr.extend((rdata.len() as u16).to_be_bytes());
        rr.extend(rdata);
        if out.len() + rr.len() > limit {
            out[2] |= 0x02; // TC
            break;
        }
        out.extend(rr);
        count += 1;
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    out.extend(opt);
    out
}

/// An answer with `rcode` and no question, for a message that could not be read as a query.
pub fn bare_error(id: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = header(id, false, rcode, false);
    out.extend([0; 8]);
    out
}

fn header(id: u16, rd: bool, rcode: Rcode, authoritative: bool) -> Vec<u8> {
    let mut flags: u16 = 0x8000 | 0x0080 | rcode as u16; // QR, RA
    if authoritative {
        flags |= 0x0400;
    }
    if rd {
        flags |= 0x0100;
    }
    let mut out = Vec::with_capacity(128);
    out.extend(id.to_be_bytes());
    out.extend(flags.to_be_bytes());
    out
}

#[cfg(test)]
fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
}

/// TXT data: the text as character-strings of at most 255 bytes each.
fn txt_rdata(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend(chunk);
    }
    out
}

#[cfg(test)]
pub(crate) fn query_bytes(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend(id.to_be_bytes());
    q.extend(0x0100u16.to_be_bytes()); // RD
    q.extend(1u16.to_be_bytes());
    q.extend([0, 0, 0, 0]);
    q.extend(u16::from(edns.is_some()).to_be_bytes());
    write_name(&mut q, name);
    q.extend(qtype.to_be_bytes());
    q.extend(CLASS_IN.to_be_bytes());
    if let Some(size) = edns {
        q.push(0);
        q.extend(TYPE_OPT.to_be_bytes());
        q.extend(size.to_be_bytes());
        q.extend([0, 0, 0, 0, 0, 0]);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_and_answered() {
        let q = parse_query(&query_bytes(7, "Web.Internal", TYPE_AAAA, None)).unwrap();
        assert_eq!(q.name, "web.internal");
        assert_eq!((q.id, q.qtype, q.udp_size), (7, TYPE_AAAA, 512));
        assert!(q.recursion_desired);
        let ip: Ipv6Addr = "fdaa:0:1:0:1:0:1:2".parse().unwrap();
        let r = response(&q, Rcode::NoError, &[Record::Aaaa(ip)], 5);
        assert_eq!(&r[0..2], &7u16.to_be_bytes());
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &1u16.to_be_bytes(), "one answer");
        assert_eq!(&r[r.len() - 16..], &ip.octets());
        let r = response(&q, Rcode::NxDomain, &[], 5);
        assert_eq!(r[3] & 0x0f, 3);
        // The question comes back as asked, letter case included (0x20 randomisation).
        let asked = query_bytes(7, "Web.Internal", TYPE_AAAA, None);
        assert_eq!(&r[12..], &asked[12..]);
        // EDNS in, EDNS out: one OPT record in the additional section.
        let q = parse_query(&query_bytes(8, "web.internal", TYPE_AAAA, Some(1232))).unwrap();
        let r = response(&q, Rcode::NoError, &[Record::Aaaa(ip)], 5);
        assert_eq!(&r[10..12], &1u16.to_be_bytes());
        assert_eq!(&r[r.len() - 11..r.len() - 8], &[0, 0, 41]);
    }

    #[test]
    fn answers_too_large_for_the_client_are_truncated() {
        let many: Vec<Record> = (0..100)
            .map(|i| Record::Aaaa(Ipv6Addr::new(0xfdaa, 0, 1, 0, 1, 0, i, 2)))
            .collect();
        let q = parse_query(&query_bytes(1, "web.internal", TYPE_AAAA, None)).unwrap();
        let r = response(&q, Rcode::NoError, &many, 5);
        assert!(r.len() <= 512);
        assert_eq!(r[2] & 0x02, 0x02, "TC set");
        let q = parse_query(&query_bytes(1, "web.internal", TYPE_AAAA, Some(4096))).unwrap();
        assert_eq!(q.udp_size, 4096);
        let r = response(&q, Rcode::NoError, &many, 5);
        assert_eq!(&r[6..8], &100u16.to_be_bytes());
        assert_eq!(r[2] & 0x02, 0);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(parse_query(&[1, 2, 3]), Err(WireError::Truncated));
        let mut q = query_bytes(1, "web.internal", TYPE_AAAA, None);
        q[2] |= 0x80; // a response, not a query
        assert_eq!(parse_query(&q), Err(WireError::NotAQuery));
        let mut q = query_bytes(1, "web.internal", TYPE_AAAA, None);
        q.truncate(16);
        assert_eq!(parse_query(&q), Err(WireError::Truncated));
        let mut q = query_bytes(1, "x", TYPE_AAAA, None);
        q[12] = 0xc0; // a compression pointer in the question
        assert_eq!(parse_query(&q), Err(WireError::BadName));
        assert_eq!(bare_error(9, Rcode::FormErr)[3] & 0x0f, 1);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_query(&bytes);
        }
    }

    #[test]
    fn long_text_is_split_into_strings() {
        let text = "a".repeat(300);
        let data = txt_rdata(&text);
        assert_eq!(data[0], 255);
        assert_eq!(data[256], 45);
        assert_eq!(data.len(), 302);
    }
}
