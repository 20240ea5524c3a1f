//! `open`: guests on their own subnet, with DHCP and DNS, forwarded to and
//! from anywhere with no firewall rules of guestnet's.

use guestnet_mode_api::{
    own_subnet, Definition, HostFacts, Mode, ModeError, Plan, Sysctl, SysctlKey,
};

pub struct Open;

impl Mode for Open {
    fn name(&self) -> &str {
        "open"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn plan(&self, definition: &Definition, facts: &HostFacts) -> Result<Plan, ModeError> {
        let mut plan = own_subnet::plan(definition, facts, own_subnet::Gateway::Offered)?;
        plan.sysctls.push(Sysctl {
            key: SysctlKey::Ipv4Forward,
            value: "1".into(),
        });
        Ok(plan)
    }
}

guestnet_mode_api::export_mode!(Open, Open);
