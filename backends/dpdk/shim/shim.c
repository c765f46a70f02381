/* wirespeed-dpdk C shim: see shim.h. Every function here is a thin wrapper; the logic lives in
 * Rust. Written against DPDK 22.11 (Debian's libdpdk-dev). */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_thash.h>

/* wirespeed hash-type bits (wirespeed_core::rss::HashTypes). */
#define WS_IPV4 (1u << 0)
#define WS_IPV4_TCP (1u << 1)
#define WS_IPV4_UDP (1u << 2)
#define WS_IPV4_ESP (1u << 3)
#define WS_IPV4_NATT (1u << 4)
#define WS_IPV6 (1u << 5)
#define WS_IPV6_TCP (1u << 6)
#define WS_IPV6_UDP (1u << 7)
#define WS_IPV6_ESP (1u << 8)
#define WS_IPV6_NATT (1u << 9)

void ws_mbuf_layout_get(struct ws_mbuf_layout *out) {
    out->buf_addr = offsetof(struct rte_mbuf, buf_addr);
    out->data_off = offsetof(struct rte_mbuf, data_off);
    out->data_len = offsetof(struct rte_mbuf, data_len);
    out->pkt_len = offsetof(struct rte_mbuf, pkt_len);
    out->buf_len = offsetof(struct rte_mbuf, buf_len);
    out->ol_flags = offsetof(struct rte_mbuf, ol_flags);
    out->rss = offsetof(struct rte_mbuf, hash.rss);
    out->port = offsetof(struct rte_mbuf, port);
    out->nb_segs = offsetof(struct rte_mbuf, nb_segs);
    out->rss_flag = RTE_MBUF_F_RX_RSS_HASH;
    out->headroom = RTE_PKTMBUF_HEADROOM;
}

int ws_eal_init(int argc, char **argv) { return rte_eal_init(argc, argv); }
int ws_errno(void) { return rte_errno; }
const char *ws_strerror(int err) { return rte_strerror(err < 0 ? -err : err); }
int ws_thread_register(void) { return rte_thread_register(); }
void ws_thread_unregister(void) { rte_thread_unregister(); }
unsigned ws_lcore_id(void) { return rte_lcore_id(); }
int ws_socket_id(void) { return (int)rte_socket_id(); }
unsigned ws_socket_count(void) { return rte_socket_count(); }
int ws_socket_id_by_idx(unsigned idx) { return rte_socket_id_by_idx(idx); }

struct rte_mempool *ws_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache, uint16_t data_room,
                                           int socket) {
    return rte_pktmbuf_pool_create(name, n, cache, 0, data_room, socket);
}
unsigned ws_mempool_avail_count(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }
unsigned ws_mempool_in_use_count(const struct rte_mempool *mp) { return rte_mempool_in_use_count(mp); }

struct rte_mbuf *ws_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
struct rte_mempool *ws_pktmbuf_pool_of(const struct rte_mbuf *m) { return m->pool; }
int ws_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n) {
    return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}
void ws_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void ws_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned n) { rte_pktmbuf_free_bulk(mbufs, n); }
uint8_t *ws_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_prepend(m, len); }
uint8_t *ws_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_adj(m, len); }
uint8_t *ws_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_append(m, len); }
int ws_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t ws_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t ws_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint8_t *ws_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }
uint32_t ws_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
void ws_mbuf_set_rss(struct rte_mbuf *m, uint32_t hash) {
    m->hash.rss = hash;
    m->ol_flags |= RTE_MBUF_F_RX_RSS_HASH;
}
int ws_mbuf_rss(const struct rte_mbuf *m, uint32_t *hash) {
    if (!(m->ol_flags & RTE_MBUF_F_RX_RSS_HASH)) return 0;
    *hash = m->hash.rss;
    return 1;
}

uint16_t ws_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
uint16_t ws_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}

uint16_t ws_eth_dev_count_avail(void) { return rte_eth_dev_count_avail(); }
int ws_eth_dev_get_port_by_name(const char *name, uint16_t *port) { return rte_eth_dev_get_port_by_name(name, port); }
int ws_dev_probe(const char *devargs) { return rte_dev_probe(devargs); }

