//! Scanning a guest console log for kernel trouble.

/// Markers that fail a guest test wherever they appear in the console log.
pub const BAD_MARKERS: [&str; 6] = [
    "WARNING:",
    "BUG:",
    "Oops",
    "Call Trace",
    "Kernel panic",
    "kernel BUG",
];

/// The lines of `log` that contain one of `markers`, each with its (1-based)
/// line number.
fn marked<'a>(log: &'a str, markers: &'a [&str]) -> impl Iterator<Item = (usize, &'a str)> {
    log.lines()
        .enumerate()
        .filter(|(_, line)| markers.iter().any(|m| line.contains(m)))
        .map(|(i, line)| (i + 1, line))
}

/// Lines of `log` that contain a bad marker, each with its line number.
pub fn kernel_problems(log: &str) -> Vec<(usize, &str)> {
    marked(log, &BAD_MARKERS).collect()
}

/// Markers of a device the guest cannot use: ACPI failing to evaluate a
/// method (the debug kernel under TCG timed out in the `_PRT` loop), a PCI
/// interrupt without a route, a driver's probe failing. A guest showing one
/// cannot pass a balloon test, so the harness fails at once with the line
/// instead of timing out on a target minutes later.
pub const DEVICE_MARKERS: [&str; 4] = [
    "ACPI Error",
    "no GSI",
    "can't derive routing for PCI INT",
    "failed with error",
];

/// The first line of `log` that shows a device the guest cannot use.
pub fn device_problem(log: &str) -> Option<(usize, &str)> {
    marked(log, &DEVICE_MARKERS).next()
}

/// The last `n` lines of `log`.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_marker_with_line_numbers() {
        let log = "[0.1] ok\n[0.2] WARNING: CPU: 0 PID: 1 at mm/x.c:1\n[0.3] Call Trace:\n\
                   [0.4] BUG: unable to handle page fault\n[0.5] Oops: 0002\n[0.6] Kernel panic - not syncing";
        let found = kernel_problems(log);
        assert_eq!(
            found.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn clean_log_has_no_problems() {
        let log = "[0.1] balloon_rs: probed virtio0: num_pages=32768\n[0.2] warning-free\n";
        assert!(kernel_problems(log).is_empty());
    }

    #[test]
    fn finds_the_first_device_problem() {
        let log = "[0.1] ok\n[30.5] ACPI Error: Aborting method \\_SB.PCI0._PRT due to previous error (AE_AML_LOOP_TIMEOUT)\n\
                   [30.6] virtio-pci 0000:00:02.0: PCI INT A: no GSI\n";
        assert_eq!(device_problem(log).map(|(n, _)| n), Some(2));
        let probe =
            "[1.0] balloon_rs virtio0: probe with driver balloon_rs failed with error -12\n";
        assert_eq!(device_problem(probe).map(|(n, _)| n), Some(1));
        assert_eq!(
            device_problem("[0.1] virtio-pci 0000:00:02.0: enabling device\n"),
            None
        );
    }

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail("a\nb\nc\nd", 2), "c\nd");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
