//! Bearer tokens: reading them from the request and reviewing them with the cluster.

use super::TOKEN;
use super::{AuthError, Guard, TokenReviewer, UserInfo};
use http::HeaderMap;
use http::header::AUTHORIZATION;

impl Guard {
    pub(super) async fn review_token(
        &self,
        reviewer: &dyn TokenReviewer,
        token: &str,
    ) -> Result<Option<UserInfo>, AuthError> {
        let key = self.token_digest.hash(token.as_bytes()).as_ref().to_vec();
        let ttls = self.ttls;
        let (result, lookup) = self
            .token_cache
            .get_or_review(
                &key,
                || reviewer.review(token),
                |user| match user {
                    Some(_) => ttls.token_authenticated,
                    None => ttls.token_rejected,
                },
            )
            .await;
        self.count(TOKEN, lookup);
        result
    }
}

pub(super) enum Bearer<'a> {
    Absent,
    Malformed,
    Token(&'a str),
}

/// As Kubernetes reads it: other schemes are not ours to judge and count as absent.
pub(super) fn bearer_token(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Bearer::Absent;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    let mut parts = value.trim().splitn(3, ' ');
    let (Some(scheme), Some(token)) = (parts.next(), parts.next()) else {
        return Bearer::Absent;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Absent;
    }
    if token.is_empty() {
        return Bearer::Malformed;
    }
    Bearer::Token(token)
}
