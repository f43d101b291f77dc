//! The live table: per VM configured, resident, balloon, shared,
//! compressed, swapped, guest free and state; a header line for the host.

use crate::record::timeline::{Sample, VmStatus};
use crate::render::text_table;
use std::fmt::Write;

/// The table for one sample, as text.
pub fn render(s: &Sample, name: &str) -> String {
    let h = &s.host;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "balloon-host {name}  t={:>5.0}s  host {} MiB used of {} MiB, free {:.0} MiB, state {}{}{}",
        s.t,
        h.consumed,
        h.capacity,
        h.free,
        h.state.name().to_uppercase(),
        h.ksm
            .as_ref()
            .map(|k| format!(
                ", KSM {} saving {:.0} MiB",
                if k.run == 1 { "on" } else { "off" },
                k.sharing
            ))
            .unwrap_or_default(),
        h.zswap_pool
            .map(|p| format!(", zswap pool {p:.0} MiB"))
            .unwrap_or_default(),
    );
    if let Some(b) = &s.second_host {
        let _ = writeln!(
            out,
            "  (that is host a)  host b {} MiB used of {} MiB, free {:.0} MiB, state {}; on b: {}",
            b.host.consumed,
            b.host.capacity,
            b.host.free,
            b.host.state.name().to_uppercase(),
            if b.vms.is_empty() {
                "-".to_string()
            } else {
                b.vms.join(", ")
            }
        );
    }
    let mut t = text_table::new(&[
        "VM", "config", "rss", "balloon", "target", "shared", "compr", "swap", "free", "avail",
        "state",
    ]);
    text_table::left(&mut t, 10);
    for v in &s.vms {
        let g = |k: &str| {
            v.guest
                .get(k)
                .map_or("-".to_string(), |x| format!("{x:.0}"))
        };
        let state = match v.status {
            VmStatus::Booting => "booting".to_string(),
            VmStatus::Lost => "LOST".to_string(),
            VmStatus::Running => match v.cgroup_limit {
                Some(l) => format!("running, cgroup limit {l} MiB"),
                None => "running".to_string(),
            },
        };
        t.add_row([
            v.name.clone(),
            v.configured.to_string(),
            v.resident.to_string(),
            v.balloon.to_string(),
            v.target.to_string(),
            format!("{:.0}", v.shared),
            format!("{:.0}", v.compressed),
            format!("{:.0}", v.swapped),
            g("unused"),
            g("usable"),
            state,
        ]);
    }
    out.push_str(&text_table::render(&t));
    for e in &s.events {
        let _ = writeln!(out, "  * {e}");
    }
    for a in &s.alerts {
        let _ = writeln!(out, "  ! {a}");
    }
    out
}

/// Prints the table: redrawn in place on a terminal, appended otherwise.
pub fn show(s: &Sample, name: &str, live: bool) {
    let text = render(s, name);
    if live {
        print!("\x1b[H\x1b[2J{text}");
    } else {
        print!("{text}");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
}