uint64_t ws_rss_hf(uint32_t t) {
    uint64_t hf = 0;
    if (t & WS_IPV4) hf |= RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_FRAG_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_OTHER;
    if (t & WS_IPV4_TCP) hf |= RTE_ETH_RSS_NONFRAG_IPV4_TCP;
    if (t & WS_IPV4_UDP) hf |= RTE_ETH_RSS_NONFRAG_IPV4_UDP;
    if (t & WS_IPV6) hf |= RTE_ETH_RSS_IPV6 | RTE_ETH_RSS_FRAG_IPV6 | RTE_ETH_RSS_NONFRAG_IPV6_OTHER;
    if (t & WS_IPV6_TCP) hf |= RTE_ETH_RSS_NONFRAG_IPV6_TCP;
    if (t & WS_IPV6_UDP) hf |= RTE_ETH_RSS_NONFRAG_IPV6_UDP;
    if (t & (WS_IPV4_ESP | WS_IPV6_ESP)) hf |= RTE_ETH_RSS_ESP;
    /* NAT-T by SPI has no RTE_ETH_RSS_* type: the NIC hashes it as UDP. */
    return hf;
}

uint32_t ws_rss_types_of_hf(uint64_t hf) {
    uint32_t t = 0;
    if (hf & RTE_ETH_RSS_IPV4) t |= WS_IPV4;
    if (hf & RTE_ETH_RSS_NONFRAG_IPV4_TCP) t |= WS_IPV4_TCP;
    if (hf & RTE_ETH_RSS_NONFRAG_IPV4_UDP) t |= WS_IPV4_UDP;
    if (hf & RTE_ETH_RSS_IPV6) t |= WS_IPV6;
    if (hf & RTE_ETH_RSS_NONFRAG_IPV6_TCP) t |= WS_IPV6_TCP;
    if (hf & RTE_ETH_RSS_NONFRAG_IPV6_UDP) t |= WS_IPV6_UDP;
    if (hf & RTE_ETH_RSS_ESP) t |= WS_IPV4_ESP | WS_IPV6_ESP;
    return t;
}

int ws_eth_dev_info(uint16_t port, struct ws_dev_info *out) {
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) return rc;
    memset(out, 0, sizeof(*out));
    snprintf(out->driver_name, sizeof(out->driver_name), "%s", info.driver_name ? info.driver_name : "");
    out->max_rx_queues = info.max_rx_queues;
    out->max_tx_queues = info.max_tx_queues;
    out->reta_size = info.reta_size;
    out->hash_key_size = info.hash_key_size;
    out->socket_id = rte_eth_dev_socket_id(port);
    out->max_rx_pktlen = info.max_rx_pktlen;
    out->flow_type_rss_dpdk = info.flow_type_rss_offloads;
    out->flow_type_rss_offloads = ws_rss_types_of_hf(info.flow_type_rss_offloads);
    out->min_mtu = info.min_mtu;
    out->max_mtu = info.max_mtu;
    return 0;
}

int ws_eth_dev_configure(uint16_t port, uint16_t nb_rx, uint16_t nb_tx, int rss, uint32_t ws_types,
                         const uint8_t *key, uint8_t key_len, uint16_t mtu) {
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) return rc;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.rxmode.mtu = mtu; /* 0: RTE_ETHER_MTU; rte_eth_dev_configure checks it against the device */
    if (rss) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = (uint8_t *)key;
        conf.rx_adv_conf.rss_conf.rss_key_len = key_len;
        conf.rx_adv_conf.rss_conf.rss_hf = ws_rss_hf(ws_types) & info.flow_type_rss_offloads;
        conf.rxmode.offloads |= info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH;
    }
    return rte_eth_dev_configure(port, nb_rx, nb_tx, &conf);
}

