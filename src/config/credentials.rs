//! An upstream's own credential (`[upstreams.NAME] credentials = {…}`): where it goes (a header
//! or a query parameter) and its value, read from the file, the environment or a secret file,
//! validated into [`UpstreamCredential`]. The value is never printed: not by `Debug`, not in a
//! diagnostic.

use http::{HeaderName, HeaderValue};

use super::raw::RawCredentials;
use super::Validator;

/// Where the upstream expects its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialPlace {
    /// A request header (`Authorization`, `x-api-key`, …).
    Header(HeaderName),
    /// A query parameter (`?key=…`).
    Query(String),
}

/// The credential the gateway sends to an upstream in place of whatever the client sent.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamCredential {
    /// Header or query parameter.
    pub place: CredentialPlace,
    /// The value, marked sensitive (HTTP/2 never indexes it).
    pub value: HeaderValue,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("place", &self.place)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Validator<'_> {
    pub(super) fn upstream_credential(
        &mut self,
        name: &str,
        raw: &toml::Spanned<RawCredentials>,
    ) -> Option<UpstreamCredential> {
        let credentials = raw.get_ref();
        let place = match (&credentials.header, &credentials.query) {
            (Some(header), None) => {
                let value = self.text(header)?;
                match HeaderName::from_bytes(value.as_bytes()) {
                    Ok(header) => CredentialPlace::Header(header),
                    Err(_) => {
                        self.error(header.span(), format!("`{value}` is not a header name"));
                        return None;
                    }
                }
            }
            (None, Some(query)) => {
                let value = self.text(query)?;
                if value.is_empty() || value.contains(['&', '=', '#', ' ']) {
                    self.error(
                        query.span(),
                        format!("`{value}` is not a query parameter name"),
                    );
                    return None;
                }
                CredentialPlace::Query(value)
            }
            _ => {
                self.error(
                    raw.span(),
                    format!(
                        "the credentials of upstream `{name}` name one `header` or one `query`"
                    ),
                );
                return None;
            }
        };
        let value = match (&credentials.value, &credentials.value_file) {
            (Some(text), None) => self.text(text)?.into_bytes(),
            (None, Some(text)) => {
                let file = self.path(text)?;
                match std::fs::read(&file) {
                    // A trailing newline from `echo … > file` is not part of the secret.
                    Ok(bytes) => super::issuers::trim_newline(bytes),
                    Err(e) => {
                        self.error(text.span(), format!("cannot read {}: {e}", file.display()));
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    raw.span(),
                    format!("the credentials of upstream `{name}` need `value` or `value_file`, one of them"),
                );
                return None;
            }
        };
        if value.is_empty() {
            self.error(
                raw.span(),
                format!("the credential of upstream `{name}` is empty"),
            );
            return None;
        }
        if let CredentialPlace::Query(_) = place {
            // Sent percent-encoded, so any byte is fine; kept as a header value for one type.
            let encoded: String =
                percent_encoding::percent_encode(&value, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            let mut value = HeaderValue::from_str(&encoded).ok()?;
            value.set_sensitive(true);
            return Some(UpstreamCredential { place, value });
        }
        match HeaderValue::from_bytes(&value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                Some(UpstreamCredential { place, value })
            }
            Err(_) => {
                // Which byte is wrong would say something about the secret: the message does not.
                self.error(
                    raw.span(),
                    format!("the credential of upstream `{name}` holds a byte a header value cannot (a control character?)"),
                );
                None
            }
        }
    }
}
