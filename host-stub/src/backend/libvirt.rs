//! The libvirt backend: a guest that libvirt owns, managed through
//! libvirt's own balloon and memory-statistics calls (the `virt` crate,
//! libvirt's Rust bindings) instead of raw QMP — for hosts where libvirtd
//! runs QEMU and holds its monitor.
//!
//! The calls are those of `virsh setmem --live`, `virsh dommemstat` and
//! `virsh dommemstat --period`; QEMU's pid, for the host-side figures
//! (resident memory, swap, KSM), comes from libvirt's pid file.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::ffi::{c_int, c_ulonglong, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

/// Where libvirt's QEMU driver keeps its pid files (`qemu:///system`).
pub const PID_DIR: &str = "/run/libvirt/qemu";

/// A running libvirt domain.
pub struct LibvirtDomain {
    name: String,
    /// The guest's new sizes (bytes) libvirt's `BALLOON_CHANGE` events
    /// reported, until taken; `None` when the callback could not be
    /// registered.
    changes: Option<(Arc<Changes>, c_int)>,
    dom: Domain,
    // Declared after `dom`: the domain reference is released first.
    conn: Connect,
}

/// The sizes a domain's balloon-change callback collected.
type Changes = Mutex<Vec<i64>>;

/// Starts libvirt's default event loop once per process, on a thread of its
/// own: libvirt delivers domain events only to a client that runs one, and
/// it must be registered before the connection is opened.
fn event_loop() -> Result<()> {
    static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            virt::event::event_register_default_impl().map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if let Err(e) = virt::event::event_run_default_impl() {
                        tracing::warn!("libvirt event loop: {e}");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                })
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Error::Host(format!("starting libvirt's event loop: {e}")))
}

/// libvirt's `virConnectDomainEventBalloonChangeCallback`: the guest's new
/// size, KiB.
///
/// # Safety
///
/// `opaque` must be a pointer from `Arc::<Changes>::into_raw` whose
/// reference is still held (libvirt holds it until `release_changes`).
unsafe extern "C" fn balloon_changed(
    _conn: sys::virConnectPtr,
    _dom: sys::virDomainPtr,
    actual_kib: c_ulonglong,
    opaque: *mut c_void,
) {
    // SAFETY: `opaque` is the `Arc<Changes>` that `register_balloon_changes`
    // leaked for this callback; libvirt releases it through
    // `release_changes` only after the last call.
    let changes = unsafe { &*(opaque as *const Changes) };
    if let Ok(mut v) = changes.lock() {
        v.push(i64::try_from(actual_kib.saturating_mul(1024)).unwrap_or(i64::MAX));
    }
}

/// libvirt's `virFreeCallback` for the callback's `opaque`.
///
/// # Safety
///
/// `opaque` must be a pointer from `Arc::<Changes>::into_raw`, released
/// once: this drops that reference.
unsafe extern "C" fn release_changes(opaque: *mut c_void) {
    // SAFETY: `opaque` came from `Arc::into_raw` in
    // `register_balloon_changes`, and libvirt calls this once.
    drop(unsafe { Arc::from_raw(opaque as *const Changes) });
}

/// Registers [`balloon_changed`] for `dom`: the collected sizes and the
/// callback's id.
fn register_balloon_changes(conn: &Connect, dom: &Domain) -> Result<(Arc<Changes>, c_int)> {
    let changes = Arc::new(Changes::default());
    let opaque = Arc::into_raw(Arc::clone(&changes)) as *mut c_void;
    type Typed =
        unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_ulonglong, *mut c_void);
    type Generic = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
    // SAFETY: libvirt's API takes every event callback as the generic type
    // and calls it with the signature of the event ID it was registered
    // for (its `VIR_DOMAIN_EVENT_CALLBACK` cast); both are C function
    // pointers of the same size.
    let cb = unsafe { std::mem::transmute::<Typed, Generic>(balloon_changed) };
    // SAFETY: `conn` and `dom` are live libvirt objects for the call; libvirt
    // keeps `opaque` until it calls `release_changes`.
    let id = unsafe {
        sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            dom.as_ptr(),
            sys::VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE as c_int,
            Some(cb),
            opaque,
            Some(release_changes),
        )
    };
    if id < 0 {
        // SAFETY: libvirt did not take `opaque`: it is still ours, once.
        drop(unsafe { Arc::from_raw(opaque as *const Changes) });
        return Err(Error::Host(format!(
            "registering for balloon-change events: {}",
            virt::error::Error::last_error()
        )));
    }
    Ok((changes, id))
}

/// libvirt's memory statistic tags, as `virsh dommemstat` names them, and
/// whether the value is memory (KiB; reported here in MiB).
const TAGS: [(u32, &str, bool); 11] = [
    (sys::VIR_DOMAIN_MEMORY_STAT_SWAP_IN, "swap_in", false),
    (sys::VIR_DOMAIN_MEMORY_STAT_SWAP_OUT, "swap_out", false),
    (
        sys::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT,
        "major_fault",
        false,
    ),
    (
        sys::VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT,
        "minor_fault",
        false,
    ),
    (sys::VIR_DOMAIN_MEMORY_STAT_UNUSED, "unused", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE, "available", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, "actual", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_RSS, "rss", true),
    (sys::VIR_DOMAIN_MEMORY_STAT_USABLE, "usable", true),
    (
        sys::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE,
        "last_update",
        false,
    ),
    (sys::VIR_DOMAIN_MEMORY_STAT_DISK_CACHES, "disk_caches", true),
];

