//! Valuation (D2): what a resource is worth in credits, one pure formula per category with
//! every coefficient in [`ValuationConfig`] (the server's configuration), so that the seed's
//! "equitable amount" between two categories (FIG.-4: compute and memory for internet access)
//! is a comparison of two numbers. Files (V) are valued by negotiation, not by formula: their
//! valuation says so, and carries the owner's asking price, if any, as an indication.
//!
//! Formulas, with `h` the offered time in hours and `clamp` bounding quality factors to
//! [`speed_factor_min`, `speed_factor_max`]:
//! - I computing: `mflops x h x computing_per_mflops_hour` (or MIPS with its own coefficient).
//! - II memory: `GB x h x memory_per_gb_hour x clamp(memory_reference_ns / mean(read, write ns))`.
//! - III storage: `GB x h x storage_per_gb_hour x clamp(mean(read, write MB/s) /
//!   storage_reference_mb_s) x clamp(storage_reference_access_ms / access_ms)`.
//! - IV peripherals: `count x h x` (GPUs: `gflops x gpu_per_gflops_hour + GB x
//!   memory_per_gb_hour`; others: the kind's hourly rate `x clamp(speed / peripheral_reference_speed)`).
//! - VI internet access: `Mbit/s x h x internet_per_mbit_s_hour x availability x
//!   min(1, throughput / speed)`.
//! - VII money: cash and commissions at face value, credit at `credit_rate`, sweepstakes entries
//!   at `sweepstakes_entry_value` each.
//!
//! Values are computed in floating point and rounded once to micro-units
//! ([`Micros::from_f64_units`], the ledger's rule).

use std::collections::BTreeMap;

use idlegrid_ledger::Micros;
use serde::{Deserialize, Serialize};

use crate::resource::{Provenance, Resource};
use crate::schema::Category;

/// The coefficients of every category's formula. Defaults are chosen to agree with the
/// ledger's prices where one exists (0.25 credits per GFLOP-hour, P7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValuationConfig {
    /// Credits per MFLOPS for one hour. Default 0.00025 (the ledger's 0.25 per GFLOP-hour).
    pub computing_per_mflops_hour: f64,
    /// Credits per MIPS for one hour, when only MIPS are known. Default 0.00025.
    pub computing_per_mips_hour: f64,
    /// Credits per GB of memory (or of GPU memory) for one hour. Default 0.005.
    pub memory_per_gb_hour: f64,
    /// Memory latency worth the base rate; faster is worth more. Default 100 ns.
    pub memory_reference_ns: f64,
    /// Credits per GB of storage for one hour. Default 0.0001 (about 0.07 a month).
    pub storage_per_gb_hour: f64,
    /// Storage speed worth the base rate. Default 100 MB/s.
    pub storage_reference_mb_s: f64,
    /// Storage access time worth the base rate. Default 10 ms.
    pub storage_reference_access_ms: f64,
    /// Credits per device-hour of a peripheral, by `kind`; `other` for any kind not listed.
    /// Defaults: printer 0.05, scanner 0.05, camera 0.02, display 0.01, other 0.02.
    pub peripheral_per_device_hour: BTreeMap<String, f64>,
    /// A peripheral's speed (units per minute) worth its base rate. Default 10.
    pub peripheral_reference_speed: f64,
    /// Credits per GPU GFLOPS for one hour. Default 0.00005.
    pub gpu_per_gflops_hour: f64,
    /// Credits per Mbit/s of internet access for one hour. Default 0.001.
    pub internet_per_mbit_s_hour: f64,
    /// Credits per unit of platform credit offered. Default 1.
    pub credit_rate: f64,
    /// Credits per sweepstakes entry. Default 0.01.
    pub sweepstakes_entry_value: f64,
    /// Smallest quality factor. Default 0.25.
    pub speed_factor_min: f64,
    /// Largest quality factor. Default 4.
    pub speed_factor_max: f64,
}

impl Default for ValuationConfig {
    fn default() -> ValuationConfig {
        ValuationConfig {
            computing_per_mflops_hour: 0.000_25,
            computing_per_mips_hour: 0.000_25,
            memory_per_gb_hour: 0.005,
            memory_reference_ns: 100.0,
            storage_per_gb_hour: 0.000_1,
            storage_reference_mb_s: 100.0,
            storage_reference_access_ms: 10.0,
            peripheral_per_device_hour: [
                ("printer", 0.05),
                ("scanner", 0.05),
                ("camera", 0.02),
                ("display", 0.01),
                ("other", 0.02),
            ]
            .into_iter()
            .map(|(kind, rate)| (kind.to_string(), rate))
            .collect(),
            peripheral_reference_speed: 10.0,
            gpu_per_gflops_hour: 0.000_05,
            internet_per_mbit_s_hour: 0.001,
            credit_rate: 1.0,
            sweepstakes_entry_value: 0.01,
            speed_factor_min: 0.25,
            speed_factor_max: 4.0,
        }
    }
}

