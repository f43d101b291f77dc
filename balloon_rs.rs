// SPDX-License-Identifier: GPL-2.0

//! balloon_rs: a virtio memory balloon driver in Rust.
//!
//! The Rust counterpart of [`drivers/virtio/virtio_balloon.c`]: it binds the
//! virtio balloon device, inflates (gives guest pages to the host) and
//! deflates (takes them back) through the page allocator towards the host's
//! target, reports memory statistics on the stats queue, deflates on OOM
//! when the host allows it, and keeps its pages movable for compaction.
//!
//! Beyond C: a floor of available memory it never inflates below (a host
//! asking for everything cannot starve the guest), back-off on allocation
//! failure, and a debugfs view (`/sys/kernel/debug/balloon_rs/virtio<N>/status`).
//!
//! Everything `unsafe` lives in [`abstractions`], one file per kernel API
//! that the 6.12 kernel crate lacks; the balloon logic (this file,
//! [`page_pool`], [`request`], [`stats`], [`hint`]) is safe Rust, and its
//! arithmetic is in [`policy`], which is unit-tested on the host.
//!
//! Lock order: `Balloon::incoming` (the size work's, never contended) before
//! `Balloon::inner` (the balloon lock), which is taken before the page
//! pool's `pages_lock` (inside the C balloon helpers). The balloon lock is
//! never held while allocating pages, and only for one host request at a
//! time. `Balloon::stats` is
//! never held together with `inner`. Migration only try-locks `inner`.

use core::{
    mem::offset_of,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};
use kernel::{
    bindings, c_str, fmt,
    init::InPlaceWrite,
    prelude::*,
    str::CString,
    sync::{Arc, ArcBorrow},
    workqueue,
};

/// The kernel abstractions the driver needs and the 6.12 kernel crate
/// lacks, one file per C API, shaped like `rust/kernel/`: every `unsafe`
/// of the module is in them, and they know nothing of the balloon.
mod abstractions {
    pub(crate) mod balloon_compaction;
    pub(crate) mod container;
    pub(crate) mod debugfs;
    pub(crate) mod fault_inject;
    pub(crate) mod lock;
    pub(crate) mod mm;
    pub(crate) mod oom;
    pub(crate) mod page;
    pub(crate) mod param;
    pub(crate) mod reporting;
    pub(crate) mod shrinker;
    pub(crate) mod virtio;
    pub(crate) mod wait;
    pub(crate) mod work;
}

// The balloon logic: safe Rust.
mod hint;
mod page_pool;
mod policy;
mod request;
mod stats;

use abstractions::{
    balloon_compaction, debugfs, fault_inject, lock, mm, oom, page, param, reporting, shrinker,
    virtio, wait, work,
};
use balloon_compaction::Migration;
use fault_inject::FaultAttr;
use kernel::sync::{
    lock::{mutex::MutexBackend, Guard as LockGuard},
    Mutex,
};
use lock::IrqSpinLock;
use mm::PAGE_SHIFT;
use page_pool::{AllocCounts, Batch, Incoming, PagePool, EMPTY_BATCH};
use policy::PFNS_PER_BATCH;
use request::OutBufs;
use shrinker::{CountObjects, ScanObjects, ShrinkControl};
use stats::{StatsQueue, NR_STATS};
use virtio::{Device, DeviceHandle, QueueInfo, Virtqueue};
use work::{DelayedWork, OwnedQueue, WqFlags};

/// A held [`Mutex`].
type Guard<'a, T> = LockGuard<'a, T, MutexBackend>;

module! {
    type: BalloonModule,
    name: "balloon_rs",
    author: "balloon_rs developers",
    description: "Virtio memory balloon driver written in Rust",
    license: "GPL",
}

/// The module's debugfs directory, `/sys/kernel/debug/balloon_rs/`: one
/// directory per device (`virtio<N>/status`) and the fault-injection points.
static DEBUGFS: debugfs::Root = debugfs::Root::new();

/// Fault injection aimed at the driver (kernels with
/// `CONFIG_FAULT_INJECTION_DEBUG_FS`), controlled in `balloon_rs/fail_*/`
/// as any C fault attribute: a request to the host (inflate, deflate,
/// stats, hint, report) is not queued (`EIO`)...
static FAIL_REQUEST: FaultAttr = FaultAttr::new();
/// ... an allocation of the driver's own fails (balloon pages, hint
/// blocks) ...
static FAIL_ALLOC: FaultAttr = FaultAttr::new();
/// ... or a step of probe fails (`ENOMEM`), each step one call.
static FAIL_PROBE: FaultAttr = FaultAttr::new();

/// `Err(EIO)` when a request to the host is to fail (fault injection).
fn host_request() -> Result {
    if FAIL_REQUEST.should_fail() {
        Err(EIO)
    } else {
        Ok(())
    }
}

/// `Err(ENOMEM)` when probe is to fail at this step (fault injection).
fn probe_step(step: &str) -> Result {
    if FAIL_PROBE.should_fail() {
        pr_info!("fault injection: probe fails at {}\n", step);
        Err(ENOMEM)
    } else {
        Ok(())
    }
}

/// `floor_mib` module parameter: 0 derives the floor from the guest's size.
static FLOOR_MIB: param::ULongParam = param::ULongParam::new(0);
module_param_ulong!(
    floor_mib,
    FLOOR_MIB,
    0o644,
    "MiB of available memory the guest always keeps; the balloon never inflates below it (0: max(32 MiB, 1/16 of memory, 4x high watermark))"
);

/// Balloon (4 KiB) pages per guest page.
const PER_PAGE: u64 = policy::balloon_pages_per_page(PAGE_SHIFT) as u64;
/// Balloon pages given back per OOM notification, as C.
const OOM_NR_PAGES: u64 = 256;
/// OOM notifier priority, as C.
const OOM_NOTIFY_PRIORITY: i32 = 80;
/// How often the driver re-checks while held at the floor, in ms.
const FLOOR_RETRY_MS: u32 = 1000;
/// At most one "holding at the floor" message per this many ms.
const FLOOR_LOG_INTERVAL_MS: u64 = 10_000;

/// Queue indices in `find_vqs` order (C's `enum virtio_balloon_vq`). Queues
/// of features not negotiated get no name and no index on the device (QEMU
/// numbers the rest densely), as in C.
const VQ_INFLATE: usize = 0;
const VQ_DEFLATE: usize = 1;
const VQ_STATS: usize = 2;
const VQ_REPORTING: usize = 4;
const VQ_COUNT: usize = 5;

/// Work item ids.
const SIZE_WORK: u64 = 0;
const STATS_WORK: u64 = 1;
const HINT_WORK: u64 = 2;

/// Most inflate batches one run of the size work sends (the target and the
/// floor are re-read between batches; other work runs between runs).
const FILL_BATCHES: u64 = 32;

/// State the debugfs file shows: plain atomics, so reading it never takes
/// the balloon lock.
#[derive(Default)]
struct Shared {
    target: AtomicU64,
    actual: AtomicU64,
    floor_pages: AtomicU64,
    available_pages: AtomicU64,
    features: AtomicU64,
    config_changes: AtomicU64,
    batches_inflated: AtomicU64,
    batches_deflated: AtomicU64,
    pages_inflated: AtomicU64,
    pages_deflated: AtomicU64,
    alloc_failures: AtomicU64,
    /// Pages inflated from PMD-order blocks, fallback-order blocks and
    /// single pages.
    inflated_by_order: [AtomicU64; 3],
    /// Block allocations that failed and fell back to a smaller order.
    order_fallbacks: AtomicU64,
    /// Where inflation and deflation spend their time, in ns (see
    /// [`Phase`]).
    phase_ns: [AtomicU64; Phase::COUNT],
    floor_holds: AtomicU64,
    oom_deflates: AtomicU64,
    oom_pages: AtomicU64,
    /// The longest OOM notifier call, in microseconds (it waits for the
    /// balloon lock: never behind page allocation).
    oom_max_us: AtomicU64,
    migrations: AtomicU64,
    migrations_busy: AtomicU64,
    stats_requests: AtomicU64,
    reports: AtomicU64,
    reported_bytes: AtomicU64,
    freezes: AtomicU64,
    restores: AtomicU64,
    hint_cmd_id: AtomicU64,
    hint_rounds: AtomicU64,
    hint_blocks_sent: AtomicU64,
    hint_blocks_returned: AtomicU64,
    hint_blocks_shrunk: AtomicU64,
    hint_blocks_held: AtomicU64,
    stats_valid: AtomicBool,
    /// The last statistics sent, indexed by tag.
    last_stats: [AtomicU64; NR_STATS],
    last_floor_log_ms: AtomicU64,
    last_broken_log_ms: AtomicU64,
    last_oom_ms: AtomicU64,
}

