//! Scenario files: the host, its tiers and policy, and the guests with
//! their workload schedules, in TOML.
//!
//! Unknown keys, wrong types, negative numbers and missing fields are
//! rejected by the parser with the line; sizes and relations between fields
//! are checked afterwards and the error names the field and its line too.

use crate::engine::policy::{PolicyConfig, Thresholds, Tiers};
use crate::{size, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Largest guest the stub will start, MiB.
pub const MAX_GUEST_MIB: u64 = 64 * 1024;
/// Largest host capacity a scenario may claim, MiB (1 PiB).
pub const MAX_CAPACITY_MIB: u64 = 1 << 30;
/// Longest run, seconds (a week).
pub const MAX_DURATION_S: f64 = 7.0 * 24.0 * 3600.0;
/// Most guests in one scenario.
pub const MAX_GUESTS: usize = 64;

/// Which balloon driver the guest loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GuestDriver {
    /// balloon_rs.ko.
    #[default]
    BalloonRs,
    /// The in-tree C virtio_balloon.ko.
    C,
    /// No balloon driver (the device is there, nothing binds it).
    None,
}

/// What a workload writes (the guest binary's `--content`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// Zero pages.
    Zeros,
    /// One repeated page (KSM merges it).
    Dup,
    /// Compressible text, different per guest.
    Text,
    /// Incompressible bytes, different per guest.
    Random,
}

impl Content {
    /// The guest binary's name for it.
    pub fn arg(self) -> &'static str {
        match self {
            Content::Zeros => "zeros",
            Content::Dup => "dup",
            Content::Text => "text",
            Content::Random => "random",
        }
    }
}

/// One workload run in a guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Seconds after the policy loop starts.
    pub at: f64,
    /// Memory to allocate and write, MiB (or a size: "64M").
    #[serde(deserialize_with = "size::de_mib")]
    pub mib: u64,
    /// What to write.
    #[serde(default = "default_content")]
    pub content: Content,
    /// Seconds to hold it before freeing it.
    pub hold: f64,
}

fn default_content() -> Content {
    Content::Text
}

/// One guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// Short name: letters, digits, `-` and `_`.
    pub name: String,
    /// Configured RAM, MiB (or a size: "1G"); in an attach config, read
    /// from the running guest when left out.
    #[serde(default, deserialize_with = "size::de_mib")]
    pub memory_mib: u64,
    /// Never balloon below this, MiB (default 0).
    #[serde(default, deserialize_with = "size::de_mib")]
    pub reservation_mib: u64,
    /// Never let the guest have more, MiB (default: memory_mib).
    #[serde(default, deserialize_with = "size::de_opt_mib")]
    pub limit_mib: Option<u64>,
    /// Relative weight when memory is scarce (default 1000).
    #[serde(default = "default_shares")]
    pub shares: u32,
    /// Balloon driver in the guest.
    #[serde(default)]
    pub driver: GuestDriver,
    /// Turn on the device's free page reporting.
    #[serde(default)]
    pub free_page_reporting: bool,
    /// Let the guest take balloon pages back instead of OOM-killing
    /// (the device's deflate-on-oom).
    #[serde(default)]
    pub deflate_on_oom: bool,
    /// vCPUs (default 1).
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// The host it starts on: "a" (`[host]`, the default) or "b"
    /// (`[second_host]`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Workloads, in any order.
    #[serde(default)]
    pub workload: Vec<Spanned<Workload>>,
    /// Attach config only: the running QEMU's QMP socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qmp: Option<PathBuf>,
}

fn default_shares() -> u32 {
    1000
}

fn default_cpus() -> u32 {
    1
}

fn default_host() -> String {
    "a".into()
}

impl GuestSpec {
    /// The limit, defaulting to the configured size.
    pub fn limit(&self) -> u64 {
        self.limit_mib.unwrap_or(self.memory_mib)
    }
}

