//! VNC passwords as libvirt sets them (`qemuDomainChangeGraphicsPasswords`):
//! a `<graphics type='vnc' passwd='...'/>` puts `password=on` on `-vnc`
//! (QEMU then refuses every client until a password is set), and the
//! password itself never goes on the command line: it is set over QMP
//! after start (`set_password`), with `passwdValidTo` as `expire_password`
//! (`never` without it, `now` once it has passed, else its time).

use std::time::{SystemTime, UNIX_EPOCH};

use teamvirt_conf::diag::{xml_error, Diagnostic};
use teamvirt_conf::model::{DomainDef, Graphics};

/// The attribute value of `name` on `g`.
fn attr<'a>(g: &'a Graphics, name: &str) -> Option<&'a str> {
    g.attrs
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.value.as_str())
}

/// Whether this VNC display has a password (`password=on` on `-vnc`).
pub fn has_password(g: &Graphics) -> bool {
    g.type_ == "vnc" && attr(g, "passwd").is_some()
}

/// `passwdValidTo` (`YYYY-MM-DDTHH:MM:SS`, UTC, as libvirt's `strptime` +
/// `timegm`) as seconds since the epoch.
pub fn parse_valid_to(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > mdays[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// libvirt's parse-time check of `passwdValidTo` (its text).
pub fn check(def: &DomainDef) -> Result<(), Diagnostic> {
    for g in &def.devices.graphics {
        if let Some(v) = attr(g, "passwdValidTo") {
            if parse_valid_to(v).is_none() {
                return Err(xml_error(
                    "graphics-passwd-valid-to",
                    format!(
                        "cannot parse password validity time '{v}', expect YYYY-MM-DDTHH:MM:SS"
                    ),
                )
                .at(g.pos));
            }
        }
    }
    Ok(())
}

/// The password of one VNC display, set on a QEMU just started: QMP
/// `set_password` of `password`, then `expire_password` at `expire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncPassword {
    pub password: String,
    /// `never`, `now` or seconds since the epoch, as `expire_password`
    /// takes it.
    pub expire: String,
}

/// The VNC passwords of `def` to set on a QEMU just started, as of `now`.
/// Empty without a VNC password.
pub fn password_commands(def: &DomainDef, now: SystemTime) -> Vec<VncPassword> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    def.devices
        .graphics
        .iter()
        .filter(|g| has_password(g))
        .map(|g| VncPassword {
            password: attr(g, "passwd").unwrap_or_default().to_owned(),
            expire: match attr(g, "passwdValidTo").and_then(parse_valid_to) {
                None => "never".to_string(),
                Some(t) if t <= now => "now".to_string(),
                Some(t) => t.to_string(),
            },
        })
        .collect()
}

/// `xml` without the VNC/SPICE passwords, as `virsh dumpxml` shows a domain
/// without `--security-info` (`passwdValidTo` stays). The text is returned
/// unchanged when it has none (or does not parse).
pub fn hide_passwords(xml: &str) -> String {
    if !xml.contains("passwd") {
        return xml.to_owned();
    }
    let Ok((mut def, _)) = DomainDef::parse_str(xml, None) else {
        return xml.to_owned();
    };
    let mut hidden = false;
    for g in &mut def.devices.graphics {
        let before = g.attrs.len();
        g.attrs.retain(|a| a.name != "passwd");
        hidden |= g.attrs.len() != before;
    }
    if hidden {
        def.to_xml()
    } else {
        xml.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_to_is_utc() {
        assert_eq!(parse_valid_to("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_valid_to("2010-04-09T15:51:00"), Some(1_270_828_260));
        assert_eq!(parse_valid_to("2000-02-29T23:59:59"), Some(951_868_799));
        for bad in [
            "2010-04-09 15:51:00",
            "2010-13-09T15:51:00",
            "2010-02-30T15:51:00",
            "2010-04-09T15:51",
            "+010-04-09T15:51:00",
            "tomorrow",
        ] {
            assert_eq!(parse_valid_to(bad), None, "{bad}");
        }
    }

    fn def(graphics: &str) -> DomainDef {
        DomainDef::parse_str(
            &format!(
                "<domain type='qemu'><name>vm</name><memory unit='KiB'>65536</memory>\
                 <os><type arch='x86_64' machine='q35'>hvm</type></os>\
                 <devices>{graphics}</devices></domain>"
            ),
            None,
        )
        .unwrap()
        .0
    }

    #[test]
    fn commands_set_then_expire() {
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_270_000_000);
        let d = def("<graphics type='vnc' passwd='s3cret'/>");
        assert_eq!(
            password_commands(&d, now),
            vec![VncPassword {
                password: "s3cret".into(),
                expire: "never".into()
            }]
        );
        let d = def("<graphics type='vnc' passwd='x' passwdValidTo='2010-04-09T15:51:00'/>");
        assert_eq!(password_commands(&d, now)[0].expire, "1270828260");
        let later = UNIX_EPOCH + std::time::Duration::from_secs(1_300_000_000);
        assert_eq!(password_commands(&d, later)[0].expire, "now");
        assert!(password_commands(&def("<graphics type='vnc'/>"), now).is_empty());
        let e = check(&def(
            "<graphics type='vnc' passwd='x' passwdValidTo='soon'/>",
        ))
        .unwrap_err();
        assert!(
            e.message
                .contains("cannot parse password validity time 'soon', expect YYYY-MM-DDTHH:MM:SS"),
            "{}",
            e.message
        );
    }

    #[test]
    fn dumpxml_hides_the_password_only() {
        let x = def(
            "<graphics type='vnc' port='-1' passwd='s3cret' passwdValidTo='2010-04-09T15:51:00'/>",
        )
        .to_xml();
        let h = hide_passwords(&x);
        assert!(!h.contains("s3cret") && !h.contains("passwd='"), "{h}");
        assert!(h.contains("passwdValidTo='2010-04-09T15:51:00'"), "{h}");
        let plain = def("<graphics type='vnc'/>").to_xml();
        assert_eq!(hide_passwords(&plain), plain);
    }
}
