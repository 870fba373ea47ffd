//! TokenReview and SubjectAccessReview against the cluster, behind the apiserver
//! crate's kube-free traits.

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as SarResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use metrics_registry_apiserver::auth::{
    AccessReviewer, Attributes, AuthError, Decision, TokenReviewer, UserInfo,
};

pub struct ClusterReviews {
    pub client: kube::Client,
}

impl TokenReviewer for ClusterReviews {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, AuthError>> {
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| AuthError::Review(format!("TokenReview failed: {e}")))?;
            let status = answer.status.unwrap_or_default();
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let user = status.user.unwrap_or_default();
            Ok(Some(UserInfo {
                username: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default().into_iter().collect(),
            }))
        })
    }
}

impl AccessReviewer for ClusterReviews {
    fn review<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, AuthError>> {
        Box::pin(async move {
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let (resource_attributes, non_resource_attributes) = match attributes {
                Attributes::Resource(a) => (
                    Some(SarResourceAttributes {
                        verb: Some(a.verb.clone()),
                        group: Some(a.group.clone()),
                        version: Some(a.version.clone()),
                        resource: Some(a.resource.clone()),
                        subresource: Some(a.subresource.clone()),
                        name: Some(a.name.clone()),
                        namespace: Some(a.namespace.clone()),
                        ..SarResourceAttributes::default()
                    }),
                    None,
                ),
                Attributes::NonResource { path, verb } => (
                    None,
                    Some(NonResourceAttributes {
                        path: Some(path.clone()),
                        verb: Some(verb.clone()),
                    }),
                ),
            };
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.username.clone()),
                    uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                    groups: Some(user.groups.clone()),
                    extra: (!user.extra.is_empty())
                        .then(|| user.extra.clone().into_iter().collect()),
                    resource_attributes,
                    non_resource_attributes,
                },
                ..SubjectAccessReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| AuthError::Review(format!("SubjectAccessReview failed: {e}")))?;
            let status = answer.status.unwrap_or_default();
            Ok(if status.allowed {
                Decision::Allowed
            } else {
                Decision::Denied {
                    reason: status.reason.unwrap_or_default(),
                }
            })
        })
    }
}
