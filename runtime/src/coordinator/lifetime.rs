//! How long a reply holds: the earliest `valid_until_ms` of the modules consulted for it, and
//! none as soon as one consulted module did not say (or was skipped after a failure), since
//! the reply could change as soon as that module's answer does.

/// Collects the lifetimes of the answers of one walk, in plan order.
#[derive(Debug, Default)]
pub struct Lifetime {
    /// Plan entries answered so far, counted from the first.
    answered: usize,
    /// The earliest lifetime so far; `None` once an answer had none or one was skipped.
    earliest: Option<u64>,
    broken: bool,
}

impl Lifetime {
    /// Records the answer of plan entry `index`, holding until `valid_until_ms` if it said.
    pub fn answered(&mut self, index: Option<usize>, valid_until_ms: Option<u64>) {
        if index != Some(self.answered) {
            self.broken = true; // an entry before it failed and was skipped (or unknown)
        }
        self.answered = index.map_or(self.answered, |i| i + 1);
        match valid_until_ms {
            Some(until) if !self.broken => {
                self.earliest = Some(self.earliest.map_or(until, |e| e.min(until)));
            }
            _ => self.broken = true,
        }
    }

    /// Until when the reply holds, if the first `consulted` plan entries all answered with a
    /// lifetime.
    pub fn holds_until(&self, consulted: usize) -> Option<u64> {
        if self.broken || consulted == 0 || self.answered != consulted {
            return None;
        }
        self.earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_lifetime_of_every_consulted_module() {
        let mut l = Lifetime::default();
        l.answered(Some(0), Some(30));
        l.answered(Some(1), Some(20));
        assert_eq!(l.holds_until(2), Some(20));
        assert_eq!(l.holds_until(3), None, "a module not consulted yet");
    }

    #[test]
    fn none_when_a_module_did_not_say_or_was_skipped() {
        let mut l = Lifetime::default();
        l.answered(Some(0), None);
        l.answered(Some(1), Some(20));
        assert_eq!(l.holds_until(2), None);

        let mut skipped = Lifetime::default();
        skipped.answered(Some(1), Some(20)); // entry 0 failed under policy allow
        assert_eq!(skipped.holds_until(2), None);

        let mut unknown = Lifetime::default();
        unknown.answered(None, Some(20));
        assert_eq!(unknown.holds_until(1), None);
        assert_eq!(
            Lifetime::default().holds_until(0),
            None,
            "no module: nothing holds"
        );
    }
}
