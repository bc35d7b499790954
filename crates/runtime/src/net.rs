//! The network gate: outgoing HTTP through our own `send_request`, and the
//! check every socket operation passes.
//!
//! Threat model: a hostile guest tries to reach what it was not granted:
//! another host, a port, the loopback interface, the private network, the
//! cloud metadata service. It may use names that resolve (or rebind) to
//! such addresses, numeric forms (`2130706433`, `[::ffff:127.0.0.1]`),
//! userinfo in the authority, or raw sockets.
//!
//! What holds:
//! - A request or connection is allowed only when a `network-outbound`
//!   pattern covers its scheme, host and port (`airssys_wasm_capability::outbound`).
//! - A name is resolved once, by the host; each answer must pass the range
//!   rule, and the connection goes to the checked address (the name is not
//!   resolved again, so rebinding between check and connect is moot). TLS
//!   checks the certificate against the original name.
//! - Range rule: loopback, private (RFC 1918), unique-local, CGNAT,
//!   unspecified, multicast and broadcast addresses (and IPv4 written in
//!   IPv6 forms) are refused unless the pattern names that address or
//!   range literally. Link-local addresses, which hold the cloud metadata
//!   services (169.254.169.254, fd00:ec2::254), are refused always: no
//!   grant opens them.
//! - Timeouts come from the call's deadline; a guest may only shorten them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use airssys_wasm_capability::outbound::{Host, HostPattern, Scheme, canonical, normalize_host};
use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::Capability;
use crate::audit::{Audit, Decision};

/// Without a call deadline (`run` with no `--timeout`), the longest any
/// network step may take: wasmtime's own default.
const NO_DEADLINE: Duration = Duration::from_secs(600);

/// What a component may reach, parsed once at preparation.
#[derive(Debug)]
pub(crate) struct NetPolicy {
    audit: Audit,
    outbound: Vec<HostPattern>,
    inbound: Vec<u16>,
    /// Denied patterns: they win over any grant, by name and by address.
    deny: Vec<HostPattern>,
    /// Answers for names in grants and denials, kept briefly so a guest
    /// looping on connects (or a flood of datagrams) does not become a
    /// flood of lookups.
    resolved: std::sync::Mutex<Resolved>,
}

/// Names and their answers, with when they were looked up.
type Resolved = std::collections::HashMap<String, (Instant, Arc<[IpAddr]>)>;

/// How long a name's answers are reused for socket checks.
const RESOLVED_FOR: Duration = Duration::from_secs(10);

/// The longest a lookup for a socket check may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No pattern covers the target.
    NotGranted,
    /// A denial covers it.
    Denied,
    /// No `network-inbound` grant names the port.
    NoInbound,
    /// No outbound grant at all, so no socket to connect from.
    NoOutbound,
    /// A special address that the covering pattern does not name.
    Special(&'static str),
    /// Link-local: no grant opens it.
    BuiltIn(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotGranted => f.write_str("no network-outbound grant covers it"),
            Refusal::Denied => f.write_str("a network-outbound denial covers it"),
            Refusal::NoInbound => f.write_str("no network-inbound grant names this port"),
            Refusal::NoOutbound => f.write_str(
                "a socket bound to connect or send, with no network-outbound grant at all",
            ),
            Refusal::Special(kind) => write!(
                f,
                "a {kind} address, which only a grant naming that address opens"
            ),
            Refusal::BuiltIn(kind) => write!(f, "a {kind} address, which no grant opens"),
        }
    }
}

/// Addresses no grant opens.
fn built_in_denial(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) if a.is_link_local() => Some("link-local (cloud metadata)"),
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        // AWS's IPv6 metadata endpoint, and GCP's.
        IpAddr::V6(a)
            if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || a == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254) =>
        {
            Some("cloud metadata")
        }
        // Alibaba Cloud's metadata service, inside the shared range.
        IpAddr::V4(a) if a == Ipv4Addr::new(100, 100, 100, 200) => Some("cloud metadata"),
        _ => None,
    }
}

