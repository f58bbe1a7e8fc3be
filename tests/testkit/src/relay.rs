//! A TCP relay from a port inside a network namespace to an address in this
//! process's namespace, so that a node namespace reaches a server listening
//! on the host's loopback (a `paddock server` fixture) at the same address.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::NetNs;
use crate::service_lab::in_netns;

/// Relays connections to `listen` inside a namespace to `target`; stops
/// accepting when dropped.
pub struct Relay {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(ns: &NetNs, listen: SocketAddr, target: SocketAddr) -> Result<Relay> {
        // The listening socket is made inside the namespace and stays there.
        let listener = in_netns(ns, || TcpListener::bind(listen))
            .with_context(|| format!("listening on {listen} in {}", ns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let acceptor = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        // Outgoing sockets are made here, in this namespace.
                        if let Ok(outside) = TcpStream::connect(target) {
                            let _ = pipe(inside, outside);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Relay {
            stop,
            acceptor: Some(acceptor),
        })
    }
}

/// Copies both ways on two threads until either side closes.
fn pipe(a: TcpStream, b: TcpStream) -> io::Result<()> {
    a.set_nonblocking(false)?;
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    std::thread::spawn(move || copy(a, b));
    std::thread::spawn(move || copy(b2, a2));
    Ok(())
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
