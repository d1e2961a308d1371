//! The HTTP server: hyper-util's connection builder (HTTP/1.1 and HTTP/2) driven by hand,
//! because `axum::serve` has no timeouts and no connection cap. Each connection is watched:
//!
//! - its request headers must arrive within `header_read_timeout` of the connection opening or
//!   of the first byte after an idle spell, else it is closed (slow-loris);
//! - kept alive between requests, it is closed after `idle_timeout` without a byte;
//! - at most `max_connections` are served at once (the rest wait in the listen backlog).
//!
//! Body-read and request timeouts are the edge middleware's (`web::edge`), which answers them
//! with an error a client can read. On shutdown no new connection is accepted, idle ones close,
//! and in-flight requests get `shutdown_timeout` to finish; then their connections are cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use control_plane::settings::HttpSettings;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// Serves `app` on `listener` until `stop` resolves, then waits for open connections to end.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    http: HttpSettings,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let slots = u32::try_from(http.max_connections).unwrap_or(u32::MAX);
    let connections = Arc::new(Semaphore::new(slots as usize));
    let (closing, closing_seen) = watch::channel(false);
    let mut stop = pin!(stop);
    let mut served = tokio::task::JoinSet::new();
    loop {
        // Reap ended connections so the set holds only live ones.
        while served.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = connections.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        served.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            http.clone(),
            closing_seen.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: all slots back means all connections ended.
    let drained =
        tokio::time::timeout(http.shutdown_timeout, connections.acquire_many(slots)).await;
    if drained.is_err() {
        tracing::warn!(
            connections = served.len(),
            "requests still running after the shutdown timeout; cutting their connections"
        );
    }
    // Dropping a connection's task drops its requests, and with them any tenant connection
    // they hold (returned to its pool, which closes as the process stops).
    served.shutdown().await;
    Ok(())
}

/// What a connection's watchdog needs to know about it.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when a request starts or ends, or the first byte of a request head arrives.
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
    /// When the request head now arriving began (the connection's opening counts).
    head_started: Option<Instant>,
}

/// What the watchdog does at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Headers too slow: drop the connection.
    Headers,
    /// Idle too long: close it gracefully.
    Idle,
}

impl Activity {
    fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: now,
                head_started: Some(now),
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes_read(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.head_started = None;
        drop(state);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// The next deadline, if no request is in flight.
    fn deadline(&self, http: &HttpSettings) -> Option<(Instant, Expiry)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(started) => (started + http.header_read_timeout, Expiry::Headers),
            None => (state.idle_since + http.idle_timeout, Expiry::Idle),
        })
    }
}

/// A request being served; its drop marks the connection idle again (when it was the last).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: HttpSettings,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = requests.request_started();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog below times headers (hyper's own timer would also close idle connections).
    builder.http1().header_read_timeout(None);
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut shutting_down = false;
    loop {
        let deadline = activity.deadline(&http);
        let expiry = async {
            match deadline {
                Some((at, expiry)) => {
                    tokio::time::sleep_until(at).await;
                    expiry
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = async { let _ = closing.wait_for(|closing| *closing).await; }, if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            expiry = expiry => match expiry {
                Expiry::Headers => {
                    tracing::debug!(%peer, "request headers too slow; closing the connection");
                    return;
                }
                Expiry::Idle if !shutting_down => {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
                // Already closing gracefully: give it the header timeout once more, then drop.
                Expiry::Idle => {
                    let _ = tokio::time::timeout(http.header_read_timeout, connection.as_mut()).await;
                    return;
                }
            },
        }
    }
}

/// A TCP stream that tells the connection's [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(context, buffer);
        if buffer.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }
}
