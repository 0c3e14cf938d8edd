//! A request's poll passes, as a clock. GraphQL resolves the fields of one level as
//! sibling futures of the request's future; when that future returns `Pending`, every
//! sibling that could make progress has had its turn, so each key the level needs is
//! known. Batches (`batch`) wait for such pass ends instead of for a timer: the wake-up
//! that follows re-polls the request at once, ahead of other tasks.
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

tokio::task_local! {
    static CLOCK: Arc<PassClock>;
}

#[derive(Default)]
struct PassClock {
    ended: AtomicU64,
    waiting: Mutex<Vec<Waker>>,
}

impl PassClock {
    fn end_pass(&self) {
        self.ended.fetch_add(1, Ordering::SeqCst);
        let woken = match self.waiting.lock() {
            Ok(mut waiting) => std::mem::take(&mut *waiting),
            Err(_) => return,
        };
        for waker in woken {
            waker.wake();
        }
    }
}

/// Runs `fut` (a request, or a WebSocket connection's operations) keeping its pass clock.
pub async fn counting_passes<F: Future>(fut: F) -> F::Output {
    let clock = Arc::new(PassClock::default());
    let mut fut = std::pin::pin!(fut);
    let passes = std::future::poll_fn(|cx| {
        let polled = fut.as_mut().poll(cx);
        if polled.is_pending() {
            clock.end_pass();
        }
        polled
    });
    CLOCK.scope(clock.clone(), passes).await
}

/// Completes once the pass it was first polled in has ended. Outside `counting_passes`
/// (nothing keeps the clock) it yields to the scheduler once instead.
pub async fn pass_end() {
    let Ok(clock) = CLOCK.try_with(Arc::clone) else {
        tokio::task::yield_now().await;
        return;
    };
    let started = clock.ended.load(Ordering::SeqCst);
    std::future::poll_fn(|cx| {
        if clock.ended.load(Ordering::SeqCst) > started {
            return Poll::Ready(());
        }
        if let Ok(mut waiting) = clock.waiting.lock() {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}