/// The parts of inflating and deflating whose time debugfs shows per MiB.
#[derive(Clone, Copy)]
enum Phase {
    /// Allocating the pages of a batch.
    InflateAlloc = 0,
    /// Putting them on the balloon list (and out of MemTotal).
    InflateEnqueue,
    /// Writing the PFNs, queueing the request, waiting for the host's ack.
    InflateHost,
    /// Taking pages off the balloon list.
    DeflateDequeue,
    /// Telling the host.
    DeflateHost,
    /// Giving the pages back to the allocator.
    DeflateRelease,
}

impl Phase {
    const COUNT: usize = 6;
    const NAMES: [&'static str; Self::COUNT] = [
        "inflate_alloc",
        "inflate_enqueue",
        "inflate_host",
        "deflate_dequeue",
        "deflate_host",
        "deflate_release",
    ];
}

impl Shared {
    /// Adds the time since `start_ns` to `phase`; returns now.
    fn time(&self, phase: Phase, start_ns: u64) -> u64 {
        let now = mm::now_ns();
        self.phase_ns[phase as usize].fetch_add(now.saturating_sub(start_ns), Relaxed);
        now
    }

    /// Counts where a batch's pages came from.
    fn count_alloc(&self, counts: &AllocCounts) {
        for (c, n) in self.inflated_by_order.iter().zip(counts.by_order) {
            c.fetch_add(n, Relaxed);
        }
        self.order_fallbacks.fetch_add(counts.fallbacks, Relaxed);
    }
}

/// Feature bits as debugfs names them.
const FEATURE_NAMES: [(u32, &str); 6] = [
    (bindings::VIRTIO_BALLOON_F_MUST_TELL_HOST, "must_tell_host"),
    (bindings::VIRTIO_BALLOON_F_STATS_VQ, "stats_vq"),
    (bindings::VIRTIO_BALLOON_F_DEFLATE_ON_OOM, "deflate_on_oom"),
    (bindings::VIRTIO_BALLOON_F_FREE_PAGE_HINT, "free_page_hint"),
    (bindings::VIRTIO_BALLOON_F_PAGE_POISON, "page_poison"),
    (bindings::VIRTIO_BALLOON_F_REPORTING, "reporting"),
];

impl debugfs::Writer for Shared {
    fn write(&self, out: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mib = |pages: u64| pages >> (20 - policy::BALLOON_PFN_SHIFT);
        let gmib = |pages: u64| pages >> (20 - PAGE_SHIFT);
        let (target, actual) = (self.target.load(Relaxed), self.actual.load(Relaxed));
        writeln!(out, "target_pages: {target}")?;
        writeln!(out, "target_mib: {}", mib(target))?;
        writeln!(out, "actual_pages: {actual}")?;
        writeln!(out, "actual_mib: {}", mib(actual))?;
        writeln!(out, "floor_mib: {}", gmib(self.floor_pages.load(Relaxed)))?;
        writeln!(
            out,
            "available_mib: {}",
            gmib(self.available_pages.load(Relaxed))
        )?;
        let features = self.features.load(Relaxed);
        write!(out, "features:")?;
        for (bit, name) in FEATURE_NAMES {
            if features & (1 << bit) != 0 {
                write!(out, " {name}")?;
            }
        }
        writeln!(out)?;
        let counters = [
            ("config_changes", &self.config_changes),
            ("batches_inflated", &self.batches_inflated),
            ("batches_deflated", &self.batches_deflated),
            ("pages_inflated", &self.pages_inflated),
            ("pages_deflated", &self.pages_deflated),
            ("alloc_failures", &self.alloc_failures),
            ("floor_holds", &self.floor_holds),
            ("oom_deflates", &self.oom_deflates),
            ("oom_pages", &self.oom_pages),
            ("oom_max_us", &self.oom_max_us),
            ("migrations", &self.migrations),
            ("migrations_busy", &self.migrations_busy),
            ("stats_requests", &self.stats_requests),
            ("reports", &self.reports),
            ("reported_mib", &self.reported_bytes),
            ("freezes", &self.freezes),
            ("restores", &self.restores),
            ("hint_cmd_id", &self.hint_cmd_id),
            ("hint_rounds", &self.hint_rounds),
            ("hint_blocks_sent", &self.hint_blocks_sent),
            ("hint_blocks_returned", &self.hint_blocks_returned),
            ("hint_blocks_shrunk", &self.hint_blocks_shrunk),
            ("hint_blocks_held", &self.hint_blocks_held),
        ];
        for (name, c) in counters {
            let v = c.load(Relaxed);
            // Byte counters are shown in MiB.
            let v = if name.ends_with("_mib") { v >> 20 } else { v };
            writeln!(out, "{name}: {v}")?;
        }
        let orders = [balloon_compaction::PMD_ORDER, policy::FALLBACK_ORDER, 0];
        for (order, c) in orders.iter().zip(&self.inflated_by_order) {
            writeln!(out, "inflated_order_{order}: {}", c.load(Relaxed))?;
        }
        writeln!(
            out,
            "order_fallbacks: {}",
            self.order_fallbacks.load(Relaxed)
        )?;
        // Time per MiB moved (4 KiB balloon pages: 256 per MiB).
        let per_mib = |ns: u64, pages: u64| (ns * 256).checked_div(pages).unwrap_or(0);
        let (inflated, deflated) = (
            self.pages_inflated.load(Relaxed),
            self.pages_deflated.load(Relaxed),
        );
        for (i, name) in Phase::NAMES.iter().enumerate() {
            let pages = if i <= Phase::InflateHost as usize {
                inflated
            } else {
                deflated
            };
            let ns = self.phase_ns[i].load(Relaxed);
            writeln!(out, "{name}_ns_per_mib: {}", per_mib(ns, pages))?;
        }
        if self.stats_valid.load(Relaxed) {
            for (name, v) in stats::TAG_NAMES.iter().zip(self.last_stats.iter()) {
                writeln!(out, "stat_{name}: {}", v.load(Relaxed))?;
            }
        }
        Ok(())
    }
}

/// The inflate and deflate queues.
struct Queues {
    inflate: Virtqueue,
    deflate: Virtqueue,
}

/// What the balloon lock protects.
struct Inner {
    /// `None` once the queues are deleted (remove).
    queues: Option<Queues>,
    /// Balloon pages held (4 KiB units), each a page on the pool's list.
    held: u64,
    /// The PFN buffers: the host reads one while the next is filled.
    out: OutBufs<PFNS_PER_BATCH>,
    /// Pages dequeued for deflation, released after the host is told
    /// (a fixed array: no per-page allocation).
    leaving: Batch,
    /// Allocation failures in a row (for the back-off).
    failures: u32,
}

/// The stats queue and its scratch space.
struct StatsState {
    queue: Option<StatsQueue>,
    events: KBox<[kernel::ffi::c_ulong; mm::NR_VM_EVENTS]>,
}

