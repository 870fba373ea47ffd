//! What a request asks to do, in the terms RBAC rules are written in.
//!
//! This is k8s.io/apiserver's RequestInfoFactory for read requests, reproduced
//! closely so that the RBAC rules written for other metrics adapters mean the same
//! here.

use super::UserInfo;
use percent_encoding::percent_decode_str;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct ResourceAttributes {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Attributes {
    Resource(ResourceAttributes),
    NonResource { path: String, verb: String },
}

const API_PREFIXES: [&str; 2] = ["api", "apis"];
const GROUPLESS_PREFIX: &str = "api";
const SPECIAL_VERBS: [&str; 3] = ["proxy", "redirect", "watch"];
const SPECIAL_VERBS_NO_SUBRESOURCES: [&str; 2] = ["proxy", "redirect"];
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// The attributes of a GET of `path` (the URI path as received, percent-encoded,
/// without the query).
///
/// Every route this server has is a read, so the verb comes from the path alone:
/// `get` for a named object, `list` without a name, and `get` for everything that
/// is not a resource (discovery included).
pub fn attributes_for(path: &str) -> Attributes {
    // Decoded before splitting, as Go's URL.Path is: an encoded slash then separates
    // segments here exactly as it does in the handlers, which split decoded paths.
    let decoded = percent_decode(path);
    let non_resource = || Attributes::NonResource {
        path: decoded.clone(),
        verb: "get".to_owned(),
    };

    let trimmed = decoded.trim_matches('/');
    let mut parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    if parts.len() < 3 || !API_PREFIXES.contains(&parts[0]) {
        return non_resource();
    }
    let prefix = parts.remove(0);

    let mut info = ResourceAttributes::default();
    if prefix != GROUPLESS_PREFIX {
        // `/apis/{group}/{version}` is discovery, not a resource.
        if parts.len() < 3 {
            return non_resource();
        }
        info.group = parts.remove(0).to_owned();
    }
    info.version = parts.remove(0).to_owned();

    if SPECIAL_VERBS.contains(&parts[0]) {
        // Kubernetes fails such a request outright; no RBAC rule can name it as a
        // resource, so it is left to non-resource rules, which grant nothing here.
        if parts.len() < 2 {
            return non_resource();
        }
        info.verb = parts.remove(0).to_owned();
    } else {
        info.verb = "get".to_owned();
    }

    if parts[0] == "namespaces" && parts.len() > 1 {
        info.namespace = parts[1].to_owned();
        // `namespaces/{ns}/{resource}/...` is a namespaced resource, except for the
        // namespace's own subresources.
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts.drain(..2);
        }
    }

    if parts.len() >= 3 && !SPECIAL_VERBS_NO_SUBRESOURCES.contains(&info.verb.as_str()) {
        info.subresource = parts[2].to_owned();
    }
    if parts.len() >= 2 {
        info.name = parts[1].to_owned();
    }
    info.resource = parts[0].to_owned();

    if info.name.is_empty() && info.verb == "get" {
        info.verb = "list".to_owned();
    }
    Attributes::Resource(info)
}

/// Kubernetes' wording for a denial, so `kubectl` users recognise it.
pub(crate) fn forbidden_message(user: &UserInfo, attributes: &Attributes, reason: &str) -> String {
    let (prefix, what) = match attributes {
        Attributes::NonResource { path, verb } => (
            "forbidden".to_owned(),
            format!("User {:?} cannot {verb} path {path:?}", user.username),
        ),
        Attributes::Resource(a) => {
            let resource = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let scope = if a.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace {:?}", a.namespace)
            };
            let what = format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                user.username, a.verb, a.group
            );
            let qualified = if a.group.is_empty() {
                a.resource.clone()
            } else {
                format!("{}.{}", a.resource, a.group)
            };
            let prefix = if a.name.is_empty() {
                format!("{qualified} is forbidden")
            } else {
                format!("{qualified} {:?} is forbidden", a.name)
            };
            (prefix, what)
        }
    };
    if reason.is_empty() {
        format!("{prefix}: {what}")
    } else {
        format!("{prefix}: {what}: {reason}")
    }
}

/// `%XX` decoded; anything else, malformed escapes included, kept as it is, like the
/// router does for the path parameters the handlers see.
fn percent_decode(input: &str) -> String {
    percent_decode_str(input).decode_utf8_lossy().into_owned()
}

