//! Prometheus metrics: the latest tick's host and per-VM gauges, encoded by
//! `prometheus-client` (OpenMetrics text, label values escaped, sizes in
//! bytes as the naming convention asks) and served at `http://ADDR/metrics`
//! by `tiny_http` from worker threads while a run goes on.

use crate::engine::policy::HostState;
use crate::record::timeline::{Sample, VmSample, VmStatus};
use crate::{Error, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// The latest sample, shared with the server threads.
pub type Latest = Arc<Mutex<Option<Sample>>>;

/// OpenMetrics' content type, as `prometheus-client` encodes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Threads answering scrapes (a slow client does not hold the others up).
const WORKERS: usize = 2;

/// A floating-point gauge.
type F64Gauge = Gauge<f64, AtomicU64>;

/// Bytes in a MiB: the stub counts in MiB, Prometheus in bytes.
const MIB: f64 = 1024.0 * 1024.0;

/// The `vm` label of per-VM series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabel {
    vm: String,
}

/// The `state` label of `balloon_host_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// Reads one value of a VM (None: not measured, not exported).
type VmValue = fn(&VmSample) -> Option<f64>;

/// The per-VM series: name (without unit), help, whether the value is a
/// size in MiB (exported in bytes), and how to read it.
const VM_SERIES: [(&str, &str, bool, VmValue); 11] = [
    (
        "balloon_vm_configured",
        "Configured guest RAM.",
        true,
        |v| Some(v.configured as f64),
    ),
    ("balloon_vm_resident", "QEMU resident memory.", true, |v| {
        Some(v.resident as f64)
    }),
    (
        "balloon_vm_balloon",
        "Balloon size (configured - actual).",
        true,
        |v| Some(v.balloon as f64),
    ),
    ("balloon_vm_target", "Guest size asked for.", true, |v| {
        Some(v.target as f64)
    }),
    (
        "balloon_vm_shared",
        "KSM saving attributed to the VM.",
        true,
        |v| Some(v.shared),
    ),
    (
        "balloon_vm_compressed",
        "Swapped memory held by zswap.",
        true,
        |v| Some(v.compressed),
    ),
    (
        "balloon_vm_swapped",
        "Swapped memory not in zswap.",
        true,
        |v| Some(v.swapped),
    ),
    (
        "balloon_vm_guest_unused",
        "Guest free memory (dommemstat unused).",
        true,
        |v| v.guest.get("unused").copied(),
    ),
    (
        "balloon_vm_guest_usable",
        "Guest available memory (dommemstat usable).",
        true,
        |v| v.guest.get("usable").copied(),
    ),
    (
        "balloon_vm_cgroup_limit",
        "Memory cgroup limit in force.",
        true,
        |v| v.cgroup_limit.map(|l| l as f64),
    ),
    (
        "balloon_vm_lost",
        "1 if the VM's QEMU exited or its QMP dropped.",
        false,
        |v| Some(f64::from(u8::from(v.status == VmStatus::Lost))),
    ),
];

/// Registers one unlabelled gauge set to `value`.
fn host_gauge(registry: &mut Registry, name: &str, help: &str, mib: f64) {
    let g = F64Gauge::default();
    g.set(mib * MIB);
    registry.register_with_unit(name, help, Unit::Bytes, g);
}

/// The registry of one sample: every gauge set to the sample's value.
pub fn registry(s: &Sample) -> Registry {
    let mut r = Registry::default();
    let h = &s.host;
    host_gauge(
        &mut r,
        "balloon_host_capacity",
        "Memory the guests may consume.",
        h.capacity as f64,
    );
    host_gauge(
        &mut r,
        "balloon_host_consumed",
        "Guest memory the host holds (resident - shared + zswap pool).",
        h.consumed as f64,
    );
    host_gauge(
        &mut r,
        "balloon_host_free",
        "Capacity minus consumption.",
        h.free,
    );
    let states = Family::<StateLabel, F64Gauge>::default();
    for st in HostState::ALL {
        states
            .get_or_create(&StateLabel {
                state: st.name().to_string(),
            })
            .set(f64::from(u8::from(st == h.state)));
    }
    r.register(
        "balloon_host_state",
        "1 for the host's current memory state.",
        states,
    );
    if let Some(k) = &h.ksm {
        host_gauge(
            &mut r,
            "balloon_host_ksm_saving",
            "KSM pages_sharing.",
            k.sharing,
        );
    }
    if let Some(p) = h.zswap_pool {
        host_gauge(&mut r, "balloon_host_zswap_pool", "zswap pool size.", p);
    }
    for (name, help, bytes, read) in VM_SERIES {
        let family = Family::<VmLabel, F64Gauge>::default();
        for v in &s.vms {
            if let Some(x) = read(v) {
                let label = VmLabel { vm: v.name.clone() };
                family
                    .get_or_create(&label)
                    .set(if bytes { x * MIB } else { x });
            }
        }
        if bytes {
            r.register_with_unit(name, help, Unit::Bytes, family);
        } else {
            r.register(name, help, family);
        }
    }
    r
}

