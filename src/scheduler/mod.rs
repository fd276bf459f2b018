//! The engine: a scheduler actor (`actor`) with its timers (`timers`:
//! the wheel, exact waits, the alarm) and per-tag ready sets (`ready`),
//! its background services (`services`), and worker actors (`worker`)
//! that run handlers on threads of their own. Nothing here is public API.

pub(crate) mod actor;
mod alarm;
pub(crate) mod clock;
pub(crate) mod fair;
pub(crate) mod ready;
pub(crate) mod services;
pub(crate) mod spin;
pub(crate) mod timers;
pub(crate) mod utc;
pub(crate) mod wheel;
pub(crate) mod worker;
