//! The daily usage records: the highs of every Deployment per UTC day, printed as one JSON line
//! each for the platform's billing table. `day` is the day itself (pure: what counts, how days
//! roll over), `log` feeds it from the cluster view and prints finished days, `state` keeps the
//! day in sharded ConfigMaps so a restart loses nothing.

pub mod day;
pub mod log;
pub mod state;
