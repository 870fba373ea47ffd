//! `MetricsBackend` definitions compiled on their own, and a definition's `spec.backend`
//! resolved against them: which backend it reads, or why it may not.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::{Problem, Reason};
use crate::definitions::DefinitionId;
use metrics_registry_apiserver::prometheus::{
    DEFAULT_MAX_RESPONSE_BYTES, validate_headers, validate_url,
};
use metrics_registry_apiserver::table::{
    BackendAuth, BackendSpec, BackendTls, DEFAULT_BACKEND, SecretRef, TenantHeader, TenantSegment,
    TenantValue, render_tenant,
};
use metrics_registry_crds::{MetricsBackendSpec, SecretKeyRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// A valid `MetricsBackend`: what the table carries, and who may use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CompiledBackend {
    pub(super) spec: Arc<BackendSpec>,
    /// `None`: every namespace.
    pub(super) allowed_namespaces: Option<BTreeSet<String>>,
}

/// Valid backends by name.
pub(super) type BackendIndex = BTreeMap<String, CompiledBackend>;

fn invalid(message: impl Into<String>) -> Problem {
    Problem::new(Reason::InvalidBackend, message)
}

pub(super) fn compile_backend(
    id: &DefinitionId,
    spec: &MetricsBackendSpec,
) -> Result<CompiledBackend, Problem> {
    if id.name == DEFAULT_BACKEND {
        return Err(invalid(
            "the name \"default\" is the backend of the --prometheus-* flags (used when spec.backend is unset); give this MetricsBackend another name",
        ));
    }
    validate_url(&spec.url).map_err(|error| invalid(format!("url: {error}")))?;
    let timeout = match &spec.timeout {
        None => Duration::from_secs(10),
        Some(text) => parse_duration(text).ok_or_else(|| {
            invalid(format!(
                "timeout {text:?} is not a positive duration such as 500ms, 5s or 1m"
            ))
        })?,
    };
    let max_response_bytes = match spec.max_response_bytes {
        None => DEFAULT_MAX_RESPONSE_BYTES,
        Some(bytes) => usize::try_from(bytes)
            .ok()
            .filter(|bytes| *bytes > 0)
            .ok_or_else(|| invalid(format!("maxResponseBytes must be positive, not {bytes}")))?,
    };
    let headers: Vec<(String, String)> = spec
        .headers
        .iter()
        .map(|header| (header.name.clone(), header.value.clone()))
        .collect();
    validate_headers(&headers).map_err(|error| invalid(format!("headers: {error}")))?;
    let tenant = match &spec.tenant {
        None => None,
        Some(tenant) => {
            if headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(&tenant.header))
            {
                return Err(invalid(format!(
                    "tenant.header {:?} is also in headers; set it in one place",
                    tenant.header
                )));
            }
            let value = match (&tenant.value, &tenant.namespace_label) {
                (Some(value), None) => {
                    let template = tenant_template(value)?;
                    // The literal parts must make a header value on their own; namespace
                    // names always do.
                    let sample = render_tenant(&template, "namespace");
                    validate_headers(&[(tenant.header.clone(), sample)])
                        .map_err(|error| invalid(format!("tenant: {error}")))?;
                    TenantValue::Template(template)
                }
                (None, Some(label)) => {
                    validate_headers(&[(tenant.header.clone(), "tenant".to_string())])
                        .map_err(|error| invalid(format!("tenant: {error}")))?;
                    if label.is_empty() {
                        return Err(invalid("tenant.namespaceLabel is empty"));
                    }
                    TenantValue::NamespaceLabel(label.clone())
                }
                _ => {
                    return Err(invalid(
                        "tenant needs exactly one of value (e.g. <<.Namespace>>) and namespaceLabel",
                    ));
                }
            };
            Some(TenantHeader {
                header: tenant.header.clone(),
                value,
            })
        }
    };
    let auth = compile_auth(spec)?;
    let tls = compile_tls(spec)?;
    let allowed_namespaces = spec
        .allowed_namespaces
        .as_ref()
        .map(|allowed| allowed.names.iter().cloned().collect());
    Ok(CompiledBackend {
        spec: Arc::new(BackendSpec {
            url: spec.url.trim().to_string(),
            timeout,
            max_response_bytes,
            headers,
            tenant,
            auth,
            tls,
            source: id.to_string(),
        }),
        allowed_namespaces,
    })
}

