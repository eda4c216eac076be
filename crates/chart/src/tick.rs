//! How a chart writes a number: plain for ordinary magnitudes, `2.5e11` for large or small ones.
//! The plot crate labels its axis ticks with it and the chart data writes legend numbers with
//! it, so the two always agree.

/// Tick label: plain for ordinary magnitudes, `2.5e11` for large or small ones.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e-2..1e5).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        let m = format!("{m:.2}");
        format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ordinary_numbers_plain_large_and_small_ones_scientific() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(1234.0), "1234");
        assert_eq!(tick(2.5e11), "2.5e11");
        assert_eq!(tick(-3e-4), "-3e-4");
    }
}
