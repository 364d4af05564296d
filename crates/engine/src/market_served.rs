//! The market contracts this engine's provider serves, as the server last listed them
//! (`MarketContracts`), for the owner's status page: what was sold (category), to whom, where
//! the contract stands and the share of it metered so far.

use idlegrid_protocol::market::ServedContract;
use serde::{Deserialize, Serialize};

use crate::status::escape;

/// One served contract as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractView {
    pub contract: u64,
    pub category: String,
    pub buyer: String,
    pub state: String,
    /// `metered of contracted unit (percent)`.
    pub metered: String,
}

/// The share metered, in words: `1800000 of 3600000 ms (50%)`.
pub fn metered_share(metered: u64, contracted: u64, unit: &str) -> String {
    let percent =
        if contracted == 0 { 0 } else { (u128::from(metered.min(contracted)) * 100 / u128::from(contracted)) as u64 };
    format!("{metered} of {contracted} {unit} ({percent}%)")
}

/// The views of the contracts the server listed.
pub fn views(contracts: &[ServedContract]) -> Vec<ContractView> {
    contracts
        .iter()
        .map(|c| ContractView {
            contract: c.contract,
            category: c.category.clone(),
            buyer: c.buyer.to_string(),
            state: c.state.clone(),
            metered: metered_share(c.metered, c.contracted, &c.unit),
        })
        .collect()
}

/// The page's table of served contracts (HTML, every text escaped).
pub fn render(contracts: &[ContractView]) -> String {
    let mut rows: String = contracts
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"state\">{}</td><td>{}</td></tr>",
                c.contract,
                escape(&c.category),
                escape(&c.buyer),
                escape(&c.state),
                escape(&c.metered)
            )
        })
        .collect();
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">no contracts</td></tr>");
    }
    format!(
        "<table id=\"contracts\"><tr><th>contract</th><th>category</th><th>buyer</th><th>state</th><th>metered</th></tr>{rows}</table>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metered_share_is_read_in_whole_percent_and_never_above_all() {
        assert_eq!(metered_share(1_800_000, 3_600_000, "ms"), "1800000 of 3600000 ms (50%)");
        assert_eq!(metered_share(0, 0, "delivery"), "0 of 0 delivery (0%)");
        assert_eq!(metered_share(u64::MAX, 1, "ms"), format!("{} of 1 ms (100%)", u64::MAX));
        assert_eq!(metered_share(1, 3, "ms"), "1 of 3 ms (33%)");
    }

    #[test]
    fn the_table_lists_each_contract_escaped() {
        let buyer = idlegrid_types::PartyId::from_public_key(&[7; 32]);
        let listed = [ServedContract {
            contract: 12,
            category: "<memory>".into(),
            buyer: buyer.clone(),
            state: "active".into(),
            metered: 1,
            contracted: 4,
            unit: "ms".into(),
        }];
        let html = render(&views(&listed));
        assert!(html.contains("<td>12</td><td>&lt;memory&gt;</td>"), "{html}");
        assert!(html.contains(&buyer.to_string()) && html.contains("1 of 4 ms (25%)"), "{html}");
        assert!(render(&[]).contains("no contracts"));
    }
}