/// Features negotiated with the device.
#[derive(Clone, Copy)]
struct Features {
    stats: bool,
    deflate_on_oom: bool,
    reporting: bool,
    hint: bool,
}

/// Free page hint blocks held for the host, shared with the shrinker.
#[pin_data]
struct HintPool {
    #[pin]
    blocks: Mutex<hint::HintStack>,
    shared: Arc<Shared>,
}

impl HintPool {
    /// Gives up to `n` hinted blocks back to the allocator.
    fn give_back(&self, n: u64) -> u64 {
        let mut blocks = self.blocks.lock();
        let mut freed = 0;
        while freed < n {
            let Some(block) = blocks.pop() else {
                break;
            };
            drop(block);
            freed += 1;
        }
        self.shared
            .hint_blocks_held
            .store(blocks.len() as u64, Relaxed);
        freed
    }
}

impl shrinker::Shrinker for HintPool {
    type Ptr = Arc<HintPool>;

    fn count_objects(pool: ArcBorrow<'_, HintPool>, _sc: ShrinkControl<'_>) -> CountObjects {
        let pages = pool.shared.hint_blocks_held.load(Relaxed) * hint::BLOCK_PAGES;
        CountObjects::new(pages as usize)
    }

    fn scan_objects(pool: ArcBorrow<'_, HintPool>, sc: ShrinkControl<'_>) -> ScanObjects {
        let freed = pool.give_back((sc.nr_to_scan() as u64).div_ceil(hint::BLOCK_PAGES));
        pool.shared.hint_blocks_shrunk.fetch_add(freed, Relaxed);
        ScanObjects::from_count((freed * hint::BLOCK_PAGES) as usize)
    }
}

/// The free page queue and its command buffers.
struct HintVq {
    vq: Option<Virtqueue>,
    cmd: hint::CmdIds,
}

/// Free page hinting (with FREE_PAGE_HINT): C's `balloon_wq`, shrinker and
/// command-id state.
struct Hinting {
    pool: Arc<HintPool>,
    _shrinker: shrinker::ShrinkerRegistration<HintPool>,
    wq: OwnedQueue,
    /// Set by a config change: the command id must be re-read.
    stale: AtomicBool,
    /// The last command id read from the device.
    received: core::sync::atomic::AtomicU32,
    /// The command id of the round in progress (or last finished).
    active: core::sync::atomic::AtomicU32,
}

/// Every queue of the device, as `find_vqs` returns them.
struct AllQueues {
    main: Queues,
    stats: Option<StatsQueue>,
    hint: Option<Virtqueue>,
    report: Option<Virtqueue>,
}

/// Finds the device's queues (probe and restore), as C's `init_vqs()`.
fn find_queues(d: &Device, f: Features) -> Result<AllQueues> {
    let [inflate, deflate, stats, hint, report] = d.find_vqs::<VQ_COUNT>(&[
        QueueInfo {
            name: Some(c_str!("inflate")),
            callback: virtio::vq_callback::<BalloonDriver, VQ_INFLATE>(),
        },
        QueueInfo {
            name: Some(c_str!("deflate")),
            callback: virtio::vq_callback::<BalloonDriver, VQ_DEFLATE>(),
        },
        QueueInfo {
            name: f.stats.then_some(c_str!("stats")),
            callback: virtio::vq_callback::<BalloonDriver, VQ_STATS>(),
        },
        QueueInfo {
            // As C: the driver polls this queue, it needs no interrupt.
            name: f.hint.then_some(c_str!("free_page_vq")),
            callback: None,
        },
        QueueInfo {
            name: f.reporting.then_some(c_str!("reporting_vq")),
            callback: virtio::vq_callback::<BalloonDriver, VQ_REPORTING>(),
        },
    ])?;
    // The reporting queue must hold a whole batch of reported pages; the
    // free page queue one hint plus the always-free slot for STOP.
    let too_small = report
        .as_ref()
        .is_some_and(|r| r.size() < bindings::PAGE_REPORTING_CAPACITY)
        || hint.as_ref().is_some_and(|h| h.size() < 2);
    let (Some(inflate), Some(deflate)) = (inflate, deflate) else {
        // find_vqs() sets up every named queue; this cannot happen.
        return Err(ENODEV);
    };
    // The stats queue needs its buffer; a failure here, like a queue that
    // is too small, deletes every queue again. (`del_vqs` deletes them all;
    // a handle dropped on the way can no longer be used.)
    let stats = if too_small {
        Err(ENOSPC)
    } else {
        probe_step("stats buffer").and_then(|()| stats.map(StatsQueue::new).transpose())
    };
    match stats {
        Ok(stats) => Ok(AllQueues {
            main: Queues { inflate, deflate },
            stats,
            hint,
            report,
        }),
        Err(e) => {
            let reset = d.reset();
            d.delete_queues(
                reset,
                [Some(inflate), Some(deflate), hint, report]
                    .into_iter()
                    .flatten(),
            );
            Err(e)
        }
    }
}

/// Events that keep the system awake until the driver has handled them, as
/// C's `VIRTIO_BALLOON_WAKEUP_SIGNAL_*`.
const WAKEUP_ADJUST: u32 = 1;
const WAKEUP_STATS: u32 = 2;

/// The wakeup source's state (C's `wakeup_lock` and what it protects):
/// pending events, and whether the device is keeping the system awake.
#[derive(Default)]
struct Wakeup {
    pending: u32,
    awake: bool,
}

impl Balloon {
    /// An event arrived (any context, interrupt handlers included): stay
    /// awake until it is handled.
    fn start_wakeup_event(&self, event: u32) {
        let mut w = self.wakeup.lock();
        w.pending |= event;
        if !w.awake {
            w.awake = true;
            self.dev().stay_awake();
        }
    }

    /// The work for `event` has begun: a new one arriving from now on
    /// keeps the system awake again.
    fn process_wakeup_event(&self, event: u32) {
        self.wakeup.lock().pending &= !event;
    }

    /// The work is done: relax unless another event is pending.
    fn finish_wakeup_event(&self) {
        let mut w = self.wakeup.lock();
        if w.pending == 0 && w.awake {
            w.awake = false;
            self.dev().relax();
        }
    }
}

/// Whether a message last logged at `last` (ms) may be logged again, at most
/// one every [`FLOOR_LOG_INTERVAL_MS`]; if so, `last` becomes now.
fn log_due(last: &AtomicU64) -> bool {
    let now = mm::now_ms();
    if policy::rate_limit_ok(now, last.load(Relaxed), FLOOR_LOG_INTERVAL_MS) {
        last.store(now, Relaxed);
        true
    } else {
        false
    }
}

/// Per-device state.
///
/// Field order matters for drop: the work items and the OOM notifier come
/// first, so they are cancelled/unregistered before anything they use.
#[pin_data]
struct Balloon {
    /// Moves the balloon towards the target, one batch per run.
    #[pin]
    size_work: DelayedWork<Balloon, SIZE_WORK>,
    /// Answers the host's statistics requests.
    #[pin]
    stats_work: DelayedWork<Balloon, STATS_WORK>,
    /// Runs free page hinting rounds (on `hinting.wq`).
    #[pin]
    hint_work: DelayedWork<Balloon, HINT_WORK>,
    /// Free page hinting state; `None` without FREE_PAGE_HINT.
    hinting: Option<Hinting>,
    /// Deflates on OOM (only registered with DEFLATE_ON_OOM).
    #[pin]
    oom: oom::OomNotifier<Balloon>,
    /// Free page reporting (only registered with REPORTING).
    #[pin]
    reporting: reporting::PageReporting<Balloon>,
    /// The debugfs file; `None` if debugfs is unavailable.
    debugfs: Option<debugfs::DebugFile<Shared>>,
    dev: DeviceHandle,
    features: Features,
    shared: Arc<Shared>,
    /// Set in remove: no more work is queued.
    stop: AtomicBool,
    /// The pages (the kernel's `balloon_dev_info`).
    #[pin]
    pool: PagePool,
    /// Pages allocated for the next inflate request, before the balloon
    /// lock is taken (only the size work uses it).
    #[pin]
    incoming: Mutex<Incoming>,
    /// The balloon lock.
    #[pin]
    inner: Mutex<Inner>,
    /// The stats queue.
    #[pin]
    stats: Mutex<StatsState>,
    /// The free page reporting queue.
    #[pin]
    report_vq: Mutex<Option<Virtqueue>>,
    /// The free page hinting queue.
    #[pin]
    hint_vq: Mutex<HintVq>,
    /// Woken by the inflate and deflate queues' interrupts.
    #[pin]
    acked: wait::WaitQueue,
    /// The wakeup source's state.
    #[pin]
    wakeup: IrqSpinLock<Wakeup>,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Balloon, 0> for Balloon { self.size_work }
    impl HasDelayedWork<Balloon, 1> for Balloon { self.stats_work }
    impl HasDelayedWork<Balloon, 2> for Balloon { self.hint_work }
}
impl_oom_handler!(Balloon, oom);
impl_migrate!(Balloon, pool.info);
impl_reporter!(Balloon, reporting);

