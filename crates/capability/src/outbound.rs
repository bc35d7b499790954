//! The host patterns of `network-outbound`, in the grammar of Spin's
//! `allowed_outbound_hosts`: `[SCHEME://]HOST[:PORT]`.
//!
//! - SCHEME: `http`, `https`, `tcp`, `udp` or `*`; absent means any.
//! - HOST: a name (`api.example.com`), `*.example.com` (`*` only as a whole
//!   leftmost label: it matches `a.example.com` and `a.b.example.com`, never
//!   `example.com` nor `evilexample.com`), `*` (any host, to be written on
//!   purpose), an IP address (`127.0.0.1`, `[::1]`) or a range
//!   (`10.0.0.0/8`, `[fd00::/8]`). Names are compared after IDNA
//!   normalisation, lowercasing and dropping a trailing dot; addresses in
//!   any form the URL standard accepts (`2130706433` is `127.0.0.1`).
//! - PORT: a number, a range `8000-8999`, or `*`; absent means the scheme's
//!   port (80 for `http`, 443 for `https`) or, without a scheme, any.
//!
//! Only an address or range written in the pattern opens loopback, private
//! and other special addresses; a name never does, whatever it resolves to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Which protocol a pattern covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Any: HTTP, HTTPS and sockets.
    Any,
    /// Outgoing HTTP requests over plain HTTP.
    Http,
    /// Outgoing HTTP requests over TLS.
    Https,
    /// TCP sockets.
    Tcp,
    /// UDP sockets.
    Udp,
}

impl Scheme {
    /// Whether a pattern with this scheme covers a use of `used`.
    pub fn covers(self, used: Scheme) -> bool {
        self == Scheme::Any || self == used
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Any => "*",
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
            Scheme::Udp => "udp",
        }
    }
}

/// Which hosts a pattern covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosts {
    /// Every host (`*`).
    Any,
    /// One name, normalised.
    Name(String),
    /// Every name below this one (`*.example.com`), not the name itself.
    Below(String),
    /// The addresses of a range; one address is a range of one.
    Net(ipnet::IpNet),
}

/// A host as a request names it: a normalised name or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A domain name: ASCII (IDNA), lowercase, without a trailing dot.
    Name(String),
    /// An address, in whatever form it was written.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
        }
    }
}

/// Normalise a host as the URL standard does: IDNA to ASCII, lowercase,
/// IPv4 in any of its forms (`2130706433`, `0x7f.1`), IPv6 in brackets; a
/// trailing dot is dropped.
pub fn normalize_host(host: &str) -> Result<Host, String> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() {
        return Err("an empty host".into());
    }
    match url::Host::parse(trimmed) {
        Ok(url::Host::Domain(d)) => Ok(Host::Name(d)),
        Ok(url::Host::Ipv4(a)) => Ok(Host::Ip(IpAddr::V4(a))),
        Ok(url::Host::Ipv6(a)) => Ok(Host::Ip(IpAddr::V6(a))),
        Err(e) => Err(format!("`{host}` is not a host name or address ({e})")),
    }
}

/// A parsed `network-outbound` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// The protocol covered.
    pub scheme: Scheme,
    /// The hosts covered.
    pub hosts: Hosts,
    /// The ports covered, inclusive.
    pub ports: (u16, u16),
}

impl HostPattern {
    /// Whether this pattern covers `host`:`port` over `scheme`. A name is
    /// matched by name patterns, an address by address patterns (and `*`).
    pub fn covers(&self, scheme: Scheme, host: &Host, port: u16) -> bool {
        if !self.scheme.covers(scheme) || port < self.ports.0 || port > self.ports.1 {
            return false;
        }
        match (&self.hosts, host) {
            (Hosts::Any, _) => true,
            (Hosts::Name(n), Host::Name(h)) => n == h,
            (Hosts::Below(suffix), Host::Name(h)) => h
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (Hosts::Net(net), Host::Ip(ip)) => net.contains(&canonical(*ip)),
            _ => false,
        }
    }

