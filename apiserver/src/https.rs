//! Serving a router over TLS, with the client's certificate chain made visible to
//! the handlers.
//!
//! hyper knows nothing of TLS, so the certificates a client presented are lost once
//! the handshake is done unless they are copied into each request: the acceptor
//! below wraps the per-connection service so that every request on the connection
//! carries them as [`PeerCertificates`].

use crate::tls::ReloadableTls;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::RustlsAcceptor;
use futures::future::BoxFuture;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// The chain the client presented in the TLS handshake, leaf first. Present only
/// when the client sent one, which the handshake has then verified against the
/// client-CA bundle in force at the time.
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Serves `app` over TLS on `listener` until `handle` shuts it down, inserting the
/// peer's certificate chain into each request's extensions as [`PeerCertificates`].
pub async fn serve_https(
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Arc<ReloadableTls>,
    handle: axum_server::Handle<SocketAddr>,
) -> std::io::Result<()> {
    // tokio requires it of a std listener, and a blocking one would stall the runtime.
    listener.set_nonblocking(true)?;
    let acceptor = PeerCertificateAcceptor {
        tls: RustlsAcceptor::new(tls.rustls_config()),
    };
    axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle)
        .serve(app.into_make_service())
        .await
}

#[derive(Clone)]
struct PeerCertificateAcceptor {
    tls: RustlsAcceptor<DefaultAcceptor>,
}

impl<I, S> Accept<I, S> for PeerCertificateAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = TlsStream<I>;
    type Service = WithPeerCertificates<S>;
    type Future = BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.tls.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
            Ok((
                stream,
                WithPeerCertificates {
                    inner: service,
                    peer,
                },
            ))
        })
    }
}

#[derive(Clone)]
struct WithPeerCertificates<S> {
    inner: S,
    peer: Option<PeerCertificates>,
}

impl<S, B> tower::Service<http::Request<B>> for WithPeerCertificates<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_pki::TestCa;
    use crate::tls::ServingCertificate;
    use axum::extract::Extension;
    use axum::routing::get;

    #[tokio::test]
    async fn handlers_see_the_peer_certificates() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client_ca = TestCa::new("client-ca");
        let serving = ServingCertificate::self_signed(&["127.0.0.1".to_owned()]).unwrap();
        let tls = Arc::new(ReloadableTls::new(serving.clone(), Some(client_ca.pem())).unwrap());
        let app = axum::Router::new().route(
            "/",
            get(|peer: Option<Extension<PeerCertificates>>| async move {
                peer.map_or(0, |Extension(peer)| peer.0.len()).to_string()
            }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let handle = axum_server::Handle::new();
        tokio::spawn(serve_https(listener, app, tls, handle.clone()));

        let trust = reqwest::Certificate::from_pem(serving.ca_bundle().as_bytes()).unwrap();
        let get = |identity: Option<reqwest::Identity>| {
            let mut builder = reqwest::Client::builder().tls_certs_only([trust.clone()]);
            if let Some(identity) = identity {
                builder = builder.identity(identity);
            }
            let client = builder.build().unwrap();
            let url = url.clone();
            async move { client.get(url).send().await.unwrap().text().await.unwrap() }
        };
        assert_eq!(get(None).await, "0");
        let leaf = client_ca.client("someone", &[]);
        assert_eq!(get(Some(leaf.identity())).await, "1");
        handle.shutdown();
    }
}