/// A configuration or a valuation that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValuationError {
    #[error("valuation setting {field} is {value}: it must be a finite number, at least 0")]
    InvalidSetting { field: String, value: String },
    #[error("valuation setting speed_factor_min must be positive and at most speed_factor_max")]
    InvalidFactors,
    #[error(
        "the {category} resource is worth more than the ledger can hold: offer a smaller quantity or a shorter time"
    )]
    TooLarge { category: Category },
}

impl ValuationConfig {
    /// Every coefficient finite and not negative; reference values positive.
    pub fn validate(&self) -> Result<(), ValuationError> {
        let mut fields = vec![
            ("computing_per_mflops_hour", self.computing_per_mflops_hour),
            ("computing_per_mips_hour", self.computing_per_mips_hour),
            ("memory_per_gb_hour", self.memory_per_gb_hour),
            ("memory_reference_ns", self.memory_reference_ns),
            ("storage_per_gb_hour", self.storage_per_gb_hour),
            ("storage_reference_mb_s", self.storage_reference_mb_s),
            ("storage_reference_access_ms", self.storage_reference_access_ms),
            ("peripheral_reference_speed", self.peripheral_reference_speed),
            ("gpu_per_gflops_hour", self.gpu_per_gflops_hour),
            ("internet_per_mbit_s_hour", self.internet_per_mbit_s_hour),
            ("credit_rate", self.credit_rate),
            ("sweepstakes_entry_value", self.sweepstakes_entry_value),
        ];
        let kinds: Vec<(String, f64)> = self
            .peripheral_per_device_hour
            .iter()
            .map(|(k, v)| (format!("peripheral_per_device_hour.{k}"), *v))
            .collect();
        fields.extend(kinds.iter().map(|(k, v)| (k.as_str(), *v)));
        for (field, value) in fields {
            let reference = field.contains("reference");
            if !value.is_finite() || !(0.0..=1e9).contains(&value) || (reference && value == 0.0) {
                return Err(ValuationError::InvalidSetting { field: field.to_string(), value: value.to_string() });
            }
        }
        let (low, high) = (self.speed_factor_min, self.speed_factor_max);
        if !(low.is_finite() && high.is_finite() && low > 0.0 && low <= high) {
            return Err(ValuationError::InvalidFactors);
        }
        Ok(())
    }

    fn factor(&self, ratio: f64) -> f64 {
        if ratio.is_finite() {
            ratio.clamp(self.speed_factor_min, self.speed_factor_max)
        } else {
            self.speed_factor_max
        }
    }

    fn peripheral_rate(&self, kind: &str) -> f64 {
        let kind = kind.to_ascii_lowercase();
        self.peripheral_per_device_hour
            .get(&kind)
            .or_else(|| self.peripheral_per_device_hour.get("other"))
            .copied()
            .unwrap_or(0.0)
    }
}

/// How a value was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// By the category's formula.
    Formula,
    /// By negotiation between the parties (files): `credits` is only the owner's asking price.
    Negotiated,
}

/// One figure that entered a valuation, for the report a peer reads back (D3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureReport {
    pub attribute: String,
    pub value: f64,
    pub unit: String,
    pub provenance: Provenance,
}

/// What a resource is worth and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Valuation {
    pub category: Category,
    pub method: Method,
    /// The value; for a negotiated file, its asking price (0 when none was given).
    pub credits: Micros,
    /// Every figure of the resource, each marked measured or declared.
    pub figures: Vec<FigureReport>,
}

