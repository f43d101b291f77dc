//! Helpers shared by the host-stub tests that run real guests.

/// Every host setting a run may touch, as text.
pub fn host_settings() -> String {
    let mut s = String::new();
    for f in [
        "/sys/kernel/mm/ksm/run",
        "/sys/kernel/mm/ksm/pages_to_scan",
        "/sys/kernel/mm/ksm/sleep_millisecs",
        "/sys/module/zswap/parameters/enabled",
        "/sys/module/zswap/parameters/max_pool_percent",
        "/proc/swaps",
    ] {
        s.push_str(&format!(
            "{f}: {}\n",
            std::fs::read_to_string(f).unwrap_or_default().trim()
        ));
    }
    let own = host_stub::mechanisms::CgroupFs::detect().map(|c| c.own().to_path_buf());
    if let Ok(own) = own {
        let mut children: Vec<String> = std::fs::read_dir(&own)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        children.sort();
        s.push_str(&format!("cgroups under {}: {children:?}\n", own.display()));
    }
    s
}