    /// Whether every target `other` covers is one this pattern covers too
    /// (for a grant that satisfies a requirement, or a denial that removes
    /// a grant whole).
    pub fn includes(&self, other: &HostPattern) -> bool {
        let scheme = self.scheme == Scheme::Any || self.scheme == other.scheme;
        let ports = self.ports.0 <= other.ports.0 && other.ports.1 <= self.ports.1;
        let hosts = match (&self.hosts, &other.hosts) {
            (Hosts::Any, _) => true,
            (Hosts::Name(a), Hosts::Name(b)) => a == b,
            (Hosts::Below(s), Hosts::Name(n) | Hosts::Below(n)) => {
                n == s && matches!(other.hosts, Hosts::Below(_))
                    || n.strip_suffix(s.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
            (Hosts::Net(a), Hosts::Net(b)) => a.contains(b),
            _ => false,
        };
        scheme && ports && hosts
    }

    /// Whether the pattern names `ip` literally (an address or a range
    /// holding it): only then may a special address be reached.
    pub fn names_address(&self, ip: IpAddr) -> bool {
        matches!(&self.hosts, Hosts::Net(net) if net.contains(&canonical(ip)))
    }
}

/// An address as it will be used: an IPv4 address written in IPv6 form
/// (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)
/// is the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let embedded = || {
                let o = v6.octets();
                IpAddr::V4(std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]))
            };
            // IPv4-compatible (deprecated, but still routed by some stacks);
            // `::` and `::1` are themselves.
            if s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
                return embedded();
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return embedded();
            }
            ip
        }
        v4 => v4,
    }
}

