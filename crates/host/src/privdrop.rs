//! The QEMU user and the switch to it before exec.
//!
//! Who QEMU runs as, and the switch to that identity between fork and exec
//! (libvirt's qemu.conf `user`/`group` and `virSetUIDGIDWithCaps`: libvirt
//! forks, changes groups, gid and uid in the child and drops every
//! capability, it does not use QEMU's `-runas`).
//!
//! The user comes from `--qemu-user` ([`set_qemu_user`]), else
//! `TEAMVIRT_QEMU_USER`, else the dedicated `teamvirt-qemu` system user,
//! created on first use. `root` (or `+0`) keeps QEMU on uid 0, but still
//! without capabilities (libvirt's `clear_emulator_capabilities = 1`).
//! A teamvirt that is not root cannot switch: QEMU runs as the caller.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming the QEMU user (`USER[:GROUP]`, `root`, `+UID[:+GID]`).
pub const QEMU_USER_ENV: &str = "TEAMVIRT_QEMU_USER";
/// The user created for QEMU when none is configured.
pub const DEFAULT_QEMU_USER: &str = "teamvirt-qemu";

static CONFIGURED: OnceLock<String> = OnceLock::new();

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("invalid QEMU user '{0}': expected USER[:GROUP], +UID[:+GID] or root")]
    Syntax(String),
    #[error("QEMU user '{0}' does not exist (create it, or choose another with --qemu-user or {QEMU_USER_ENV})")]
    NoUser(String),
    #[error("QEMU group '{0}' does not exist")]
    NoGroup(String),
    #[error("cannot create the QEMU user '{DEFAULT_QEMU_USER}' with useradd: {0} (create it by hand, or choose another user with --qemu-user or {QEMU_USER_ENV})")]
    Create(String),
    #[error("cannot run QEMU as '{spec}': teamvirt is not running as root, so QEMU runs as the calling user (uid {uid}); drop --qemu-user / {QEMU_USER_ENV}")]
    NotRoot { spec: String, uid: u32 },
    #[error("cannot look up QEMU user '{name}': {source}")]
    Lookup { name: String, source: io::Error },
}

/// Set the QEMU user for this process (the CLI's `--qemu-user`); wins over
/// the environment. Only the first call counts.
pub fn set_qemu_user(spec: &str) {
    let _ = CONFIGURED.set(spec.to_owned());
}

/// The identity QEMU gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// What it was asked as (for messages).
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's, e.g. `kvm`), or none.
    pub groups: Vec<u32>,
    /// False when teamvirt is not root: QEMU keeps teamvirt's identity.
    pub switch: bool,
}

/// The configured spec: [`set_qemu_user`], else the environment, else the default.
fn configured() -> (String, bool) {
    if let Some(s) = CONFIGURED.get() {
        return (s.clone(), true);
    }
    match std::env::var(QEMU_USER_ENV) {
        Ok(s) if !s.is_empty() => (s, true),
        _ => (DEFAULT_QEMU_USER.to_owned(), false),
    }
}

/// Does each VM get its own dynamic uid/gid (the `dynuid` module)? Yes
/// when teamvirt is root and no user was asked for (`--qemu-user`,
/// `TEAMVIRT_QEMU_USER`): then [`qemu_identity`] is only the probes'.
pub fn dynamic_per_vm() -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    euid == 0 && !configured().1
}

/// The identity a running process has (its real uid and gid, its
/// supplementary groups), as QEMU's files are lent to it (hotplug).
pub fn process_identity(pid: i32) -> io::Result<Identity> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |k: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/status"));
    let uid = *field("Uid:").first().ok_or_else(bad)?;
    let gid = *field("Gid:").first().ok_or_else(bad)?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    Ok(Identity {
        name: format!("+{uid}:+{gid}"),
        uid,
        gid,
        groups: field("Groups:"),
        switch: root,
    })
}

/// Resolve the configured QEMU identity, creating the default user if it is
/// missing (root only).
pub fn qemu_identity() -> Result<Identity, PrivError> {
    let (spec, explicit) = configured();
    // SAFETY: geteuid/getegid have no preconditions.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid != 0 {
        let me = Identity {
            name: format!("+{euid}"),
            uid: euid,
            gid: egid,
            groups: Vec::new(),
            switch: false,
        };
        if explicit {
            // Asking for oneself is fine; anything else cannot be done.
            let same = resolve(&spec).is_ok_and(|i| i.uid == euid);
            if !same {
                return Err(PrivError::NotRoot { spec, uid: euid });
            }
        }
        return Ok(me);
    }
    match resolve(&spec) {
        Err(PrivError::NoUser(u)) if !explicit && u == DEFAULT_QEMU_USER => {
            create_default_user()?;
            resolve(&spec)
        }
        r => r,
    }
}

