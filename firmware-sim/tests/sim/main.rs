//! Tests of the simulator through its public API: the physical model's properties and
//! the whole publishing path against a real embedded broker (rumqttd).

mod broker;
mod ecosystems;
mod formats;
mod meters;
mod model;
mod outage;
mod provision;
