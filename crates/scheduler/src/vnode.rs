//! Virtual nodes (P5.5): how many providers to group so that `r = 1 - prod(1 - pi_i)`.
//!
//! Work in *reliability mass* `m(pi) = -ln(1 - pi)`: a node reaches reliability `r` exactly
//! when the masses of its members add up to `M(r) = -ln(1 - r)`, and with members of equal
//! `pi` the seed's `N = ln(1 - r) / ln(1 - pi) = M(r) / m(pi)`.
//!
//! Choices where the seed is vague:
//! - **A fractional N is met on average by error diffusion in mass**, per job, deterministically:
//!   each node aims at `M(r)` plus what earlier nodes of the job fell short of (or minus what
//!   they overshot); members are added while the sum stays below the aim, and the last one is
//!   taken only if that overshoots by less than stopping would fall short. So with equal `pi`
//!   and `N = 3.4`, 60% of nodes have 3 members and 40% have 4, and the mean is `N` (the
//!   seed: "the average number of duplications per task equals N"). The carried error stays
//!   within half of one member's mass, so the mean converges as 1/nodes. Because
//!   `1 - e^-m` is concave, nodes of 3 and 4 reach a mean reliability a little below `r`
//!   (for `r = 0.9`, `pi = 0.5`: 0.895); the simulator measures the real share.
//! - **Every node has at least one member**, even when one member overshoots (a provider with
//!   `pi > r`); the carry is then clamped to `±M(r)`.
//! - **At most `members_max` members** (default 32): a job whose candidates are so unreliable
//!   that more would be needed waits, and `explain` says so.

/// Highest `pi` used in the logarithms, so a provider claiming certainty has a finite mass.
pub const PI_MAX: f64 = 1.0 - 1e-9;

/// `-ln(1 - pi)`, with `pi` clamped to `[0, PI_MAX]` (NaN counts as 0).
pub fn reliability_mass(pi: f64) -> f64 {
    let pi = if pi.is_nan() { 0.0 } else { pi.clamp(0.0, PI_MAX) };
    -(-pi).ln_1p()
}

/// `r = 1 - prod(1 - pi_i)`.
pub fn node_reliability(pis: &[f64]) -> f64 {
    1.0 - pis.iter().map(|pi| 1.0 - if pi.is_nan() { 0.0 } else { pi.clamp(0.0, 1.0) }).product::<f64>()
}

/// The seed's `N = ln(1 - r) / ln(1 - pi)`: providers of reliability `pi` a node of reliability
/// `r` needs. Infinite when `pi` is 0.
pub fn duplication_for(reliability: f64, pi: f64) -> f64 {
    reliability_mass(reliability) / reliability_mass(pi)
}

/// What to do with the provider just offered to a node being formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Add it; `complete` says whether the node needs no more members.
    Take { complete: bool },
    /// Do not add it: the node is complete without it.
    Decline,
}

/// One node being formed: offer candidates one at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFormation {
    requested_mass: f64,
    target_mass: f64,
    mass: f64,
    members: u32,
    members_max: u32,
    complete: bool,
}

impl NodeFormation {
    /// A node for reliability `reliability`, given the job's carried error `carry` (in mass).
    pub fn new(reliability: f64, carry: f64, members_max: u32) -> NodeFormation {
        let requested_mass = reliability_mass(reliability);
        let carry = if carry.is_finite() { carry.clamp(-requested_mass, requested_mass) } else { 0.0 };
        NodeFormation {
            requested_mass,
            target_mass: requested_mass + carry,
            mass: 0.0,
            members: 0,
            members_max: members_max.max(1),
            complete: false,
        }
    }

    pub fn offer(&mut self, pi: f64) -> Offer {
        if self.complete || self.members >= self.members_max {
            self.complete = true;
            return Offer::Decline;
        }
        let mass = reliability_mass(pi);
        let with = self.mass + mass;
        let take =
            self.members == 0 || with <= self.target_mass || with - self.target_mass <= self.target_mass - self.mass;
        if take {
            self.mass = with;
            self.members += 1;
            self.complete = self.mass >= self.target_mass || self.members >= self.members_max;
            Offer::Take { complete: self.complete }
        } else {
            self.complete = true;
            Offer::Decline
        }
    }

    pub fn members(&self) -> u32 {
        self.members
    }

    /// No more members wanted (aim reached, rounding stopped it, or the member limit).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The reliability this node aims at: the requested one corrected by the carried error.
    pub fn target_reliability(&self) -> f64 {
        -(-self.target_mass.max(0.0)).exp_m1()
    }

    /// Reliability of the members taken so far.
    pub fn reliability(&self) -> f64 {
        -(-self.mass).exp_m1()
    }

    /// Whether the members taken so far are enough to launch when no more candidates come: the
    /// node reached its aim, or at least the requested reliability.
    pub fn is_launchable(&self) -> bool {
        self.members > 0
            && (self.complete && self.members < self.members_max
                || self.mass >= self.requested_mass.min(self.target_mass))
    }