/// `USER[:GROUP]`, `+UID[:+GID]`, `root`.
pub fn resolve(spec: &str) -> Result<Identity, PrivError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) {
        return Err(PrivError::Syntax(spec.to_owned()));
    }
    let (uid, user_gid, uname) = if let Some(n) = u.strip_prefix('+') {
        let uid: u32 = n.parse().map_err(|_| PrivError::Syntax(spec.to_owned()))?;
        let (gid, name) = match getpwuid(uid).map_err(|source| PrivError::Lookup {
            name: u.to_owned(),
            source,
        })? {
            Some((gid, name)) => (gid, Some(name)),
            None => (uid, None),
        };
        (uid, gid, name)
    } else {
        let (uid, gid) = getpwnam(u)
            .map_err(|source| PrivError::Lookup {
                name: u.to_owned(),
                source,
            })?
            .ok_or_else(|| PrivError::NoUser(u.to_owned()))?;
        (uid, gid, Some(u.to_owned()))
    };
    let gid = match g {
        None => user_gid,
        Some(g) => match g.strip_prefix('+') {
            Some(n) => n.parse().map_err(|_| PrivError::Syntax(spec.to_owned()))?,
            None => getgrnam(g)
                .map_err(|source| PrivError::Lookup {
                    name: g.to_owned(),
                    source,
                })?
                .ok_or_else(|| PrivError::NoGroup(g.to_owned()))?,
        },
    };
    // The user's own supplementary groups (libvirt: virGetGroupList), so a
    // user in `kvm` can open /dev/kvm.
    let groups = match &uname {
        Some(n) => grouplist(n, gid),
        None => vec![gid],
    };
    Ok(Identity {
        name: spec.to_owned(),
        uid,
        gid,
        groups,
        switch: true,
    })
}

/// The PATH QEMU gets when it runs as another user: a user's default
/// (Debian's login.defs ENV_PATH), not root's sbin directories.
pub const QEMU_USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// PATH, USER and LOGNAME for a QEMU running as `id` (HOME is the
/// domain's directory, set by the command builder): the QEMU user's own
/// when teamvirt switches to it, else this process's (QEMU is teamvirt's
/// user then).
pub fn qemu_env(id: &Identity) -> Vec<(String, String)> {
    let user = if id.switch {
        match getpwuid(id.uid) {
            Ok(Some((_, name))) => name,
            _ => id.uid.to_string(),
        }
    } else {
        std::env::var("USER").unwrap_or_else(|_| id.uid.to_string())
    };
    let path = if id.switch {
        QEMU_USER_PATH.to_owned()
    } else {
        std::env::var("PATH").unwrap_or_else(|_| QEMU_USER_PATH.to_owned())
    };
    vec![
        ("PATH".to_owned(), path),
        ("USER".to_owned(), user.clone()),
        ("LOGNAME".to_owned(), user),
    ]
}

/// The whole environment of a QEMU running as `id` with `home` (its run
/// directory) as HOME, as the command builder gives a start's QEMU: for a
/// migration destination, whose argv comes from the source, so that it
/// does not inherit teamvirt's own environment (root's PATH and USER, an
/// SSH session's variables).
pub fn qemu_process_env(id: &Identity, home: &std::path::Path) -> Vec<(String, String)> {
    let home = home.display().to_string();
    let mut env = vec![("LC_ALL".to_owned(), "C".to_owned())];
    let mut own = qemu_env(id).into_iter();
    env.extend(own.next()); // PATH
    env.push(("HOME".to_owned(), home.clone()));
    env.extend(own); // USER, LOGNAME
    for (k, sub) in [
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_CONFIG_HOME", ".config"),
    ] {
        env.push((k.to_owned(), format!("{home}/{sub}")));
    }
    // A QEMU unpacked into a private prefix loads its own modules (see
    // the command builder).
    if let Some(m) = std::env::var_os("QEMU_MODULE_DIR") {
        env.push((
            "QEMU_MODULE_DIR".to_owned(),
            m.to_string_lossy().into_owned(),
        ));
    }
    env
}

