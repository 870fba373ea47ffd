//! Authorization: the cluster's SubjectAccessReview answer, cached.

use super::ACCESS;
use super::attributes::forbidden_message;
use super::{Decision, Guard, UserInfo, attributes_for};
use crate::error::ApiError;

/// Kubernetes' privileged group: allowed everything without asking the cluster.
const MASTERS: &str = "system:masters";

impl Guard {
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
            .decision_cache
            .get_or_review(
                &key,
                || self.access.review(user, &key.1),
                |decision| match decision {
                    Decision::Allowed => ttls.allowed,
                    Decision::Denied { .. } => ttls.denied,
                },
            )
            .await;
        self.count(ACCESS, lookup);
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
