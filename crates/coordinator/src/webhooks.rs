//! Where notice webhooks may point. A webhook makes the server send a request on a client's
//! behalf, so by default only public addresses are reachable: loopback, private, link-local
//! and other special ranges would let a client reach services behind the server's firewall.
//! The operator may allow ranges (`--webhook-allow 10.0.0.0/8`). The shell checks the address
//! it actually connects to as well: a name can resolve to anything, at any time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range, `address/prefix` (`10.0.0.0/8`, `fd00::/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetRange {
    network: IpAddr,
    prefix: u8,
}

impl NetRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for NetRange {
    type Err = String;

    fn from_str(text: &str) -> Result<NetRange, String> {
        let bad = || format!("'{text}' is not an address range; expected address/prefix, as 10.0.0.0/8 or fd00::/8");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = canonical(address.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(bad)?,
            None => bits,
        };
        Ok(NetRange { network, prefix })
    }
}

impl std::fmt::Display for NetRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl serde::Serialize for NetRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NetRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (carrier NAT), unspecified, multicast, reserved or for documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[0] == 0x2002 {
        // 6to4 carries an IPv4 address.
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 carries one too.
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[..6] == [0; 6] // IPv4-compatible (deprecated)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0)) // Teredo
}

/// Whether a webhook may reach `ip`: a public address, or one in a range the operator allows.
pub fn permitted(ip: IpAddr, allow: &[NetRange]) -> bool {
    is_public(ip) || allow.iter().any(|range| range.contains(ip))
}

/// The refusal for an address a webhook may not reach, for the client and the logs.
pub fn refusal(ip: IpAddr) -> String {
    format!(
        "webhooks may not reach {ip}: it is not a public address (loopback, private, link-local or reserved); \
         the server's operator can allow its range with --webhook-allow"
    )
}

/// Check a webhook URL as far as can be without the network: an http(s) URL whose host, if it
/// is an address (in any form the URL standard reads as one, `127.1` and `0x7f000001`
/// included) or `localhost`, is permitted. Names are checked again when they are resolved.
pub fn check_url(text: &str, allow: &[NetRange]) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("webhook_url is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("webhook_url must be an http(s) URL".into());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                return Ok(());
            }
        }
        None => return Err("webhook_url names no host".into()),
    };
    if permitted(ip, allow) { Ok(()) } else { Err(refusal(ip)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2002:7f00:1::",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
        {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn ranges_parse_and_contain() {
        let range: NetRange = "10.0.0.0/8".parse().unwrap();
        assert!(range.contains(ip("10.200.3.4")));
        assert!(!range.contains(ip("11.0.0.1")));
        assert!(range.contains(ip("::ffff:10.0.0.1")));
        let one: NetRange = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: NetRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("127.0.0.1")));
        let v6: NetRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "example.com/8", "10.0.0.0/x", ""] {
            let error = bad.parse::<NetRange>().unwrap_err();
            assert!(error.contains("address/prefix"), "{error}");
        }
        assert_eq!("10.0.0.0/8".parse::<NetRange>().unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn urls_at_refused_addresses_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://127.1/hook",
            "http://2130706433/hook",
            "http://0x7f000001/hook",
            "http://[::1]/hook",
            "http://[::ffff:7f00:1]/hook",
            "http://localhost:9000/hook",
            "http://api.localhost/hook",
            "http://user@169.254.169.254/latest/meta-data",
            "https://10.0.0.5/hook",
        ] {
            let error = check_url(url, &[]).unwrap_err();
            assert!(error.contains("--webhook-allow"), "{url}: {error}");
        }
        check_url("https://hooks.example.com/x", &[]).unwrap();
        check_url("https://93.184.216.34/x", &[]).unwrap();
        assert!(check_url("ftp://example.com/x", &[]).is_err());
        let allow = ["127.0.0.0/8".parse().unwrap()];
        check_url("http://127.0.0.1:8080/hook", &allow).unwrap();
        check_url("http://localhost:8080/hook", &allow).unwrap();
        assert!(check_url("http://10.0.0.5/hook", &allow).is_err());
    }
}
