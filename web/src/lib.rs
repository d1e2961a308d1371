//! What every HTTP surface of Silo shares: [`ApiError`] and its [`ErrorCode`] table, JSON body
//! extraction with our error shape, the per-key rate limit, the security headers, the edge's
//! checks on every request (`edge`: whole bodies first, size, time, NUL characters), HTML error
//! pages for browsers, the refusal of cross-site requests, and who the client is behind proxies.
//!
//! Boundary: the domain crates (`control-plane`, `provisioner`, `migrator`) know nothing of HTTP;
//! their errors become HTTP answers here, through explicit `From` impls that pick the meaning.

pub mod client;
pub mod edge;
pub mod error;
pub mod headers;
pub mod json;
pub mod negotiate;
pub mod observe;
pub mod rate_limit;
pub mod same_origin;

pub use error::{ApiError, ErrorCode};
pub use json::{JsonBody, json_rejection};
pub use rate_limit::{ClientRateLimiter, RateLimit};