/// What one run of the size work achieved.
enum Step {
    /// Target reached (or no queues).
    Done,
    /// A batch moved; more may follow.
    Moved,
    /// Inflation stopped at the floor (or in the hold-off after an OOM
    /// deflate).
    Floor,
    /// An allocation came up short, or the host refused a batch: back off.
    NoMemory,
}

impl Balloon {
    fn dev(&self) -> &Device {
        self.dev.get()
    }

    /// The host's target in balloon pages, rounded up to whole guest pages.
    fn target(&self) -> u64 {
        let num_pages = self
            .dev()
            .read_config_le32(offset_of!(bindings::virtio_balloon_config, num_pages));
        policy::round_target(num_pages, PAGE_SHIFT)
    }

    /// Tells the host how many balloon pages the guest really holds.
    fn write_actual(&self, held: u64) {
        self.dev().write_config_le32(
            offset_of!(bindings::virtio_balloon_config, actual),
            held as u32,
        );
        self.shared.actual.store(held, Relaxed);
    }

    /// The floor in guest pages, from the parameter or the guest's size
    /// (its managed pages plus what the balloon took out of them).
    fn floor_pages(&self, snap: &mm::MemSnapshot, held: u64) -> u64 {
        let ballooned = if self.features.deflate_on_oom {
            0
        } else {
            held / PER_PAGE
        };
        let floor = policy::floor_pages(
            FLOOR_MIB.get() as u64,
            snap.total + ballooned,
            mm::free_buffer_pages() + ballooned,
            PAGE_SHIFT,
        );
        self.shared.floor_pages.store(floor, Relaxed);
        floor
    }

    /// Adds `n` PFNs of the next request buffer to the inflate or deflate
    /// queue and notifies the host, without waiting for it.
    fn submit(&self, inner: &mut Inner, n: usize, deflate: bool) -> Result {
        let Inner { queues, out, .. } = inner;
        let q = queues.as_mut().ok_or(ENODEV)?;
        let vq = if deflate {
            &mut q.deflate
        } else {
            &mut q.inflate
        };
        host_request()?;
        // False: the host is processing the queue and asked not to be told.
        if out.submit(vq, n)? {
            vq.notify();
        }
        Ok(())
    }

    /// Sleeps until the host gave back the request buffer in flight.
    fn wait_acked(&self, inner: &mut Inner, deflate: bool) -> Result {
        let mut gone = false;
        self.acked.wait_until(|| {
            let Inner { queues, out, .. } = &mut *inner;
            let Some(q) = queues.as_mut() else {
                gone = true;
                return true;
            };
            let vq = if deflate {
                &mut q.deflate
            } else {
                &mut q.inflate
            };
            out.reap(vq);
            !out.in_flight()
        });
        if gone {
            Err(ENODEV)
        } else {
            Ok(())
        }
    }

    /// Sends `n` PFNs of the next request buffer on the inflate or deflate
    /// queue and waits for the host.
    fn tell_host(&self, inner: &mut Inner, n: usize, deflate: bool) -> Result {
        self.submit(inner, n, deflate)?;
        self.wait_acked(inner, deflate)
    }

    /// Tells the host about one guest page (page migration).
    fn tell_host_one(&self, inner: &mut Inner, pfn: u64, deflate: bool) -> Result {
        let pfns = inner.out.next_mut().ok_or(EBUSY)?;
        self.set_pfns(pfns, 0, pfn);
        self.tell_host(inner, PER_PAGE as usize, deflate)
    }

    /// Writes the balloon PFNs of guest page `pfn` at batch slot `slot`.
    fn set_pfns(&self, pfns: &mut [u32; PFNS_PER_BATCH], slot: usize, pfn: u64) {
        let dev = self.dev();
        for i in 0..PER_PAGE as usize {
            let balloon_pfn = (pfn * PER_PAGE) as u32 + i as u32;
            pfns[slot * PER_PAGE as usize + i] = dev.cpu_to_virtio32(balloon_pfn);
        }
    }

    /// Logs (rate-limited) and counts a stop at the floor.
    fn note_floor(&self, held: u64, snap: &mm::MemSnapshot, floor: u64) {
        self.shared.floor_holds.fetch_add(1, Relaxed);
        if log_due(&self.shared.last_floor_log_ms) {
            pr_info!(
                "holding at the floor: balloon {} MiB of a {} MiB target, {} MiB available, floor {} MiB\n",
                policy::balloon_pages_to_mib(held),
                policy::balloon_pages_to_mib(self.shared.target.load(Relaxed)),
                snap.available >> (20 - PAGE_SHIFT),
                floor >> (20 - PAGE_SHIFT)
            );
        }
    }

    /// Allocates up to `allowed` pages into `incoming`'s batch, without the
    /// balloon lock (as C's `fill_balloon()`: the OOM notifier and
    /// compaction never wait behind the page allocator), in blocks of the
    /// PMD order where `want` (pages the target still needs) and `room`
    /// (new pages the floor allows) leave space for one; returns how many.
    fn alloc_batch(&self, incoming: &mut Incoming, allowed: u64, want: u64, room: u64) -> usize {
        let start = mm::now_ns();
        let (count, counts) = incoming.alloc_batch(allowed, want, room, &FAIL_ALLOC);
        self.shared.time(Phase::InflateAlloc, start);
        self.shared.count_alloc(&counts);
        if (count as u64) < allowed {
            self.shared.alloc_failures.fetch_add(1, Relaxed);
        }
        count
    }

    /// Sends the `count` pages of `incoming` to the host as one inflate
    /// request and puts them in the balloon, under the balloon lock, which
    /// is held for this one request. If the request cannot be queued the
    /// host never heard of them: exactly these pages go back to the
    /// allocator. Returns whether they were inflated.
    fn inflate_batch(&self, incoming: &mut Incoming, count: usize, short: bool) -> bool {
        let adjust = !self.features.deflate_on_oom;
        let incoming = &mut incoming.batch;
        let mut inner = self.inner.lock();
        let start = mm::now_ns();
        inner.failures = if short {
            inner.failures.saturating_add(1)
        } else {
            0
        };
        let queued = match inner.out.next_mut() {
            // Nothing is in flight while the lock is free: cannot happen.
            None => Err(EBUSY),
            Some(pfns) => {
                for (slot, page) in incoming.iter().enumerate() {
                    if let Some(page) = page {
                        self.set_pfns(pfns, slot, page.pfn());
                    }
                }
                self.submit(&mut inner, count * PER_PAGE as usize, false)
            }
        };
        if let Err(e) = queued {
            pr_err!(
                "inflate request failed ({:?}); returning its {} pages\n",
                e,
                count
            );
            // Not enqueued, so not subtracted from the managed pages.
            PagePool::release_batch(incoming, false);
            return false;
        }
        let queued = self.shared.time(Phase::InflateHost, start);
        // On the list (and movable) from here; migration cannot touch them
        // before the host's ack because it needs the balloon lock.
        self.pool.enqueue_batch(incoming, adjust);
        let enqueued = self.shared.time(Phase::InflateEnqueue, queued);
        self.settle_inflate(&mut inner, (count * PER_PAGE as usize) as u64);
        self.shared.time(Phase::InflateHost, enqueued);
        true
    }