/// Memory statistics of a domain: dommemstat names to values (memory in
/// MiB, counters as they are, `last_update` in seconds since the epoch).
pub type MemStats = BTreeMap<String, f64>;

/// Converts libvirt's `(tag, value)` pairs; unknown tags are left out.
pub fn mem_stats(raw: impl IntoIterator<Item = (u32, u64)>) -> MemStats {
    raw.into_iter()
        .filter_map(|(tag, val)| {
            let (_, name, mem) = TAGS.iter().find(|(t, _, _)| *t == tag)?;
            let v = if *mem {
                val as f64 / 1024.0
            } else {
                val as f64
            };
            Some((name.to_string(), v))
        })
        .collect()
}

fn err(what: String) -> impl FnOnce(virt::error::Error) -> Error {
    move |e| Error::Host(format!("libvirt: {what}: {e}"))
}

impl LibvirtDomain {
    /// Connects to `uri` (e.g. `qemu:///system`) and finds the running
    /// domain `name`.
    pub fn open(uri: &str, name: &str) -> Result<Self> {
        Self::connect(uri, name, false)
    }

    /// [`LibvirtDomain::open`], and collects the domain's balloon-change
    /// events from then on ([`LibvirtDomain::take_balloon_changes`]), for a
    /// loop that manages it. Without events the balloon is still polled;
    /// it is said once.
    pub fn open_watching(uri: &str, name: &str) -> Result<Self> {
        // The event loop must exist before the connection is opened.
        let watch = match event_loop() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{e}; no balloon-change events from libvirt");
                false
            }
        };
        Self::connect(uri, name, watch)
    }

    fn connect(uri: &str, name: &str, watch: bool) -> Result<Self> {
        let conn = Connect::open(Some(uri)).map_err(err(format!("connecting to {uri}")))?;
        let dom = conn
            .lookup_domain_by_name(name)
            .map_err(err(format!("domain {name:?} on {uri}")))?;
        let active = dom
            .is_active()
            .map_err(err(format!("domain {name:?} state")))?;
        if !active {
            return Err(Error::Invalid(format!(
                "libvirt domain {name:?} is not running"
            )));
        }
        let changes = watch
            .then(|| {
                register_balloon_changes(&conn, &dom)
                    .map_err(|e| tracing::warn!("domain {name:?}: {e}; its balloon is polled only"))
                    .ok()
            })
            .flatten();
        Ok(Self {
            name: name.to_string(),
            changes,
            dom,
            conn,
        })
    }

    /// The guest sizes (bytes) libvirt's `BALLOON_CHANGE` events reported
    /// since the last call, oldest first (none unless opened watching).
    pub fn take_balloon_changes(&self) -> Vec<i64> {
        self.changes
            .as_ref()
            .and_then(|(c, _)| c.lock().ok().map(|mut v| std::mem::take(&mut *v)))
            .unwrap_or_default()
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its configured (maximum) memory, MiB.
    pub fn configured_mib(&self) -> Result<u64> {
        let kib = self
            .dom
            .max_memory()
            .map_err(err(format!("{} max memory", self.name)))?;
        Ok(kib / 1024)
    }

    /// Sets the balloon target (`virsh setmem --live`), MiB.
    pub fn set_size_mib(&self, mib: u64) -> Result<()> {
        self.dom
            .set_memory_flags(mib * 1024, sys::VIR_DOMAIN_MEM_LIVE)
            .map_err(err(format!("{} setmem {mib} MiB", self.name)))
    }

    /// Sets how often QEMU asks the guest for statistics (`virsh
    /// dommemstat --period`), seconds.
    pub fn set_stats_period(&self, secs: i32) -> Result<()> {
        self.dom
            .set_memory_stats_period(secs, sys::VIR_DOMAIN_MEM_LIVE)
            .map_err(err(format!("{} stats period", self.name)))
    }

    /// The memory statistics (`virsh dommemstat`).
    pub fn stats(&self) -> Result<MemStats> {
        let raw = self
            .dom
            .memory_stats(0)
            .map_err(err(format!("{} memory stats", self.name)))?;
        Ok(mem_stats(raw.into_iter().map(|s| (s.tag, s.val))))
    }

    /// Its QEMU's pid, from libvirt's pid file.
    pub fn pid(&self) -> Result<u32> {
        let path = PathBuf::from(PID_DIR).join(format!("{}.pid", self.name));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Host(format!("reading {}: {e}", path.display())))?;
        text.trim()
            .parse()
            .map_err(|e| Error::Host(format!("{}: not a pid ({e}): {text:?}", path.display())))
    }
}

impl Drop for LibvirtDomain {
    fn drop(&mut self) {
        if let Some((_, id)) = self.changes.take() {
            // SAFETY: `conn` is live and `id` is a callback it registered;
            // libvirt releases the callback's `opaque` itself.
            unsafe { sys::virConnectDomainEventDeregisterAny(self.conn.as_ptr(), id) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_dommemstat_names_in_mib() {
        let s = mem_stats([
            (sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, 262_144),
            (sys::VIR_DOMAIN_MEMORY_STAT_USABLE, 102_400),
            (sys::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, 7),
            (sys::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE, 1_700_000_000),
            (99, 5),
        ]);
        assert_eq!(s["actual"], 256.0);
        assert_eq!(s["usable"], 100.0);
        assert_eq!(s["major_fault"], 7.0);
        assert_eq!(s["last_update"], 1_700_000_000.0);
        assert_eq!(s.len(), 4);
    }
}
