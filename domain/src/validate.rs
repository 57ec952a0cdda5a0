//! Small reusable checks for entity constructors.

use crate::error::ValidationError;

/// Trims `value` and checks it holds between 1 and `max` characters.
pub fn required_text(field: &'static str, value: &str, max: usize) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    bounded(field, trimmed, max)
}

/// Trims optional `value`, maps an empty string to `None`, and bounds its length.
pub fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, ValidationError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => bounded(field, text, max).map(Some),
    }
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, ValidationError> {
    let len = value.chars().count();
    if len > max {
        return Err(ValidationError::new(field, format!("is {len} characters long; the limit is {max}")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// Longest allowed email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;

/// Checks that `value` looks like an email address (`local@domain.tld`, no spaces, at most
/// 254 characters) and returns it trimmed. Errors name the field `email`.
pub fn email_address(value: &str) -> Result<String, ValidationError> {
    let email = required_text("email", value, MAX_EMAIL)?;
    let valid_shape = matches!(email.split_once('@'),
        Some((local, domain)) if !local.is_empty() && domain.contains('.')
            && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'));
    if !valid_shape || email.chars().any(char::is_whitespace) {
        return Err(ValidationError::new("email", "is not an email address"));
    }
    Ok(email)
}