int ws_eth_rx_queue_setup(uint16_t port, uint16_t queue, uint16_t nb_desc, int socket, struct rte_mempool *mp) {
    return rte_eth_rx_queue_setup(port, queue, nb_desc, (unsigned)socket, NULL, mp);
}
int ws_eth_tx_queue_setup(uint16_t port, uint16_t queue, uint16_t nb_desc, int socket) {
    return rte_eth_tx_queue_setup(port, queue, nb_desc, (unsigned)socket, NULL);
}
int ws_eth_dev_start(uint16_t port) { return rte_eth_dev_start(port); }
int ws_eth_dev_stop(uint16_t port) { return rte_eth_dev_stop(port); }
int ws_eth_dev_close(uint16_t port) { return rte_eth_dev_close(port); }
int ws_eth_promiscuous_enable(uint16_t port) { return rte_eth_promiscuous_enable(port); }
int ws_eth_dev_get_mtu(uint16_t port, uint16_t *mtu) { return rte_eth_dev_get_mtu(port, mtu); }
int ws_eth_macaddr_get(uint16_t port, uint8_t mac[6]) {
    struct rte_ether_addr a;
    int rc = rte_eth_macaddr_get(port, &a);
    if (rc == 0) memcpy(mac, a.addr_bytes, 6);
    return rc;
}
int ws_eth_link_get_nowait(uint16_t port, struct ws_link *out) {
    struct rte_eth_link l;
    memset(&l, 0, sizeof(l));
    int rc = rte_eth_link_get_nowait(port, &l);
    if (rc != 0) return rc;
    out->speed_mbps = l.link_speed;
    out->up = l.link_status;
    out->full_duplex = l.link_duplex;
    out->autoneg = l.link_autoneg;
    return 0;
}
int ws_eth_stats_get(uint16_t port, struct ws_stats *out) {
    struct rte_eth_stats s;
    int rc = rte_eth_stats_get(port, &s);
    if (rc != 0) return rc;
    out->ipackets = s.ipackets;
    out->opackets = s.opackets;
    out->ibytes = s.ibytes;
    out->obytes = s.obytes;
    out->imissed = s.imissed;
    out->ierrors = s.ierrors;
    out->oerrors = s.oerrors;
    out->rx_nombuf = s.rx_nombuf;
    return 0;
}
int ws_eth_xstats_count(uint16_t port) { return rte_eth_xstats_get_names(port, NULL, 0); }
int ws_eth_xstats_names(uint16_t port, char *names, unsigned stride, unsigned n) {
    struct rte_eth_xstat_name tmp[n ? n : 1];
    int got = rte_eth_xstats_get_names(port, tmp, n);
    if (got < 0 || (unsigned)got > n) return got;
    for (int i = 0; i < got; i++) snprintf(names + (size_t)i * stride, stride, "%s", tmp[i].name);
    return got;
}
int ws_eth_xstats_values(uint16_t port, uint64_t *values, unsigned n) {
    struct rte_eth_xstat tmp[n ? n : 1];
    int got = rte_eth_xstats_get(port, tmp, n);
    if (got < 0 || (unsigned)got > n) return got;
    for (int i = 0; i < got; i++) values[tmp[i].id < n ? tmp[i].id : (uint64_t)i] = tmp[i].value;
    return got;
}

int ws_eth_rss_hash_update(uint16_t port, const uint8_t *key, uint8_t key_len, uint32_t ws_types) {
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) return rc;
    struct rte_eth_rss_conf c;
    memset(&c, 0, sizeof(c));
    c.rss_key = (uint8_t *)key;
    c.rss_key_len = key_len;
    c.rss_hf = ws_rss_hf(ws_types) & info.flow_type_rss_offloads;
    return rte_eth_dev_rss_hash_update(port, &c);
}
int ws_eth_rss_hash_conf_get(uint16_t port, uint8_t *key, uint8_t *key_len, uint64_t *hf) {
    struct rte_eth_rss_conf c;
    memset(&c, 0, sizeof(c));
    c.rss_key = key;
    c.rss_key_len = *key_len;
    int rc = rte_eth_dev_rss_hash_conf_get(port, &c);
    if (rc != 0) return rc;
    *key_len = c.rss_key_len;
    *hf = c.rss_hf;
    return 0;
}

