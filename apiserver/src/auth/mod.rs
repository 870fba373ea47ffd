//! Authentication and authorization as an aggregated API server does them.

#[cfg(test)]
pub(crate) mod test_pki;