    /// Inflates by up to [`FILL_BATCHES`] batches towards `target` balloon
    /// pages, re-checking the floor before each. Each batch is allocated
    /// without the balloon lock, then sent and acknowledged with it held for
    /// that one request (one buffer in flight, as C).
    fn fill(&self, target: u64) -> Step {
        let last_oom = self.shared.last_oom_ms.load(Relaxed);
        if last_oom != 0 && !policy::rate_limit_ok(mm::now_ms(), last_oom, policy::OOM_HOLDOFF_MS) {
            // The guest just needed these pages: no re-inflation for a while.
            return Step::Floor;
        }
        // Only the size work inflates: `incoming` is never contended.
        let mut incoming = self.incoming.lock();
        let step = self.fill_batches(&mut incoming, target);
        // What is left of a block the target or the floor cut short goes
        // back now: pages are never held outside the balloon between runs.
        incoming.finish();
        step
    }

    /// The batches of one [`Balloon::fill`].
    fn fill_batches(&self, incoming: &mut Incoming, target: u64) -> Step {
        let mut step = Step::Floor;
        for batch in 0..FILL_BATCHES {
            let (held, has_queues) = {
                let inner = self.inner.lock();
                (inner.held, inner.queues.is_some())
            };
            if !has_queues {
                // Deleted (a failed restore): nothing to do until restored.
                return Step::Done;
            }
            if held >= target {
                break;
            }
            let snap = mm::mem_snapshot();
            let floor = self.floor_pages(&snap, held);
            self.shared.available_pages.store(snap.available, Relaxed);
            // Pages the target still needs, new pages the floor allows
            // (those left from a block were counted when it was taken), and
            // this batch's share.
            let want = (target - held) / PER_PAGE;
            let room = policy::inflate_allowance(snap.available, floor, want);
            let allowed =
                policy::batch_pages(target - held, PAGE_SHIFT).min(incoming.carried() + room);
            if allowed == 0 {
                if batch == 0 {
                    self.note_floor(held, &snap, floor);
                }
                break;
            }
            let count = self.alloc_batch(incoming, allowed, want, room);
            // Any shortfall backs off (C sleeps 200 ms after any allocation
            // failure): a guest near exhaustion must not spin.
            let short = (count as u64) < allowed;
            if count == 0 {
                let mut inner = self.inner.lock();
                inner.failures = inner.failures.saturating_add(1);
                step = Step::NoMemory;
                break;
            }
            if !self.inflate_batch(incoming, count, short) {
                step = Step::NoMemory;
                break;
            }
            if short {
                step = Step::NoMemory;
                break;
            }
            step = Step::Moved;
        }
        step
    }

    /// Waits for the inflate batch in flight and counts it.
    fn settle_inflate(&self, inner: &mut Inner, n: u64) {
        if let Err(e) = self.wait_acked(inner, false) {
            // The queues went away with the batch on them: the host may
            // hold the pages, so they stay in the balloon.
            pr_err!("inflate batch not acknowledged ({:?})\n", e);
        }
        inner.held += n;
        self.shared.batches_inflated.fetch_add(1, Relaxed);
        self.shared.pages_inflated.fetch_add(n, Relaxed);
        // The host sees progress batch by batch, as with C.
        self.write_actual(inner.held);
    }

    /// Deflates by at most one batch of `want` balloon pages (given back
    /// without the host's ack if the device is broken or gone); returns the
    /// balloon pages given back.
    fn leak(&self, inner: &mut Guard<'_, Inner>, want: u64) -> u64 {
        let pages = policy::batch_pages(want.min(inner.held), PAGE_SHIFT);
        let Inner { out, leaving, .. } = &mut **inner;
        let Some(pfns) = out.next_mut() else {
            return 0;
        };
        let start = mm::now_ns();
        let count = self.pool.dequeue_batch(leaving, pages);
        let dequeued = self.shared.time(Phase::DeflateDequeue, start);
        for (slot, page) in leaving.iter().enumerate() {
            if let Some(page) = page {
                self.set_pfns(pfns, slot, page.pfn());
            }
        }
        if count == 0 {
            return 0;
        }
        let n = count * PER_PAGE as usize;
        // The host is told before any page is reused (MUST_TELL_HOST).
        let told = self.tell_host(inner, n, true);
        let answered = self.shared.time(Phase::DeflateHost, dequeued);
        // A broken or deleted device will never hear of them: release them
        // anyway, as C does (its tell_host() cannot fail), or they would be
        // stuck in the balloon for good.
        let gone = told.is_err()
            && inner
                .queues
                .as_ref()
                .map_or(true, |q| q.deflate.is_broken());
        if told.is_ok() || gone {
            PagePool::release_batch(&mut inner.leaving, !self.features.deflate_on_oom);
            self.shared.time(Phase::DeflateRelease, answered);
        } else {
            // Keep pages the host was not told about in the balloon.
            self.pool.requeue_batch(&mut inner.leaving);
        }
        if let Err(e) = told {
            if !gone {
                pr_err!("deflate request failed ({:?})\n", e);
                return 0;
            }
            if log_due(&self.shared.last_broken_log_ms) {
                pr_err!(
                    "the device is broken ({:?}): releasing {} balloon pages without telling it\n",
                    e,
                    count
                );
            }
        }
        inner.held -= n as u64;
        self.shared.batches_deflated.fetch_add(1, Relaxed);
        self.shared.pages_deflated.fetch_add(n as u64, Relaxed);
        n as u64
    }

    /// Queues the size work.
    fn queue_size_work(&self) {
        self.size_work.enqueue(workqueue::system_freezable());
    }

    /// Deflates by one batch towards `target` balloon pages.
    fn deflate_towards(&self, target: u64) -> Step {
        let mut inner = self.inner.lock();
        if inner.queues.is_none() {
            // Deleted (a failed restore): nothing to do until restored.
            return Step::Done;
        }
        let excess = inner.held.saturating_sub(target);
        if self.leak(&mut inner, excess) > 0 {
            Step::Moved
        } else {
            // Pages isolated for migration come back shortly.
            Step::NoMemory
        }
    }

    /// One run of the size work: a few batches towards the target.
    fn update_size(&self) {
        self.process_wakeup_event(WAKEUP_ADJUST);
        let target = self.target();
        self.shared.target.store(target, Relaxed);
        let held = self.inner.lock().held;
        let step = if target > held {
            self.fill(target)
        } else if target < held {
            self.deflate_towards(target)
        } else {
            Step::Done
        };
        let failures = {
            let inner = self.inner.lock();
            if inner.held != held || matches!(step, Step::Done) {
                self.write_actual(inner.held);
            }
            inner.failures
        };
        match step {
            Step::Done => {
                self.finish_wakeup_event();
                return;
            }
            Step::Moved => {}
            Step::Floor => {
                // Held at the floor for as long as the host insists: that
                // must not keep the system from suspending (C has no floor),
                // nor a worker asleep: look again in a while.
                self.finish_wakeup_event();
                if !self.stop.load(Relaxed) {
                    self.size_work.enqueue_delayed(
                        workqueue::system_freezable(),
                        kernel::time::msecs_to_jiffies(FLOOR_RETRY_MS),
                    );
                }
                return;
            }
            Step::NoMemory => mm::msleep(policy::backoff_ms(failures.max(1))),
        }
        if !self.stop.load(Relaxed) {
            self.queue_size_work();
        }
    }

