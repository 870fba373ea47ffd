//! Ephemeral ports for processes that must be told their address up front.
//!
//! The port is released before it is handed out, so another process can grab it
//! in between; callers that can bind the socket themselves should bind port 0
//! directly instead.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// `127.0.0.1:<port>` that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("binding an ephemeral port on 127.0.0.1");
    listener
        .local_addr()
        .expect("reading the address of a bound listener")
}
