//! QEMU's TLS for a migration, as libvirt sets it up on both sides
//! (`--tls`): the certificate directory lent to the QEMU user, the
//! `tls-creds-x509` object and the migration's `tls-creds` parameter.

use std::path::{Path, PathBuf};

use teamvirt_qmp::{MigrateParameters, Qmp, QmpError, TlsCredsX509};

/// libvirt's default certificate directory for migration TLS.
pub const DEFAULT_TLS_DIR: &str = "/etc/pki/qemu";
/// The QOM id libvirt gives the migration's TLS credentials.
const TLS_ID: &str = "objlibvirt_migrate_tls0";

/// The PEM files of a libvirt-style TLS directory, copied into a fresh
/// private directory of `id`, the QEMU's (see `privdrop::socket_dir`).
fn lend_tls_dir(dir: &Path, id: &teamvirt_host::privdrop::Identity) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let out = teamvirt_host::privdrop::socket_dir("tls", id, None)?;
    let copy = || -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            if !name.to_string_lossy().ends_with(".pem") || !e.file_type()?.is_file() {
                continue;
            }
            let data = std::fs::read(e.path())?;
            let dst = out.join(&name);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)?;
            std::io::Write::write_all(&mut f, &data)?;
            if id.switch {
                std::os::unix::fs::chown(&dst, Some(id.uid), Some(id.gid))?;
            }
        }
        Ok(())
    };
    copy().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&out);
    })?;
    Ok(out)
}

/// QEMU's TLS for migration as libvirt sets it: the `tls-creds-x509`
/// object from `dir` (`endpoint` client or server, peers verified) and the
/// migration's `tls-creds` (and `tls-hostname` on the source).
pub async fn tls_setup(
    qmp: &Qmp,
    dir: &Path,
    endpoint: &str,
    hostname: Option<&str>,
    qemu: &teamvirt_host::privdrop::Identity,
) -> Result<(), QmpError> {
    // An earlier TLS migration of this QEMU left its object behind.
    let _ = qmp.object_del(TLS_ID).await;
    // QEMU runs as the QEMU user and reads the credentials when the object
    // is made: a copy it can read, gone right after.
    let lent = lend_tls_dir(dir, qemu).map_err(|e| {
        QmpError::Protocol(format!(
            "cannot give QEMU the TLS credentials of {}: {e}",
            dir.display()
        ))
    })?;
    let added = qmp
        .object_add_tls_creds_x509(&TlsCredsX509 {
            id: TLS_ID.to_owned(),
            dir: lent.display().to_string(),
            endpoint: endpoint.to_owned(),
            verify_peer: true,
        })
        .await;
    let _ = std::fs::remove_dir_all(&lent);
    added?;
    qmp.migrate_set_parameters(&MigrateParameters {
        tls_creds: Some(TLS_ID.to_owned()),
        tls_hostname: hostname.map(str::to_owned),
        ..Default::default()
    })
    .await?;
    Ok(())
}