fn secret(field: &str, reference: &SecretKeyRef) -> Result<SecretRef, Problem> {
    if reference.name.is_empty() || reference.key.is_empty() {
        return Err(invalid(format!(
            "{field} needs both name and key of a Secret"
        )));
    }
    Ok(SecretRef {
        name: reference.name.clone(),
        key: reference.key.clone(),
    })
}

fn compile_auth(spec: &MetricsBackendSpec) -> Result<BackendAuth, Problem> {
    let Some(auth) = &spec.auth else {
        return Ok(BackendAuth::None);
    };
    let set = [
        auth.bearer_token.is_some(),
        auth.basic.is_some(),
        auth.oauth2.is_some(),
        auth.sigv4.is_some(),
    ];
    if set.iter().filter(|set| **set).count() > 1 {
        return Err(invalid(
            "auth sets more than one of bearerToken, basic, oauth2 and sigv4; choose one",
        ));
    }
    if let Some(sigv4) = &auth.sigv4 {
        if sigv4.region.is_empty() {
            return Err(invalid("auth.sigv4.region must be set, e.g. eu-west-1"));
        }
        return Ok(BackendAuth::SigV4 {
            region: sigv4.region.clone(),
            service: sigv4.service.clone().unwrap_or_else(|| "aps".to_string()),
        });
    }
    if let Some(token) = &auth.bearer_token {
        return Ok(BackendAuth::Bearer(secret("auth.bearerToken", token)?));
    }
    if let Some(basic) = &auth.basic {
        if basic.username.is_empty() || basic.username.contains(':') {
            return Err(invalid(
                "auth.basic.username must be set and cannot hold ':'",
            ));
        }
        return Ok(BackendAuth::Basic {
            username: basic.username.clone(),
            password: secret("auth.basic.password", &basic.password)?,
        });
    }
    if let Some(oauth2) = &auth.oauth2 {
        validate_url(&oauth2.token_url)
            .map_err(|error| invalid(format!("auth.oauth2.tokenUrl: {error}")))?;
        if oauth2.client_id.is_empty() {
            return Err(invalid("auth.oauth2.clientId must be set"));
        }
        return Ok(BackendAuth::OAuth2 {
            token_url: oauth2.token_url.trim().to_string(),
            client_id: oauth2.client_id.clone(),
            client_secret: secret("auth.oauth2.clientSecret", &oauth2.client_secret)?,
            scopes: oauth2.scopes.clone(),
        });
    }
    Ok(BackendAuth::None)
}

fn compile_tls(spec: &MetricsBackendSpec) -> Result<BackendTls, Problem> {
    let Some(tls) = &spec.tls else {
        return Ok(BackendTls::default());
    };
    let ca = tls.ca.as_ref().map(|ca| secret("tls.ca", ca)).transpose()?;
    let identity = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some((secret("tls.cert", cert)?, secret("tls.key", key)?)),
        (None, None) => None,
        _ => return Err(invalid("tls.cert and tls.key must be set together")),
    };
    if (ca.is_some() || identity.is_some()) && !spec.url.trim().starts_with("https://") {
        return Err(invalid(
            "tls is set but the url is not https://, so it would never be used",
        ));
    }
    Ok(BackendTls { ca, identity })
}

/// `500ms`, `5s`, `1m`: one number and one unit, as Prometheus' own `timeout` parameter
/// takes them.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let number: u64 = digits.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

