//! A TCP proxy between the scheduler and its `redis-server`, to break the
//! network on purpose: close every connection, swallow traffic (a half-open
//! connection: the peer looks alive but never answers), or add latency.
//! Point the scheduler at [`Proxy::url`] instead of the server's URL.
//!
//! One-shot triggers act on a chosen command, found by scanning the bytes a
//! client sends (e.g. an `FCALL` function name's tail, `_claim\r\n`):
//! [`Proxy::close_after`] forwards it and closes the connection before its
//! reply comes back (the reply is lost, the command ran), and
//! [`Proxy::duplicate`] delivers it a second time, later, on a connection of
//! its own (a request that arrives twice).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// What a one-shot trigger does to the first chunk that contains its pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerAction {
    /// Forward the chunk, drop every reply after it, close the connection.
    CloseAfter,
    /// Forward the chunk, and send it again after this delay on a new
    /// connection to the server (its replies are discarded).
    Duplicate(Duration),
    /// Turn the whole proxy to [`Mode::Blackhole`], forward the chunk (the
    /// server runs it, its reply is swallowed) and close every connection
    /// 100 ms later: the client's re-send hangs until the test sets the mode
    /// back, so that it can change the data in between.
    LoseReply,
}

#[derive(Clone, Debug)]
struct Trigger {
    pattern: Vec<u8>,
    action: TriggerAction,
}

/// A trigger that fired: its action and pattern, and when (µs since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub action: TriggerAction,
    pub pattern: String,
    pub t: i64,
}

struct Shared {
    upstream: u16,
    mode: Mutex<Mode>,
    /// Bumped to close every open connection.
    kill: watch::Sender<u64>,
    accepted: AtomicUsize,
    triggers: Mutex<Vec<Trigger>>,
    fired: Mutex<Vec<Fired>>,
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
            triggers: Mutex::new(Vec::new()),
            fired: Mutex::new(Vec::new()),
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

    /// Arms a one-shot trigger: the next chunk a client sends that contains
    /// `pattern` is forwarded, then the connection is closed with every reply
    /// from then on dropped.
    pub fn close_after(&self, pattern: &[u8]) {
        self.arm(pattern, TriggerAction::CloseAfter);
    }

    /// Arms a one-shot trigger: the next chunk a client sends that contains
    /// `pattern` is forwarded, and delivered again `delay` later on a new
    /// connection of its own.
    pub fn duplicate(&self, pattern: &[u8], delay: Duration) {
        self.arm(pattern, TriggerAction::Duplicate(delay));
    }

    fn arm(&self, pattern: &[u8], action: TriggerAction) {
        self.shared.triggers.lock().unwrap().push(Trigger {
            pattern: pattern.to_vec(),
            action,
        });
    }

    /// Arms a one-shot [`TriggerAction::LoseReply`] trigger on `pattern`
    /// (e.g. a script's function name).
    pub fn lose_reply_of(&self, pattern: &[u8]) {
        self.arm(pattern, TriggerAction::LoseReply);
    }

    /// Waits until a [`TriggerAction::LoseReply`] trigger went off and its
    /// connections were closed (panics after 10 s).
    pub async fn tripped(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self
            .fired()
            .iter()
            .any(|f| f.action == TriggerAction::LoseReply)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the proxy's trap never went off"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The connections are closed 100 ms after the chunk went through.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    /// Drops the triggers that have not fired.
    pub fn disarm(&self) {
        self.shared.triggers.lock().unwrap().clear();
    }

    /// The triggers that fired so far.
    pub fn fired(&self) -> Vec<Fired> {
        self.shared.fired.lock().unwrap().clone()
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
    // Set once a close-after trigger fired: replies are dropped from then on.
    let muted = Arc::new(AtomicBool::new(false));
    tokio::select! {
        _ = pump(Arc::clone(&shared), cr, sw, Arc::clone(&muted)) => {}
        _ = pump_replies(Arc::clone(&shared), sr, cw, muted) => {}
        _ = kill.changed() => {}
    }
    // Dropping the halves closes both sockets.
}

/// The first armed trigger whose pattern `chunk` contains, removed.
fn take_trigger(shared: &Shared, chunk: &[u8]) -> Option<Trigger> {
    let mut triggers = shared.triggers.lock().unwrap();
    let i = triggers.iter().position(|t| {
        !t.pattern.is_empty() && chunk.windows(t.pattern.len()).any(|w| w == t.pattern)
    })?;
    let trigger = triggers.remove(i);
    shared.fired.lock().unwrap().push(Fired {
        action: trigger.action,
        pattern: String::from_utf8_lossy(&trigger.pattern).trim().to_string(),
        t: chrono::Utc::now().timestamp_micros(),
    });
    Some(trigger)
}

/// The length of the next chunk read into `buf` that the mode lets through
/// (swallowed while blackholed, held back while delayed); `None` once the
/// connection is closed.
async fn next_chunk(shared: &Shared, from: &mut OwnedReadHalf, buf: &mut [u8]) -> Option<usize> {
    loop {
        let n = match from.read(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        match shared.mode() {
            Mode::Blackhole => continue,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass => {}
        }
        return Some(n);
    }
}

/// Client to server: forwards, and carries out triggers.
async fn pump(
    shared: Arc<Shared>,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    muted: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(n) = next_chunk(&shared, &mut from, &mut buf).await {
        let trigger = take_trigger(&shared, &buf[..n]);
        if matches!(&trigger, Some(t) if t.action == TriggerAction::CloseAfter) {
            muted.store(true, Ordering::SeqCst);
        }
        if matches!(&trigger, Some(t) if t.action == TriggerAction::LoseReply) {
            *shared.mode.lock().unwrap() = Mode::Blackhole;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        match trigger.map(|t| t.action) {
            Some(TriggerAction::CloseAfter) => {
                // Give the server time to run the command, then close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            Some(TriggerAction::Duplicate(delay)) => {
                let bytes = buf[..n].to_vec();
                let upstream = shared.upstream;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let Ok(mut side) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    if side.write_all(&bytes).await.is_err() {
                        return;
                    }
                    let mut sink = vec![0u8; 16 * 1024];
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while matches!(side.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                });
            }
            Some(TriggerAction::LoseReply) => {
                let closer = Arc::clone(&shared);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    closer.kill.send_modify(|n| *n += 1);
                });
            }
            None => {}
        }
    }
}

/// Server to client: forwards until a close-after trigger mutes the connection.
async fn pump_replies(
    shared: Arc<Shared>,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    muted: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(n) = next_chunk(&shared, &mut from, &mut buf).await {
        if muted.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
