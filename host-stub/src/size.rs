//! Sizes as an operator types them, in one place: on the command line
//! (`--capacity 2G`), in scenario and config files (`memory_mib = "1.5G"`
//! or a plain number) and for `set`.
//!
//! Units are binary, as QEMU and libvirt read them: `K`/`KiB`, `M`/`MiB`,
//! `G`/`GiB`, `T`/`TiB` (case-insensitive, `B` optional); a number without
//! a unit is MiB, the stub's own unit. A fraction is allowed when the result
//! is a whole number of MiB (`1.5G` is 1536 MiB; `1.3G` is refused rather
//! than rounded).

use crate::{Error, Result};
use serde::{Deserialize, Deserializer};

/// The largest size accepted: 1 PiB, far above any host.
pub const MAX_MIB: u64 = 1 << 30;

/// KiB per unit: none (MiB), or K, M, G, T each alone or with `B` or
/// `iB` (a bare `B` or `iB`, bytes, is refused: sizes here are whole MiB).
fn unit_kib(unit: &str) -> Option<u128> {
    let u = unit.trim().to_ascii_lowercase();
    if u.is_empty() {
        return Some(1 << 10);
    }
    let prefix = u
        .strip_suffix("ib")
        .or_else(|| u.strip_suffix('b'))
        .unwrap_or(&u);
    Some(match prefix {
        "k" => 1,
        "m" => 1 << 10,
        "g" => 1 << 20,
        "t" => 1 << 30,
        _ => return None,
    })
}

/// Parses a size into MiB.
pub fn parse_mib(s: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::Invalid(format!(
            "size {s:?}: {why} (expected e.g. 512M, 2G, 1.5G or a number of MiB)"
        ))
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let kib = unit_kib(unit).ok_or_else(|| bad("unknown unit"))?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 9 {
        return Err(bad("not a number"));
    }
    let digits = format!("{whole}{frac}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a number"));
    }
    let mantissa: u128 = digits.parse().map_err(|_| bad("too large"))?;
    let scale = 10u128.pow(frac.len() as u32);
    let total_kib = mantissa.checked_mul(kib).ok_or_else(|| bad("too large"))?;
    if !total_kib.is_multiple_of(scale * 1024) {
        return Err(bad("not a whole number of MiB"));
    }
    let mib = total_kib / (scale * 1024);
    u64::try_from(mib)
        .ok()
        .filter(|m| *m <= MAX_MIB)
        .ok_or_else(|| bad("too large"))
}

/// clap's value parser for size arguments.
pub fn arg_mib(s: &str) -> std::result::Result<u64, String> {
    parse_mib(s).map_err(|e| e.to_string())
}

/// A size in a file: a number (MiB) or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Mib(u64),
    Text(String),
}

impl Raw {
    fn mib<E: serde::de::Error>(self) -> std::result::Result<u64, E> {
        match self {
            // The file's own checks bound it, naming the field.
            Raw::Mib(m) => Ok(m),
            Raw::Text(t) => parse_mib(&t).map_err(E::custom),
        }
    }
}

/// `deserialize_with` for a size field.
pub fn de_mib<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    Raw::deserialize(d)?.mib()
}

/// `deserialize_with` for an optional size field.
pub fn de_opt_mib<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    Option::<Raw>::deserialize(d)?.map(Raw::mib).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        for (text, mib) in [
            ("256M", 256),
            ("256MiB", 256),
            ("256mb", 256),
            ("1G", 1024),
            ("1.5G", 1536),
            ("1.5 GiB", 1536),
            (" 2g ", 2048),
            ("0.25G", 256),
            ("300", 300),
            ("4096K", 4),
            ("4096KiB", 4),
            ("2GB", 2048),
            ("1T", 1 << 20),
            ("0", 0),
            (".5G", 512),
        ] {
            assert_eq!(parse_mib(text).unwrap(), mib, "{text}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for (bad, why) in [
            ("", "not a number"),
            ("x", "unknown unit"),
            ("-5", "unknown unit"),
            ("1.3G", "whole number of MiB"),
            ("100K", "whole number of MiB"),
            ("1.2.3G", "not a number"),
            ("5P", "unknown unit"),
            ("2000000T", "too large"),
            ("999999999999999999999999999999T", "too large"),
            ("316912650057057350374175802368T", "too large"),
            ("9999999999999999999999999999999999999999", "too large"),
            ("512B", "unknown unit"),
            ("512iB", "unknown unit"),
            ("512i", "unknown unit"),
            ("G", "not a number"),
        ] {
            let e = parse_mib(bad).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains(&format!("{bad:?}")),
                "{bad}: {e}"
            );
        }
    }

    #[derive(Deserialize, Debug)]
    struct F {
        #[serde(deserialize_with = "de_mib")]
        a: u64,
        #[serde(default, deserialize_with = "de_opt_mib")]
        b: Option<u64>,
    }

    #[test]
    fn files_take_numbers_or_strings() {
        let f: F = toml::from_str("a = 512\nb = \"1.5G\"").unwrap();
        assert_eq!((f.a, f.b), (512, Some(1536)));
        let f: F = toml::from_str("a = \"2G\"").unwrap();
        assert_eq!((f.a, f.b), (2048, None));
        let e = toml::from_str::<F>("a = \"1.3G\"").unwrap_err().to_string();
        assert!(e.contains("whole number of MiB"), "{e}");
        assert!(toml::from_str::<F>("a = -1").is_err());
    }
}
