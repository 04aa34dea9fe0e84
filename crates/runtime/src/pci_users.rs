//! Who holds a PCI device, for `nodedev-detach` and `nodedev-reattach`
//! (the devices themselves: [`teamvirt_host::nodedev`]).

impl crate::Runtime {
    /// Who holds PCI device `addr`: domains with it in a VF pool
    /// allocation, or prepared for their QEMU (`nodedev-detach` and
    /// `nodedev-reattach` leave such a device alone, as libvirt does).
    pub fn pci_device_users(&self, addr: &str) -> Result<Vec<String>, crate::RuntimeError> {
        let mut users = Vec::new();
        for net in self.sd.defined_networks()? {
            let st = crate::pool::VfPool::new(&self.sd, &net).state()?;
            for a in st.allocations.iter().filter(|a| a.address == addr) {
                users.push(a.domain.clone());
            }
        }
        for dom in teamvirt_host::nodedev::sorted_entries(&self.sd.run_root()) {
            let dir = self.sd.run_root().join(&dom);
            if teamvirt_host::hostdev::recorded_addresses(&dir)
                .iter()
                .any(|a| a == addr)
            {
                users.push(dom);
            }
        }
        users.sort();
        users.dedup();
        Ok(users)
    }
}