/// The host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Memory the guests may consume, MiB (or a size: "2G").
    #[serde(deserialize_with = "size::de_mib")]
    pub capacity_mib: u64,
    /// ESXi's minFree, MiB (default: 6 % of capacity, at least 16).
    #[serde(default, deserialize_with = "size::de_opt_mib")]
    pub min_free_mib: Option<u64>,
    /// Swap file for the compression and swapping tiers, MiB (default 1024).
    #[serde(default = "default_swap", deserialize_with = "size::de_mib")]
    pub swap_file_mib: u64,
    /// zswap's pool limit while the run lasts, percent of the host's RAM
    /// (`max_pool_percent`, 1–100; default: the host's own). What does not
    /// fit goes to the swap file: the compression tier's cache size, as
    /// ESXi caps its compression cache.
    #[serde(default)]
    pub zswap_max_pool_percent: Option<u32>,
    /// State thresholds in percent of min_free.
    #[serde(default)]
    pub thresholds: Thresholds,
}

fn default_swap() -> u64 {
    1024
}

impl HostSpec {
    /// minFree with its default.
    pub fn min_free(&self) -> u64 {
        min_free_or_default(self.min_free_mib, self.capacity_mib)
    }
}

/// minFree: as set, or 6 % of the capacity, at least 16 MiB.
fn min_free_or_default(min_free_mib: Option<u64>, capacity_mib: u64) -> u64 {
    min_free_mib.unwrap_or_else(|| (capacity_mib * 6 / 100).max(16))
}

/// A second host ("b"): another memory budget on this machine, with the
/// thresholds of `[host]`. When one host stays in soft or worse and the
/// other has room, the stub live-migrates a guest across (QEMU's own
/// migration over loopback), as DRS moves a VM between hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondHost {
    /// Memory the guests on it may consume, MiB (or a size: "2G").
    #[serde(deserialize_with = "size::de_mib")]
    pub capacity_mib: u64,
    /// minFree, MiB (default: 6 % of capacity, at least 16).
    #[serde(default, deserialize_with = "size::de_opt_mib")]
    pub min_free_mib: Option<u64>,
    /// Ticks a host must stay in soft or worse before a guest moves away
    /// (default 3).
    #[serde(default = "default_sustain")]
    pub sustain_ticks: u32,
    /// Seconds after a migration before the next one (default 30): no
    /// ping-pong.
    #[serde(default = "default_cooldown")]
    pub cooldown_s: f64,
}

fn default_sustain() -> u32 {
    3
}

fn default_cooldown() -> f64 {
    30.0
}

impl SecondHost {
    /// minFree with its default.
    pub fn min_free(&self) -> u64 {
        min_free_or_default(self.min_free_mib, self.capacity_mib)
    }
}

/// A scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (the output directory under `out/`).
    pub name: String,
    /// Seconds the policy loop runs once the guests are up (default: until
    /// stopped, as a daemon runs).
    #[serde(default = "until_stopped")]
    pub duration: f64,
    /// Seconds between policy ticks (default 2).
    #[serde(default = "default_tick")]
    pub tick: f64,
    /// The host.
    pub host: HostSpec,
    /// A second host that guests can be live-migrated to (default: none).
    pub second_host: Option<SecondHost>,
    /// Tiers the stub may use (default: all).
    #[serde(default)]
    pub tiers: Tiers,
    /// Policy tunables (default: balloon_rs's own policy).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Alert thresholds.
    #[serde(default)]
    pub alerts: crate::engine::alerts::AlertConfig,
    /// Guests.
    pub guest: Vec<Spanned<GuestSpec>>,
    /// Attach config only: manage libvirt domains (the guests' names) on
    /// this connection, e.g. `qemu:///system`, instead of QMP sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt: Option<String>,
}

fn default_tick() -> f64 {
    2.0
}

