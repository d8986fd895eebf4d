//! Two real Prosody servers that federate over s2s on loopback, for tests whose
//! peers live on another server than the agent's (most Quoalise peers do).
//!
//! - One test CA signs a leaf per domain (SAN = the domain); both servers trust
//!   it (`ssl.cafile`) and require it on s2s (`s2s_secure_auth`, no dialback):
//!   federation works through TLS and SASL EXTERNAL with these certificates or
//!   not at all.
//! - No fixed global port: each server listens for s2s on port 5269 of its OWN
//!   random loopback address 127.X.Y.Z (all of 127/8 is loopback on Linux), and
//!   finds the other through a per-test hosts file handed to libunbound
//!   (`unbound = { hoststxt = …; resolvconf = … }`, lua-unbound). The domains end
//!   in `.test`, which unbound answers locally (RFC 6761): the SRV lookups
//!   (`_xmpp-server._tcp.DOMAIN`) get NXDOMAIN at once, then the A record comes
//!   from the hosts file; nothing reaches a real resolver. /etc/hosts is never
//!   touched.
//! - c2s stays on 127.0.0.1 with a free port each ([`Prosody::server`]).
//!
//! Dropping a [`Federation`] stops both servers.
//!
//! Stanza sizes (for answers that must be paged): an answer leaves the agent on
//! its own server's c2s stream (`c2s_stanza_size_limit`, 256 KiB by default in
//! 0.12 and 13), then crosses s2s into the remote server (`s2s_stanza_size_limit`,
//! 512 KiB; Prosody 13 advertises it to the sender in XEP-0478 `<limits>` and
//! refuses to send more). To test paging with small limits, start the servers
//! with `extra_config` set, e.g.
//! `Federation::start_with(home, remote)` where `home.extra_config =
//! "c2s_stanza_size_limit = 65536\n"`, then hand the federation to
//! `Federated::start_on` (tests/common/agent_harness).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use super::prosody::{Prosody, ProsodyOptions, ProsodyVersion, S2s, make_ca};

/// The agent's server in federation tests.
pub const HOME_DOMAIN: &str = "agent.test";
/// The peers' server.
pub const REMOTE_DOMAIN: &str = "remote.test";

/// The agent's server and a remote one, federating.
pub struct Federation {
    /// Serves [`HOME_DOMAIN`] (unless told otherwise): where the agent logs in.
    pub home: Prosody,
    /// Serves [`REMOTE_DOMAIN`]: where the peers log in; keeps offline messages.
    pub remote: Prosody,
    /// The CA, the hosts file and resolv.conf (dropped after the servers).
    pub shared: tempfile::TempDir,
}

impl Federation {
    /// Home: Debian's Prosody 0.12, `agent.test`. Remote: Prosody 13,
    /// `remote.test`, with `mod_offline`.
    pub async fn start() -> Federation {
        Federation::start_with(Federation::home_options(), Federation::remote_options()).await
    }

    pub fn home_options() -> ProsodyOptions {
        ProsodyOptions {
            domain: HOME_DOMAIN.to_owned(),
            version: ProsodyVersion::V012,
            ..ProsodyOptions::default()
        }
    }

    pub fn remote_options() -> ProsodyOptions {
        ProsodyOptions {
            domain: REMOTE_DOMAIN.to_owned(),
            version: ProsodyVersion::V13,
            offline: true,
            ..ProsodyOptions::default()
        }
    }

    /// Two servers with these options; their `ca_dir` and `s2s` are set here
    /// (their domains must differ; TLS is forced on).
    pub async fn start_with(mut home: ProsodyOptions, mut remote: ProsodyOptions) -> Federation {
        assert_ne!(home.domain, remote.domain);
        let shared = tempfile::Builder::new()
            .prefix("federation-test-")
            .tempdir()
            .expect("temp dir");
        let path = shared.path();
        make_ca(path);
        let home_address = loopback_address(&[]);
        let remote_address = loopback_address(&[home_address]);
        std::fs::write(
            path.join("hosts"),
            format!(
                "{home_address} {}\n{remote_address} {}\n",
                home.domain, remote.domain
            ),
        )
        .unwrap();
        // Only used for names outside the hosts file and outside `.test`: a
        // resolver that is not there, so nothing leaves the machine.
        std::fs::write(path.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        allow_prosody_to_read(path);

        for (options, address) in [(&mut home, home_address), (&mut remote, remote_address)] {
            options.tls = true;
            options.ca_dir = Some(path.to_owned());
            options.s2s = Some(S2s {
                address,
                hosts_file: path.join("hosts"),
                resolv_conf: path.join("resolv.conf"),
            });
        }
        let (home, remote) = tokio::join!(Prosody::start_with(home), Prosody::start_with(remote));
        Federation {
            home,
            remote,
            shared,
        }
    }
}

/// A random 127.X.Y.Z (X ≥ 1: not 127.0.0.1 nor Debian's 127.0.1.1) whose port
/// 5269 is free, other than `taken`.
fn loopback_address(taken: &[Ipv4Addr]) -> Ipv4Addr {
    for _ in 0..100 {
        let n = rand::random::<u32>();
        let address = Ipv4Addr::new(
            127,
            1 + (n % 254) as u8,
            (n >> 8) as u8,
            1 + ((n >> 16) % 254) as u8,
        );
        if !taken.contains(&address) && TcpListener::bind((address, 5269)).is_ok() {
            return address;
        }
    }
    panic!("no free loopback address with port 5269 after 100 tries");
}

/// The directory and what it holds readable (not writable) by `prosody`; the
/// CA's key stays root's.
fn allow_prosody_to_read(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["ca.pem", "hosts", "resolv.conf"] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}
