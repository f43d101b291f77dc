//! The host stub's errors.

use std::path::PathBuf;

/// Everything that can go wrong in `balloon-host`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario file that cannot be used, with the field and line.
    #[error("{path}: {message}")]
    Scenario {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field and line.
        message: String,
    },
    /// Bad input other than a scenario (arguments, a timeline).
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
    /// A host mechanism failed while in use.
    #[error("{0}")]
    Host(String),
    /// A host mechanism (KSM, zswap, swap, cgroups, the settings journal).
    #[error(transparent)]
    Mechanism(#[from] host_mechanisms::Error),
    /// The QEMU/QMP layer.
    #[error(transparent)]
    Qemu(#[from] qemu_ctl::Error),
    /// Some guests were lost during the run.
    #[error("{0}")]
    Lost(String),
    /// Interrupted (Ctrl-C / SIGTERM) before anything ran.
    #[error("interrupted")]
    Interrupted,
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
