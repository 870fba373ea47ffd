//! The delegated authentication settings kube-apiserver publishes for aggregated
//! servers in kube-system/extension-apiserver-authentication.

use super::AuthError;
use crate::tls::parse_roots;
use std::collections::BTreeMap;

pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";

const CLIENT_CA: &str = "client-ca-file";
const REQUESTHEADER_CA: &str = "requestheader-client-ca-file";
const ALLOWED_NAMES: &str = "requestheader-allowed-names";
const USERNAME_HEADERS: &str = "requestheader-username-headers";
const UID_HEADERS: &str = "requestheader-uid-headers";
const GROUP_HEADERS: &str = "requestheader-group-headers";
const EXTRA_PREFIXES: &str = "requestheader-extra-headers-prefix";

/// Who may act as the front proxy, and where it puts the user it vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHeaderConfig {
    /// Every CA in this bundle may sign the proxy's client certificate.
    pub client_ca_pem: String,
    /// Common names accepted from that CA; empty accepts any.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefixes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthenticationConfig {
    /// Front-proxy (request header) authentication; `None` when the cluster has none.
    pub request_header: Option<RequestHeaderConfig>,
    /// The cluster CA: a client certificate from it names a user by CN and groups by O.
    pub client_ca_pem: Option<String>,
}

fn value<'a>(data: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn ca_bundle(data: &BTreeMap<String, String>, key: &str) -> Result<Option<String>, AuthError> {
    let Some(pem) = value(data, key) else {
        return Ok(None);
    };
    parse_roots(key, pem).map_err(|e| AuthError::config(key, e.to_string()))?;
    Ok(Some(pem.to_owned()))
}

/// List values are JSON arrays of strings, as kube-apiserver writes them.
fn string_list(data: &BTreeMap<String, String>, key: &str) -> Result<Vec<String>, AuthError> {
    let Some(raw) = value(data, key) else {
        return Ok(Vec::new());
    };
    let list: Option<Vec<String>> = serde_json::from_str(raw)
        .map_err(|e| AuthError::config(key, format!("not a JSON array of strings: {e}")))?;
    Ok(list.unwrap_or_default())
}

fn header_list(data: &BTreeMap<String, String>, key: &str) -> Result<Vec<String>, AuthError> {
    let names = string_list(data, key)?;
    // Refused at load, with the same message as where the names are parsed for use.
    super::verifier::header_names(key, &names)?;
    Ok(names)
}

impl AuthenticationConfig {
    /// From the ConfigMap's data; errors name the key.
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<Self, AuthError> {
        let client_ca_pem = ca_bundle(data, CLIENT_CA)?;
        let request_header = match ca_bundle(data, REQUESTHEADER_CA)? {
            None => None,
            Some(client_ca_pem) => {
                let username_headers = header_list(data, USERNAME_HEADERS)?;
                // kube-apiserver would accept this and then reject every proxied
                // request; saying so here points at the actual mistake.
                if username_headers.is_empty() {
                    return Err(AuthError::config(
                        USERNAME_HEADERS,
                        format!(
                            "empty although {REQUESTHEADER_CA} is set, so no proxied request \
                             could name its user"
                        ),
                    ));
                }
                Some(RequestHeaderConfig {
                    client_ca_pem,
                    allowed_names: string_list(data, ALLOWED_NAMES)?,
                    username_headers,
                    uid_headers: header_list(data, UID_HEADERS)?,
                    group_headers: header_list(data, GROUP_HEADERS)?,
                    extra_headers_prefixes: header_list(data, EXTRA_PREFIXES)?,
                })
            }
        };
        Ok(AuthenticationConfig {
            request_header,
            client_ca_pem,
        })
    }

    /// Every CA a client certificate may chain to (for `ReloadableTls::set_client_ca`).
    pub fn client_ca_bundle(&self) -> Option<String> {
        let bundles: Vec<&str> = self
            .request_header
            .iter()
            .map(|rh| rh.client_ca_pem.as_str())
            .chain(self.client_ca_pem.as_deref())
            .map(str::trim)
            .filter(|pem| !pem.is_empty())
            .collect();
        if bundles.is_empty() {
            return None;
        }
        Some(format!("{}\n", bundles.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_pki::TestCa;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_what_kube_apiserver_writes() {
        let front = TestCa::new("front-proxy-ca");
        let cluster = TestCa::new("kubernetes");
        let config = AuthenticationConfig::from_configmap_data(&data(&[
            (CLIENT_CA, &cluster.pem()),
            (REQUESTHEADER_CA, &front.pem()),
            (ALLOWED_NAMES, r#"["front-proxy-client"]"#),
            (USERNAME_HEADERS, r#"["X-Remote-User"]"#),
            (GROUP_HEADERS, r#"["X-Remote-Group"]"#),
            (EXTRA_PREFIXES, r#"["X-Remote-Extra-"]"#),
            (UID_HEADERS, r#"["X-Remote-Uid"]"#),
        ]))
        .unwrap();
        let rh = config.request_header.as_ref().unwrap();
        assert_eq!(rh.client_ca_pem, front.pem().trim());
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        assert_eq!(rh.username_headers, ["X-Remote-User"]);
        assert_eq!(rh.group_headers, ["X-Remote-Group"]);
        assert_eq!(rh.extra_headers_prefixes, ["X-Remote-Extra-"]);
        assert_eq!(rh.uid_headers, ["X-Remote-Uid"]);
        assert_eq!(config.client_ca_pem.as_deref(), Some(cluster.pem().trim()));

        let bundle = config.client_ca_bundle().unwrap();
        assert!(bundle.contains(front.pem().trim()) && bundle.contains(cluster.pem().trim()));
    }

    #[test]
    fn absent_keys_disable_their_part() {
        let config = AuthenticationConfig::from_configmap_data(&BTreeMap::new()).unwrap();
        assert_eq!(config, AuthenticationConfig::default());
        assert_eq!(config.client_ca_bundle(), None);

        // Older clusters write no uid headers, and `null` means an empty list.
        let front = TestCa::new("front-proxy-ca");
        let config = AuthenticationConfig::from_configmap_data(&data(&[
            (REQUESTHEADER_CA, &front.pem()),
            (USERNAME_HEADERS, r#"["X-Remote-User"]"#),
            (ALLOWED_NAMES, "null"),
        ]))
        .unwrap();
        let rh = config.request_header.unwrap();
        assert!(rh.allowed_names.is_empty() && rh.uid_headers.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let front = TestCa::new("front-proxy-ca");
        let cases = [
            (data(&[(CLIENT_CA, "not pem")]), CLIENT_CA),
            (data(&[(REQUESTHEADER_CA, "not pem")]), REQUESTHEADER_CA),
            (
                data(&[
                    (REQUESTHEADER_CA, &front.pem()),
                    (USERNAME_HEADERS, "X-Remote-User"),
                ]),
                USERNAME_HEADERS,
            ),
            (
                data(&[(REQUESTHEADER_CA, &front.pem()), (USERNAME_HEADERS, "[]")]),
                USERNAME_HEADERS,
            ),
            (
                data(&[
                    (REQUESTHEADER_CA, &front.pem()),
                    (USERNAME_HEADERS, r#"["X-Remote-User"]"#),
                    (GROUP_HEADERS, r#"["bad header"]"#),
                ]),
                GROUP_HEADERS,
            ),
        ];
        for (data, key) in cases {
            let err = AuthenticationConfig::from_configmap_data(&data).unwrap_err();
            assert!(err.to_string().starts_with(key), "{key}: {err}");
        }
    }
}