fn until_stopped() -> f64 {
    f64::INFINITY
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line of `key = ` inside the byte range `span` of `text`, else the
/// range's first line.
fn key_line(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let end = span.end.min(text.len());
    let start = span.start.min(end);
    let mut offset = start;
    for line in text[start..end].split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return line_at(text, offset);
        }
        offset += line.len();
    }
    line_at(text, start)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let s = Self::parse_unchecked(text, path)?;
        s.check(text, path)?;
        Ok(s)
    }

    /// Checks what the parser cannot: sizes, relations between fields;
    /// errors name the field and its line in `text`.
    pub fn check(&self, text: &str, path: &Path) -> Result<()> {
        self.validate(text).map_err(|message| Error::Scenario {
            path: PathBuf::from(path),
            message,
        })
    }

    /// Parses scenario text without [`Scenario::check`] (an attach config
    /// fills the guests' sizes from the guests first).
    pub fn parse_unchecked(text: &str, path: &Path) -> Result<Self> {
        let err = |message: String| Error::Scenario {
            path: PathBuf::from(path),
            message,
        };
        let s: Scenario = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(r) => {
                    let l = line_at(text, r.start);
                    let src = text.lines().nth(l - 1).unwrap_or("").trim();
                    let src: String = src.chars().take(80).collect();
                    err(format!("line {l} ({src}): {msg}"))
                }
                None => err(msg),
            }
        })?;
        Ok(s)
    }

    fn validate(&self, text: &str) -> std::result::Result<(), String> {
        let top = 0..text.len();
        let at = |key: &str| key_line(text, top.clone(), key);
        let host_span = text.find("[host]").map_or(top.clone(), |i| i..text.len());
        let host_at = |key: &str| key_line(text, host_span.clone(), key);
        if !valid_name(&self.name) {
            return Err(format!(
                "line {}: name {:?}: use 1-32 letters, digits, '-' or '_'",
                at("name"),
                self.name
            ));
        }
        let bounded =
            self.duration.is_finite() && self.duration > 0.0 && self.duration <= MAX_DURATION_S;
        if !(bounded || self.duration == f64::INFINITY) {
            return Err(format!(
                "line {}: duration {}: must be > 0 and <= {MAX_DURATION_S} seconds (leave it out to run until stopped)",
                at("duration"),
                self.duration
            ));
        }
        if !(self.tick.is_finite() && self.tick >= 0.2 && self.tick <= 3600.0) {
            return Err(format!(
                "line {}: tick {}: must be between 0.2 and 3600 seconds",
                at("tick"),
                self.tick
            ));
        }
        let h = &self.host;
        if h.capacity_mib < 64 || h.capacity_mib > MAX_CAPACITY_MIB {
            return Err(format!(
                "line {}: host.capacity_mib {}: must be between 64 and {MAX_CAPACITY_MIB}",
                host_at("capacity_mib"),
                h.capacity_mib
            ));
        }
        if h.min_free() == 0 || h.min_free() > h.capacity_mib {
            return Err(format!(
                "line {}: host.min_free_mib {}: must be between 1 and host.capacity_mib ({})",
                host_at("min_free_mib"),
                h.min_free(),
                h.capacity_mib
            ));
        }
        if h.swap_file_mib > 64 * 1024 {
            return Err(format!(
                "line {}: host.swap_file_mib {}: at most 65536",
                host_at("swap_file_mib"),
                h.swap_file_mib
            ));
        }
        if let Some(p) = h.zswap_max_pool_percent.filter(|p| !(1..=100).contains(p)) {
            return Err(format!(
                "line {}: host.zswap_max_pool_percent {p}: between 1 and 100",
                host_at("zswap_max_pool_percent"),
            ));
        }
        if let Some(m) = h.thresholds.problem() {
            return Err(format!("line {}: host.thresholds: {m}", host_at("high")));
        }
        if let Some(b) = &self.second_host {
            let span = text
                .find("[second_host]")
                .map_or(top.clone(), |i| i..text.len());
            let bl = |key: &str| key_line(text, span.clone(), key);
            if b.capacity_mib < 64 || b.capacity_mib > MAX_CAPACITY_MIB {
                return Err(format!(
                    "line {}: second_host.capacity_mib {}: must be between 64 and {MAX_CAPACITY_MIB}",
                    bl("capacity_mib"),
                    b.capacity_mib
                ));
            }
            if b.min_free() == 0 || b.min_free() > b.capacity_mib {
                return Err(format!(
                    "line {}: second_host.min_free_mib {}: must be between 1 and second_host.capacity_mib ({})",
                    bl("min_free_mib"),
                    b.min_free(),
                    b.capacity_mib
                ));
            }
            if !(1..=1000).contains(&b.sustain_ticks) {
                return Err(format!(
                    "line {}: second_host.sustain_ticks {}: must be between 1 and 1000",
                    bl("sustain_ticks"),
                    b.sustain_ticks
                ));
            }
            if !(b.cooldown_s.is_finite() && (0.0..=86400.0).contains(&b.cooldown_s)) {
                return Err(format!(
                    "line {}: second_host.cooldown_s {}: must be between 0 and 86400",
                    bl("cooldown_s"),
                    b.cooldown_s
                ));
            }
        }
        let policy_span = text.find("[policy]").map_or(top.clone(), |i| i..text.len());
        if let Some((key, m)) = self.policy.problem() {
            return Err(format!(
                "line {}: policy.{m}",
                key_line(text, policy_span.clone(), key)
            ));
        }
        if self.policy.min_free_mib != PolicyConfig::default().min_free_mib {
            return Err(format!(
                "line {}: policy.min_free_mib: set host.min_free_mib instead",
                key_line(text, policy_span, "min_free_mib")
            ));
        }
        if let Some((key, m)) = self.alerts.problem() {
            let span = text.find("[alerts]").map_or(top.clone(), |i| i..text.len());
            return Err(format!("line {}: alerts.{m}", key_line(text, span, key)));
        }
        if self.guest.is_empty() {
            return Err("no [[guest]]: a scenario needs at least one guest".into());
        }
        if self.guest.len() > MAX_GUESTS {
            return Err(format!("{} guests: at most {MAX_GUESTS}", self.guest.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, sg) in self.guest.iter().enumerate() {
            let span = sg.span();
            let g = sg.get_ref();
            let gl = |key: &str| key_line(text, span.clone(), key);
            let what = format!("guest[{i}] ({})", g.name);
            if !valid_name(&g.name) {
                return Err(format!(
                    "line {}: guest[{i}].name {:?}: use 1-32 letters, digits, '-' or '_'",
                    gl("name"),
                    g.name
                ));
            }
            if !names.insert(g.name.clone()) {
                return Err(format!("line {}: {what}.name: used twice", gl("name")));
            }
            if g.memory_mib < 128 || g.memory_mib > MAX_GUEST_MIB {
                return Err(format!(
                    "line {}: {what}.memory_mib {}: must be between 128 and {MAX_GUEST_MIB}",
                    gl("memory_mib"),
                    g.memory_mib
                ));
            }
            if g.limit() > g.memory_mib || g.limit() < 64 {
                return Err(format!(
                    "line {}: {what}.limit_mib {}: must be between 64 and memory_mib ({})",
                    gl("limit_mib"),
                    g.limit(),
                    g.memory_mib
                ));
            }
            if g.reservation_mib > g.limit() {
                return Err(format!(
                    "line {}: {what}.reservation_mib {}: above its limit ({} MiB)",
                    gl("reservation_mib"),
                    g.reservation_mib,
                    g.limit()
                ));
            }
            if g.shares == 0 || g.shares > 1_000_000 {
                return Err(format!(
                    "line {}: {what}.shares {}: must be between 1 and 1000000",
                    gl("shares"),
                    g.shares
                ));
            }
            match (g.host.as_str(), &self.second_host) {
                ("a", _) | ("b", Some(_)) => {}
                ("b", None) => {
                    return Err(format!(
                        "line {}: {what}.host \"b\": there is no [second_host]",
                        gl("host")
                    ))
                }
                (other, _) => {
                    return Err(format!(
                        "line {}: {what}.host {other:?}: \"a\" ([host]) or \"b\" ([second_host])",
                        gl("host")
                    ))
                }
            }
            if g.cpus == 0 || g.cpus > 16 {
                return Err(format!(
                    "line {}: {what}.cpus {}: must be between 1 and 16",
                    gl("cpus"),
                    g.cpus
                ));
            }
            for (j, sw) in g.workload.iter().enumerate() {
                let w = sw.get_ref();
                let wl = |key: &str| key_line(text, sw.span(), key);
                let wwhat = format!("{what}.workload[{j}]");
                if !(w.at.is_finite() && w.at >= 0.0 && w.at <= self.duration) {
                    return Err(format!(
                        "line {}: {wwhat}.at {}: must be between 0 and duration ({})",
                        wl("at"),
                        w.at,
                        self.duration
                    ));
                }
                if w.mib == 0 || w.mib >= g.memory_mib {
                    return Err(format!(
                        "line {}: {wwhat}.mib {}: must be between 1 and less than the guest's memory_mib ({})",
                        wl("mib"),
                        w.mib,
                        g.memory_mib
                    ));
                }
                if !(w.hold.is_finite() && w.hold >= 1.0 && w.hold <= MAX_DURATION_S) {
                    return Err(format!(
                        "line {}: {wwhat}.hold {}: must be between 1 and {MAX_DURATION_S} seconds",
                        wl("hold"),
                        w.hold
                    ));
                }
            }
        }
        Ok(())
    }

    /// The guests without their spans.
    pub fn guests(&self) -> impl Iterator<Item = &GuestSpec> {
        self.guest.iter().map(|g| g.get_ref())
    }

    /// The policy configuration with the host's minFree and the tick.
    pub fn policy_config(&self) -> PolicyConfig {
        PolicyConfig {
            min_free_mib: self.host.min_free(),
            thresholds: self.host.thresholds,
            tick_secs: self.tick,
            ..self.policy.clone()
        }
    }

    /// Each host's capacity and policy configuration: `[host]` ("a"), then
    /// `[second_host]` ("b") if there is one.
    pub fn hosts(&self) -> Vec<(&'static str, u64, PolicyConfig)> {
        let a = self.policy_config();
        let mut v = vec![("a", self.host.capacity_mib, a.clone())];
        if let Some(b) = &self.second_host {
            v.push((
                "b",
                b.capacity_mib,
                PolicyConfig {
                    min_free_mib: b.min_free(),
                    ..a
                },
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
duration = 60

[host]
capacity_mib = 1024
min_free_mib = 100

[[guest]]
name = "a"
memory_mib = 512
reservation_mib = 256

[[guest.workload]]
at = 5
mib = 200
content = "dup"
hold = 20

[[guest]]
name = "b"
memory_mib = 512
limit_mib = 400
"#;

    fn parse(text: &str) -> Result<Scenario> {
        Scenario::parse(text, Path::new("s.toml"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_scenario_parses_with_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.tick, 2.0);
        assert_eq!(s.host.swap_file_mib, 1024);
        let g: Vec<_> = s.guests().collect();
        assert_eq!(g[0].reservation_mib, 256);
        assert_eq!(g[0].limit(), 512);
        assert_eq!(g[1].limit(), 400);
        assert_eq!(g[1].shares, 1000);
        assert_eq!(g[0].workload[0].get_ref().content, Content::Dup);
        assert_eq!(s.policy_config().min_free_mib, 100);
        assert!(s.tiers.sharing && s.tiers.swapping);
    }

    #[test]
    fn zswap_pool_limit_is_a_percentage() {
        assert_eq!(parse(GOOD).unwrap().host.zswap_max_pool_percent, None);
        let with = |v: &str| {
            GOOD.replace(
                "min_free_mib = 100",
                &format!("min_free_mib = 100\nzswap_max_pool_percent = {v}"),
            )
        };
        assert_eq!(
            parse(&with("1")).unwrap().host.zswap_max_pool_percent,
            Some(1)
        );
        for bad in ["0", "101"] {
            let e = err(&with(bad));
            assert!(
                e.contains("line 8") && e.contains("between 1 and 100"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(&GOOD.replace(
            "reservation_mib = 256",
            "reservation_mib = 256\nresrvation = 1",
        ));
        assert!(e.contains("line 13") && e.contains("resrvation"), "{e}");
    }

    #[test]
    fn negative_number_names_line() {
        let e = err(&GOOD.replace("limit_mib = 400", "limit_mib = -400"));
        assert!(e.contains("line 23"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(&GOOD.replace("memory_mib = 512\nlimit_mib", "limit_mib"));
        assert!(e.contains("memory_mib"), "{e}");
    }

    #[test]
    fn sizes_take_units() {
        let plain = parse(GOOD).unwrap();
        let units = parse(
            &GOOD
                .replace("capacity_mib = 1024", "capacity_mib = \"1G\"")
                .replace(
                    "memory_mib = 512\nreservation",
                    "memory_mib = \"0.5G\"\nreservation",
                ),
        )
        .unwrap();
        assert_eq!(plain, units);
        let e = err(&GOOD.replace("capacity_mib = 1024", "capacity_mib = \"1.3G\""));
        assert!(
            e.contains("line 6") && e.contains("whole number of MiB"),
            "{e}"
        );
    }

    #[test]
    fn huge_sizes_are_rejected_with_field_and_line() {
        let e = err(&GOOD.replace(
            "memory_mib = 512\nreservation",
            "memory_mib = 99999999999\nreservation",
        ));
        assert!(
            e.contains("guest[0] (a).memory_mib") && e.contains("line 11"),
            "{e}"
        );
        let e = err(&GOOD.replace("capacity_mib = 1024", "capacity_mib = 18446744073709551615"));
        assert!(e.contains("capacity_mib") && e.contains("line 6"), "{e}");
        let e = err(&GOOD.replace("capacity_mib = 1024", "capacity_mib = 9000000000000"));
        assert!(
            e.contains("host.capacity_mib") && e.contains("line 6"),
            "{e}"
        );
    }

    #[test]
    fn second_host_is_checked() {
        let two = GOOD.replace(
            "[[guest]]\nname = \"b\"",
            "[second_host]\ncapacity_mib = 800\n\n[[guest]]\nname = \"b\"\nhost = \"b\"",
        );
        let s = parse(&two).unwrap();
        let hosts = s.hosts();
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            (hosts[1].0, hosts[1].1, hosts[1].2.min_free_mib),
            ("b", 800, 48)
        );
        let sh = s.second_host.as_ref().unwrap();
        assert_eq!((sh.sustain_ticks, sh.cooldown_s), (3, 30.0));
        assert_eq!(s.guests().nth(1).unwrap().host, "b");
        let e = err(&GOOD.replace("limit_mib = 400", "limit_mib = 400\nhost = \"b\""));
        assert!(e.contains("there is no [second_host]"), "{e}");
        let e = err(&two.replace("host = \"b\"", "host = \"c\""));
        assert!(e.contains("host \"c\""), "{e}");
        let e = err(&two.replace(
            "capacity_mib = 800",
            "capacity_mib = 800\nsustain_ticks = 0",
        ));
        assert!(e.contains("second_host.sustain_ticks 0"), "{e}");
        let e = err(&two.replace("capacity_mib = 800", "capacity_mib = 8"));
        assert!(e.contains("second_host.capacity_mib 8"), "{e}");
    }

    #[test]
    fn relations_are_checked() {
        let e = err(&GOOD.replace("reservation_mib = 256", "reservation_mib = 600"));
        assert!(
            e.contains("reservation_mib 600") && e.contains("line 12"),
            "{e}"
        );
        let e = err(&GOOD.replace("mib = 200", "mib = 512"));
        assert!(
            e.contains("workload[0].mib") && e.contains("line 16"),
            "{e}"
        );
        let e = err(&GOOD.replace("name = \"b\"", "name = \"a\""));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&GOOD.replace("at = 5", "at = 61"));
        assert!(e.contains("workload[0].at"), "{e}");
        let e = err(&GOOD.replace("duration = 60", "duration = nan"));
        assert!(e.contains("duration"), "{e}");
        let e = err(&GOOD.replace("name = \"t\"", "name = \"../etc\""));
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn no_guests_or_garbage_is_an_error() {
        assert!(
            err("name = \"x\"\nduration = 5\nguest = []\n[host]\ncapacity_mib = 1024\n")
                .contains("no [[guest]]")
        );
        assert!(err("\u{0}\u{1}garbage[[[").contains("line 1"));
        assert!(err("").contains("missing field"));
    }
}