/// Addresses only a literal grant opens.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_private() {
                Some("private")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (CGNAT)")
            } else if a.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if a.is_multicast() || a == Ipv4Addr::BROADCAST {
                Some("multicast or broadcast")
            } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
                Some("benchmarking")
            } else if o[0] >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_unspecified() {
                Some("unspecified")
            } else if (a.segments()[0] & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (a.segments()[0] & 0xffc0) == 0xfec0 {
                Some("site-local")
            } else if a.segments()[..2] == [0x2001, 0] {
                Some("Teredo")
            } else if a.segments()[0] == 0x2002 || a.segments()[..3] == [0x64, 0xff9b, 1] {
                Some("IPv4-embedding (6to4 or NAT64)")
            } else if a.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

impl NetPolicy {
    /// The network part of an effective capability set.
    /// The network part of an effective capability set and its denials.
    /// Patterns were checked when the authority was decided.
    pub(crate) fn new(effective: &[Capability], deny: &[Capability], audit: Audit) -> Self {
        let patterns = |caps: &[Capability]| -> Vec<HostPattern> {
            caps.iter()
                .filter_map(|c| match c {
                    Capability::NetworkOutbound(p) => p.parse().ok(),
                    _ => None,
                })
                .collect()
        };
        Self {
            audit,
            outbound: patterns(effective),
            inbound: effective
                .iter()
                .filter_map(|c| match c {
                    Capability::NetworkInbound(port) => Some(*port),
                    _ => None,
                })
                .collect(),
            deny: patterns(deny),
            resolved: std::sync::Mutex::default(),
        }
    }

    /// The answers for `name`, from the cache or a lookup (bounded); `None`
    /// when the lookup failed or timed out (not cached: the next check
    /// asks again).
    async fn resolve(&self, name: &str) -> Option<Arc<[IpAddr]>> {
        let now = Instant::now();
        if let Some((at, ips)) = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            && now.duration_since(*at) < RESOLVED_FOR
        {
            return Some(ips.clone());
        }
        let lookup = tokio::net::lookup_host((name, 0));
        let ips: Arc<[IpAddr]> = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(answers)) => answers.map(|a| canonical(a.ip())).collect(),
            _ => return None,
        };
        let mut cache = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(name.to_string(), (now, ips.clone()));
        Some(ips)
    }

    /// Whether a denial covers `ip`:`port` over `scheme` (by address, or by
    /// a name that answers with it). A denial of HTTP or HTTPS to a host
    /// also covers raw TCP to it (a guest could speak TLS itself). A denied
    /// name that cannot be looked up now denies: the host cannot tell the
    /// address is not that name's.
    async fn denied_address(&self, scheme: Scheme, ip: IpAddr, port: u16) -> bool {
        for d in &self.deny {
            let applies = |s: Scheme, host: &Host| {
                d.covers(s, host, port)
                    || (s == Scheme::Tcp
                        && matches!(d.scheme, Scheme::Http | Scheme::Https)
                        && d.covers(d.scheme, host, port))
            };
            if applies(scheme, &Host::Ip(ip)) {
                return true;
            }
            if let airssys_wasm_capability::outbound::Hosts::Name(name) = &d.hosts
                && applies(scheme, &Host::Name(name.clone()))
            {
                match self.resolve(name).await {
                    Some(ips) if !ips.contains(&ip) => {}
                    _ => return true,
                }
            }
        }
        false
    }

    /// The range rule, for an address some pattern in `covering` covers.
    fn check_address<'a>(
        &self,
        ip: IpAddr,
        mut covering: impl Iterator<Item = &'a HostPattern>,
    ) -> Result<(), Refusal> {
        let ip = canonical(ip);
        if let Some(kind) = built_in_denial(ip) {
            return Err(Refusal::BuiltIn(kind));
        }
        match special(ip) {
            None => Ok(()),
            Some(kind) if covering.any(|p| p.names_address(ip)) => {
                let _ = kind;
                Ok(())
            }
            Some(kind) => Err(Refusal::Special(kind)),
        }
    }

    /// Whether a connection to `addr` over `scheme` is allowed; names in
    /// grants are resolved now and `addr` must be among their answers.
    async fn outbound_allowed(&self, scheme: Scheme, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = canonical(addr.ip());
        let host = Host::Ip(ip);
        if self.denied_address(scheme, ip, addr.port()).await {
            return Err(Refusal::Denied);
        }
        let by_address: Vec<&HostPattern> = self
            .outbound
            .iter()
            .filter(|p| p.covers(scheme, &host, addr.port()))
            .collect();
        if !by_address.is_empty() {
            return self.check_address(ip, by_address.into_iter());
        }
        for p in &self.outbound {
            let airssys_wasm_capability::outbound::Hosts::Name(name) = &p.hosts else {
                continue;
            };
            if !p.covers(scheme, &Host::Name(name.clone()), addr.port()) {
                continue;
            }
            if self
                .resolve(name)
                .await
                .is_some_and(|ips| ips.contains(&ip))
            {
                return self.check_address(ip, std::iter::empty());
            }
        }
        Err(Refusal::NotGranted)
    }

    /// The socket check wasmtime-wasi calls before every bind, listen,
    /// accept, connect and datagram.
    pub(crate) async fn socket(&self, addr: SocketAddr, use_: SocketAddrUse) -> bool {
        let verdict = match use_ {
            SocketAddrUse::TcpConnect => self.outbound_allowed(Scheme::Tcp, addr).await,
            SocketAddrUse::UdpSend => self.outbound_allowed(Scheme::Udp, addr).await,
            // A datagram from a host the component may send to, or to a
            // component serving on a granted port.
            SocketAddrUse::UdpReceive => {
                if self.inbound.is_empty() {
                    self.outbound_allowed(Scheme::Udp, addr).await
                } else {
                    Ok(())
                }
            }
            // The implicit bind to an unspecified address and port 0 before
            // a connect or send: allowed with an outbound grant.
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind
                if addr.ip().is_unspecified() && addr.port() == 0 =>
            {
                if self.outbound.is_empty() {
                    Err(Refusal::NoOutbound)
                } else {
                    Ok(())
                }
            }
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind | SocketAddrUse::TcpListen => {
                if self.inbound.contains(&addr.port()) {
                    Ok(())
                } else {
                    Err(Refusal::NoInbound)
                }
            }
            // Accepted clients of a listener that was allowed.
            SocketAddrUse::TcpAccept => Ok(()),
        };
        match verdict {
            Ok(()) => true,
            Err(why) => {
                if self.audit.on() {
                    let (capability, operation) = match use_ {
                        SocketAddrUse::TcpConnect => {
                            (format!("network-outbound:tcp://{addr}"), "connect")
                        }
                        SocketAddrUse::UdpSend => {
                            (format!("network-outbound:udp://{addr}"), "send a datagram")
                        }
                        SocketAddrUse::UdpReceive => (
                            format!("network-outbound:udp://{addr}"),
                            "receive a datagram",
                        ),
                        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                            if why == Refusal::NoOutbound {
                                ("network-outbound".to_string(), "bind before connecting")
                            } else {
                                (format!("network-inbound:{}", addr.port()), "bind")
                            }
                        }
                        SocketAddrUse::TcpListen => {
                            (format!("network-inbound:{}", addr.port()), "listen")
                        }
                        SocketAddrUse::TcpAccept => {
                            (format!("network-inbound:{}", addr.port()), "accept")
                        }
                    };
                    self.audit.record(
                        Decision::Denied,
                        capability,
                        addr.to_string(),
                        format!("{operation}: {why}"),
                    );
                }
                false
            }
        }
    }

    /// Check an outgoing request's target and pick the address to connect
    /// to: resolved once, here.
    async fn http_target(
        &self,
        uri: &http::Uri,
        deadline: Instant,
    ) -> Result<(SocketAddr, Host, bool), HttpError> {
        let scheme_name = uri.scheme_str().unwrap_or("http");
        // What audit events say: the host as asked and the path, never the
        // userinfo or the query (where credentials and tokens travel).
        let shown = |host: &str| format!("{scheme_name}://{host}{}", uri.path());
        let deny = |host: &str, resolved: Option<IpAddr>, why: &dyn std::fmt::Display| {
            let target = match resolved {
                Some(ip) => format!("{} ({ip})", shown(host)),
                None => shown(host),
            };
            self.audit.record(
                Decision::Denied,
                format!("network-outbound:{scheme_name}://{host}"),
                target,
                format!("HTTP request: {why}"),
            );
        };
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(HttpError::HttpProtocolError),
        };
        let scheme = if tls { Scheme::Https } else { Scheme::Http };
        let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if authority.as_str().contains('@') {
            let host = format!("{}:{port}", authority.host());
            deny(&host, None, &"userinfo in the authority");
            return Err(HttpError::HttpRequestDenied);
        }
        let host =
            normalize_host(authority.host()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let target = format!("{host}:{port}");
        if self.deny.iter().any(|d| d.covers(scheme, &host, port)) {
            deny(&target, None, &Refusal::Denied);
            return Err(HttpError::HttpRequestDenied);
        }
        let covering: Vec<&HostPattern> = self
            .outbound
            .iter()
            .filter(|p| p.covers(scheme, &host, port))
            .collect();
        if covering.is_empty() {
            deny(&target, None, &Refusal::NotGranted);
            return Err(HttpError::HttpRequestDenied);
        }
        let addrs: Vec<IpAddr> = match &host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                match tokio::time::timeout_at(deadline.into(), lookup).await {
                    Err(_) => return Err(HttpError::DnsTimeout),
                    Ok(Err(_)) => {
                        return Err(HttpError::DnsError {
                            rcode: None,
                            info_code: None,
                        });
                    }
                    Ok(Ok(answers)) => answers.map(|a| a.ip()).collect(),
                }
            }
        };
        let mut refused = None;
        for ip in addrs {
            let verdict = if self.denied_address(scheme, canonical(ip), port).await {
                Err(Refusal::Denied)
            } else {
                self.check_address(ip, covering.iter().copied())
            };
            match verdict {
                Ok(()) => return Ok((SocketAddr::new(canonical(ip), port), host, tls)),
                Err(why) => refused = Some((ip, why)),
            }
        }
        match refused {
            Some((ip, Refusal::Denied)) => {
                deny(&target, Some(ip), &Refusal::Denied);
                Err(HttpError::HttpRequestDenied)
            }
            Some((ip, why)) => {
                deny(&target, Some(ip), &why);
                Err(HttpError::DestinationIpProhibited)
            }
            None => Err(HttpError::DestinationNotFound),
        }
    }
}

