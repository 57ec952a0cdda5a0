//! `trackflow-bench delay`: a TCP relay that adds a fixed round-trip time, for measuring the
//! server against a database on another machine (the usual place of a shared PostgreSQL). Run
//! it in front of PostgreSQL and point `--postgres` at it; any build of the benchmark can use it,
//! so an A/B against an older commit sees the same network.
//!
//! Each chunk read from one side is written to the other half the round-trip time after it
//! arrived, in order: a one-way delay each way, as a link adds, without limiting bandwidth.

use clap::Args;
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedReadHalf, tcp::OwnedWriteHalf, TcpListener, TcpStream},
    sync::mpsc,
    time::Instant,
};

/// Options of the hidden `trackflow-bench delay` command.
#[derive(Debug, Args)]
pub struct DelayArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:15432")]
    listen: SocketAddr,
    /// Where to relay to.
    #[arg(long, default_value = "127.0.0.1:5432")]
    to: SocketAddr,
    /// Round-trip time added, in microseconds.
    #[arg(long, default_value_t = 1_000)]
    rtt_us: u64,
}

/// Relays every connection to `--listen` to `--to`, delayed, until killed.
pub async fn relay(args: DelayArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let one_way = Duration::from_micros(args.rtt_us / 2);
    eprintln!("relaying {} -> {} with {} µs round trip", args.listen, args.to, args.rtt_us);
    loop {
        let (client, _) = listener.accept().await?;
        let to = args.to;
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(to).await else { return };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(one_direction(client_read, server_write, one_way));
            tokio::spawn(one_direction(server_read, client_write, one_way));
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn one_direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 || chunks.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(chunks);
    let _ = writer.await;
}
