//! The limits of a tag, on all its jobs whatever their task.

use std::collections::HashMap;

use super::{validate_running_limit, Blocked, Gcra, RateLimit, RateLimitError};
use crate::error::Error;

/// The limits of one tag, on all its jobs together whatever their task
/// ([`QueueBuilder::tag_max_running`](crate::QueueBuilder::tag_max_running),
/// [`QueueBuilder::tag_rate_limit`](crate::QueueBuilder::tag_rate_limit)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TagLimit {
    pub(crate) max_running: Option<u32>,
    pub(crate) rate: Option<RateLimit>,
}

/// The queue's limits per tag, by tag name, checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct TagLimits {
    limits: HashMap<String, TagLimit>,
}

impl TagLimits {
    /// Checks what the builder was given: a later call for the same tag
    /// and limit wins. An error names `tag`, `tag_max_running` or
    /// `tag_rate_limit`.
    pub(crate) fn checked(
        running: &[(String, u32)],
        rates: &[(String, Result<RateLimit, RateLimitError>)],
    ) -> Result<Self, Error> {
        let mut limits: HashMap<String, TagLimit> = HashMap::new();
        for (tag, n) in running {
            validate_tag(tag)?;
            validate_running_limit("tag_max_running", *n)?;
            limits.entry(tag.clone()).or_default().max_running = Some(*n);
        }
        for (tag, rate) in rates {
            validate_tag(tag)?;
            let rate = rate.clone().map_err(|e| Error::InvalidInput {
                field: "tag_rate_limit",
                reason: e.to_string(),
            })?;
            rate.validate_as("tag_rate_limit")?;
            limits.entry(tag.clone()).or_default().rate = Some(rate);
        }
        Ok(TagLimits { limits })
    }

    /// The limits of tag `tag`, or `None` when it has none.
    pub(crate) fn get(&self, tag: &str) -> Option<TagLimit> {
        self.limits.get(tag).copied()
    }

    /// The gate of tag `tag`, or `None` when it has no limit.
    pub(crate) fn gate(&self, tag: &str) -> Option<TagGate> {
        self.limits.get(tag).map(|l| TagGate {
            max_running: l.max_running,
            places: None,
            running: 0,
            rate: l.rate.as_ref().map(Gcra::new),
            rate_local: l.rate.is_some_and(|r| r.is_per_process()),
        })
    }
}

/// Checks a tag named in a tag limit: the rule a task's tag follows.
fn validate_tag(tag: &str) -> Result<(), Error> {
    if tag.trim().is_empty() {
        return Err(Error::InvalidInput {
            field: "tag",
            reason: "a tag limit names an empty tag".into(),
        });
    }
    Ok(())
}

/// A tag's limits in the scheduler: its runs under way and its rate
/// limiter. While it says no, the tag's ready jobs stay in the tag's own
/// ready set, in their order, and workers take other tags' jobs.
#[derive(Debug)]
pub(crate) struct TagGate {
    max_running: Option<u32>,
    /// On a shared store, the places of `max_running` this process holds
    /// (see `JobClaim::tag_places`); `None`: the whole limit.
    places: Option<u32>,
    running: u32,
    rate: Option<Gcra>,
    /// The rate limit is this process's own
    /// ([`RateLimit::per_process`]): counted here even on a shared store.
    rate_local: bool,
}

impl TagGate {
    /// Whether a job of the tag may start at `now` (µs), without taking
    /// it. On a `shared` store, the tag's rate limit was counted when its
    /// jobs were claimed (the store holds it for every process), so it is
    /// not counted again here, unless it is per process.
    pub(crate) fn check(&self, now: u64, shared: bool) -> Result<(), Blocked> {
        if self.running_cap().is_some_and(|cap| self.running >= cap) {
            return Err(Blocked::Running);
        }
        let rate_claimed = shared && !self.rate_local;
        if let Some(rate) = self.rate.as_ref().filter(|_| !rate_claimed) {
            rate.check(now).map_err(Blocked::Until)?;
        }
        Ok(())
    }

    /// Takes a start at `now` that [`TagGate::check`] allowed.
    pub(crate) fn take(&mut self, now: u64, shared: bool) {
        self.running += 1;
        let rate_claimed = shared && !self.rate_local;
        if let Some(rate) = self.rate.as_mut().filter(|_| !rate_claimed) {
            rate.take(now);
        }
    }

    /// The tag's rate limit when it is this process's own.
    pub(crate) fn local_rate(&self) -> Option<&Gcra> {
        self.rate.as_ref().filter(|_| self.rate_local)
    }

