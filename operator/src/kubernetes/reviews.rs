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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::mock_api::{Exchange, scripted, status};
    use http::Method;
    use metrics_registry_apiserver::auth::ResourceAttributes;
    use serde_json::json;

    #[tokio::test]
    async fn token_review_sends_the_token_and_reads_the_user() {
        let (client, played) = scripted(vec![
            Exchange::new(
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews?",
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                       "status": {"authenticated": true, "user": {"username": "hpa", "uid": "1",
                                  "groups": ["system:serviceaccounts"], "extra": {"k": ["v"]}}}}),
            )
            .with_body(|body| assert_eq!(body["spec"]["token"], "secret-token")),
            Exchange::new(
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews?",
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                       "status": {"authenticated": false}}),
            ),
        ]);
        let reviews = ClusterReviews { client };
        let user = TokenReviewer::review(&reviews, "secret-token")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.username, "hpa");
        assert_eq!(user.groups, vec!["system:serviceaccounts".to_string()]);
        assert_eq!(user.extra["k"], vec!["v".to_string()]);
        assert_eq!(
            TokenReviewer::review(&reviews, "other").await.unwrap(),
            None
        );
        played.await.expect("two reviews");
    }

    #[tokio::test]
    async fn access_review_sends_the_request_attributes_and_a_failure_is_an_error() {
        let (client, played) = scripted(vec![
            Exchange::new(
                Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews?",
                201,
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                       "status": {"allowed": false, "reason": "no RBAC rule"}}),
            )
            .with_body(|body| {
                assert_eq!(body["spec"]["user"], "bob");
                assert_eq!(body["spec"]["groups"], json!(["team"]));
                assert_eq!(
                    body["spec"]["resourceAttributes"],
                    json!({"verb": "get", "group": "custom.metrics.k8s.io", "version": "v1beta2",
                           "resource": "services", "subresource": "latency", "name": "web",
                           "namespace": "shop"})
                );
            }),
            Exchange::new(
                Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews?",
                500,
                status(500, "InternalError"),
            ),
        ]);
        let reviews = ClusterReviews { client };
        let user = UserInfo {
            username: "bob".into(),
            groups: vec!["team".into()],
            ..UserInfo::default()
        };
        let attributes = Attributes::Resource(ResourceAttributes {
            verb: "get".into(),
            group: "custom.metrics.k8s.io".into(),
            version: "v1beta2".into(),
            resource: "services".into(),
            subresource: "latency".into(),
            name: "web".into(),
            namespace: "shop".into(),
        });
        let decision = AccessReviewer::review(&reviews, &user, &attributes)
            .await
            .unwrap();
        assert_eq!(
            decision,
            Decision::Denied {
                reason: "no RBAC rule".into()
            }
        );
        let failed = AccessReviewer::review(&reviews, &user, &attributes).await;
        assert!(
            matches!(&failed, Err(AuthError::Review(message)) if message.contains("SubjectAccessReview failed")),
            "{failed:?}"
        );
        played.await.expect("two reviews");
    }
}
