//! The streaming server behind CRI's Exec and PortForward: the CRI call
//! registers a single-use session and returns its URL; the kubelet (the
//! agent) connects there with a WebSocket and speaks Kubernetes' channel
//! protocol (`v5.channel.k8s.io`/`v4.channel.k8s.io`: every binary message
//! starts with its channel byte).
//!
//! - exec: 0 stdin, 1 stdout, 2 stderr, 3 error (a `metav1.Status` with the
//!   exit code when it is not 0), 4 resize (`{"Width":..,"Height":..}`);
//!   v5 adds `[255, 0]` from the client to close stdin.
//! - port-forward: per requested port i, data on channel 2i and errors on
//!   2i+1, each opened by the port number in 2 little-endian bytes.
//!
//! SPDY is not spoken: a kubelet in front terminates the client's protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::exec;

/// How long a registered session waits for its connection.
const SESSION_TTL: Duration = Duration::from_secs(60);

const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// An exec waiting for its connection.
#[derive(Debug)]
pub struct ExecSession {
    pub request: exec::Request,
    pub exe: PathBuf,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A port-forward waiting for its connection.
#[derive(Debug)]
pub struct PortForwardSession {
    /// The pod's network namespace; `None` for host-network pods.
    pub netns: Option<PathBuf>,
    pub ports: Vec<u16>,
}

#[derive(Debug)]
enum Session {
    Exec(ExecSession),
    PortForward(PortForwardSession),
}

/// The sessions and the address the server listens on.
pub struct Streams {
    addr: SocketAddr,
    listener: Mutex<Option<std::net::TcpListener>>,
    sessions: Mutex<HashMap<String, (Instant, Session)>>,
}

impl Streams {
    /// Binds `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Streams> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding the streaming server to {addr}"))?;
        listener.set_nonblocking(true)?;
        Ok(Streams {
            addr: listener.local_addr()?,
            listener: Mutex::new(Some(listener)),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn register(&self, kind: &str, session: Session) -> String {
        let token = crate::state::new_id();
        let mut sessions = self.sessions.lock().expect("sessions lock poisoned");
        sessions.retain(|_, (at, _)| at.elapsed() < SESSION_TTL);
        sessions.insert(token.clone(), (Instant::now(), session));
        format!("http://{}/{kind}/{token}", self.addr)
    }

    pub fn register_exec(&self, session: ExecSession) -> String {
        self.register("exec", Session::Exec(session))
    }

    pub fn register_port_forward(&self, session: PortForwardSession) -> String {
        self.register("portforward", Session::PortForward(session))
    }

    fn take(&self, token: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("sessions lock poisoned");
        sessions
            .remove(token)
            .filter(|(at, _)| at.elapsed() < SESSION_TTL)
            .map(|(_, s)| s)
    }

    /// Serves sessions until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = self
            .listener
            .lock()
            .expect("listener lock poisoned")
            .take()
            .context("the streaming server is already serving")?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = Router::new()
            .route("/exec/{token}", any(exec_handler))
            .route("/portforward/{token}", any(port_forward_handler))
            .with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving streams")
    }
}

fn gone() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        "no such session (used or expired)",
    )
        .into_response()
}

/// What a client that does not ask for a WebSocket (kubectl before 1.30
/// speaks SPDY) is told.
fn websocket_only(rejection: WebSocketUpgradeRejection) -> Response {
    (
        axum::http::StatusCode::BAD_REQUEST,
        format!(
            "Paddock's runtime streams over WebSocket only (kubectl 1.30 or later); \
             SPDY is not supported ({rejection})"
        ),
    )
        .into_response()
}

async fn exec_handler(
    State(streams): State<Arc<Streams>>,
    UrlPath(token): UrlPath<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return websocket_only(rejection),
    };
    let Some(Session::Exec(session)) = streams.take(&token) else {
        return gone();
    };
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |socket| async move {
            if let Err(e) = exec_stream(socket, session).await {
                tracing::warn!("exec stream: {e:#}");
            }
        })
}

async fn port_forward_handler(
    State(streams): State<Arc<Streams>>,
    UrlPath(token): UrlPath<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return websocket_only(rejection),
    };
    let Some(Session::PortForward(session)) = streams.take(&token) else {
        return gone();
    };
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |socket| async move {
            if let Err(e) = port_forward_stream(socket, session).await {
                tracing::warn!("port-forward stream: {e:#}");
            }
        })
}

/// A close frame with status 1000: kubectl's WebSocket client takes any
/// other ending (also a close frame without a status) for an error.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Copies `reader` into frames on `channel` until EOF.
fn pump_out(
    channel: u8,
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    tx: mpsc::Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send(frame(channel, &buf[..n])).await.is_err() {
                break;
            }
        }
    })
}

type Writer = Box<dyn AsyncWrite + Unpin + Send>;

