//! The bartering market's pure core (D1-D8, X6).
pub mod expr;
pub mod offer;
pub mod random;
pub mod registration;
pub mod resource;
pub mod schema;
pub mod valuation;
