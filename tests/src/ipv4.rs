//! IPv4 addresses with a prefix ("10.77.0.1/24"), for checking what the
//! service chose.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An address with a prefix length; the address need not be the network's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// True if `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// True if the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// True if the whole network is in 10/8, 172.16/12 or 192.168/16.
    pub fn is_private(&self) -> bool {
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
            .iter()
            .map(|s| s.parse::<Cidr>().unwrap())
            .any(|p| p.prefix <= self.prefix && p.contains(self.addr))
    }

    /// The address `n` after the network address (`host(1)` of 10.0.0.0/24 is 10.0.0.1).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + n)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not address/prefix"))?;
        let addr: Ipv4Addr = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if prefix > 32 {
            return Err(format!("{s:?}: prefix over 32"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_and_privacy() {
        assert!(c("10.77.0.1/24").overlaps(&c("10.77.0.200/24")));
        assert!(c("10.77.0.1/16").overlaps(&c("10.77.9.1/24")));
        assert!(!c("10.77.0.1/24").overlaps(&c("10.77.1.1/24")));
        assert!(c("192.168.122.1/24").is_private());
        assert!(c("172.20.0.1/24").is_private());
        assert!(!c("172.32.0.1/24").is_private());
        assert!(!c("8.8.8.8/24").is_private());
        assert_eq!(c("10.1.2.3/24").host(1).to_string(), "10.1.2.1");
        assert!(c("10.1.2.0/24").contains("10.1.2.255".parse().unwrap()));
    }
}
