//! Kubernetes API knowledge with no I/O: the shape of every served type
//! ([`schema`]), the resources and their per-kind rules ([`resources`]),
//! object metadata ([`meta`]), errors as Kubernetes words them ([`status`],
//! [`validation`]), selectors ([`selector`]), patches ([`patch`]) and
//! server-side printing ([`printers`]); Kubernetes' well-known names
//! ([`wellknown`]).

pub mod kinds;
pub mod meta;
pub mod net;
pub mod patch;
pub mod printers;
pub mod quantity;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod time;
pub mod url;
pub mod validation;
pub mod wellknown;
pub mod x509;
