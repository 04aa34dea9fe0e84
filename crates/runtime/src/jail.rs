//! The jail every probe of an emulator runs in: QEMU's identity and
//! privilege drop, and the files a start would lend it. Above both
//! `privdrop` (identities, the drop) and `dac` (what is lent), which need
//! nothing from each other for it.

use teamvirt_host::privdrop::ChildSetup;

/// Probes of an emulator (`define`, `start`, `attach-device`,
/// `validate`...) run it as QEMU runs: as the QEMU identity, with the same
/// privilege drop ([`ChildSetup::apply`]: no capabilities, empty bounding
/// set, `no_new_privs`), as libvirt probes as its QEMU user. The
/// `<emulator>` comes from a definition, so it is not trusted with root.
/// Idempotent; call before the first probe.
pub fn install_probe_jail() {
    teamvirt_qemu::caps::probe::set_jail(Box::new(|binary| {
        let id = teamvirt_host::privdrop::qemu_identity().map_err(|e| e.to_string())?;
        teamvirt_host::dac::check_exec(binary, &id).map_err(|e| e.to_string())?;
        let mut setup = ChildSetup::for_identity(&id);
        // /dev/kvm as a start would give it (its group); without it the
        // probe falls back to TCG, as QEMU would run.
        let _ = teamvirt_host::dac::kvm_access(&mut setup, &id, std::path::Path::new("/dev/kvm"));
        Ok(Some(teamvirt_qemu::caps::probe::Jail {
            // SAFETY: the hook runs only between fork and exec (the
            // probe's pre_exec), which is apply's contract.
            pre_exec: Box::new(move || unsafe { setup.apply() }),
        }))
    }));
}
