//! End-to-end tests: the real `vigie` binary, started as a newcomer would, talking to
//! real MQTT clients and HTTP clients. One test binary (link once), one module per
//! capability.

mod config;
mod export;
mod external;
mod faults;
mod first_start;
mod pipeline;
mod remote_store;
mod retention;
mod server;
mod tls;
mod users;
mod victoria;
