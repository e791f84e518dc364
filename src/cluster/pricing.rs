//! The platform's monthly cost of a workload: `base + (perVcpu * vCPU + perGib * memGiB) *
//! maxReplicas / divisor`; the original platform's formula is 180 + (19*vCPU + 19*memGB) *
//! maxReplicas / 4 (2 vCPU / 4 GiB at 4 replicas: 294; at 6: 351). Billing is on the registered
//! maximum, not on what runs.

pub use crate::config::Pricing;

impl Pricing {
    pub fn monthly(&self, vcpu: f64, mem_gib: f64, max_replicas: i32) -> f64 {
        self.base + (self.per_vcpu * vcpu + self.per_gib * mem_gib) * f64::from(max_replicas) / self.divisor
    }
}

/// A Kubernetes quantity as a plain number (cores, or bytes), by the grammar of
/// k8s.io/apimachinery's `resource.Quantity`: a signed decimal number (`2`, `1.5`, `.5`, `5.`)
/// and a suffix, binary SI (`Ki` … `Ei`), decimal SI (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`,
/// `P`, `E`) or a decimal exponent (`e3`, `E-2`; `E` alone is exa). None for text that is no
/// quantity (the API server refuses it). (`kube_quantity` reads `1E` as no quantity.)
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1.0, &text[1..]),
        b'-' => (-1.0, &text[1..]),
        _ => (1.0, text),
    };
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let binary = |power: i32| 2f64.powi(10 * power);
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(sign * value * factor)
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
        // What the first parser counted as 0 in the billing records.
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("1E"), Some(1e18), "E alone is exa");
        assert_eq!(quantity("1Pi"), Some(1024f64.powi(5)));
        assert_eq!(quantity("2Ei"), Some(2.0 * 1024f64.powi(6)));
        assert_eq!(quantity("1.5G"), Some(1.5e9));
        let near = |text: &str, want: f64| quantity(text).is_some_and(|v| (v - want).abs() < 1e-12);
        assert!(near("100u", 1e-4) && near("2.5e-3", 0.0025) && near("-1m", -0.001));
        assert_eq!(quantity(".5"), Some(0.5));
        for bad in ["", ".", "1..5", "1x", "1e", "e3", "1Ki2", "Gi"] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
    }
}
