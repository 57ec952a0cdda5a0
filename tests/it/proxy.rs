//! A small fault-injecting TCP proxy for HTTP/1.1, between a client and the sync server.
//!
//! Every connection carries exactly one request: the proxy adds `connection: close` to it, so
//! the server answers with `connection: close` and shuts the connection, and the client never
//! reuses one. A fault therefore hits exactly one request. Faults wait in a queue and are taken
//! one per connection; with none queued, requests pass untouched.
//!
//! Refusal is not a per-connection fault (a listener that accepts and then closes is a cut, not
//! a refusal): [`Proxy::refuse`] closes the listening socket, so connects fail with "connection
//! refused", and [`Proxy::heal`] listens on the same port again.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request and let the server answer, then withhold the answer until the
    /// client gives up and closes its end: a response delayed past the client's timeout, for
    /// a request the server applied. No timer here: the client's own timeout ends the wait.
    Withhold,
    /// Forward the request and let the server answer, then close the client's connection
    /// without the answer: the lost acknowledgement.
    CutAfterRequest,
    /// Read the request and answer `500` without forwarding it.
    Answer500,
    /// Forward the request untouched (to aim a later fault at a later connection).
    Pass,
    /// Forward the request, and hold the server's answer until the proxy accepts its next
    /// connection (the client's next request, a probe, a stream reconnecting), then pass it
    /// on: a slow answer overtaken by later traffic. Ordered by events, not by a timer; a
    /// client that gives up first gets nothing, as with [`Fault::Withhold`].
    Delay,
    /// Forward the request's head and the first `after` bytes of its body, then close both
    /// connections: an upload cut midway. The server sees the body end early; the client sees
    /// its connection closed without an answer.
    CutBody {
        /// Body bytes that reach the server.
        after: u64,
    },
}

/// What the proxy has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Connections accepted.
    pub accepted: u64,
    /// Requests the server answered, whether or not the answer was passed on.
    pub answered: u64,
    /// Request body bytes forwarded to the server.
    pub body_bytes: u64,
}

struct Shared {
    server: SocketAddr,
    faults: Mutex<VecDeque<Fault>>,
    tally: watch::Sender<Tally>,
    /// Bumped by [`Proxy::refuse`]: connections streaming an answer close.
    cut: watch::Sender<u64>,
}

/// The proxy: listens on a free port of 127.0.0.1 and forwards to the server.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; `None` while refusing.
    accepting: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of the server at `server`.
    pub fn start(server: SocketAddr) -> Self {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            server,
            faults: Mutex::new(VecDeque::new()),
            tally: watch::Sender::new(Tally::default()),
            cut: watch::Sender::new(0),
        });
        let accepting = Some(tokio::spawn(accept(listener, shared.clone())));
        Self { addr, shared, accepting }
    }

    /// The URL clients use instead of the server's.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues `fault` for the next connection not yet given one.
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.lock().expect("faults").push_back(fault);
    }

    /// Drops the faults not yet given to a connection.
    pub fn clear(&self) {
        self.shared.faults.lock().expect("faults").clear();
    }

    /// Stops listening: connects are refused until [`heal`](Self::heal), and connections
    /// streaming an answer (an event stream) are closed.
    pub async fn refuse(&mut self) {
        self.shared.cut.send_modify(|n| *n += 1);
        if let Some(task) = self.accepting.take() {
            task.abort();
            // Once the task has ended its listener is closed.
            let _ = task.await;
        }
    }

    /// Listens again on the same port (after [`refuse`](Self::refuse)).
    pub fn heal(&mut self) {
        if self.accepting.is_none() {
            self.accepting = Some(tokio::spawn(accept(listen(self.addr), self.shared.clone())));
        }
    }

    /// What the proxy has seen so far.
    pub fn tally(&self) -> Tally {
        *self.shared.tally.borrow()
    }

    /// Waits until the server has answered `n` requests through the proxy (a delayed answer
    /// may still be on its way when the client has given up).
    pub async fn server_answered(&self, n: u64) {
        let mut tally = self.shared.tally.subscribe();
        tokio::time::timeout(Duration::from_secs(10), tally.wait_for(|t| t.answered >= n))
            .await
            .expect("the server did not answer within 10 s")
            .expect("proxy alive");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
        }
    }
}

