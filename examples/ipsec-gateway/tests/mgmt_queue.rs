//! Issue 20 item 5: a NIC that cannot keep data traffic off the management queue (veth, drivers
//! without ntuple or RETA programming) loses nothing. Here every frame arrives on the management
//! queue of the mem ports, as RSS on such a NIC would put a share of the flows there: the control
//! shard answers what is its own and hands the rest to the data shard its software RSS picks,
//! counted as `handed_off`.

use ipsec_gateway::config::Side;
use ipsec_gateway::demo::check;
use ipsec_gateway::demo::configs::Site;
use ipsec_gateway::demo::traffic;
use ipsec_gateway::gateway::NOT_FOR_CONTROL_PLANE;
use wirespeed_core::DropReason;

mod common;
use common::*;

impl Rig {
    /// Injects `frame` on the management queue, whatever the steering plan says.
    fn send_to_management_queue(&mut self, side: Side, frame: &[u8]) {
        let q = self.steering.management_queue();
        self.ports[side as usize].inject(q, frame).expect("inject");
        self.injected += 1;
    }
}

#[test]
fn data_traffic_on_the_management_queue_is_handed_to_the_data_shards() {
    // A reference run where steering works, then the same traffic all on the management queue.
    let (flows, esp_ref, ref_totals) = through_a();
    let mut a = Rig::start(Site::A);
    let longest = flows.iter().map(|f| f.packets).max().unwrap();
    let mut sent = 0u64;
    for seq in 0..longest {
        for f in flows.iter().filter(|f| seq < f.packets) {
            a.send_to_management_queue(Side::Lan, &traffic::frame(f, seq as u32));
            sent += 1;
        }
    }
    a.settle();
    let esp = a.take(Side::Wan);
    let stats = a.gw().stats();
    let ta = a.stop();
    assert_eq!(esp.len(), esp_ref.len(), "as many ESP packets as with working steering: {ta}");
    let not_ours = DropReason::from_name(NOT_FOR_CONTROL_PLANE).unwrap();
    assert_eq!(ta.drops_of(not_ours), 0, "{ta}");
    assert_eq!(ta.drops_of(DropReason::NoRoute), ref_totals.drops_of(DropReason::NoRoute), "{ta}");
    assert_eq!(ta.drops_of(DropReason::TtlExpired), ref_totals.drops_of(DropReason::TtlExpired), "{ta}");
    assert_eq!(ta.handed_off, sent, "every frame handed over: {ta}");
    assert_eq!(ta.rx_packets, sent, "received once, by the shard that processed it: {ta}");
    // Every shard balances; the control shard's frames are all handed over.
    for s in &stats {
        let c = &s.counters;
        assert_eq!(c.rx_packets, c.tx_packets + c.punted + c.total_drops(), "shard {}: {c}", s.shard);
    }
    let control = &stats[SHARDS].counters;
    assert_eq!(control.handed_off, sent);

    // B receives A's ESP on its management queue: decrypted by the shard owning each SA.
    let mut b = Rig::start(Site::B);
    for f in &esp {
        b.send_to_management_queue(Side::Wan, f);
    }
    b.settle();
    let out = b.take(Side::Lan);
    let tb = b.stop();
    assert_eq!(tb.total_drops(), 0, "{tb}");
    assert_eq!(tb.handed_off, esp.len() as u64, "{tb}");
    let v = check::lan_frames(&flows, out.into_iter().map(Ok)).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert_eq!(v.flows.len(), 12);
}
