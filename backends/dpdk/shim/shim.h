/* wirespeed-dpdk C shim: DPDK's static-inline functions and the few struct fields wirespeed needs,
 * behind functions and small structs whose layout this file owns. The Rust side declares exactly
 * these functions (src/ffi.rs) and never depends on a DPDK struct layout. */
#ifndef WIRESPEED_DPDK_SHIM_H
#define WIRESPEED_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* Byte offsets of the rte_mbuf fields the Rust hot path reads, as the C compiler lays them out. */
struct ws_mbuf_layout {
    uint32_t buf_addr;
    uint32_t data_off;
    uint32_t data_len;
    uint32_t pkt_len;
    uint32_t buf_len;
    uint32_t ol_flags;
    uint32_t rss;
    uint32_t port;
    uint32_t nb_segs;
    uint64_t rss_flag;       /* RTE_MBUF_F_RX_RSS_HASH */
    uint32_t headroom;       /* RTE_PKTMBUF_HEADROOM */
};

struct ws_dev_info {
    char driver_name[32];
    uint16_t max_rx_queues;
    uint16_t max_tx_queues;
    uint16_t reta_size;
    uint8_t hash_key_size;
    int32_t socket_id;
    uint32_t max_rx_pktlen;
    uint64_t flow_type_rss_offloads; /* in wirespeed hash-type bits */
    uint64_t flow_type_rss_dpdk;     /* raw RTE_ETH_RSS_* bits */
    uint16_t min_mtu;
    uint16_t max_mtu;
};

struct ws_link {
    uint32_t speed_mbps;
    uint8_t up;
    uint8_t full_duplex;
    uint8_t autoneg;
};

struct ws_stats {
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};

/* A steering rule flattened to what rte_flow can express. */
struct ws_flow_rule {
    uint8_t has_ethertype;
    uint16_t ethertype;
    uint8_t has_vlan;
    uint16_t vlan;
    uint8_t ip_version;      /* 0 none, 4, 6 */
    uint8_t has_proto;
    uint8_t proto;
    uint8_t has_src, has_dst;
    uint8_t src[16], src_mask[16], dst[16], dst_mask[16];
    uint8_t has_dscp;
    uint8_t dscp;
    uint8_t l4;              /* 0 none, 6 tcp, 17 udp, 50 esp, 1 icmp, 58 icmpv6 */
    uint8_t has_sport, has_dport;
    uint16_t sport, dport;
    uint8_t has_spi;
    uint32_t spi;
    uint8_t has_icmp_type;
    uint8_t icmp_type;
    uint8_t action;          /* 0 queue, 1 rss, 2 drop */
    uint16_t queue;
    uint16_t n_queues;
    const uint16_t *queues;
    uint32_t rss_types;      /* wirespeed hash-type bits */
    const uint8_t *key;
    uint8_t key_len;
    uint8_t symmetric;       /* RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ */
    uint32_t priority;
};

/* The layouts above, pinned: src/ffi.rs asserts the same sizes and offsets for its mirrors at
 * compile time, so a change on either side that the other does not follow fails the build.
 * (LP64 values: ws_flow_rule holds pointers.) */
