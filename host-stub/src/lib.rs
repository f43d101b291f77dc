//! balloon-host: the host-side memory manager (work in progress, issue 5).
//!
//! It will reuse the harness's QEMU/QMP layer (`qemu_test::qmp`); for now it
//! offers the one-shot `status` of a running guest by its QMP socket.

use qemu_test::qmp::Qmp;
use std::path::Path;
use std::time::Duration;

/// One line of `balloon-host status`: the guest's size as QEMU reports it.
pub fn status_line(qmp_socket: &Path) -> qemu_test::Result<String> {
    let mut qmp = Qmp::connect(
        qmp_socket,
        Duration::from_secs(5),
        qemu_test::guest::BALLOON_ID,
    )?;
    let actual = qmp.guest_size()?;
    Ok(format!(
        "{}: guest size {} MiB",
        qmp_socket.display(),
        actual / qemu_test::MIB
    ))
}
