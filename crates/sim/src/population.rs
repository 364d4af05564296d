//! Simulated providers: four kinds of machines with weekly habits in their local time, slow and
//! fast, some constantly connected and some not.
//!
//! Each kind's week is a list of blocks. Within a block three memoryless processes run:
//! - **power**: the machine on (engine running and in contact) or off, with mean session length
//!   `session_minutes` and long-run share `p_online`;
//! - **owner**: while on, the owner is active (CPU not available to tasks, for machines that run
//!   tasks only when idle; background load for servers) for a share `owner_active_share`, in
//!   stretches of mean `owner_active_minutes`;
//! - **link** (laptops): while on, the network drops for short stretches: the engine keeps
//!   computing but cannot talk to the server (bandwidth unavailable, out of contact).
//!
//! Durations are exponential; a duration that crosses a block boundary is drawn again at the
//! boundary with the next block's rates, which is exact for memoryless processes.

use idlegrid_random::{RandomSource, Xoshiro256StarStar};
use idlegrid_scheduler::Connectivity;

pub const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;

/// Part of a week (local time) with constant rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    /// Minute of the week (0 = Monday 00:00 local) where the block starts.
    pub start_minute: u32,
    pub p_online: f64,
    pub session_minutes: f64,
    pub owner_active_share: f64,
    pub owner_active_minutes: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Office desktop: on during working hours, runs tasks when the owner is away.
    Office,
    /// Home desktop: on in the evening and at weekends.
    Home,
    /// Always-on server with background load.
    Server,
    /// Laptop: short sessions and a flaky network.
    Laptop,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Office, Kind::Home, Kind::Server, Kind::Laptop];
}

/// What a kind of machine is like.
#[derive(Debug, Clone)]
pub struct Archetype {
    pub kind: Kind,
    /// Share of the population.
    pub share: f64,
    /// Sorted by start; the first starts at 0.
    pub blocks: Vec<Block>,
    /// Mean minutes up and down of the network while on (`None`: never drops).
    pub link_flaps: Option<(f64, f64)>,
    pub cpu_median_gflops: f64,
    pub cpu_sigma: f64,
    pub bandwidth_median_mb_per_s: f64,
    pub bandwidth_sigma: f64,
    pub slots: (u32, u32),
    pub connectivity: Connectivity,
}

/// Start hour, p_online, session minutes, owner active share, owner active minutes.
type Hours = (u32, f64, f64, f64, f64);

fn weekly(days: &[(std::ops::Range<u32>, &[Hours])]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for (range, hours) in days {
        for day in range.clone() {
            for (hour, p, session, share, minutes) in hours.iter() {
                blocks.push(Block {
                    start_minute: day * 1440 + hour * 60,
                    p_online: *p,
                    session_minutes: *session,
                    owner_active_share: *share,
                    owner_active_minutes: *minutes,
                });
            }
        }
    }
    blocks.sort_by_key(|b| b.start_minute);
    blocks
}

/// The population's kinds of machine.
pub fn archetypes() -> Vec<Archetype> {
    let office_day: &[Hours] =
        &[(0, 0.15, 600.0, 0.0, 10.0), (8, 0.92, 300.0, 0.55, 25.0), (18, 0.2, 300.0, 0.05, 10.0)];
    let office_weekend: &[Hours] = &[(0, 0.1, 600.0, 0.05, 10.0)];
    let home_day: &[Hours] = &[(0, 0.3, 480.0, 0.0, 10.0), (7, 0.25, 180.0, 0.2, 20.0), (17, 0.75, 240.0, 0.5, 30.0)];
    let home_weekend: &[Hours] = &[(0, 0.3, 480.0, 0.0, 10.0), (9, 0.7, 240.0, 0.45, 30.0)];
    let server: &[Hours] = &[(0, 0.985, 10_080.0, 0.05, 10.0)];
    let laptop_day: &[Hours] = &[(0, 0.05, 60.0, 0.0, 10.0), (9, 0.55, 50.0, 0.3, 15.0), (23, 0.05, 60.0, 0.0, 10.0)];
    let laptop_weekend: &[Hours] =
        &[(0, 0.05, 60.0, 0.0, 10.0), (10, 0.45, 60.0, 0.3, 15.0), (23, 0.05, 60.0, 0.0, 10.0)];
    vec![
        Archetype {
            kind: Kind::Office,
            share: 0.35,
            blocks: weekly(&[(0..5, office_day), (5..7, office_weekend)]),
            link_flaps: None,
            cpu_median_gflops: 4.0,
            cpu_sigma: 0.6,
            bandwidth_median_mb_per_s: 5.0,
            bandwidth_sigma: 0.6,
            slots: (1, 2),
            connectivity: Connectivity::Intermittent,
        },
        Archetype {
            kind: Kind::Home,
            share: 0.35,
            blocks: weekly(&[(0..5, home_day), (5..7, home_weekend)]),
            link_flaps: None,
            cpu_median_gflops: 5.0,
            cpu_sigma: 0.6,
            bandwidth_median_mb_per_s: 2.0,
            bandwidth_sigma: 0.8,
            slots: (1, 2),
            connectivity: Connectivity::Intermittent,
        },
        Archetype {
            kind: Kind::Server,
            share: 0.15,
            blocks: weekly(&[(0..7, server)]),
            link_flaps: None,
            cpu_median_gflops: 8.0,
            cpu_sigma: 0.5,
            bandwidth_median_mb_per_s: 20.0,
            bandwidth_sigma: 0.5,
            slots: (2, 4),
            connectivity: Connectivity::Constant,
        },
        Archetype {
            kind: Kind::Laptop,
            share: 0.15,
            blocks: weekly(&[(0..5, laptop_day), (5..7, laptop_weekend)]),
            link_flaps: Some((40.0, 4.0)),
            cpu_median_gflops: 3.0,
            cpu_sigma: 0.5,
            bandwidth_median_mb_per_s: 1.5,
            bandwidth_sigma: 0.7,
            slots: (1, 1),
            connectivity: Connectivity::Intermittent,
        },
    ]
}