#define WS_ASSERT_SIZE(T, n) _Static_assert(sizeof(struct T) == (n), "size of struct " #T)
#define WS_ASSERT_OFFSET(T, f, n) _Static_assert(offsetof(struct T, f) == (n), "offset of " #T "." #f)
WS_ASSERT_SIZE(ws_mbuf_layout, 56);
WS_ASSERT_OFFSET(ws_mbuf_layout, buf_addr, 0);
WS_ASSERT_OFFSET(ws_mbuf_layout, data_off, 4);
WS_ASSERT_OFFSET(ws_mbuf_layout, data_len, 8);
WS_ASSERT_OFFSET(ws_mbuf_layout, pkt_len, 12);
WS_ASSERT_OFFSET(ws_mbuf_layout, buf_len, 16);
WS_ASSERT_OFFSET(ws_mbuf_layout, ol_flags, 20);
WS_ASSERT_OFFSET(ws_mbuf_layout, rss, 24);
WS_ASSERT_OFFSET(ws_mbuf_layout, port, 28);
WS_ASSERT_OFFSET(ws_mbuf_layout, nb_segs, 32);
WS_ASSERT_OFFSET(ws_mbuf_layout, rss_flag, 40);
WS_ASSERT_OFFSET(ws_mbuf_layout, headroom, 48);
WS_ASSERT_SIZE(ws_dev_info, 72);
WS_ASSERT_OFFSET(ws_dev_info, driver_name, 0);
WS_ASSERT_OFFSET(ws_dev_info, max_rx_queues, 32);
WS_ASSERT_OFFSET(ws_dev_info, max_tx_queues, 34);
WS_ASSERT_OFFSET(ws_dev_info, reta_size, 36);
WS_ASSERT_OFFSET(ws_dev_info, hash_key_size, 38);
WS_ASSERT_OFFSET(ws_dev_info, socket_id, 40);
WS_ASSERT_OFFSET(ws_dev_info, max_rx_pktlen, 44);
WS_ASSERT_OFFSET(ws_dev_info, flow_type_rss_offloads, 48);
WS_ASSERT_OFFSET(ws_dev_info, flow_type_rss_dpdk, 56);
WS_ASSERT_OFFSET(ws_dev_info, min_mtu, 64);
WS_ASSERT_OFFSET(ws_dev_info, max_mtu, 66);
WS_ASSERT_SIZE(ws_link, 8);
WS_ASSERT_OFFSET(ws_link, speed_mbps, 0);
WS_ASSERT_OFFSET(ws_link, up, 4);
WS_ASSERT_OFFSET(ws_link, full_duplex, 5);
WS_ASSERT_OFFSET(ws_link, autoneg, 6);
WS_ASSERT_SIZE(ws_stats, 64);
WS_ASSERT_OFFSET(ws_stats, ipackets, 0);
WS_ASSERT_OFFSET(ws_stats, opackets, 8);
WS_ASSERT_OFFSET(ws_stats, ibytes, 16);
WS_ASSERT_OFFSET(ws_stats, obytes, 24);
WS_ASSERT_OFFSET(ws_stats, imissed, 32);
WS_ASSERT_OFFSET(ws_stats, ierrors, 40);
WS_ASSERT_OFFSET(ws_stats, oerrors, 48);
WS_ASSERT_OFFSET(ws_stats, rx_nombuf, 56);
#if UINTPTR_MAX == 0xffffffffffffffffu
WS_ASSERT_SIZE(ws_flow_rule, 136);
WS_ASSERT_OFFSET(ws_flow_rule, has_ethertype, 0);
WS_ASSERT_OFFSET(ws_flow_rule, ethertype, 2);
WS_ASSERT_OFFSET(ws_flow_rule, has_vlan, 4);
WS_ASSERT_OFFSET(ws_flow_rule, vlan, 6);
WS_ASSERT_OFFSET(ws_flow_rule, ip_version, 8);
WS_ASSERT_OFFSET(ws_flow_rule, has_proto, 9);
WS_ASSERT_OFFSET(ws_flow_rule, proto, 10);
WS_ASSERT_OFFSET(ws_flow_rule, has_src, 11);
WS_ASSERT_OFFSET(ws_flow_rule, has_dst, 12);
WS_ASSERT_OFFSET(ws_flow_rule, src, 13);
WS_ASSERT_OFFSET(ws_flow_rule, src_mask, 29);
WS_ASSERT_OFFSET(ws_flow_rule, dst, 45);
WS_ASSERT_OFFSET(ws_flow_rule, dst_mask, 61);
WS_ASSERT_OFFSET(ws_flow_rule, has_dscp, 77);
WS_ASSERT_OFFSET(ws_flow_rule, dscp, 78);
WS_ASSERT_OFFSET(ws_flow_rule, l4, 79);
WS_ASSERT_OFFSET(ws_flow_rule, has_sport, 80);
WS_ASSERT_OFFSET(ws_flow_rule, has_dport, 81);
WS_ASSERT_OFFSET(ws_flow_rule, sport, 82);
WS_ASSERT_OFFSET(ws_flow_rule, dport, 84);
WS_ASSERT_OFFSET(ws_flow_rule, has_spi, 86);
WS_ASSERT_OFFSET(ws_flow_rule, spi, 88);
WS_ASSERT_OFFSET(ws_flow_rule, has_icmp_type, 92);
WS_ASSERT_OFFSET(ws_flow_rule, icmp_type, 93);
WS_ASSERT_OFFSET(ws_flow_rule, action, 94);
WS_ASSERT_OFFSET(ws_flow_rule, queue, 96);
WS_ASSERT_OFFSET(ws_flow_rule, n_queues, 98);
WS_ASSERT_OFFSET(ws_flow_rule, queues, 104);
WS_ASSERT_OFFSET(ws_flow_rule, rss_types, 112);
WS_ASSERT_OFFSET(ws_flow_rule, key, 120);
WS_ASSERT_OFFSET(ws_flow_rule, key_len, 128);
WS_ASSERT_OFFSET(ws_flow_rule, symmetric, 129);
WS_ASSERT_OFFSET(ws_flow_rule, priority, 132);
#endif

