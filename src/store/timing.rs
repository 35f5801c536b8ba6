//! The store's write latency histograms, by operation (`warden_store_write_duration_seconds`):
//! the store records into them; `metrics.rs` registers them and hands them over at open.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The label of a store write: its fixed operation name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OpLabels {
    op: &'static str,
}

/// The histogram family a [`StoreTiming`] records into, one histogram per operation.
pub type TimingFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

/// The store's write latency histograms, handed to the store when it opens
/// ([`super::StoreOptions::timing`]).
#[derive(Debug, Clone)]
pub struct StoreTiming(Arc<TimingFamily>);

impl StoreTiming {
    /// Records into `family` (registered by the metrics).
    pub fn new(family: TimingFamily) -> Self {
        Self(Arc::new(family))
    }

    /// Records a write of `op` (a fixed operation name) that began at `started`.
    pub fn observe(&self, op: &'static str, started: Instant) {
        self.0
            .get_or_create(&OpLabels { op })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Options compare by what they configure; two timings are the same when they record into
/// the same families.
impl PartialEq for StoreTiming {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StoreTiming {}