/// A tenant value: literal text and `<<.Namespace>>` (or `«.Namespace»`).
fn tenant_template(text: &str) -> Result<Vec<TenantSegment>, Problem> {
    if text.is_empty() {
        return Err(invalid(
            "tenant.value is empty; use <<.Namespace>> for a tenant per namespace",
        ));
    }
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let next = [("<<", ">>"), ("«", "»")]
            .into_iter()
            .filter_map(|(open, close)| rest.find(open).map(|at| (at, open, close)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, open, close)) = next else {
            if !rest.is_empty() {
                segments.push(TenantSegment::Literal(rest.to_string()));
            }
            return Ok(segments);
        };
        if at > 0 {
            segments.push(TenantSegment::Literal(rest[..at].to_string()));
        }
        let after = &rest[at + open.len()..];
        let Some(end) = after.find(close) else {
            return Err(invalid(format!(
                "tenant.value {text:?} opens {open} without closing it"
            )));
        };
        let placeholder = after[..end].trim();
        if placeholder != ".Namespace" {
            return Err(invalid(format!(
                "tenant.value {text:?} has the placeholder {open}{placeholder}{close}; only <<.Namespace>> is known"
            )));
        }
        segments.push(TenantSegment::Namespace);
        rest = &after[end + close.len()..];
    }
}

