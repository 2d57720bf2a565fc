//! Spans that never reach the collector, counted (`glia_spans_dropped_total{reason}`), and
//! export that backs off while the collector is down.
//!
//! Without these, a collector that refuses or never answers cost every batch an export
//! attempt (encoding it, connecting, the exporter's own retries, logging the failure) and
//! dropped nearly every span with one log line to show for it. Now a failed export closes
//! a gate for a backoff: spans that end meanwhile are dropped (and counted) where they end,
//! without crossing to the export thread, and the next try comes after 1 s, 2 s, ... up to
//! 30 s. Every span lost — queue full, export failed, dropped while backing off — is
//! counted.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first pause after a failed export; it doubles with each failure in a row.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest pause between export attempts while the collector stays down.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why spans were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The export queue was full: the exporter could not keep up.
    QueueFull,
    /// The collector refused the batch, or did not answer in time.
    ExportFailed,
    /// Dropped without trying, while backing off after failed exports.
    CollectorDown,
}

impl DropReason {
    /// Every reason, in discriminant order.
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::ExportFailed,
        DropReason::CollectorDown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ExportFailed => "export_failed",
            DropReason::CollectorDown => "collector_down",
        }
    }
}

/// Counts of dropped spans by reason, read by `/metrics` at scrape time.
#[derive(Debug, Default)]
pub struct SpanDrops {
    counts: [AtomicU64; 3],
}

