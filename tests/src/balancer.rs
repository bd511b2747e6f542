//! A TCP load balancer in front of gateways, standing for a Kubernetes Service (or any L4
//! balancer) in cluster tests: each new connection goes to the next backend in turn that is
//! in rotation and accepts it, and bytes are copied both ways until either side closes.
//!
//! It also stands for the network between a client and its gateway. Clients are grouped in
//! *lanes* (one listening address each, one per client where a test cuts clients one by
//! one): a lane can be cut (its connections closed at once, new ones refused for a while:
//! a network drop) or frozen (bytes stop flowing both ways, connections stay open: a
//! partition, which only pings notice). A backend can be taken out of rotation (a pod that
//! is not ready) and its connections cut (a node lost).
//!
//! The balancer runs on its own runtime thread, so a test that blocks its own runtime
//! (spawning processes, waiting on them) does not stall the traffic.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long the balancer waits for a backend to accept before trying the next one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a proxied connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    /// Bytes stop moving both ways; the sockets stay open.
    Frozen,
    /// Close both sockets.
    Cut,
}

/// A lane's listening address, given to the clients of that lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub index: usize,
    pub addr: SocketAddr,
}

impl Lane {
    /// The WebSocket URL of the gateways behind this lane.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

/// A connection opened or closed through the balancer.
#[derive(Debug, Clone, Copy)]
pub struct ConnEvent {
    pub at: Instant,
    pub lane: usize,
    pub backend: usize,
    pub opened: bool,
}

struct Backend {
    addr: SocketAddr,
    in_rotation: bool,
    live: usize,
}

struct Conn {
    id: u64,
    lane: usize,
    backend: usize,
    mode: watch::Sender<Mode>,
}

struct LaneState {
    /// New connections are refused (closed at once) until then.
    offline_until: Option<Instant>,
    frozen: bool,
}

#[derive(Default)]
struct State {
    backends: Vec<Backend>,
    lanes: Vec<LaneState>,
    conns: Vec<Conn>,
    next_backend: usize,
    next_conn: u64,
    events: Vec<ConnEvent>,
}

/// A running balancer; dropping it closes every connection through it.
pub struct Balancer {
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Balancer {
    /// A balancer over `backends` (all in rotation), with no lane yet.
    pub fn start(backends: &[SocketAddr]) -> Balancer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("balancer")
            .enable_all()
            .build()
            .expect("balancer runtime");
        let state = State {
            backends: backends.iter().map(|&addr| Backend { addr, in_rotation: true, live: 0 }).collect(),
            ..State::default()
        };
        Balancer { state: Arc::new(Mutex::new(state)), runtime: Some(runtime) }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("running")
    }

