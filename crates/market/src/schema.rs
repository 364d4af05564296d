//! The seven categories of the seed (D2, its FIG.-3: BTRCT-I to BTRCT-VII) and the attributes
//! each is described by, as a table: name, unit, whether it is required, its bounds, and whether
//! it grows with the quantity offered (so that a listing of half a resource halves it).
//!
//! | category | attributes (unit) | quantity |
//! |---|---|---|
//! | I computing | `mips` or `mflops` (at least one), `cores`, `duration_s` | `mflops`, else `mips` |
//! | II memory | `memory_mb`, `read_ns`, `write_ns`, `duration_s` | `memory_mb` |
//! | III storage | `capacity_mb`, `access_ms`, `read_mb_s`, `write_mb_s` (read and write time as speeds), `duration_s` | `capacity_mb` |
//! | IV peripherals | `kind` (printer, scanner, camera, display, gpu, ...), `count`, `resolution`, `colour_depth_bits`, `speed` (units per minute), `gflops` and `memory_mb` per device (GPUs), `duration_s` | `count` (1 when absent) |
//! | V files | header: `target_user`, `objective`, `function`, `environment`; `size_bytes`, `sha256`; optional `asking_price` | 1 (a copy) |
//! | VI internet access | `speed_mbit_s`, `availability` (0 to 1), `throughput_mbit_s`, `duration_s` | `speed_mbit_s` |
//! | VII money | `kind` (cash, credit, sweepstakes, commission), `amount` (currency units, or entries) | `amount` |
//!
//! Bounds keep every figure finite and far from overflow once valued in micro-units.

use serde::{Deserialize, Serialize};

/// The seven categories of bartered resources (D2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Computing,
    Memory,
    Storage,
    Peripherals,
    Files,
    InternetAccess,
    Money,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Computing,
        Category::Memory,
        Category::Storage,
        Category::Peripherals,
        Category::Files,
        Category::InternetAccess,
        Category::Money,
    ];

    /// The name used on the wire, in files and in expressions (`other.category`).
    pub fn name(self) -> &'static str {
        match self {
            Category::Computing => "computing",
            Category::Memory => "memory",
            Category::Storage => "storage",
            Category::Peripherals => "peripherals",
            Category::Files => "files",
            Category::InternetAccess => "internet_access",
            Category::Money => "money",
        }
    }

    /// The seed's numbering, I to VII.
    pub fn roman(self) -> &'static str {
        ["I", "II", "III", "IV", "V", "VI", "VII"][self.index()]
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// A category by its name or its numeral (`memory`, `II`); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name || c.roman() == name)
    }

    pub(crate) fn schema(self) -> &'static Schema {
        &SCHEMAS[self.index()]
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A numeric attribute of a category.
#[derive(Debug)]
pub struct NumberSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub required: bool,
    /// Smallest accepted value (inclusive).
    pub min: f64,
    /// Largest accepted value (inclusive).
    pub max: f64,
    /// Must be a whole number.
    pub whole: bool,
    /// Multiplied by the share when part of the resource is listed.
    pub scales: bool,
}

/// A text attribute of a category.
#[derive(Debug)]
pub struct TextSpec {
    pub name: &'static str,
    pub required: bool,
    pub bytes_max: usize,
    /// The accepted values, when the attribute is one of a fixed set.
    pub one_of: &'static [&'static str],
    /// 64 hexadecimal characters (a SHA-256).
    pub sha256: bool,
}

/// The attributes of one category.
#[derive(Debug)]
pub struct Schema {
    pub category: Category,
    pub numbers: &'static [NumberSpec],
    pub texts: &'static [TextSpec],
}

/// Ten years: the longest time a resource can be offered for.
pub const DURATION_S_MAX: f64 = 10.0 * 365.0 * 86_400.0;
/// Longest text attribute.
pub const TEXT_BYTES_MAX: usize = 256;

const fn number(name: &'static str, unit: &'static str, required: bool, min: f64, max: f64) -> NumberSpec {
    NumberSpec { name, unit, required, min, max, whole: false, scales: false }
}

const fn scaling(spec: NumberSpec) -> NumberSpec {
    NumberSpec { scales: true, ..spec }
}

const fn whole(spec: NumberSpec) -> NumberSpec {
    NumberSpec { whole: true, ..spec }
}

const fn text(name: &'static str) -> TextSpec {
    TextSpec { name, required: true, bytes_max: TEXT_BYTES_MAX, one_of: &[], sha256: false }
}

