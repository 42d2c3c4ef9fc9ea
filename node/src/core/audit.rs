//! The audit chain: every event of a ticket is hash-chained (SHA-256).
//!
//! `event.hash = SHA-256(prev_hash ‖ event encoded with hash empty)`, and
//! `event.prev_hash` is the previous event's hash (empty for the first).
//! The prost encoding of a message is deterministic for a given value (fields
//! in tag order, no maps in `Event`), so every replica and every verifier
//! computes the same bytes. Changing any stored field of any event — actor,
//! time, reason, payload — changes its hash and breaks the link to the next
//! event, and `verify` names the first event that no longer verifies.

use hotline_proto::v1::Event;
use prost::Message as _;
use sha2::{Digest, Sha256};

/// Length of a SHA-256 digest in bytes.
pub const HASH_BYTES: usize = 32;

/// Computes the hash of `event` as if its `hash` field were empty.
///
/// Without a copy of the event (verifying a chain used to clone every event
/// of it): prost writes fields in tag order and leaves out empty ones, so the
/// encoding with `hash` empty is the full encoding without the bytes of
/// field 8, which sit just before field 9 (`raft_index`), the last field.
pub fn event_hash(event: &Event) -> Vec<u8> {
    if event.hash.is_empty() {
        return unhashed_event_hash(event);
    }
    let full = event.encode_to_vec();
    let tail = if event.raft_index == 0 {
        0
    } else {
        prost::encoding::uint64::encoded_len(9, &event.raft_index)
    };
    let hash_field = prost::encoding::bytes::encoded_len(8, &event.hash);
    let end = full.len() - tail;
    let start = end - hash_field;
    let mut h = Sha256::new();
    h.update(&event.prev_hash);
    h.update(&full[..start]);
    h.update(&full[end..]);
    h.finalize().to_vec()
}

/// The hash of an event whose `hash` field is empty (no copy needed).
fn unhashed_event_hash(event: &Event) -> Vec<u8> {
    debug_assert!(event.hash.is_empty());
    let mut h = Sha256::new();
    h.update(&event.prev_hash);
    h.update(event.encode_to_vec());
    h.finalize().to_vec()
}

/// Links `event` after `prev` (or as the first event) and seals it.
pub fn seal(prev: Option<&Event>, mut event: Event) -> Event {
    event.seq = prev.map_or(1, |p| p.seq + 1);
    // `Bytes`: the previous event's hash is shared, not copied.
    event.prev_hash = prev.map(|p| p.hash.clone()).unwrap_or_default();
    event.hash.clear();
    event.hash = unhashed_event_hash(&event).into();
    event
}

/// Seals `event` after the last of `events` and appends it; returns its
/// sequence number. Exactly one slot more: a stored version never grows
/// again (the next version is a clone, whose capacity is its length), and a
/// plain push would leave 1–3 empty `Event` slots (≈ 180 bytes each) in
/// every ticket held in memory.
pub fn append(events: &mut Vec<Event>, event: Event) -> u32 {
    let sealed = seal(events.last(), event);
    let seq = sealed.seq;
    events.reserve_exact(1);
    events.push(sealed);
    seq
}

/// An event's JSON payload, `payload!({ "key": value, … })`: the same bytes
/// as `serde_json::json!({ … }).to_string()` — keys in byte order (a
/// `serde_json::Map` is a B-tree), compact, strings escaped by serde_json —
/// without building a `serde_json::Value` (a map node, a `String` per key
/// and per value, then the text). Every replica applies every command, so
/// this runs three times per command; the bytes are hashed into the chain,
/// so they must never change (the test below compares with `json!`).
macro_rules! payload {
    ({ $($key:literal : $value:expr),* $(,)? }) => {
        $crate::core::audit::payload_json(&mut [
            $(($key, $crate::core::audit::JsonField::json(&$value))),*
        ])
    };
}
pub(crate) use payload;

/// A value in a payload (see `payload!`), serialized by serde_json as the
/// value itself (untagged), so numbers, lists and string escapes are
/// serde_json's own.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Json<'a> {
    Str(&'a str),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Strs(&'a [String]),
    UInts(&'a [u64]),
}

/// The types payloads carry.
pub trait JsonField {
    fn json(&self) -> Json<'_>;
}

impl<T: JsonField + ?Sized> JsonField for &T {
    fn json(&self) -> Json<'_> {
        (**self).json()
    }
}

/// `impl JsonField for T` as `Json::Variant(conversion of self)`.
macro_rules! json_field {
    ($($t:ty => |$v:ident| $e:expr;)*) => {
        $(impl JsonField for $t {
            fn json(&self) -> Json<'_> {
                let $v = self;
                $e
            }
        })*
    };
}

json_field! {
    String => |s| Json::Str(s);
    str => |s| Json::Str(s);
    Vec<String> => |v| Json::Strs(v);
    Vec<u64> => |v| Json::UInts(v);
    bool => |b| Json::Bool(*b);
    i32 => |n| Json::Int(i64::from(*n));
    i64 => |n| Json::Int(*n);
    u32 => |n| Json::UInt(u64::from(*n));
    u64 => |n| Json::UInt(*n);
    usize => |n| Json::UInt(*n as u64);
}

/// Writes `fields` as `serde_json::Value::Object(…).to_string()` would: the
/// keys sorted as a `serde_json::Map` holds them, then serde_json's compact
/// serializer over the borrowed values.
pub fn payload_json(fields: &mut [(&'static str, Json<'_>)]) -> String {
    use serde::Serializer as _;
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<u8> = Vec::with_capacity(128);
    serde_json::Serializer::new(&mut out)
        .collect_map(fields.iter().map(|(k, v)| (k, v)))
        .expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Where a chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    /// The first event (1-based `seq`) that does not verify.
    pub seq: u32,
    pub detail: String,
}