    /// Answers one statistics request from the host.
    fn update_stats(&self) {
        let mut st = self.stats.lock();
        let StatsState { queue, events } = &mut *st;
        let Some(q) = queue.as_mut() else {
            return;
        };
        if !q.take_request() {
            return;
        }
        let values = stats::collect(events);
        for s in &values {
            if let Some(slot) = self.shared.last_stats.get(s.tag as usize) {
                slot.store(s.val, Relaxed);
            }
        }
        self.shared.stats_valid.store(true, Relaxed);
        self.shared.stats_requests.fetch_add(1, Relaxed);
        if let Err(e) = host_request().and_then(|()| q.post(self.dev(), &values)) {
            pr_err!("cannot re-post the stats buffer ({:?})\n", e);
        }
    }

    /// Gives every page back (remove, and freeze in C).
    fn deflate_all(&self) {
        let mut stalls = 0;
        loop {
            let mut inner = self.inner.lock();
            if inner.held == 0 {
                break;
            }
            let held = inner.held;
            if self.leak(&mut inner, held) == 0 {
                drop(inner);
                // Pages isolated by compaction are back within a moment.
                stalls += 1;
                if stalls > 1000 {
                    // The host keeps refusing (the device is not broken, yet
                    // answers with errors): give the pages back anyway; the
                    // pool must not be freed holding them.
                    let mut inner = self.inner.lock();
                    let n = self.pool.release_all(!self.features.deflate_on_oom);
                    pr_err!(
                        "the host refused to deflate the last {} pages; released {} without telling it\n",
                        inner.held,
                        n
                    );
                    inner.held = 0;
                    break;
                }
                mm::msleep(10);
            }
        }
        let held = self.inner.lock().held;
        self.write_actual(held);
    }
}

impl Balloon {
    /// Posts the first stats buffer, as C's `init_vqs()`.
    fn prime_stats(&self) -> Result {
        let mut st = self.stats.lock();
        let StatsState { queue, events } = &mut *st;
        match queue.as_mut() {
            Some(q) => q.post(self.dev(), &stats::collect(events)),
            None => Ok(()),
        }
    }

    /// Resets the device and deletes every queue (remove, freeze).
    fn teardown_queues(&self) {
        let dev = self.dev();
        let reset = dev.reset();
        // A stats interrupt may have queued the work before the reset.
        self.stats_work.cancel_sync();
        let stats_vq = self.stats.lock().queue.take().map(|q| q.release(&reset));
        let report_vq = self.report_vq.lock().take();
        let hint_vq = {
            let mut h = self.hint_vq.lock();
            h.cmd.device_reset(&reset);
            h.vq.take()
        };
        let queues = {
            let mut inner = self.inner.lock();
            inner.out.device_reset(&reset);
            inner.queues.take()
        };
        let (inflate, deflate) = match queues {
            Some(Queues { inflate, deflate }) => (Some(inflate), Some(deflate)),
            None => (None, None),
        };
        dev.delete_queues(
            reset,
            [inflate, deflate, stats_vq, hint_vq, report_vq]
                .into_iter()
                .flatten(),
        );
    }
}

impl Balloon {
    /// The host's latest free page hint command id (re-read after a config
    /// change).
    fn cmd_id_received(&self, h: &Hinting) -> u32 {
        if h.stale.swap(false, Relaxed) {
            let id = self.dev().read_config_le32(offset_of!(
                bindings::virtio_balloon_config,
                __bindgen_anon_1
            ));
            h.received.store(id, Relaxed);
            self.shared.hint_cmd_id.store(id.into(), Relaxed);
        }
        h.received.load(Relaxed)
    }

    /// One run of the hint work (C's `report_free_page_func()`).
    fn hint_round(&self, h: &Hinting) {
        let id = self.cmd_id_received(h);
        if id == bindings::VIRTIO_BALLOON_CMD_ID_DONE {
            // The host is done with the hints: every block goes back.
            self.return_hints();
        } else if id != bindings::VIRTIO_BALLOON_CMD_ID_STOP && id != h.active.load(Relaxed) {
            self.send_hints(h, id);
        }
    }

    /// Hints free blocks to the host until none is left or the command id
    /// changes (a full queue only waits for the host), then sends STOP.
    fn send_hints(&self, h: &Hinting, id: u32) {
        let mut guard = self.hint_vq.lock();
        let HintVq { vq, cmd } = &mut *guard;
        let Some(vq) = vq.as_mut() else {
            return;
        };
        let dev = self.dev();
        // A round always begins with START (as C): if the last round's START
        // buffer is still queued, wait for the device to use it, unless the
        // host moved on to another command id meanwhile.
        loop {
            cmd.drain(vq);
            match cmd.post(vq, hint::START, dev.cpu_to_virtio32(id)) {
                Err(e) if e == EBUSY && self.cmd_id_received(h) == id => mm::msleep(1),
                Err(e) => {
                    pr_err!("cannot send the free page hint start id {} ({:?})\n", id, e);
                    return;
                }
                Ok(()) => break,
            }
        }
        h.active.store(id, Relaxed);
        self.shared.hint_rounds.fetch_add(1, Relaxed);
        while self.cmd_id_received(h) == id {
            cmd.drain(vq);
            if !h.pool.blocks.lock().has_room() {
                break; // every block of memory is hinted
            }
            // One slot always stays free for STOP. A full ring does not end
            // the round (C keeps hinting until the command id changes): the
            // host uses the buffers, then there is room again.
            if vq.num_free() <= 1 {
                mm::msleep(1);
                continue;
            }
            let Some(block) = (!FAIL_ALLOC.should_fail())
                .then(hint::HintBlock::alloc)
                .flatten()
            else {
                break; // no free block left: all of free memory is hinted
            };
            if let Err(e) = host_request().and_then(|()| vq.add_free_page_hint(block.pages())) {
                pr_err!("cannot send a free page hint ({:?})\n", e);
                break;
            }
            let mut blocks = h.pool.blocks.lock();
            if let Err(block) = blocks.push(block) {
                // Cannot happen: room was checked above, under the same
                // single hinting thread. The device never writes it.
                drop(block);
            }
            self.shared
                .hint_blocks_held
                .store(blocks.len() as u64, Relaxed);
            self.shared.hint_blocks_sent.fetch_add(1, Relaxed);
        }
        cmd.drain(vq);
        let stop = dev.cpu_to_virtio32(bindings::VIRTIO_BALLOON_CMD_ID_STOP);
        if let Err(e) = cmd.post(vq, hint::STOP, stop) {
            pr_err!("cannot send the free page hint stop id ({:?})\n", e);
        }
    }

    /// Gives every hinted block back to the allocator.
    fn return_hints(&self) {
        if let Some(h) = &self.hinting {
            let n = h.pool.give_back(u64::MAX);
            self.shared.hint_blocks_returned.fetch_add(n, Relaxed);
        }
    }
}

impl work::WorkItem<HINT_WORK> for Balloon {
    fn run(b: &Self) {
        if let Some(h) = &b.hinting {
            if !b.stop.load(Relaxed) {
                b.hint_round(h);
            }
        }
    }
}

impl reporting::Reporter for Balloon {
    fn report(&self, list: reporting::ReportList<'_>) -> Result {
        let bytes = list.bytes();
        let mut vq = self.report_vq.lock();
        let Some(vq) = vq.as_mut() else {
            // Frozen or being removed: the pages simply stay unreported.
            return Err(ENODEV);
        };
        host_request()?;
        vq.report_and_wait(list, &self.acked)?;
        self.shared.reports.fetch_add(1, Relaxed);
        self.shared.reported_bytes.fetch_add(bytes, Relaxed);
        Ok(())
    }
}

