//! Small reusable checks for entity constructors.

use crate::error::ValidationError;

/// Trims `value` and checks it holds between 1 and `max` characters.
pub(crate) fn required_text(field: &'static str, value: &str, max: usize) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    bounded(field, trimmed, max)
}

/// Trims optional `value`, maps an empty string to `None`, and bounds its length.
pub(crate) fn optional_text(
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