impl Archetype {
    /// The block at a local minute of the week, and the minute of the week where it ends.
    pub fn block_at(&self, minute_of_week: u32) -> (&Block, u32) {
        let minute = minute_of_week % MINUTES_PER_WEEK;
        let index = self.blocks.partition_point(|b| b.start_minute <= minute).saturating_sub(1);
        let end = self.blocks.get(index + 1).map_or(MINUTES_PER_WEEK, |b| b.start_minute);
        (&self.blocks[index], end)
    }
}

/// A machine as generated: what it is, not what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub kind: Kind,
    pub archetype: u8,
    /// Offset of local time from UTC, in minutes.
    pub utc_offset_minutes: i32,
    pub cpu_gflops: f64,
    pub bandwidth_mb_per_s: f64,
    pub slots: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub connectivity: Connectivity,
}

/// Draw one machine.
pub fn machine(archetypes: &[Archetype], rng: &mut Xoshiro256StarStar) -> Machine {
    let mut pick = rng.next_f64() * archetypes.iter().map(|a| a.share).sum::<f64>();
    let mut index = archetypes.len() - 1;
    for (i, a) in archetypes.iter().enumerate() {
        if pick < a.share {
            index = i;
            break;
        }
        pick -= a.share;
    }
    let a = &archetypes[index];
    // Time zones from UTC-8 to UTC+9, weighted towards Europe and the Americas.
    let zones = [-8, -7, -6, -5, -5, -3, 0, 0, 1, 1, 1, 2, 3, 5, 8, 9];
    let zone = zones[rng.below(zones.len() as u64) as usize];
    let (slots_low, slots_high) = a.slots;
    Machine {
        kind: a.kind,
        archetype: index as u8,
        utc_offset_minutes: zone * 60,
        cpu_gflops: rng.log_normal(a.cpu_median_gflops, a.cpu_sigma).clamp(0.3, 200.0),
        bandwidth_mb_per_s: rng.log_normal(a.bandwidth_median_mb_per_s, a.bandwidth_sigma).clamp(0.1, 1000.0),
        slots: slots_low + rng.below((slots_high - slots_low + 1) as u64) as u32,
        memory_mb: [2_000, 4_000, 8_000, 16_000, 32_000][rng.below(5) as usize],
        disk_mb: 20_000 + rng.below(500_000),
        connectivity: a.connectivity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_week() {
        for a in archetypes() {
            assert_eq!(a.blocks[0].start_minute, 0, "{:?}", a.kind);
            assert!(a.blocks.windows(2).all(|w| w[0].start_minute < w[1].start_minute));
            let (block, end) = a.block_at(MINUTES_PER_WEEK - 1);
            assert_eq!(end, MINUTES_PER_WEEK);
            assert!(block.p_online > 0.0);
        }
        let office = &archetypes()[0];
        let (block, end) = office.block_at(9 * 60); // Monday 09:00
        assert_eq!(block.p_online, 0.92);
        assert_eq!(end, 18 * 60);
        let (block, _) = office.block_at(5 * 1440 + 12 * 60); // Saturday noon
        assert_eq!(block.p_online, 0.1);
    }

    #[test]
    fn machines_follow_the_mix() {
        let archetypes = archetypes();
        let mut rng = Xoshiro256StarStar::from_seed(3);
        let machines: Vec<Machine> = (0..20_000).map(|_| machine(&archetypes, &mut rng)).collect();
        let servers = machines.iter().filter(|m| m.kind == Kind::Server).count() as f64 / machines.len() as f64;
        assert!((servers - 0.15).abs() < 0.01, "{servers}");
        assert!(machines.iter().all(|m| m.cpu_gflops >= 0.3 && m.slots >= 1));
        let slow = machines.iter().filter(|m| m.cpu_gflops < 2.0).count();
        let fast = machines.iter().filter(|m| m.cpu_gflops > 12.0).count();
        assert!(slow > 1000 && fast > 500, "{slow} {fast}");
    }
}