impl work::WorkItem<SIZE_WORK> for Balloon {
    fn run(b: &Self) {
        if !b.stop.load(Relaxed) {
            b.update_size();
        }
    }
}

impl work::WorkItem<STATS_WORK> for Balloon {
    fn run(b: &Self) {
        b.process_wakeup_event(WAKEUP_STATS);
        if !b.stop.load(Relaxed) {
            b.update_stats();
        }
        b.finish_wakeup_event();
    }
}

impl oom::OomHandler for Balloon {
    fn on_oom(&self) -> u64 {
        let start = mm::now_us();
        let mut inner = self.inner.lock();
        let freed = self.leak(&mut inner, OOM_NR_PAGES);
        self.write_actual(inner.held);
        drop(inner);
        if freed > 0 {
            self.shared.oom_deflates.fetch_add(1, Relaxed);
            self.shared.oom_pages.fetch_add(freed, Relaxed);
            self.shared.last_oom_ms.store(mm::now_ms().max(1), Relaxed);
        }
        self.shared
            .oom_max_us
            .fetch_max(mm::now_us().saturating_sub(start), Relaxed);
        freed / PER_PAGE
    }
}

impl balloon_compaction::Migrate for Balloon {
    fn migrate(&self, m: Migration<'_>) -> Result {
        // Never wait for the balloon lock here: its holder may be the
        // allocation that triggered this compaction.
        let Some(mut inner) = self.inner.try_lock() else {
            self.shared.migrations_busy.fetch_add(1, Relaxed);
            return Err(EAGAIN);
        };
        if inner.queues.is_none() || inner.out.in_flight() {
            self.shared.migrations_busy.fetch_add(1, Relaxed);
            return Err(EAGAIN);
        }
        let (new_pfn, old_pfn) = (m.new_pfn(), m.old_pfn());
        // The commit point: from here the new page is in the balloon and the
        // old one leaves it, so the migration succeeds whatever the host
        // says (as C, whose tell_host() cannot fail). Reporting an error now
        // would make the core put the old page back on the balloon list.
        let migrated = m.insert_new(!self.features.deflate_on_oom);
        if let Err(e) = self.tell_host_one(&mut inner, new_pfn, false) {
            pr_err!(
                "migration: inflate request for the new page failed ({:?})\n",
                e
            );
        }
        if let Err(e) = self.tell_host_one(&mut inner, old_pfn, true) {
            pr_err!(
                "migration: deflate request for the old page failed ({:?})\n",
                e
            );
        }
        drop(inner);
        drop(migrated);
        self.shared.migrations.fetch_add(1, Relaxed);
        Ok(())
    }
}

struct BalloonDriver;

