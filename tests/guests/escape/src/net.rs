//! The network attempts: outgoing HTTP through `wasi:http`, sockets and
//! name lookup through the standard library (`wasi:sockets`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// `GET URL`: the status and body, or the `wasi:http` error code.
pub fn fetch(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` has no scheme"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request
        .set_method(&Method::Get)
        .and_then(|()| request.set_scheme(Some(&scheme)))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)))
        .map_err(|()| format!("`{url}` was refused as a request"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(format!("{e:?}")),
        Some(Err(())) | None => return Err("the response was lost".into()),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok(format!("{status} {}", String::from_utf8_lossy(&bytes)))
}

/// Connect over TCP, send a line, and print the first line of the answer.
pub fn connect(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.write_all(b"ping\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    Ok(format!("connected: {}", answer.trim_end()))
}

/// Resolve a name; print its IPv4 answers (whether a host also answers
/// with IPv6 differs from machine to machine).
pub fn resolve(name: &str) -> Result<String, String> {
    let addrs = (name, 0).to_socket_addrs().map_err(|e| e.to_string())?;
    let mut ips: Vec<String> = addrs
        .filter(|a| a.is_ipv4())
        .map(|a| a.ip().to_string())
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips.join(" "))
}

/// Bind and listen on a port.
pub fn listen(port: &str) -> Result<String, String> {
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port"))?;
    TcpListener::bind(("0.0.0.0", port))
        .map(|_| "listening".to_string())
        .map_err(|e| e.to_string())
}

/// Send one datagram.
pub fn udp(addr: &str) -> Result<String, String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.send_to(b"ping", addr)
        .map(|n| format!("sent {n}"))
        .map_err(|e| e.to_string())
}