/// Value `resource` with `config`'s coefficients.
pub fn valuate(resource: &Resource, config: &ValuationConfig) -> Result<Valuation, ValuationError> {
    let hours = resource.number("duration_s").unwrap_or(0.0) / 3600.0;
    let number = |name: &str| resource.number(name);
    let (method, units) = match resource.category() {
        Category::Computing => {
            let units = match (number("mflops"), number("mips")) {
                (Some(mflops), _) => mflops * config.computing_per_mflops_hour,
                (None, Some(mips)) => mips * config.computing_per_mips_hour,
                (None, None) => 0.0,
            };
            (Method::Formula, units * hours)
        }
        Category::Memory => {
            let gb = number("memory_mb").unwrap_or(0.0) / 1024.0;
            let latency = (number("read_ns").unwrap_or(1.0) + number("write_ns").unwrap_or(1.0)) / 2.0;
            (
                Method::Formula,
                gb * hours * config.memory_per_gb_hour * config.factor(config.memory_reference_ns / latency),
            )
        }
        Category::Storage => {
            let gb = number("capacity_mb").unwrap_or(0.0) / 1024.0;
            let speed = (number("read_mb_s").unwrap_or(0.0) + number("write_mb_s").unwrap_or(0.0)) / 2.0;
            let access = config.factor(config.storage_reference_access_ms / number("access_ms").unwrap_or(0.0));
            let speed = config.factor(speed / config.storage_reference_mb_s);
            (Method::Formula, gb * hours * config.storage_per_gb_hour * speed * access)
        }
        Category::Peripherals => (Method::Formula, peripheral_units(resource, config) * hours),
        Category::Files => (Method::Negotiated, number("asking_price").unwrap_or(0.0)),
        Category::InternetAccess => {
            let speed = number("speed_mbit_s").unwrap_or(0.0);
            let quality = number("throughput_mbit_s").map_or(1.0, |throughput| (throughput / speed).min(1.0));
            let availability = number("availability").unwrap_or(0.0);
            (Method::Formula, speed * hours * config.internet_per_mbit_s_hour * availability * quality)
        }
        Category::Money => {
            let amount = number("amount").unwrap_or(0.0);
            let rate = match resource.text("kind") {
                Some("credit") => config.credit_rate,
                Some("sweepstakes") => config.sweepstakes_entry_value,
                _ => 1.0,
            };
            (Method::Formula, amount * rate)
        }
    };
    let category = resource.category();
    let credits = Micros::from_f64_units(units, "valuation").map_err(|_| ValuationError::TooLarge { category })?;
    if credits.is_negative() {
        return Err(ValuationError::TooLarge { category });
    }
    let figures = resource
        .figures()
        .map(|(attribute, unit, figure)| FigureReport {
            attribute: attribute.to_string(),
            value: figure.value,
            unit: unit.to_string(),
            provenance: figure.provenance,
        })
        .collect();
    Ok(Valuation { category, method, credits, figures })
}

