//! A memory workload: allocate N MiB, write every page with a chosen content,
//! hold it, optionally verify it, free it.
//!
//! Contents, chosen for the host's reclamation tiers:
//! - `zeros`: every page zero (KSM's zero-page merging);
//! - `dup`: every page the same non-zero 4 KiB pattern (page sharing);
//! - `text`: varied English-like text, which compresses about 3:1 (zswap);
//! - `random`: incompressible, unique pages (only swapping helps).

use std::io::Write;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;

/// What to write into every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Zeros,
    Dup,
    Text,
    Random,
}

impl std::str::FromStr for Content {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zeros" => Ok(Self::Zeros),
            "dup" => Ok(Self::Dup),
            "text" => Ok(Self::Text),
            "random" => Ok(Self::Random),
            other => Err(format!(
                "unknown content '{other}' (zeros, dup, text, random)"
            )),
        }
    }
}

/// Command-line options of `balloon-guest workload`.
#[derive(Debug)]
pub struct Options {
    pub mib: usize,
    pub content: Content,
    /// Seconds to hold the memory; 0 holds until the process is killed.
    pub hold: u64,
    /// `--hold stdin`: hold until standard input ends (the parent that
    /// started the workload says when), then verify and free.
    pub hold_stdin: bool,
    pub verify: bool,
    /// Mixed into `text` and `random` pages, so that guests given different
    /// seeds write different pages (KSM cannot merge them across guests).
    pub seed: u64,
    /// After the first fill, rewrite every page this many more times and
    /// report each pass's throughput (a fixed working set's speed).
    pub passes: u32,
    /// After the fill, give one hole in every this many back to the kernel,
    /// leaving the guest's free memory in scattered holes; 0 keeps every
    /// page.
    pub free_one_in: usize,
    /// The size of those holes in KiB (a multiple of 4): 4 leaves single
    /// free pages; larger holes cost fewer `munmap`s (each is a VMA
    /// boundary, slow on a debug kernel).
    pub hole_kib: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut opts = Options {
            mib: 0,
            content: Content::Random,
            hold: 0,
            hold_stdin: false,
            verify: false,
            seed: 0,
            passes: 0,
            free_one_in: 0,
            hole_kib: 4,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--mib" => opts.mib = value("--mib")?.parse().map_err(|e| format!("--mib: {e}"))?,
                "--content" => opts.content = value("--content")?.parse()?,
                "--hold" => match value("--hold")?.as_str() {
                    "stdin" => opts.hold_stdin = true,
                    secs => opts.hold = secs.parse().map_err(|e| format!("--hold: {e}"))?,
                },
                "--verify" => opts.verify = true,
                "--passes" => {
                    opts.passes = value("--passes")?
                        .parse()
                        .map_err(|e| format!("--passes: {e}"))?
                }
                "--free-one-in" => {
                    opts.free_one_in = value("--free-one-in")?
                        .parse()
                        .map_err(|e| format!("--free-one-in: {e}"))?
                }
                "--hole-kib" => {
                    opts.hole_kib = value("--hole-kib")?
                        .parse()
                        .map_err(|e| format!("--hole-kib: {e}"))?
                }
                "--seed" => {
                    opts.seed = value("--seed")?
                        .parse()
                        .map_err(|e| format!("--seed: {e}"))?
                }
                other => return Err(format!("unknown option '{other}'")),
            }
        }
        if opts.mib == 0 {
            return Err("--mib must be at least 1".into());
        }
        if opts.free_one_in == 1 || (opts.free_one_in > 0 && (opts.verify || opts.passes > 0)) {
            return Err("--free-one-in needs 2 or more, without --verify or --passes".into());
        }
        if opts.hole_kib == 0 || !opts.hole_kib.is_multiple_of(4) {
            return Err("--hole-kib must be a positive multiple of 4".into());
        }
        Ok(opts)
    }
}

