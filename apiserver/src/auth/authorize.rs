//! Authorization: the cluster's SubjectAccessReview answer, cached.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::attributes::forbidden_message;
use super::cache::{CacheTtls, REVIEW_CACHE_BYTES, ReviewCache};
use super::{ACCESS, AccessReviewer, Attributes, Decision, UserInfo, attributes_for, count_lookup};
use crate::error::ApiError;
use crate::telemetry::SelfMetrics;
use std::sync::Arc;

/// Kubernetes' privileged group: allowed everything without asking the cluster.
const MASTERS: &str = "system:masters";

/// Asks the cluster whether a user may make a request (SubjectAccessReview) and keeps
/// the decisions.
pub(super) struct Authorizer {
    access: Arc<dyn AccessReviewer>,
    cache: ReviewCache<(UserInfo, Attributes), Decision>,
    ttls: CacheTtls,
    metrics: Arc<SelfMetrics>,
}

impl Authorizer {
    pub(super) fn new(
        access: Arc<dyn AccessReviewer>,
        ttls: CacheTtls,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        Authorizer {
            access,
            cache: ReviewCache::new(REVIEW_CACHE_BYTES),
            ttls,
            metrics,
        }
    }

    /// 403 with Kubernetes' message when the cluster denies the request; 503 when it
    /// could not be asked, which never lets a request through.
    pub async fn authorize(&self, user: &UserInfo, path: &str) -> Result<(), ApiError> {
        if user.groups.iter().any(|group| group == MASTERS) {
            return Ok(());
        }
        let attributes = attributes_for(path);
        let key = (user.clone(), attributes);
        let ttls = self.ttls;
        let (decision, lookup) = self
            .cache
            .get_or_review(
                &key,
                || self.access.review(user, &key.1),
                |decision| match decision {
                    Decision::Allowed => ttls.allowed,
                    Decision::Denied { .. } => ttls.denied,
                },
            )
            .await;
        count_lookup(&self.metrics, ACCESS, lookup);
        let decision = decision.map_err(|e| {
            tracing::warn!(error = %e, "SubjectAccessReview failed");
            ApiError::unavailable(format!("could not authorize the request: {e}"))
        })?;
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Denied { reason } => Err(ApiError::forbidden(forbidden_message(
                user, &key.1, &reason,
            ))),
        }
    }
}
