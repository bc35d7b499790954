//! One way to serve a listener, for the ingress and the admin listener
//! alike: HTTP/1.1 on hyper, a connection cap (more are closed at once), a
//! header read timeout, and at shutdown the requests in flight let finish
//! within the grace period, then cut.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::ingress::BoxError;

/// When to stop: set to the end of the grace period.
pub(crate) type Stop = tokio::sync::watch::Receiver<Option<tokio::time::Instant>>;

/// Serve `listener` with `service` until `stop` is set, then let requests
/// in flight finish until the deadline it holds.
pub(crate) async fn listen<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    max_connections: usize,
    mut stop: Stop,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: wait a moment rather
                        // than spin.
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // A response goes out in several writes (head, then body
                // chunks as the guest streams them): without this, Nagle's
                // algorithm holds a small write until the client's delayed
                // ACK, up to 40 ms.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY");
                }
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    // Over the connection cap: closed at once.
                    drop(stream);
                    continue;
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .max_buf_size(64 * 1024)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
                let conn = graceful.watch(conn);
                connections.spawn(async move {
                    let _permit = permit;
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
                // Forget the connections that ended.
                while connections.try_join_next().is_some() {}
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let deadline = (*stop.borrow()).unwrap_or_else(tokio::time::Instant::now);
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace period were cut");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
