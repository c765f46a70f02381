//! ipsec-gateway: the example wirespeed appliance.
fn main() {}
