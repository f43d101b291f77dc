//! QMP, typed through the `qapi` crate.

use crate::{Error, Result};
use qapi::qmp;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

type Stream = qapi::Stream<std::io::BufReader<UnixStream>, UnixStream>;

/// A QMP connection to one QEMU.
pub struct Qmp {
    inner: qapi::Qmp<Stream>,
    /// The QOM path of the balloon device, for guest stats.
    balloon_path: String,
    /// `BALLOON_CHANGE` events seen (actual, in bytes), oldest first.
    pub balloon_changes: Vec<i64>,
}

/// Guest memory statistics as QEMU reports them (`guest-stats`), by the
/// names QEMU uses (`stat-free-memory`, ...); QEMU 7.2 knows tags 0-9.
#[derive(Debug, Clone, Default)]
pub struct GuestStats {
    /// Seconds since the epoch of the last update (0: never updated).
    pub last_update: i64,
    /// Stat name to value.
    pub stats: std::collections::BTreeMap<String, u64>,
}

fn qmp_err(command: &str) -> impl FnOnce(qapi::ExecuteError) -> Error + '_ {
    move |e| Error::Qmp {
        command: command.to_string(),
        message: e.to_string(),
    }
}

impl Qmp {
    /// Connects to the QMP socket at `path`, retrying until `timeout` (QEMU
    /// creates the socket shortly after it starts), and negotiates
    /// capabilities.
    pub fn connect(path: &Path, timeout: Duration, balloon_id: &str) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::Qmp {
                        command: "connect".into(),
                        message: format!("{}: {e}", path.display()),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        // QEMU greets at once, unless another client holds this socket (it
        // serves one client per -qmp socket): wait for the greeting no
        // longer than the connect timeout.
        let greeting = timeout.max(Duration::from_secs(2));
        stream
            .set_read_timeout(Some(greeting))
            .map_err(Error::io("setting the QMP read timeout"))?;
        let reader = stream
            .try_clone()
            .map_err(Error::io("cloning the QMP socket"))?;
        let timeouts = stream
            .try_clone()
            .map_err(Error::io("cloning the QMP socket"))?;
        let mut inner = qapi::Qmp::new(qapi::Stream::new(std::io::BufReader::new(reader), stream));
        inner.handshake().map_err(|e| Error::Qmp {
            command: "qmp_capabilities".into(),
            message: match &e {
                qapi::ExecuteError::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    format!(
                        "{}: no QMP greeting within {} s; is another client connected? \
                     QEMU serves one client per -qmp socket (give it a second -qmp)",
                        path.display(),
                        greeting.as_secs()
                    )
                }
                _ => e.to_string(),
            },
        })?;
        timeouts
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(Error::io("setting the QMP read timeout"))?;
        Ok(Self {
            inner,
            balloon_path: format!("/machine/peripheral/{balloon_id}"),
            balloon_changes: Vec::new(),
        })
    }

    fn collect_events(&mut self) {
        for event in self.inner.events() {
            if let qmp::Event::BALLOON_CHANGE { data, .. } = event {
                self.balloon_changes.push(data.actual);
            }
        }
    }

    /// Runs a typed QMP command.
    pub fn execute<C: qapi::Command>(&mut self, command: &C) -> Result<C::Ok> {
        let r = self.inner.execute(command).map_err(qmp_err(C::NAME));
        self.collect_events();
        r
    }

    /// Sets the balloon target: the guest's memory size in bytes.
    pub fn set_guest_size(&mut self, bytes: u64) -> Result<()> {
        self.execute(&qmp::balloon {
            value: bytes as i64,
        })?;
        Ok(())
    }

    /// The guest's current memory size as QEMU sees it (`query-balloon`
    /// `actual`, in bytes): configured size minus the balloon.
    pub fn guest_size(&mut self) -> Result<u64> {
        Ok(self.execute(&qmp::query_balloon {})?.actual as u64)
    }

    /// Polls `query-balloon` until `actual == bytes` or `timeout` passes;
    /// returns the last value seen either way.
    pub fn wait_guest_size(&mut self, bytes: u64, timeout: Duration) -> Result<(bool, u64)> {
        let deadline = Instant::now() + timeout;
        loop {
            let actual = self.guest_size()?;
            if actual == bytes || Instant::now() >= deadline {
                return Ok((actual == bytes, actual));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the guest driver for statistics every `secs` seconds.
    pub fn set_stats_interval(&mut self, secs: u32) -> Result<()> {
        self.execute(&qmp::qom_set {
            path: self.balloon_path.clone(),
            property: "guest-stats-polling-interval".into(),
            value: serde_json::json!(secs),
        })?;
        Ok(())
    }

    /// The last statistics the guest driver sent.
    pub fn guest_stats(&mut self) -> Result<GuestStats> {
        let v = self.execute(&qmp::qom_get {
            path: self.balloon_path.clone(),
            property: "guest-stats".into(),
        })?;
        parse_guest_stats(&v)
    }

    /// Migrates the VM to `uri` (e.g. `exec:cat > /dev/null`) at most
    /// `max_bandwidth` bytes/s, waiting until the migration completed. The
    /// VM is paused afterwards; [`Qmp::cont`] resumes it.
    pub fn migrate(&mut self, uri: &str, max_bandwidth: u64, timeout: Duration) -> Result<()> {
        let params: qmp::MigrateSetParameters = serde_json::from_value(serde_json::json!({
            "max-bandwidth": max_bandwidth
        }))
        .map_err(|e| Error::Parse {
            what: "migration parameters".into(),
            detail: e.to_string(),
        })?;
        self.execute(&qmp::migrate_set_parameters(params))?;
        self.execute(&qmp::migrate {
            uri: Some(uri.to_string()),
            channels: None,
            detach: None,
            resume: None,
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.execute(&qmp::query_migrate {})?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => return Ok(()),
                Some(s @ (qmp::MigrationStatus::failed | qmp::MigrationStatus::cancelled)) => {
                    return Err(Error::Qmp {
                        command: "migrate".into(),
                        message: format!("migration ended {s:?}: {:?}", info.error_desc),
                    })
                }
                _ if Instant::now() > deadline => {
                    return Err(Error::Qmp {
                        command: "migrate".into(),
                        message: format!("not completed after {} s", timeout.as_secs()),
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Whether the VM runs (not paused, not waiting for a migration).
    pub fn running(&mut self) -> Result<bool> {
        Ok(self.execute(&qmp::query_status {})?.running)
    }

    /// Resumes a paused VM.
    pub fn cont(&mut self) -> Result<()> {
        self.execute(&qmp::cont {})?;
        Ok(())
    }

    /// Asks QEMU to exit.
    pub fn quit(&mut self) -> Result<()> {
        self.execute(&qmp::quit {})?;
        Ok(())
    }
}

/// Parses QEMU's `guest-stats` object; stats the guest never sent are
/// absent (QEMU reports them as -1).
pub fn parse_guest_stats(v: &serde_json::Value) -> Result<GuestStats> {
    let bad = |detail: &str| Error::Parse {
        what: "guest-stats".into(),
        detail: format!("{detail}: {v}"),
    };
    let last_update = v
        .get("last-update")
        .and_then(|x| x.as_i64())
        .ok_or_else(|| bad("no last-update"))?;
    let obj = v
        .get("stats")
        .and_then(|s| s.as_object())
        .ok_or_else(|| bad("no stats object"))?;
    // A statistic the guest never sent is -1 in QEMU, which QMP prints as
    // -1 or as 2^64 - 1 depending on the version: both mean "absent".
    let stats = obj
        .iter()
        .filter_map(|(k, val)| {
            val.as_u64()
                .filter(|n| *n != u64::MAX)
                .map(|n| (k.clone(), n))
        })
        .collect();
    Ok(GuestStats { last_update, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_stats_skip_unsent_values() {
        let v = serde_json::json!({
            "last-update": 1700000000,
            "stats": {"stat-free-memory": 1048576, "stat-htlb-pgalloc": -1, "stat-swap-in": 18446744073709551615u64}
        });
        let s = parse_guest_stats(&v).unwrap();
        assert_eq!(s.last_update, 1700000000);
        assert_eq!(s.stats.get("stat-free-memory"), Some(&1048576));
        assert!(!s.stats.contains_key("stat-htlb-pgalloc"));
        assert!(!s.stats.contains_key("stat-swap-in"));
    }

    #[test]
    fn guest_stats_reject_malformed() {
        assert!(parse_guest_stats(&serde_json::json!({"stats": {}})).is_err());
        assert!(parse_guest_stats(&serde_json::json!({"last-update": 0})).is_err());
    }
}