/// Credits per hour of a peripheral offer.
fn peripheral_units(resource: &Resource, config: &ValuationConfig) -> f64 {
    let count = resource.number("count").unwrap_or(1.0);
    let kind = resource.text("kind").unwrap_or("other");
    let per_device = if kind.eq_ignore_ascii_case("gpu") {
        resource.number("gflops").unwrap_or(0.0) * config.gpu_per_gflops_hour
            + resource.number("memory_mb").unwrap_or(0.0) / 1024.0 * config.memory_per_gb_hour
    } else {
        let speed =
            resource.number("speed").map_or(1.0, |speed| config.factor(speed / config.peripheral_reference_speed));
        config.peripheral_rate(kind) * speed
    };
    count * per_device
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Value;
    use crate::resource::tests::{declaration, examples};
    use crate::resource::{Measurements, classify};
    use proptest::prelude::*;

    fn valued(index: usize) -> Valuation {
        let (resource, _) = classify(&examples()[index], &Measurements::new()).unwrap();
        valuate(&resource, &ValuationConfig::default()).unwrap()
    }

    #[test]
    fn each_category_is_valued_by_its_formula() {
        // 20,000 MFLOPS for an hour at 0.00025: 5 credits.
        assert_eq!(valued(0).credits, Micros::new(5_000_000));
        // 8 GB for an hour at 0.005, latency 85 ns against 100: factor 100/85.
        assert_eq!(valued(1).credits, Micros::from_f64_units(8.0 * 0.005 * 100.0 / 85.0, "x").unwrap());
        // 2 GPUs of 10,000 GFLOPS and 8 GB: 2 x (0.5 + 0.04) for an hour.
        assert_eq!(valued(3).credits, Micros::new(1_080_000));
        // 100 Mbit/s at 99% for an hour: 0.099.
        assert_eq!(valued(5).credits, Micros::new(99_000));
        assert_eq!(valued(6).credits, Micros::new(25_000_000));
        for index in 0..7 {
            assert_eq!(valued(index).method, if index == 4 { Method::Negotiated } else { Method::Formula });
            assert!(!valued(index).figures.is_empty());
        }
    }

    #[test]
    fn files_are_negotiated_and_carry_only_an_asking_price() {
        assert_eq!(valued(4).credits, Micros::ZERO);
        let mut file = examples()[4].clone();
        file.attributes.insert("asking_price".into(), Value::Number(3.5));
        let (resource, _) = classify(&file, &Measurements::new()).unwrap();
        let valuation = valuate(&resource, &ValuationConfig::default()).unwrap();
        assert_eq!((valuation.method, valuation.credits), (Method::Negotiated, Micros::new(3_500_000)));
    }

    #[test]
    fn the_report_marks_measured_and_declared_figures() {
        let measured = Measurements::new().with(Category::Computing, "mflops", 10_000.0);
        let (resource, _) = classify(&examples()[0], &measured).unwrap();
        let valuation = valuate(&resource, &ValuationConfig::default()).unwrap();
        assert_eq!(valuation.credits, Micros::new(2_500_000), "the measured speed is what is valued");
        let provenance: Vec<(&str, Provenance)> =
            valuation.figures.iter().map(|f| (f.attribute.as_str(), f.provenance)).collect();
        assert_eq!(
            provenance,
            [("mflops", Provenance::Measured), ("cores", Provenance::Declared), ("duration_s", Provenance::Declared)]
        );
    }

    #[test]
    fn money_kinds_and_peripheral_kinds_use_their_rates() {
        let config = ValuationConfig { credit_rate: 0.5, ..ValuationConfig::default() };
        let value = |kind: &str| {
            let money = declaration("money", &[("kind", kind.into()), ("amount", 100.0.into())]);
            valuate(&classify(&money, &Measurements::new()).unwrap().0, &config).unwrap().credits
        };
        assert_eq!(value("cash"), Micros::from_units(100).unwrap());
        assert_eq!(value("credit"), Micros::from_units(50).unwrap());
        assert_eq!(value("sweepstakes"), Micros::from_units(1).unwrap());
        let printer = declaration(
            "peripherals",
            &[("kind", "printer".into()), ("speed", 40.0.into()), ("duration_s", 3600.0.into())],
        );
        let credits = valuate(&classify(&printer, &Measurements::new()).unwrap().0, &config).unwrap().credits;
        assert_eq!(credits, Micros::new(200_000), "0.05 an hour, four times the reference speed");
    }

    #[test]
    fn bad_settings_and_huge_values_are_errors() {
        let bad = ValuationConfig { memory_per_gb_hour: f64::NAN, ..ValuationConfig::default() };
        assert!(
            matches!(bad.validate(), Err(ValuationError::InvalidSetting { field, .. }) if field == "memory_per_gb_hour")
        );
        let bad = ValuationConfig { memory_reference_ns: 0.0, ..ValuationConfig::default() };
        assert!(bad.validate().is_err());
        let bad = ValuationConfig { speed_factor_min: 5.0, ..ValuationConfig::default() };
        assert_eq!(bad.validate(), Err(ValuationError::InvalidFactors));
        ValuationConfig::default().validate().unwrap();
        let huge =
            declaration("computing", &[("mflops", 1e12.into()), ("duration_s", crate::schema::DURATION_S_MAX.into())]);
        let (resource, _) = classify(&huge, &Measurements::new()).unwrap();
        assert_eq!(
            valuate(&resource, &ValuationConfig::default()),
            Err(ValuationError::TooLarge { category: Category::Computing })
        );
        let toml_like: ValuationConfig = serde_json::from_str(r#"{"memory_per_gb_hour": 0.01}"#).unwrap();
        assert_eq!(toml_like.computing_per_mflops_hour, 0.000_25, "unset coefficients keep their defaults");
    }

    proptest! {
        #[test]
        fn value_grows_with_quantity_and_never_goes_negative(
            index in 0usize..7,
            share in 0.01f64..1.0,
        ) {
            let (resource, _) = classify(&examples()[index], &Measurements::new()).unwrap();
            let config = ValuationConfig::default();
            let whole = valuate(&resource, &config).unwrap().credits;
            let part = valuate(&resource.scaled(share), &config).unwrap().credits;
            prop_assert!(part >= Micros::ZERO);
            prop_assert!(part <= whole, "{} > {}", part, whole);
        }
    }
}
