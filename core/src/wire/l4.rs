//! UDP (RFC 768), TCP (RFC 9293) and ESP (RFC 4303) headers.

use super::{ESP_HEADER_LEN, Header, TCP_HEADER_LEN, UDP_HEADER_LEN, WireError, need};

/// A view of a UDP datagram.
///
/// [`new_checked`](Self::new_checked) guarantees the 8-byte header is present and the length
/// field is at least 8 and fits the buffer (so [`payload`](Self::payload) is exactly the
/// datagram's payload, without the Ethernet padding after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it (accessors then read zeros past its end).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking the header and the length field.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        need(Header::Udp, UDP_HEADER_LEN, len)?;
        let p = Self { buffer };
        let ulen = usize::from(p.len());
        if ulen < UDP_HEADER_LEN {
            return Err(WireError::Malformed { header: Header::Udp, field: "length" });
        }
        need(Header::Udp, ulen, len)?;
        Ok(p)
    }

    #[inline(always)]
    fn h(&self) -> &[u8; UDP_HEADER_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; UDP_HEADER_LEN])
    }

    /// Source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[0], h[1]])
    }

    /// Destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[2], h[3]])
    }

    /// Length field (header and payload).
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[4], h[5]])
    }

    /// Checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[6], h[7]])
    }

    /// The payload: after the header, up to the length field. Empty on an unchecked view whose
    /// length field is below 8 or beyond the buffer (a checked view has neither).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(UDP_HEADER_LEN..usize::from(self.len())).unwrap_or(&[])
    }
}

/// A view of a TCP segment's header.
///
/// [`new_checked`](Self::new_checked) guarantees the data offset is at least 5 and the whole
/// header (options included) is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it (accessors then read zeros past its end).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking the data offset and that the header is present.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        need(Header::Tcp, TCP_HEADER_LEN, len)?;
        let p = Self { buffer };
        let hl = p.header_len();
        if hl < TCP_HEADER_LEN {
            return Err(WireError::Malformed { header: Header::Tcp, field: "data offset" });
        }
        need(Header::Tcp, hl, len)?;
        Ok(p)
    }

    #[inline(always)]
    fn h(&self) -> &[u8; TCP_HEADER_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; TCP_HEADER_LEN])
    }

    /// Source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[0], h[1]])
    }

    /// Destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        let h = self.h();
        u16::from_be_bytes([h[2], h[3]])
    }

    /// Header length in bytes (data offset × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.h()[12] >> 4) * 4
    }

    /// The flag bits (CWR … FIN) of byte 13.
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.h()[13]
    }
}

/// A view of an ESP header (SPI, sequence number) and what follows it.
///
/// [`new_checked`](Self::new_checked) guarantees the 8-byte header is present. SPI 0 is
/// reserved (RFC 4303 §2.1) but is not refused here: whether it is an error depends on where
/// the header was found (in UDP 4500 a zero first word is IKE's non-ESP marker, RFC 3948 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspHeader<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspHeader<T> {
    /// Wraps `buffer` without checking it (accessors then read zeros past its end).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking the 8-byte header is present.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(Header::Esp, ESP_HEADER_LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    #[inline(always)]
    fn h(&self) -> &[u8; ESP_HEADER_LEN] {
        self.buffer.as_ref().first_chunk().unwrap_or(&[0; ESP_HEADER_LEN])
    }

    /// Security parameters index.
    #[inline(always)]
    pub fn spi(&self) -> u32 {
        let h = self.h();
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    /// Sequence number (low 32 bits).
    #[inline(always)]
    pub fn seq(&self) -> u32 {
        let h = self.h();
        u32::from_be_bytes([h[4], h[5], h[6], h[7]])
    }

    /// Everything after the header (IV, ciphertext, padding, ICV).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(ESP_HEADER_LEN..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_length_is_checked() {
        let d = [0x11, 0x94, 0x11, 0x94, 0, 12, 0, 0, 1, 2, 3, 4, 0xee, 0xee];
        let u = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (4500, 4500, 12));
        assert_eq!(u.payload(), &[1, 2, 3, 4], "padding after the datagram is not payload");
        assert!(matches!(UdpPacket::new_checked(&d[..11]), Err(WireError::Truncated { needed: 12, .. })));
        let mut short = d;
        short[5] = 7;
        assert!(matches!(UdpPacket::new_checked(&short[..]), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn tcp_data_offset_is_checked() {
        let mut d = [0u8; 24];
        d[12] = 6 << 4;
        assert_eq!(TcpPacket::new_checked(&d[..]).map(|t| t.header_len()), Ok(24));
        assert!(TcpPacket::new_checked(&d[..23]).is_err());
        d[12] = 4 << 4;
        assert!(TcpPacket::new_checked(&d[..]).is_err());
    }

    #[test]
    fn esp_header() {
        let d = [0, 0, 1, 0, 0, 0, 0, 9, 0xaa];
        let e = EspHeader::new_checked(&d[..]).unwrap();
        assert_eq!((e.spi(), e.seq(), e.payload()), (256, 9, &[0xaa][..]));
        assert!(EspHeader::new_checked(&d[..7]).is_err());
    }
}
