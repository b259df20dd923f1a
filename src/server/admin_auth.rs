//! The admin token: which admin requests need it, and whether a request carries it, given
//! as `Authorization: Bearer <token>` or as the password of HTTP Basic (any user name).
//!
//! The comparison takes the same time whatever the offered value, so the token cannot be
//! guessed byte by byte from response times.

use aws_lc_rs::{constant_time, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, header};

/// Whether the credentials in `headers` match `token`.
pub(crate) fn is_authorized(headers: &HeaderMap, token: &str) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return false;
    };
    let credentials = credentials.trim();
    let offered = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = STANDARD.decode(credentials) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    // Digests first: equal lengths, so not even the token's length shows in the timing.
    let offered = digest::digest(&digest::SHA256, &offered);
    let expected = digest::digest(&digest::SHA256, token.as_bytes());
    constant_time::verify_slices_are_equal(offered.as_ref(), expected.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_and_basic_with_any_user_are_accepted() {
        let token = "s3cret";
        assert!(is_authorized(&with("Bearer s3cret"), token));
        assert!(is_authorized(&with("bearer  s3cret "), token));
        let basic = |user_pass: &str| format!("Basic {}", STANDARD.encode(user_pass));
        assert!(is_authorized(&with(&basic("admin:s3cret")), token));
        assert!(is_authorized(&with(&basic(":s3cret")), token));
        assert!(is_authorized(
            &with(&basic("admin:pass:s3cret")),
            "pass:s3cret"
        ));
        assert!(!is_authorized(&with(&basic("s3cret:x")), token));
        assert!(!is_authorized(&with(&basic("s3cret")), token));
    }

    #[test]
    fn anything_else_is_refused() {
        let token = "s3cret";
        assert!(!is_authorized(&HeaderMap::new(), token));
        assert!(!is_authorized(&with("Bearer s3cre"), token));
        assert!(!is_authorized(&with("Bearer s3cret2"), token));
        assert!(!is_authorized(&with("Token s3cret"), token));
        assert!(!is_authorized(&with("Basic !!!"), token));
        assert!(!is_authorized(&with("s3cret"), token));
        let mut two = with("Bearer s3cret");
        two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!is_authorized(&two, token));
    }
}
