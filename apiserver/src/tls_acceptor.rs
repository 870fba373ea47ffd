//! Serving a router over TLS, with the client's certificate chain made visible to
//! the handlers.
//!
//! hyper knows nothing of TLS, so the certificates a client presented are lost once
//! the handshake is done unless they are copied into each request: the acceptor below
//! hands them to [`crate::serve`], which puts them on every request of the connection
//! as [`PeerCertificates`].

use crate::auth::PeerCertificates;
use crate::serve::{Accepted, Acceptor, ServeLimits, serve};
use crate::tls::ReloadableTls;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Serves `app` over TLS on `listener` until `shutdown` completes (within the bounds of
/// `limits`), inserting the peer's certificate chain into each request's extensions as
/// [`PeerCertificates`].
pub async fn serve_https(
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Arc<ReloadableTls>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    // tokio requires it of a std listener, and a blocking one would stall the runtime.
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    serve(listener, app, TlsAcceptor { tls }, limits, shutdown).await
}

/// The TLS handshake with the configuration in force when the connection came.
#[derive(Clone)]
struct TlsAcceptor {
    tls: Arc<ReloadableTls>,
}

impl Acceptor for TlsAcceptor {
    type Stream = TlsStream<TcpStream>;

    async fn accept(&self, tcp: TcpStream) -> std::io::Result<Accepted<Self::Stream>> {
        let config = self.tls.rustls_config().get_inner();
        let stream = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        let connection = stream.get_ref().1;
        let http2 = connection.alpn_protocol() == Some(b"h2".as_slice());
        let mut extensions = http::Extensions::new();
        if let Some(chain) = connection
            .peer_certificates()
            .filter(|chain| !chain.is_empty())
        {
            extensions.insert(PeerCertificates::new(chain.to_vec()));
        }
        Ok(Accepted {
            stream,
            http2,
            extensions,
        })
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
                peer.map_or(0, |Extension(peer)| peer.chain().len())
                    .to_string()
            }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let handle = crate::serve::ServeHandle::new();
        tokio::spawn(serve_https(
            listener,
            app,
            tls,
            ServeLimits::default(),
            handle.signalled(),
        ));

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
