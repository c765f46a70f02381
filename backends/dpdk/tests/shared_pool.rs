//! A pool shared by the ports of a socket (explicit `mempool.mbufs`): each port's rings are
//! counted against it, and a port whose rings would leave the pool without a free mbuf is
//! refused, naming every sharing port and what its rings hold. Closing a port gives its share
//! back. (Each port's own `check()` passes: the shortage exists only across ports.)

mod common;

use common::*;
use wirespeed_dpdk::{DpdkPort, DpdkPortConfig};

const VDEVS: [&str; 3] = ["net_null0", "net_null1", "net_null2"];

fn config(device: &str) -> DpdkPortConfig {
    let mut cfg = DpdkPortConfig::new(eal_args(&VDEVS), device);
    cfg.rx_desc = 512;
    cfg.tx_desc = 512;
    // 1024 ring mbufs per port: one port fits, two fill the pool.
    cfg.mempool.mbufs = Some(2047);
    cfg.mempool.cache = 64;
    cfg
}

#[test]
fn ports_sharing_a_pool_must_leave_it_mbufs() {
    let _g = serial();
    if eal(&VDEVS).is_none() {
        return;
    }
    let a_cfg = config("net_null0");
    a_cfg.check().unwrap();
    let a = DpdkPort::new(&a_cfg).expect("the first port fits");
    let b_cfg = config("net_null1");
    b_cfg.check().expect("alone, the second port fits too");
    let err =
        DpdkPort::new(&b_cfg).err().map(|e| e.to_string()).expect("two ports of 1024 ring mbufs in 2047");
    assert!(
        err.contains("mempool.mbufs") && err.contains("net_null0: 1024") && err.contains("net_null1: 1024"),
        "{err}"
    );
    assert!(err.contains("up to 2048"), "{err}");

    // A port with its own pool (derived count) is not counted against the shared one.
    let mut c_cfg = config("net_null2");
    c_cfg.mempool.mbufs = None;
    let c = DpdkPort::new(&c_cfg).expect("own pool");
    assert_ne!(c.mempool().config().mbufs, Some(2047));

    // Reopening the same device replaces its share; closing it gives the share back.
    drop(a);
    let a = DpdkPort::new(&a_cfg).expect("the first port again");
    drop(a);
    let b = DpdkPort::new(&b_cfg).expect("with net_null0 closed, net_null1 fits");
    assert_eq!(b.mempool().config().mbufs, Some(2047));
    drop((b, c));
}