/// Recomputes the chain. `Ok(n)` is the number of events verified.
pub fn verify(events: &[Event]) -> Result<u32, Break> {
    let mut prev: Option<&Event> = None;
    for (i, e) in events.iter().enumerate() {
        let expected_seq = i as u32 + 1;
        if e.seq != expected_seq {
            return Err(Break {
                seq: expected_seq,
                detail: format!("event {expected_seq} carries sequence number {}", e.seq),
            });
        }
        let expected_prev: &[u8] = prev.map(|p| &p.hash[..]).unwrap_or_default();
        if e.prev_hash != expected_prev {
            return Err(Break {
                seq: e.seq,
                detail: format!(
                    "event {} ({}) does not link to event {}: prev_hash {} ≠ {}",
                    e.seq,
                    e.kind,
                    e.seq - 1,
                    hex::encode(&e.prev_hash),
                    hex::encode(expected_prev)
                ),
            });
        }
        let h = event_hash(e);
        if h != e.hash {
            return Err(Break {
                seq: e.seq,
                detail: format!(
                    "event {} ({}) was altered: stored hash {} ≠ recomputed {}",
                    e.seq,
                    e.kind,
                    hex::encode(&e.hash),
                    hex::encode(&h)
                ),
            });
        }
        prev = Some(e);
    }
    Ok(events.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for i in 0..n {
            let e = Event {
                kind: format!("step{i}"),
                at_ms: 1000 + i as i64,
                reason: "因为".into(),
                ..Default::default()
            };
            let sealed = seal(out.last(), e);
            out.push(sealed);
        }
        out
    }

    #[test]
    fn a_sealed_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c), Ok(5));
        assert_eq!(c[0].hash.len(), HASH_BYTES);
        assert!(c[0].prev_hash.is_empty());
        assert_eq!(c[3].prev_hash, c[2].hash);
    }

    /// `payload!` must write exactly what `json!(…).to_string()` wrote: the
    /// bytes are in every stored chain.
    #[test]
    fn payload_matches_serde_json() {
        let tricky = "引号\"反斜杠\\ 换行\n\t\u{1}\u{7f}\u{1f} é 😀 </script>".to_string();
        let units = vec!["甲".to_string(), tricky.clone(), String::new()];
        let empty: Vec<String> = Vec::new();
        let kind: &str = "consult";
        let n32: i32 = -7;
        let u: u32 = 4_000_000_000;
        let big: u64 = u64::MAX;
        let at: i64 = i64::MIN;
        let len: usize = 3;
        let hops: Vec<u64> = vec![1, 20, u64::MAX];
        let no_hops: Vec<u64> = Vec::new();
        assert_eq!(payload!({}), serde_json::json!({}).to_string());
        assert_eq!(
            payload!({
                "zeta": tricky,
                "alpha": units,
                "none": empty,
                "kind": kind,
                "in_time": true,
                "reject": false,
                "n32": n32,
                "u": u,
                "big": big,
                "at": at,
                "len": len,
                "Upper": 1i64,
                "a_b": 2i64,
                "a": 3i64,
                "hops": hops,
                "no_hops": no_hops,
            }),
            serde_json::json!({
                "zeta": tricky,
                "alpha": units,
                "none": empty,
                "kind": kind,
                "in_time": true,
                "reject": false,
                "n32": n32,
                "u": u,
                "big": big,
                "at": at,
                "len": len,
                "Upper": 1i64,
                "a_b": 2i64,
                "a": 3i64,
                "hops": hops,
                "no_hops": no_hops,
            })
            .to_string()
        );
    }

    /// `event_hash` cuts field 8 out of the encoding instead of encoding a
    /// copy with it emptied: both must give the same bytes, with and without
    /// the fields around it.
    #[test]
    fn event_hash_equals_the_hash_of_a_copy_without_hash() {
        for raft_index in [0, 1, 300, u64::MAX] {
            for hash in [vec![], vec![7u8; 32], vec![1u8; 200]] {
                let e = Event {
                    seq: 3,
                    kind: "sign".into(),
                    actor: Some(hotline_proto::v1::Actor {
                        id: "u1".into(),
                        role: 2,
                    }),
                    at_ms: 1_700_000_000_000,
                    reason: "因为".into(),
                    payload: "{\"a\":1}".into(),
                    prev_hash: vec![9u8; 32].into(),
                    hash: hash.into(),
                    raft_index,
                };
                let mut copy = e.clone();
                copy.hash.clear();
                assert_eq!(event_hash(&e), unhashed_event_hash(&copy));
            }
        }
    }

    #[test]
    fn any_alteration_is_found_at_its_event() {
        let mut c = chain(5);
        c[2].reason = "改过".into();
        assert_eq!(verify(&c).unwrap_err().seq, 3);

        let mut c = chain(5);
        c[1].at_ms += 1;
        assert_eq!(verify(&c).unwrap_err().seq, 2);

        // Re-sealing the altered event moves the break to the next link.
        let mut c = chain(5);
        c[1].payload = "{}".into();
        c[1].hash = event_hash(&c[1]).into();
        let b = verify(&c).unwrap_err();
        assert_eq!(b.seq, 3, "{}", b.detail);

        // A removed event breaks the sequence.
        let mut c = chain(5);
        c.remove(2);
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }
}
