//! What domain types answer when input breaks a rule. It knows nothing of
//! HTTP: `error` turns it into a 422 problem with its `code`.

/// A rule the input broke: `code` is the stable name clients branch on
/// (`invalid_email`, `weak_password`, `validation_failed`...), `detail`
/// says which rule, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Invalid {
    pub code: &'static str,
    pub detail: String,
}

impl Invalid {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The general code, for rules without one of their own.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self::new("validation_failed", detail)
    }
}

/// A store failure as operations report it: the query failed, or no
/// connection could be had. `error` maps it as it maps its two parts.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Pool(#[from] crate::db::PoolError),
}
