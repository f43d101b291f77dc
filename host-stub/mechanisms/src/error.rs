//! The mechanisms' errors.

/// What can go wrong while changing or reading a host mechanism.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mechanism that is missing, refused a setting or reported nonsense.
    #[error("{0}")]
    Host(String),
    /// A journal that cannot be read back.
    #[error("{0}")]
    Invalid(String),
    /// An I/O error with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A /proc file that could not be parsed.
    #[error(transparent)]
    Procfs(#[from] qemu_ctl::Error),
}

impl Error {
    /// Maps an `io::Error` with context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
