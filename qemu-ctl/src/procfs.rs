//! Parsing `/proc/meminfo`, `/proc/vmstat` and `/proc/PID/status` text.

use crate::{Error, Result};
use std::collections::BTreeMap;

/// `/proc/meminfo`: field name to value in KiB (`HugePages_*` counts as-is).
#[derive(Debug, Clone, Default)]
pub struct MemInfo(pub BTreeMap<String, u64>);

impl MemInfo {
    /// Parses `/proc/meminfo` text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut map = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, rest) = line.split_once(':').ok_or_else(|| Error::Parse {
                what: "/proc/meminfo".into(),
                detail: format!("line without ':': {line:?}"),
            })?;
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Parse {
                    what: "/proc/meminfo".into(),
                    detail: format!("no number in {line:?}"),
                })?;
            map.insert(name.trim().to_string(), value);
        }
        if !map.contains_key("MemTotal") {
            return Err(Error::Parse {
                what: "/proc/meminfo".into(),
                detail: "no MemTotal".into(),
            });
        }
        Ok(Self(map))
    }

    /// A field in KiB.
    pub fn kib(&self, field: &str) -> Result<u64> {
        self.0.get(field).copied().ok_or_else(|| Error::Parse {
            what: "/proc/meminfo".into(),
            detail: format!("no field {field}"),
        })
    }

    /// A field in MiB (rounded down).
    pub fn mib(&self, field: &str) -> Result<u64> {
        Ok(self.kib(field)? / 1024)
    }
}

/// `/proc/vmstat`: counter name to value.
#[derive(Debug, Clone, Default)]
pub struct VmStat(pub BTreeMap<String, u64>);

impl VmStat {
    /// Parses `/proc/vmstat` text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut map = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut it = line.split_whitespace();
            let (Some(name), Some(value), None) = (it.next(), it.next(), it.next()) else {
                return Err(Error::Parse {
                    what: "/proc/vmstat".into(),
                    detail: format!("bad line {line:?}"),
                });
            };
            let value = value.parse().map_err(|e| Error::Parse {
                what: "/proc/vmstat".into(),
                detail: format!("{line:?}: {e}"),
            })?;
            map.insert(name.to_string(), value);
        }
        Ok(Self(map))
    }

    /// A counter; missing counters are an error, not zero.
    pub fn get(&self, name: &str) -> Result<u64> {
        self.0.get(name).copied().ok_or_else(|| Error::Parse {
            what: "/proc/vmstat".into(),
            detail: format!("no counter {name}"),
        })
    }
}

/// A `kB` field of `/proc/PID/{file}`.
fn proc_field_kib(pid: u32, file: &str, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    status_field_kib(&text, field).ok_or_else(|| Error::Parse {
        what: path,
        detail: format!("no {field}"),
    })
}

/// Resident set size of process `pid` in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    proc_field_kib(pid, "status", "VmRSS")
}

/// The process's anonymous memory mapped by transparent huge pages, in KiB
/// (`AnonHugePages` of `/proc/PID/smaps_rollup`): for QEMU, how much guest
/// RAM the host still backs with 2 MiB pages.
pub fn anon_huge_kib(pid: u32) -> Result<u64> {
    proc_field_kib(pid, "smaps_rollup", "AnonHugePages")
}

/// A `kB` field of `/proc/PID/status` (or `smaps_rollup`) text.
pub fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        (name == field).then(|| rest.split_whitespace().next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses_kib_and_counts() {
        let m = MemInfo::parse(
            "MemTotal:         492512 kB\nMemFree:          470000 kB\nHugePages_Total:       0\n",
        )
        .unwrap();
        assert_eq!(m.kib("MemTotal").unwrap(), 492512);
        assert_eq!(m.mib("MemFree").unwrap(), 458);
        assert_eq!(m.kib("HugePages_Total").unwrap(), 0);
        assert!(m.kib("Nope").is_err());
    }

    #[test]
    fn meminfo_rejects_garbage() {
        assert!(MemInfo::parse("garbage\n").is_err());
        assert!(MemInfo::parse("MemFree: x kB\n").is_err());
        assert!(MemInfo::parse("MemFree: 1 kB\n").is_err(), "no MemTotal");
    }

    #[test]
    fn vmstat_parses_and_rejects() {
        let v = VmStat::parse("balloon_inflate 12\nballoon_deflate 3\n").unwrap();
        assert_eq!(v.get("balloon_inflate").unwrap(), 12);
        assert!(v.get("balloon_migrate").is_err());
        assert!(VmStat::parse("a b c\n").is_err());
        assert!(VmStat::parse("a x\n").is_err());
    }

    #[test]
    fn status_field() {
        let s = "Name:\tqemu\nVmRSS:\t  123456 kB\nVmSwap:\t       0 kB\n";
        assert_eq!(status_field_kib(s, "VmRSS"), Some(123456));
        assert_eq!(status_field_kib(s, "VmSwap"), Some(0));
        assert_eq!(status_field_kib(s, "VmHWM"), None);
    }

    #[test]
    fn own_rss_is_positive() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        // Present (often 0) for any process; a missing field is an error.
        assert!(anon_huge_kib(std::process::id()).is_ok());
        assert!(proc_field_kib(std::process::id(), "status", "NoSuchField").is_err());
    }
}
