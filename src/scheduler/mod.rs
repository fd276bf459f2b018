//! The engine: a supervisor actor with a timer wheel and per-tag ready
//! sets, and worker actors that run handlers. Nothing here is public API
//! except [`ShutdownReport`].

mod alarm;
pub(crate) mod clock;
pub(crate) mod ready;
pub(crate) mod services;
pub(crate) mod supervisor;
pub(crate) mod timers;
pub(crate) mod utc;
pub(crate) mod wheel;
pub(crate) mod worker;