const DURATION: NumberSpec = number("duration_s", "s", true, 1.0, DURATION_S_MAX);

/// Kinds of money (VII).
pub const MONEY_KINDS: &[&str] = &["cash", "credit", "sweepstakes", "commission"];

static SCHEMAS: [Schema; 7] = [
    Schema {
        category: Category::Computing,
        numbers: &[
            scaling(number("mips", "MIPS", false, 0.001, 1e9)),
            scaling(number("mflops", "MFLOPS", false, 0.001, 1e12)),
            scaling(whole(number("cores", "cores", false, 1.0, 1e6))),
            DURATION,
        ],
        texts: &[],
    },
    Schema {
        category: Category::Memory,
        numbers: &[
            scaling(number("memory_mb", "MB", true, 0.001, 1e9)),
            number("read_ns", "ns", true, 0.001, 1e9),
            number("write_ns", "ns", true, 0.001, 1e9),
            DURATION,
        ],
        texts: &[],
    },
    Schema {
        category: Category::Storage,
        numbers: &[
            scaling(number("capacity_mb", "MB", true, 0.001, 1e12)),
            number("access_ms", "ms", true, 0.0, 1e6),
            number("read_mb_s", "MB/s", true, 0.001, 1e7),
            number("write_mb_s", "MB/s", true, 0.001, 1e7),
            DURATION,
        ],
        texts: &[],
    },
    Schema {
        category: Category::Peripherals,
        numbers: &[
            scaling(whole(number("count", "devices", false, 1.0, 1e6))),
            number("resolution", "dpi or pixels", false, 0.0, 1e9),
            whole(number("colour_depth_bits", "bits", false, 1.0, 128.0)),
            number("speed", "units/min", false, 0.0, 1e9),
            number("gflops", "GFLOPS per device", false, 0.0, 1e7),
            number("memory_mb", "MB per device", false, 0.0, 1e9),
            DURATION,
        ],
        texts: &[text("kind")],
    },
    Schema {
        category: Category::Files,
        numbers: &[
            whole(number("size_bytes", "bytes", true, 0.0, 1e15)),
            number("asking_price", "credits", false, 0.0, 1e9),
        ],
        texts: &[
            text("target_user"),
            text("objective"),
            text("function"),
            text("environment"),
            TextSpec { name: "sha256", required: true, bytes_max: 64, one_of: &[], sha256: true },
        ],
    },
    Schema {
        category: Category::InternetAccess,
        numbers: &[
            scaling(number("speed_mbit_s", "Mbit/s", true, 0.001, 1e7)),
            number("availability", "fraction", true, 0.0, 1.0),
            scaling(number("throughput_mbit_s", "Mbit/s", false, 0.0, 1e7)),
            DURATION,
        ],
        texts: &[],
    },
    Schema {
        category: Category::Money,
        numbers: &[scaling(number("amount", "credits or entries", true, 0.000_001, 1e9))],
        texts: &[TextSpec { name: "kind", required: true, bytes_max: 16, one_of: MONEY_KINDS, sha256: false }],
    },
];

impl Schema {
    pub fn number_index(&self, name: &str) -> Option<usize> {
        self.numbers.iter().position(|spec| spec.name == name)
    }

    pub fn text_index(&self, name: &str) -> Option<usize> {
        self.texts.iter().position(|spec| spec.name == name)
    }

    /// Every attribute name, numbers first, for error messages.
    pub fn attribute_names(&self) -> Vec<&'static str> {
        self.numbers.iter().map(|s| s.name).chain(self.texts.iter().map(|s| s.name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_its_schema_and_a_name_that_reads_back() {
        for category in Category::ALL {
            assert_eq!(category.schema().category, category);
            assert_eq!(Category::from_name(category.name()), Some(category));
            assert_eq!(Category::from_name(category.roman()), Some(category));
            let names = category.schema().attribute_names();
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{category}: duplicate attribute");
            assert!(category.schema().numbers.len() <= 7, "Resource holds at most 7 numbers inline");
            for spec in category.schema().numbers {
                assert!(spec.min <= spec.max && spec.max * 1e6 < 9.2e18 * 1e3, "{}", spec.name);
            }
        }
        assert_eq!(Category::from_name("gold"), None);
        assert_eq!(serde_json::to_string(&Category::InternetAccess).unwrap(), "\"internet_access\"");
    }
}