/// The byte at `offset` of page `page` for `content` (deterministic, so that
/// `--verify` can recompute it).
fn fill_page(content: Content, page: usize, seed: u64, buf: &mut [u8]) {
    let page = (page as u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32)) as usize;
    match content {
        Content::Zeros => buf.fill(0),
        Content::Dup => {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (i.wrapping_mul(31) ^ 0x5a) as u8;
            }
        }
        Content::Text => {
            const WORDS: [&str; 16] = [
                "balloon", "memory", "guest", "host", "page", "reclaim", "kernel", "virtio",
                "inflate", "deflate", "pressure", "share", "compress", "swap", "target", "actual",
            ];
            let mut seed = page as u64 ^ 0x9e37_79b9_7f4a_7c15;
            let mut pos = 0;
            while pos < buf.len() {
                seed = xorshift(seed);
                let word = WORDS[(seed % 16) as usize].as_bytes();
                let n = word.len().min(buf.len() - pos);
                buf[pos..pos + n].copy_from_slice(&word[..n]);
                pos += n;
                if pos < buf.len() {
                    buf[pos] = if seed.is_multiple_of(11) { b'\n' } else { b' ' };
                    pos += 1;
                }
            }
        }
        Content::Random => {
            let mut seed = (page as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
            for chunk in buf.chunks_mut(8) {
                seed = xorshift(seed);
                chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
            }
        }
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Runs the workload; prints progress lines the harness reads.
pub fn run(opts: &Options) -> Result<(), String> {
    if opts.free_one_in > 0 {
        return run_scattered(opts);
    }
    let len = opts.mib * MIB;
    let mut mem: Vec<u8> = Vec::new();
    mem.try_reserve_exact(len)
        .map_err(|e| format!("cannot reserve {} MiB: {e}", opts.mib))?;
    // `resize` writes every byte (the allocation came from malloc, not
    // calloc), so every page is faulted in even for `zeros`.
    mem.resize(len, 0);
    let start = Instant::now();
    for (page, chunk) in mem.chunks_mut(PAGE).enumerate() {
        fill_page(opts.content, page, opts.seed, chunk);
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "workload: touched {} MiB ({:?}) in {:.0} ms, {:.0} MiB/s",
        opts.mib,
        opts.content,
        secs * 1e3,
        opts.mib as f64 / secs
    );
    let _ = std::io::stdout().flush();
    let mut seed = opts.seed;
    if opts.passes > 0 {
        let mut rates = Vec::new();
        for pass in 0..opts.passes {
            let t = Instant::now();
            // A different seed per pass: every byte really changes.
            seed = opts.seed ^ u64::from(pass + 1);
            for (page, chunk) in mem.chunks_mut(PAGE).enumerate() {
                fill_page(opts.content, page, seed, chunk);
            }
            rates.push(opts.mib as f64 / t.elapsed().as_secs_f64().max(1e-9));
        }
        let text: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "workload: passes MiB/s {} median {:.1}",
            text.join(" "),
            rates[rates.len() / 2]
        );
        let _ = std::io::stdout().flush();
    }

    if opts.hold_stdin {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    } else if opts.hold == 0 {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    } else {
        std::thread::sleep(Duration::from_secs(opts.hold));
    }

    if opts.verify {
        let mut expect = vec![0u8; PAGE];
        for (page, chunk) in mem.chunks(PAGE).enumerate() {
            fill_page(opts.content, page, seed, &mut expect[..chunk.len()]);
            if chunk != &expect[..chunk.len()] {
                return Err(format!("verify: page {page} changed"));
            }
        }
        println!("workload: verified {} MiB", opts.mib);
    }
    drop(mem);
    println!("workload: freed {} MiB", opts.mib);
    Ok(())
}

/// Pages between two progress lines of the scattered workload (64 MiB).
const PROGRESS_PAGES: usize = 64 * MIB / PAGE;

/// A progress line (`workload: progress ...`): on a slow guest the harness
/// waits as long as these keep coming.
fn progress(what: std::fmt::Arguments) {
    println!("workload: progress {what}");
    let _ = std::io::stdout().flush();
}