    /// The error to carry to the job's next node.
    pub fn carry_out(&self) -> f64 {
        (self.target_mass - self.mass).clamp(-self.requested_mass, self.requested_mass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formula_worked_examples() {
        // pi = 0.5, r = 0.9: N = ln 0.1 / ln 0.5 = 3.3219...
        assert!((duplication_for(0.9, 0.5) - std::f64::consts::LOG2_10).abs() < 1e-12);
        // pi = 0.9, r = 0.99: N = 2 exactly.
        assert!((duplication_for(0.99, 0.9) - 2.0).abs() < 1e-12);
        assert!((node_reliability(&[0.5, 0.5, 0.5]) - 0.875).abs() < 1e-15);
        assert!((node_reliability(&[0.9, 0.5]) - 0.95).abs() < 1e-15);
        assert_eq!(node_reliability(&[]), 0.0);
        assert_eq!(duplication_for(0.9, 0.0), f64::INFINITY);
        assert!(reliability_mass(1.0).is_finite());
        assert_eq!(reliability_mass(f64::NAN), 0.0);
        assert_eq!(reliability_mass(-3.0), 0.0);
    }

    fn form(pis: &mut impl Iterator<Item = f64>, r: f64, carry: f64, members_max: u32) -> (Vec<f64>, NodeFormation) {
        let mut node = NodeFormation::new(r, carry, members_max);
        let mut taken = Vec::new();
        for pi in pis.by_ref() {
            match node.offer(pi) {
                Offer::Take { complete } => {
                    taken.push(pi);
                    if complete {
                        break;
                    }
                }
                Offer::Decline => break,
            }
        }
        (taken, node)
    }

    #[test]
    fn fractional_n_is_met_on_average() {
        // pi = 0.5, r = 0.9: N = 3.32; nodes of 3 and 4 members in proportion 68:32.
        let mut carry = 0.0;
        let mut total = 0u32;
        let nodes = 10_000;
        let mut sizes = [0u32; 6];
        for _ in 0..nodes {
            let (taken, node) = form(&mut std::iter::repeat(0.5), 0.9, carry, 32);
            carry = node.carry_out();
            total += taken.len() as u32;
            sizes[taken.len()] += 1;
        }
        let mean = total as f64 / nodes as f64;
        assert!((mean - duplication_for(0.9, 0.5)).abs() < 1e-3, "{mean}");
        assert_eq!(sizes[0] + sizes[1] + sizes[2] + sizes[5], 0, "{sizes:?}");
    }

    #[test]
    fn a_single_reliable_member_is_enough_and_the_member_limit_holds() {
        let (taken, node) = form(&mut std::iter::repeat(0.999), 0.9, 0.0, 32);
        assert_eq!(taken.len(), 1);
        assert!(node.is_launchable());
        // Unreliable candidates: capped at members_max, and not launchable below r.
        let (taken, node) = form(&mut std::iter::repeat(0.01), 0.99, 0.0, 8);
        assert_eq!(taken.len(), 8);
        assert!(!node.is_launchable());
        // Too few candidates offered: not launchable.
        let (taken, node) = form(&mut [0.5, 0.5].into_iter(), 0.9, 0.0, 32);
        assert_eq!(taken.len(), 2);
        assert!(!node.is_complete() && !node.is_launchable());
    }

    proptest! {
        /// For any candidates: the node's reliability is the formula over its members; every
        /// member but the last was needed (the sum before it was below the aim); the carry stays
        /// bounded; and over many nodes the mean mass approaches the requested mass.
        #[test]
        fn nodes_follow_the_formula_and_meet_r_on_average(
            pis in proptest::collection::vec(0.05f64..0.8, 1..2000),
            r in 0.8f64..0.999,
        ) {
            let mut carry = 0.0;
            let mut stream = pis.iter().copied().cycle();
            let nodes = 300;
            let mut mass_total = 0.0;
            let requested = reliability_mass(r);
            for _ in 0..nodes {
                let (taken, node) = form(&mut stream, r, carry, 200);
                prop_assert!(!taken.is_empty());
                prop_assert!((node.reliability() - node_reliability(&taken)).abs() < 1e-9);
                let before_last: f64 = taken[..taken.len() - 1].iter().map(|pi| reliability_mass(*pi)).sum();
                let aim = requested + carry.clamp(-requested, requested);
                prop_assert!(taken.len() == 1 || before_last < aim + 1e-12, "member beyond N: {:?}", taken);
                prop_assert!(node.is_launchable());
                carry = node.carry_out();
                prop_assert!(carry.abs() <= requested + 1e-12);
                mass_total += taken.iter().map(|pi| reliability_mass(*pi)).sum::<f64>();
            }
            let largest = pis.iter().map(|pi| reliability_mass(*pi)).fold(0.0, f64::max);
            // Mean mass within (carry bound) / nodes of the requested mass.
            prop_assert!((mass_total / nodes as f64 - requested).abs() <= (largest + requested) / nodes as f64 + 1e-9,
                "mean {} requested {}", mass_total / nodes as f64, requested);
        }
    }
}