/// A listener on `addr`. Address reuse lets [`Proxy::heal`] take its port back while the
/// connections it closed linger in TIME_WAIT.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind the proxy");
    socket.listen(64).expect("listen")
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        shared.tally.send_modify(|t| t.accepted += 1);
        let fault = shared.faults.lock().expect("faults").pop_front();
        let shared = shared.clone();
        tokio::spawn(async move {
            // A client that gave up makes writing to it fail; that is the point of some faults.
            let _ = serve(client, fault, &shared).await;
        });
    }
}

/// Handles the one request of `client`, with `fault`.
async fn serve(mut client: TcpStream, fault: Option<Fault>, shared: &Shared) -> io::Result<()> {
    let request = read_request(&mut client).await?;
    if fault == Some(Fault::Answer500) {
        let body = r#"{"code":"internal","message":"injected by the test proxy"}"#;
        let answer = format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    }
    let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
    let mut server = TcpStream::connect(shared.server).await?;
    if let Some(Fault::CutBody { after }) = fault {
        let end = (head_len + usize::try_from(after).unwrap_or(usize::MAX)).min(request.len());
        server.write_all(&request[..end]).await?;
        shared.tally.send_modify(|t| t.body_bytes += (end - head_len) as u64);
        // The server reads the body's end early, answers and closes; the client gets nothing.
        server.shutdown().await?;
        let _ = server.read_to_end(&mut Vec::new()).await;
        shared.tally.send_modify(|t| t.answered += 1);
        return Ok(());
    }
    server.write_all(&request).await?;
    shared.tally.send_modify(|t| t.body_bytes += (request.len() - head_len) as u64);
    if matches!(fault, None | Some(Fault::Pass)) && request.starts_with(b"GET /v1/events") {
        // An event stream never ends: it streams through untouched, until the proxy refuses.
        // (Other answers are read whole first, so that the tally counts an answer before its
        // client can act on it.)
        let mut cut = shared.cut.subscribe();
        tokio::select! {
            copied = tokio::io::copy(&mut server, &mut client) => copied?,
            _ = cut.changed() => return Ok(()),
        };
        shared.tally.send_modify(|t| t.answered += 1);
        return client.shutdown().await;
    }
    // The server closes after its answer (`connection: close`), so its end is the answer's.
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    shared.tally.send_modify(|t| t.answered += 1);
    match fault {
        // Dropping `client` closes it with the request read and no answer written.
        Some(Fault::CutAfterRequest) => return Ok(()),
        Some(Fault::Delay) => {
            let mut tally = shared.tally.subscribe();
            let seen = tally.borrow_and_update().accepted;
            let mut byte = [0u8; 1];
            tokio::select! {
                _ = tally.wait_for(|t| t.accepted > seen) => {}
                // The client closed (0 bytes) or reset the connection: it gave up.
                _ = client.read(&mut byte) => return Ok(()),
            }
        }
        Some(Fault::Withhold) => {
            // Returns when the client closes (0 bytes) or resets the connection.
            let _ = client.read(&mut [0u8; 1]).await;
            return Ok(());
        }
        Some(Fault::Answer500 | Fault::Pass | Fault::CutBody { .. }) | None => {}
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// Reads one request (its head and a `content-length` body) and returns it with its
/// `connection` header replaced by `connection: close`.
async fn read_request(client: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if client.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut lines = head.split("\r\n").filter(|line| !line.is_empty());
    let mut request = format!("{}\r\n", lines.next().unwrap_or_default());
    let mut length = 0;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "connection" => continue,
            "transfer-encoding" => return Err(io::Error::other("chunked requests are not supported")),
            "content-length" => {
                length = value.trim().parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            _ => {}
        }
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("connection: close\r\n\r\n");
    while buf.len() < head_end + length {
        if client.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    let mut request = request.into_bytes();
    request.extend_from_slice(&buf[head_end..head_end + length]);
    Ok(request)
}
