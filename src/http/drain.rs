//! A graceful stop, as the HTTP side sees it. Once `Drain::begin` is called:
//! `/health/ready` answers 503 so balancers take the instance out, every response says
//! `Connection: close` so the balancers' kept-alive connections are not reused (a
//! request sent on one just as the server closes it would fail, and a POST must not be
//! retried), and open WebSockets are closed with 1012 (service restart), which tells
//! clients to reconnect, to another instance.
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, watch};

#[derive(Clone)]
pub struct Drain(Arc<Inner>);

struct Inner {
    draining: watch::Sender<bool>,
    /// WebSockets, which the HTTP server stops tracking once upgraded, counted so a
    /// stop can wait for their close frames to go out.
    open_sockets: AtomicUsize,
    socket_closed: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(Inner {
            draining: watch::Sender::new(false),
            open_sockets: AtomicUsize::new(0),
            socket_closed: Notify::new(),
        }))
    }
}

impl Drain {
    pub fn begin(&self) {
        self.0.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    /// Resolves once the drain has begun (at once if it has).
    pub async fn begun(&self) {
        let mut seen = self.0.draining.subscribe();
        // Err only when the sender is gone, and `self` holds it.
        let _ = seen.wait_for(|draining| *draining).await;
    }

    /// Counts a WebSocket as open until the returned guard is dropped.
    pub fn socket_opened(&self) -> OpenSocket {
        self.0.open_sockets.fetch_add(1, Ordering::SeqCst);
        OpenSocket(self.0.clone())
    }

    /// Resolves when no WebSocket is open.
    pub async fn sockets_closed(&self) {
        loop {
            // Created before the check, so a close between the two still wakes it.
            let closed = self.0.socket_closed.notified();
            if self.0.open_sockets.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// Held by a WebSocket's task while it runs.
pub struct OpenSocket(Arc<Inner>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        if self.0.open_sockets.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.socket_closed.notify_waiters();
        }
    }
}

/// Adds `Connection: close` to every response while draining.
pub async fn close_connections(
    State(drain): State<Drain>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if drain.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
