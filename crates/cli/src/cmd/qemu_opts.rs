//! Where the QEMU side comes from (capabilities, networks), for the verbs
//! that work on XML without running anything: `validate`, `format` and
//! `domxml-to-native`.

use std::path::{Path, PathBuf};

use teamvirt_conf::{DomainDef, NetworkDef, NetworkPortDef};
use teamvirt_qemu::caps::{self, QemuCaps};
use teamvirt_qemu::resolve::NetworkMap;
pub use teamvirt_runtime::domain::emulator_of;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct QemuOpts {
    /// libvirt capabilities cache XML to use instead of probing a QEMU binary.
    #[arg(long, value_name = "FILE", conflicts_with = "emulator")]
    pub caps: Option<PathBuf>,
    /// QEMU binary to probe (default: the domain's <emulator>).
    #[arg(long, value_name = "PATH")]
    pub emulator: Option<PathBuf>,
    /// A network the domain's `<interface type='network'>` refers to,
    /// optionally with a network port pinning the interface's resource:
    /// `NET.xml` or `NET.xml=PORT.xml`. Repeatable.
    #[arg(long = "network", value_name = "NET.xml[=PORT.xml]")]
    pub networks: Vec<String>,
    /// Probe cache directory (default: `cache/` in $TEAMVIRT_STATE_DIR or
    /// the default state directory).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl QemuOpts {
    /// Whether the user named the capabilities (`--caps`/`--emulator`).
    pub fn given(&self) -> bool {
        self.caps.is_some() || self.emulator.is_some()
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(caps::default_cache_dir)
    }

    /// The capabilities the user named, if any: failing to read them is an
    /// error since they were asked for.
    pub fn explicit_caps(&self) -> Result<Option<QemuCaps>, String> {
        match (&self.caps, &self.emulator) {
            (Some(f), _) => QemuCaps::from_libvirt_xml(f)
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, Some(bin)) => QemuCaps::probe_blocking(bin, self.cache_dir())
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, None) => Ok(None),
        }
    }

    /// `--caps`, `--emulator`, else a probe of the domain's emulator.
    pub fn caps_for(&self, def: &DomainDef) -> Result<QemuCaps, String> {
        match self.explicit_caps()? {
            Some(c) => Ok(c),
            None => QemuCaps::probe_blocking(emulator_of(def), self.cache_dir())
                .map_err(|e| e.to_string()),
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
            let (nd, _) = NetworkDef::load(Path::new(net))
                .map_err(|e| e.to_diagnostic(Some(Path::new(net))).to_string())?;
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
