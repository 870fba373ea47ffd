//! `MetricsBackend`: a Prometheus HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics)
//! that definitions name in `spec.backend`, besides the one the `--prometheus-*` flags
//! configure (the backend named `default`).

use crate::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One header sent with every query to the backend.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendHeader {
    /// The header's name, e.g. `X-Team`.
    pub name: String,
    /// Sent as is; never logged.
    pub value: String,
}

/// The header that tells a multi-tenant backend whose data a query reads: set from
/// `value` or from `namespaceLabel` (one of them).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantHeader {
    /// e.g. `X-Scope-OrgID` (Mimir, Cortex, Loki), `AccountID` (VictoriaMetrics' cluster
    /// version), `THANOS-TENANT` (Thanos).
    pub header: String,
    /// The tenant of a request in a namespace: a template where `<<.Namespace>>` is the
    /// namespace of the object or HPA asked about, e.g. `<<.Namespace>>` or
    /// `team-<<.Namespace>>`; a value without placeholder is one tenant for every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The tenant of a request in a namespace is the value of this label of the
    /// Namespace, e.g. `tenant`; a namespace without it has no tenant here (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_label: Option<String>,
}

/// Which namespaces' definitions may read from the backend.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespaces whose namespaced definitions may name this backend. Cluster-scoped
    /// definitions (made by whoever may create cluster-scoped objects) may always name it.
    pub names: Vec<String>,
}

/// A key of a Secret in the namespace metrics-registry runs in (standalone mode:
/// `<--secrets-dir>/<name>/<key>`, the layout of a Secret mounted as a volume).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key in its `data`.
    pub key: String,
}

/// HTTP basic authentication.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The user name (without `:`).
    pub username: String,
    /// The password, read again when the Secret changes.
    pub password: SecretKeyRef,
}

/// OAuth2 client credentials: a token from `tokenUrl`, sent as a bearer token and
/// renewed before it expires.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2 {
    /// The token endpoint, e.g. `https://idp.example/oauth2/token`.
    pub token_url: String,
    /// The client id, sent with the secret as HTTP basic credentials.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretKeyRef,
    /// Scopes asked for (the `scope` parameter, space-separated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// AWS Signature Version 4, as Amazon Managed Service for Prometheus requires. Credentials
/// come from metrics-registry's environment: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
/// (and `AWS_SESSION_TOKEN`), or `AWS_ROLE_ARN` with `AWS_WEB_IDENTITY_TOKEN_FILE` (IAM roles
/// for service accounts).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SigV4 {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The service signed for (default `aps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// How queries authenticate; at most one field.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendAuth {
    /// A bearer token (read again when the Secret changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKeyRef>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// OAuth2 client credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    /// AWS SigV4 signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<SigV4>,
}

/// TLS towards the backend.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    /// PEM CA bundle: only these CAs are trusted (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKeyRef>,
    /// PEM client certificate, with `key`, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<SecretKeyRef>,
    /// PEM private key of `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretKeyRef>,
}

/// The last time metrics-registry asked the backend whether it answers (every 30 s, with
/// its credentials).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LastProbe {
    /// When (RFC 3339).
    pub time: String,
    /// `Reachable`, `Unreachable`, `AuthRefused`, `TlsError` or `Unusable` (a Secret is
    /// missing or unusable).
    pub result: String,
    /// What was found: the error, or that it answered.
    pub message: String,
}

/// Status written by the operator on every `MetricsBackend`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `Ready` condition: True (`Accepted`) when valid and answering, False with the reason
    /// otherwise (`InvalidBackend`, or the last probe's result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last probe (none before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<LastProbe>,
}

/// A Prometheus HTTP API that definitions can read from by naming it in `spec.backend`.
#[derive(
    CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq,
)]
#[kube(
    group = "metrics-registry.io",
    version = "v1beta1",
    kind = "MetricsBackend",
    doc = "A Prometheus HTTP API that definitions read from by naming it in spec.backend.",
    status = "BackendStatus",
    shortname = "mb",
    category = "metrics-registry",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"LastProbe","type":"date","description":"When the backend was last asked whether it answers","jsonPath":".status.lastProbe.time"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","description":"The Ready condition's message: why the backend cannot be used, or what its last probe found","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MetricsBackendSpec {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus-b.monitoring:9090` or
    /// `http://mimir-query-frontend:8080/prometheus`; `/api/v1/query` is appended.
    pub url: String,
    /// How long a query may take, here and on the backend (sent as the `timeout`
    /// parameter so a slow query is cancelled there too), e.g. `5s` or `500ms`
    /// (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Largest answer read, in bytes (default 16 MiB); a bigger one is an error naming
    /// the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_response_bytes: Option<i64>,
    /// Credentials, from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BackendAuth>,
    /// CA and client certificate, from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// Headers sent with every query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<BackendHeader>,
    /// The tenant header, set per namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantHeader>,
    /// Which namespaces' definitions may use it; unset, every namespace's may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
}
