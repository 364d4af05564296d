//! The smallest useful task: returns its parameters as its result. Used to measure the
//! platform's own overhead per task.

fn main() {
    idlegrid_guest::run(|| Ok(idlegrid_guest::params()));
}
