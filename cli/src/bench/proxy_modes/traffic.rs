//! The host's side of the traffic: the service's endpoints, answering HTTP
//! in the lab's namespace on this machine's kernel (so that they are never
//! the bottleneck), new TCP connections timed one by one, and `wrk`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_testkit::netns::NetNs;
use paddock_testkit::service_lab::in_netns;

/// The endpoints' addresses, on the lab's bridge beside the client.
const BACKEND_IPS: [Ipv4Addr; 5] = [
    Ipv4Addr::new(192, 168, 56, 2),
    Ipv4Addr::new(192, 168, 56, 3),
    Ipv4Addr::new(192, 168, 56, 4),
    Ipv4Addr::new(192, 168, 56, 5),
    Ipv4Addr::new(192, 168, 56, 6),
];
const BACKEND_PORT: u16 = 8080;
const THREADS: usize = 4;
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

/// HTTP servers on [`BACKEND_IPS`], until dropped.
pub struct Backends {
    listener: TcpListener,
    threads: Vec<JoinHandle<()>>,
}

impl Backends {
    pub fn start(ns: &NetNs) -> Result<Backends> {
        for ip in BACKEND_IPS {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "br0"])?;
        }
        let listener = in_netns(ns, || TcpListener::bind(("0.0.0.0", BACKEND_PORT)))
            .context("listening for the benchmark's endpoints")?;
        let threads = (0..THREADS)
            .map(|_| {
                let listener = listener.try_clone()?;
                Ok(std::thread::spawn(move || {
                    // Accept fails once the listener is shut down.
                    while let Ok((stream, _)) = listener.accept() {
                        answer(stream);
                    }
                }))
            })
            .collect::<Result<_>>()?;
        Ok(Backends { listener, threads })
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        BACKEND_IPS
            .iter()
            .map(|ip| SocketAddr::from((*ip, BACKEND_PORT)))
            .collect()
    }
}

/// Reads a request (to its blank line) and answers it. A client that
/// only connects, or resets, gets nothing.
fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    let mut buf = [0; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(RESPONSE);
}

impl Drop for Backends {
    fn drop(&mut self) {
        // A shut-down listening socket fails the accepts blocked on it.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Times `count` new TCP connections to `addr` from `ns`, one after the
/// other, each reset once established; `progress` hears how many are done.
pub fn connect_times(
    ns: &NetNs,
    addr: SocketAddr,
    count: usize,
    mut progress: impl FnMut(usize) + Send,
) -> Result<Vec<Duration>> {
    in_netns(ns, || {
        let mut times = Vec::with_capacity(count);
        for done in 0..count {
            let started = Instant::now();
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connection {} to {addr}", done + 1))?;
            times.push(started.elapsed());
            // A reset leaves no TIME_WAIT behind, here or in the node.
            let reset = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &reset)?;
            drop(stream);
            if done % 50 == 0 {
                progress(done);
            }
        }
        Ok(times)
    })
}

/// `GET /` over a new connection from `ns`: the body.
pub fn get(ns: &NetNs, addr: SocketAddr) -> Result<String> {
    in_netns(ns, || {
        paddock_testkit::service_lab::http_get(addr, Duration::from_secs(5))
    })
}

/// What `wrk` measured.
pub struct Wrk {
    pub requests_per_second: f64,
    /// Socket errors and non-2xx answers.
    pub errors: u64,
}

/// `wrk` from `ns` against `addr` for `seconds`, each request on a new
/// connection (`Connection: close`).
pub fn wrk(ns: &NetNs, addr: SocketAddr, seconds: u64) -> Result<Wrk> {
    let out = ns
        .command("wrk")
        .args(["-t", "2", "-c", "32", "-d", &format!("{seconds}s")])
        .args(["-H", "Connection: close", &format!("http://{addr}/")])
        .output()
        .context("running wrk (scripts/deps.sh test installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text)
}

fn parse_wrk(text: &str) -> Result<Wrk> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_second = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    // "Socket errors: connect 0, read 1, write 0, timeout 2"
    let socket_errors: u64 = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Wrk {
        requests_per_second,
        errors: socket_errors + non_2xx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_gives_requests_per_second_and_errors() {
        let text = "Running 10s test @ http://192.168.56.10:30080/\n  \
            2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    \
            Latency    12.01ms    3.20ms  40.00ms   70.00%\n  \
            18000 requests in 10.00s, 1.20MB read\n  \
            Socket errors: connect 0, read 3, write 0, timeout 2\n  \
            Non-2xx or 3xx responses: 1\n\
            Requests/sec:   1800.25\nTransfer/sec:    120.00KB\n";
        let wrk = parse_wrk(text).unwrap();
        assert_eq!(wrk.requests_per_second, 1800.25);
        assert_eq!(wrk.errors, 6);
        let clean = "Requests/sec:   950.50\n";
        assert_eq!(parse_wrk(clean).unwrap().errors, 0);
        assert!(parse_wrk("connection refused").is_err());
    }
}
