//! Ethernet II frames and VLAN tags.

use super::{ETHERNET_HEADER_LEN, Header, VLAN_TAG_LEN, WireError, need};

/// A view of an Ethernet II frame (IEEE 802.3 §3.1: destination, source, EtherType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking it (accessors then read zeros past its end).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking it holds the 14-byte header.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(Header::Ethernet, ETHERNET_HEADER_LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The wrapped buffer.
    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    fn h(&self) -> &[u8; ETHERNET_HEADER_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; ETHERNET_HEADER_LEN])
    }

    /// Destination MAC address.
    #[inline(always)]
    pub fn dst_addr(&self) -> [u8; 6] {
        let h = self.h();
        [h[0], h[1], h[2], h[3], h[4], h[5]]
    }

    /// Source MAC address.
    #[inline(always)]
    pub fn src_addr(&self) -> [u8; 6] {
        let h = self.h();
        [h[6], h[7], h[8], h[9], h[10], h[11]]
    }

    /// The EtherType (or, below [`super::ETHERTYPE_MIN`], an 802.3 length).
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[12], h[13]])
    }

    /// The bytes after the 14-byte header (a VLAN tag, when [`Self::ethertype`] is a TPID).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(ETHERNET_HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Writes the destination MAC address.
    #[inline(always)]
    pub fn set_dst_addr(&mut self, mac: [u8; 6]) {
        if let Some(d) = self.buffer.as_mut().first_chunk_mut::<6>() {
            *d = mac;
        }
    }

    /// Writes the source MAC address.
    #[inline(always)]
    pub fn set_src_addr(&mut self, mac: [u8; 6]) {
        if let Some(h) = self.buffer.as_mut().first_chunk_mut::<12>() {
            h[6..].copy_from_slice(&mac);
        }
    }

    /// Writes the EtherType.
    #[inline(always)]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        if let Some(h) = self.buffer.as_mut().first_chunk_mut::<ETHERNET_HEADER_LEN>() {
            h[12..].copy_from_slice(&ethertype.to_be_bytes());
        }
    }

    /// The bytes after the 14-byte header, writable.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(ETHERNET_HEADER_LEN..).unwrap_or(&mut [])
    }
}

/// A view of one 802.1Q / 802.1ad tag body (TCI and inner EtherType), i.e. the 4 bytes after a
/// TPID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps `buffer` after checking it holds the 4-byte tag.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(Header::Ethernet, VLAN_TAG_LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    #[inline(always)]
    fn h(&self) -> &[u8; VLAN_TAG_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; VLAN_TAG_LEN])
    }

    /// The 12-bit VLAN identifier.
    #[inline(always)]
    pub fn vid(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[0], h[1]]) & 0x0fff
    }

    /// Priority code point (802.1p).
    #[inline(always)]
    pub fn pcp(&self) -> u8 {
        self.h()[0] >> 5
    }

    /// The EtherType after the tag.
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[2], h[3]])
    }

    /// The bytes after the tag.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(VLAN_TAG_LEN..).unwrap_or(&[])
    }
}