async fn exec_stream(socket: WebSocket, session: ExecSession) -> anyhow::Result<()> {
    let v5 = socket.protocol().is_some_and(|p| p == PROTOCOLS[0]);
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let status_file = session.request.status_file.clone();
    let mut outputs = Vec::new();
    let (mut child, mut stdin, pty): (_, Option<Writer>, Option<OwnedFd>) = if session.tty {
        let (master, slave) = openpty()?;
        let stdio = || -> anyhow::Result<Stdio> { Ok(Stdio::from(slave.try_clone()?)) };
        let child = exec::spawn(&session.exe, session.request, stdio()?, stdio()?, stdio()?)?;
        drop(slave);
        let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
        outputs.push(pump_out(STDOUT, reader, tx.clone()));
        let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
        (
            child,
            session.stdin.then(|| Box::new(writer) as Writer),
            Some(master),
        )
    } else {
        let pipe_or_null = |wanted: bool| {
            if wanted {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let mut child = exec::spawn(
            &session.exe,
            session.request,
            pipe_or_null(session.stdin),
            pipe_or_null(session.stdout),
            pipe_or_null(session.stderr),
        )?;
        if let Some(out) = child.stdout.take() {
            outputs.push(pump_out(STDOUT, out, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            outputs.push(pump_out(STDERR, err, tx.clone()));
        }
        let stdin = child.stdin.take().map(|w| Box::new(w) as Writer);
        (child, stdin, None)
    };
    // Tell the client the streams are up: an empty frame on the lowest
    // channel it reads.
    let first = if session.stdout || session.tty {
        STDOUT
    } else if session.stderr {
        STDERR
    } else {
        ERROR
    };
    sink.send(frame(first, &[])).await?;

    let sender = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        sink
    });
    let receiver = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let Message::Binary(data) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match (data.first().copied(), &data[1.min(data.len())..]) {
                (Some(STDIN), bytes) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(bytes).await.is_err()
                    {
                        stdin = None;
                    }
                }
                (Some(RESIZE), bytes) => {
                    if let Some(master) = &pty {
                        resize(master, bytes);
                    }
                }
                (Some(CLOSE), [STDIN, ..]) if v5 => stdin = None,
                _ => {}
            }
        }
    });
    let _ = child.wait().await;
    for output in outputs {
        let _ = output.await;
    }
    drop(tx);
    let mut sink = sender.await.context("the sender task")?;
    receiver.abort();
    let status = match exec::exit_code(&status_file) {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command, exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => json!({"metadata": {}, "status": "Failure", "message": e.to_string()}),
    };
    sink.send(frame(ERROR, status.to_string().as_bytes()))
        .await?;
    sink.send(normal_close()).await?;
    Ok(())
}

fn openpty() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; no name, termios or size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("openpty");
    }
    // SAFETY: both descriptors were just created for us alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

fn resize(master: &OwnedFd, json: &[u8]) {
    use std::os::fd::AsRawFd;
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    let Ok(size) = serde_json::from_slice::<Size>(json) else {
        return;
    };
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
}

/// Connects to `port` on the pod's loopback, from inside its namespace.
async fn connect_in(netns: Option<PathBuf>, port: u16) -> anyhow::Result<tokio::net::TcpStream> {
    let stream = tokio::task::spawn_blocking(move || -> anyhow::Result<std::net::TcpStream> {
        // A thread of its own: it enters the pod's namespace and ends.
        std::thread::spawn(move || {
            if let Some(netns) = netns {
                let ns = std::fs::File::open(&netns)
                    .with_context(|| format!("opening {}", netns.display()))?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("entering the pod's network")?;
            }
            std::net::TcpStream::connect(("127.0.0.1", port))
                .with_context(|| format!("connecting to port {port} in the pod"))
        })
        .join()
        .map_err(|_| anyhow!("the connect thread panicked"))?
    })
    .await??;
    stream.set_nonblocking(true)?;
    Ok(tokio::net::TcpStream::from_std(stream)?)
}

async fn port_forward_stream(socket: WebSocket, session: PortForwardSession) -> anyhow::Result<()> {
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let mut writers = HashMap::new();
    let mut pumps = Vec::new();
    for (i, port) in session.ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        sink.send(frame(data, &port.to_le_bytes())).await?;
        sink.send(frame(error, &port.to_le_bytes())).await?;
        match connect_in(session.netns.clone(), *port).await {
            Ok(stream) => {
                let (reader, writer) = stream.into_split();
                writers.insert(data, writer);
                pumps.push(pump_out(data, reader, tx.clone()));
            }
            Err(e) => {
                sink.send(frame(error, format!("{e:#}").as_bytes())).await?;
            }
        }
    }
    drop(tx);
    let sender = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    while let Some(Ok(message)) = source.next().await {
        match message {
            Message::Binary(data) if !data.is_empty() => {
                if let Some(writer) = writers.get_mut(&data[0])
                    && writer.write_all(&data[1..]).await.is_err()
                {
                    writers.remove(&data[0]);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(writers);
    for pump in pumps {
        pump.abort();
    }
    let _ = sender.await;
    Ok(())
}

/// Ports as CRI gives them, checked.
pub fn ports(ports: &[i32]) -> Result<Vec<u16>> {
    ports
        .iter()
        .map(|p| {
            u16::try_from(*p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::invalid(format!("invalid port {p}")))
        })
        .collect()
}
