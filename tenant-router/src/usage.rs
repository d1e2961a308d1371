//! Request metering: each resolved tenant carries a shared atomic counter, so counting a request
//! is one `fetch_add` (no lock, no write to the control plane). [`RouterState::flush_usage`]
//! takes every count and adds them to the control plane in one statement; if that fails the
//! counts are put back and go with the next flush, so an outage loses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// The counters of every tenant this router served since the last flush.
#[derive(Debug, Default)]
pub struct UsageMeter {
    counters: Mutex<HashMap<Uuid, Arc<AtomicU64>>>,
}

impl UsageMeter {
    /// The tenant's counter (made on first use; resolutions hold it, so counting is lock-free).
    pub fn counter(&self, tenant: Uuid) -> Arc<AtomicU64> {
        match self.counters.lock() {
            Ok(mut counters) => counters.entry(tenant).or_default().clone(),
            // A poisoned map only loses metering, never a request.
            Err(_) => Arc::new(AtomicU64::new(0)),
        }
    }

    /// Takes every non-zero count (resetting it to zero) and forgets counters nobody holds.
    pub fn take(&self) -> Vec<(Uuid, i64)> {
        let Ok(mut counters) = self.counters.lock() else {
            return Vec::new();
        };
        let mut batch = Vec::new();
        counters.retain(|tenant, counter| {
            let count = counter.swap(0, Ordering::Relaxed);
            if count > 0 {
                batch.push((*tenant, i64::try_from(count).unwrap_or(i64::MAX)));
            }
            // Only this map holds it: no cached resolution can count into it any more.
            count > 0 || Arc::strong_count(counter) > 1
        });
        batch
    }

    /// Puts counts back after a failed flush.
    pub fn give_back(&self, batch: &[(Uuid, i64)]) {
        for (tenant, count) in batch {
            self.counter(*tenant)
                .fetch_add(u64::try_from(*count).unwrap_or(0), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_taken_once_and_given_back_after_a_failure() {
        let meter = UsageMeter::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let counter = meter.counter(a);
        counter.fetch_add(3, Ordering::Relaxed);
        meter.counter(b).fetch_add(1, Ordering::Relaxed);
        let mut batch = meter.take();
        batch.sort();
        let mut expected = vec![(a, 3), (b, 1)];
        expected.sort();
        assert_eq!(batch, expected);
        assert!(meter.take().is_empty(), "taken counts are gone");
        meter.give_back(&[(a, 3)]);
        counter.fetch_add(1, Ordering::Relaxed);
        assert_eq!(meter.take(), vec![(a, 4)]);
        // b's counter is held by nobody now and had nothing: forgotten.
        assert_eq!(meter.counters.lock().unwrap().len(), 1);
    }
}
