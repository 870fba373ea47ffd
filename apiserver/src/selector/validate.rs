//! Label key and value checks, as apimachinery's validation package does them.

const NAME_MAX_LEN: usize = 63;
const PREFIX_MAX_LEN: usize = 253;
const VALUE_MAX_LEN: usize = 63;

/// The `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` shape shared by key names
/// and non-empty label values.
fn is_qualified_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// RFC 1123 subdomain as Kubernetes checks it: dot-separated labels of
/// lowercase alphanumerics and inner hyphens (no per-label length limit).
fn is_dns1123_subdomain(text: &str) -> bool {
    text.split('.').all(|label| {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
    })
}

/// Mirrors apimachinery's `validation.IsQualifiedName`; lengths are in bytes
/// as in Go.
pub(super) fn key_problem(key: &str) -> Option<&'static str> {
    let name = match key.split_once('/') {
        Some((_, name)) if name.contains('/') => {
            return Some(
                "must be a name with an optional DNS subdomain prefix and a single '/' (e.g. 'example.com/MyName')",
            );
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Some("prefix part must be non-empty");
            }
            if prefix.len() > PREFIX_MAX_LEN {
                return Some("prefix part must be no more than 253 characters");
            }
            if !is_dns1123_subdomain(prefix) {
                return Some(
                    "prefix part must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character",
                );
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Some("name part must be non-empty");
    }
    if name.len() > NAME_MAX_LEN {
        return Some("name part must be no more than 63 characters");
    }
    if !is_qualified_name_part(name) {
        return Some(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        );
    }
    None
}

/// Mirrors apimachinery's `validation.IsValidLabelValue`.
pub(super) fn value_problem(value: &str) -> Option<&'static str> {
    if value.len() > VALUE_MAX_LEN {
        return Some("must be no more than 63 characters");
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        return Some(
            "must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        );
    }
    None
}
