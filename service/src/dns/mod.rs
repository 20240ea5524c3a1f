//! DNS: the server of each network, its local zone and its upstream
//! forwarding.
//!
//! A network's server answers the names of its zone itself (A and PTR for
//! the definition's records and the guests' lease hostnames, under the
//! network's domain and bare; CNAME, TXT, SRV and MX of the definition,
//! an alias followed to its target's current address), never forwards a
//! name under that domain, sends the names of a split domain to that
//! domain's servers, and forwards everything else to the upstream servers,
//! or refuses it when the definition says `upstream = false`. The decision is
//! pure ([`answer::handle_query`]), so it can be fuzzed and benchmarked
//! without sockets; [`server`] adds the sockets and tasks.

pub mod answer;
pub mod framing;
pub mod query;
pub mod reply;
pub mod resolv_conf;
pub mod server;
pub mod upstream;
pub mod zone;

pub use answer::{handle_query, Action, Transport};
pub use server::DnsServer;
pub use upstream::Upstreams;
pub use zone::{Claim, Refusal, SharedZone, Zone};
