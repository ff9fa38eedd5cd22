//! [`RefusingPort`]: a loopback port that refuses every connection and stays reserved while
//! the test holds it.
//!
//! Binding a listener and dropping it leaves a port nothing listens on *for now*: the kernel
//! may hand the same port to the next `bind(…:0)` — another test's server in this process —
//! and the "dead" address then answers. A socket bound without `listen` keeps the port taken
//! and makes the kernel answer each connection attempt with a reset (connection refused).

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A bound, never listening TCP socket on 127.0.0.1: connecting to it is refused.
#[derive(Debug)]
pub struct RefusingPort {
    /// Held only to keep the port.
    _socket: Socket,
    addr: SocketAddr,
}

impl RefusingPort {
    /// Reserves a port on 127.0.0.1 that refuses connections.
    pub fn new() -> Self {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)
            .expect("a TCP socket for a refusing port");
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind 127.0.0.1:0 for a refusing port");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .expect("the refusing port's address");
        Self {
            _socket: socket,
            addr,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