impl SpanDrops {
    /// Counts `n` spans dropped for `reason`.
    pub fn add(&self, reason: DropReason, n: usize) {
        self.counts[reason as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Spans dropped for `reason` so far.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }
}

/// What the bounded processor and the backing-off exporter share: the spans waiting for
/// export, and until when export is off after failures.
#[derive(Debug)]
pub struct ExportGate {
    drops: Arc<SpanDrops>,
    capacity: usize,
    queued: AtomicUsize,
    epoch: Instant,
    closed_until_ms: AtomicU64,
    failures: AtomicU32,
}

impl ExportGate {
    /// A gate counting into `drops`, for a queue of `capacity` spans.
    pub fn new(drops: Arc<SpanDrops>, capacity: usize) -> Arc<ExportGate> {
        Arc::new(ExportGate {
            drops,
            capacity,
            queued: AtomicUsize::new(0),
            epoch: Instant::now(),
            closed_until_ms: AtomicU64::new(0),
            failures: AtomicU32::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether spans go to the exporter now (not backing off).
    fn open(&self) -> bool {
        self.now_ms() >= self.closed_until_ms.load(Ordering::Acquire)
    }

    /// An export failed: no export for the next backoff, which it returns.
    fn failed(&self) -> (u32, Duration) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let pause = backoff(failures);
        self.closed_until_ms
            .store(self.now_ms() + pause.as_millis() as u64, Ordering::Release);
        (failures, pause)
    }

    /// An export succeeded; whether the collector had been failing.
    fn succeeded(&self) -> bool {
        self.failures.swap(0, Ordering::AcqRel) > 0
    }
}

/// Wraps the OTLP exporter: after a failed export it closes the gate for a backoff
/// (`BACKOFF_MIN` doubling to `BACKOFF_MAX`), drops what was queued meanwhile without
/// trying, and counts what it drops.
#[derive(Debug)]
pub struct BackoffExporter<E> {
    inner: E,
    gate: Arc<ExportGate>,
    endpoint: String,
}

impl<E> BackoffExporter<E> {
    /// `inner` behind `gate`; `endpoint` names the collector in the log.
    pub fn new(inner: E, gate: Arc<ExportGate>, endpoint: String) -> Self {
        BackoffExporter {
            inner,
            gate,
            endpoint,
        }
    }
}

/// The pause after `failures` failed exports in a row.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

impl<E: SpanExporter> SpanExporter for BackoffExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.gate.queued.fetch_sub(n, Ordering::AcqRel);
        if !self.gate.open() {
            self.gate.drops.add(DropReason::CollectorDown, n);
            return Ok(());
        }
        match self.inner.export(batch).await {
            Ok(()) => {
                if self.gate.succeeded() {
                    tracing::info!(endpoint = %self.endpoint, "the OTLP collector takes spans again");
                }
            }
            Err(e) => {
                self.gate.drops.add(DropReason::ExportFailed, n);
                let (failures, pause) = self.gate.failed();
                tracing::warn!(endpoint = %self.endpoint, error = %e, failures,
                    pause_ms = pause.as_millis() as u64,
                    "cannot export spans; dropping them (counted in glia_spans_dropped_total) until the next try");
            }
        }
        // The batch processor logs every error itself; the failure is told above, once per
        // attempt, and the spans are counted.
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps the batch processor: a span that ends while the gate is closed (backing off) is
/// dropped and counted here, at once, without crossing to the export thread; one that ends
/// when `capacity` spans are waiting is dropped and counted too, so the batch processor's
/// queue never fills (its own drops are only logged, not counted where glia can read them).
#[derive(Debug)]
pub struct BoundedProcessor<P> {
    inner: P,
    gate: Arc<ExportGate>,
}

impl<P> BoundedProcessor<P> {
    /// `inner` behind `gate`, whose capacity is `inner`'s queue size.
    pub fn new(inner: P, gate: Arc<ExportGate>) -> Self {
        BoundedProcessor { inner, gate }
    }
}

impl<P: SpanProcessor> SpanProcessor for BoundedProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let gate = &self.gate;
        if !gate.open() {
            gate.drops.add(DropReason::CollectorDown, 1);
            return;
        }
        if gate.queued.fetch_add(1, Ordering::AcqRel) >= gate.capacity {
            gate.queued.fetch_sub(1, Ordering::AcqRel);
            gate.drops.add(DropReason::QueueFull, 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;
    use std::sync::atomic::AtomicBool;

    /// A collector that is up or down, counting the attempts that reach it.
    #[derive(Debug, Default)]
    struct Collector {
        down: AtomicBool,
        attempts: AtomicUsize,
    }

    /// An exporter to a [`Collector`].
    #[derive(Debug, Clone)]
    struct To(Arc<Collector>);

    impl SpanExporter for To {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.attempts.fetch_add(1, Ordering::Relaxed);
            if self.0.down.load(Ordering::Relaxed) {
                Err(OTelSdkError::InternalFailure("connection refused".into()))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        assert_eq!(backoff(2), BACKOFF_MIN * 2);
        assert_eq!(backoff(3), BACKOFF_MIN * 4);
        assert_eq!(backoff(50), BACKOFF_MAX);
    }

    #[test]
    fn a_down_collector_is_tried_once_per_backoff_and_every_span_is_counted() {
        let collector = Arc::new(Collector::default());
        collector.down.store(true, Ordering::Relaxed);
        let drops = Arc::new(SpanDrops::default());
        let gate = ExportGate::new(drops.clone(), 100);
        let exporter = BackoffExporter::new(To(collector.clone()), gate.clone(), "x".into());
        gate.queued.store(30, Ordering::Relaxed);
        for _ in 0..3 {
            futures::executor::block_on(exporter.export(vec![span(); 10])).unwrap();
        }
        assert_eq!(collector.attempts.load(Ordering::Relaxed), 1);
        assert_eq!(drops.get(DropReason::ExportFailed), 10);
        assert_eq!(drops.get(DropReason::CollectorDown), 20);
        assert_eq!(gate.queued.load(Ordering::Relaxed), 0);
        assert!(!gate.open());
        // Back up after the pause: exported, and the backoff is over.
        collector.down.store(false, Ordering::Relaxed);
        gate.closed_until_ms.store(0, Ordering::Relaxed);
        gate.queued.store(20, Ordering::Relaxed);
        futures::executor::block_on(exporter.export(vec![span(); 10])).unwrap();
        futures::executor::block_on(exporter.export(vec![span(); 10])).unwrap();
        assert_eq!(collector.attempts.load(Ordering::Relaxed), 3);
        assert_eq!(drops.get(DropReason::CollectorDown), 20);
        assert_eq!(gate.failures.load(Ordering::Relaxed), 0);
    }

    /// A processor that keeps what reaches it.
    #[derive(Debug, Default)]
    struct Kept(std::sync::Mutex<usize>);

    impl SpanProcessor for Kept {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, _: SpanData) {
            *self.0.lock().unwrap() += 1;
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn spans_past_the_queue_or_while_backing_off_are_dropped_where_they_end() {
        let drops = Arc::new(SpanDrops::default());
        let gate = ExportGate::new(drops.clone(), 3);
        let processor = BoundedProcessor::new(Kept::default(), gate.clone());
        for _ in 0..5 {
            processor.on_end(span());
        }
        assert_eq!(*processor.inner.0.lock().unwrap(), 3);
        assert_eq!(drops.get(DropReason::QueueFull), 2);
        gate.queued.store(0, Ordering::Relaxed);
        gate.failed();
        processor.on_end(span());
        assert_eq!(*processor.inner.0.lock().unwrap(), 3);
        assert_eq!(drops.get(DropReason::CollectorDown), 1);
    }

    fn span() -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanKind, Status};
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "s".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }
}
