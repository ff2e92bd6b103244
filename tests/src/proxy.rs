//! A TCP proxy between the scheduler and its `redis-server`, to break the
//! network on purpose: close every connection, swallow traffic (a half-open
//! connection: the peer looks alive but never answers), or add latency.
//! Point the scheduler at [`Proxy::url`] instead of the server's URL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Accept connections but never forward a byte either way (new and
    /// existing connections): a hung network path or a half-open socket.
    Blackhole,
    /// Forward after this delay per chunk.
    Delay(Duration),
}

struct Shared {
    upstream: u16,
    mode: Mutex<Mode>,
    /// Bumped to close every open connection.
    kill: watch::Sender<u64>,
    accepted: AtomicUsize,
    /// A one-shot trap: the next client chunk containing these bytes loses
    /// its reply (see [`Proxy::lose_reply_of`]).
    trap: Mutex<Option<Vec<u8>>>,
    /// How many traps went off.
    tripped: AtomicUsize,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            kill: watch::Sender::new(0),
            accepted: AtomicUsize::new(0),
            trap: Mutex::new(None),
            tripped: AtomicUsize::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accept_shared.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(handle(Arc::clone(&accept_shared), client));
            }
        });
        Proxy {
            port,
            shared,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Changes the mode. Leaving `Blackhole` closes every connection, since
    /// the ones that had bytes swallowed are out of step with the server.
    pub fn set_mode(&self, mode: Mode) {
        let previous = std::mem::replace(&mut *self.shared.mode.lock().unwrap(), mode);
        if previous == Mode::Blackhole && mode != Mode::Blackhole {
            self.close_all();
        }
    }

    /// Closes every open connection (both sides see the socket close).
    pub fn close_all(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    /// Arms a one-shot trap: the next chunk a client sends that contains
    /// `pattern` (e.g. a script's function name) is forwarded to the server,
    /// which runs it, but its reply is lost: the proxy turns to
    /// [`Mode::Blackhole`] before forwarding it and closes every connection
    /// 100 ms later. The client's re-send then hangs until the test sets the
    /// mode back (`set_mode(Mode::Pass)`), so that the test can change the
    /// data in between (through another connection).
    pub fn lose_reply_of(&self, pattern: &[u8]) {
        *self.shared.trap.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Waits until an armed trap went off (panics after 10 s).
    pub async fn tripped(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.shared.tripped.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the proxy's trap never went off"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The connections are closed 100 ms after the chunk went through.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    /// Connections accepted so far (reconnects show up here).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.close_all();
    }
}

async fn handle(shared: Arc<Shared>, client: TcpStream) {
    let mut kill = shared.kill.subscribe();
    kill.borrow_and_update();
    let _ = client.set_nodelay(true);
    if shared.mode() == Mode::Blackhole {
        // Accepted, never forwarded: read and drop until closed or killed.
        let (mut r, _w) = client.into_split();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                _ = kill.changed() => return,
                n = r.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) { return },
            }
        }
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pump(Arc::clone(&shared), cr, sw, true) => {}
        _ = pump(Arc::clone(&shared), sr, cw, false) => {}
        _ = kill.changed() => {}
    }
    // Dropping the halves closes both sockets.
}

/// Whether `chunk` springs the armed trap (disarming it).
fn trap_goes_off(shared: &Shared, chunk: &[u8]) -> bool {
    let mut trap = shared.trap.lock().unwrap();
    let hit = trap
        .as_deref()
        .is_some_and(|p| chunk.windows(p.len()).any(|w| w == p));
    if hit {
        *trap = None;
    }
    hit
}

async fn pump(
    shared: Arc<Shared>,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    from_client: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if from_client && trap_goes_off(&shared, &buf[..n]) {
            // Nothing flows any more (the reply is swallowed), but this chunk
            // reaches the server; then every connection closes.
            *shared.mode.lock().unwrap() = Mode::Blackhole;
            let _ = to.write_all(&buf[..n]).await;
            shared.tripped.fetch_add(1, Ordering::SeqCst);
            let closer = Arc::clone(&shared);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                closer.kill.send_modify(|n| *n += 1);
            });
            continue;
        }
        match shared.mode() {
            Mode::Blackhole => continue,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
