//! The crate both sides of a sweep use: the sweep spec and its expansion into trials, the NATS
//! protocol, the data pipeline from a shipments file to training samples, the Vietnamese
//! calendar, and the leakage check that every worker runs before training.

pub mod calendar;
pub mod config;
pub mod data;
pub mod dataset;
pub mod error;
pub mod features;
pub mod leakage;
pub mod metrics;
pub mod params;
pub mod protocol;
pub mod samples;
pub mod space;
pub mod spec;
pub mod synth;
pub mod trial;