#define WS_RETA_GROUPS (RTE_ETH_RSS_RETA_SIZE_512 / RTE_ETH_RETA_GROUP_SIZE)
int ws_eth_reta_update(uint16_t port, const uint16_t *reta, uint16_t size) {
    if (size == 0 || size > RTE_ETH_RSS_RETA_SIZE_512) return -EINVAL;
    struct rte_eth_rss_reta_entry64 conf[WS_RETA_GROUPS];
    memset(conf, 0, sizeof(conf));
    for (uint16_t i = 0; i < size; i++) {
        conf[i / RTE_ETH_RETA_GROUP_SIZE].mask |= UINT64_C(1) << (i % RTE_ETH_RETA_GROUP_SIZE);
        conf[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = reta[i];
    }
    return rte_eth_dev_rss_reta_update(port, conf, size);
}
int ws_eth_reta_query(uint16_t port, uint16_t *reta, uint16_t size) {
    if (size == 0 || size > RTE_ETH_RSS_RETA_SIZE_512) return -EINVAL;
    struct rte_eth_rss_reta_entry64 conf[WS_RETA_GROUPS];
    memset(conf, 0, sizeof(conf));
    for (uint16_t i = 0; i < size; i++)
        conf[i / RTE_ETH_RETA_GROUP_SIZE].mask |= UINT64_C(1) << (i % RTE_ETH_RETA_GROUP_SIZE);
    int rc = rte_eth_dev_rss_reta_query(port, conf, size);
    if (rc != 0) return rc;
    for (uint16_t i = 0; i < size; i++) reta[i] = conf[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
    return 0;
}

/* ---- rte_flow ---- */

struct ws_flow_build {
    struct rte_flow_attr attr;
    struct rte_flow_item items[8];
    struct rte_flow_action actions[2];
    struct rte_flow_item_eth eth_spec, eth_mask;
    struct rte_flow_item_vlan vlan_spec, vlan_mask;
    struct rte_flow_item_ipv4 ip4_spec, ip4_mask;
    struct rte_flow_item_ipv6 ip6_spec, ip6_mask;
    struct rte_flow_item_tcp tcp_spec, tcp_mask;
    struct rte_flow_item_udp udp_spec, udp_mask;
    struct rte_flow_item_esp esp_spec, esp_mask;
    struct rte_flow_item_icmp icmp_spec, icmp_mask;
    struct rte_flow_item_icmp6 icmp6_spec, icmp6_mask;
    struct rte_flow_action_queue queue;
    struct rte_flow_action_rss rss;
};

static void item(struct ws_flow_build *b, int *n, enum rte_flow_item_type t, const void *spec, const void *mask) {
    b->items[*n].type = t;
    b->items[*n].spec = spec;
    b->items[*n].mask = mask;
    (*n)++;
}

static void ws_flow_build(struct ws_flow_build *b, const struct ws_flow_rule *r) {
    memset(b, 0, sizeof(*b));
    b->attr.ingress = 1;
    b->attr.priority = r->priority;
    int n = 0;
    if (r->has_ethertype && r->ip_version == 0 && !r->has_vlan) {
        b->eth_spec.hdr.ether_type = rte_cpu_to_be_16(r->ethertype);
        b->eth_mask.hdr.ether_type = 0xffff;
        item(b, &n, RTE_FLOW_ITEM_TYPE_ETH, &b->eth_spec, &b->eth_mask);
    } else {
        item(b, &n, RTE_FLOW_ITEM_TYPE_ETH, NULL, NULL);
    }
    if (r->has_vlan) {
        b->vlan_spec.hdr.vlan_tci = rte_cpu_to_be_16(r->vlan);
        b->vlan_mask.hdr.vlan_tci = rte_cpu_to_be_16(0x0fff);
        if (r->has_ethertype && r->ip_version == 0) {
            b->vlan_spec.hdr.eth_proto = rte_cpu_to_be_16(r->ethertype);
            b->vlan_mask.hdr.eth_proto = 0xffff;
        }
        item(b, &n, RTE_FLOW_ITEM_TYPE_VLAN, &b->vlan_spec, &b->vlan_mask);
    }
    if (r->ip_version == 4) {
        if (r->has_src) {
            memcpy(&b->ip4_spec.hdr.src_addr, r->src, 4);
            memcpy(&b->ip4_mask.hdr.src_addr, r->src_mask, 4);
        }
        if (r->has_dst) {
            memcpy(&b->ip4_spec.hdr.dst_addr, r->dst, 4);
            memcpy(&b->ip4_mask.hdr.dst_addr, r->dst_mask, 4);
        }
        if (r->has_proto) {
            b->ip4_spec.hdr.next_proto_id = r->proto;
            b->ip4_mask.hdr.next_proto_id = 0xff;
        }
        if (r->has_dscp) {
            b->ip4_spec.hdr.type_of_service = (uint8_t)(r->dscp << 2);
            b->ip4_mask.hdr.type_of_service = 0xfc;
        }
        item(b, &n, RTE_FLOW_ITEM_TYPE_IPV4, &b->ip4_spec, &b->ip4_mask);
    } else if (r->ip_version == 6) {
        if (r->has_src) {
            memcpy(b->ip6_spec.hdr.src_addr, r->src, 16);
            memcpy(b->ip6_mask.hdr.src_addr, r->src_mask, 16);
        }
        if (r->has_dst) {
            memcpy(b->ip6_spec.hdr.dst_addr, r->dst, 16);
            memcpy(b->ip6_mask.hdr.dst_addr, r->dst_mask, 16);
        }
        if (r->has_proto) {
            b->ip6_spec.hdr.proto = r->proto;
            b->ip6_mask.hdr.proto = 0xff;
        }
        if (r->has_dscp) {
            b->ip6_spec.hdr.vtc_flow = rte_cpu_to_be_32((uint32_t)r->dscp << 22);
            b->ip6_mask.hdr.vtc_flow = rte_cpu_to_be_32(0x0fc00000u);
        }
        item(b, &n, RTE_FLOW_ITEM_TYPE_IPV6, &b->ip6_spec, &b->ip6_mask);
    }
    switch (r->l4) {
    case IPPROTO_TCP:
        if (r->has_sport) { b->tcp_spec.hdr.src_port = rte_cpu_to_be_16(r->sport); b->tcp_mask.hdr.src_port = 0xffff; }
        if (r->has_dport) { b->tcp_spec.hdr.dst_port = rte_cpu_to_be_16(r->dport); b->tcp_mask.hdr.dst_port = 0xffff; }
        item(b, &n, RTE_FLOW_ITEM_TYPE_TCP, &b->tcp_spec, &b->tcp_mask);
        break;
    case IPPROTO_UDP:
        if (r->has_sport) { b->udp_spec.hdr.src_port = rte_cpu_to_be_16(r->sport); b->udp_mask.hdr.src_port = 0xffff; }
        if (r->has_dport) { b->udp_spec.hdr.dst_port = rte_cpu_to_be_16(r->dport); b->udp_mask.hdr.dst_port = 0xffff; }
        item(b, &n, RTE_FLOW_ITEM_TYPE_UDP, &b->udp_spec, &b->udp_mask);
        break;
    case IPPROTO_ESP:
        if (r->has_spi) { b->esp_spec.hdr.spi = rte_cpu_to_be_32(r->spi); b->esp_mask.hdr.spi = 0xffffffff; }
        item(b, &n, RTE_FLOW_ITEM_TYPE_ESP, &b->esp_spec, &b->esp_mask);
        break;
    case IPPROTO_ICMP:
        if (r->has_icmp_type) { b->icmp_spec.hdr.icmp_type = r->icmp_type; b->icmp_mask.hdr.icmp_type = 0xff; }
        item(b, &n, RTE_FLOW_ITEM_TYPE_ICMP, &b->icmp_spec, &b->icmp_mask);
        break;
    case IPPROTO_ICMPV6:
        if (r->has_icmp_type) { b->icmp6_spec.type = r->icmp_type; b->icmp6_mask.type = 0xff; }
        item(b, &n, RTE_FLOW_ITEM_TYPE_ICMP6, &b->icmp6_spec, &b->icmp6_mask);
        break;
    default:
        break;
    }
    b->items[n].type = RTE_FLOW_ITEM_TYPE_END;

    switch (r->action) {
    case 0:
        b->queue.index = r->queue;
        b->actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
        b->actions[0].conf = &b->queue;
        break;
    case 1:
        b->rss.func = r->symmetric ? RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ : RTE_ETH_HASH_FUNCTION_TOEPLITZ;
        b->rss.level = 0;
        b->rss.types = ws_rss_hf(r->rss_types);
        b->rss.key_len = r->key_len;
        b->rss.key = r->key;
        b->rss.queue_num = r->n_queues;
        b->rss.queue = r->queues;
        b->actions[0].type = RTE_FLOW_ACTION_TYPE_RSS;
        b->actions[0].conf = &b->rss;
        break;
    default:
        b->actions[0].type = RTE_FLOW_ACTION_TYPE_DROP;
        break;
    }
    b->actions[1].type = RTE_FLOW_ACTION_TYPE_END;
}

static void flow_err(const struct rte_flow_error *e, int rc, char *err, size_t err_len) {
    if (!err || !err_len) return;
    snprintf(err, err_len, "%s (%s)", e->message ? e->message : "no message", rte_strerror(rc < 0 ? -rc : rc));
}

int ws_flow_validate(uint16_t port, const struct ws_flow_rule *rule, char *err, size_t err_len) {
    struct ws_flow_build b;
    struct rte_flow_error e;
    memset(&e, 0, sizeof(e));
    ws_flow_build(&b, rule);
    int rc = rte_flow_validate(port, &b.attr, b.items, b.actions, &e);
    if (rc != 0) flow_err(&e, rc, err, err_len);
    return rc;
}

void *ws_flow_create(uint16_t port, const struct ws_flow_rule *rule, char *err, size_t err_len) {
    struct ws_flow_build b;
    struct rte_flow_error e;
    memset(&e, 0, sizeof(e));
    ws_flow_build(&b, rule);
    struct rte_flow *f = rte_flow_create(port, &b.attr, b.items, b.actions, &e);
    if (!f) flow_err(&e, -rte_errno, err, err_len);
    return f;
}

int ws_flow_destroy(uint16_t port, void *flow) {
    struct rte_flow_error e;
    return rte_flow_destroy(port, (struct rte_flow *)flow, &e);
}

/* ---- DPDK's own software Toeplitz, on DPDK's own tuple layout ---- */

uint32_t ws_softrss_v4(uint32_t src, uint32_t dst, uint32_t l4_word, int with_l4, const uint8_t *key) {
    union rte_thash_tuple t;
    memset(&t, 0, sizeof(t));
    t.v4.src_addr = src;
    t.v4.dst_addr = dst;
    t.v4.sctp_tag = l4_word;
    return rte_softrss((uint32_t *)&t, with_l4 ? RTE_THASH_V4_L4_LEN : RTE_THASH_V4_L3_LEN, key);
}

uint32_t ws_softrss_v6(const uint8_t *src, const uint8_t *dst, uint32_t l4_word, int with_l4, const uint8_t *key) {
    struct rte_ipv6_hdr h;
    union rte_thash_tuple t;
    memset(&h, 0, sizeof(h));
    memset(&t, 0, sizeof(t));
    memcpy(h.src_addr, src, 16);
    memcpy(h.dst_addr, dst, 16);
    rte_thash_load_v6_addrs(&h, &t);
    t.v6.sctp_tag = l4_word;
    return rte_softrss((uint32_t *)&t, with_l4 ? RTE_THASH_V6_L4_LEN : RTE_THASH_V6_L3_LEN, key);
}