impl virtio::Driver for BalloonDriver {
    type Data = Balloon;
    const NAME: &'static CStr = c_str!("balloon_rs");
    const DEVICE_ID: u32 = bindings::VIRTIO_ID_BALLOON;
    const FEATURES: &'static [u32] = &[
        bindings::VIRTIO_BALLOON_F_MUST_TELL_HOST,
        bindings::VIRTIO_BALLOON_F_STATS_VQ,
        bindings::VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
        bindings::VIRTIO_BALLOON_F_FREE_PAGE_HINT,
        bindings::VIRTIO_BALLOON_F_PAGE_POISON,
        bindings::VIRTIO_BALLOON_F_REPORTING,
    ];

    fn validate(dev: &mut virtio::Validation<'_>) -> Result {
        // Page poison only matters if freed pages have a known content; and
        // reporting without telling the host that content could let it
        // change free pages the kernel expects poisoned (as C).
        if !mm::want_init_on_free() && !mm::page_poisoning_enabled() {
            dev.clear(bindings::VIRTIO_BALLOON_F_PAGE_POISON);
        } else if !dev.offered(bindings::VIRTIO_BALLOON_F_PAGE_POISON) {
            dev.clear(bindings::VIRTIO_BALLOON_F_REPORTING);
        }
        // As C: no indirect descriptors (no allocation when adding buffers),
        // and no platform DMA translation for the PFNs.
        dev.clear(bindings::VIRTIO_RING_F_INDIRECT_DESC);
        dev.clear(bindings::VIRTIO_F_ACCESS_PLATFORM);
        Ok(())
    }

    fn probe(dev: DeviceHandle) -> Result<Pin<KBox<Balloon>>> {
        let d = dev.get();
        let features = Features {
            stats: d.has_feature(bindings::VIRTIO_BALLOON_F_STATS_VQ),
            deflate_on_oom: d.has_feature(bindings::VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
            reporting: d.has_feature(bindings::VIRTIO_BALLOON_F_REPORTING),
            hint: d.has_feature(bindings::VIRTIO_BALLOON_F_FREE_PAGE_HINT),
        };
        if d.has_feature(bindings::VIRTIO_BALLOON_F_PAGE_POISON) {
            // The value the host must write back into balloon pages before
            // the guest reuses them: zeroes with init_on_free, else the
            // poison byte (single byte, so no byte swapping), as C.
            let poison = if mm::want_init_on_free() {
                0
            } else {
                u32::from_ne_bytes([bindings::PAGE_POISON as u8; 4])
            };
            d.write_config_le32(
                offset_of!(bindings::virtio_balloon_config, poison_val),
                poison,
            );
        }
        let target = policy::round_target(
            d.read_config_le32(offset_of!(bindings::virtio_balloon_config, num_pages)),
            PAGE_SHIFT,
        );
        probe_step("state")?;
        let shared = Arc::new(Shared::default(), GFP_KERNEL)?;
        let mut bits = 0u64;
        // Only bits of our feature table may be tested (virtio BUGs otherwise).
        for &bit in Self::FEATURES {
            if d.has_feature(bit) {
                bits |= 1 << bit;
            }
        }
        shared.features.store(bits, Relaxed);
        shared.target.store(target, Relaxed);
        probe_step("debugfs name")?;
        let name = CString::try_from_fmt(fmt!("virtio{}", d.index()))?;
        let debugfs = debugfs::DebugFile::new(&DEBUGFS, &name, c_str!("status"), shared.clone())
            .inspect_err(|_| pr_warn!("no debugfs view (debugfs unavailable)\n"))
            .ok();
        probe_step("event buffer")?;
        let events = KBox::new([0; mm::NR_VM_EVENTS], GFP_KERNEL)?;
        let hinting = if features.hint {
            // Room to hint all of memory, reserved now: no allocation while
            // hinting.
            let capacity = (mm::mem_snapshot().total / hint::BLOCK_PAGES) as usize + 1;
            probe_step("hint stack")?;
            let stack = hint::HintStack::new(capacity)?;
            let blocks = Mutex::new(
                stack,
                c_str!("balloon_rs::hint_blocks"),
                kernel::static_lock_class!(),
            );
            let pool_shared = shared.clone();
            probe_step("hint pool")?;
            let pool = Arc::pin_init(
                pin_init!(HintPool {
                    blocks <- blocks,
                    shared: pool_shared,
                }),
                GFP_KERNEL,
            )?;
            let stop = bindings::VIRTIO_BALLOON_CMD_ID_STOP;
            probe_step("hint shrinker and workqueue")?;
            Some(Hinting {
                _shrinker: shrinker::ShrinkerBuilder::new(c_str!("balloon_rs-hint"))?
                    .register::<HintPool>(pool.clone()),
                pool,
                wq: OwnedQueue::new(
                    c_str!("balloon_rs-wq"),
                    WqFlags::FREEZABLE | WqFlags::CPU_INTENSIVE,
                    0,
                )?,
                stale: AtomicBool::new(false),
                received: core::sync::atomic::AtomicU32::new(stop),
                active: core::sync::atomic::AtomicU32::new(stop),
            })
        } else {
            None
        };
        probe_step("hint command buffers")?;
        let cmd = hint::CmdIds::new()?;
        probe_step("request buffers")?;
        let out = OutBufs::new()?;
        probe_step("driver data")?;
        let uninit = KBox::<Balloon>::new_uninit(GFP_KERNEL)?;
        probe_step("queues")?;
        // Everything that can fail is done: from here to the end of probe
        // nothing does, so the queues found now are either handed to the
        // driver data or (on a failure inside `find_queues`) deleted there,
        // never left behind (C's `goto out_del_vqs`).
        let AllQueues {
            main,
            stats: stats_queue,
            hint: hint_queue,
            report,
        } = find_queues(d, features)?;
        pr_info!(
            "probed virtio{}: num_pages={} ({} MiB), features: must_tell_host={} stats_vq={} deflate_on_oom={} free_page_hint={} page_poison={} reporting={}\n",
            d.index(),
            target,
            policy::balloon_pages_to_mib(target),
            d.has_feature(bindings::VIRTIO_BALLOON_F_MUST_TELL_HOST),
            features.stats,
            features.deflate_on_oom,
            features.hint,
            d.has_feature(bindings::VIRTIO_BALLOON_F_PAGE_POISON),
            features.reporting
        );
        // The initialisers are built first: nested in `pin_init!` they
        // exceed the macro recursion limit.
        let size_work = new_delayed_work!("balloon_rs::size_work");
        let stats_work = new_delayed_work!("balloon_rs::stats_work");
        let hint_work = new_delayed_work!("balloon_rs::hint_work");
        let inner = Mutex::new(
            Inner {
                queues: Some(main),
                held: 0,
                out,
                leaving: EMPTY_BATCH,
                failures: 0,
            },
            c_str!("balloon_rs::inner"),
            kernel::static_lock_class!(),
        );
        let incoming = Mutex::new(
            Incoming::new(),
            c_str!("balloon_rs::incoming"),
            kernel::static_lock_class!(),
        );
        let stats = Mutex::new(
            StatsState {
                queue: stats_queue,
                events,
            },
            c_str!("balloon_rs::stats"),
            kernel::static_lock_class!(),
        );
        let report_vq = Mutex::new(
            report,
            c_str!("balloon_rs::report_vq"),
            kernel::static_lock_class!(),
        );
        let hint_vq = Mutex::new(
            HintVq {
                vq: hint_queue,
                cmd,
            },
            c_str!("balloon_rs::hint_vq"),
            kernel::static_lock_class!(),
        );
        let acked = wait::WaitQueue::new(c_str!("balloon_rs::acked"), kernel::static_lock_class!());
        let wakeup = IrqSpinLock::new(
            Wakeup::default(),
            c_str!("balloon_rs::wakeup"),
            kernel::static_lock_class!(),
        );
        let init = pin_init!(Balloon {
            size_work <- size_work,
            stats_work <- stats_work,
            hint_work <- hint_work,
            hinting,
            oom <- oom::OomNotifier::new(OOM_NOTIFY_PRIORITY),
            reporting <- reporting::PageReporting::new(),
            debugfs,
            dev,
            features,
            shared,
            stop: AtomicBool::new(false),
            pool <- PagePool::new(),
            incoming <- incoming,
            inner <- inner,
            stats <- stats,
            report_vq <- report_vq,
            hint_vq <- hint_vq,
            acked <- acked,
            wakeup <- wakeup,
        });
        match uninit.write_pin_init(init) {
            Ok(balloon) => Ok(balloon),
            Err(never) => match never {},
        }
    }

    fn ready(b: &Balloon) -> Result {
        // As C: the balloon cannot wake the system, but it handles the
        // transport's wakeup events with a wakeup source of its own.
        b.dev().set_wakeup_capable();
        b.pool.enable_migration::<Balloon>();
        probe_step("stats request")?;
        b.prime_stats()?;
        if b.features.deflate_on_oom {
            probe_step("OOM notifier")?;
            b.oom.register()?;
        }
        b.dev().ready();
        if b.features.reporting {
            probe_step("page reporting")?;
            b.reporting.register()?;
        }
        if b.target() != 0 {
            b.queue_size_work();
        }
        Ok(())
    }

    fn freeze(b: &Balloon) -> Result {
        // The freezable workqueue is already frozen: no size or stats work
        // runs. Give every page back and delete the queues, as C.
        b.deflate_all();
        b.return_hints();
        b.teardown_queues();
        b.shared.freezes.fetch_add(1, Relaxed);
        Ok(())
    }

    fn restore(b: &Balloon) -> Result {
        let AllQueues {
            main,
            stats,
            hint,
            report,
        } = find_queues(b.dev(), b.features)?;
        b.inner.lock().queues = Some(main);
        b.stats.lock().queue = stats;
        b.hint_vq.lock().vq = hint;
        *b.report_vq.lock() = report;
        b.prime_stats()?;
        b.dev().ready();
        let held = b.inner.lock().held;
        if b.target() != held {
            b.queue_size_work();
        }
        b.write_actual(held);
        b.shared.restores.fetch_add(1, Relaxed);
        Ok(())
    }

    fn config_changed(b: &Balloon) {
        b.shared.config_changes.fetch_add(1, Relaxed);
        if !b.stop.load(Relaxed) {
            b.start_wakeup_event(WAKEUP_ADJUST);
            // Pending already if a re-check at the floor is due: the new
            // target is read then (within a second, as when the worker
            // slept at the floor).
            b.queue_size_work();
            if let Some(h) = &b.hinting {
                // Read the command id again; queue a round unless one is
                // already due (C's config_read_bitmap).
                if !h.stale.swap(true, Relaxed) {
                    b.hint_work.enqueue(&h.wq);
                }
            }
        }
    }

    fn vq_interrupt(b: &Balloon, queue: usize) {
        if queue == VQ_STATS {
            if !b.stop.load(Relaxed) {
                b.start_wakeup_event(WAKEUP_STATS);
                b.stats_work.enqueue(workqueue::system_freezable());
            }
        } else {
            b.acked.wake_up();
        }
    }

    fn remove(b: Pin<KBox<Balloon>>) {
        b.reporting.unregister();
        b.oom.unregister();
        b.stop.store(true, Relaxed);
        b.size_work.cancel_sync();
        b.stats_work.cancel_sync();
        b.hint_work.cancel_sync();
        // No work runs any more: nothing may keep the system awake.
        b.wakeup.lock().pending = 0;
        b.finish_wakeup_event();
        let held = b.inner.lock().held;
        b.deflate_all();
        b.return_hints();
        b.teardown_queues();
        pr_info!(
            "removed virtio{}: gave back {} MiB\n",
            b.dev().index(),
            policy::balloon_pages_to_mib(held)
        );
    }
}

// `alias: virtio:d00000005v*`: udev loads the module for the device.
module_virtio_device_table!(
    BALLOON_RS_ID_TABLE,
    <BalloonDriver as virtio::Driver>::DEVICE_ID
);

/// Fields drop in order: the devices go (and their debugfs directories)
/// before the module's directory.
struct BalloonModule {
    _driver: virtio::Registration<BalloonDriver>,
    _debugfs: Option<debugfs::RootGuard>,
}

impl kernel::Module for BalloonModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let debugfs = DEBUGFS
            .create(c_str!("balloon_rs"))
            .inspect_err(|_| pr_warn!("no debugfs directory (debugfs unavailable)\n"))
            .ok();
        if debugfs.is_some() {
            for (attr, name) in [
                (&FAIL_REQUEST, c_str!("fail_request")),
                (&FAIL_ALLOC, c_str!("fail_alloc")),
                (&FAIL_PROBE, c_str!("fail_probe")),
            ] {
                // Without CONFIG_FAULT_INJECTION_DEBUG_FS there are none.
                let _ = attr.register(name, &DEBUGFS);
            }
        }
        Ok(Self {
            _driver: virtio::Registration::new(module)?,
            _debugfs: debugfs,
        })
    }
}
