//! `parking.rs` again with the HTTP/1.1 fast path on (`--h1-fast-path`): idle
//! connections, plain and TLS, park and wake, heads trickled past the deadline are cut off, upgrades and
//! bodies (which the fast path hands to hyper) still work. A binary of its own, as
//! `parking.rs` is: the parked-connection gauge and the flag are process-wide.

const FAST_PATH: bool = true;

#[path = "parking.rs"]
mod parking;
