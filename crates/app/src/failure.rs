//! Causes of failures, kept as `source()` chains rather than copied into
//! strings, and a way to print a whole chain in one log field.

use std::error::Error;
use std::fmt;

/// The error a failure came from.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Displays an error and every cause under it: `outer: inner: …`. For log
/// fields: `error = %Chain(&err)`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Constructors for error variants shaped `{ context: String, cause:
/// Option<Cause> }`: `plain(context)` and `because(context, cause)` per
/// variant, so every error type builds its failures the same way.
macro_rules! context_constructors {
    ($error:ident { $($variant:ident => $plain:ident, $because:ident;)+ }) => {
        impl $error {
            $(
                #[doc = concat!("`", stringify!($variant), "` while doing `context`.")]
                pub fn $plain(context: impl Into<String>) -> Self {
                    Self::$variant {
                        context: context.into(),
                        cause: None,
                    }
                }

                #[doc = concat!("`", stringify!($variant), "` while doing `context`, because of `cause`.")]
                pub fn $because(
                    context: impl Into<String>,
                    cause: impl Into<$crate::failure::Cause>,
                ) -> Self {
                    Self::$variant {
                        context: context.into(),
                        cause: Some(cause.into()),
                    }
                }
            )+
        }
    };
}
pub(crate) use context_constructors;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("committing 3 orders")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_prints_every_cause() {
        let err = Outer(std::io::Error::other("database is locked"));
        assert_eq!(
            Chain(&err).to_string(),
            "committing 3 orders: database is locked"
        );
    }
}
