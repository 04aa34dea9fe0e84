//! Machine-type and accelerator predicates, in one place below everything
//! that asks them (defaults, PCI assignment, the command line, validation),
//! so none of those has to import another for a name test.

use teamvirt_conf::model::DomainDef;

use crate::caps::Accel;

/// `pc`, `pc-i440fx-*` and the other i440FX names libvirt recognises.
pub fn is_i440fx(machine: &str) -> bool {
    machine == "pc"
        || machine.starts_with("pc-0.")
        || machine.starts_with("pc-1.")
        || machine.starts_with("pc-i440fx-")
        || machine.starts_with("rhel")
}

/// `q35` and `pc-q35-*`.
pub fn is_q35(machine: &str) -> bool {
    machine == "q35" || machine.starts_with("pc-q35")
}

/// x86 guest (libvirt ARCH_IS_X86).
pub fn is_x86(def: &DomainDef) -> bool {
    matches!(def.arch(), None | Some("x86_64") | Some("i686"))
}

/// The accelerator `<domain type>` asks for.
pub fn accel_of(def: &DomainDef) -> Accel {
    if def.type_ == "kvm" {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        assert!(is_i440fx("pc") && is_i440fx("pc-i440fx-9.1"));
        assert!(is_q35("q35") && is_q35("pc-q35-7.2"));
        assert!(!is_q35("pc") && !is_i440fx("q35"));
    }
}
