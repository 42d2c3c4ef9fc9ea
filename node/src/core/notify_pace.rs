//! When a group's notifier delivers its outbox next. The node's notifier
//! task (`crate::notify::run`) and the simulator's notifier both keep one,
//! so a rehearsal's outboxes fill and drain as a live cluster's do.
//!
//! The rule, in the leader's clock (milliseconds from any fixed origin):
//! - a round that sent a full batch is followed by another at once (more is
//!   likely waiting);
//! - a round that found work pending (or has failures to retry) is followed
//!   by another one interval after it started;
//! - otherwise the notifier is idle and waits for its bell (notifications
//!   added on this node, or leadership arrived): the round the bell asks for
//!   runs at once, unless a round started within the interval. Under a
//!   steady stream of accepts the bell rings all the time; this keeps
//!   rounds (a read and a `Delivered` proposal each) to one per interval.

/// A notifier's pace (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyPace {
    interval_ms: u64,
    /// When the last round started.
    last_round_ms: Option<u64>,
}

impl NotifyPace {
    /// The node's default `notify.interval_ms`.
    pub const DEFAULT_INTERVAL_MS: u64 = 500;
    /// The node's default `notify.batch`.
    pub const DEFAULT_BATCH: usize = 100;

    pub fn new(interval_ms: u64) -> Self {
        assert!(interval_ms > 0, "a zero interval would spin");
        Self {
            interval_ms,
            last_round_ms: None,
        }
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// A round starts at `now_ms`.
    pub fn round_started(&mut self, now_ms: u64) {
        debug_assert!(self.last_round_ms.is_none_or(|t| t <= now_ms));
        self.last_round_ms = Some(now_ms);
    }

    /// After a round: when the next one is due without a bell, or `None`
    /// when the notifier is idle. `full`: it sent a full batch; `busy`: it
    /// found notifications pending, or has failures to retry.
    pub fn after_round(&self, full: bool, busy: bool) -> Option<u64> {
        let started = self.last_round_ms.expect("after a round");
        if full {
            Some(started)
        } else if busy {
            Some(started + self.interval_ms)
        } else {
            None
        }
    }

    /// The bell rang at `now_ms` while the notifier was idle: when the
    /// round it asks for runs.
    pub fn rung(&self, now_ms: u64) -> u64 {
        self.last_round_ms
            .map_or(now_ms, |t| now_ms.max(t + self.interval_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bell_goes_at_once_unless_a_round_ran_within_the_interval() {
        let mut p = NotifyPace::new(500);
        assert_eq!(p.rung(1_000), 1_000, "the first bell: at once");
        p.round_started(1_000);
        assert_eq!(
            p.after_round(false, false),
            None,
            "nothing was pending: idle"
        );
        assert_eq!(p.rung(1_200), 1_500, "within the interval: at its end");
        assert_eq!(p.rung(1_700), 1_700, "after it: at once");
    }

    #[test]
    fn a_full_batch_goes_again_at_once_and_pending_work_at_the_next_interval() {
        let mut p = NotifyPace::new(500);
        p.round_started(2_000);
        assert_eq!(p.after_round(true, true), Some(2_000));
        p.round_started(2_030);
        assert_eq!(p.after_round(false, true), Some(2_530));
        p.round_started(2_530);
        assert_eq!(p.after_round(false, false), None);
    }
}
