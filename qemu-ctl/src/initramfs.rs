//! A `newc` cpio archive writer and the test guest's initramfs.

use crate::{Artifacts, Error, Result};
use std::path::Path;

/// One archive entry.
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// An in-memory `newc` cpio archive, as the kernel unpacks into rootfs.
#[derive(Default)]
pub struct Cpio {
    entries: Vec<(String, Entry)>,
}

impl Cpio {
    /// Adds a directory.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.entries.push((path.into(), Entry::Dir));
        self
    }

    /// Adds a regular file with permission bits `mode`.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> &mut Self {
        self.entries.push((path.into(), Entry::File { data, mode }));
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entries
            .push((path.into(), Entry::Symlink(target.into())));
        self
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.entries
            .push((path.into(), Entry::CharDev { major, minor }));
        self
    }

    /// The archive's bytes, with the `TRAILER!!!` entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir => (0o040755, &[], (0, 0)),
                Entry::File { data, mode } => (0o100000 | mode, data, (0, 0)),
                Entry::Symlink(target) => (0o120777, target.as_bytes(), (0, 0)),
                Entry::CharDev { major, minor } => (0o020600, &[], (*major, *minor)),
            };
            let nlink = if matches!(entry, Entry::Dir) { 2 } else { 1 };
            write_entry(&mut out, ino as u32 + 1, path, mode, nlink, data, rdev);
        }
        write_entry(&mut out, 0, "TRAILER!!!", 0, 1, &[], (0, 0));
        out
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    name: &str,
    mode: u32,
    nlink: u32,
    data: &[u8],
    rdev: (u32, u32),
) {
    let name_len = name.len() + 1;
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name_len as u32,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The guest's `/init`: mount the usual filesystems, open the agent's serial
/// port raw, and keep the agent running.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs -o size=95% tmpfs /tmp
stty -F /dev/ttyS1 raw -echo
if grep -q balloon_rs.interactive /proc/cmdline; then
    echo "balloon_rs-guest: modules in /lib/modules: $(ls /lib/modules)"
    (while true; do setsid cttyhack sh -l; done) &
fi
echo "balloon_rs-guest: agent starting"
while true; do
    /bin/balloon-guest agent /dev/ttyS1
    echo "balloon_rs-guest: agent exited $?, restarting"
    sleep 1
done
"#;

/// Builds the test initramfs: busybox, `/init`, the agent binary and both
/// balloon modules under `/lib/modules/`.
pub fn build(artifacts: &Artifacts) -> Result<Vec<u8>> {
    let read = |p: &Path| std::fs::read(p).map_err(Error::io(format!("reading {}", p.display())));
    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/modules",
        "root",
        "etc",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 5, 1)
        .char_dev("dev/null", 1, 3)
        .file("bin/busybox", read(&artifacts.busybox)?, 0o755)
        .symlink("bin/sh", "busybox")
        .file("init", INIT.as_bytes().to_vec(), 0o755)
        .file("bin/balloon-guest", read(&artifacts.guest_bin)?, 0o755);
    for driver in [crate::Driver::BalloonRs, crate::Driver::C] {
        let path = artifacts.module(driver);
        cpio.file(
            &format!("lib/modules/{}", driver.file_name()),
            read(path)?,
            0o644,
        );
    }
    Ok(cpio.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.dir("bin")
            .file("bin/x", b"hello".to_vec(), 0o755)
            .symlink("bin/y", "x");
        let bytes = c.to_bytes();
        assert_eq!(&bytes[..6], b"070701");
        assert!(bytes.len().is_multiple_of(4));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("bin/x\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's size field (7th header field) is 5.
        let at = text.find("bin/x\0").unwrap() - 110;
        assert_eq!(&text[at + 6 + 6 * 8..at + 6 + 7 * 8], "00000005");
    }

    #[test]
    fn host_cpio_lists_what_we_wrote() {
        // Cross-check with the real cpio tool (`make setup` installs it).
        let mut c = Cpio::default();
        c.dir("d")
            .file("d/f", vec![1, 2, 3], 0o644)
            .char_dev("d/console", 5, 1);
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (Debian package cpio) must be installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&c.to_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d\nd/f\nd/console\n");
    }
}
