//! Certificate ordering, the parts below the service layer: the settings, the pure renewal
//! policy, and the queue through which the service layer hands certificate names to the
//! issuer task ([`crate::issuer`]), which sits above it and does the ordering.
//!
//! Nothing here reads the store or talks to a CA, so the service layer and the model can
//! use it without depending on the issuer.

mod orders;
pub mod renewal;
mod settings;

pub use orders::{OrderQueue, OrderReceiver, order_lock};
pub use settings::{AcmeSettings, Eab, EabError, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
