//! The one error a domain parser returns: which field, and what is wrong with it.

/// A value that cannot be accepted. `field` names the offending input (a JSON
/// member or header), `message` says what is expected; both reach the client in
/// the `validation` problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
