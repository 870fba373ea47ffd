//! The one serving loop of both modes (plain HTTP standalone, HTTPS in a cluster), with
//! the bounds a server facing untrusted clients needs: a deadline for the request head
//! (and the TLS handshake and the HTTP/2 preface), a deadline for each request, an idle
//! timeout and a maximum age per connection, caps on open connections in all and per
//! peer, and a graceful shutdown that ends within a known time whatever the clients do.

use crate::error::ApiError;
use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The bounds of [`serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// From accepting a connection (or finishing a request on it) until the next
    /// request's head is complete, TLS handshake and HTTP/2 preface included; idle and
    /// slow clients (slowloris) are disconnected after it.
    pub header_read_timeout: Duration,
    /// From a complete request head until the response starts; then a 504 Status.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Connections served at once from one IP address; more are closed when accepted, so
    /// one client cannot take every slot (0: no cap).
    pub max_connections_per_peer: usize,
    /// A connection with no request in flight for this long is closed (HTTP/2 keeps
    /// connections open between requests; this bounds how long a quiet one holds a slot).
    pub idle_timeout: Duration,
    /// A connection older than this is asked to close after its requests (HTTP/2 GOAWAY);
    /// zero: never.
    pub max_connection_age: Duration,
    /// After the shutdown signal: how long requests in flight may take before every
    /// connection is dropped.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            // kube-apiserver's own default request timeout.
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            // The aggregator reaches a replica over a handful of connections.
            max_connections_per_peer: 256,
            idle_timeout: Duration::from_secs(90),
            max_connection_age: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A connection after its handshake.
pub struct Accepted<S> {
    pub stream: S,
    /// Speak HTTP/2 (negotiated by ALPN); else HTTP/1.1.
    pub http2: bool,
    /// Copied into every request on the connection (e.g. the client's certificates).
    pub extensions: http::Extensions,
}

/// Turns an accepted TCP connection into a stream HTTP is spoken on.
pub trait Acceptor: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = std::io::Result<Accepted<Self::Stream>>> + Send;
}

/// Plain HTTP/1.1.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainHttp;

impl Acceptor for PlainHttp {
    type Stream = TcpStream;
    async fn accept(&self, tcp: TcpStream) -> std::io::Result<Accepted<TcpStream>> {
        Ok(Accepted {
            stream: tcp,
            http2: false,
            extensions: http::Extensions::new(),
        })
    }
}

/// Starts a graceful shutdown of a [`serve`] from anywhere.
#[derive(Clone, Debug)]
pub struct ServeHandle(Arc<watch::Sender<bool>>);

impl Default for ServeHandle {
    fn default() -> Self {
        ServeHandle(Arc::new(watch::channel(false).0))
    }
}

impl ServeHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting, lets requests in flight finish within the grace period.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }

    /// Completes once [`ServeHandle::shutdown`] was called: the `shutdown` of [`serve`].
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.0.subscribe();
        async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains within
/// `limits.shutdown_grace`.
pub async fn serve<A: Acceptor>(
    listener: TcpListener,
    app: Router,
    acceptor: A,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers = Peers::default();
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // Finished connections are reaped as they end: a task's memory is only released
        // once it is joined, and a quiet server would otherwise keep every closed one.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                drop(permit);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => (tcp, peer),
                Err(error) => {
                    // Out of file descriptors and the like: say so, and do not spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(peer_slot) = peers.enter(peer.ip(), limits.max_connections_per_peer) else {
            // Closed at once: the slot goes back to everyone else.
            tracing::debug!(peer = %peer.ip(), limit = limits.max_connections_per_peer, "too many connections from one peer");
            drop(tcp);
            drop(permit);
            continue;
        };
        let (app, acceptor, stopping) = (app.clone(), acceptor.clone(), stopping.clone());
        connections.spawn(async move {
            serve_connection(tcp, app, acceptor, limits, stopping).await;
            drop(peer_slot);
            drop(permit);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace = ?limits.shutdown_grace,
            "requests still running after the shutdown grace period; closing their connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection<A: Acceptor>(
    tcp: TcpStream,
    app: Router,
    acceptor: A,
    limits: ServeLimits,
    stopping: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    // From here: the handshake, the preface and the first request share one deadline.
    let activity = Arc::new(Activity::new());
    let accepted =
        match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(error)) => {
                tracing::debug!(%error, "handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("no handshake within {:?}", limits.header_read_timeout);
                return;
            }
        };
    let extensions = accepted.extensions;
    let request_timeout = limits.request_timeout;
    let counter = activity.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().extend(extensions.clone());
        let app = app.clone();
        let running = InFlight::start(&counter);
        async move {
            let _running = running;
            let response = tokio::time::timeout(
                request_timeout,
                app.oneshot(request.map(axum::body::Body::new)),
            )
            .await;
            Ok::<_, Infallible>(match response {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => ApiError::timeout(format!(
                    "the request did not complete within {request_timeout:?}"
                ))
                .into_response(),
            })
        }
    });
    let io = TokioIo::new(accepted.stream);
    if accepted.http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // Dead peers of idle connections are found by pings.
            .keep_alive_interval(Some(limits.header_read_timeout))
            .keep_alive_timeout(limits.header_read_timeout);
        drive(
            builder.serve_connection(io, service),
            stopping,
            activity,
            limits,
        )
        .await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        drive(
            builder.serve_connection(io, service),
            stopping,
            activity,
            limits,
        )
        .await;
    }
}

/// Connections open per peer address, for [`ServeLimits::max_connections_per_peer`].
#[derive(Clone, Default)]
struct Peers(Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>);

/// One connection counted for its peer until dropped.
struct PeerSlot {
    peers: Peers,
    ip: IpAddr,
}

impl Peers {
    fn enter(&self, ip: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_default();
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.peers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What a connection's requests have done, for its deadlines.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicUsize,
    /// When the last request ended (or the connection opened).
    idle_since: std::sync::Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            opened: now,
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(now),
        }
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &ServeLimits, now: Instant) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = now
            .saturating_duration_since(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()));
        if self.requests.load(Ordering::Acquire) == 0 {
            // HTTP/1 has its own header timer; HTTP/2 has none for the preface and the
            // first request, so a silent client would keep its slot forever.
            (idle >= limits.header_read_timeout).then_some("no request within the header timeout")
        } else {
            (idle >= limits.idle_timeout).then_some("idle")
        }
    }
}

/// Counts a request from its complete head until its handler returns.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a connection, closing it when it has been silent or idle too long and asking it
/// to close (after its requests) past its maximum age. On shutdown one without a request
/// in flight (idle, or still sending a request head) is dropped at once; one with a
/// request is closed after answering it.
async fn drive<C>(
    connection: C,
    stopping: watch::Receiver<bool>,
    activity: Arc<Activity>,
    limits: ServeLimits,
) where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut connection = pin!(connection);
    let mut stopped = pin!(stopped(stopping));
    let mut shortest = limits.header_read_timeout.min(limits.idle_timeout);
    if !limits.max_connection_age.is_zero() {
        shortest = shortest.min(limits.max_connection_age);
    }
    let mut check = tokio::time::interval((shortest / 4).max(Duration::from_millis(10)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            _ = &mut stopped => break,
            _ = check.tick() => {
                let now = Instant::now();
                if let Some(why) = activity.expired(&limits, now) {
                    tracing::debug!(why, "closing the connection");
                    return;
                }
                if !limits.max_connection_age.is_zero()
                    && now.duration_since(activity.opened) >= limits.max_connection_age
                {
                    tracing::debug!("closing the connection past its maximum age");
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.request_timeout, connection.as_mut()).await;
                    return;
                }
            }
        }
    }
    if activity.in_flight.load(Ordering::Acquire) == 0 {
        return;
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Completes once the shutdown signal is sent.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests;
