//! The axum middleware that puts a [`Guard`] in front of the handlers.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::Guard;
use super::PeerCertificates;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// axum middleware for `Router::layer(axum::middleware::from_fn_with_state(guard,
/// require_auth))`: authenticates and authorizes, then hands the handler the request
/// with the [`UserInfo`](super::UserInfo) in its extensions and the credentials removed.
pub async fn require_auth(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<PeerCertificates>().cloned();
    let user = match guard.authenticate(peer.as_ref(), request.headers()).await {
        Ok(user) => user,
        Err(error) => {
            tracing::debug!(path = request.uri().path(), reason = %error.message, "unauthenticated request");
            return error.into_response();
        }
    };
    if let Err(error) = guard.authorize(&user, request.uri().path()).await {
        tracing::debug!(
            path = request.uri().path(),
            user = %user.username,
            reason = %error.message,
            "request not authorized"
        );
        return error.into_response();
    }
    guard.remove_credentials(request.headers_mut());
    request.extensions_mut().insert(user);
    next.run(request).await
}