/// `useradd --system --no-create-home --shell nologin --user-group`, in
/// `kvm` when that group exists (so KVM works for it).
fn create_default_user() -> Result<(), PrivError> {
    let useradd = ["/usr/sbin/useradd", "/sbin/useradd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("useradd");
    let mut cmd = Command::new(useradd);
    cmd.args([
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
        "--comment",
        "teamvirt QEMU processes",
    ]);
    if matches!(getgrnam("kvm"), Ok(Some(_))) {
        cmd.args(["--groups", "kvm"]);
    }
    cmd.arg(DEFAULT_QEMU_USER);
    let out = cmd
        .output()
        .map_err(|e| PrivError::Create(format!("{useradd}: {e}")))?;
    // A concurrent teamvirt may have created it first (useradd exits 9).
    if out.status.success() || matches!(getpwnam(DEFAULT_QEMU_USER), Ok(Some(_))) {
        return Ok(());
    }
    Err(PrivError::Create(format!(
        "{} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn getpwnam(name: &str) -> io::Result<Option<(u32, u32)>> {
    let c = cstr(name)?;
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    // SAFETY: passwd is plain data; getpwnam_r writes into pwd and buf
    // (both valid for their stated sizes) and sets res.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut res = std::ptr::null_mut();
        let rc = libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok((!res.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
    }
}

fn getpwuid(uid: u32) -> io::Result<Option<(u32, String)>> {
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    // SAFETY: as in getpwnam; pw_name points into buf when res is set.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut res = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if res.is_null() {
            return Ok(None);
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_string_lossy()
            .into_owned();
        Ok(Some((pwd.pw_gid, name)))
    }
}

fn getgrnam(name: &str) -> io::Result<Option<u32>> {
    let c = cstr(name)?;
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    // SAFETY: as in getpwnam.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut res = std::ptr::null_mut();
        let rc = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut res);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok((!res.is_null()).then_some(grp.gr_gid))
    }
}

/// Is `gid` a group of the group database?
pub fn group_exists(gid: u32) -> io::Result<bool> {
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    // SAFETY: as in getpwnam.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut res = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut res);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(!res.is_null())
    }
}

/// Is `uid` a user of the user database?
pub fn user_exists(uid: u32) -> io::Result<bool> {
    Ok(getpwuid(uid)?.is_some())
}

fn grouplist(user: &str, gid: u32) -> Vec<u32> {
    let Ok(c) = cstr(user) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut v = vec![0 as libc::gid_t; n as usize];
        let cap = n;
        // SAFETY: v has room for n entries; getgrouplist updates n.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), gid, v.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            v.truncate(n as usize);
            return v;
        }
        if n <= cap || n > 65536 {
            return vec![gid];
        }
    }
}

/// What the child does between fork and exec. Built in the parent (no
/// allocation happens in the child).
#[derive(Debug, Clone, Default)]
pub struct ChildSetup {
    /// `Some`: setgroups/setgid/setuid to it.
    pub switch: Option<(u32, u32, Vec<u32>)>,
    /// teamvirt is root: empty the bounding set and every capability set.
    pub drop_caps: bool,
    /// RLIMIT_MEMLOCK to set (VFIO pins guest memory; libvirt sets it too).
    pub memlock: Option<u64>,
    /// Descriptors QEMU must inherit (made non-close-on-exec).
    pub keep_fds: Vec<RawFd>,
}

impl ChildSetup {
    /// The setup for `id` (teamvirt's own privileges decide `drop_caps`).
    pub fn for_identity(id: &Identity) -> ChildSetup {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        ChildSetup {
            switch: id.switch.then(|| (id.uid, id.gid, id.groups.clone())),
            drop_caps: root,
            memlock: None,
            keep_fds: Vec::new(),
        }
    }

