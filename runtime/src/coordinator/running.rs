//! The invocations of one dispatch still waiting for their module's answer.
//!
//! Not a `FuturesUnordered`: after polling every future it holds without one finishing, a
//! `FuturesUnordered` wakes its own task to yield, so every pending dispatch was polled a
//! second time for nothing, and the caller's `FuturesUnordered` (actix's, a load test's, the
//! NATS ingress's) took that wake for a future asking to yield and yielded after two of them.
//! Over NATS that split a burst of requests into writes of two invocations each, and nats-server
//! and the worker then woke once per two messages instead of once per burst. A dispatch waits
//! on a handful of modules at most, so polling them all on each wake costs less.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

/// Futures answering for a plan entry each, by the entry's index.
pub struct Running<F> {
    waiting: Vec<(usize, Pin<Box<F>>)>,
}

impl<F: Future> Running<F> {
    /// None yet.
    pub fn new() -> Self {
        Running {
            waiting: Vec::new(),
        }
    }

    /// Adds the future answering for entry `index`.
    pub fn push(&mut self, index: usize, future: F) {
        self.waiting.push((index, Box::pin(future)));
    }

    /// The next answer to arrive, with its entry's index; `None` when nothing is waiting.
    pub async fn next(&mut self) -> Option<(usize, F::Output)> {
        poll_fn(|cx| {
            if self.waiting.is_empty() {
                return Poll::Ready(None);
            }
            for i in 0..self.waiting.len() {
                if let Poll::Ready(output) = self.waiting[i].1.as_mut().poll(cx) {
                    let (index, _) = self.waiting.swap_remove(i);
                    return Poll::Ready(Some((index, output)));
                }
            }
            Poll::Pending
        })
        .await
    }
}

impl<F: Future> Default for Running<F> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::{waker, ArcWake};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Context;

    struct CountWakes(AtomicUsize);

    impl ArcWake for CountWakes {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn answers_come_in_arrival_order_and_waiting_wakes_nobody() {
        let (first_tx, first) = futures::channel::oneshot::channel::<u8>();
        let (second_tx, second) = futures::channel::oneshot::channel::<u8>();
        let mut running = Running::new();
        running.push(0, first);
        running.push(1, second);
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        {
            let next = running.next();
            futures::pin_mut!(next);
            assert!(next.as_mut().poll(&mut cx).is_pending());
            // A FuturesUnordered would have woken its task here.
            assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
            second_tx.send(2).unwrap();
            assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
            assert!(matches!(next.poll(&mut cx), Poll::Ready(Some((1, Ok(2))))));
        }
        first_tx.send(1).unwrap();
        assert_eq!(
            futures::executor::block_on(running.next()),
            Some((0, Ok(1)))
        );
        assert_eq!(futures::executor::block_on(running.next()), None);
    }
}