/// A range of IPv4 addresses written in an IPv6 form (`[::ffff:10.0.0.0/104]`,
/// `[64:ff9b::/96]`) is the IPv4 range, as addresses are compared in their
/// IPv4 form.
fn canonical_net(net: ipnet::IpNet) -> ipnet::IpNet {
    if let ipnet::IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let IpAddr::V4(v4) = canonical(IpAddr::V6(v6.addr()))
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return ipnet::IpNet::V4(n);
    }
    net
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{text}` is not a host pattern: {why} (write `[SCHEME://]HOST[:PORT]`, e.g. \
                 `api.example.com:443`, `https://*.example.com`, `10.0.0.0/8:5432`)"
            )
        };
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) => (
                match s {
                    "*" => Scheme::Any,
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    "tcp" => Scheme::Tcp,
                    "udp" => Scheme::Udp,
                    other => {
                        return Err(bad(&format!(
                            "unknown scheme `{other}` (use http, https, tcp, udp or *)"
                        )));
                    }
                },
                rest,
            ),
            None => (Scheme::Any, text),
        };
        if rest.contains('@') {
            return Err(bad("userinfo (`@`) has no place in a host pattern"));
        }
        // HOST and PORT: brackets hold an IPv6 address or range.
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("an unclosed `[`"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
            };
            (format!("[{addr}]"), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let ports = match port {
            None => match scheme {
                Scheme::Http => (80, 80),
                Scheme::Https => (443, 443),
                _ => (0, u16::MAX),
            },
            Some("*") => (0, u16::MAX),
            Some(p) => {
                let num = |s: &str| {
                    s.parse::<u16>()
                        .map_err(|_| bad(&format!("`{p}` is not a port, a range or `*`")))
                };
                match p.split_once('-') {
                    Some((lo, hi)) => {
                        let (lo, hi) = (num(lo)?, num(hi)?);
                        if lo > hi {
                            return Err(bad(&format!("the port range `{p}` is empty")));
                        }
                        (lo, hi)
                    }
                    None => {
                        let n = num(p)?;
                        (n, n)
                    }
                }
            }
        };
        let hosts = if host == "*" {
            Hosts::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            match normalize_host(suffix) {
                Ok(Host::Name(n)) if !n.contains('*') => Hosts::Below(n),
                Ok(Host::Name(_)) => return Err(bad("`*` only as a whole leftmost label")),
                Ok(Host::Ip(_)) => return Err(bad("`*.` goes before a name, not an address")),
                Err(e) => return Err(bad(&e)),
            }
        } else if host.contains('*') {
            return Err(bad("`*` only as a whole leftmost label"));
        } else if host.contains('/') {
            let net = host.trim_start_matches('[').trim_end_matches(']');
            let net: ipnet::IpNet = net
                .parse()
                .map_err(|_| bad(&format!("`{host}` is not an address range")))?;
            Hosts::Net(canonical_net(net.trunc()))
        } else {
            match normalize_host(&host).map_err(|e| bad(&e))? {
                Host::Name(n) => Hosts::Name(n),
                Host::Ip(ip) => Hosts::Net(ipnet::IpNet::from(canonical(ip))),
            }
        };
        Ok(HostPattern {
            scheme,
            hosts,
            ports,
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.name())?;
        match &self.hosts {
            Hosts::Any => f.write_str("*")?,
            Hosts::Name(n) => f.write_str(n)?,
            Hosts::Below(n) => write!(f, "*.{n}")?,
            Hosts::Net(ipnet::IpNet::V6(n)) if n.prefix_len() == 128 => {
                write!(f, "[{}]", n.addr())?
            }
            Hosts::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr())?,
            Hosts::Net(ipnet::IpNet::V6(n)) => write!(f, "[{n}]")?,
            Hosts::Net(n) => write!(f, "{n}")?,
        }
        match self.ports {
            (0, u16::MAX) => f.write_str(":*"),
            (a, b) if a == b => write!(f, ":{a}"),
            (a, b) => write!(f, ":{a}-{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn name(s: &str) -> Host {
        normalize_host(s).unwrap()
    }

    #[test]
    fn the_grammar() {
        for (text, shown) in [
            ("api.example.com:443", "*://api.example.com:443"),
            ("https://API.Example.COM.", "https://api.example.com:443"),
            ("http://*.example.com", "http://*.example.com:80"),
            ("*.internal", "*://*.internal:*"),
            ("*", "*://*:*"),
            ("tcp://10.0.0.0/8:5432", "tcp://10.0.0.0/8:5432"),
            ("10.1.2.3/8", "*://10.0.0.0/8:*"),
            ("[::1]:8080", "*://[::1]:8080"),
            ("[fd00::/8]:1-1024", "*://[fd00::/8]:1-1024"),
            ("2130706433:80", "*://127.0.0.1:80"),
            ("[::ffff:127.0.0.1]", "*://127.0.0.1:*"),
            ("[::ffff:10.0.0.0/104]", "*://10.0.0.0/8:*"),
            ("[64:ff9b::/96]", "*://0.0.0.0/0:*"),
            ("bücher.example", "*://xn--bcher-kva.example:*"),
        ] {
            assert_eq!(p(text).to_string(), shown, "{text}");
        }
        for (text, why) in [
            ("ftp://x.com", "unknown scheme"),
            ("user@x.com", "userinfo"),
            ("a.*.com", "whole leftmost label"),
            ("*x.com", "whole leftmost label"),
            ("*.*.com", "whole leftmost label"),
            ("x.com:http", "not a port"),
            ("x.com:9-1", "empty"),
            ("[::1", "unclosed"),
            ("*.10.0.0.1", "before a name"),
            ("10.0.0.0/99", "not an address range"),
            ("", "empty host"),
        ] {
            let err = text.parse::<HostPattern>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn wildcards_cover_only_whole_labels_below() {
        let w = p("*.example.com");
        assert!(w.covers(Scheme::Https, &name("a.example.com"), 443));
        assert!(w.covers(Scheme::Https, &name("a.b.EXAMPLE.com."), 1));
        assert!(!w.covers(Scheme::Https, &name("example.com"), 443));
        assert!(!w.covers(Scheme::Https, &name("evilexample.com"), 443));
        assert!(!w.covers(Scheme::Https, &name("example.com.evil.org"), 443));
    }

    #[test]
    fn schemes_ports_and_addresses() {
        let h = p("https://api.example.com");
        assert!(h.covers(Scheme::Https, &name("api.example.com"), 443));
        assert!(!h.covers(Scheme::Http, &name("api.example.com"), 80));
        assert!(!h.covers(Scheme::Https, &name("api.example.com"), 8443));
        assert!(!h.covers(Scheme::Tcp, &name("api.example.com"), 443));
        let any = p("api.example.com");
        assert!(any.covers(Scheme::Tcp, &name("api.example.com"), 5432));
        let net = p("127.0.0.0/8:8000-8999");
        assert!(net.covers(Scheme::Http, &name("127.1.2.3"), 8080));
        assert!(net.covers(Scheme::Http, &name("2130706433"), 8080));
        assert!(net.covers(Scheme::Http, &name("[::ffff:127.0.0.1]"), 8080));
        assert!(
            !net.covers(Scheme::Http, &name("localhost"), 8080),
            "a name is not an address"
        );
        assert!(net.names_address("127.0.0.1".parse().unwrap()));
        assert!(!p("*").names_address("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn inclusion() {
        assert!(p("*").includes(&p("https://api.example.com")));
        assert!(p("*.example.com").includes(&p("api.example.com:443")));
        assert!(p("*.example.com").includes(&p("*.api.example.com")));
        assert!(p("*.example.com").includes(&p("*.example.com:443")));
        assert!(!p("*.example.com").includes(&p("example.com")));
        assert!(
            !p("https://*.example.com").includes(&p("api.example.com")),
            "narrower scheme"
        );
        assert!(
            !p("api.example.com:443").includes(&p("api.example.com")),
            "narrower ports"
        );
        assert!(p("10.0.0.0/8").includes(&p("10.1.2.3:80")));
        assert!(!p("10.1.2.3").includes(&p("10.0.0.0/8")));
        assert!(p("API.example.com.").includes(&p("https://api.example.com")));
    }

    #[test]
    fn ipv4_in_ipv6_forms_is_ipv4() {
        for v6 in ["::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1"] {
            assert_eq!(
                canonical(v6.parse().unwrap()),
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "{v6}"
            );
        }
        assert_eq!(
            canonical("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }
}
