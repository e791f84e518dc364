//! The platform's monthly cost of a workload: `base + (perVcpu * vCPU + perGib * memGiB) *
//! maxReplicas / divisor`; the original platform's formula is 180 + (19*vCPU + 19*memGB) *
//! maxReplicas / 4 (2 vCPU / 4 GiB at 4 replicas: 294; at 6: 351). Billing is on the registered
//! maximum, not on what runs.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    pub base: f64,
    pub per_vcpu: f64,
    pub per_gib: f64,
    pub divisor: f64,
}

impl Pricing {
    pub fn monthly(&self, vcpu: f64, mem_gib: f64, max_replicas: i32) -> f64 {
        self.base + (self.per_vcpu * vcpu + self.per_gib * mem_gib) * f64::from(max_replicas) / self.divisor
    }
}

/// A Kubernetes quantity (`2`, `500m`, `4Gi`, `1.5G`) as a plain number (cores, or bytes).
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_examples() {
        let p = Pricing { base: 180.0, per_vcpu: 19.0, per_gib: 19.0, divisor: 4.0 };
        assert_eq!(p.monthly(2.0, 4.0, 4), 294.0);
        assert_eq!(p.monthly(2.0, 4.0, 6), 351.0);
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("4Gi").map(|b| b / (1u64 << 30) as f64), Some(4.0));
        assert_eq!(quantity("lots"), None);
    }
}
