//! A TCP proxy between a client and the hub whose live connections can all be cut at once (a clean
//! close or a TCP reset), for the end-to-end resume tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::LIMIT;

type CutSignal = oneshot::Sender<(bool, oneshot::Sender<()>)>;

/// A TCP proxy whose live connections can all be cut at once.
pub struct Proxy {
    pub addr: SocketAddr,
    pipes: Arc<Mutex<Vec<CutSignal>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes: Arc<Mutex<Vec<CutSignal>>> = Arc::default();
        let registry = pipes.clone();
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let (cut_tx, cut_rx) = oneshot::channel();
                registry.lock().unwrap().push(cut_tx);
                tasks.spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        Ok((reset, done)) = cut_rx => {
                            if reset {
                                let _ = client.set_zero_linger();
                            }
                            drop((client, server));
                            let _ = done.send(());
                        }
                    }
                });
                while tasks.try_join_next().is_some() {}
            }
        });
        Proxy { addr, pipes, task }
    }

    /// Cuts every connection open now (a TCP reset when `reset`, else a clean close) and returns
    /// once they are all closed, so nothing published afterwards can reach the client through them.
    pub async fn cut(&self, reset: bool) {
        let pipes = std::mem::take(&mut *self.pipes.lock().unwrap());
        for pipe in pipes {
            let (done_tx, done_rx) = oneshot::channel();
            if pipe.send((reset, done_tx)).is_ok() {
                let _ = timeout(LIMIT, done_rx).await;
            }
        }
    }
}