void ws_mbuf_layout_get(struct ws_mbuf_layout *out);

int ws_eal_init(int argc, char **argv);
int ws_errno(void);
const char *ws_strerror(int err);
int ws_thread_register(void);
void ws_thread_unregister(void);
unsigned ws_lcore_id(void);
int ws_socket_id(void);
unsigned ws_socket_count(void);
int ws_socket_id_by_idx(unsigned idx);

struct rte_mempool *ws_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache, uint16_t data_room,
                                           int socket);
unsigned ws_mempool_avail_count(const struct rte_mempool *mp);
unsigned ws_mempool_in_use_count(const struct rte_mempool *mp);

struct rte_mbuf *ws_pktmbuf_alloc(struct rte_mempool *mp);
struct rte_mempool *ws_pktmbuf_pool_of(const struct rte_mbuf *m);
int ws_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void ws_pktmbuf_free(struct rte_mbuf *m);
void ws_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned n);
uint8_t *ws_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
uint8_t *ws_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
uint8_t *ws_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int ws_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t ws_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t ws_pktmbuf_tailroom(const struct rte_mbuf *m);
uint8_t *ws_pktmbuf_mtod(struct rte_mbuf *m);
uint32_t ws_pktmbuf_pkt_len(const struct rte_mbuf *m);
void ws_mbuf_set_rss(struct rte_mbuf *m, uint32_t hash);
int ws_mbuf_rss(const struct rte_mbuf *m, uint32_t *hash);

uint16_t ws_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t ws_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

uint16_t ws_eth_dev_count_avail(void);
int ws_eth_dev_get_port_by_name(const char *name, uint16_t *port);
int ws_dev_probe(const char *devargs);
int ws_eth_dev_info(uint16_t port, struct ws_dev_info *out);
/* mtu 0: the driver's default (1500). */
int ws_eth_dev_configure(uint16_t port, uint16_t nb_rx, uint16_t nb_tx, int rss, uint32_t ws_types,
                         const uint8_t *key, uint8_t key_len, uint16_t mtu);
int ws_eth_rx_queue_setup(uint16_t port, uint16_t queue, uint16_t nb_desc, int socket, struct rte_mempool *mp);
int ws_eth_tx_queue_setup(uint16_t port, uint16_t queue, uint16_t nb_desc, int socket);
int ws_eth_dev_start(uint16_t port);
int ws_eth_dev_stop(uint16_t port);
int ws_eth_dev_close(uint16_t port);
int ws_eth_promiscuous_enable(uint16_t port);
int ws_eth_dev_get_mtu(uint16_t port, uint16_t *mtu);
int ws_eth_macaddr_get(uint16_t port, uint8_t mac[6]);
int ws_eth_link_get_nowait(uint16_t port, struct ws_link *out);
int ws_eth_stats_get(uint16_t port, struct ws_stats *out);
int ws_eth_xstats_count(uint16_t port);
int ws_eth_xstats_names(uint16_t port, char *names, unsigned stride, unsigned n);
int ws_eth_xstats_values(uint16_t port, uint64_t *values, unsigned n);

uint64_t ws_rss_hf(uint32_t ws_types);
uint32_t ws_rss_types_of_hf(uint64_t hf);
int ws_eth_rss_hash_update(uint16_t port, const uint8_t *key, uint8_t key_len, uint32_t ws_types);
int ws_eth_rss_hash_conf_get(uint16_t port, uint8_t *key, uint8_t *key_len, uint64_t *hf);
int ws_eth_reta_update(uint16_t port, const uint16_t *reta, uint16_t size);
int ws_eth_reta_query(uint16_t port, uint16_t *reta, uint16_t size);

int ws_flow_validate(uint16_t port, const struct ws_flow_rule *rule, char *err, size_t err_len);
void *ws_flow_create(uint16_t port, const struct ws_flow_rule *rule, char *err, size_t err_len);
int ws_flow_destroy(uint16_t port, void *flow);

uint32_t ws_softrss_v4(uint32_t src, uint32_t dst, uint32_t l4_word, int with_l4, const uint8_t *key);
uint32_t ws_softrss_v6(const uint8_t *src, const uint8_t *dst, uint32_t l4_word, int with_l4, const uint8_t *key);

#endif