/// Go's `url.PathUnescape`: `None` on a malformed escape.
pub(crate) fn path_unescape(input: &str) -> Option<String> {
    // percent_decode_str passes a malformed escape through verbatim; Go rejects it.
    let bytes = input.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(input)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        verb: &str,
        group: &str,
        version: &str,
        namespace: &str,
        resource: &str,
        name: &str,
        subresource: &str,
    ) -> Attributes {
        Attributes::Resource(ResourceAttributes {
            verb: verb.to_owned(),
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    fn non_resource(path: &str) -> Attributes {
        Attributes::NonResource {
            path: path.to_owned(),
            verb: "get".to_owned(),
        }
    }

    const CM: &str = "custom.metrics.k8s.io";
    const EM: &str = "external.metrics.k8s.io";

    #[test]
    fn namespaced_objects() {
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m"),
            resource("get", CM, "v1beta2", "ns", "pods", "*", "m")
        );
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta1/namespaces/ns/services/web/m"),
            resource("get", CM, "v1beta1", "ns", "services", "web", "m")
        );
        assert_eq!(
            attributes_for(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/deployments.apps/web/m"
            ),
            resource("get", CM, "v1beta2", "ns", "deployments.apps", "web", "m")
        );
    }

    #[test]
    fn the_namespace_itself() {
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/metrics/m"),
            resource("get", CM, "v1beta2", "ns", "metrics", "m", "")
        );
        // Kubernetes reads `namespaces/{x}/{m}` as a list of resource `m` in namespace
        // `x`, whatever the group, and so must we for RBAC rules to carry over.
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta1/namespaces/x/m"),
            resource("list", CM, "v1beta1", "x", "m", "", "")
        );
        // Except for the namespace subresources it knows.
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta1/namespaces/x/status"),
            resource("get", CM, "v1beta1", "x", "namespaces", "x", "status")
        );
    }

    #[test]
    fn root_scoped_objects() {
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/nodes/n1/m"),
            resource("get", CM, "v1beta2", "", "nodes", "n1", "m")
        );
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/namespaces/*/m/extra/parts"),
            resource("get", CM, "v1beta2", "*", "m", "extra", "parts")
        );
    }

    #[test]
    fn external_metrics() {
        assert_eq!(
            attributes_for("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m"),
            resource("list", EM, "v1beta1", "ns", "m", "", "")
        );
        assert_eq!(
            attributes_for("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m/"),
            resource("list", EM, "v1beta1", "ns", "m", "", "")
        );
    }

    /// As metrics-server's: what `kubectl top` and the HPA controller's RBAC name.
    #[test]
    fn resource_metrics() {
        let rm = "metrics.k8s.io";
        assert_eq!(
            attributes_for("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods"),
            resource("list", rm, "v1beta1", "ns", "pods", "", "")
        );
        assert_eq!(
            attributes_for("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/web-1"),
            resource("get", rm, "v1beta1", "ns", "pods", "web-1", "")
        );
        assert_eq!(
            attributes_for("/apis/metrics.k8s.io/v1beta1/nodes"),
            resource("list", rm, "v1beta1", "", "nodes", "", "")
        );
        assert_eq!(
            attributes_for("/apis/metrics.k8s.io/v1beta1/pods"),
            resource("list", rm, "v1beta1", "", "pods", "", "")
        );
    }

    #[test]
    fn discovery_and_everything_else() {
        for path in [
            "/apis/custom.metrics.k8s.io/v1beta2",
            "/apis/external.metrics.k8s.io/v1beta1/",
            "/apis/custom.metrics.k8s.io",
            "/apis",
            "/api",
            "/api/v1",
            "/openapi/v2",
            "/healthz",
            "/",
            "",
        ] {
            assert_eq!(attributes_for(path), non_resource(path), "{path}");
        }
    }

    #[test]
    fn core_group_and_special_verbs() {
        assert_eq!(
            attributes_for("/api/v1/namespaces/ns/pods/p"),
            resource("get", "", "v1", "ns", "pods", "p", "")
        );
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/watch/namespaces/ns/pods"),
            resource("watch", CM, "v1beta2", "ns", "pods", "", "")
        );
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/watch"),
            non_resource("/apis/custom.metrics.k8s.io/v1beta2/watch")
        );
    }

    #[test]
    fn encoded_paths_are_read_as_the_handlers_read_them() {
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/%2A/m"),
            resource("get", CM, "v1beta2", "ns", "pods", "*", "m")
        );
        assert_eq!(
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/namespaces%2Fsecret/pods/x/m"),
            resource("get", CM, "v1beta2", "secret", "pods", "x", "m")
        );
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }

    #[test]
    fn path_unescape_is_strict() {
        assert_eq!(path_unescape("scopes%2fa").as_deref(), Some("scopes/a"));
        assert_eq!(path_unescape("plain").as_deref(), Some("plain"));
        assert_eq!(path_unescape("bad%zz"), None);
        assert_eq!(path_unescape("short%2"), None);
    }

    #[test]
    fn forbidden_messages_match_kubernetes() {
        let bob = UserInfo {
            username: "bob".to_owned(),
            ..Default::default()
        };
        let attributes =
            attributes_for("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m");
        assert_eq!(
            forbidden_message(&bob, &attributes, ""),
            r#"pods.custom.metrics.k8s.io "*" is forbidden: User "bob" cannot get resource "pods/m" in API group "custom.metrics.k8s.io" in the namespace "ns""#
        );
        assert_eq!(
            forbidden_message(&bob, &attributes, "no RBAC policy matched"),
            r#"pods.custom.metrics.k8s.io "*" is forbidden: User "bob" cannot get resource "pods/m" in API group "custom.metrics.k8s.io" in the namespace "ns": no RBAC policy matched"#
        );
        let list = attributes_for("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/queue");
        assert_eq!(
            forbidden_message(&bob, &list, ""),
            r#"queue.external.metrics.k8s.io is forbidden: User "bob" cannot list resource "queue" in API group "external.metrics.k8s.io" in the namespace "ns""#
        );
        let nodes = attributes_for("/apis/custom.metrics.k8s.io/v1beta2/nodes/n1/m");
        assert_eq!(
            forbidden_message(&bob, &nodes, ""),
            r#"nodes.custom.metrics.k8s.io "n1" is forbidden: User "bob" cannot get resource "nodes/m" in API group "custom.metrics.k8s.io" at the cluster scope"#
        );
        let discovery = attributes_for("/apis/custom.metrics.k8s.io/v1beta2");
        assert_eq!(
            forbidden_message(&bob, &discovery, ""),
            r#"forbidden: User "bob" cannot get path "/apis/custom.metrics.k8s.io/v1beta2""#
        );
    }
}