/// The backend `id` reads with `spec.backend` = `requested`: the default one when unset,
/// else a valid `MetricsBackend` that allows the definition's namespace.
pub(super) fn resolve_backend(
    id: &DefinitionId,
    requested: Option<&str>,
    backends: &BackendIndex,
) -> Result<String, Problem> {
    let name = match requested {
        None | Some(DEFAULT_BACKEND) => return Ok(DEFAULT_BACKEND.to_string()),
        Some(name) => name,
    };
    let Some(backend) = backends.get(name) else {
        return Err(Problem::new(
            Reason::UnknownBackend,
            format!(
                "spec.backend names the MetricsBackend {name:?}, which does not exist or is not valid (its status says why); omit spec.backend for the default Prometheus"
            ),
        ));
    };
    if let (Some(namespace), Some(allowed)) = (&id.namespace, &backend.allowed_namespaces)
        && id.kind.is_namespaced()
        && !allowed.contains(namespace)
    {
        return Err(Problem::new(
            Reason::BackendNotAllowed,
            format!(
                "the MetricsBackend {name:?} does not allow namespace {namespace:?} (its spec.allowedNamespaces.names: {}); ask its owner to add it, or omit spec.backend",
                allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(name.to_string())
}

/// [`resolve_backend`] for a `ResourceMetrics`, which reads every namespace and the nodes
/// in one query: its backend's tenant, if any, must not depend on the namespace.
pub(super) fn resolve_cluster_wide_backend(
    id: &DefinitionId,
    requested: Option<&str>,
    backends: &BackendIndex,
) -> Result<String, Problem> {
    let name = resolve_backend(id, requested, backends)?;
    let per_namespace = backends
        .get(&name)
        .and_then(|backend| backend.spec.tenant.as_ref())
        .is_some_and(|tenant| match &tenant.value {
            TenantValue::NamespaceLabel(_) => true,
            TenantValue::Template(template) => template.contains(&TenantSegment::Namespace),
        });
    if per_namespace {
        return Err(Problem::new(
            Reason::BackendNotAllowed,
            format!(
                "the MetricsBackend {name:?} has a tenant per namespace, and a ResourceMetrics reads every namespace and the nodes at once; use a backend with one fixed tenant"
            ),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::DefinitionKind;
    use metrics_registry_crds::{AllowedNamespaces, BackendHeader};

    fn backend_id(name: &str) -> DefinitionId {
        DefinitionId {
            kind: DefinitionKind::MetricsBackend,
            namespace: None,
            name: name.into(),
        }
    }

    fn spec(url: &str) -> MetricsBackendSpec {
        MetricsBackendSpec {
            url: url.into(),
            ..Default::default()
        }
    }

    fn reason(result: Result<CompiledBackend, Problem>) -> (Reason, String) {
        let problem = result.expect_err("refused");
        (problem.reason, problem.message)
    }

    #[test]
    fn compiles_urls_timeouts_limits_headers_and_tenants() {
        let mut full = spec("http://thanos:10902/");
        full.timeout = Some("500ms".into());
        full.max_response_bytes = Some(1024);
        full.headers = vec![BackendHeader {
            name: "X-Team".into(),
            value: "a".into(),
        }];
        full.tenant = Some(metrics_registry_crds::TenantHeader {
            header: "X-Scope-OrgID".into(),
            value: Some("team-<<.Namespace>>".into()),
            namespace_label: None,
        });
        let compiled = compile_backend(&backend_id("thanos"), &full).unwrap();
        assert_eq!(compiled.spec.timeout, Duration::from_millis(500));
        assert_eq!(compiled.spec.max_response_bytes, 1024);
        let tenant = compiled.spec.tenant.as_ref().unwrap();
        let TenantValue::Template(template) = &tenant.value else {
            panic!("a template")
        };
        assert_eq!(render_tenant(template, "a"), "team-a");
        full.tenant.as_mut().unwrap().value = None;
        full.tenant.as_mut().unwrap().namespace_label = Some("tenant".into());
        let by_label = compile_backend(&backend_id("thanos"), &full).unwrap();
        assert_eq!(
            by_label.spec.tenant.as_ref().unwrap().value,
            TenantValue::NamespaceLabel("tenant".into())
        );
        full.tenant.as_mut().unwrap().value = Some("<<.Namespace>>".into());
        assert!(
            reason(compile_backend(&backend_id("thanos"), &full))
                .1
                .contains("exactly one")
        );
        assert_eq!(compiled.allowed_namespaces, None);
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        for bad in ["", "0s", "5", "1h", "s", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_what_could_not_be_used() {
        let id = backend_id("b");
        assert!(
            reason(compile_backend(&backend_id("default"), &spec("http://x")))
                .1
                .contains("--prometheus-*")
        );
        assert!(
            reason(compile_backend(&id, &spec("ftp://x")))
                .1
                .contains("url")
        );
        assert!(
            reason(compile_backend(&id, &spec("http://user:pw@x")))
                .1
                .contains("credentials")
        );
        let mut timeout = spec("http://x");
        timeout.timeout = Some("soon".into());
        assert!(reason(compile_backend(&id, &timeout)).1.contains("timeout"));
        let mut bytes = spec("http://x");
        bytes.max_response_bytes = Some(0);
        assert!(
            reason(compile_backend(&id, &bytes))
                .1
                .contains("maxResponseBytes")
        );
        let mut header = spec("http://x");
        header.headers = vec![BackendHeader {
            name: "bad header".into(),
            value: "v".into(),
        }];
        assert!(reason(compile_backend(&id, &header)).1.contains("headers"));
        for (value, expected) in [
            ("", "empty"),
            ("<<.Name>>", "only <<.Namespace>>"),
            ("<<.Namespace", "without closing"),
            ("a\nb", "tenant"),
        ] {
            let mut tenant = spec("http://x");
            tenant.tenant = Some(metrics_registry_crds::TenantHeader {
                header: "X-Scope-OrgID".into(),
                value: Some(value.into()),
                namespace_label: None,
            });
            let (reason, message) = reason(compile_backend(&id, &tenant));
            assert_eq!(reason, Reason::InvalidBackend);
            assert!(message.contains(expected), "{value:?}: {message}");
        }
        let mut twice = spec("http://x");
        twice.headers = vec![BackendHeader {
            name: "x-scope-orgid".into(),
            value: "v".into(),
        }];
        twice.tenant = Some(metrics_registry_crds::TenantHeader {
            header: "X-Scope-OrgID".into(),
            value: Some("<<.Namespace>>".into()),
            namespace_label: None,
        });
        assert!(reason(compile_backend(&id, &twice)).1.contains("one place"));
    }

    #[test]
    fn credentials_are_secret_references_and_one_kind_at_a_time() {
        use metrics_registry_crds::{BackendAuth as Auth, BackendTls as Tls, BasicAuth, OAuth2};
        let id = backend_id("b");
        let key = |name: &str, key: &str| SecretKeyRef {
            name: name.into(),
            key: key.into(),
        };
        let mut oauth2 = spec("https://mimir");
        oauth2.auth = Some(Auth {
            oauth2: Some(OAuth2 {
                token_url: "https://idp/token".into(),
                client_id: "metrics-registry".into(),
                client_secret: key("idp", "secret"),
                scopes: vec!["read".into()],
            }),
            ..Auth::default()
        });
        oauth2.tls = Some(Tls {
            ca: Some(key("ca", "ca.crt")),
            ..Tls::default()
        });
        let compiled = compile_backend(&id, &oauth2).unwrap();
        let secrets: Vec<&SecretRef> = compiled.spec.secrets();
        assert_eq!(
            secrets
                .iter()
                .map(|s| (&*s.name, &*s.key))
                .collect::<Vec<_>>(),
            [("idp", "secret"), ("ca", "ca.crt")]
        );

        let mut both = oauth2.clone();
        both.auth.as_mut().unwrap().basic = Some(BasicAuth {
            username: "u".into(),
            password: key("p", "pw"),
        });
        assert!(
            reason(compile_backend(&id, &both))
                .1
                .contains("more than one")
        );
        let mut plain = oauth2.clone();
        plain.url = "http://mimir".into();
        assert!(reason(compile_backend(&id, &plain)).1.contains("not https"));
        let mut half = oauth2.clone();
        half.tls = Some(Tls {
            cert: Some(key("c", "tls.crt")),
            ..Tls::default()
        });
        assert!(reason(compile_backend(&id, &half)).1.contains("together"));
        let mut unnamed = spec("http://x");
        unnamed.auth = Some(Auth {
            bearer_token: Some(key("", "token")),
            ..Auth::default()
        });
        assert!(
            reason(compile_backend(&id, &unnamed))
                .1
                .contains("name and key")
        );
        let mut colon = spec("http://x");
        colon.auth = Some(Auth {
            basic: Some(BasicAuth {
                username: "a:b".into(),
                password: key("p", "pw"),
            }),
            ..Auth::default()
        });
        assert!(reason(compile_backend(&id, &colon)).1.contains("username"));
        let mut aws = spec("https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1");
        aws.auth = Some(Auth {
            sigv4: Some(metrics_registry_crds::SigV4 {
                region: "eu-west-1".into(),
                service: None,
            }),
            ..Auth::default()
        });
        assert_eq!(
            compile_backend(&id, &aws).unwrap().spec.auth,
            BackendAuth::SigV4 {
                region: "eu-west-1".into(),
                service: "aps".into()
            }
        );
        aws.auth.as_mut().unwrap().sigv4.as_mut().unwrap().region = String::new();
        assert!(reason(compile_backend(&id, &aws)).1.contains("region"));
    }

    #[test]
    fn a_namespaced_definition_reads_only_a_backend_that_allows_its_namespace() {
        let mut limited = spec("http://x");
        limited.allowed_namespaces = Some(AllowedNamespaces {
            names: vec!["team-a".into()],
        });
        let backends: BackendIndex = [(
            "b".to_string(),
            compile_backend(&backend_id("b"), &limited).unwrap(),
        )]
        .into();
        let definition = |kind, namespace: Option<&str>| DefinitionId {
            kind,
            namespace: namespace.map(str::to_string),
            name: "m".into(),
        };
        let team_a = definition(DefinitionKind::ServiceMetric, Some("team-a"));
        let team_b = definition(DefinitionKind::ServiceMetric, Some("team-b"));
        let cluster = definition(DefinitionKind::ClusterServiceMetric, None);
        assert_eq!(
            resolve_backend(&team_a, None, &backends).unwrap(),
            "default"
        );
        assert_eq!(
            resolve_backend(&team_b, Some("default"), &backends).unwrap(),
            "default"
        );
        assert_eq!(resolve_backend(&team_a, Some("b"), &backends).unwrap(), "b");
        assert_eq!(
            resolve_backend(&cluster, Some("b"), &backends).unwrap(),
            "b"
        );
        let refused = resolve_backend(&team_b, Some("b"), &backends).unwrap_err();
        assert_eq!(refused.reason, Reason::BackendNotAllowed);
        assert!(refused.message.contains("team-b") && refused.message.contains("team-a"));
        let unknown = resolve_backend(&team_a, Some("c"), &backends).unwrap_err();
        assert_eq!(unknown.reason, Reason::UnknownBackend);
    }
}