/// The `wasi:http` hooks of one store: requests go through the gate.
pub(crate) struct OutgoingHttp {
    pub net: Arc<NetPolicy>,
    /// The runtime's TLS client settings.
    pub tls: Arc<rustls::ClientConfig>,
    /// When the call must end.
    pub deadline: Option<Instant>,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl wasmtime_wasi_http::WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
        let net = self.net.clone();
        let tls = self.tls.clone();
        let deadline = self
            .deadline
            .unwrap_or_else(|| Instant::now() + NO_DEADLINE);
        Box::new(async move {
            let (res, io) = send(&net, &tls, request, options, deadline).await?;
            Ok((res, Box::new(io) as IoFuture))
        })
    }
}

/// The shorter of the guest's wish and the time left.
fn within(wish: Option<Duration>, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    wish.map_or(left, |w| w.min(left))
}

/// The TLS client settings: the web's public roots (as wasmtime-wasi-http's
/// own sender), and the certificates the embedder adds
/// ([`RuntimeConfig::tls_root`](crate::RuntimeConfig::tls_root)), in DER.
pub(crate) fn tls_config(extra: &[Vec<u8>]) -> crate::Result<Arc<rustls::ClientConfig>> {
    let bad = |reason: String| crate::Error::Config { reason };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for der in extra {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| bad(format!("a TLS root certificate is not usable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Send one request to the checked address.
async fn send(
    net: &NetPolicy,
    client: &Arc<rustls::ClientConfig>,
    mut req: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    deadline: Instant,
) -> Result<
    (
        http::Response<WasiBody>,
        impl Future<Output = Result<(), HttpError>> + Send + use<>,
    ),
    HttpError,
> {
    let (addr, host, tls) = net.http_target(req.uri(), deadline).await?;
    let connect_wish = options.and_then(|o| o.connect_timeout);
    let connect = within(connect_wish, deadline);
    let stream = tokio::time::timeout(connect, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
            _ => HttpError::Connect(e),
        })?;
    let stream: Box<dyn Stream> = if tls {
        let name = match &host {
            Host::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
            Host::Ip(ip) => rustls::pki_types::ServerName::from(*ip),
        };
        let connector = tokio_rustls::TlsConnector::from(client.clone());
        let tls_stream = tokio::time::timeout(connect, connector.connect(name, stream))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(tls_error)?;
        Box::new(tls_stream)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        within(connect_wish, deadline),
        hyper::client::conn::http1::Builder::new()
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)?
    .map_err(HttpError::from)?;
    // Only a proxy wants the scheme and authority in the request line.
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let first_byte = within(options.and_then(|o| o.first_byte_timeout), deadline);
    let between = within(options.and_then(|o| o.between_bytes_timeout), deadline)
        .max(Duration::from_nanos(1));
    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let response = tokio::time::timeout(first_byte, async {
        let mut send = std::pin::pin!(sender.send_request(req));
        // Drive the connection while waiting for the response head.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = send.as_mut().poll(cx) {
                return Poll::Ready(r.map_err(HttpError::from));
            }
            if !conn_done && let Poll::Ready(r) = conn.as_mut().poll(cx) {
                conn_done = true;
                if let Err(e) = r {
                    return Poll::Ready(Err(HttpError::from(e)));
                }
                return send.as_mut().poll(cx).map_err(HttpError::from);
            }
            Poll::Pending
        })
        .await
    })
    .await
    .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        let mut timer = tokio::time::interval(between);
        timer.reset();
        TimedBody { incoming, timer }.boxed_unsync()
    });
    let io = async move {
        if conn_done {
            return Ok(());
        }
        conn.await.map_err(|e| {
            if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }
        })
    };
    Ok((response, io))
}

