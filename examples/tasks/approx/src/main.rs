//! A validator (P6.1) for results that may differ slightly, such as floating-point sums on
//! different hardware. It compares the data elements `first` and `second` word by word: words
//! that are numbers agree when they differ by at most 0.1 % (relative to the larger one) or
//! 1e-9, other words must be equal. Result: `equivalent` or `different`.

const RELATIVE: f64 = 1e-3;
const ABSOLUTE: f64 = 1e-9;

fn words_agree(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            (x - y).abs() <= ABSOLUTE.max(RELATIVE * x.abs().max(y.abs()))
        }
        _ => a == b,
    }
}

fn main() {
    idlegrid_guest::run(|| {
        let first = idlegrid_guest::element("first")?;
        let second = idlegrid_guest::element("second")?;
        let (first, second) = (String::from_utf8_lossy(&first), String::from_utf8_lossy(&second));
        let (a, b): (Vec<&str>, Vec<&str>) = (first.split_whitespace().collect(), second.split_whitespace().collect());
        let agree = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| words_agree(x, y));
        Ok(if agree { b"equivalent".to_vec() } else { b"different".to_vec() })
    });
}
