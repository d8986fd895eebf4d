//! systemd service notifications (`Type=notify`) and the watchdog.
//!
//! The agent tells systemd where it is through `sd_notify(3)` messages: READY once
//! the configuration is valid, the store open and the web port bound; RELOADING then
//! READY around a SIGHUP reload, with a STATUS line saying whether the new
//! configuration was applied or rejected (and why); STOPPING at shutdown.
//!
//! The watchdog (`WatchdogSec=` in the unit, `WATCHDOG_USEC` in our environment) is
//! pinged at half its period, but only while the main loop proves it is alive: the
//! main loop calls [`Heartbeat::beat`] (every [`Watchdog::beat_interval`]) and the
//! watchdog task withholds its ping when the last beat is older than the ping
//! interval. A main loop stuck on a lock or a blocking call thus stops the pings, and
//! systemd restarts the agent, while a healthy one never misses a ping.
//!
//! Everything here is a no-op when `NOTIFY_SOCKET` is unset (the agent run by hand
//! or in tests). A failed notification is logged as a warning, never fatal: systemd
//! would notice by itself (start timeout, watchdog).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Whether the process was started with a notification socket (by systemd with
/// `Type=notify`, or by a test).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// A STATUS= value is one line of the message: a newline would end it (and could
/// inject another assignment), so multi-line text is joined with "; ".
fn one_line(status: &str) -> String {
    status
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// READY=1 with a status line: startup is complete (config valid, store open, web
/// port bound). Also ends a reload (see [`reloaded`]).
pub fn ready(status: &str) {
    let status = one_line(status);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Only a status line (`systemctl status` shows it).
pub fn status(status: &str) {
    let status = one_line(status);
    send(&[NotifyState::Status(&status)]);
}

/// RELOADING=1: a reload (SIGHUP) has started. Sent with MONOTONIC_USEC, which
/// newer systemd requires with RELOADING and older versions ignore. Must be
/// followed by [`reloaded`] or [`reload_rejected`].
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    states.push(NotifyState::Status("reloading configuration"));
    send(&states);
}

/// The reload applied the new configuration: READY=1 and `status`, e.g.
/// "reloaded: 3 peers" or "reloaded; xmpp.jid needs a restart".
pub fn reloaded(status: &str) {
    ready(status);
}

/// The new configuration was invalid and the old one is kept: READY=1 and
/// `STATUS=reload rejected: <reasons>` (reasons joined on one line).
pub fn reload_rejected(reasons: &str) {
    ready(&format!("reload rejected: {}", one_line(reasons)));
}

/// STOPPING=1 with a status line: shutdown has begun.
pub fn stopping(status: &str) {
    let status = one_line(status);
    send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

/// Proof of life of the main loop: a cheap-to-clone timestamp of its last beat.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    inner: Arc<HeartbeatInner>,
}

#[derive(Debug)]
struct HeartbeatInner {
    origin: Instant,
    /// Milliseconds from `origin` to the last beat.
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new() -> Heartbeat {
        Heartbeat {
            inner: Arc::new(HeartbeatInner {
                origin: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The main loop is alive now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed));
        self.inner.origin.elapsed().saturating_sub(last)
    }
}

/// The systemd watchdog of this process, when one is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchdog {
    /// `WATCHDOG_USEC`: systemd kills the service when no ping came for this long.
    timeout: Duration,
}

impl Watchdog {
    /// The watchdog systemd set up for us (`WATCHDOG_USEC`, and `WATCHDOG_PID` if
    /// set naming this process), or `None`: no watchdog, or no `NOTIFY_SOCKET` to
    /// ping it through.
    pub fn from_env() -> Option<Watchdog> {
        if !enabled() {
            return None;
        }
        sd_notify::watchdog_enabled()
            .filter(|t| !t.is_zero())
            .map(|timeout| Watchdog { timeout })
    }

    /// The `WatchdogSec=` of the unit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often the watchdog is pinged: half the timeout, as systemd recommends.
    pub fn ping_interval(&self) -> Duration {
        self.timeout / 2
    }

    /// How often the main loop should call [`Heartbeat::beat`]: a quarter of the
    /// timeout, so that a beat is always fresher than [`Watchdog::ping_interval`]
    /// even when a tick comes late.
    pub fn beat_interval(&self) -> Duration {
        self.timeout / 4
    }

    /// Starts the task that pings the watchdog every [`Watchdog::ping_interval`]
    /// while `heartbeat` is fresher than that interval. Abort the handle (or let
    /// the runtime end) to stop it.
    pub fn spawn(self, heartbeat: Heartbeat) -> tokio::task::JoinHandle<()> {
        let interval = self.ping_interval();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut withheld = false;
            loop {
                ticks.tick().await;
                let age = heartbeat.age();
                if age <= interval {
                    if withheld {
                        tracing::info!("main loop alive again; watchdog pings resumed");
                        withheld = false;
                    }
                    send(&[NotifyState::Watchdog]);
                } else if !withheld {
                    tracing::error!(
                        stalled_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                        "main loop unresponsive; watchdog pings withheld, \
                         systemd will restart the agent"
                    );
                    withheld = true;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::process::{Command, Stdio};

    /// Set in the child process run by the tests below.
    const CHILD: &str = "QUOALISE_SYSTEMD_TEST_CHILD";

    /// Runs the ignored test `name` of this test binary in a child process with
    /// `env` (NOTIFY_SOCKET/WATCHDOG_* removed unless given), so that the
    /// environment systemd would set is real without touching ours, and returns
    /// every datagram the child sent to `socket`.
    ///
    /// The socket is read while the child runs, as systemd does: Linux queues at
    /// most `net.unix.max_dgram_qlen` (10) datagrams, then the sender blocks.
    fn run_child(name: &str, env: &[(&str, &str)], socket: Option<&NotifySocket>) -> Vec<String> {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(socket) = socket {
            cmd.env("NOTIFY_SOCKET", &socket.path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut messages = Vec::new();
        let out = match socket {
            None => child.wait_with_output().unwrap(),
            Some(socket) => {
                // Collect output in a thread so that a chatty child cannot block on
                // a full pipe while we read the socket.
                let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
                let mut buf = [0u8; 4096];
                loop {
                    match socket.socket.recv(&mut buf) {
                        Ok(n) => messages.push(String::from_utf8(buf[..n].to_vec()).unwrap()),
                        // Timed out: done once the child has exited and nothing is left.
                        Err(_) if waiter.is_finished() => break,
                        Err(_) => {}
                    }
                }
                waiter.join().unwrap()
            }
        };
        assert!(
            out.status.success(),
            "child {name} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        messages
    }

    /// A listening notification socket, as systemd provides.
    struct NotifySocket {
        _dir: tempfile::TempDir,
        path: String,
        socket: UnixDatagram,
    }

    impl NotifySocket {
        fn new() -> NotifySocket {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify.sock");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            NotifySocket {
                path: path.to_str().unwrap().to_owned(),
                _dir: dir,
                socket,
            }
        }
    }

    #[test]
    fn lifecycle_messages_reach_the_notify_socket() {
        let sock = NotifySocket::new();
        let messages = run_child("systemd::tests::child_lifecycle", &[], Some(&sock));
        assert_eq!(messages.len(), 5, "{messages:?}");
        assert_eq!(messages[0], "READY=1\nSTATUS=ready: 2 peers\n");
        assert!(
            messages[1].starts_with("RELOADING=1\nMONOTONIC_USEC=")
                && messages[1].ends_with("\nSTATUS=reloading configuration\n"),
            "{messages:?}"
        );
        assert_eq!(
            messages[2],
            "READY=1\nSTATUS=reload rejected: xmpp.jid: not a full JID; peers[0].jid: missing\n"
        );
        assert_eq!(messages[3], "STATUS=serving 2 peers\n");
        assert_eq!(messages[4], "STOPPING=1\nSTATUS=stopping: SIGTERM\n");
    }

    #[test]
    #[ignore = "child process of lifecycle_messages_reach_the_notify_socket"]
    fn child_lifecycle() {
        if std::env::var_os(CHILD).is_none() {
            return; // only meaningful as a child: `cargo test -- --include-ignored` skips it
        }
        assert!(enabled());
        ready("ready: 2 peers");
        reloading();
        reload_rejected("xmpp.jid: not a full JID\npeers[0].jid: missing\n");
        status("serving 2 peers");
        stopping("stopping: SIGTERM");
    }

    /// The watchdog is pinged while the heartbeat is fresh, and pings stop once the
    /// main loop stops beating. The child marks the two phases with STATUS lines.
    #[test]
    fn watchdog_pings_only_while_the_main_loop_beats() {
        let sock = NotifySocket::new();
        let messages = run_child(
            "systemd::tests::child_watchdog",
            // 200 ms: pings every 100 ms, beats every 50 ms.
            &[("WATCHDOG_USEC", "200000")],
            Some(&sock),
        );
        let pings_between = |from: &str, to: &str| {
            let start = messages.iter().position(|m| m == from).unwrap();
            let end = messages.iter().position(|m| m == to).unwrap();
            messages[start..end]
                .iter()
                .filter(|m| *m == "WATCHDOG=1\n")
                .count()
        };
        // About 10 pings in 1 s of beating; fewer only if the machine stalls.
        let alive = pings_between("STATUS=beating\n", "STATUS=stalled\n");
        assert!(alive >= 4, "{alive} pings while beating: {messages:?}");
        // A beat is at most 100 ms old for at most one tick after the stall
        // begins, so at most one ping (two if a tick lands on the edge).
        let stalled = pings_between("STATUS=stalled\n", "STATUS=done\n");
        assert!(stalled <= 2, "{stalled} pings while stalled: {messages:?}");
        assert!(
            messages
                .iter()
                .all(|m| m == "WATCHDOG=1\n" || m.starts_with("STATUS="))
        );
    }

    #[test]
    #[ignore = "child process of watchdog_pings_only_while_the_main_loop_beats"]
    fn child_watchdog() {
        if std::env::var_os(CHILD).is_none() {
            return; // only meaningful as a child: `cargo test -- --include-ignored` skips it
        }
        let watchdog = Watchdog::from_env().expect("WATCHDOG_USEC set");
        assert_eq!(watchdog.timeout(), Duration::from_millis(200));
        assert_eq!(watchdog.ping_interval(), Duration::from_millis(100));
        assert_eq!(watchdog.beat_interval(), Duration::from_millis(50));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let heartbeat = Heartbeat::new();
            status("beating");
            let task = watchdog.spawn(heartbeat.clone());
            let mut beats = tokio::time::interval(watchdog.beat_interval());
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                beats.tick().await;
                heartbeat.beat();
            }
            status("stalled");
            tokio::time::sleep(Duration::from_secs(1)).await;
            status("done");
            task.abort();
        });
    }

    #[test]
    fn without_notify_socket_nothing_is_set_up() {
        run_child(
            "systemd::tests::child_without_socket",
            &[("WATCHDOG_USEC", "200000")],
            None,
        );
    }

    #[test]
    #[ignore = "child process of without_notify_socket_nothing_is_set_up"]
    fn child_without_socket() {
        if std::env::var_os(CHILD).is_none() {
            return; // only meaningful as a child: `cargo test -- --include-ignored` skips it
        }
        assert!(!enabled());
        // No socket to ping through: no watchdog task, whatever WATCHDOG_USEC says.
        assert_eq!(Watchdog::from_env(), None);
        ready("ready");
        reloading();
        stopping("stopping");
    }

    #[test]
    fn heartbeat_age_grows_until_the_next_beat() {
        let hb = Heartbeat::new();
        std::thread::sleep(Duration::from_millis(30));
        assert!(hb.age() >= Duration::from_millis(30));
        hb.clone().beat();
        assert!(hb.age() < Duration::from_millis(30));
    }

    #[test]
    fn status_lines_never_span_lines() {
        assert_eq!(one_line("a\n\n  b \r\nc"), "a; b; c");
        assert_eq!(one_line("single"), "single");
    }
}
