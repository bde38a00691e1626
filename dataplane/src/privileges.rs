//! Giving up privileges once the devices are open.
//!
//! `scd` needs root (or a wide capability set) only to create TAP devices, enter
//! network namespaces and open packet sockets. Once its ports and tunnel socket are
//! open, it keeps `CAP_NET_ADMIN` (TAP and link changes, including removing the TAPs
//! it created on exit) and `CAP_NET_RAW` (packet sockets) and nothing else, in every
//! capability set including the bounding set, with `no_new_privs`, optionally as a
//! dedicated user. This must run while the process has one thread: Linux keeps
//! capabilities per thread, and threads spawned afterwards inherit the reduced sets.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};
use std::fmt;

/// The capabilities `scd` keeps while it runs.
pub const KEPT: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];

/// Why privileges could not be dropped; `scd` refuses to run then.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The configured user does not exist.
    #[error("user `{0}` does not exist (create it, e.g. `useradd --system --no-create-home scd`)")]
    NoSuchUser(String),
    /// A system call refused.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// More than one thread exists, so a drop would miss the others.
    #[error("privileges must be dropped before any thread starts ({0} threads running)")]
    Threads(usize),
}

fn sys<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> PrivilegeError {
    move |e| PrivilegeError::Sys {
        what,
        source: Box::new(e),
    }
}

/// What the process runs with after [`drop_privileges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Real, effective and saved user id.
    pub uid: u32,
    /// Real, effective and saved group id.
    pub gid: u32,
    /// The permitted (and effective) capabilities left.
    pub kept: Vec<Capability>,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.kept.iter().map(ToString::to_string).collect();
        write!(
            f,
            "uid {} gid {} capabilities {}",
            self.uid,
            self.gid,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(",")
            }
        )
    }
}

/// Threads of this process, from `/proc/self/task`.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// Keeps only [`KEPT`] (those of them the process has), switching to `user` first
/// when given. Fails, changing nothing that matters, when a thread other than the
/// caller exists.
pub fn drop_privileges(user: Option<&str>) -> Result<Dropped, PrivilegeError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(PrivilegeError::Threads(threads));
    }
    let permitted = caps::read(None, CapSet::Permitted).map_err(sys("reading capabilities"))?;
    let keep: CapsHashSet = KEPT
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();

    // The bounding set can shrink only while CAP_SETPCAP is held, so before setuid.
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::all() {
            if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(sys("shrinking bounding set"))?;
            }
        }
    }
    if let Some(name) = user {
        let account = User::from_name(name)
            .map_err(sys("looking up user"))?
            .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_string()))?;
        // Without keep-caps, changing uid away from 0 clears every capability.
        nix::sys::prctl::set_keepcaps(true).map_err(sys("prctl(PR_SET_KEEPCAPS)"))?;
        nix::unistd::setgroups(&[account.gid]).map_err(sys("setgroups"))?;
        nix::unistd::setresgid(account.gid, account.gid, account.gid).map_err(sys("setresgid"))?;
        nix::unistd::setresuid(account.uid, account.uid, account.uid).map_err(sys("setresuid"))?;
        nix::sys::prctl::set_keepcaps(false).map_err(sys("prctl(PR_SET_KEEPCAPS)"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(sys("clearing ambient capabilities"))?;
    caps::clear(None, CapSet::Inheritable).map_err(sys("clearing inheritable capabilities"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(sys("setting effective capabilities"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(sys("setting permitted capabilities"))?;
    nix::sys::prctl::set_no_new_privs().map_err(sys("prctl(PR_SET_NO_NEW_PRIVS)"))?;

    let mut kept: Vec<Capability> = caps::read(None, CapSet::Effective)
        .map_err(sys("reading capabilities"))?
        .into_iter()
        .collect();
    kept.sort_by_key(|c| c.index());
    Ok(Dropped {
        uid: Uid::current().as_raw(),
        gid: Gid::current().as_raw(),
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_when_other_threads_exist() {
        // A second thread of our own, whatever thread the harness runs tests on.
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || parked.recv());
        let err = drop_privileges(None).expect_err("two threads run");
        drop(stop);
        let _ = other.join();
        assert!(matches!(err, PrivilegeError::Threads(n) if n > 1), "{err}");
        let still = caps::read(None, CapSet::Permitted).unwrap();
        let effective = caps::read(None, CapSet::Effective).unwrap();
        assert!(effective.is_subset(&still), "nothing was dropped half way");
    }

    #[test]
    fn names_what_is_kept() {
        let d = Dropped {
            uid: 65534,
            gid: 65534,
            kept: KEPT.to_vec(),
        };
        assert_eq!(
            d.to_string(),
            "uid 65534 gid 65534 capabilities CAP_NET_ADMIN,CAP_NET_RAW"
        );
    }
}
