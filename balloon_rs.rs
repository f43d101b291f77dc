// SPDX-License-Identifier: GPL-2.0

//! balloon_rs: a virtio memory balloon driver in Rust.
//!
//! The Rust counterpart of [`drivers/virtio/virtio_balloon.c`]. This version
//! binds the virtio balloon device, sets up its queues and follows the host's
//! target (`num_pages`); see README.md for which features it implements.
//!
//! Everything `unsafe` lives in the small wrapper modules ([`virtio`],
//! [`wait`]); the balloon logic here is safe Rust, and its arithmetic is in
//! [`policy`], which is unit-tested on the host.

use core::mem::offset_of;
use kernel::{bindings, c_str, new_mutex, prelude::*, sync::Mutex};

mod policy;
mod virtio;
mod wait;

use virtio::{DeviceHandle, QueueInfo, Virtqueue};

module! {
    type: BalloonModule,
    name: "balloon_rs",
    author: "balloon_rs developers",
    description: "Virtio memory balloon driver written in Rust",
    license: "GPL",
}

/// Guest page shift; the balloon counts 4 KiB pages.
const PAGE_SHIFT: u32 = bindings::PAGE_SHIFT;

/// Queue indices, in `find_vqs` order (as in C's `enum virtio_balloon_vq`).
const VQ_INFLATE: usize = 0;
const VQ_DEFLATE: usize = 1;
const VQ_STATS: usize = 2;
const VQ_COUNT: usize = 3;

/// The queues the balloon sends requests on.
struct Queues {
    inflate: Virtqueue,
    deflate: Virtqueue,
    stats: Option<Virtqueue>,
}

/// Per-device state.
#[pin_data]
struct Balloon {
    dev: DeviceHandle,
    /// Balloon pages (4 KiB) held; guarded with the queues.
    #[pin]
    inner: Mutex<Inner>,
    #[pin]
    acked: wait::WaitQueue,
}

struct Inner {
    /// `None` once the queues are deleted (remove, freeze).
    queues: Option<Queues>,
    held: u64,
}

impl Balloon {
    /// The host's requested balloon size, in 4 KiB pages.
    fn host_target(&self) -> u32 {
        self.dev
            .get()
            .read_config_le32(offset_of!(bindings::virtio_balloon_config, num_pages))
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
    ];

    fn probe(dev: DeviceHandle) -> Result<Pin<KBox<Balloon>>> {
        let d = dev.get();
        let stats = d.has_feature(bindings::VIRTIO_BALLOON_F_STATS_VQ);
        let [inflate, deflate, stats_vq] = d.find_vqs::<VQ_COUNT>(&[
            QueueInfo {
                name: Some(c_str!("inflate")),
                callback: virtio::vq_callback::<Self, VQ_INFLATE>(),
            },
            QueueInfo {
                name: Some(c_str!("deflate")),
                callback: virtio::vq_callback::<Self, VQ_DEFLATE>(),
            },
            QueueInfo {
                name: stats.then_some(c_str!("stats")),
                callback: virtio::vq_callback::<Self, VQ_STATS>(),
            },
        ])?;
        let (Some(inflate), Some(deflate)) = (inflate, deflate) else {
            // find_vqs() always sets up named queues; this cannot happen.
            return Err(ENODEV);
        };
        let target = {
            let num_pages =
                d.read_config_le32(offset_of!(bindings::virtio_balloon_config, num_pages));
            policy::round_target(num_pages, PAGE_SHIFT)
        };
        pr_info!(
            "probed virtio{}: num_pages={} ({} MiB), features: must_tell_host={} stats_vq={}\n",
            d.index(),
            target,
            policy::balloon_pages_to_mib(target),
            d.has_feature(bindings::VIRTIO_BALLOON_F_MUST_TELL_HOST),
            stats
        );
        let queues = Queues {
            inflate,
            deflate,
            stats: stats_vq,
        };
        KBox::pin_init(
            pin_init!(Balloon {
                dev,
                inner <- new_mutex!(Inner { queues: Some(queues), held: 0 }, "balloon_rs::inner"),
                acked <- wait::WaitQueue::new(
                    c_str!("balloon_rs::acked"),
                    kernel::static_lock_class!()
                ),
            }),
            GFP_KERNEL,
        )
    }

    fn ready(b: &Balloon) {
        b.dev.get().ready();
    }

    fn config_changed(b: &Balloon) {
        let target = b.host_target();
        let held = b.inner.lock().held;
        pr_info!(
            "host target now {} pages ({} MiB), holding {}\n",
            target,
            policy::balloon_pages_to_mib(target.into()),
            held
        );
    }

    fn vq_interrupt(b: &Balloon, _queue: usize) {
        b.acked.wake_up();
    }

    fn remove(b: Pin<KBox<Balloon>>) {
        let dev = b.dev.get();
        let Some(Queues {
            inflate,
            deflate,
            stats,
        }) = b.inner.lock().queues.take()
        else {
            return;
        };
        pr_info!(
            "removing virtio{}: queue sizes inflate={} deflate={} stats={}\n",
            dev.index(),
            inflate.size(),
            deflate.size(),
            stats.as_ref().map_or(0, |s| s.size())
        );
        dev.reset_and_delete_queues([Some(inflate), Some(deflate), stats].into_iter().flatten());
        pr_info!("removed virtio{}\n", dev.index());
    }
}

struct BalloonModule {
    _driver: virtio::Registration<BalloonDriver>,
}

impl kernel::Module for BalloonModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        Ok(Self {
            _driver: virtio::Registration::new(module)?,
        })
    }
}
