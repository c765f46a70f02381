//! The software dispatcher (documented at [`crate::rss`]): [`engine`] (what a packet's queue
//! is), [`fabric`] (the rings between Rx shards and owners), [`dispatcher`] (the stage and the
//! Rx-only worker), [`receiver`] (the owners' Rx queue) and [`load`] (per-entry load reports).

mod dispatcher;
mod engine;
mod fabric;
mod load;
mod receiver;

pub use dispatcher::{DispatchWorker, Dispatcher};
pub use engine::{DecideScratch, Steer, SteeringDecision, SteeringEngine};
pub use fabric::DispatchFabric;
pub use load::{LoadReceiver, LoadSender, load_channel};
pub use receiver::DispatchRx;