/// OpenMetrics text of one sample.
pub fn render(s: &Sample) -> Result<String> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry(s))
        .map_err(|e| Error::Invalid(format!("encoding metrics: {e}")))?;
    Ok(out)
}

/// The answer to one request: (status, content type, body).
fn answer(url: &str, latest: &Latest) -> (u16, &'static str, String) {
    if url.split('?').next() != Some("/metrics") {
        return (404, "text/plain", "try /metrics\n".to_string());
    }
    let sample = latest.lock().map(|g| g.clone()).unwrap_or_default();
    match sample.as_ref().map(render) {
        // Before the first tick: an empty exposition, not an error.
        None => (200, CONTENT_TYPE, "# EOF\n".to_string()),
        Some(Ok(body)) => (200, CONTENT_TYPE, body),
        Some(Err(e)) => (500, "text/plain", format!("{e}\n")),
    }
}

/// Starts serving `latest` on `addr` from worker threads; returns the bound
/// address (port 0 picks one).
pub fn serve(addr: SocketAddr, latest: Latest) -> Result<SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Error::Host(format!("binding the metrics endpoint {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Host(format!("the metrics endpoint {addr} has no IP address")))?;
    let server = Arc::new(server);
    for _ in 0..WORKERS {
        let (server, latest) = (server.clone(), latest.clone());
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let (status, kind, body) = answer(request.url(), &latest);
                let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", kind) {
                    response.add_header(h);
                }
                if let Err(e) = request.respond(response) {
                    tracing::debug!("metrics request: {e}");
                }
            }
        });
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::timeline::{fixtures, VmSample};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn vm(name: &str) -> VmSample {
        VmSample {
            resident: 300,
            balloon: 64,
            target: 448,
            actual: 448,
            shared: 10.0,
            compressed: 8.0,
            guest: [("usable".to_string(), 200.0)].into_iter().collect(),
            ..fixtures::vm(name)
        }
    }

    fn sample() -> Sample {
        let mut s = fixtures::sample(1.0, HostState::Soft, vec![vm("web")]);
        s.host.zswap_pool = Some(3.0);
        s.host.zswapped = Some(8.0);
        s
    }

    /// The value of the series line `series` (name and labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_gauges_in_bytes_with_labels() {
        let t = render(&sample()).unwrap();
        assert_eq!(
            value(&t, "balloon_host_state{state=\"soft\"}"),
            Some(1.0),
            "{t}"
        );
        assert_eq!(value(&t, "balloon_host_state{state=\"high\"}"), Some(0.0));
        assert_eq!(
            value(&t, "balloon_vm_balloon_bytes{vm=\"web\"}"),
            Some(64.0 * MIB)
        );
        assert_eq!(
            value(&t, "balloon_vm_guest_usable_bytes{vm=\"web\"}"),
            Some(200.0 * MIB)
        );
        assert_eq!(value(&t, "balloon_host_capacity_bytes"), Some(1024.0 * MIB));
        assert_eq!(value(&t, "balloon_vm_lost{vm=\"web\"}"), Some(0.0));
        assert!(
            !t.contains("balloon_vm_guest_unused_bytes{"),
            "absent stats are not exported as 0"
        );
        assert!(!t.contains("balloon_host_ksm"), "KSM off: no KSM gauge");
        assert!(t.contains("# TYPE balloon_host_free_bytes gauge"), "{t}");
        assert!(t.contains("# UNIT balloon_host_free_bytes bytes"), "{t}");
        assert!(t.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped_not_mangled() {
        let mut s = sample();
        s.vms = vec![vm("a\"b\\c"), vm("a_b_c")];
        let t = render(&s).unwrap();
        // Two VMs whose names differ only in those characters stay two series.
        assert_eq!(
            value(&t, "balloon_vm_target_bytes{vm=\"a\\\"b\\\\c\"}"),
            Some(448.0 * MIB),
            "{t}"
        );
        assert_eq!(
            value(&t, "balloon_vm_target_bytes{vm=\"a_b_c\"}"),
            Some(448.0 * MIB)
        );
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_over_http_while_a_client_stalls() {
        let latest: Latest = Arc::new(Mutex::new(None));
        let addr = serve("127.0.0.1:0".parse().unwrap(), latest.clone()).unwrap();
        assert!(
            get(addr, "/metrics").ends_with("# EOF\n"),
            "before the first tick"
        );
        // A client that connects and sends nothing does not block a scrape.
        let _stalled = TcpStream::connect(addr).unwrap();
        *latest.lock().unwrap() = Some(sample());
        let ok = get(addr, "/metrics");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("openmetrics-text"), "{ok}");
        let body = ok.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            value(body, "balloon_vm_target_bytes{vm=\"web\"}"),
            Some(448.0 * MIB),
            "{ok}"
        );
        assert!(get(addr, "/").starts_with("HTTP/1.1 404"));
    }
}
