//! The one serving loop of both modes (plain HTTP standalone, HTTPS in a cluster), with
//! the bounds a server facing untrusted clients needs: a deadline for the request head
//! (and the TLS handshake), a deadline for each request, a cap on open connections and
//! a graceful shutdown that ends within a known time whatever the clients do.

use crate::error::ApiError;
use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The bounds of [`serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// From accepting a connection (or finishing a request on it) until the next
    /// request's head is complete, TLS handshake included; idle and slow clients
    /// (slowloris) are disconnected after it.
    pub header_read_timeout: Duration,
    /// From a complete request head until the response starts; then a 504 Status.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
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
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                drop(permit);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors and the like: say so, and do not spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, acceptor, stopping) = (app.clone(), acceptor.clone(), stopping.clone());
        connections.spawn(async move {
            serve_connection(tcp, app, acceptor, limits, stopping).await;
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
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
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
                Err(_) => ApiError::new(
                    504,
                    "Timeout",
                    format!("the request did not complete within {request_timeout:?}"),
                )
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
        drive(builder.serve_connection(io, service), stopping, in_flight).await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        drive(builder.serve_connection(io, service), stopping, in_flight).await;
    }
}

/// Counts a request from its complete head until its handler returns.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a connection. On shutdown one without a request in flight (idle, or still
/// sending a request head) is dropped at once; one with a request is closed after
/// answering it.
async fn drive<C>(connection: C, mut stopping: watch::Receiver<bool>, in_flight: Arc<AtomicUsize>)
where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended");
            }
            return;
        }
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    if in_flight.load(Ordering::Acquire) == 0 {
        return;
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

#[cfg(test)]
mod tests;
