//! The harness's errors: each message says what failed and, for a guest,
//! ends with the tail of its console log.

use std::path::PathBuf;

/// A harness result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, booting or driving a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A build artifact is missing.
    #[error("{what} not found at {}: {hint}", path.display())]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// QEMU could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// QEMU exited while the harness was using the guest.
    #[error("QEMU exited unexpectedly ({status}) while {doing}\n--- console tail ---\n{tail}")]
    QemuExited {
        status: String,
        doing: String,
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs:.0} s waiting for {what}\n--- console tail ---\n{tail}")]
    Timeout {
        what: String,
        secs: f64,
        tail: String,
    },
    /// A QMP command failed or the connection broke.
    #[error("QMP {command}: {message}")]
    Qmp { command: String, message: String },
    /// The guest agent's channel broke or answered nonsense.
    #[error("guest agent: {0}")]
    Agent(String),
    /// A guest command exited non-zero where success was required.
    #[error("guest command `{command}` exited {code}:\n{output}")]
    Command {
        command: String,
        code: i32,
        output: String,
    },
    /// The guest's console log shows a kernel warning, bug or panic.
    #[error(
        "kernel problems in the guest console log ({log}):\n{lines}\n--- console tail ---\n{tail}"
    )]
    KernelLog {
        log: String,
        lines: String,
        tail: String,
    },
    /// The console shows a device the guest cannot use (no interrupt
    /// route, an ACPI method that failed, a driver probe that failed).
    #[error("the guest cannot use its devices ({doing}): console line {line}: {text}\n--- console tail ---\n{tail}")]
    DeviceBroken {
        doing: String,
        line: usize,
        text: String,
        tail: String,
    },
    /// Guest output could not be parsed.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A behaviour check failed (tests use this to report numbers).
    #[error("check failed: {0}")]
    Check(String),
    /// Host I/O.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Returns `Err(Error::Check)` with the formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::Check(format!($($arg)+)));
        }
    };
}
