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
pub fn event_hash(event: &Event) -> Vec<u8> {
    if event.hash.is_empty() {
        return unhashed_event_hash(event);
    }
    let mut unhashed = event.clone();
    unhashed.hash.clear();
    unhashed_event_hash(&unhashed)
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
    event.prev_hash = prev.map(|p| p.hash.clone()).unwrap_or_default();
    event.hash.clear();
    event.hash = unhashed_event_hash(&event);
    event
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
        let expected_prev = prev.map(|p| p.hash.as_slice()).unwrap_or_default();
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
        c[1].hash = event_hash(&c[1]);
        let b = verify(&c).unwrap_err();
        assert_eq!(b.seq, 3, "{}", b.detail);

        // A removed event breaks the sequence.
        let mut c = chain(5);
        c.remove(2);
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }
}
