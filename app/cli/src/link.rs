//! A network link on loopback: a TCP proxy in front of a server that counts the bytes it
//! forwards and can be cut and restored. The demo cuts it to take a client offline (the client
//! then finds the connection refused, as with no network); the downstream benchmark counts the
//! bytes of each pull through it.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// A cuttable, counting TCP proxy.
pub struct Link {
    addr: SocketAddr,
    target: SocketAddr,
    bytes: Arc<AtomicU64>,
    /// `true` while the link is up; connections end when it turns false.
    up: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Link {
    /// A link up to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let link = Self {
            addr: listener.local_addr()?,
            target,
            bytes: Arc::new(AtomicU64::new(0)),
            up: watch::Sender::new(true),
            accept: Mutex::new(None),
        };
        link.serve(listener);
        Ok(link)
    }

    /// The URL clients use to reach the target through the link.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes forwarded so far, both directions together.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Cuts the link: open connections are dropped and, once this returns, new ones refused.
    pub async fn cut(&self) {
        if let Some(accept) = self.stop() {
            // Ends once the listener is dropped: the port refuses from then on.
            let _ = accept.await;
        }
    }

    /// Ends the open connections and aborts the accepting task, which is returned so that a
    /// caller may wait for its listener to close.
    fn stop(&self) -> Option<JoinHandle<()>> {
        self.up.send_replace(false);
        let accept = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(accept) = &accept {
            accept.abort();
        }
        accept
    }

    /// Restores a cut link on the same address.
    pub async fn restore(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.up.send_replace(true);
        self.serve(listener);
        Ok(())
    }

    fn serve(&self, listener: TcpListener) {
        let (target, bytes, up) = (self.target, self.bytes.clone(), self.up.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (bytes, mut down) = (bytes.clone(), up.subscribe());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                    let (from_client, to_client) = inbound.into_split();
                    let (from_server, to_server) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                forward(from_client, to_server, &bytes),
                                forward(from_server, to_client, &bytes)
                            )
                        } => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        *self.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(accept);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies `from` to `to` until either side closes, counting what passes.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(link: &Link) -> std::io::Result<()> {
        let mut socket = TcpStream::connect(link.addr).await?;
        socket.write_all(b"ping").await?;
        let mut answer = [0u8; 4];
        socket.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"ping");
        Ok(())
    }

    #[tokio::test]
    async fn a_cut_link_refuses_connections_and_a_restored_one_forwards_and_counts_again() {
        let link = Link::start(echo_server().await).await.expect("link");
        round_trip(&link).await.expect("up");
        assert_eq!(link.bytes(), 8, "four bytes each way");
        link.cut().await;
        let refused = TcpStream::connect(link.addr).await.expect_err("refused while cut");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        link.restore().await.expect("restore");
        round_trip(&link).await.expect("up again");
        assert_eq!(link.bytes(), 16);
    }
}
