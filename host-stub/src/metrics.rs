//! A Prometheus text endpoint: the latest tick's host and per-VM gauges at
//! `http://ADDR/metrics`, served from a thread while a run goes on.

use crate::policy::HostState;
use crate::timeline::{Sample, VmSample, VmStatus};
use crate::{Error, Result};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads one gauge of a VM (None: not measured, not exported).
type VmGauge = dyn Fn(&VmSample) -> Option<f64>;

/// The latest sample, shared with the server thread.
pub type Latest = Arc<Mutex<Option<Sample>>>;

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// Prometheus text exposition of one sample.
pub fn render(s: &Sample) -> String {
    let mut o = String::new();
    let h = &s.host;
    let one = |v: f64| vec![(String::new(), v)];
    gauge(
        &mut o,
        "balloon_host_capacity_mib",
        "Memory the guests may consume.",
        &one(h.capacity as f64),
    );
    gauge(
        &mut o,
        "balloon_host_consumed_mib",
        "Guest memory the host holds (resident - shared + zswap pool).",
        &one(h.consumed as f64),
    );
    gauge(
        &mut o,
        "balloon_host_free_mib",
        "Capacity minus consumption.",
        &one(h.free),
    );
    let states: Vec<(String, f64)> = HostState::ALL
        .iter()
        .map(|st| {
            (
                format!("state=\"{}\"", st.name()),
                f64::from(u8::from(*st == h.state)),
            )
        })
        .collect();
    gauge(
        &mut o,
        "balloon_host_state",
        "1 for the host's current memory state.",
        &states,
    );
    if let Some(k) = &h.ksm {
        gauge(
            &mut o,
            "balloon_host_ksm_saving_mib",
            "KSM pages_sharing.",
            &one(k.sharing),
        );
    }
    if let Some(p) = h.zswap_pool {
        gauge(
            &mut o,
            "balloon_host_zswap_pool_mib",
            "zswap pool size.",
            &one(p),
        );
    }
    let label = |v: &VmSample| format!("vm=\"{}\"", v.name.replace(['"', '\\', '\n'], "_"));
    let per_vm = |f: &VmGauge| -> Vec<(String, f64)> {
        s.vms
            .iter()
            .filter_map(|v| f(v).map(|x| (label(v), x)))
            .collect()
    };
    let series: [(&str, &str, &VmGauge); 11] = [
        ("balloon_vm_configured_mib", "Configured guest RAM.", &|v| {
            Some(v.configured as f64)
        }),
        ("balloon_vm_resident_mib", "QEMU resident memory.", &|v| {
            Some(v.resident as f64)
        }),
        (
            "balloon_vm_balloon_mib",
            "Balloon size (configured - actual).",
            &|v| Some(v.balloon as f64),
        ),
        ("balloon_vm_target_mib", "Guest size asked for.", &|v| {
            Some(v.target as f64)
        }),
        (
            "balloon_vm_shared_mib",
            "KSM saving attributed to the VM.",
            &|v| Some(v.shared),
        ),
        (
            "balloon_vm_compressed_mib",
            "Swapped memory held by zswap.",
            &|v| Some(v.compressed),
        ),
        (
            "balloon_vm_swapped_mib",
            "Swapped memory not in zswap.",
            &|v| Some(v.swapped),
        ),
        (
            "balloon_vm_guest_unused_mib",
            "Guest free memory (dommemstat unused).",
            &|v| v.guest.get("unused").copied(),
        ),
        (
            "balloon_vm_guest_usable_mib",
            "Guest available memory (dommemstat usable).",
            &|v| v.guest.get("usable").copied(),
        ),
        (
            "balloon_vm_cgroup_limit_mib",
            "Memory cgroup limit in force.",
            &|v| v.cgroup_limit.map(|l| l as f64),
        ),
        (
            "balloon_vm_lost",
            "1 if the VM's QEMU exited or its QMP dropped.",
            &|v| Some(f64::from(u8::from(v.status == VmStatus::Lost))),
        ),
    ];
    for (name, help, f) in series {
        gauge(&mut o, name, help, &per_vm(f));
    }
    o
}

fn serve_one(mut stream: TcpStream, latest: &Latest) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" {
        let body = latest
            .lock()
            .map(|g| g.as_ref().map(render).unwrap_or_default())
            .unwrap_or_default();
        ("200 OK", body)
    } else {
        ("404 Not Found", "try /metrics\n".to_string())
    };
    write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Starts serving `latest` on `addr` in a background thread; returns the
/// bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, latest: Latest) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .map_err(Error::io(format!("binding the metrics endpoint {addr}")))?;
    let bound = listener
        .local_addr()
        .map_err(Error::io("reading the metrics endpoint's address"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = serve_one(stream, &latest) {
                tracing::debug!("metrics request: {e}");
            }
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{HostSample, VmSample};

    fn sample() -> Sample {
        Sample {
            t: 1.0,
            host: HostSample {
                capacity: 1024,
                consumed: 900,
                free: 124.0,
                state: HostState::Soft,
                ksm: None,
                zswap_pool: Some(3.0),
                zswapped: Some(8.0),
            },
            vms: vec![VmSample {
                name: "web".into(),
                status: VmStatus::Running,
                configured: 512,
                resident: 300,
                balloon: 64,
                target: 448,
                actual: 448,
                shared: 10.0,
                compressed: 8.0,
                swapped: 0.0,
                cgroup_limit: None,
                guest: [("usable".to_string(), 200.0)].into_iter().collect(),
            }],
            events: vec![],
            alerts: vec![],
            second_host: None,
        }
    }

    #[test]
    fn renders_gauges_with_labels() {
        let t = render(&sample());
        assert!(t.contains("balloon_host_state{state=\"soft\"} 1"), "{t}");
        assert!(t.contains("balloon_host_state{state=\"high\"} 0"));
        assert!(t.contains("balloon_vm_balloon_mib{vm=\"web\"} 64"));
        assert!(t.contains("balloon_vm_guest_usable_mib{vm=\"web\"} 200"));
        assert!(
            !t.contains("balloon_vm_guest_unused_mib{"),
            "absent stats are not exported as 0"
        );
        assert!(t.contains("# TYPE balloon_host_free_mib gauge"));
    }

    #[test]
    fn serves_over_http() {
        let latest: Latest = Arc::new(Mutex::new(Some(sample())));
        let addr = serve("127.0.0.1:0".parse().unwrap(), latest).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            std::io::Read::read_to_string(&mut s, &mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.0 200") && ok.contains("balloon_vm_target_mib{vm=\"web\"} 448"),
            "{ok}"
        );
        assert!(get("/").starts_with("HTTP/1.0 404"));
    }
}