    /// Runs in the child after fork, before exec: async-signal-safe calls
    /// only (raw syscalls, no allocation).
    ///
    /// # Safety
    /// Only call between fork and exec.
    pub unsafe fn apply(&self) -> io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        for &fd in &self.keep_fds {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            check(flags)?;
            check(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
        }
        if let Some(bytes) = self.memlock {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            // Best effort: without CAP_SYS_RESOURCE (a container) the
            // limit stays, and QEMU names the VFIO mapping that failed.
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
        if self.drop_caps {
            // While CAP_SETPCAP is still ours: an empty bounding set means
            // even a uid-0 QEMU gets no capabilities back at exec.
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
                    && *libc::__errno_location() != libc::EINVAL
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        if let Some((uid, gid, groups)) = &self.switch {
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setresgid(*gid, *gid, *gid))?;
            check(libc::setresuid(*uid, *uid, *uid))?;
            // Verify the switch is for good.
            let (mut r, mut e, mut s) = (0, 0, 0);
            check(libc::getresuid(&mut r, &mut e, &mut s))?;
            if (r, e, s) != (*uid, *uid, *uid) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            if *uid != 0 && libc::setuid(0) == 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            if *uid != 0 && *gid != 0 && libc::setgid(0) == 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        if self.drop_caps {
            let hdr = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let data = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // No ambient capabilities (EINVAL: kernel without them).
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
            && *libc::__errno_location() != libc::EINVAL
        {
            return Err(io::Error::last_os_error());
        }
        // Nor may QEMU gain any through a setuid or file-capability binary.
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        Ok(())
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A fresh private directory a QEMU can reach, for a unix socket it
/// binds or connects to (the migration tunnel, a same-host incoming
/// migration): the state directory is root's and 0700, so a socket there
/// is out of QEMU's reach. Created under the temporary directory (an
/// existing path is an error, never reused) and given to `owner`, 0700;
/// with a `peer` of another uid (the source QEMU of a same-host
/// migration, which connects to what the destination binds) its group is
/// the peer's and the mode 0710, so only those two (and root) get in.
/// The caller removes it.
pub fn socket_dir(
    tag: &str,
    owner: &Identity,
    peer: Option<&Identity>,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "teamvirt-{tag}-{}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    if owner.switch {
        let peer = peer.filter(|p| p.switch && p.uid != owner.uid);
        let gid = peer.map_or(owner.gid, |p| p.gid);
        let res =
            std::os::unix::fs::chown(&dir, Some(owner.uid), Some(gid)).and_then(|()| match peer {
                Some(_) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710)),
                None => Ok(()),
            });
        if let Err(e) = res {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
    }
    Ok(dir)
}

/// Give the unix socket at `path` (bound by a QEMU in a [`socket_dir`])
/// to `to`, who connects to it: connecting needs write permission on the
/// socket, which its binder's umask gives its owner only. The socket
/// itself, never what a link there points to.
pub fn give_socket(path: &std::path::Path, to: &Identity) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if !to.switch {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a socket", path.display()),
        ));
    }
    // SAFETY: the descriptor is valid; the empty path with AT_EMPTY_PATH
    // means the descriptor itself.
    let rc = unsafe {
        libc::fchownat(
            f.as_raw_fd(),
            c"".as_ptr(),
            to.uid,
            to.gid,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_resolve() {
        let r = resolve("root").unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        let r = resolve("+0").unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        let r = resolve("+4242:+4343").unwrap();
        assert_eq!((r.uid, r.gid, r.groups.clone()), (4242, 4343, vec![4343]));
        let r = resolve("root:+5").unwrap();
        assert_eq!(r.gid, 5);
        assert!(r.groups.contains(&5), "{r:?}");
        for bad in ["", ":x", "root:", "+x", "+1:+y"] {
            assert!(matches!(resolve(bad), Err(PrivError::Syntax(_))), "{bad}");
        }
        let e = resolve("no-such-user-teamvirt").unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = resolve("root:no-such-group-teamvirt").unwrap_err();
        assert!(matches!(e, PrivError::NoGroup(_)), "{e}");
    }

    /// Hotplug lends to the identity the kernel shows for the QEMU.
    #[test]
    fn process_identity_is_the_kernels() {
        let id = process_identity(std::process::id() as i32).unwrap();
        // SAFETY: no preconditions.
        let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((id.uid, id.gid), (u, g));
        // SAFETY: no preconditions.
        assert_eq!(id.switch, unsafe { libc::geteuid() } == 0);
        assert!(process_identity(-1).is_err());
    }

    /// A child switched to nobody has no capabilities, no way back to root
    /// and only the descriptors it was given.
    #[test]
    fn child_drops_to_user_without_capabilities() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let id = resolve("+65534:+65534").unwrap();
        let setup = ChildSetup::for_identity(&id);
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status",
        ]);
        // SAFETY: apply only makes raw syscalls.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || setup.apply());
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let s = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            s.lines()
                .find(|l| l.starts_with(k))
                .map(|l| {
                    l[k.len()..]
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        assert_eq!(field("Uid:"), "65534 65534 65534 65534", "{s}");
        assert_eq!(field("Gid:"), "65534 65534 65534 65534", "{s}");
        assert_eq!(field("Groups:"), "65534", "{s}");
        for c in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(field(c), "0000000000000000", "{c} {s}");
        }
        assert_eq!(field("NoNewPrivs:"), "1", "{s}");
    }

    /// `root` as the QEMU user keeps uid 0 but not a single capability.
    #[test]
    fn root_child_has_no_capabilities() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let setup = ChildSetup::for_identity(&resolve("root").unwrap());
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "grep -E '^(Uid|CapPrm|CapEff|CapBnd):' /proc/self/status",
        ]);
        // SAFETY: apply only makes raw syscalls.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || setup.apply());
        }
        let out = cmd.output().unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("Uid:\t0\t0\t0\t0"), "{s}");
        assert_eq!(s.matches("0000000000000000").count(), 3, "{s}");
    }
}