    /// The tag's running limit, if any.
    pub(crate) fn max_running(&self) -> Option<u32> {
        self.max_running
    }

    /// How many of the tag's jobs may run here at once: the places this
    /// process holds, at most the limit.
    pub(crate) fn running_cap(&self) -> Option<u32> {
        self.max_running
            .map(|max| self.places.unwrap_or(max).min(max))
    }

    /// The places of the tag's running limit this process holds, once a
    /// claim gave it some.
    pub(crate) fn places(&self) -> Option<u32> {
        self.places
    }

    /// A claim gave this process `n` places of the tag's running limit.
    pub(crate) fn set_places(&mut self, n: u32) {
        if self.max_running.is_some() {
            self.places = Some(n);
        }
    }

    /// How many of the tag's jobs run here.
    pub(crate) fn running(&self) -> u32 {
        self.running
    }

    /// A run of the tag ended.
    pub(crate) fn ended(&mut self) {
        self.running = self.running.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_tag_gate_holds_at_its_running_limit_and_spaces_starts_at_its_rate() {
        let limits = TagLimits::checked(
            &[("mail".into(), 2)],
            &[("mail".into(), Ok(RateLimit::per_second(10)))],
        )
        .unwrap();
        assert!(
            limits.gate("other").is_none(),
            "a tag without limits has no gate"
        );
        let mut gate = limits.gate("mail").unwrap();
        assert_eq!(gate.check(0, false), Ok(()));
        gate.take(0, false);
        assert_eq!(gate.check(0, false), Err(Blocked::Until(100_000)));
        gate.take(100_000, false);
        assert_eq!(gate.check(500_000, false), Err(Blocked::Running));
        gate.ended();
        assert_eq!(gate.check(500_000, false), Ok(()));
    }

    #[test]
    fn a_tag_gate_holding_places_admits_no_more_than_its_places_nor_its_limit() {
        let limits = TagLimits::checked(&[("mail".into(), 3)], &[]).unwrap();
        let mut gate = limits.gate("mail").unwrap();
        assert_eq!(
            gate.running_cap(),
            Some(3),
            "the whole limit before any claim"
        );
        gate.set_places(1);
        assert_eq!(gate.places(), Some(1));
        gate.take(0, true);
        assert_eq!(
            gate.check(0, true),
            Err(Blocked::Running),
            "one place, one run"
        );
        gate.set_places(2);
        assert_eq!(gate.check(0, true), Ok(()), "a second place frees a start");
        gate.set_places(10);
        assert_eq!(gate.running_cap(), Some(3), "never more than the limit");
        gate.ended();
        gate.set_places(0);
        assert_eq!(
            gate.check(0, true),
            Err(Blocked::Running),
            "no place, no start"
        );
        let rate_only = TagLimits::checked(&[], &[("sms".into(), Ok(RateLimit::per_second(1)))])
            .unwrap()
            .gate("sms")
            .unwrap();
        let mut rate_only = rate_only;
        rate_only.set_places(0);
        assert_eq!(
            rate_only.places(),
            None,
            "a tag without a running limit holds no places"
        );
    }

    proptest! {
        /// A tag limit is refused naming its field: a blank tag names
        /// `tag`, a zero running limit `tag_max_running`, an unreadable or
        /// zero rate `tag_rate_limit`; anything else is taken.
        #[test]
        fn a_bad_tag_limit_is_refused_naming_its_field(
            tag in "[ a-z]{0,4}",
            n in 0u32..3,
            rate in "[0-3]{0,1}/[0-2]?[sm]?",
        ) {
            let got = TagLimits::checked(&[(tag.clone(), n)], &[]);
            if tag.trim().is_empty() {
                prop_assert!(matches!(got, Err(Error::InvalidInput { field: "tag", .. })), "{got:?}");
            } else if n == 0 {
                prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "tag_max_running", .. })),
                    "{got:?}"
                );
            } else {
                prop_assert!(got.is_ok());
            }
            let parsed = rate.parse::<RateLimit>();
            let got = TagLimits::checked(&[], &[("t".into(), parsed.clone())]);
            match parsed {
                Ok(_) => prop_assert!(got.is_ok(), "{rate}: {got:?}"),
                Err(_) => prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "tag_rate_limit", .. })),
                    "{rate}: {got:?}"
                ),
            }
            let zero = RateLimit::per_second(n).burst(1);
            let got = TagLimits::checked(&[], &[("t".into(), Ok(zero))]);
            prop_assert_eq!(
                n == 0,
                matches!(got, Err(Error::InvalidInput { field: "tag_rate_limit", .. }))
            );
        }
    }
}
