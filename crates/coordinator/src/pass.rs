//! The decisions of a scheduling pass, apart from the store, live in the scheduler crate
//! (`idlegrid_scheduler::pass`) so that the simulator runs the same code; `schedule.rs` calls
//! them through this name.

pub(crate) use idlegrid_scheduler::pass::{Launch, draw_spot_checks, engines_to_check};