    /// A new lane: a listening address whose connections go to the backends.
    pub fn lane(&self) -> Lane {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("lane listens");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let index = {
            let mut s = self.state.lock().unwrap();
            s.lanes.push(LaneState { offline_until: None, frozen: false });
            s.lanes.len() - 1
        };
        let state = self.state.clone();
        let _guard = self.runtime().enter();
        let listener = TcpListener::from_std(std_listener).unwrap();
        self.runtime().spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                tokio::spawn(proxy(state.clone(), index, client));
            }
        });
        Lane { index, addr }
    }

    /// `n` new lanes.
    pub fn lanes(&self, n: usize) -> Vec<Lane> {
        (0..n).map(|_| self.lane()).collect()
    }

    /// Takes backend `i` out of rotation (no new connections) or puts it back.
    pub fn set_in_rotation(&self, i: usize, yes: bool) {
        self.state.lock().unwrap().backends[i].in_rotation = yes;
    }

    /// Points backend `i` at another address (a gateway restarted elsewhere).
    pub fn set_backend(&self, i: usize, addr: SocketAddr) {
        self.state.lock().unwrap().backends[i].addr = addr;
    }

    /// Adds a backend, in rotation; returns its index.
    pub fn add_backend(&self, addr: SocketAddr) -> usize {
        let mut s = self.state.lock().unwrap();
        s.backends.push(Backend { addr, in_rotation: true, live: 0 });
        s.backends.len() - 1
    }

    /// Live connections per backend.
    pub fn per_backend(&self) -> Vec<usize> {
        self.state.lock().unwrap().backends.iter().map(|b| b.live).collect()
    }

    /// Live connections through lane `lane`.
    pub fn live_in(&self, lane: usize) -> usize {
        self.state.lock().unwrap().conns.iter().filter(|c| c.lane == lane).count()
    }

    /// Every connection opened and closed so far, in order.
    pub fn events(&self) -> Vec<ConnEvent> {
        self.state.lock().unwrap().events.clone()
    }

    /// A network drop on `lane`: its connections are closed now and new ones refused for
    /// `offline`.
    pub fn cut(&self, lane: usize, offline: Duration) {
        let mut s = self.state.lock().unwrap();
        s.lanes[lane].offline_until = Some(Instant::now() + offline);
        for c in s.conns.iter().filter(|c| c.lane == lane) {
            c.mode.send_replace(Mode::Cut);
        }
    }

    /// A partition of `lane`: bytes stop flowing on its connections (and on new ones) until
    /// [`Balancer::thaw`]; no socket is closed, so only the ends' timeouts notice.
    pub fn freeze(&self, lane: usize) {
        self.set_frozen(lane, true);
    }

    pub fn thaw(&self, lane: usize) {
        self.set_frozen(lane, false);
    }

    fn set_frozen(&self, lane: usize, frozen: bool) {
        let mut s = self.state.lock().unwrap();
        s.lanes[lane].frozen = frozen;
        let mode = if frozen { Mode::Frozen } else { Mode::Open };
        for c in s.conns.iter().filter(|c| c.lane == lane) {
            c.mode.send_if_modified(|m| {
                let change = *m != Mode::Cut && *m != mode;
                if change {
                    *m = mode;
                }
                change
            });
        }
    }

    /// Closes every connection to backend `i` (the backend stays in rotation).
    pub fn cut_backend(&self, i: usize) {
        for c in self.state.lock().unwrap().conns.iter().filter(|c| c.backend == i) {
            c.mode.send_replace(Mode::Cut);
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Picks a backend in turn (skipping those out of rotation or refusing), registers the
/// connection and copies bytes until either side closes or the lane cuts it.
async fn proxy(state: Arc<Mutex<State>>, lane: usize, client: TcpStream) {
    let candidates = {
        let mut s = state.lock().unwrap();
        if s.lanes[lane].offline_until.is_some_and(|t| Instant::now() < t) {
            return; // dropped: the client sees its connection closed
        }
        let n = s.backends.len();
        let start = s.next_backend;
        s.next_backend = (start + 1) % n.max(1);
        let candidates: Vec<(usize, SocketAddr)> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| s.backends[i].in_rotation)
            .map(|i| (i, s.backends[i].addr))
            .collect();
        candidates
    };
    let mut upstream = None;
    for (i, addr) in candidates {
        if let Ok(Ok(stream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            upstream = Some((i, stream));
            break;
        }
    }
    let Some((backend, upstream)) = upstream else { return };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let (mode_tx, mode_rx) = watch::channel(Mode::Open);
    let id = {
        let mut s = state.lock().unwrap();
        if s.lanes[lane].offline_until.is_some_and(|t| Instant::now() < t) {
            return; // cut while connecting
        }
        if s.lanes[lane].frozen {
            mode_tx.send_replace(Mode::Frozen);
        }
        let id = s.next_conn;
        s.next_conn += 1;
        s.backends[backend].live += 1;
        s.conns.push(Conn { id, lane, backend, mode: mode_tx });
        s.events.push(ConnEvent { at: Instant::now(), lane, backend, opened: true });
        id
    };

    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::select! {
        _ = pump(cr, uw, mode_rx.clone()) => {}
        _ = pump(ur, cw, mode_rx) => {}
    }

    let mut s = state.lock().unwrap();
    s.conns.retain(|c| c.id != id);
    s.backends[backend].live -= 1;
    s.events.push(ConnEvent { at: Instant::now(), lane, backend, opened: false });
}

/// Copies `from` to `to` while the mode is open, waits while frozen, returns when cut or
/// when either socket fails or ends.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        loop {
            match *mode.borrow_and_update() {
                Mode::Open => break,
                Mode::Cut => return,
                Mode::Frozen => {}
            }
            if mode.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                // Marked unseen again so the loop above reads the new mode.
                mode.mark_changed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that answers every byte with its own index, so a client sees where it went.
    fn backend(tag: u8) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut b = [0u8; 1];
                    while let Ok(1) = stream.read(&mut b) {
                        if stream.write_all(&[tag]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn ask(stream: &mut std::net::TcpStream) -> std::io::Result<u8> {
        use std::io::{Read, Write};
        stream.write_all(b"?")?;
        let mut b = [0u8; 1];
        match stream.read(&mut b)? {
            1 => Ok(b[0]),
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn connect(lane: &Lane) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(lane.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    #[test]
    fn connections_go_round_robin_and_skip_backends_out_of_rotation() {
        let lb = Balancer::start(&[backend(0), backend(1), backend(2)]);
        let lane = lb.lane();
        let mut seen: Vec<u8> = (0..6).map(|_| ask(&mut connect(&lane)).unwrap()).collect();
        seen.sort();
        assert_eq!(seen, [0, 0, 1, 1, 2, 2]);
        lb.set_in_rotation(1, false);
        let seen: Vec<u8> = (0..4).map(|_| ask(&mut connect(&lane)).unwrap()).collect();
        assert!(!seen.contains(&1), "{seen:?}");
    }

    #[test]
    fn a_cut_closes_the_lane_and_refuses_it_for_a_while_a_freeze_holds_bytes() {
        let lb = Balancer::start(&[backend(7)]);
        let (lane, other) = (lb.lane(), lb.lane());
        let mut a = connect(&lane);
        let mut b = connect(&other);
        assert_eq!((ask(&mut a).unwrap(), ask(&mut b).unwrap()), (7, 7));
        lb.cut(lane.index, Duration::from_secs(1));
        assert!(ask(&mut a).is_err(), "the cut connection is closed");
        assert_eq!(ask(&mut b).unwrap(), 7, "another lane is untouched");
        assert!(ask(&mut connect(&lane)).is_err(), "refused while offline");
        let deadline = Instant::now() + Duration::from_secs(5);
        while ask(&mut connect(&lane)).is_err() {
            assert!(Instant::now() < deadline, "the lane comes back after its offline time");
        }

        lb.freeze(other.index);
        b.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        // A window: a frozen link answers nothing, however long one waits.
        assert!(ask(&mut b).is_err(), "nothing comes back while frozen");
        lb.thaw(other.index);
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        use std::io::Read;
        let mut got = [0u8; 1];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, [7], "the held byte arrives after the thaw");
    }
}
