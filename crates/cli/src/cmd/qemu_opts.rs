//! Where the QEMU side comes from (capabilities, networks), for the verbs
//! that work on XML without running anything: `validate`, `format` and
//! `domxml-to-native`.

use std::path::{Path, PathBuf};

use teamvirt_conf::{DomainDef, NetworkDef, NetworkPortDef};
use teamvirt_qemu::caps::{self, QemuCaps};
use teamvirt_qemu::dirs as caps_dirs;
use teamvirt_qemu::resolve::NetworkMap;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct QemuOpts {
    /// libvirt capabilities cache XML to use instead of probing a QEMU binary.
    #[arg(long, value_name = "FILE", conflicts_with = "emulator")]
    pub caps: Option<PathBuf>,
    // clap's --help text, not rustdoc: the XML element names are meant literally.
    #[allow(rustdoc::invalid_html_tags)]
    /// QEMU binary to probe (default: qemu-system-x86_64 on PATH). A
    /// domain's other <emulator> is never run unless named here.
    #[arg(long, value_name = "PATH")]
    pub emulator: Option<PathBuf>,
    /// A network the domain's `<interface type='network'>` refers to,
    /// optionally with a network port pinning the interface's resource:
    /// `NET.xml` or `NET.xml=PORT.xml`. Repeatable.
    #[arg(long = "network", value_name = "NET.xml[=PORT.xml]")]
    pub networks: Vec<String>,
    /// Probe cache directory (default: `cache/` in the state directory).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// State directory whose `cache/` holds the probe cache (default:
    /// $TEAMVIRT_STATE_DIR, /var/lib/teamvirt for root, else
    /// $XDG_STATE_HOME/teamvirt). Accepted before or after the verb.
    // Same id as the global --state-dir: clap copies its value here.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The probe cache: `--cache-dir`, else `cache/` in `--state-dir`, else
/// in the default state directory (where `start` keeps it too).
pub fn probe_cache_dir(
    cache_dir: Option<&Path>,
    state_dir: Option<&Path>,
) -> Result<PathBuf, caps_dirs::NoDefaultDir> {
    match (cache_dir, state_dir) {
        (Some(c), _) => Ok(c.to_path_buf()),
        (None, Some(s)) => Ok(s.join("cache")),
        (None, None) => caps::default_cache_dir(),
    }
}

impl QemuOpts {
    /// `--cache-dir`, else `cache/` in the state directory.
    pub fn cache_dir(&self) -> Result<PathBuf, String> {
        probe_cache_dir(self.cache_dir.as_deref(), self.state_dir.as_deref())
            .map_err(|e| format!("{e} (or pass --cache-dir, --caps)"))
    }

    /// The capabilities the user named, if any: failing to read them is an
    /// error since they were asked for.
    pub fn explicit_caps(&self) -> Result<Option<QemuCaps>, String> {
        match (&self.caps, &self.emulator) {
            (Some(f), _) => QemuCaps::from_libvirt_xml(f)
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, Some(bin)) => crate::block_on(teamvirt_runtime::domain::probe_caps(
                bin,
                &self.cache_dir()?,
            ))
            .map(Some)
            .map_err(|e| e.to_string()),
            (None, None) => Ok(None),
        }
    }

    /// `--caps`, `--emulator`, else a probe of the domain's emulator when
    /// it is the default one (see [`probe_target`]).
    pub fn caps_for(&self, def: &DomainDef) -> Result<QemuCaps, String> {
        match self.explicit_caps()? {
            Some(c) => Ok(c),
            None => {
                let bin = probe_target(def)?;
                crate::block_on(teamvirt_runtime::domain::probe_caps(
                    &bin,
                    &self.cache_dir()?,
                ))
                .map_err(|e| e.to_string())
            }
        }
    }

    /// The `--network` arguments, loaded.
    pub fn load_networks(&self) -> Result<NetworkMap, String> {
        let mut map = NetworkMap::default();
        for spec in &self.networks {
            let (net, port) = match spec.split_once('=') {
                Some((n, p)) => (n, Some(p)),
                None => (spec.as_str(), None),
            };
            let (mut nd, _) = NetworkDef::load(Path::new(net))
                .map_err(|e| e.to_diagnostic(Some(Path::new(net))).to_string())?;
            expand_pf_pool(&mut nd)?;
            let pd = match port {
                Some(p) => Some(
                    NetworkPortDef::load(Path::new(p))
                        .map_err(|e| e.to_diagnostic(Some(Path::new(p))).to_string())?
                        .0,
                ),
                None => None,
            };
            map.insert(nd, pd);
        }
        Ok(map)
    }
}

/// A `<pf dev='X'/>` pool lists no VFs in its XML: `net-start` finds
/// them in sysfs, and so do the verbs that resolve it from a file, so that
/// they hand out the VF a start would (not "none are available").
fn expand_pf_pool(nd: &mut NetworkDef) -> Result<(), String> {
    let Some(f) = nd.forward.as_ref() else {
        return Ok(());
    };
    if !teamvirt_runtime::network::is_hostdev_network(nd)
        || !f.addresses.is_empty()
        || f.pfs.is_empty()
    {
        return Ok(());
    }
    let members = teamvirt_runtime::network::pool_members(nd)
        .map_err(|e| format!("network '{}': {e}", nd.name))?;
    if let Some(f) = nd.forward.as_mut() {
        f.addresses = members;
    }
    Ok(())
}

/// The installed default emulator, `qemu-system-x86_64` found on `PATH`.
pub const DEFAULT_EMULATOR: &str = "qemu-system-x86_64";

/// The binary a checking verb may probe for `def` without being told to.
///
/// `validate`, `format` and `domxml-to-native` read XML that anyone may
/// have written; they must never run a program that XML names. Only the
/// default emulator (or the same file under another path) is probed; any
/// other `<emulator>` has to be confirmed with `--emulator` (or replaced
/// by `--caps`). The error says which and why.
pub fn probe_target(def: &DomainDef) -> Result<PathBuf, String> {
    let default = find_in_path(DEFAULT_EMULATOR);
    let Some(named) = def
        .devices
        .emulator
        .as_ref()
        .map(|e| PathBuf::from(&e.path))
    else {
        return Ok(default.unwrap_or_else(|| PathBuf::from(DEFAULT_EMULATOR)));
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    match default {
        Some(d) if same(&named, &d) => Ok(d),
        // A missing emulator runs nothing: fall back to the default, as
        // the placement checks always did.
        Some(d) if !named.exists() => Ok(d),
        Some(d) => Err(format!(
            "the domain's <emulator> {} is not the default emulator ({}), and a checking verb \
             does not run programs named by the XML it checks; pass --emulator {} to probe it, \
             or --caps FILE",
            named.display(),
            d.display(),
            named.display()
        )),
        None => Err(format!(
            "the domain's <emulator> {} is not the default emulator ({DEFAULT_EMULATOR} is not \
             installed), and a checking verb does not run programs named by the XML it checks; \
             pass --emulator {} to probe it, or --caps FILE",
            named.display(),
            named.display()
        )),
    }
}

/// `name` looked up on `PATH`, as the shell would.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
