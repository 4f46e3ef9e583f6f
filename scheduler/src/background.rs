//! [`Background`]: work that outlives the request that started it (a query whose client reads
//! its result from the executors), owned by the server: it stops when the server stops.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Hands work to the server's background driver.
#[derive(Clone)]
pub struct Background(mpsc::UnboundedSender<Work>);

impl Background {
    /// A handle, and the driver the server runs for as long as it serves.
    pub fn new() -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self(sender), drive(receiver))
    }

    /// Runs `work` until it ends or the server stops.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        // Without a driver the server is stopping: the work is dropped, which ends it.
        let _ = self.0.send(Box::pin(work));
    }
}

async fn drive(mut incoming: mpsc::UnboundedReceiver<Work>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            work = incoming.recv() => match work {
                Some(work) => {
                    running.spawn(work);
                }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}