/// An anonymous private mapping, unmapped on drop (holes included:
/// `munmap` of a range with unmapped parts is fine).
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Self, String> {
        // SAFETY: A fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self { ptr: p.cast(), len })
    }

    /// Gives one `hole` bytes (whole pages) in every `n * hole` back to the
    /// kernel (`munmap`: the test kernel has no `madvise`), after which the
    /// mapping must not be read as a whole again; returns the pages freed.
    fn free_one_in(&mut self, n: usize, hole: usize) -> Result<usize, String> {
        let mut freed = 0;
        for offset in (0..self.len.saturating_sub(hole - 1)).step_by(hole * n) {
            // SAFETY: Whole pages inside our own mapping; nothing refers to
            // them (no slice of the mapping is alive).
            if unsafe { libc::munmap(self.ptr.add(offset).cast(), hole) } != 0 {
                return Err(format!("munmap: {}", std::io::Error::last_os_error()));
            }
            freed += hole / PAGE;
            if freed % PROGRESS_PAGES == 0 {
                progress(format_args!("freed {} MiB in holes", freed * PAGE / MIB));
            }
        }
        Ok(freed)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: Our mapping (or what is left of it).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// `--free-one-in N`: fills the memory, then gives one page in `N` back,
/// leaving the guest's free memory in scattered 4 KiB holes, and holds the
/// rest. The "touched" line comes after the holes are made.
fn run_scattered(opts: &Options) -> Result<(), String> {
    let len = opts.mib * MIB;
    let mut map = Mapping::new(len)?;
    // Every page becomes a VMA boundary: make room for them (root only;
    // the default of 65530 covers about 500 MiB at one in two).
    let hole = opts.hole_kib * 1024;
    let vmas = len / hole / opts.free_one_in * 2 + 1024;
    let _ = std::fs::write("/proc/sys/vm/max_map_count", vmas.max(65530).to_string());
    let start = Instant::now();
    {
        // SAFETY: The whole mapping, readable and writable, ours alone.
        let mem = unsafe { std::slice::from_raw_parts_mut(map.ptr, len) };
        for (page, chunk) in mem.chunks_mut(PAGE).enumerate() {
            fill_page(opts.content, page, opts.seed, chunk);
            if (page + 1) % PROGRESS_PAGES == 0 {
                progress(format_args!("wrote {} MiB", (page + 1) * PAGE / MIB));
            }
        }
    }
    progress(format_args!("wrote {} MiB, making holes", opts.mib));
    let freed = map.free_one_in(opts.free_one_in, hole)?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "workload: touched {} MiB ({:?}) in {:.0} ms, then freed {} MiB in scattered {} KiB holes (one in {})",
        opts.mib,
        opts.content,
        secs * 1e3,
        freed * PAGE / MIB,
        opts.hole_kib,
        opts.free_one_in
    );
    let _ = std::io::stdout().flush();
    if opts.hold_stdin {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    } else if opts.hold == 0 {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    } else {
        std::thread::sleep(Duration::from_secs(opts.hold));
    }
    drop(map);
    println!("workload: freed {} MiB", opts.mib);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dup_pages_are_identical_and_random_pages_differ() {
        let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
        fill_page(Content::Dup, 1, 0, &mut a);
        fill_page(Content::Dup, 2, 0, &mut b);
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != 0));
        fill_page(Content::Random, 1, 0, &mut a);
        fill_page(Content::Random, 2, 0, &mut b);
        assert_ne!(a, b);
        // The same page of two guests with different seeds differs; the
        // repeated page does not.
        fill_page(Content::Random, 1, 1, &mut b);
        assert_ne!(a, b);
        fill_page(Content::Text, 1, 0, &mut a);
        fill_page(Content::Text, 1, 2, &mut b);
        assert_ne!(a, b);
        fill_page(Content::Dup, 1, 0, &mut a);
        fill_page(Content::Dup, 1, 3, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn text_is_printable() {
        let mut a = vec![0u8; PAGE];
        fill_page(Content::Text, 7, 0, &mut a);
        assert!(a
            .iter()
            .all(|&c| c == b' ' || c == b'\n' || c.is_ascii_lowercase()));
    }

    #[test]
    fn options_parse_and_reject() {
        let args: Vec<String> = ["--mib", "64", "--content", "text", "--hold", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = Options::parse(&args).unwrap();
        assert_eq!(
            (o.mib, o.content, o.hold, o.seed),
            (64, Content::Text, 5, 0)
        );
        let o = Options::parse(&["--mib".into(), "1".into(), "--seed".into(), "7".into()]).unwrap();
        assert_eq!(o.seed, 7);
        let o =
            Options::parse(&["--mib".into(), "1".into(), "--passes".into(), "3".into()]).unwrap();
        assert_eq!(o.passes, 3);
        assert!(
            Options::parse(&["--mib".into(), "1".into(), "--seed".into(), "x".into()]).is_err()
        );
        assert!(Options::parse(&["--mib".to_string()]).is_err());
        assert!(Options::parse(&["--mib".into(), "0".into()]).is_err());
        assert!(Options::parse(&["--content".into(), "x".into()]).is_err());
        let o = Options::parse(&[
            "--mib".into(),
            "1".into(),
            "--free-one-in".into(),
            "2".into(),
        ])
        .unwrap();
        assert_eq!(o.free_one_in, 2);
        assert!(Options::parse(&[
            "--mib".into(),
            "1".into(),
            "--free-one-in".into(),
            "1".into()
        ])
        .is_err());
        let verify: Vec<String> = ["--mib", "1", "--free-one-in", "2", "--verify"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(Options::parse(&verify).is_err());
        let odd: Vec<String> = ["--mib", "1", "--free-one-in", "2", "--hole-kib", "6"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(Options::parse(&odd).is_err());
    }

    #[test]
    fn free_one_in_unmaps_every_nth_page() {
        let mut map = Mapping::new(64 * PAGE).unwrap();
        // SAFETY: The whole mapping, ours.
        unsafe { std::slice::from_raw_parts_mut(map.ptr, 64 * PAGE) }.fill(0xa5);
        assert_eq!(map.free_one_in(2, PAGE).unwrap(), 32);
        // Page 1 is still there; page 0 is gone (mincore fails on it).
        // SAFETY: Page 1 of our mapping was not unmapped.
        assert_eq!(unsafe { *map.ptr.add(PAGE) }, 0xa5);
        let mut vec = [0u8; 1];
        // SAFETY: mincore only reads the page tables of the given range.
        let r = unsafe { libc::mincore(map.ptr.cast(), PAGE, vec.as_mut_ptr()) };
        assert_eq!(r, -1, "page 0 is still mapped");
        // Larger holes: 16 KiB in every 32 KiB, half the pages.
        let mut big = Mapping::new(64 * PAGE).unwrap();
        assert_eq!(big.free_one_in(2, 4 * PAGE).unwrap(), 32);
    }
}