/// The `wasi:http` error for a failed TLS handshake.
fn tls_error(e: std::io::Error) -> HttpError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
        Some(rustls::Error::AlertReceived(_)) => HttpError::TlsAlertReceived {
            alert_id: None,
            alert_message: None,
        },
        Some(_) => HttpError::TlsProtocolError,
        None => HttpError::Tls(e),
    }
}

/// A response body that fails when no frame arrives within the
/// between-bytes timeout.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timer: tokio::time::Interval,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(grants: &[&str]) -> NetPolicy {
        let caps: Vec<Capability> = grants
            .iter()
            .map(|g| format!("network-outbound:{g}").parse().unwrap())
            .collect();
        NetPolicy::new(&caps, &[], quiet())
    }

    fn quiet() -> Audit {
        Audit::new(Arc::new(crate::audit::Auditor::new(None)), "t", None)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_range_rule() {
        let any = policy(&["*"]);
        let all = |p: &NetPolicy, a: &str| p.check_address(ip(a), p.outbound.iter());
        assert_eq!(all(&any, "93.184.215.14"), Ok(()));
        for (a, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("172.16.0.1", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast or broadcast"),
            ("::1", "loopback"),
            ("fd12::1", "unique-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            assert_eq!(all(&any, a), Err(Refusal::Special(kind)), "{a}");
        }
        let literal = policy(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(all(&literal, "127.0.0.1"), Ok(()));
        assert_eq!(all(&literal, "::ffff:127.0.0.1"), Ok(()));
        assert_eq!(all(&literal, "10.9.9.9"), Ok(()));
        // Link-local and metadata: no grant opens them.
        let meta = policy(&["169.254.169.254", "169.254.0.0/16", "[fe80::/10]"]);
        for a in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
        ] {
            assert!(
                matches!(all(&meta, a), Err(Refusal::BuiltIn(_))),
                "{a}: {:?}",
                all(&meta, a)
            );
        }
    }

    #[test]
    fn more_built_in_and_special_ranges() {
        let any = policy(&["*", "100.64.0.0/10", "[fd00::/8]"]);
        let all = |a: &str| any.check_address(ip(a), any.outbound.iter());
        assert!(matches!(all("100.100.100.200"), Err(Refusal::BuiltIn(_))));
        assert!(matches!(all("fd20:ce::254"), Err(Refusal::BuiltIn(_))));
        for a in [
            "64:ff9b:1::a00:1",
            "2002:a00:1::1",
            "2001:0:4136:e378::1",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(
                matches!(all(a), Err(Refusal::Special(_))),
                "{a}: {:?}",
                all(a)
            );
        }
    }

    #[tokio::test]
    async fn denials_win_per_target() {
        let caps = |v: &[&str]| -> Vec<Capability> {
            v.iter()
                .map(|g| format!("network-outbound:{g}").parse().unwrap())
                .collect()
        };
        let p = NetPolicy::new(&caps(&["127.0.0.0/8"]), &caps(&["127.0.0.2"]), quiet());
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(
            p.socket(at("127.0.0.1:80"), SocketAddrUse::TcpConnect)
                .await
        );
        assert!(
            !p.socket(at("127.0.0.2:80"), SocketAddrUse::TcpConnect)
                .await
        );
        // A denied name: its answers are denied.
        let p = NetPolicy::new(&caps(&["127.0.0.0/8"]), &caps(&["localhost"]), quiet());
        assert!(
            !p.socket(at("127.0.0.1:80"), SocketAddrUse::TcpConnect)
                .await
        );
        // A denied name that cannot be looked up denies (fail closed).
        let p = NetPolicy::new(
            &caps(&["127.0.0.0/8"]),
            &caps(&["nowhere.invalid"]),
            quiet(),
        );
        assert!(
            !p.socket(at("127.0.0.1:80"), SocketAddrUse::TcpConnect)
                .await
        );
        // Denying HTTPS to a host also denies raw TCP to its port.
        let p = NetPolicy::new(
            &caps(&["127.0.0.0/8"]),
            &caps(&["https://127.0.0.1"]),
            quiet(),
        );
        assert!(
            !p.socket(at("127.0.0.1:443"), SocketAddrUse::TcpConnect)
                .await
        );
        assert!(
            p.socket(at("127.0.0.1:80"), SocketAddrUse::TcpConnect)
                .await
        );
        let p = NetPolicy::new(&caps(&["127.0.0.0/8"]), &caps(&["localhost"]), quiet());
        let uri: http::Uri = "http://127.0.0.1:80/".parse().unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            p.http_target(&uri, far).await,
            Err(HttpError::HttpRequestDenied)
        ));
    }

    #[tokio::test]
    async fn sockets() {
        let p = policy(&["127.0.0.1:8080"]);
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(
            p.socket(at("127.0.0.1:8080"), SocketAddrUse::TcpConnect)
                .await
        );
        assert!(
            !p.socket(at("127.0.0.1:8081"), SocketAddrUse::TcpConnect)
                .await
        );
        assert!(
            !p.socket(at("10.0.0.1:8080"), SocketAddrUse::TcpConnect)
                .await
        );
        assert!(p.socket(at("0.0.0.0:0"), SocketAddrUse::TcpBind).await);
        assert!(!p.socket(at("0.0.0.0:8080"), SocketAddrUse::TcpBind).await);
        assert!(!p.socket(at("0.0.0.0:0"), SocketAddrUse::TcpListen).await);
        let none = policy(&[]);
        assert!(!none.socket(at("0.0.0.0:0"), SocketAddrUse::TcpBind).await);
        let inbound = NetPolicy::new(&[Capability::NetworkInbound(9000)], &[], quiet());
        assert!(
            inbound
                .socket(at("0.0.0.0:9000"), SocketAddrUse::TcpBind)
                .await
        );
        assert!(
            inbound
                .socket(at("0.0.0.0:9000"), SocketAddrUse::TcpListen)
                .await
        );
        assert!(
            !inbound
                .socket(at("0.0.0.0:9001"), SocketAddrUse::TcpBind)
                .await
        );
        // A name grant: the address must be among the name's answers now.
        let named = policy(&["localhost:7000"]);
        assert!(
            !named
                .socket(at("10.0.0.1:7000"), SocketAddrUse::TcpConnect)
                .await
        );
        // localhost answers 127.0.0.1, but a name never opens loopback.
        assert!(
            !named
                .socket(at("127.0.0.1:7000"), SocketAddrUse::TcpConnect)
                .await
        );
    }
}
